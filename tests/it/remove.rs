//! `shoal remove` of a voter on a five-node cluster: it is drained, leaves the membership
//! (no learner to take its place, so the voters go from five to four — never below three),
//! and its process exits 0; the four go on running jobs. Five real `shoal node` processes on
//! 127.0.0.1. And a plain worker (beyond `--learners 0`), after it ran a job submitted to it,
//! leaves the same way.

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

#[test]
fn a_removed_voter_leaves_four_voters_and_its_process_exits_0() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = start_cluster(&dir.path().join("nodes"), 5, &["--expect", "5"]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 5, 90);
    let gone = nodes
        .iter()
        .position(|n| n.node_id != leader)
        .expect("a follower");
    let id = nodes[gone].node_id.clone();
    let via = (gone + 1) % 5;
    let url = format!("http://{}", nodes[via].http);
    let mut child = nodes[gone].child.take().unwrap();

    let o = run(shoal().args(["remove", &id, "--wait", "--node", &url]));
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("left the cluster"), "{said}");
    let status = wait_for(30, "the removed node's process to exit", || {
        child.try_wait().unwrap()
    });
    assert!(
        status.success(),
        "it exits 0: {status:?}\n{}",
        nodes[gone].log_text()
    );
    assert!(
        nodes[gone].log_text().contains("left the cluster"),
        "{}",
        nodes[gone].log_text()
    );

    let rest: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != gone)
        .map(|(_, n)| n)
        .collect();
    wait_agreed(&rest, 4, 30);
    let view = nodes[via].cluster().unwrap();
    assert_eq!(members(&view, "voter").len(), 4, "{view}");
    assert!(members(&view, "learner").is_empty(), "{view}");
    assert!(
        !view["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == id.as_str()),
        "{view}"
    );

    // The four go on: a job runs to the end.
    a_word_count_runs_through(dir.path(), &url);
}

/// A word count of "a b a" submitted to the node at `url` with `--wait` gives its counts.
fn a_word_count_runs_through(dir: &std::path::Path, url: &str) {
    let input = dir.join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let out = dir.join("out");
    let o = run(shoal()
        .args(["submit", "--node", url, "--app", "wordcount", "--wait"])
        .arg("--input")
        .arg(&input)
        .arg("--output")
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(out.join("part-00000")).unwrap(),
        "a\t2\nb\t1\n"
    );
}

#[test]
fn a_removed_plain_worker_leaves_and_its_process_exits_0() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = start_cluster(
        &dir.path().join("nodes"),
        4,
        &["--expect", "3", "--voters", "3", "--learners", "0"],
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 90);
    let worker = wait_for(60, "one plain worker", || {
        let w = members(&nodes[0].cluster()?, "worker");
        (w.len() == 1).then(|| w[0].clone())
    });
    let gone = nodes.iter().position(|n| n.node_id == worker).unwrap();
    // A job submitted to the worker, as to any node, runs and its output comes back.
    a_word_count_runs_through(dir.path(), &format!("http://{}", nodes[gone].http));
    let via = (gone + 1) % 4;
    let url = format!("http://{}", nodes[via].http);
    let mut child = nodes[gone].child.take().unwrap();
    let o = run(shoal().args(["remove", &worker, "--wait", "--node", &url]));
    assert!(o.status.success(), "{}", text(&o));
    let status = wait_for(30, "the removed worker's process to exit", || {
        child.try_wait().unwrap()
    });
    assert!(
        status.success(),
        "it exits 0: {status:?}\n{}",
        nodes[gone].log_text()
    );
    let view = nodes[via].cluster().unwrap();
    assert_eq!(members(&view, "voter").len(), 3, "{view}");
    assert!(members(&view, "worker").is_empty(), "{view}");
}
