//! Twenty rounds of kill and restart during jobs: every job ends right, nothing is left
//! behind on any node, and memory stays flat. Real `shoal node` processes on 127.0.0.1, one
//! cluster test at a time.

use crate::common::cluster::*;
use crate::common::rss_kib;
use crate::common::slow::*;
use serde_json::Value;

/// Files in `node`'s object store that the job table does not account for: anything but the
/// part files it holds of finished jobs and the logs of the attempts it ran (splits, map
/// outputs, attempt directories and unfinished writes are all leftovers once every job has
/// ended).
/// The attempt whose part the job uses (each attempt writes its own).
fn accepted(task: &Value) -> u64 {
    task["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "done")
        .and_then(|a| a["attempt"].as_u64())
        .unwrap_or_else(|| panic!("a done task with no done attempt: {task}"))
}

fn leftovers(node: &NodeProc, jobs: &[Value]) -> Vec<String> {
    let root = node.data.join("blobs");
    let mut files = Vec::new();
    let mut dirs = vec![root.clone()];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                dirs.push(e.path());
            } else {
                files.push(e.path());
            }
        }
    }
    files
        .into_iter()
        .map(|p| {
            p.strip_prefix(&root)
                .unwrap()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|rel| {
            let held = jobs.iter().any(|j| {
                j["tasks"].as_array().unwrap().iter().any(|t| {
                    t["kind"] == "reduce"
                        && t["holders"]
                            .as_array()
                            .unwrap()
                            .iter()
                            .any(|h| *h == node.node_id.as_str())
                        && *rel
                            == format!(
                                "{}/out/part-{}.a{}",
                                j["id"].as_str().unwrap(),
                                &t["id"].as_str().unwrap()[2..],
                                accepted(t)
                            )
                })
            });
            let a_log = jobs.iter().any(|j| {
                j["tasks"].as_array().unwrap().iter().any(|t| {
                    t["attempts"].as_array().unwrap().iter().any(|a| {
                        a["node"] == node.node_id.as_str()
                            && *rel
                                == format!(
                                    "{}/logs/{}.a{}.log",
                                    j["id"].as_str().unwrap(),
                                    t["id"].as_str().unwrap(),
                                    a["attempt"]
                                )
                    })
                })
            });
            !held && !a_log
        })
        .collect()
}

#[test]
fn soak_twenty_rounds_of_kill_and_restart_during_jobs() {
    let _serial = one_at_a_time();
    let s = setup();
    // n1 is never killed: it takes the submissions and is the long-lived memory witness.
    let mut nodes = start_cluster(
        &s.dir.path().join("nodes"),
        4,
        &["--expect", "4", "--slots", "2", "--node-timeout", "2"],
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 4, 60);
    let soak = std::time::Instant::now();
    let mut rss_round2: Vec<(u32, u64)> = Vec::new();
    let mut ids: Vec<String> = Vec::new();
    let mut rng = 0x5eed_u64;
    for round in 1..=20 {
        let started = std::time::Instant::now();
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let victim = 1 + (rng >> 33) as usize % 3;
        let mid_map = round % 2 == 1;
        let leader = leader_of(&nodes[0]).unwrap();
        let out = s.dir.path().join(format!("out-{round}"));
        let child = submit_slow(&s, &nodes[0], &out);
        let id = wait_for(60, "the job at the kill point", || {
            let j = the_job(&nodes[0])?;
            let at = if mid_map {
                (1..12).contains(&j.maps.done)
            } else {
                j.phase == "reduce"
            };
            (at && j.state == "running").then_some(j.id)
        });
        let was = if nodes[victim].node_id == leader {
            "the manager"
        } else {
            "a worker"
        };
        nodes[victim].kill();
        nodes[victim].restart_now();
        finish(child);
        check_output(&s, &out);
        ids.push(id.clone());
        wait_agreed(&nodes.iter().collect::<Vec<_>>(), 4, 60);
        let jobs: Vec<Value> = ids
            .iter()
            .map(|id| {
                http_get(&nodes[0].http, &format!("/api/v1/jobs/{id}"))
                    .unwrap()
                    .1
            })
            .collect();
        for n in &nodes {
            wait_for(30, &format!("no leftovers on {}", n.name), || {
                leftovers(n, &jobs).is_empty().then_some(())
            });
        }
        let rss: Vec<(u32, u64)> = nodes
            .iter()
            .map(|n| {
                let pid = n.child.as_ref().unwrap().id();
                (pid, rss_kib(pid))
            })
            .collect();
        if round == 2 {
            rss_round2 = rss.clone();
        }
        println!(
            "round {round:2}: killed {} ({was}) {}; job {id} correct in {:.1} s; no leftovers; rss MiB {}",
            nodes[victim].name,
            if mid_map { "mid-map" } else { "mid-reduce" },
            started.elapsed().as_secs_f64(),
            rss.iter()
                .map(|(_, k)| format!("{:.0}", *k as f64 / 1024.0))
                .collect::<Vec<_>>()
                .join(" ")
        );
        if round == 20 {
            for (i, ((pid2, r2), (pid20, r20))) in rss_round2.iter().zip(&rss).enumerate() {
                if pid2 == pid20 {
                    assert!(
                        *r20 as f64 <= 1.5 * *r2 as f64,
                        "{}: RSS grew from {r2} KiB after round 2 to {r20} KiB after round 20",
                        nodes[i].name
                    );
                }
            }
        }
    }
    let (r2, r20) = (rss_round2[0].1, rss_round_last(&nodes[0]));
    println!(
        "soak: 20 rounds, 20 jobs correct in {:.0} s; {} RSS {:.0} MiB after round 2, {:.0} MiB after round 20 ({:.2}x)",
        soak.elapsed().as_secs_f64(),
        nodes[0].name,
        r2 as f64 / 1024.0,
        r20 as f64 / 1024.0,
        r20 as f64 / r2 as f64
    );
}

fn rss_round_last(n: &NodeProc) -> u64 {
    rss_kib(n.child.as_ref().unwrap().id())
}
