//! Jobs survive `kill -9`: of the manager mid-map and mid-reduce (the client waits through a
//! surviving follower), and of a worker mid-map and mid-reduce (its finished maps run again).
//! Real `shoal node` processes on 127.0.0.1, one cluster test at a time.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use common::cluster::*;
use common::*;
use serde_json::Value;

/// A mapper slow enough to be caught mid-map: 50 ms per line, one word per output line.
const SLOW_MAP: &str =
    "while IFS= read -r l; do sleep 0.05; for w in $l; do echo \"$w\"; done; done";
/// A reducer slow enough to be caught mid-reduce.
const SLOW_REDUCE: &str = "sleep 1.5; uniq -c";

struct Setup {
    dir: tempfile::TempDir,
    input: PathBuf,
    want: Vec<(String, usize)>,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for f in 0..12 {
        let text: String = (0..20)
            .map(|i| format!("w{} w{} f{f}\n", i % 7, (i * f) % 5))
            .collect();
        all.push_str(&text);
        std::fs::write(input.join(format!("f{f}.txt")), text).unwrap();
    }
    Setup {
        dir,
        input,
        want: word_counts(&all),
    }
}

fn start(dir: &Path) -> (Vec<NodeProc>, String) {
    let nodes = start_cluster(
        &dir.join("nodes"),
        3,
        &["--expect", "3", "--slots", "2", "--node-timeout", "2"],
    );
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    (nodes, leader)
}

/// `shoal submit --wait --output OUT` of the slow job through `node`, in the background.
fn submit_slow(s: &Setup, node: &NodeProc, out: &Path) -> Child {
    shoal()
        .args([
            "submit",
            "--node",
            &format!("http://{}", node.http),
            "--input",
        ])
        .arg(&s.input)
        .args(["--map", SLOW_MAP, "--reduce", SLOW_REDUCE, "-R", "3"])
        .arg("--output")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The only job's JSON, as `node` sees it.
fn the_job(node: &NodeProc) -> Option<Value> {
    let jobs = http_get_json(&node.http, "/api/v1/jobs")?;
    jobs.as_array()?.first().cloned()
}

fn done(job: &Value, phase: &str) -> u64 {
    job[phase]["done"].as_u64().unwrap_or(0)
}

fn check_output(s: &Setup, out: &Path) {
    let got = uniq_counts(&parts(out, 3));
    assert_eq!(got, s.want, "the output differs from the reference");
}

fn finish(child: Child) {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "submit --wait failed: {}", text(&o));
}

fn index_of(nodes: &[NodeProc], id: &str) -> usize {
    nodes.iter().position(|n| n.node_id == id).unwrap()
}

#[test]
fn the_manager_killed_mid_map_and_mid_reduce_costs_no_job() {
    let _serial = one_at_a_time();
    let s = setup();
    let (mut nodes, leader) = start(s.dir.path());
    let li = index_of(&nodes, &leader);
    let fi = (li + 1) % 3;

    // Mid-map: some maps done, some not.
    let out = s.dir.path().join("out-map");
    let child = submit_slow(&s, &nodes[fi], &out);
    wait_for(60, "the job mid-map", || {
        let j = the_job(&nodes[fi])?;
        let d = done(&j, "maps");
        (1..12).contains(&d).then_some(())
    });
    nodes[li].kill();
    finish(child);
    check_output(&s, &out);
    let survivors: Vec<&NodeProc> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let new_leader = leader_of(survivors[0]).unwrap();
    assert_ne!(new_leader, leader);

    // Mid-reduce, with the old manager back as a follower: kill the new one.
    nodes[li].restart();
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let li = index_of(&nodes, &new_leader);
    let fi = (li + 1) % 3;
    let out = s.dir.path().join("out-reduce");
    let child = submit_slow(&s, &nodes[fi], &out);
    wait_for(60, "the job mid-reduce", || {
        let jobs = http_get_json(&nodes[fi].http, "/api/v1/jobs")?;
        let j = jobs.as_array()?.first()?.clone();
        (j["phase"] == "reduce" && j["reduces"]["running"].as_u64()? > 0).then_some(())
    });
    nodes[li].kill();
    finish(child);
    check_output(&s, &out);
}

