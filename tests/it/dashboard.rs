//! Seeing the cluster: `/metrics` parses and matches the job's JSON, errors are JSON with
//! the right status, `shoal status --watch` shows the cluster and jobs, old jobs are
//! forgotten past `--retain-jobs`, and — in headless Chromium — a follower's dashboard shows a
//! job rise to "succeeded" and then the new leader after the old one is killed. One cluster
//! test at a time.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};

use crate::common;
use crate::common::cluster::*;
use crate::common::*;
use serde_json::Value;

/// `shoal submit` through `node` with `args`; its job id and output.
fn submit(node: &NodeProc, args: &[&str]) -> (String, std::process::Output) {
    let o = shoal()
        .args(["submit", "--node", &format!("http://{}", node.http)])
        .args(args)
        .output()
        .unwrap();
    let id = job_id(&o);
    (id, o)
}

/// POST a raw multipart body with one `spec` part of JSON text; the status and JSON answer.
fn post_spec(addr: &str, spec: &str) -> (u16, Value) {
    use std::io::Read;
    let boundary = "shoalboundary";
    let body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"spec\"\r\nContent-Type: application/json\r\n\r\n{spec}\r\n--{boundary}--\r\n"
    );
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "POST /api/v1/jobs HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let (head, body) = resp.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[test]
fn metrics_errors_watch_and_retention() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let nodes = start_cluster(
        &dir.path().join("nodes"),
        3,
        &["--expect", "3", "--retain-jobs", "2"],
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let corpus = corpus(dir.path(), 4, 500);
    let input = corpus.to_string_lossy().into_owned();
    let mut ids = Vec::new();
    for i in 0..3 {
        let out = dir.path().join(format!("out-{i}"));
        let (id, o) = submit(
            &nodes[1],
            &[
                "--input",
                &input,
                "--app",
                "wordcount",
                "-R",
                "2",
                "--output",
                &out.to_string_lossy(),
            ],
        );
        assert!(o.status.success(), "{}", text(&o));
        ids.push(id);
    }
    // Past --retain-jobs 2 the oldest is forgotten, and its files with it, on every node.
    wait_for(30, "the oldest job forgotten", || {
        let (status, _) = http_get(&nodes[0].http, &format!("/api/v1/jobs/{}", ids[0]))?;
        (status == 404).then_some(())
    });
    for n in &nodes {
        let gone = n.data.join("blobs").join(&ids[0]);
        wait_for(30, "the forgotten job's files deleted", || {
            (!gone.exists()).then_some(())
        });
    }
    let (_, jobs) = http_get(&nodes[0].http, "/api/v1/jobs").unwrap();
    assert_eq!(jobs.as_array().unwrap().len(), 2, "{jobs}");

    // /metrics parses and agrees with the job's JSON — once the follower has heard, through
    // the leader, every node's heartbeat (they come every second).
    wait_for(10, "every node's heartbeat on the follower", || {
        let c = nodes[2].cluster()?;
        let nodes = c["nodes"].as_array()?;
        (nodes.len() == 3 && nodes.iter().all(|n| !n["heartbeat"].is_null())).then_some(())
    });
    let id = &ids[2];
    let (_, job) = http_get(&nodes[2].http, &format!("/api/v1/jobs/{id}")).unwrap();
    let scrape = scrape(&nodes[2].http);
    for (name, v) in job["counters"]["shoal"].as_object().unwrap() {
        let got = sample(
            &scrape,
            "shoal_job_counter",
            &[("job", id), ("group", "shoal"), ("name", name)],
        );
        assert_eq!(got, Some(v.as_f64().unwrap()), "counter {name}");
    }
    assert_eq!(
        sample(&scrape, "shoal_jobs", &[("state", "succeeded")]),
        Some(2.0)
    );
    let maps_done: f64 = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| j["maps"]["done"].as_f64().unwrap())
        .sum();
    assert_eq!(
        sample(
            &scrape,
            "shoal_tasks",
            &[("kind", "map"), ("state", "done")]
        ),
        Some(maps_done)
    );
    let hist = scrape
        .samples
        .iter()
        .find(|s| s.metric == "shoal_task_duration_seconds" && s.labels.get("kind") == Some("map"))
        .expect("the task-duration histogram");
    match &hist.value {
        prometheus_parse::Value::Histogram(buckets) => {
            let all = buckets.iter().map(|b| b.count).fold(0.0, f64::max);
            assert_eq!(all, maps_done, "every done map attempt is in the histogram");
        }
        other => panic!("not a histogram: {other:?}"),
    }
    let fetched: u64 = nodes
        .iter()
        .map(|n| {
            n.cluster().unwrap()["shuffle"]["fetched_bytes"]
                .as_u64()
                .unwrap()
        })
        .sum();
    assert!(fetched > 0);
    assert!(sample(&scrape, "shoal_raft_term", &[]).unwrap() >= 1.0);
    assert!(sample(&scrape, "shoal_raft_leader_changes_total", &[]).unwrap() >= 1.0);
    assert_eq!(sample(&scrape, "shoal_peers_connected", &[]), Some(2.0));
    for family in [
        "shoal_node_slots",
        "shoal_node_slots_busy",
        "shoal_node_disk_bytes",
    ] {
        let n = scrape.samples.iter().filter(|s| s.metric == family).count();
        assert_eq!(n, 3, "{family}: one sample per node, a follower included");
    }

    // Errors are JSON with the right status.
    let (status, v) = http_get(&nodes[0].http, "/api/v1/jobs/j-nosuchjob").unwrap();
    assert_eq!(status, 404);
    assert!(v["error"].as_str().unwrap().contains("no job"), "{v}");
    let (status, v) = post_spec(
        &nodes[0].http,
        r#"{"inputs": ["x"], "kind": {"App": "wordcount"}, "reducers": 200000}"#,
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"].as_str().unwrap().contains("reducers"), "{v}");
    let (status, v) = post_spec(&nodes[0].http, "{not json");
    assert_eq!(status, 400, "{v}");
    assert!(
        v["error"].as_str().unwrap().contains("malformed spec"),
        "{v}"
    );

    // shoal status --watch, piped: the cluster, then the jobs, as plain lines.
    let mut watch = shoal()
        .args([
            "status",
            "--watch",
            "--node",
            &format!("http://{}", nodes[0].http),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(watch.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.starts_with(id.as_str());
        seen.push(line);
        if done {
            break;
        }
    }
    let _ = watch.kill();
    let _ = watch.wait();
    let all = seen.join("\n");
    assert!(
        all.contains("manager (leader):") && all.contains("NODE"),
        "{all}"
    );
    assert!(
        all.contains(&format!("{id}  ")) || all.contains(id.as_str()),
        "{all}"
    );
    assert!(seen.last().unwrap().contains("succeeded"), "{all}");
}

/// A mapper slow enough that progress can be watched: 40 ms per line.
const SLOW_MAP: &str =
    "while IFS= read -r l; do sleep 0.04; for w in $l; do echo \"$w\"; done; done";

#[test]
fn a_follower_s_dashboard_shows_a_job_succeed_and_the_next_leader() {
    let Some(python) = browser("the dashboard browser test") else {
        return;
    };
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = start_cluster(
        &dir.path().join("nodes"),
        3,
        &["--expect", "3", "--slots", "2", "--node-timeout", "2"],
    );
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let li = nodes.iter().position(|n| n.node_id == leader).unwrap();
    let fi = (li + 1) % 3;
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    for f in 0..12 {
        let t: String = (0..25).map(|i| format!("w{} f{f}\n", i % 7)).collect();
        std::fs::write(input.join(format!("f{f}.txt")), t).unwrap();
    }
    let name = "<b>bold</b><script>window.pwned=1</script>";
    let (id, o) = submit(
        &nodes[fi],
        &[
            "--input",
            &input.to_string_lossy(),
            "--map",
            SLOW_MAP,
            "--reduce",
            "uniq -c",
            "-R",
            "2",
            "--name",
            name,
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut browser = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/browser/dashboard.py"
        ))
        .arg(format!("http://{}", nodes[fi].http))
        .args([&id, name])
        .arg(&shots)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(browser.stdout.take().unwrap()).lines();
    let line = out.next().map(|l| l.unwrap()).unwrap_or_default();
    if !line.starts_with("SUCCEEDED") {
        let o = browser.wait_with_output().unwrap();
        panic!(
            "the browser check failed: {line} {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    assert_eq!(
        line.split_whitespace().nth(1),
        Some(leader.as_str()),
        "the page named the leader"
    );
    nodes[li].kill();
    writeln!(browser.stdin.as_mut().unwrap(), "KILLED {leader}").unwrap();
    let line = out.next().map(|l| l.unwrap()).unwrap_or_default();
    let o = browser.wait_with_output().unwrap();
    assert!(
        line.starts_with("NEW_LEADER"),
        "{line} {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let shown = line.split_whitespace().nth(1).unwrap().to_string();
    let actual = leader_of(&nodes[fi]).unwrap();
    assert_eq!(shown, actual, "the page names the new leader");
    assert_ne!(shown, leader);
    for png in ["cluster.png", "job.png", "failover.png"] {
        let len = std::fs::metadata(shots.join(png))
            .map(|m| m.len())
            .unwrap_or(0);
        assert!(len > 10_000, "{png} saved ({len} bytes)");
    }
    println!("screenshots in {}", shots.display());

    // A node with an API token: the page asks for it once and then shows the cluster.
    let token_file = dir.path().join("api.token");
    std::fs::write(&token_file, "dashboard-token-0123456789\n").unwrap();
    std::fs::create_dir_all(dir.path().join("guarded")).unwrap();
    let guarded = NodeProc::start(
        &dir.path().join("guarded"),
        "g1",
        &[
            "--expect".into(),
            "1".into(),
            "--api-token".into(),
            token_file.to_string_lossy().into_owned(),
        ],
    );
    let o = Command::new(python)
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/it/browser/dashboard.py"
        ))
        .args([
            "token",
            &format!("http://{}", guarded.http),
            "dashboard-token-0123456789",
        ])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("TOKEN_OK"),
        "the page asked for the token once: {}",
        text(&o)
    );
}
