//! `shoal demo`: what Shoal does, on this machine, in one command. Starts three nodes on
//! 127.0.0.1 (mDNS off), shows the cluster electing a manager, submits a word count to a follower with `shoal submit --output`, kills the manager with
//! `kill -9` a quarter of the way through and shows the new manager finishing the job (where
//! every attempt ran, which were lost), restarts the killed node and shows it rejoin, checks
//! the output against an independent count, then stops the nodes cleanly.

pub mod corpus;
pub mod local_cluster;

use std::collections::HashMap;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use crate::demo::local_cluster::{wait_for, LocalCluster};
use shoal_node::http::view::ClusterView;

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
    crate::show::print_view(&v);
    Ok(())
}

/// Each node's map and reduce attempts of the job `v` (its JSON), and those lost.
fn print_attempts_per_node(v: &serde_json::Value, leader: &str) {
    let mut per_node: std::collections::BTreeMap<String, (u32, u32, u32)> = Default::default();
    for t in v["tasks"].as_array().into_iter().flatten() {
        for a in t["attempts"].as_array().into_iter().flatten() {
            let e = per_node
                .entry(a["node"].as_str().unwrap_or("?").to_string())
                .or_default();
            match (t["kind"].as_str(), a["lost"].as_bool()) {
                (_, Some(true)) => e.2 += 1,
                (Some("map"), _) => e.0 += 1,
                _ => e.1 += 1,
            }
        }
    }
    for (node, (m, r, lost)) in &per_node {
        let note = if *node == leader {
            "  (the killed manager)"
        } else {
            ""
        };
        println!("   node {node}: {m} map and {r} reduce attempt(s), {lost} lost{note}");
    }
}

/// Check the output in `out` against an independent count of `corpus`; show the top words.
fn check_and_show(
    corpus: &std::path::Path,
    out: &std::path::Path,
    job: &str,
    secs: f64,
) -> anyhow::Result<()> {
    let got = crate::demo::corpus::read_counts(out)?;
    let text = std::fs::read(corpus)?;
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
        "   job {job} succeeded in {secs:.2} s (upload and the failover included); {} distinct words; output checked against an independent count",
        got.len()
    );
    for (w, n) in top.iter().take(5) {
        println!("   {:>10}  {}", n, String::from_utf8_lossy(w));
    }
    println!(
        "   output: {} (also on the cluster: shoal output {job} --dir DIR)",
        out.display()
    );
    Ok(())
}

fn demo(dir: &std::path::Path) -> anyhow::Result<()> {
    println!(
        "== starting 3 Shoal nodes on 127.0.0.1 (mDNS off, --node-timeout 2, data in {})",
        dir.display()
    );
    let started = Instant::now();
    let mut cluster = LocalCluster::start(dir, 3, &["--node-timeout", "2"])?;
    let leader = cluster.wait_agreed(3, Duration::from_secs(60))?;
    println!(
        "   formed one cluster and elected a manager in {:.2} s\n",
        started.elapsed().as_secs_f64()
    );
    show(&cluster, 0)?;
    let li = cluster
        .index_of(&leader)
        .ok_or_else(|| anyhow::anyhow!("unknown leader"))?;
    let follower = (li + 1) % 3;

    let corpus = dir.join("corpus.txt");
    crate::demo::corpus::generate(&corpus, 96 << 20, 50_000, 7)?;
    let out = dir.join("wordcount");
    println!(
        "\n== word count of a 96 MiB corpus, submitted to a follower (node {})",
        cluster.nodes[follower].node_id
    );
    let url = format!("http://{}", cluster.nodes[follower].http);
    println!(
        "   $ shoal submit --node {url} --input corpus.txt --app wordcount -R 3 --split-size 2097152 --output wordcount"
    );
    let t = Instant::now();
    let exe = std::env::current_exe()?;
    let child = std::process::Command::new(exe)
        .args(["submit", "--node", &url, "--input"])
        .arg(&corpus)
        .args([
            "--app",
            "wordcount",
            "-R",
            "3",
            "--split-size",
            "2097152",
            "--output",
        ])
        .arg(&out)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .spawn()?;
    // Mid-job: once a quarter of the maps are done, the manager dies.
    wait_for(
        Duration::from_secs(60),
        "the job to be a quarter done",
        || {
            let jobs = crate::demo::local_cluster::get_json(
                &cluster.nodes[follower].http,
                "/api/v1/jobs",
            )?;
            let j = jobs.as_array()?.first()?.clone();
            let (done, total) = (j["maps"]["done"].as_u64()?, j["maps"]["total"].as_u64()?);
            (total > 0 && done * 4 >= total && done < total).then_some(())
        },
    )?;
    println!("\n== kill -9 of the manager (node {leader}) in the middle of the job");
    let killed = Instant::now();
    cluster.nodes[li].kill();
    let new_leader = wait_for(Duration::from_secs(30), "a new manager", || {
        cluster.nodes[follower].leader().filter(|l| *l != leader)
    })?;
    println!(
        "   node {new_leader} took over after {:.2} s; it carries on with the job from the replicated job table\n",
        killed.elapsed().as_secs_f64()
    );
    let o = child.wait_with_output()?;
    anyhow::ensure!(o.status.success(), "shoal submit failed ({})", o.status);
    let secs = t.elapsed().as_secs_f64();
    let job = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string();
    let v = crate::demo::local_cluster::get_json(
        &cluster.nodes[follower].http,
        &format!("/api/v1/jobs/{job}"),
    )
    .ok_or_else(|| anyhow::anyhow!("the follower did not answer"))?;
    print_attempts_per_node(&v, &leader);

    println!("\n== restarting the killed node with its data dir");
    cluster.nodes[li].restart()?;
    cluster.wait_agreed(3, Duration::from_secs(60))?;
    println!("   it rejoined as a follower, with its log; three voters again\n");
    show(&cluster, li)?;
    println!();

    check_and_show(&corpus, &out, &job, secs)?;

    println!("\n== stopping the nodes (SIGTERM)");
    for n in &mut cluster.nodes {
        n.stop();
    }
    println!("   done. Next: `shoal node --local` in three directories of this machine, or `shoal node` on each machine of a LAN (see README.md).");
    Ok(())
}
