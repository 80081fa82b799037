//! A rolling upgrade with a job running throughout, as README's Operations section says:
//! one node at a time — `shoal drain --wait`, stop (SIGTERM), start the new build on the same
//! data dir, `shoal undrain` — while a job of many maps runs; the "new build" is the same
//! binary speaking another protocol minor (a test-only override), so the cluster shows mixed
//! versions in between and one version at the end. Three real `shoal node` processes.

use shoal_node::http::jobs_view::AttemptView;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

#[test]
fn a_rolling_upgrade_one_node_at_a_time_keeps_a_job_running() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for f in 0..90 {
        let text = format!("w{} w{} up\n", f % 7, f % 3);
        all.push_str(&text);
        std::fs::write(input.join(format!("f{f:02}.txt")), text).unwrap();
    }
    let map = write_program(
        dir.path(),
        "map.sh",
        "#!/bin/sh\nsleep 1\nawk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'\n",
    );
    let reduce = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let mut c = three_nodes(dir.path());
    let (id, o) = c.submit(&[
        "--input",
        input.to_str().unwrap(),
        "--map",
        &map,
        "--reduce",
        &reduce,
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let newer = format!(
        "{}.{}",
        shoal_net::wire::PROTOCOL.major,
        shoal_net::wire::PROTOCOL.minor + 1
    );

    // The job has started before the first node goes (a job's first assignments follow
    // its submission within a tick of the manager; the wait shows the nodes if not).
    let started = shoal::demo::local_cluster::wait_for(
        std::time::Duration::from_secs(30),
        "the job to start",
        || (c.job(0, &id).state == "running").then_some(()),
    );
    if started.is_err() {
        panic!(
            "the job did not start: {}\n{}",
            c.job(0, &id),
            what_nodes_say(&c)
        );
    }
    for i in 0..3 {
        let other = (i + 1) % 3;
        let url = c.url(other);
        let nid = c.nodes[i].node_id.clone();
        let o = run(shoal().args(["drain", &nid, "--wait", "--node", &url]));
        assert!(o.status.success(), "drain {nid}: {}", text(&o));
        c.nodes[i].stop();
        // The new build: same data dir, another protocol minor.
        c.nodes[i]
            .args
            .extend(["--test-protocol".to_string(), newer.clone()]);
        c.nodes[i].restart_now();
        let o = run(shoal().args(["undrain", &nid, "--node", &url]));
        assert!(o.status.success(), "undrain {nid}: {}", text(&o));
        wait_for(60, "the upgraded node back in service", || {
            let v = c.nodes[other].cluster()?;
            let n = v["nodes"]
                .as_array()?
                .iter()
                .find(|n| n["id"] == nid.as_str())?
                .clone();
            (n["reachable"] == true && n["drain"].is_null() && n["protocol"] == newer.as_str())
                .then_some(())
        });
        let job = c.job(other, &id);
        if job.state != "running" {
            panic!(
                "the job runs throughout, after node {i}: {job}\n{}",
                what_nodes_say(&c)
            );
        }
        let v = c.nodes[other].cluster().unwrap();
        assert_eq!(v["mixed_versions"], i < 2, "after node {i}: {v}");
    }

    let job = wait_for(120, "the job to succeed", || {
        let j = c.job(0, &id);
        assert!(j.state != "failed" && j.state != "killed", "{j}");
        (j.state == "succeeded").then_some(j)
    });
    // No attempt failed by its own fault (an attempt may have been ended by a stop: lost,
    // run again, not counted).
    let own_failures: Vec<&AttemptView> = tasks(&job)
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.state == "failed" && !a.lost)
        .collect();
    assert!(own_failures.is_empty(), "{own_failures:?}");
    let out = dir.path().join("out");
    let o = run(shoal()
        .args(["output", &id, "--node", &c.url(1), "--dir"])
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    let got = summed_counts(&std::fs::read_to_string(out.join("part-00000")).unwrap());
    assert_eq!(got, word_counts(&all));
}

/// The cluster as the first node sees it and the last lines of every node's log.
fn what_nodes_say(c: &Cluster) -> String {
    let logs: Vec<String> = c
        .nodes
        .iter()
        .map(|n| {
            let log = n.log_text();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            format!(
                "== {}\n{}",
                n.name,
                tail.into_iter().rev().collect::<Vec<_>>().join("\n")
            )
        })
        .collect();
    let cluster = c.nodes[0]
        .cluster()
        .map(|v| v.to_string())
        .unwrap_or_default();
    format!("{cluster}\n{}", logs.join("\n"))
}
