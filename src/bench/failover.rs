//! `shoal bench failover`: a 3-node cluster on loopback; `kill -9` the leader, time until a
//! new leader is visible on both survivors, restart the killed node, repeat.

use std::time::{Duration, Instant};

use clap::Args;

use crate::demo::local_cluster::{wait_for, LocalCluster};

/// `shoal bench failover` flags.
#[derive(Debug, Args)]
pub struct FailoverArgs {
    /// Kills to time.
    #[arg(long, default_value_t = 10)]
    trials: usize,
    /// Raft heartbeat, ms (the node default when absent).
    #[arg(long)]
    heartbeat_ms: Option<u64>,
    /// Raft election timeout MIN-MAX, ms (the node default when absent).
    #[arg(long)]
    election_ms: Option<String>,
}

/// Run the benchmark; prints one line per trial and min/median/max.
pub fn run(args: FailoverArgs) -> anyhow::Result<bool> {
    super::in_kept_dir_on_error(|dir| trials(&args, dir))
}

fn trials(args: &FailoverArgs, dir: &std::path::Path) -> anyhow::Result<bool> {
    let mut extra = vec![];
    let hb = args.heartbeat_ms.map(|h| h.to_string());
    if let Some(h) = &hb {
        extra.extend(["--heartbeat-ms", h.as_str()]);
    }
    if let Some(e) = &args.election_ms {
        extra.extend(["--election-ms", e.as_str()]);
    }
    let mut cluster = LocalCluster::start(dir, 3, &extra)?;
    let mut leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    let mut times = Vec::with_capacity(args.trials);
    for trial in 1..=args.trials {
        let li = cluster
            .index_of(&leader)
            .ok_or_else(|| anyhow::anyhow!("the leader is not one of ours"))?;
        let killed = Instant::now();
        cluster.nodes[li].kill();
        let survivors: Vec<usize> = (0..3).filter(|&i| i != li).collect();
        let new_leader = wait_for(
            Duration::from_secs(30),
            "a new leader on both survivors",
            || {
                let a = cluster.nodes[survivors[0]].leader()?;
                let b = cluster.nodes[survivors[1]].leader()?;
                (a == b && a != leader).then_some(a)
            },
        )?;
        let secs = killed.elapsed().as_secs_f64();
        println!("trial {trial:>2}: new leader after {secs:.3} s");
        times.push(secs);
        cluster.nodes[li].restart()?;
        leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
        debug_assert_eq!(leader, new_leader);
    }
    times.sort_by(f64::total_cmp);
    let median = if times.len() % 2 == 1 {
        times[times.len() / 2]
    } else {
        (times[times.len() / 2 - 1] + times[times.len() / 2]) / 2.0
    };
    println!(
        "failover over {} kills: min {:.3} s, median {median:.3} s, max {:.3} s (goal: median < 1 s)",
        times.len(),
        times[0],
        times[times.len() - 1]
    );
    Ok(true)
}
