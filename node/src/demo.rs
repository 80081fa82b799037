//! `shoal demo`: what Shoal does, on this machine, in one command. Starts three nodes on
//! 127.0.0.1 (mDNS off), shows the cluster electing a manager, kills the manager with
//! `kill -9` and shows the new one taking over, restarts the killed node and shows it
//! rejoin, runs a word count through the engine and checks it against an independent count,
//! then stops the nodes cleanly.
//!
//! Distributed jobs are not built yet; when they are, the word count runs on the cluster
//! and the manager is killed while it runs.

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::local_cluster::{wait_for, LocalCluster};
use crate::view::ClusterView;

/// `shoal demo` flags.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo's directory (data dirs, logs, job output) instead of deleting it.
    #[arg(long)]
    keep: bool,
}

/// Run the demo.
pub fn run(args: DemoArgs) -> ExitCode {
    let dir = match tempfile::Builder::new().prefix("shoal-demo-").tempdir() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("shoal demo: cannot create a working directory: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = demo(dir.path());
    let keep = args.keep || result.is_err();
    if keep {
        let kept = dir.keep();
        println!(
            "\nthe demo's files (node logs, data dirs, output) are in {}",
            kept.display()
        );
    }
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("shoal demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn show(cluster: &LocalCluster, i: usize) -> anyhow::Result<()> {
    let v: ClusterView = serde_json::from_value(
        cluster.nodes[i]
            .cluster()
            .ok_or_else(|| anyhow::anyhow!("node did not answer"))?,
    )?;
    crate::status::print_view(&v);
    Ok(())
}

fn demo(dir: &std::path::Path) -> anyhow::Result<()> {
    println!(
        "== starting 3 Shoal nodes on 127.0.0.1 (mDNS off, data in {})",
        dir.display()
    );
    let started = Instant::now();
    let mut cluster = LocalCluster::start(dir, 3, &[])?;
    let leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    println!(
        "   formed one cluster and elected a manager in {:.2} s\n",
        started.elapsed().as_secs_f64()
    );
    show(&cluster, 0)?;

    let li = cluster
        .index_of(&leader)
        .ok_or_else(|| anyhow::anyhow!("unknown leader"))?;
    println!("\n== kill -9 of the manager (node {leader})");
    let killed = Instant::now();
    cluster.nodes[li].kill();
    let other = (li + 1) % 3;
    let new_leader = wait_for(Duration::from_secs(30), "a new manager", || {
        cluster.nodes[other].leader().filter(|l| *l != leader)
    })?;
    println!(
        "   node {new_leader} took over after {:.2} s\n",
        killed.elapsed().as_secs_f64()
    );
    show(&cluster, other)?;

    println!("\n== restarting the killed node with its data dir");
    cluster.nodes[li].restart()?;
    cluster.wait_agreed(3, Duration::from_secs(60))?;
    println!("   it rejoined as a follower, with its log; three voters again\n");
    show(&cluster, li)?;

    println!(
        "\n== word count through the engine (shoal run, 2 slots) on a generated 32 MiB corpus"
    );
    let corpus = dir.join("corpus.txt");
    crate::corpus::generate(&corpus, 32 << 20, 50_000, 7)?;
    let out = dir.join("wordcount");
    let spec = {
        let mut s = shoal_jobs::JobSpec::new(
            "demo wordcount",
            vec![corpus.to_string_lossy().into_owned()],
            shoal_jobs::spec::JobKind::App("wordcount".into()),
        );
        s.reducers = 3;
        s.split_size = 8 << 20;
        s
    };
    let t = Instant::now();
    let summary = shoal_jobs::local::run_local(&spec, &out, 2, &|_| {})?;
    let secs = t.elapsed().as_secs_f64();
    let got = crate::bench::read_counts(&out)?;
    let text = std::fs::read(&corpus)?;
    let mut want: HashMap<&[u8], u64> = HashMap::new();
    for w in shoal_jobs::apps::words(&text) {
        *want.entry(w).or_insert(0) += 1;
    }
    let same =
        got.len() == want.len() && got.iter().all(|(k, v)| want.get(k.as_slice()) == Some(v));
    anyhow::ensure!(same, "the word count differs from the independent count");
    let mut top: Vec<(&Vec<u8>, &u64)> = got.iter().collect();
    top.sort_by(|a, b| b.1.cmp(a.1));
    println!(
        "   {} map and {} reduce tasks in {secs:.2} s; {} distinct words; output checked against an independent count",
        summary.maps,
        summary.reduces,
        got.len()
    );
    for (w, n) in top.iter().take(5) {
        println!("   {:>10}  {}", n, String::from_utf8_lossy(w));
    }
    println!("   output: {}", out.display());

    println!("\n== stopping the nodes (SIGTERM)");
    for n in &mut cluster.nodes {
        n.stop();
    }
    println!("   done. Next: `shoal node` on each machine of a LAN (see README.md).");
    Ok(())
}
