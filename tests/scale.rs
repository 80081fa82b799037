//! A cluster past five nodes: a Raft core of five voters, the rest learners. The leader
//! answers a learner's heartbeat with nothing but an acknowledgement (only voters get
//! everyone's heartbeats back), so a learner that shows the cluster asks the leader for them
//! when it is asked: its `shoal status` still shows every node with a fresh heartbeat.
//! Six real `shoal node` processes on 127.0.0.1.

mod common;

use serde_json::Value;

use common::cluster::*;

/// Node ids whose heartbeat `view` shows, heard less than `ms` ago.
fn fresh(view: &Value, ms: u64) -> Vec<String> {
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|n| n["heartbeat"]["ms_ago"].as_u64().is_some_and(|a| a < ms))
        .filter_map(|n| n["id"].as_str().map(String::from))
        .collect()
}

#[test]
fn a_learner_shows_every_nodes_heartbeat_it_asked_the_leader_for() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_cluster(dir.path(), 6, &["--expect", "3"]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_agreed(&all, 5, 90);
    let learner = wait_for(60, "one learner, as every node sees it", || {
        let views: Vec<Value> = nodes.iter().map(|n| n.cluster()).collect::<Option<_>>()?;
        let l = members(&views[0], "learner");
        (l.len() == 1 && views.iter().all(|v| members(v, "learner") == l)).then(|| l[0].clone())
    });
    let learner = nodes.iter().find(|n| n.node_id == learner).unwrap();
    let mut ids: Vec<String> = nodes.iter().map(|n| n.node_id.clone()).collect();
    ids.sort();
    // Its view asks the leader (at most once a second): every node, its own included,
    // shows a heartbeat heard within the last three seconds.
    wait_for(
        30,
        "every node's fresh heartbeat in the learner's view",
        || {
            let mut seen = fresh(&learner.cluster()?, 3000);
            seen.sort();
            (seen == ids).then_some(())
        },
    );
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["status", "--node", &format!("http://{}", learner.http)])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        !text.contains("mixed versions"),
        "one version on every node: {text}"
    );
}
