//! The simulator's figures: how fast it simulates, and how long the scheduler takes to plan
//! for a large cluster.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use shoal_jobs::cluster::{Cluster, Command, SplitInfo};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::scheduler::{plan, NodeSlots};
use shoal_jobs::spec::{JobKind, JobSpec};

use crate::{run, Config, Fault};

/// A table of `jobs` running jobs with `maps` map tasks each, split holders spread over
/// `nodes` nodes, and 4 attempts running on every node (half its slots).
pub fn big_table(nodes: u64, jobs: u32, maps: u32) -> Cluster {
    let mut c = Cluster::default();
    let mut running = nodes * 4;
    for j in 0..jobs {
        let id = format!("j-{j:04}");
        let splits = (0..maps)
            .map(|i| SplitInfo {
                index: i,
                name: format!("input-{i}"),
                len: 64 << 20,
                holders: (0..3)
                    .map(|k| 1 + (u64::from(i) * 7 + k * 131 + u64::from(j)) % nodes)
                    .collect(),
                files: Vec::new(),
                ..Default::default()
            })
            .collect();
        let mut spec = JobSpec::new(
            id.clone(),
            vec!["x".into()],
            JobKind::App("wordcount".into()),
        );
        spec.reducers = 16;
        c.apply(Command::SubmitJob {
            id: id.clone(),
            spec: Box::new(spec),
            splits,
            partitioner: Partitioner::Hash,
            at_ms: 0,
            counters: Default::default(),
        });
        for i in 0..maps {
            if running == 0 {
                break;
            }
            running -= 1;
            c.apply(Command::Assign {
                job: id.clone(),
                kind: shoal_jobs::cluster::TaskKind::Map,
                index: i,
                attempt: 1,
                node: 1 + running % nodes,
                backup: false,
                at_ms: 0,
            });
        }
    }
    c
}

/// Run `config`, timed (wall seconds); an error unless every invariant held and every
/// acknowledged job succeeded.
fn timed(config: &Config) -> Result<(crate::Outcome, f64), String> {
    let t = Instant::now();
    let o = run(config);
    let wall = t.elapsed().as_secs_f64();
    if !o.ok() {
        return Err(format!(
            "the benchmark run ({} nodes) failed an invariant:\n{}",
            config.nodes,
            o.report()
        ));
    }
    if o.succeeded < o.acked || o.acked == 0 {
        return Err(format!(
            "{} nodes: only {} of {} jobs succeeded",
            config.nodes, o.succeeded, o.acked
        ));
    }
    Ok((o, wall))
}

/// One size of the scale figures.
struct Load {
    nodes: usize,
    /// Voters, learners and plain workers.
    shape: (usize, usize, usize),
    /// Attempts that ran on plain workers.
    on_workers: usize,
    simulated: f64,
    wall: f64,
    /// The busiest node's messages and bytes per simulated second.
    messages: f64,
    bytes: f64,
    /// Its bytes per simulated second when every heartbeat is answered with everyone's.
    bytes_all: f64,
    /// Assignment to start on the assigned node, simulated ms: median, 99th percentile,
    /// most, over how many attempts.
    assigned: (u64, u64, u64, usize),
}

