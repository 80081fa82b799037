//! A cluster past five nodes: a Raft core of five voters, up to `--learners` learners, the
//! rest plain workers that the leader pushes their assignments (not Raft members). The leader
//! answers a learner's heartbeat with nothing but an acknowledgement (only voters get
//! everyone's heartbeats back), so a learner that shows the cluster asks the leader for them
//! when it is asked: its `shoal status` still shows every node with a fresh heartbeat.
//! Six real `shoal node` processes on 127.0.0.1. Five with one learner at most: a plain
//! worker runs its tasks, shows the cluster, and its kill -9 mid-job loses nothing; when a
//! voter is lost, the learner takes its place and the worker becomes the learner. And
//! thirty, started together as machines booting on a LAN, form one cluster of five voters,
//! four learners and 21 plain workers: a word count whose tasks run on every one of them
//! goes on through the kill -9 of the manager and of three plain workers; the test prints
//! each node's peak RSS and the leader's CPU seconds.

use std::time::{Duration, Instant};

use serde_json::Value;
use shoal_node::http::jobs_view::JobView;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

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
    let dir = common::tempdir();
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

/// Peak RSS (KiB) and CPU seconds (user + system) of process `pid`, from /proc.
/// The nodes a job's view (`GET /api/v1/jobs/ID`) shows running an attempt.
fn running_on(v: &JobView) -> std::collections::BTreeSet<String> {
    tasks(v)
        .iter()
        .flat_map(|t| &t.attempts)
        .filter(|a| a.state == "running")
        .map(|a| a.node.clone())
        .collect()
}

/// Five nodes, one slot each, in one cluster of three voters and one learner at most (so
/// one plain worker), with `extra` flags.
fn five_with_one_learner(dir: &std::path::Path, extra: &[&str]) -> Vec<NodeProc> {
    let mut args = vec![
        "--expect",
        "3",
        "--voters",
        "3",
        "--learners",
        "1",
        "--slots",
        "1",
    ];
    args.extend_from_slice(extra);
    let nodes = start_cluster(dir, 5, &args);
    wait_one_cluster(&nodes, 90);
    nodes
}

