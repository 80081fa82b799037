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

use crate::demo::corpus::read_counts;
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
    /// The jobs' `--replication` (extra copies of each split and part; the job's default
    /// when not given): 0 shows what the copies cost.
    #[arg(long)]
    replication: Option<u32>,
    /// Each node's `--slots`. When not given, the nodes take their default: they share
    /// this machine's cores, so three nodes on two cores run one task each at once.
    #[arg(long)]
    node_slots: Option<usize>,
    /// Rounds of `shoal run` and the two cluster jobs, one after the other: the price is
    /// the median over the rounds, each job against the `shoal run` just before it.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
}

const MAP_PY: &str = "#!/usr/bin/env python3\nimport sys\nfor line in sys.stdin:\n    for w in line.split():\n        print(w + '\\t1')\n";

/// A 3-node loopback cluster in `dir/nodes` and the URL of one of its followers.
pub(super) fn start(dir: &std::path::Path) -> anyhow::Result<(LocalCluster, String)> {
    start_with(dir, &[])
}

/// [`start`], each node with `extra` flags.
fn start_with(dir: &std::path::Path, extra: &[&str]) -> anyhow::Result<(LocalCluster, String)> {
    let cluster = LocalCluster::start(&dir.join("nodes"), 3, extra)?;
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

/// Run `shoal bench cluster`: the word count with `shoal run`, then on the cluster with
/// the corpus uploaded and read in place (`shared:`, every node's `--input-root` the same
/// directory, as an NFS mount would be); each cluster job's time cut into its phases.
pub fn cluster(args: ClusterArgs) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("input");
    std::fs::create_dir_all(&root)?;
    let corpus = root.join("corpus.txt");
    let cores = shoal_jobs::pool::default_slots();
    let each = match args.node_slots {
        Some(n) => format!("{n} slot(s) each, given"),
        None => format!(
            "{} slot(s) each, their default share of the cores",
            cores.div_ceil(3)
        ),
    };
    println!(
        "word count of a {} MiB corpus: `shoal run` (one process, 2 slots) vs a 3-node loopback cluster ({each}) on this machine's {cores} cores",
        args.size_mb,
    );
    crate::demo::corpus::generate(&corpus, args.size_mb << 20, args.distinct, 42)?;
    // The three nodes share this one disk: its write rate, measured in the same run, is what
    // copies written as bytes would wait on (nodes of one host link them instead).
    let disk = super::disk_write_rate(dir.path(), args.size_mb.clamp(64, 1024) << 20)?
        / f64::from(1 << 20);
    println!(
        "  this disk               {disk:>6.0} MiB/s  writing a {} MiB file and syncing it: the three nodes share it",
        args.size_mb.clamp(64, 1024)
    );
    let root_arg = root.to_string_lossy().into_owned();
    let slots = args.node_slots.map(|n| n.to_string());
    let mut node_args = vec!["--input-root", &root_arg];
    if let Some(n) = &slots {
        node_args.extend(["--slots", n]);
    }
    let (cluster, url) = start_with(dir.path(), &node_args)?;
    let term_before = term(&cluster);
    let mut ok = true;
    let corpus_bytes = std::fs::metadata(&corpus)?.len() as i64;
    // Every split of the upload on each of the other two nodes, as far as the replication asks.
    let copies = i64::from(
        args.replication
            .unwrap_or(shoal_jobs::spec::DEFAULT_REPLICATION)
            .min(2),
    );
    let kinds = [
        (
            "uploaded",
            corpus.to_string_lossy().into_owned(),
            1.5,
            corpus_bytes,
        ),
        ("shared:", "shared:corpus.txt".to_string(), 1.2, 0),
    ];
    // This machine's speed drifts by a third from minute to minute (the same `shoal run`
    // takes 30 to 41 CPU seconds): each round measures `shoal run` again just before the
    // cluster's jobs, and the price is the median over the rounds.
    let mut prices: Vec<Vec<f64>> = vec![Vec::new(); kinds.len()];
    for round in 1..=args.rounds.max(1) {
        let local_out = dir.path().join(format!("out-run-{round}"));
        let local = super::measure_local_wordcount(&corpus, &local_out, &["--slots", "2"])?;
        println!(
            "  round {round}: shoal run     {:>7.2} s  {:>6.0} MiB/s  CPU {:.2} s",
            local.secs,
            args.size_mb as f64 / local.secs,
            local.cpu_secs
        );
        for (k, (label, input, goal, stored)) in kinds.iter().enumerate() {
            let job = ClusterJob {
                cluster: &cluster,
                url: &url,
                label,
                input,
                goal: *goal,
                out: dir
                    .path()
                    .join(format!("out-{}-{round}", label.trim_end_matches(':'))),
                replication: args.replication,
            };
            let (secs, same) = job.run(&local, &local_out, (*stored, *stored * copies))?;
            ok &= same;
            prices[k].push(secs / local.secs);
        }
    }
    for ((label, _, goal, _), mut p) in kinds.iter().zip(prices) {
        p.sort_by(f64::total_cmp);
        let median = p[p.len() / 2];
        println!(
            "  price of distribution, {label:<9} {median:.2}x, the median of {} round(s) ({}) (goal <= {goal}x: {})",
            p.len(),
            p.iter().map(|x| format!("{x:.2}x")).collect::<Vec<_>>().join(", "),
            if median <= *goal { "met" } else { "NOT met" },
        );
    }
    let term_after = term(&cluster);
    println!(
        "  Raft term {} before, {} after{}",
        term_before.map_or("?".into(), |t| t.to_string()),
        term_after.map_or("?".into(), |t| t.to_string()),
        if term_before == term_after {
            " (no election while the slots were busy)"
        } else {
            " — AN ELECTION HAPPENED WHILE THE SLOTS WERE BUSY"
        }
    );
    Ok(ok && term_before == term_after)
}