/// The median, 99th percentile and most of `ms`, and how many.
fn spread(mut ms: Vec<u64>) -> (u64, u64, u64, usize) {
    ms.sort_unstable();
    let at = |q: f64| {
        ms.get(((ms.len() as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    (
        at(0.5).unwrap_or(0),
        at(0.99).unwrap_or(0),
        ms.last().copied().unwrap_or(0),
        ms.len(),
    )
}

/// The leader's load as the cluster grows: for 10, 100, … up to `max` nodes (and `max`),
/// runs without faults, the busiest node's (the leader's) messages and bytes per simulated
/// second, against the same run where every heartbeat is answered with every heartbeat
/// heard (the rule before protocol 1.2), and the wall time per simulated second.
fn scale(quick: bool, max: usize, learners: usize) -> Result<String, String> {
    let mut sizes: Vec<usize> = std::iter::successors(Some(10), |n| Some(n * 10))
        .take_while(|&n| n < max)
        .collect();
    sizes.push(max);
    let mut rows: Vec<Load> = Vec::new();
    for nodes in sizes {
        type Figures = (f64, f64, f64, f64, Vec<u64>, usize);
        let load = |to_all: bool| -> Result<Figures, String> {
            let config = Config {
                seed: 42,
                nodes,
                learners,
                jobs: if quick { 1 } else { 4 },
                faults: Default::default(),
                steps: if quick { 5 } else { 30 },
                deadline: 300,
                plant: Vec::new(),
                tail: 60,
                heartbeats_to_all: to_all,
            };
            let (o, wall) = timed(&config)?;
            let sim = (o.simulated - o.booted).as_secs_f64();
            let (_, messages, bytes) = o.stats.busiest();
            Ok((
                sim,
                wall,
                messages as f64 / sim,
                bytes as f64 / sim,
                o.stats.assigned_ms,
                o.on_workers,
            ))
        };
        let (simulated, wall, messages, bytes, assigned, on_workers) = load(false)?;
        let (_, _, _, bytes_all, _, _) = load(true)?;
        if assigned.is_empty() {
            return Err(format!("{nodes} nodes: no attempt started"));
        }
        let (voters, learners) = (
            nodes.min(crate::driver::VOTERS),
            nodes.saturating_sub(crate::driver::VOTERS).min(learners),
        );
        let workers = nodes - voters - learners;
        rows.push(Load {
            nodes,
            shape: (voters, learners, workers),
            on_workers,
            simulated,
            wall,
            messages,
            bytes,
            bytes_all,
            assigned: spread(assigned),
        });
    }
    let workers: usize = rows.iter().map(|r| r.shape.2).sum();
    if workers > 0 && rows.iter().all(|r| r.on_workers == 0) {
        return Err("no attempt ran on a plain worker at any size".into());
    }
    let mut out = String::new();
    for r in &rows {
        let _ = writeln!(
            out,
            "scale: {:>4} nodes ({} voters, {} learners, {} plain workers): leader {:>8.0} messages/s, {:>9.1} KiB/s (every heartbeat answered with all: {:>9.1} KiB/s); assigned to started {} ms median, {} ms p99, {} ms most ({} attempts, {} on plain workers); {:.0} simulated s in {:.1} s wall = {:.3} wall s per simulated s",
            r.nodes,
            r.shape.0,
            r.shape.1,
            r.shape.2,
            r.messages,
            r.bytes / 1024.0,
            r.bytes_all / 1024.0,
            r.assigned.0,
            r.assigned.1,
            r.assigned.2,
            r.assigned.3,
            r.on_workers,
            r.simulated,
            r.wall,
            r.wall / r.simulated
        );
    }
    if let (Some(a), Some(b)) = (rows.first(), rows.last()) {
        // The leader talks to every other node: linear growth is in those.
        let others = (b.nodes - 1) as f64 / (a.nodes - 1).max(1) as f64;
        let n = b.nodes as f64 / a.nodes as f64;
        let (m, by, all) = (
            b.messages / a.messages,
            b.bytes / a.bytes,
            b.bytes_all / a.bytes_all,
        );
        let _ = writeln!(
            out,
            "scale: {} to {} nodes (×{n:.0}, ×{others:.1} other nodes): leader messages/s ×{m:.1}, bytes/s ×{by:.1} (every heartbeat answered with all: ×{all:.1}); no faster than linear in the other nodes (5% slack): {}",
            a.nodes,
            b.nodes,
            if m <= others * 1.05 && by <= others * 1.05 { "met" } else { "NOT met" }
        );
    }
    Ok(out)
}

/// Run the benchmarks; `quick` is a smoke run for CI; with `nodes`, the scale figures up to
/// that many nodes instead.
pub fn figures(quick: bool, nodes: Option<(usize, usize)>) -> Result<String, String> {
    if let Some((max, learners)) = nodes {
        return scale(quick, max, learners);
    }
    let mut out = String::new();
    // Simulation speed: one run of `secs` simulated seconds with 7 nodes, faults on, and a
    // baseline run without faults in the same process.
    let secs = if quick { 100 } else { 1000 };
    for (label, faults) in [
        ("no faults", Default::default()),
        ("all faults", Fault::ALL.into_iter().collect()),
    ] {
        let config = Config {
            seed: 42,
            nodes: 7,
            learners: shoal_node::cluster::node::DEFAULT_LEARNERS,
            jobs: if quick { 3 } else { 20 },
            faults,
            steps: secs,
            deadline: 300,
            plant: Vec::new(),
            tail: 60,
            heartbeats_to_all: false,
        };
        let (o, wall) = timed(&config)?;
        let sim = o.simulated.as_secs_f64();
        let _ = writeln!(
            out,
            "sim speed ({label}): 7 nodes, {:.0} simulated s in {wall:.2} s wall = {:.0} simulated s per wall s ({} messages, {} jobs)",
            sim,
            sim / wall,
            o.stats.messages,
            o.succeeded
        );
    }
    // Planning: 1,000 nodes with 8 slots, 4 busy; 100,000 map tasks (100 jobs × 1,000);
    // time `plan` (it fills every free slot) against a baseline of one pass over the table.
    let (nodes, jobs, maps) = if quick {
        (100, 10, 1000)
    } else {
        (1000, 100, 1000)
    };
    let table = big_table(nodes, jobs, maps);
    let slots: Vec<NodeSlots> = (1..=nodes)
        .map(|n| NodeSlots { node: n, slots: 8 })
        .collect();
    let rounds = if quick { 3 } else { 10 };
    let mut times = Vec::new();
    let mut assigned = 0;
    for _ in 0..rounds {
        let t = Instant::now();
        let cmds = plan(&table, &slots, 1);
        times.push(t.elapsed());
        assigned = cmds.len();
    }
    times.sort();
    let t = Instant::now();
    let pending = table
        .jobs
        .values()
        .flat_map(|j| j.maps.iter())
        .filter(|t| t.attempts.is_empty())
        .count();
    let scan = t.elapsed();
    let median = times[times.len() / 2];
    let _ = writeln!(
        out,
        "plan: {nodes} nodes, {} tasks ({pending} pending): median {:.1} ms over {rounds} calls (max {:.1} ms), {assigned} assignments; baseline scan of the table {:.2} ms; goal < 50 ms: {}",
        u64::from(jobs) * u64::from(maps),
        ms(median),
        ms(*times.last().unwrap_or(&median)),
        ms(scan),
        if ms(median) < 50.0 { "met" } else { "NOT met" }
    );
    if assigned == 0 {
        return Err("plan assigned nothing".into());
    }
    Ok(out)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
