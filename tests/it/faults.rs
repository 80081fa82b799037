//! Jobs survive `kill -9`: of the manager mid-map and mid-reduce (the client waits through a
//! surviving follower), and of a worker mid-map and mid-reduce (its finished maps run again).
//! Real `shoal node` processes on 127.0.0.1, one cluster test at a time.

use std::process::Stdio;

use crate::common::cluster::*;
use crate::common::slow::*;
use crate::common::three::tasks;
use crate::common::*;
use serde_json::Value;

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
    let id = wait_for(60, "the job mid-map", || {
        let j = the_job(&nodes[fi])?;
        (1..12).contains(&j.maps.done).then_some(j.id)
    });
    // Two more watchers: one through the manager alone (it is told where to look next), one
    // through the manager and then a follower (it carries on).
    let watch = |urls: &[&NodeProc]| {
        let urls: Vec<String> = urls.iter().map(|n| format!("http://{}", n.http)).collect();
        shoal()
            .args(["status", &id, "--wait", "--node", &urls.join(",")])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let alone = watch(&[&nodes[li]]);
    let through = watch(&[&nodes[li], &nodes[fi]]);
    nodes[li].kill();
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "submit --wait failed: {}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{id}: the manager changed from {leader} to "))
            && err.contains("the job goes on from the replicated job table"),
        "the waiting submit names the manager change: {err}"
    );
    check_output(&s, &out);
    let o = alone.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    assert!(
        err.contains(&format!("check with `shoal status {id}` on another node")),
        "the watcher is told where to look: {err}"
    );
    let o = through.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the second watcher carried on: {}",
        text(&o)
    );
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("succeeded"),
        "{}",
        text(&o)
    );
    let survivors: Vec<&NodeProc> = nodes.iter().filter(|n| n.child.is_some()).collect();
    let new_leader = leader_of(survivors[0]).unwrap();
    assert_ne!(new_leader, leader);

    // Mid-reduce, with the old manager back as a follower: kill the new one.
    nodes[li].restart_now();
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
        let finished_there = j.tasks.as_ref()?.iter().any(|t| {
            t.kind == "map"
                && t.state == "done"
                && t.attempts
                    .iter()
                    .any(|a| a.node == victim && a.state == "done")
        });
        (finished_there && j.maps.done < 12).then_some(())
    });
    nodes[vi].kill();
    finish(child);
    check_output(&s, &out);
    let j = the_job(&nodes[li]).unwrap();
    let redone = tasks(&j).iter().any(|t| {
        t.attempts.iter().any(|a| {
            a.node == victim
                && a.lost
                && a.error.as_deref().unwrap_or("").contains("output was lost")
        }) && t.state == "done"
    });
    assert!(redone, "a finished map of the victim ran again: {j}");
    // `shoal status` names the killed node lost, once silent past --node-timeout.
    let status = || {
        let o = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .args(["status", "--node", &format!("http://{}", nodes[li].http)])
            .output()
            .expect("shoal runs");
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    wait_for(30, "shoal status to say the victim is lost", || {
        let shown = status();
        shown
            .lines()
            .find(|l| l.contains(&victim))
            .is_some_and(|l| l.split_whitespace().nth(2) == Some("lost"))
            .then_some(())
    });
    // The survivors' logs say once that the victim is unreachable, never that it lacks the
    // key, and carry no line per missed heartbeat.
    let peer = nodes[vi].peer_id.clone();
    let said: Vec<usize> = nodes
        .iter()
        .filter(|n| n.child.is_some())
        .map(|n| {
            let log = n.log_text();
            assert!(
                !log.lines()
                    .any(|l| l.contains(&peer) && l.contains("cluster key")),
                "{}: the dead peer is not a key problem:\n{log}",
                n.name
            );
            assert!(
                !log.contains("failed to send a heartbeat"),
                "{}:\n{log}",
                n.name
            );
            log.lines()
                .filter(|l| l.contains("a peer is unreachable") && l.contains(&peer))
                .count()
        })
        .collect();
    assert!(
        said.iter().all(|&n| n <= 1) && said.contains(&1),
        "each survivor says at most once that the victim is unreachable, one does: {said:?}"
    );

    // Mid-reduce: restart the victim, then kill it while a reduce runs there.
    nodes[vi].restart_now();
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
        let d = the_job(&nodes[fi])?.maps.done;
        (1..12).contains(&d).then_some(())
    });
    let li = index_of(&nodes, &first);
    nodes[li].kill();
    let second = wait_for(30, "a second manager", || {
        leader_of(&nodes[fi]).filter(|l| *l != first)
    });
    // Kill the second manager as soon as it leads, while the job still runs.
    assert_eq!(
        the_job(&nodes[fi]).unwrap().state,
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
        the_job(&nodes[fi]).unwrap().state,
        "succeeded",
        "killed mid-job"
    );
    finish(child);
    check_output(&s, &out);
    println!("managers: {first} → {second} → {third}");
}