/// One word count of the bench on the cluster.
struct ClusterJob<'a> {
    cluster: &'a LocalCluster,
    /// The node it is submitted to.
    url: &'a str,
    label: &'a str,
    /// `--input`.
    input: &'a str,
    /// The price of distribution it should stay under.
    goal: f64,
    out: std::path::PathBuf,
    replication: Option<u32>,
}

impl ClusterJob<'_> {
    /// Run it beside `shoal run`'s measure and output, print its time, CPU and phases, and
    /// check its counters against `expected` (bytes uploaded, bytes copied); its seconds,
    /// and whether its output and counters are right.
    fn run(
        &self,
        local: &super::Measured,
        local_out: &std::path::Path,
        expected: (i64, i64),
    ) -> anyhow::Result<(f64, bool)> {
        let (cluster, label) = (self.cluster, self.label);
        // What the node taking the upload sends as hard links (its host's other nodes).
        let linked = || -> f64 {
            cluster
                .nodes
                .iter()
                .find(|n| self.url.ends_with(&n.http))
                .and_then(|n| n.cluster())
                .and_then(|v| v["linked_bytes"].as_f64())
                .unwrap_or(0.0)
        };
        let nodes_cpu = || -> f64 {
            cluster
                .nodes
                .iter()
                .filter_map(|n| super::cpu_secs_of(n.child.as_ref()?.id()))
                .sum()
        };
        let (linked_before, nodes_cpu_before, client_cpu_before) =
            (linked(), nodes_cpu(), super::children_cpu_secs());
        let started = now_ms();
        let t = Instant::now();
        let replication: Vec<String> = self
            .replication
            .map(|r| vec!["--replication".into(), r.to_string()])
            .unwrap_or_default();
        let o = submit(self.url)
            .args(["--app", "wordcount", "-R", "3", "--input", self.input])
            .args(&replication)
            .arg("--output")
            .arg(&self.out)
            .stdout(std::process::Stdio::piped())
            .output()?;
        let secs = t.elapsed().as_secs_f64();
        let (nodes_cpu, client_cpu) = (
            nodes_cpu() - nodes_cpu_before,
            super::children_cpu_secs() - client_cpu_before,
        );
        anyhow::ensure!(
            o.status.success(),
            "the {label} cluster job failed ({})",
            o.status
        );
        let id = super::first_line(&o.stdout);
        let same = read_counts(local_out)? == read_counts(&self.out)?;
        let price = secs / local.secs;
        println!(
            "    3-node cluster, {label:<9}{secs:>7.2} s  price of distribution {price:.2}x (goal <= {}x: {}); output {}",
            self.goal,
            if price <= self.goal { "met" } else { "NOT met" },
            if same { "identical" } else { "DIFFERS" }
        );
        // CPU, beside `shoal run`'s: more means work the cluster adds, the same means the
        // time went to waiting or to tasks contending for the cores.
        println!(
            "      {:<38}{:>7.2} s  the three nodes {nodes_cpu:.2} s and the client {client_cpu:.2} s ({:.2}x shoal run's)",
            "CPU",
            nodes_cpu + client_cpu,
            (nodes_cpu + client_cpu) / local.cpu_secs.max(0.001)
        );
        let view = cluster
            .nodes
            .first()
            .and_then(|n| n.get(&format!("/api/v1/jobs/{id}")))
            .map(|(_, v)| v);
        let Some(view) = view else {
            println!("      (the job's view could not be read: no phases)");
            return Ok((secs, false));
        };
        let linked_mib = (linked() - linked_before) / f64::from(1 << 20);
        match phases(&view, started, now_ms(), linked_mib) {
            Some(p) => print!("{p}"),
            None => println!("      (the job's view has no attempt times: no phases)"),
        }
        // What the job's counters say was stored and copied: all of an upload, none of a
        // `shared:` input.
        let got = (
            counter(&view, "input_uploaded_bytes") as i64,
            counter(&view, "input_copied_bytes") as i64,
        );
        if got != expected {
            println!(
                "      COUNTERS DIFFER: {} bytes uploaded and {} copied; {} and {} expected",
                got.0, got.1, expected.0, expected.1
            );
        }
        Ok((secs, same && got == expected))
    }
}

