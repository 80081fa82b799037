//! Taking nodes out of service with jobs running: `shoal drain` on a worker in the middle
//! of a job (the job finishes with no failed attempt and the node starts nothing new, then
//! `shoal undrain` brings it back), and SIGTERM on a node running tasks (it drains itself,
//! its tasks finish within `--drain-secs`, it exits 0, and takes tasks again once
//! restarted). Three real `shoal node` processes on 127.0.0.1.

use serde_json::Value;
use shoal_node::http::jobs_view::{JobView, TaskView};

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `files` small inputs in `dir/name`.
fn inputs(dir: &std::path::Path, name: &str, files: usize) -> String {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).unwrap();
    for f in 0..files {
        std::fs::write(d.join(format!("f{f}.txt")), format!("a b c {name}{f}\n")).unwrap();
    }
    d.to_string_lossy().into_owned()
}

/// Every attempt of the job: (task, node, state, start_ms).
fn attempts(job: &JobView) -> Vec<(String, String, String, u64)> {
    tasks(job)
        .iter()
        .flat_map(|t| {
            t.attempts
                .iter()
                .map(|a| (t.id.clone(), a.node.clone(), a.state.clone(), a.start_ms))
        })
        .collect()
}

/// The `drain` field of node `id` in `view`.
fn drain_of(view: &Value, id: &str) -> Value {
    view["nodes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|n| n["id"] == id)
        .map(|n| n["drain"].clone())
        .unwrap_or(Value::Null)
}

/// Whether every task of `kind` of `job` has two of its `holders` besides node `not`.
fn copies_elsewhere(
    job: &JobView,
    kind: &str,
    holders: impl Fn(&TaskView) -> &Vec<String>,
    not: &str,
) -> bool {
    tasks(job)
        .iter()
        .filter(|t| t.kind == kind)
        .all(|t| holders(t).iter().filter(|n| *n != not).count() >= 2)
}

/// Wait until `node` runs an attempt of job `id`, as node `at` sees it.
fn running_on(c: &Cluster, at: usize, id: &str, node: &str) {
    wait_for(60, "an attempt running on the node", || {
        attempts(&c.job(at, id))
            .iter()
            .any(|(_, n, s, _)| n == node && s == "running")
            .then_some(())
    });
}

fn succeeded(c: &Cluster, at: usize, id: &str) -> JobView {
    wait_for(120, "the job to succeed", || {
        let j = c.job(at, id);
        assert!(j.state != "failed" && j.state != "killed", "{j}");
        (j.state == "succeeded").then_some(j)
    })
}

#[test]
fn a_drained_worker_starts_nothing_new_and_sigterm_lets_running_tasks_finish() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut c = three_nodes(dir.path());
    let shared = writable_by_tasks(dir.path());
    let reduce = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let leader = leader_of(&c.nodes[0]).unwrap();
    let worker = c.follower;
    let wid = c.nodes[worker].node_id.clone();
    let other = (worker + 1) % 3;

    // A finished job whose three parts have one copy each besides the original: the parts
    // the drained node holds must be copied away too.
    let words = write_program(
        dir.path(),
        "words.sh",
        "#!/bin/sh\nawk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'\n",
    );
    let input0 = inputs(dir.path(), "zero", 6);
    let (done, o) = c.submit(&[
        "--input",
        &input0,
        "--map",
        &words,
        "--reduce",
        &reduce,
        "-R",
        "3",
        "--replication",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    succeeded(&c, other, &done);

    // 1. shoal drain in the middle of a job: first attempts wait at a gate.
    let gate = shared.join("gate-1");
    let map = gated_word_mapper(dir.path(), "[ \"$SHOAL_ATTEMPT\" = 1 ]", &gate);
    let input = inputs(dir.path(), "one", 12);
    // One copy besides the original: a split or part on the drained node must be copied
    // to the third node for its job's --replication to hold without it.
    let (id, o) = c.submit(&[
        "--input",
        &input,
        "--map",
        &map,
        "--reduce",
        &reduce,
        "--replication",
        "1",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    running_on(&c, other, &id, &wid);
    let held = tasks(&c.job(other, &id))
        .iter()
        .filter(|t| t.input_holders.contains(&wid))
        .count();
    assert!(held > 0, "the node holds splits to copy away");
    let o = run(shoal().args(["drain", &wid[..6], "--node", &c.url(other)]));
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains(&wid) && said.contains("draining"), "{said}");
    let drained_at = now_ms();
    // Another node shows it once it has applied the drain (the command answers when the
    // node it asked has).
    wait_for(10, "shoal status on another node to show the drain", || {
        let o = run(shoal().args(["status", "--node", &c.url(1)]));
        let status = String::from_utf8_lossy(&o.stdout).into_owned();
        status
            .lines()
            .any(|l| l.contains(&wid) && l.contains("draining"))
            .then_some(())
    });
    // While its tasks still wait, the splits it held get their copies elsewhere.
    wait_for(
        30,
        "every split copied to two nodes besides the drained one",
        || copies_elsewhere(&c.job(other, &id), "map", |t| &t.input_holders, &wid).then_some(()),
    );
    assert!(
        c.nodes[worker]
            .log_text()
            .contains("draining: copied elsewhere"),
        "the drained node copied them"
    );
    std::fs::write(&gate, "").unwrap();
    let job = succeeded(&c, other, &id);
    wait_for(
        30,
        "the first job's parts copied away from the drained node",
        || copies_elsewhere(&c.job(other, &done), "reduce", |t| &t.holders, &wid).then_some(()),
    );
    assert!(
        copies_elsewhere(&job, "reduce", |t| &t.holders, &wid),
        "its parts have two holders besides the drained node: {job}"
    );
    let all = attempts(&job);
    assert!(
        all.iter().all(|(_, _, s, _)| s == "done"),
        "no attempt failed: {all:?}"
    );
    assert!(
        all.iter().any(|(_, n, _, _)| n == &wid),
        "the drained node finished what it ran"
    );
    assert!(
        !all.iter()
            .any(|(_, n, _, at)| n == &wid && *at > drained_at),
        "nothing started on the drained node after the drain: {all:?}"
    );
    let view = c.nodes[other].cluster().unwrap();
    assert_eq!(drain_of(&view, &wid), "drained", "{view}");
    let o = run(shoal().args(["drain", &wid, "--wait", "--node", &c.url(2)]));
    assert!(o.status.success(), "{}", text(&o));
    let o = run(shoal().args(["undrain", &wid, "--node", &c.url(2)]));
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("active"));
    wait_for(30, "every node to show it active again", || {
        c.nodes
            .iter()
            .all(|n| {
                n.cluster()
                    .is_some_and(|v| drain_of(&v, &wid) == Value::Null)
            })
            .then_some(())
    });
    let o = run(shoal().args(["drain", "zz", "--node", &c.url(other)]));
    assert_eq!(o.status.code(), Some(2), "no such node: {}", text(&o));
    assert!(text(&o).contains("zz"), "{}", text(&o));

    // 2. SIGTERM on a node running tasks: it drains itself, they finish, it exits 0.
    let gate = shared.join("gate-2");
    let map = gated_word_mapper(dir.path(), "[ \"$SHOAL_ATTEMPT\" = 1 ]", &gate);
    let input = inputs(dir.path(), "two", 12);
    let (id, o) = c.submit(&["--input", &input, "--map", &map, "--reduce", &reduce]);
    assert!(o.status.success(), "{}", text(&o));
    // As the node itself sees it: a node told to stop knows only the assignments it has
    // applied (one still on its way runs elsewhere once the node is gone).
    running_on(&c, worker, &id, &wid);
    let mut child = c.nodes[worker].child.take().unwrap();
    // SAFETY: signalling our own child process.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let stopped_at = now_ms();
    wait_for(30, "the stopping node to show as draining", || {
        (drain_of(&c.nodes[other].cluster()?, &wid) == "draining").then_some(())
    });
    assert!(
        child.try_wait().unwrap().is_none(),
        "the node waits for its running tasks"
    );
    std::fs::write(&gate, "").unwrap();
    let status = child.wait().unwrap();
    let took = now_ms() - stopped_at;
    assert!(
        status.success(),
        "the node exits 0 after its drain: {status:?}"
    );
    assert!(took < 30_000, "within the grace period: {took} ms");
    let log = c.nodes[worker].log_text();
    assert!(log.contains("nothing here is needed any more"), "{log}");
    // Every loop was asked to stop, finished its step and said so, in the order it stopped.
    let stopped: Vec<&str> = log.lines().filter(|l| l.contains("loop stopped")).collect();
    for name in [
        "event dispatch",
        "membership",
        "manager",
        "pushes",
        "worker",
        "copy away",
        "leave",
        "undrain",
        "raft health",
        "leader-change count",
    ] {
        let said = format!("loop_name=\"{name}\"");
        assert!(stopped.iter().any(|l| l.contains(&said)), "{name}: {log}");
    }
    let order = log.lines().find(|l| l.contains("every loop stopped"));
    assert!(order.is_some(), "{log}");
    assert!(
        !log.contains("aborting them"),
        "a loop had to be aborted: {log}"
    );
    println!("the loops as they stopped: {}", order.unwrap_or_default());
    let job = succeeded(&c, other, &id);
    let all = attempts(&job);
    let theirs: Vec<_> = all.iter().filter(|(_, n, _, _)| n == &wid).collect();
    assert!(!theirs.is_empty(), "{all:?}");
    assert!(
        theirs
            .iter()
            .all(|(_, _, s, at)| s == "done" && *at <= stopped_at),
        "its tasks finished, none started after SIGTERM: {theirs:?} {job}"
    );
    assert!(all.iter().all(|(_, _, s, _)| s == "done"), "{all:?}");
    println!("SIGTERM to exit with a task waiting at a gate: {took} ms (leader {leader})");

    // Started again, it takes tasks again.
    c.nodes[worker].restart_now();
    wait_for(60, "the restarted node to take tasks again", || {
        (drain_of(&c.nodes[other].cluster()?, &wid) == Value::Null).then_some(())
    });
}