/// The crash app: per invocation, seeded by the job's `CRASH_SEED`, its task and attempt,
/// exit(1) part-way with probability 0.2, hang 0–10 s with probability 0.1, else count words.
const CRASH_PY: &str = r#"
import os, random, sys, time
role = sys.argv[1]
rng = random.Random("%s:%s:%s" % (os.environ["CRASH_SEED"], os.environ["SHOAL_TASK_ID"], os.environ["SHOAL_ATTEMPT"]))
r, crash_after, hang = rng.random(), rng.randint(0, 20), rng.uniform(0, 10)
if 0.2 <= r < 0.3:
    time.sleep(hang)
out = sys.stdout
def lines():
    for n, line in enumerate(sys.stdin):
        if r < 0.2 and n == crash_after:
            out.flush()
            sys.stderr.write("crash app: %s fails on purpose\n" % role)
            sys.exit(1)
        yield line
    if r < 0.2:
        sys.stderr.write("crash app: %s fails on purpose\n" % role)
        sys.exit(1)
if role == "map":
    for line in lines():
        for w in line.split():
            out.write(w + "\t1\n")
else:
    cur, n = None, 0
    for line in lines():
        k, v = line.rstrip("\n").split("\t", 1)
        if k != cur and cur is not None:
            out.write("%s\t%d\n" % (cur, n))
            n = 0
        cur, n = k, n + int(v)
    if cur is not None:
        out.write("%s\t%d\n" % (cur, n))
"#;

/// Every attempt of the job, as JSON.
fn attempts(job: &Value) -> Vec<Value> {
    job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["attempts"].as_array().unwrap().clone())
        .collect()
}

/// Run `shoal submit` with `args` and wait; its job id (the first line it prints).
fn submit_wait(args: &[String]) -> String {
    let o = run(shoal().arg("submit").args(args));
    assert!(o.status.success(), "submit --wait failed: {}", text(&o));
    job_id(&o)
}

#[test]
fn the_crash_app_finishes_correctly_over_several_seeds() {
    let _serial = one_at_a_time();
    let s = setup();
    let (nodes, _) = start(s.dir.path());
    let crash = s.dir.path().join("crash.py");
    std::fs::write(&crash, CRASH_PY).unwrap();
    // Seeds whose first attempts include at least one crash and one hang past the timeout
    // (first attempts are fixed by the seed; retries depend on how attempts are numbered).
    for seed in [1, 2, 3] {
        let out = s.dir.path().join(format!("out-{seed}"));
        let args: Vec<String> = [
            "--node",
            &format!("http://{}", nodes[seed % 3].http),
            "--input",
            &s.input.to_string_lossy(),
            "--map",
            "python3 crash.py map",
            "--reduce",
            "python3 crash.py reduce",
            "--file",
            &crash.to_string_lossy(),
            "--env",
            &format!("CRASH_SEED={seed}"),
            "-R",
            "3",
            "--task-timeout",
            "5",
            "--max-attempts",
            "10",
            "--output",
            &out.to_string_lossy(),
        ]
        .map(String::from)
        .to_vec();
        let started = std::time::Instant::now();
        let id = submit_wait(&args);
        assert_eq!(
            tab_counts(&parts(&out, 3)),
            s.want,
            "seed {seed}: the output differs from the reference"
        );
        let (_, j) = http_get(&nodes[0].http, &format!("/api/v1/jobs/{id}")).unwrap();
        let all = attempts(&j);
        let exits: Vec<&str> = all.iter().filter_map(|a| a["exit"].as_str()).collect();
        assert!(
            exits.contains(&"exit 1"),
            "seed {seed}: a crash was retried: {j}"
        );
        assert!(
            exits.iter().any(|e| e.starts_with("timeout")),
            "seed {seed}: a hang was timed out and retried: {j}"
        );
        let crashed = all
            .iter()
            .find(|a| a["exit"] == "exit 1")
            .and_then(|a| a["stderr_tail"].as_str())
            .unwrap_or("");
        assert!(
            crashed.contains("fails on purpose"),
            "seed {seed}: the failed attempt keeps its stderr: {j}"
        );
        println!(
            "seed {seed}: {} attempts for 15 tasks ({} crashed, {} timed out) in {:.1} s",
            all.len(),
            exits.iter().filter(|e| **e == "exit 1").count(),
            exits.iter().filter(|e| e.starts_with("timeout")).count(),
            started.elapsed().as_secs_f64()
        );
    }
}