pub(super) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Where a cluster job's time went, from its view and counters and the client's start and
/// end (ms): the submission (the upload read and cut into splits, the splits' copies, the
/// rest: the client and the proposal), the wait for the first map, the map phase, the
/// reduce phase (with the attempts' shuffle fetches and part copies), the end (the last
/// report to the job's end), the output's download; and the task time summed over
/// attempts.
pub(super) fn phases(
    view: &serde_json::Value,
    started: u64,
    ended: u64,
    linked_mib: f64,
) -> Option<String> {
    let submitted = view["submitted_ms"].as_u64()?;
    let finished = view["finished_ms"].as_u64()?;
    let attempts = |kind: &str| -> Vec<(u64, u64)> {
        view["tasks"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|t| t["kind"] == kind)
            .flat_map(|t| t["attempts"].as_array().into_iter().flatten())
            .filter_map(|a| Some((a["start_ms"].as_u64()?, a["end_ms"].as_u64()?)))
            .collect()
    };
    let (maps, reduces) = (attempts("map"), attempts("reduce"));
    let first_map = maps.iter().map(|a| a.0).min()?;
    let last_map = maps.iter().map(|a| a.1).max()?;
    let last_reduce = reduces.iter().map(|a| a.1).max().unwrap_or(last_map);
    let secs = |a: u64, b: u64| b.saturating_sub(a) as f64 / 1000.0;
    let busy = |v: &[(u64, u64)]| v.iter().map(|a| secs(a.0, a.1)).sum::<f64>();
    // The job's own counters: what the submitting node and the attempts measured.
    let counter = |name: &str| counter(view, name);
    let (upload, copies) = (
        counter("submission_upload_ms") / 1e3,
        counter("submission_copy_ms") / 1e3,
    );
    let submission = secs(started, submitted);
    let mib = |name: &str| counter(name) / f64::from(1 << 20);
    let rows = [
        ("submission", submission, String::new()),
        (
            "  upload (read, cut, stored)",
            upload,
            format!("{:.0} MiB", mib("input_uploaded_bytes")),
        ),
        (
            "  copies of the splits",
            copies,
            format!(
                "{:.0} MiB copied, {linked_mib:.0} MiB of it as hard links (nodes of one host)",
                mib("input_copied_bytes")
            ),
        ),
        (
            "  client and proposal",
            (submission - upload - copies).max(0.0),
            String::new(),
        ),
        ("until the first map starts", secs(submitted, first_map), String::new()),
        ("maps", secs(first_map, last_map), String::new()),
        (
            "reduces",
            secs(last_map, last_reduce),
            format!(
                "shuffle fetches {:.2} s, part copies {:.2} s (summed over attempts); {:.0} MiB fetched",
                counter("shuffle_fetch_ms") / 1e3,
                counter("output_copy_ms") / 1e3,
                mib("shuffle_fetched_bytes")
            ),
        ),
        ("until the job ends", secs(last_reduce, finished), String::new()),
        ("output fetched to the client", secs(finished, ended), String::new()),
    ];
    let mut out = String::new();
    for (name, s, note) in rows {
        out.push_str(format!("      {name:<38}{s:>7.2} s  {note}").trim_end());
        out.push('\n');
    }
    out.push_str(&format!(
        "      task time: {} map attempts {:.1} s, {} reduce attempts {:.1} s\n",
        maps.len(),
        busy(&maps),
        reduces.len(),
        busy(&reduces)
    ));
    Some(out)
}

/// MiB/s writing `bytes` to a new file in `dir` and syncing it; the file is deleted.
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
    // Two slots each, given: three nodes of this host would otherwise share its cores.
    let mut cluster = LocalCluster::start(
        &dir.join("nodes"),
        3,
        &["--node-timeout", "2", "--slots", "2"],
    )?;
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

/// Counter `name` of the job's view (its `shoal` group); 0 when it has none.
fn counter(view: &serde_json::Value, name: &str) -> f64 {
    view["counters"]["shoal"][name].as_f64().unwrap_or(0.0)
}