#[test]
fn a_plain_worker_beyond_the_learners_runs_tasks_and_its_kill_loses_nothing() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let shared = writable_by_tasks(dir.path());
    let mut nodes = five_with_one_learner(dir.path(), &[]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    wait_agreed(&all, 3, 60);
    // Every node, the workers too, shows the same roster: 3 voters, 1 learner, 1 worker.
    let roster = wait_for(60, "3 voters, 1 learner and 1 worker on every node", || {
        let views: Vec<Value> = nodes.iter().map(|n| n.cluster()).collect::<Option<_>>()?;
        let roles = |v: &Value| ["voter", "learner", "worker"].map(|m| members(v, m));
        let first = roles(&views[0]);
        let sizes = first.iter().map(Vec::len).collect::<Vec<_>>();
        (sizes == [3, 1, 1] && views.iter().all(|v| roles(v) == first)).then_some(first)
    });
    let worker = nodes
        .iter()
        .position(|n| n.node_id == roster[2][0])
        .unwrap();
    let wv = nodes[worker].cluster().unwrap();
    assert_eq!(wv["this"]["membership"], "worker", "{wv}");
    assert_eq!(wv["this"]["state"], "worker", "{wv}");

    // 5 files, 5 maps on 5 slots: a first attempt on every node, held at a gate.
    let gate = shared.join("gate");
    let map = gated_word_mapper(dir.path(), "[ \"$SHOAL_ATTEMPT\" = 1 ]", &gate);
    let reduce = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let (input, words) = small_word_input(dir.path(), 5, 30);
    let o = run(shoal()
        .args(["submit", "--node", &format!("http://{}", nodes[0].http)])
        .arg("--input")
        .arg(&input)
        .args(["--map", &map, "--reduce", &reduce, "-R", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let id = job_id(&o);
    let at = nodes[0].http.clone();
    let job = || job_at(&at, &id);
    wait_for(60, "a first attempt running on every node", || {
        (running_on(&job()?).len() == 5).then_some(())
    });
    // The worker's status reports its running attempt, as a member's does.
    let hb = wait_for(10, "the worker's running attempt in its heartbeat", || {
        let v = nodes[worker].cluster()?;
        let me = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == v["this"]["id"])?
            .clone();
        (me["heartbeat"]["running"].as_array()?.len() == 1).then_some(me)
    });
    assert_eq!(hb["membership"], "worker", "{hb}");
    nodes[worker].kill();
    std::fs::write(&gate, "").unwrap();
    let v = wait_for(120, "the job to succeed after the worker's kill", || {
        let v = job()?;
        assert!(v.state != "failed" && v.state != "killed", "{v}");
        (v.state == "succeeded").then_some(v)
    });
    let out = dir.path().join("out");
    let o = run(shoal()
        .args([
            "output",
            &id,
            "--node",
            &format!("http://{}", nodes[0].http),
        ])
        .arg("--dir")
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    let text = String::from_utf8(parts(&out, 2).concat()).unwrap();
    assert_eq!(
        summed_counts(&text),
        word_counts(&words),
        "the word count is exact"
    );
    let ran = attempt_nodes(&v, "map");
    assert!(ran.contains(&roster[2][0]), "the worker ran a map: {ran:?}");
}

#[test]
fn a_plain_worker_becomes_a_learner_when_a_lost_voter_makes_room() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = five_with_one_learner(dir.path(), &["--voter-grace", "2"]);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let leader = wait_agreed(&all, 3, 60);
    let li = nodes.iter().position(|n| n.node_id == leader).unwrap();
    let roles = |v: &Value| ["voter", "learner", "worker"].map(|m| members(v, m));
    let roster = wait_for(60, "3 voters, 1 learner and 1 worker", || {
        let r = roles(&nodes[li].cluster()?);
        (r.iter().map(Vec::len).collect::<Vec<_>>() == [3, 1, 1]).then_some(r)
    });
    let (learner, worker) = (roster[1][0].clone(), roster[2][0].clone());
    let wi = nodes.iter().position(|n| n.node_id == worker).unwrap();

    // kill -9 a voter that is not the manager. Past --voter-grace the learner takes its
    // place and the lost voter stays a learner; it holds no place there while it is gone,
    // so the live plain worker becomes the learner the cluster can promote at the next loss.
    let gone = nodes
        .iter()
        .position(|n| n.node_id != leader && roster[0].contains(&n.node_id))
        .unwrap();
    let gone_id = nodes[gone].node_id.clone();
    nodes[gone].kill();
    let after = wait_for(60, "the learner a voter and the worker a learner", || {
        let [voters, learners, workers] = roles(&nodes[li].cluster()?);
        (voters.contains(&learner)
            && !voters.contains(&gone_id)
            && learners.contains(&worker)
            && workers.is_empty())
        .then_some([voters, learners])
    });
    assert_eq!(after[0].len(), 3, "three voters: {after:?}");
    wait_for(30, "the promoted node to see itself a learner", || {
        (nodes[wi].cluster()?["this"]["membership"] == "learner").then_some(())
    });
    assert!(
        nodes[li]
            .log_text()
            .contains("promoting a plain worker to learner"),
        "the manager says why"
    );
}

fn usage(pid: u32) -> (u64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0);
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command name (which may hold spaces) start at its closing ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15 of stat; 12 and 13 after the name.
    (hwm, (ticks(11) + ticks(12)) / tick)
}

fn pid(n: &NodeProc) -> u32 {
    n.child.as_ref().expect("running").id()
}

/// The idle cluster's CPU over a three-second window: the leader's share of one core
/// against the median other node's, and where the leader would reach one core if what it
/// spends beyond an ordinary node grows linearly in the other nodes (as `shoal sim --bench
/// --nodes N` shows its messages do).
fn idle_load(nodes: &[NodeProc], leader: &str) {
    let window = Duration::from_secs(3);
    let before: Vec<f64> = nodes.iter().map(|n| usage(pid(n)).1).collect();
    std::thread::sleep(window);
    let mut shares: Vec<(bool, f64)> = nodes
        .iter()
        .zip(&before)
        .map(|(n, b)| {
            let used = usage(pid(n)).1 - b;
            (n.node_id == leader, used / window.as_secs_f64())
        })
        .collect();
    let lead = shares.iter().find(|(l, _)| *l).map_or(0.0, |s| s.1);
    shares.retain(|(l, _)| !l);
    shares.sort_by(|a, b| a.1.total_cmp(&b.1));
    let median = shares[shares.len() / 2].1;
    assert!(lead > 0.0, "the leader used no CPU in {window:?}");
    let per_node = (lead - median).max(f64::EPSILON) / (nodes.len() - 1) as f64;
    println!(
        "idle, {} nodes: the leader uses {:.1}% of one core, the median other node {:.1}%; {:.2}% more per other node, so the leader reaches one core at about {:.0} nodes",
        nodes.len(),
        lead * 100.0,
        median * 100.0,
        per_node * 100.0,
        1.0 + (1.0 - median) / per_node
    );
}

#[test]
fn thirty_nodes_run_a_word_count_on_every_node_through_the_kill_of_the_manager_and_three_workers() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let shared = writable_by_tasks(dir.path());
    let t0 = Instant::now();
    // Booted together, as machines on a LAN are: each sees the others over seconds, and
    // they must still form one cluster, not several that refuse each other.
    let mut nodes = start_together(
        &dir.path().join("nodes"),
        30,
        &["--expect", "3", "--slots", "2"],
    );
    wait_one_cluster(&nodes, 120);
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let leader = wait_agreed(&all, 5, 60);
    println!(
        "30 nodes formed one cluster in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    idle_load(&nodes, &leader);

    // 60 files, 60 maps, 60 slots: every node runs two first attempts, held at a gate.
    let gate = shared.join("gate");
    let map = gated_word_mapper(dir.path(), "[ \"$SHOAL_ATTEMPT\" = 1 ]", &gate);
    let reduce = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let (input, words) = small_word_input(dir.path(), 60, 40);
    let submit_to = nodes.iter().position(|n| n.node_id != leader).unwrap();
    let out = dir.path().join("out");
    let o = run(shoal()
        .args([
            "submit",
            "--node",
            &format!("http://{}", nodes[submit_to].http),
        ])
        .arg("--input")
        .arg(&input)
        .args(["--map", &map, "--reduce", &reduce, "-R", "4"]));
    assert!(o.status.success(), "{}", text(&o));
    let id = job_id(&o);
    let at = nodes[submit_to].http.clone();
    let job = || job_at(&at, &id);
    wait_for(120, "a first attempt running on every node", || {
        (running_on(&job()?).len() == 30).then_some(())
    });

    // kill -9 the manager and three plain workers.
    let v = nodes[submit_to].cluster().unwrap();
    assert_eq!(
        ["voter", "learner", "worker"].map(|m| members(&v, m).len()),
        [5, 4, 21],
        "five voters, four learners (--learners 4) and 21 plain workers: {v}"
    );
    let learners = members(&v, "worker");
    let mut victims: Vec<usize> = vec![nodes.iter().position(|n| n.node_id == leader).unwrap()];
    victims.extend(
        nodes
            .iter()
            .enumerate()
            .filter(|(i, n)| *i != submit_to && learners.contains(&n.node_id))
            .map(|(i, _)| i)
            .take(3),
    );
    assert_eq!(victims.len(), 4);
    let old_leader_cpu = usage(pid(&nodes[victims[0]])).1;
    let mut rss: Vec<u64> = Vec::new();
    for &i in &victims {
        rss.push(usage(pid(&nodes[i])).0);
        nodes[i].kill();
    }
    std::fs::write(&gate, "").unwrap();

    let v = wait_for(240, "the job to succeed after the kills", || {
        let v = job()?;
        assert!(v.state != "failed" && v.state != "killed", "{v}");
        (v.state == "succeeded").then_some(v)
    });
    let o = run(shoal()
        .args([
            "output",
            &id,
            "--node",
            &format!("http://{}", nodes[submit_to].http),
        ])
        .arg("--dir")
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    let text = String::from_utf8(parts(&out, 4).concat()).unwrap();
    assert_eq!(
        summed_counts(&text),
        word_counts(&words),
        "the word count is exact"
    );
    let mut ran = attempt_nodes(&v, "map");
    ran.sort();
    ran.dedup();
    assert_eq!(ran.len(), 30, "map attempts ran on every node");

    // Figures: every node's peak RSS, the leaders' CPU seconds.
    let new_leader = wait_for(30, "a leader", || leader_of(&nodes[submit_to]));
    let survivors: Vec<&NodeProc> = nodes.iter().filter(|n| n.is_running()).collect();
    rss.extend(survivors.iter().map(|n| usage(pid(n)).0));
    rss.sort_unstable();
    let new = survivors.iter().find(|n| n.node_id == new_leader).unwrap();
    println!(
        "peak RSS of the 30 nodes: min {} MiB, median {} MiB, max {} MiB",
        rss[0] / 1024,
        rss[rss.len() / 2] / 1024,
        rss[rss.len() - 1] / 1024
    );
    println!(
        "CPU seconds: the first leader {old_leader_cpu:.1} s until it was killed, the next {:.1} s; whole test {:.1} s",
        usage(pid(new)).1,
        t0.elapsed().as_secs_f64()
    );
}
