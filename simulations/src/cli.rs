//! `shoal sim`: run one seed, sweep a range, check that seeds replay, or print the
//! simulator's figures.

use std::ffi::OsString;
use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

use crate::{bench, parse_faults, sweep, Config, Fault, Plant};

/// Fault-injection simulations: N Shoal nodes (real openraft, job table, scheduler and
/// manager decisions) in one process over a simulated network and clock, faults drawn from
/// a seed, invariants checked all along. Exit 0 when every invariant held, 1 when one did
/// not (the failing seed's command and trace tail are printed), 2 on bad usage.
#[derive(Debug, Parser)]
#[command(name = "shoal sim")]
struct SimArgs {
    /// The seed of one run.
    #[arg(long, default_value_t = 1, conflicts_with = "seeds")]
    seed: u64,
    /// A range of seeds to sweep, `A..B` (B excluded).
    #[arg(long, value_parser = parse_range)]
    seeds: Option<std::ops::Range<u64>>,
    /// Nodes [default: 5]: five voters (all of them, when fewer), then up to --learners
    /// learners, the rest plain workers, as a cluster of real nodes has. With --bench: the
    /// scale figures for 10, 100, … up to N.
    #[arg(long)]
    nodes: Option<usize>,
    /// Most learners; nodes past the voters and these are plain workers (not Raft members:
    /// the leader pushes them their assignments), as `shoal node --learners`.
    #[arg(long, default_value_t = shoal_node::cluster::node::DEFAULT_LEARNERS)]
    learners: usize,
    /// Jobs the client submits.
    #[arg(long, default_value_t = 4)]
    jobs: usize,
    /// Faults to inject: a comma-separated list of crash, kill, partition, oneway, loss,
    /// dup, delay — or all, or none.
    #[arg(long, default_value = "all", value_parser = parse_faults)]
    faults: std::collections::BTreeSet<Fault>,
    /// Simulated seconds of the fault phase (one fault decision per second).
    #[arg(long, default_value_t = 60)]
    steps: u64,
    /// Simulated seconds the cluster has, once faults stop, to finish every job.
    #[arg(long, default_value_t = 300)]
    deadline: u64,
    /// Plant a bug (silence-is-consent, apply-out-of-order, snapshot-ignored, partial-reduce-input,
    /// finish-any-attempt, no-rerun, worker-deletes-parts, trust-corrupt-copies,
    /// proposal-gives-up) to see the invariant that catches it fire.
    #[arg(long)]
    plant: Vec<Plant>,
    /// Run every seed twice and compare the trace hashes.
    #[arg(long)]
    twice: bool,
    /// Threads for a sweep (each seed runs on one thread).
    #[arg(long, default_value_t = 2)]
    threads: usize,
    /// Print the trace tail even when every invariant held.
    #[arg(long)]
    trace: bool,
    /// Lines of trace a report shows.
    #[arg(long, default_value_t = 60)]
    tail: usize,
    /// Print the simulator's figures instead: simulated seconds per wall-second, and the
    /// scheduler's planning time for 1,000 nodes and 100,000 tasks; with --nodes N, the
    /// leader's load for 10, 100, … N nodes.
    #[arg(long)]
    bench: bool,
    /// With --bench: a quick smoke run.
    #[arg(long, requires = "bench")]
    quick: bool,
}

fn parse_range(s: &str) -> Result<std::ops::Range<u64>, String> {
    let (a, b) = s
        .split_once("..")
        .ok_or_else(|| format!("{s:?} is not a range A..B"))?;
    let a: u64 = a.trim().parse().map_err(|e| format!("{a:?}: {e}"))?;
    let b: u64 = b.trim().parse().map_err(|e| format!("{b:?}: {e}"))?;
    if b <= a {
        return Err(format!("the range {s} is empty"));
    }
    Ok(a..b)
}

/// The most nodes a run simulates.
const MAX_NODES: usize = 1000;

/// `shoal sim ARGS…`.
pub fn main(args: Vec<OsString>) -> ExitCode {
    let args =
        match SimArgs::try_parse_from(std::iter::once(OsString::from("shoal sim")).chain(args)) {
            Ok(a) => a,
            Err(e) => {
                let _ = e.print();
                return if e.use_stderr() {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
        };
    let nodes_given = args.nodes.is_some();
    let nodes = args.nodes.unwrap_or(5);
    if nodes == 0 || nodes > MAX_NODES {
        eprintln!("shoal sim: --nodes must be between 1 and {MAX_NODES}");
        return ExitCode::from(2);
    }
    if args.bench {
        let scale = nodes_given.then_some((nodes, args.learners));
        return match bench::figures(args.quick, scale) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("shoal sim --bench: {e}");
                ExitCode::FAILURE
            }
        };
    }
    let base = Config {
        seed: args.seed,
        nodes,
        learners: args.learners,
        jobs: args.jobs,
        faults: args.faults,
        steps: args.steps,
        deadline: args.deadline,
        plant: args.plant,
        tail: args.tail,
        heartbeats_to_all: false,
    };
    let seeds = args.seeds.clone().unwrap_or(args.seed..args.seed + 1);
    let started = std::time::Instant::now();
    let first = sweep(&base, seeds.clone(), args.threads, |o| {
        println!("{}", o.summary());
        let _ = std::io::stdout().flush();
    });
    let second = if args.twice {
        sweep(&base, seeds.clone(), args.threads, |_| {})
    } else {
        Vec::new()
    };
    let mut failed = 0;
    for o in &first {
        if !o.ok() {
            failed += 1;
            if failed == 1 {
                println!("\nseed {} failed:\n{}", o.config.seed, o.report());
            }
        } else if args.trace {
            println!("\nseed {}:\n{}", o.config.seed, o.report());
        }
    }
    let mut mismatched = 0;
    for (a, b) in first.iter().zip(&second) {
        if a.trace_hash != b.trace_hash || a.trace_lines != b.trace_lines {
            mismatched += 1;
            println!(
                "seed {}: NOT REPRODUCIBLE — trace {:016x} ({} lines), then {:016x} ({} lines); reproduce with: {}",
                a.config.seed, a.trace_hash, a.trace_lines, b.trace_hash, b.trace_lines, a.config.command()
            );
        }
    }
    let simulated: f64 = first.iter().map(|o| o.simulated.as_secs_f64()).sum();
    println!(
        "\n{} seeds{}: {} with a violation{}; {:.0} simulated s in {:.1} s",
        first.len(),
        if args.twice { " (each run twice)" } else { "" },
        failed,
        if args.twice {
            format!(", {mismatched} not reproducible")
        } else {
            String::new()
        },
        simulated,
        started.elapsed().as_secs_f64()
    );
    if failed > 0 || mismatched > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
