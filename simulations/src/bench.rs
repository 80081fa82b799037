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

/// Run the benchmarks; `quick` is a smoke run for CI.
pub fn figures(quick: bool) -> Result<String, String> {
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
            jobs: if quick { 3 } else { 20 },
            faults,
            steps: secs,
            deadline: 300,
            plant: Vec::new(),
            tail: 60,
        };
        let t = Instant::now();
        let o = run(&config);
        let wall = t.elapsed().as_secs_f64();
        if !o.ok() {
            return Err(format!(
                "the benchmark run failed an invariant:\n{}",
                o.report()
            ));
        }
        if o.succeeded < o.acked || o.acked == 0 {
            return Err(format!(
                "only {} of {} jobs succeeded",
                o.succeeded, o.acked
            ));
        }
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

#[cfg(test)]
mod tests {
    use shoal_jobs::scheduler::{plan, NodeSlots};

    #[test]
    fn the_big_table_fills_every_free_slot() {
        let t = super::big_table(10, 3, 30);
        let slots: Vec<NodeSlots> = (1..=10).map(|n| NodeSlots { node: n, slots: 8 }).collect();
        assert_eq!(plan(&t, &slots, 1).len(), 40);
    }
}