#[test]
fn a_worker_killed_mid_map_and_mid_reduce_has_its_work_redone() {
    let _serial = one_at_a_time();
    let s = setup();
    let (mut nodes, leader) = start(s.dir.path());
    let li = index_of(&nodes, &leader);
    // Submit through the leader; the victim is a follower.
    let vi = (li + 1) % 3;
    let victim = nodes[vi].node_id.clone();

    // Mid-map, once the victim has finished a map (its output lived only there).
    let out = s.dir.path().join("out-map");
    let child = submit_slow(&s, &nodes[li], &out);
    wait_for(60, "a map finished on the victim while others run", || {
        let j = the_job(&nodes[li])?;
        let finished_there = j["tasks"].as_array()?.iter().any(|t| {
            t["kind"] == "map"
                && t["state"] == "done"
                && t["attempts"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|a| a["node"] == victim.as_str() && a["state"] == "done")
                })
        });
        (finished_there && done(&j, "maps") < 12).then_some(())
    });
    nodes[vi].kill();
    finish(child);
    check_output(&s, &out);
    let j = the_job(&nodes[li]).unwrap();
    let redone = j["tasks"].as_array().unwrap().iter().any(|t| {
        let a = t["attempts"].as_array().unwrap();
        a.iter().any(|a| {
            a["node"] == victim.as_str()
                && a["lost"] == true
                && a["error"]
                    .as_str()
                    .unwrap_or("")
                    .contains("output was lost")
        }) && t["state"] == "done"
    });
    assert!(redone, "a finished map of the victim ran again: {j}");

    // Mid-reduce: restart the victim, then kill it while a reduce runs there.
    nodes[vi].restart();
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let out = s.dir.path().join("out-reduce");
    let child = submit_slow(&s, &nodes[li], &out);
    let job_id = wait_for(60, "a reduce running on the victim", || {
        let jobs = http_get_json(&nodes[li].http, "/api/v1/jobs")?;
        let j = jobs.as_array()?.first()?.clone();
        let there = j["tasks"].as_array()?.iter().any(|t| {
            t["kind"] == "reduce"
                && t["attempts"].as_array().is_some_and(|a| {
                    a.iter()
                        .any(|a| a["node"] == victim.as_str() && a["state"] == "running")
                })
        });
        there.then(|| j["id"].as_str().unwrap().to_string())
    });
    nodes[vi].kill();
    finish(child);
    check_output(&s, &out);
    let (_, j) = http_get(&nodes[li].http, &format!("/api/v1/jobs/{job_id}")).unwrap();
    let lost_reduce = j["tasks"].as_array().unwrap().iter().any(|t| {
        t["kind"] == "reduce"
            && t["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|a| a["node"] == victim.as_str() && a["lost"] == true)
    });
    assert!(lost_reduce, "the victim's reduce was declared lost: {j}");
}

#[test]
fn the_manager_and_then_the_next_manager_killed_on_five_nodes_cost_no_job() {
    let _serial = one_at_a_time();
    let s = setup();
    let mut nodes = start_cluster(
        &s.dir.path().join("nodes"),
        5,
        &["--expect", "5", "--slots", "1", "--node-timeout", "2"],
    );
    let first = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 5, 60);
    // The client names every node but the two managers-to-be are unknown: give it all five;
    // it waits through whichever answers.
    let all: Vec<String> = nodes.iter().map(|n| format!("http://{}", n.http)).collect();
    let out = s.dir.path().join("out");
    let child = shoal()
        .args(["submit", "--node", &all.join(","), "--input"])
        .arg(&s.input)
        .args([
            "--map",
            SLOW_MAP,
            "--reduce",
            SLOW_REDUCE,
            "-R",
            "3",
            "--output",
        ])
        .arg(&out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let fi = (index_of(&nodes, &first) + 1) % 5;
    wait_for(60, "the job mid-map", || {
        let d = done(&the_job(&nodes[fi])?, "maps");
        (1..12).contains(&d).then_some(())
    });
    let li = index_of(&nodes, &first);
    nodes[li].kill();
    let second = wait_for(30, "a second manager", || {
        leader_of(&nodes[fi]).filter(|l| *l != first)
    });
    // Kill the second manager as soon as it leads, while the job still runs.
    assert_eq!(
        the_job(&nodes[fi]).unwrap()["state"],
        "running",
        "still mid-job"
    );
    let li2 = index_of(&nodes, &second);
    nodes[li2].kill();
    let fi = (0..5).find(|&i| i != li && i != li2).unwrap();
    let third = wait_for(30, "a third manager", || {
        leader_of(&nodes[fi]).filter(|l| *l != first && *l != second)
    });
    assert_ne!(
        the_job(&nodes[fi]).unwrap()["state"],
        "succeeded",
        "killed mid-job"
    );
    finish(child);
    check_output(&s, &out);
    println!("managers: {first} → {second} → {third}");
}
