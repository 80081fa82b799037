//! `shoal bench latency` and `shoal bench cluster`: jobs on a 3-node loopback cluster.
//!
//! - latency: a 10-line job, `shoal submit --wait` timed from the command's start to its
//!   exit, with a Python streaming mapper and with a native app (goals: under 200 ms and
//!   under 50 ms);
//! - cluster: word count on a generated corpus through the cluster (upload, splits and their
//!   copies, shuffle over libp2p, part files and their copies) against `shoal run` on the
//!   same file — the price of distribution on one machine. Both outputs are checked against
//!   each other, and the Raft term is read before and after: busy task slots must not cost
//!   the manager its leadership.

use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;

use super::read_counts;
use crate::demo::local_cluster::LocalCluster;

/// `shoal bench latency` flags.
#[derive(Debug, Args)]
pub struct LatencyArgs {
    /// Jobs of each kind to time.
    #[arg(long, default_value_t = 10)]
    trials: usize,
}

/// `shoal bench cluster` flags.
#[derive(Debug, Args)]
pub struct ClusterArgs {
    /// Corpus size, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Distinct words in the corpus.
    #[arg(long, default_value_t = 500_000)]
    distinct: usize,
}

const MAP_PY: &str = "#!/usr/bin/env python3\nimport sys\nfor line in sys.stdin:\n    for w in line.split():\n        print(w + '\\t1')\n";

/// A 3-node loopback cluster in `dir/nodes` and the URL of one of its followers.
pub(super) fn start(dir: &std::path::Path) -> anyhow::Result<(LocalCluster, String)> {
    let cluster = LocalCluster::start(&dir.join("nodes"), 3, &[])?;
    let leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    let follower = cluster
        .nodes
        .iter()
        .find(|n| n.node_id != leader)
        .ok_or_else(|| anyhow::anyhow!("no follower"))?;
    let url = format!("http://{}", follower.http);
    Ok((cluster, url))
}

fn submit(url: &str) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| "shoal".into()));
    c.args(["submit", "--node", url]);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

fn stats(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let median = if v.len() % 2 == 1 {
        v[v.len() / 2]
    } else {
        (v[v.len() / 2 - 1] + v[v.len() / 2]) / 2.0
    };
    (v[0], median, v[v.len() - 1])
}

/// Run `shoal bench latency`.
pub fn latency(args: LatencyArgs) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let (_cluster, url) = start(dir.path())?;
    let input = dir.path().join("ten-lines.txt");
    std::fs::write(
        &input,
        (0..10)
            .map(|i| format!("the quick brown fox {i} jumps over the lazy dog\n"))
            .collect::<String>(),
    )?;
    let map_py = dir.path().join("map.py");
    std::fs::write(&map_py, MAP_PY)?;
    let input = input.to_string_lossy().into_owned();
    let map_py = map_py.to_string_lossy().into_owned();
    println!(
        "latency of a 10-line job on a 3-node loopback cluster, `shoal submit --wait` start to exit, {} trials each",
        args.trials
    );
    let kinds: [(&str, Vec<&str>, f64); 2] = [
        ("native app (wordcount)", vec!["--app", "wordcount"], 0.050),
        (
            "Python streaming mapper",
            vec!["--map", &map_py, "--reduce", "uniq -c"],
            0.200,
        ),
    ];
    for (name, job, goal) in kinds {
        // One untimed run warms the page cache and Python's bytecode cache.
        let mut times = Vec::new();
        for trial in 0..=args.trials {
            let t = Instant::now();
            let status = submit(&url)
                .args(["--input", &input, "--wait"])
                .args(&job)
                .status()?;
            anyhow::ensure!(status.success(), "the {name} job failed ({status})");
            if trial > 0 {
                times.push(t.elapsed().as_secs_f64());
            }
        }
        let (min, median, max) = stats(times);
        println!(
            "  {name:<24} min {:>4.0} ms  median {:>4.0} ms  max {:>4.0} ms  (goal < {:.0} ms{})",
            min * 1e3,
            median * 1e3,
            max * 1e3,
            goal * 1e3,
            if median < goal { "" } else { ": NOT MET" }
        );
    }
    Ok(true)
}

fn term(cluster: &LocalCluster) -> Option<u64> {
    cluster.nodes.first()?.cluster()?["term"].as_u64()
}