#[test]
fn a_straggler_is_backed_up_and_the_first_finisher_wins() {
    let _serial = one_at_a_time();
    let s = setup();
    let (nodes, _) = start(s.dir.path());
    // The first attempt of map 3 stalls for two minutes; every other attempt is quick.
    let map =
        "if [ \"$SHOAL_TASK_ID\" = m-00003 ] && [ \"$SHOAL_ATTEMPT\" = 1 ]; then sleep 120; fi; \
               while IFS= read -r l; do for w in $l; do echo \"$w\"; done; done";
    let out = s.dir.path().join("out");
    let started = std::time::Instant::now();
    let id = submit_wait(
        &[
            "--node",
            &format!("http://{}", nodes[0].http),
            "--input",
            &s.input.to_string_lossy(),
            "--map",
            map,
            "--reduce",
            "uniq -c",
            "-R",
            "3",
            "--output",
            &out.to_string_lossy(),
        ]
        .map(String::from),
    );
    let took = started.elapsed();
    check_output(&s, &out);
    assert!(
        took < std::time::Duration::from_secs(100),
        "the job did not wait for the straggler ({took:?})"
    );
    let (_, j) = http_get(&nodes[0].http, &format!("/api/v1/jobs/{id}")).unwrap();
    let t = j["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "m-00003")
        .unwrap();
    let a = t["attempts"].as_array().unwrap();
    assert_eq!(a.len(), 2, "one backup: {t}");
    assert_eq!(a[1]["backup"], true, "{t}");
    assert_eq!(a[1]["state"], "done", "{t}");
    assert_ne!(a[0]["node"], a[1]["node"], "the backup ran elsewhere: {t}");
    assert_eq!(a[0]["state"], "failed", "{t}");
    assert_eq!(a[0]["error"], "superseded: attempt 2 finished first", "{t}");
    let backups = attempts(&j).iter().filter(|a| a["backup"] == true).count();
    assert_eq!(backups, 1, "no other task was backed up: {j}");
    println!("a 120 s straggler backed up: the job took {took:.1?}");
}

#[test]
fn five_nodes_lose_three_voters_one_after_another_and_still_run_jobs() {
    let _serial = one_at_a_time();
    let s = setup();
    let mut nodes = start_cluster(
        &s.dir.path().join("nodes"),
        5,
        &[
            "--expect",
            "5",
            "--slots",
            "2",
            "--node-timeout",
            "2",
            "--voter-grace",
            "3",
        ],
    );
    let first = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 5, 60);
    // A follower, then the leader, then another follower.
    let mut killed: Vec<usize> = Vec::new();
    for round in 0..3 {
        let live: Vec<usize> = (0..5).filter(|i| !killed.contains(i)).collect();
        let leader = leader_of(&nodes[live[0]]).unwrap();
        let li = index_of(&nodes, &leader);
        let victim = if round == 1 {
            li
        } else {
            *live.iter().find(|&&i| i != li).unwrap()
        };
        nodes[victim].kill();
        killed.push(victim);
        let gone = nodes[victim].node_id.clone();
        let survivors: Vec<&NodeProc> = (0..5)
            .filter(|i| !killed.contains(i))
            .map(|i| &nodes[i])
            .collect();
        // Five voters lose one each time until three remain; then the three are kept.
        let want = (5 - killed.len()).max(3);
        let leader = wait_for(60, "the survivors agree on the voters", || {
            let views: Vec<Value> = survivors
                .iter()
                .map(|n| n.cluster())
                .collect::<Option<_>>()?;
            let leader = views[0]["leader"]["id"].as_str()?.to_string();
            let voters = members(&views[0], "voter");
            let agreed = views.iter().all(|v| {
                v["leader"]["id"].as_str() == Some(leader.as_str()) && members(v, "voter") == voters
            });
            let settled =
                voters.len() == want && (want == 3 && round == 2 || !voters.contains(&gone));
            (agreed && settled && leader != gone).then_some(leader)
        });
        println!("round {}: killed {gone}; leader {leader}", round + 1);
    }
    let live: Vec<usize> = (0..5).filter(|i| !killed.contains(i)).collect();
    let out = s.dir.path().join("out");
    let child = submit_slow(&s, &nodes[live[0]], &out);
    finish(child);
    check_output(&s, &out);
    // The third kill did not take the voters below three.
    let v = nodes[live[1]].cluster().unwrap();
    assert_eq!(members(&v, "voter").len(), 3, "{v}");
    assert!(leader_of(&nodes[live[1]]).is_some());
    println!("first leader {first}; a job ran on the two survivors");
}
