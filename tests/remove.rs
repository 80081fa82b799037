//! `shoal remove` of a voter on a five-node cluster: it is drained, leaves the membership
//! (no learner to take its place, so the voters go from five to four — never below three),
//! and its process exits 0; the four go on running jobs. Five real `shoal node` processes on
//! 127.0.0.1.

mod common;

use common::cluster::*;
use common::*;

#[test]
fn a_removed_voter_leaves_four_voters_and_its_process_exits_0() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
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
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b a\n").unwrap();
    let out = dir.path().join("out");
    let o = run(shoal()
        .args(["submit", "--node", &url, "--app", "wordcount", "--wait"])
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