/// Run `shoal bench cluster`.
pub fn cluster(args: ClusterArgs) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let corpus = dir.path().join("corpus.txt");
    println!(
        "word count of a {} MiB corpus: `shoal run` (one process, 2 slots) vs a 3-node loopback cluster",
        args.size_mb
    );
    crate::demo::corpus::generate(&corpus, args.size_mb << 20, args.distinct, 42)?;
    let local_out = dir.path().join("out-run");
    let local = super::measure_local_wordcount(&corpus, &local_out, &["--slots", "2"])?;
    let (cluster, url) = start(dir.path())?;
    let term_before = term(&cluster);
    let cluster_out = dir.path().join("out-cluster");
    let t = Instant::now();
    let status = submit(&url)
        .args(["--app", "wordcount", "-R", "3", "--input"])
        .arg(&corpus)
        .arg("--output")
        .arg(&cluster_out)
        .status()?;
    let on_cluster = t.elapsed().as_secs_f64();
    anyhow::ensure!(status.success(), "the cluster job failed ({status})");
    let term_after = term(&cluster);
    anyhow::ensure!(
        read_counts(&local_out)? == read_counts(&cluster_out)?,
        "the cluster's word count differs from shoal run's"
    );
    let mib = args.size_mb as f64;
    println!(
        "  shoal run              {:>7.2} s  {:>6.0} MiB/s",
        local.secs,
        mib / local.secs
    );
    println!(
        "  3-node cluster         {on_cluster:>7.2} s  {:>6.0} MiB/s  (upload, 2 copies of every split and part, shuffle over libp2p)",
        mib / on_cluster
    );
    println!(
        "  price of distribution on one machine: {:.2}x; outputs identical; Raft term {} before, {} after{}",
        on_cluster / local.secs,
        term_before.map_or("?".into(), |t| t.to_string()),
        term_after.map_or("?".into(), |t| t.to_string()),
        if term_before == term_after {
            " (no election while the slots were busy)"
        } else {
            " — AN ELECTION HAPPENED WHILE THE SLOTS WERE BUSY"
        }
    );
    Ok(term_before == term_after)
}

/// `shoal bench stall` flags.
#[derive(Debug, Args)]
pub struct StallArgs {
    /// Manager kills to time.
    #[arg(long, default_value_t = 10)]
    trials: usize,
}

/// Run `shoal bench stall`: the job stall after a manager's `kill -9` — from the kill until
/// the job's count of finished maps moves again, seen from the follower the job was
/// submitted to.
pub fn stall(args: StallArgs) -> anyhow::Result<bool> {
    super::in_kept_dir_on_error(|dir| stall_trials(&args, dir))
}

fn stall_trials(args: &StallArgs, dir: &std::path::Path) -> anyhow::Result<bool> {
    let mut cluster = LocalCluster::start(&dir.join("nodes"), 3, &["--node-timeout", "2"])?;
    let mut leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    let input = dir.join("in");
    std::fs::create_dir_all(&input)?;
    for f in 0..40 {
        std::fs::write(input.join(format!("f{f:02}.txt")), format!("a b c f{f}\n"))?;
    }
    println!(
        "job stall after kill -9 of the manager: 40 maps of 0.3 s on 3 nodes × 2 slots, {} trials",
        args.trials
    );
    let mut stalls = Vec::new();
    for trial in 1..=args.trials {
        let li = cluster
            .index_of(&leader)
            .ok_or_else(|| anyhow::anyhow!("unknown leader"))?;
        let fi = (li + 1) % 3;
        let http = cluster.nodes[fi].http.clone();
        let out = dir.join(format!("out-{trial}"));
        let child = submit(&format!("http://{http}"))
            .arg("--input")
            .arg(&input)
            .args([
                "--map",
                "sleep 0.3; tr ' ' '\\n'",
                "--reduce",
                "uniq -c",
                "--output",
            ])
            .arg(&out)
            .spawn()?;
        let maps_done = |http: &str| -> Option<u64> {
            let jobs = crate::demo::local_cluster::get_json(http, "/api/v1/jobs")?;
            jobs.as_array()?.first()?["maps"]["done"].as_u64()
        };
        let before = crate::demo::local_cluster::wait_for(
            Duration::from_secs(60),
            "some maps done",
            || maps_done(&http).filter(|&d| (6..30).contains(&d)),
        )?;
        let killed = Instant::now();
        cluster.nodes[li].kill();
        // Completions count once a new manager is in place (one the old manager committed
        // just before dying could otherwise look like a resumption).
        let old = leader.clone();
        crate::demo::local_cluster::wait_for(Duration::from_secs(30), "a new manager", || {
            cluster.nodes[fi].leader().filter(|l| *l != old)
        })?;
        crate::demo::local_cluster::wait_for(
            Duration::from_secs(60),
            "completions to resume",
            || maps_done(&http).filter(|&d| d > before),
        )?;
        let secs = killed.elapsed().as_secs_f64();
        let o = child.wait_with_output()?;
        anyhow::ensure!(o.status.success(), "the job of trial {trial} failed");
        let counts = read_counts(&out)?;
        anyhow::ensure!(
            counts.get(b"a".as_slice()) == Some(&40) && counts.len() == 43,
            "trial {trial}: the output is wrong"
        );
        println!("trial {trial:>2}: completions resumed {secs:.3} s after the kill");
        stalls.push(secs);
        cluster.nodes[li].restart()?;
        leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    }
    let (min, median, max) = stats(stalls);
    println!(
        "job stall over {} kills: min {min:.3} s, median {median:.3} s, max {max:.3} s (goal: median < 2 s{})",
        args.trials,
        if median < 2.0 { "" } else { ": NOT MET" }
    );
    Ok(true)
}
