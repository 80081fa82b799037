//! Nodes of one host share it: they take each other's input copies as hard links (no byte
//! of a split is written twice to the one disk, and the links outlive the node that took
//! the upload), and given no `--slots` they divide its cores between them. (Between
//! machines the bytes travel and each node keeps its cores: `tests/it/netns.rs` checks.)
//! Three real `shoal node` processes on 127.0.0.1, one cluster test at a time.

use std::os::unix::fs::MetadataExt;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;
use shoal_node::http::jobs_view::JobView;

/// The inodes of the input segments in `node`'s store for job `id`.
fn segment_inodes(node: &NodeProc, id: &str) -> Vec<u64> {
    let mut found: Vec<(String, u64)> = std::fs::read_dir(node.data.join("blobs").join(id))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("seg-"))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, e.metadata().unwrap().ino())
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, ino)| ino).collect()
}

#[test]
fn input_copies_on_one_host_are_links_that_outlive_the_node_that_took_the_upload() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut c = three_nodes(dir.path());
    let shared = writable_by_tasks(dir.path());
    let gate = shared.join("gate");
    // Every map waits at the gate: the node that took the upload dies before any map ends.
    let map = gated_word_mapper(dir.path(), "true", &gate);
    let reduce = write_program(dir.path(), "reduce.sh", SUM_REDUCER_SH);
    let (input, all) = small_word_input(dir.path(), 4, 3000);
    let (id, out) = c.submit(&[
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "2",
        "--split-size",
        "16384",
        "--input",
        &input.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let f = c.follower;
    let others: Vec<usize> = (0..3).filter(|&i| i != f).collect();

    // Two copies of every split (the default replication), each a link to the upload's.
    let job = c.job(f, &id);
    let uploaded = shoal_counter(&job, "input_uploaded_bytes");
    assert_eq!(uploaded, all.len() as u64);
    assert_eq!(
        shoal_counter(&job, "input_copied_bytes"),
        2 * uploaded,
        "{job}"
    );
    let linked = |i: usize| {
        c.nodes[i].cluster().unwrap()["linked_bytes"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(
        linked(f),
        2 * uploaded,
        "the submitting node linked both copies"
    );
    for &i in &others {
        assert_eq!(linked(i), uploaded, "node {i} took its copy as links");
    }
    let inodes = segment_inodes(&c.nodes[f], &id);
    assert!(
        inodes.len() > 1,
        "the input is several segments: {inodes:?}"
    );
    for &i in &others {
        assert_eq!(
            segment_inodes(&c.nodes[i], &id),
            inodes,
            "node {i}'s segments"
        );
    }

    // The node that took the upload dies with every map still running; the other nodes'
    // links hold the input, and the job ends with every word counted.
    c.nodes[f].kill();
    std::fs::write(&gate, "").unwrap();
    let url = c.url(others[0]);
    let done = wait_for(120, "the job to end", || {
        let j = c.job(others[0], &id);
        ["succeeded", "failed", "killed"]
            .contains(&j.state.as_str())
            .then_some(j)
    });
    assert_eq!(done.state, "succeeded", "{done}");
    let o = run(shoal().args(["output", "--node", &url, &id]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        summed_counts(&String::from_utf8_lossy(&o.stdout)),
        word_counts(&all)
    );
}

/// How many attempts of job `v` run on each node.
fn running_per_node(v: &JobView) -> std::collections::BTreeMap<String, u64> {
    let mut per = std::collections::BTreeMap::new();
    for a in tasks(v)
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.state == "running")
    {
        *per.entry(a.node.clone()).or_default() += 1;
    }
    per
}

#[test]
fn nodes_of_one_host_given_no_slots_divide_its_cores_between_them() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    // The defaults: no --slots.
    let nodes = start_cluster(&dir.path().join("nodes"), 3, &["--expect", "3"]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let li = nodes.iter().position(|n| n.node_id == leader).unwrap();
    let follower = nodes.iter().position(|n| n.node_id != leader).unwrap();
    let c = Cluster { nodes, follower };
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let share = cores.div_ceil(3);

    // Each node runs its share of the cores at once, and says so to the leader.
    wait_for(30, "every node's share of this host's cores", || {
        let own = c
            .nodes
            .iter()
            .all(|n| n.cluster().is_some_and(|v| v["slots"]["total"] == share));
        let v = c.nodes[li].cluster()?;
        let heard = v["nodes"].as_array()?;
        let heard = heard.len() == 3 && heard.iter().all(|n| n["heartbeat"]["slots"] == share);
        (own && heard).then_some(())
    });

    // A job of more maps than the host has cores: each node runs its share at once, no
    // more, and the rest wait their turn.
    let shared = writable_by_tasks(dir.path());
    let gate = shared.join("gate");
    let map = gated_word_mapper(dir.path(), "true", &gate);
    let reduce = write_program(dir.path(), "reduce.sh", SUM_REDUCER_SH);
    let maps = 3 * share + 3;
    let (input, all) = small_word_input(dir.path(), maps as usize, 200);
    let (id, out) = c.submit(&[
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "1",
        "--input",
        &input.to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let held = wait_for(60, "every node's share of the maps to run", || {
        let per = running_per_node(&c.job(li, &id));
        (per.len() == 3 && per.values().all(|&n| n >= share)).then_some(per)
    });
    assert!(
        held.values().all(|&n| n == share),
        "{share} map(s) at once on each node: {held:?}"
    );
    wait_for(30, "the leader's pool to run its share", || {
        (c.nodes[li].cluster()?["slots"]["busy"] == share).then_some(())
    });
    std::fs::write(&gate, "").unwrap();
    let done = wait_for(120, "the job to end", || {
        let j = c.job(li, &id);
        ["succeeded", "failed", "killed"]
            .contains(&j.state.as_str())
            .then_some(j)
    });
    assert_eq!(done.state, "succeeded", "{done}");
    let o = run(shoal().args(["output", "--node", &c.url(li), &id]));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        summed_counts(&String::from_utf8_lossy(&o.stdout)),
        word_counts(&all)
    );
}
