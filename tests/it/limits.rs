//! The cluster's bounds hold without wedging it: a node that joins after 200 retained jobs
//! catches up (through a snapshot: its peers keep little log), and a job of 100,000 input
//! files is refused at submit with the bound named — and runs once its files are combined
//! into splits. Real `shoal node` processes on 127.0.0.1, one cluster test at a time.

use std::time::Instant;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

fn applied(node: &NodeProc) -> Option<u64> {
    node.cluster()?["applied"]["index"].as_u64()
}

/// Jobs in `node`'s table that ended, and all of them.
fn jobs_ended(node: &NodeProc) -> Option<(usize, usize)> {
    let v = http_get_json(&node.http, "/api/v1/jobs?tasks=false")?;
    let jobs = v.as_array()?;
    let ended = jobs.iter().filter(|j| j["state"] != "running").count();
    Some((ended, jobs.len()))
}

#[test]
fn a_node_joining_after_200_jobs_catches_up_and_100000_input_files_are_refused_or_combined() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let nodes_dir = dir.path().join("nodes");
    let args = [
        "--expect",
        "3",
        "--slots",
        "2",
        "--retain-jobs",
        "250",
        "--snapshot-every",
        "300",
    ];
    let nodes = start_cluster(&nodes_dir, 3, &args);
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let url = format!("http://{}", nodes[0].http);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    // Ten submissions at a time, as ten users would.
    for _ in 0..20 {
        let batch: Vec<std::process::Child> = (0..10)
            .map(|_| {
                shoal()
                    .args(["submit", "--node", &url, "--app", "wordcount", "--input"])
                    .arg(&input)
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap()
            })
            .collect();
        for child in batch {
            let o = child.wait_with_output().unwrap();
            assert!(o.status.success(), "{}", text(&o));
        }
    }
    wait_for(180, "200 jobs to end", || {
        let (ended, all) = jobs_ended(&nodes[0])?;
        (ended == 200 && all == 200).then_some(())
    });

    // A fourth node joins: the log it missed is mostly folded into a snapshot.
    let target = applied(&nodes[0]).unwrap();
    let mut joiner: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    joiner.extend(["--peer".to_string(), nodes[0].peer_addr()]);
    let started = Instant::now();
    let fourth = NodeProc::start(&nodes_dir, "n4", &joiner);
    wait_for(60, "the new node to catch up", || {
        (applied(&fourth)? >= target).then_some(())
    });
    println!(
        "a node joining after 200 jobs ({target} log entries) caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(
        fourth
            .log_text()
            .contains("installed a snapshot from the leader"),
        "the joiner caught up without a snapshot"
    );
    let (ended, all) = jobs_ended(&fourth).unwrap();
    assert_eq!((ended, all), (200, 200), "the joiner's table");

    // 100,000 input files: over the split bound, refused at submit with the bound named,
    // and the cluster goes on committing.
    let many = dir.path().join("many");
    std::fs::create_dir(&many).unwrap();
    let mut text_all = String::new();
    for i in 0..100_000 {
        let line = format!("w{} x{}\n", i % 97, i % 5);
        std::fs::write(many.join(format!("f{i:06}.txt")), &line).unwrap();
        text_all.push_str(&line);
    }
    let started = Instant::now();
    let o = run(shoal()
        .args(["submit", "--node", &url, "--app", "wordcount", "--input"])
        .arg(&many));
    println!(
        "100,000 input files refused in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("more than 50000 splits") && err.contains("--combine-files"),
        "{err}"
    );
    let before = applied(&nodes[0]).unwrap();

    // Combined into splits, the same files fit, and the job runs.
    let started = Instant::now();
    let out = dir.path().join("out");
    let o = run(shoal()
        .args([
            "submit",
            "--node",
            &url,
            "--app",
            "wordcount",
            "--combine-files",
        ])
        .args(["--wait", "--output"])
        .arg(&out)
        .arg("--input")
        .arg(&many));
    assert!(o.status.success(), "{}", text(&o));
    println!(
        "100,000 input files combined into splits: uploaded, run and fetched in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    assert!(applied(&nodes[0]).unwrap() > before);
    let got: Vec<Vec<u8>> = std::fs::read_dir(&out)
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("part-"))
        .map(|e| std::fs::read(e.path()).unwrap())
        .collect();
    assert_eq!(tab_counts(&got), word_counts(&text_all));
}
