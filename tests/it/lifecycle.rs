//! A node whose own loop dies stops — a non-zero exit, the loop and the panic named in its
//! log — instead of heartbeating while it runs nothing; the other nodes carry on and the job
//! completes elsewhere. Real `shoal node` processes on 127.0.0.1, one cluster test at a time.

use std::process::Stdio;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

#[test]
fn a_node_whose_worker_loop_panics_exits_non_zero_and_the_job_completes_elsewhere() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let (input, all) = small_word_input(dir.path(), 12, 30);

    // Two healthy nodes, and a third whose worker loop panics at its first assignment.
    let nodes_dir = dir.path().join("nodes");
    let base = ["--expect", "3", "--slots", "2", "--node-timeout", "2"];
    let mut nodes = start_cluster(&nodes_dir, 2, &base);
    let mut args: Vec<String> = base.iter().map(|s| s.to_string()).collect();
    args.extend(["--plant".to_string(), "worker-panic".to_string()]);
    for n in &nodes {
        args.extend(["--peer".to_string(), n.peer_addr()]);
    }
    nodes.push(NodeProc::start(&nodes_dir, "n3", &args));
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);

    let out = dir.path().join("out");
    let submit = shoal()
        .args(["submit", "--node", &format!("http://{}", nodes[0].http)])
        .arg("--input")
        .arg(&input)
        .args([
            "--map",
            "while IFS= read -r l; do for w in $l; do echo \"$w\"; done; done",
            "--reduce",
            "uniq -c",
            "-R",
            "3",
        ])
        .arg("--output")
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // The planted node stops by itself, with an error exit and a log line that says why.
    let status = wait_for(60, "the node with a dead worker loop to exit", || {
        nodes[2].child.as_mut().unwrap().try_wait().unwrap()
    });
    nodes[2].child = None;
    assert_eq!(status.code(), Some(1), "the node exits 1: {status:?}");
    let log = nodes[2].log_text();
    assert!(
        log.contains("the worker loop panicked: planted fault"),
        "the log names the loop and the panic: {log}"
    );

    // The job completes on the other two, with the right output.
    let o = submit.wait_with_output().unwrap();
    assert!(o.status.success(), "submit --wait failed: {}", text(&o));
    assert_eq!(uniq_counts(&parts(&out, 3)), word_counts(&all));
    let job_id = job_id(&o);
    let job = job_at(&nodes[1].http, &job_id).unwrap();
    let ran_on_n3 = common::three::tasks(&job)
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.node == nodes[2].node_id)
        .count();
    assert!(
        ran_on_n3 > 0,
        "the dead worker was assigned attempts (they went elsewhere): {job}"
    );
    // The two survivors still agree on a leader.
    wait_for(30, "the survivors to agree on a leader", || {
        let a = leader_of(&nodes[0])?;
        (leader_of(&nodes[1])? == a).then_some(())
    });
}
