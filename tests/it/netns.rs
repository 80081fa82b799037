//! On a LAN: nodes in network namespaces of their own (one "machine" each, veth pairs into a
//! bridge), with the product's defaults — all interfaces, mDNS on, no `--peer`. Needs root
//! and iproute2; skipped with a message elsewhere, a failure under SHOAL_REQUIRE_NETNS=1
//! (CI). One cluster test at a time.

use std::path::Path;
use std::time::Instant;

use crate::common;
use crate::common::cluster::*;
use crate::common::netns::{setup, start_on};
use crate::common::*;
use serde_json::Value;

/// The word count of `corpus`, by an independent Python program.
fn reference(corpus: &Path) -> Vec<Vec<u8>> {
    sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        corpus,
        &[],
    ))
}

/// Node ids in `node`'s view of the cluster.
fn view_ids(node: &NodeProc) -> Vec<String> {
    node.cluster()
        .and_then(|v| {
            v["nodes"].as_array().map(|ns| {
                ns.iter()
                    .filter_map(|n| n["id"].as_str().map(String::from))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// `shoal submit … --wait --output OUT` of the word-count app through `node`.
fn wordcount(
    node: &NodeProc,
    input: &Path,
    out: &Path,
    extra: &[&str],
) -> (String, std::process::Output) {
    let o = node
        .command()
        .args([
            "submit",
            "--node",
            &format!("http://{}", node.http),
            "--input",
        ])
        .arg(input)
        .args([
            "--app",
            "wordcount",
            "-R",
            "5",
            "--split-size",
            "65536",
            "--output",
        ])
        .arg(out)
        .args(extra)
        .output()
        .unwrap();
    let id = job_id(&o);
    (id, o)
}

#[test]
fn five_machines_find_each_other_by_mdns_and_a_job_runs_on_all_of_them() {
    let Some((_serial, dir, lan)) = setup("five_machines_find_each_other_by_mdns", &[5]) else {
        return;
    };
    let started = Instant::now();
    let nodes = start_on(dir.path(), &lan, &[0, 1, 2, 3, 4], &["--expect", "5"]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 5, 60);
    println!(
        "5 nodes in 5 namespaces, mDNS only: discovery + election took {:.2} s (leader {leader})",
        started.elapsed().as_secs_f64()
    );

    // A word count submitted in one namespace runs in all of them.
    let corpus = corpus(dir.path(), 10, 2000);
    let want = reference(&corpus);
    let out = dir.path().join("out");
    let (id, o) = wordcount(&nodes[2], &corpus, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(
        check_keyed_parts(&parts(&out, 5)) == want,
        "the word count differs from the reference"
    );
    let (_, job) = nodes[0].get(&format!("/api/v1/jobs/{id}")).unwrap();
    let mut ran_on: Vec<String> = job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|t| t["attempts"].as_array().unwrap().clone())
        .filter(|a| a["state"] == "done")
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect();
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(ran_on.len(), 5, "tasks ran on every machine: {job}");
    let fetched: Vec<u64> = nodes
        .iter()
        .map(|n| {
            n.cluster().unwrap()["shuffle"]["fetched_bytes"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert!(
        fetched.iter().filter(|&&b| b > 0).count() >= 4,
        "the shuffle crossed machines: {fetched:?}"
    );
    // The splits' copies crossed machines as bytes: no node of another machine takes a
    // hard link.
    assert!(
        job["counters"]["shoal"]["input_copied_bytes"]
            .as_u64()
            .unwrap()
            > 0
    );
    let linked: Vec<u64> = nodes
        .iter()
        .map(|n| n.cluster().unwrap()["linked_bytes"].as_u64().unwrap())
        .collect();
    assert_eq!(linked, [0; 5], "no link between machines");
    // Each machine's node, given no --slots, keeps all its cores: it shares them with no
    // other node.
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get()) as u64;
    let slots: Vec<u64> = nodes
        .iter()
        .map(|n| n.cluster().unwrap()["slots"]["total"].as_u64().unwrap())
        .collect();
    assert_eq!(slots, [cores; 5], "every machine's cores");
}

#[test]
fn strangers_without_the_cluster_key_never_get_in() {
    let Some((_serial, dir, lan)) = setup("strangers_without_the_cluster_key_never_get_in", &[5])
    else {
        return;
    };
    let key = dir.path().join("cluster.key");
    let wrong = dir.path().join("wrong.key");
    for k in [&key, &wrong] {
        let o = run(shoal().arg("keygen").arg(k));
        assert!(o.status.success(), "{}", text(&o));
    }
    let key_arg = key.to_string_lossy().into_owned();
    let members = start_on(
        dir.path(),
        &lan,
        &[0, 1, 2],
        &["--expect", "3", "--cluster-key", &key_arg],
    );
    wait_agreed(&members.iter().collect::<Vec<_>>(), 3, 60);
    // A node without a key and one with another key, on the same LAN (mDNS finds them all).
    let keyless = start_on(dir.path(), &lan, &[3], &["--expect", "3", "--insecure"]).remove(0);
    assert!(
        keyless
            .log_text()
            .contains("--insecure and no --cluster-key"),
        "a keyless node off loopback says what it risks: {}",
        keyless.log_text()
    );
    let wrong_arg = wrong.to_string_lossy().into_owned();
    let stranger = start_on(
        dir.path(),
        &lan,
        &[4],
        &["--expect", "3", "--cluster-key", &wrong_arg],
    )
    .remove(0);
    // Wait until every member has refused both of them at least once.
    for m in &members {
        wait_for(30, "a member logs the failed handshakes", || {
            let log = m.log_text();
            let refused = [&lan.hosts[3].addr, &lan.hosts[4].addr].iter().all(|a| {
                log.lines()
                    .any(|l| l.contains("connection failed") && l.contains(a.as_str()))
            });
            refused.then_some(())
        });
    }
    let outsiders = [keyless.node_id.clone(), stranger.node_id.clone()];
    for m in &members {
        let ids = view_ids(m);
        assert!(
            outsiders.iter().all(|o| !ids.contains(o)),
            "{} sees an outsider: {ids:?}",
            m.name
        );
        // Logged once per peer (and direction), not once per attempt.
        let log = m.log_text();
        for a in [&lan.hosts[3].addr, &lan.hosts[4].addr] {
            let n = log
                .lines()
                .filter(|l| l.contains("connection failed") && l.contains(a.as_str()))
                .count();
            assert!(n <= 4, "{}: {n} lines about {a}", m.name);
        }
    }
    // An outsider cannot get a job into the cluster; the members go on working.
    let corpus = corpus(dir.path(), 2, 200);
    let (_, o) = wordcount(&keyless, &corpus, &dir.path().join("out-x"), &[]);
    assert!(!o.status.success(), "an outsider took a job: {}", text(&o));
    println!(
        "submitting to the keyless node: {}",
        String::from_utf8_lossy(&o.stderr).trim()
    );
    for m in &members {
        let (_, jobs) = m.get("/api/v1/jobs").unwrap();
        assert_eq!(jobs.as_array().unwrap().len(), 0, "{}: {jobs}", m.name);
    }
    let out = dir.path().join("out");
    let (_, o) = wordcount(&members[1], &corpus, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let want = reference(&corpus);
    assert!(check_keyed_parts(&parts(&out, 5)) == want);
    let v: Value = members[0].cluster().unwrap();
    assert_eq!(members_of(&v).len(), 3, "{v}");
}

fn members_of(v: &Value) -> Vec<String> {
    let mut ids = members(v, "voter");
    ids.extend(members(v, "learner"));
    ids
}

/// Every node names the same leader, applied the same log position and has the same state
/// hash; the leader.
fn logs_agree(nodes: &[&NodeProc], secs: u64) -> String {
    wait_for(
        secs,
        "one leader and the same applied log everywhere",
        || {
            let views: Vec<Value> = nodes.iter().map(|n| n.cluster()).collect::<Option<_>>()?;
            let leader = views[0]["leader"]["id"].as_str()?.to_string();
            let same = views.iter().all(|v| {
                v["leader"]["id"].as_str() == Some(leader.as_str())
                    && v["applied"] == views[0]["applied"]
                    && v["state_hash"] == views[0]["state_hash"]
            });
            same.then_some(leader)
        },
    )
}

/// A mapper slow enough for a job to span a partition: 30 ms per line.
const SLOW_MAP: &str =
    "while IFS= read -r l; do sleep 0.03; for w in $l; do echo \"$w\"; done; done";

#[test]
fn a_partitioned_leader_is_replaced_and_rejoins_as_a_follower() {
    let Some((_serial, dir, lan)) = setup(
        "a_partitioned_leader_is_replaced_and_rejoins_as_a_follower",
        &[5],
    ) else {
        return;
    };
    let nodes = start_on(
        dir.path(),
        &lan,
        &[0, 1, 2, 3, 4],
        &["--expect", "5", "--slots", "2", "--node-timeout", "3"],
    );
    let all: Vec<&NodeProc> = nodes.iter().collect();
    let old = wait_agreed(&all, 5, 60);
    let li = nodes.iter().position(|n| n.node_id == old).unwrap();
    let fi = (li + 1) % 5;

    // A job that will span the cut, submitted through a node of the future majority.
    let input = dir.path().join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut words = String::new();
    for f in 0..10 {
        let t: String = (0..40)
            .map(|i| format!("w{} f{f} x{}\n", i % 9, i % 4))
            .collect();
        words.push_str(&t);
        std::fs::write(input.join(format!("f{f}.txt")), t).unwrap();
    }
    let want = word_counts(&words);
    let spanning = dir.path().join("out-spanning");
    let child = nodes[fi]
        .command()
        .args([
            "submit",
            "--node",
            &format!("http://{}", nodes[fi].http),
            "--input",
        ])
        .arg(&input)
        .args([
            "--map", SLOW_MAP, "--reduce", "uniq -c", "-R", "3", "--output",
        ])
        .arg(&spanning)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(60, "the job under way", || {
        let (_, jobs) = nodes[fi].get("/api/v1/jobs")?;
        let j = jobs.as_array()?.first()?.clone();
        (j["maps"]["done"].as_u64()? >= 1).then_some(())
    });

    // Cut the leader's cable: the other four elect a new leader.
    let cut = Instant::now();
    lan.link(&lan.hosts[li], false);
    let new = wait_for(30, "a new leader on the majority side", || {
        leader_of(&nodes[fi]).filter(|l| *l != old)
    });
    println!(
        "leader's link cut: {new} leads after {:.2} s",
        cut.elapsed().as_secs_f64()
    );

    // A job submitted to the majority completes.
    let corpus = corpus(dir.path(), 4, 500);
    let out = dir.path().join("out-majority");
    let (_, o) = wordcount(&nodes[fi], &corpus, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(check_keyed_parts(&parts(&out, 5)) == reference(&corpus));
    println!(
        "a job submitted to the majority done {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    );

    // The job that spanned the cut completes correctly.
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(uniq_counts(&parts(&spanning, 3)), want);

    println!(
        "both jobs done {:.1} s after the cut",
        cut.elapsed().as_secs_f64()
    );

    // Heal: the old leader rejoins as a follower (a voter again, if it was silent past
    // --voter-grace and stepped down to learner); one leader; the logs agree.
    lan.link(&lan.hosts[li], true);
    let healed = Instant::now();
    wait_for(60, "the old leader back as a voting follower", || {
        let v = nodes[li].cluster()?;
        (v["this"]["state"] == "follower" && v["this"]["membership"] == "voter").then_some(())
    });
    let leader = logs_agree(&all, 60);
    assert_ne!(leader, old, "the old leader came back as a follower");
    println!(
        "healed: a follower again after {:.1} s; one leader ({leader}), the same applied log on all five",
        healed.elapsed().as_secs_f64()
    );
}

#[test]
fn nodes_on_another_subnet_join_through_one_peer_by_kademlia() {
    let Some((_serial, dir, lan)) = setup(
        "nodes_on_another_subnet_join_through_one_peer_by_kademlia",
        &[3, 2],
    ) else {
        return;
    };
    let a = start_on(dir.path(), &lan, &[0, 1, 2], &["--expect", "3"]);
    wait_agreed(&a.iter().collect::<Vec<_>>(), 3, 60);
    // Subnet B knows one address in A; mDNS does not cross the router.
    let peer = format!("/ip4/{}/tcp/7071", lan.hosts[0].addr);
    let b = start_on(
        dir.path(),
        &lan,
        &[3, 4],
        &["--expect", "3", "--peer", &peer],
    );
    let all: Vec<&NodeProc> = a.iter().chain(b.iter()).collect();
    wait_agreed(&all, 5, 60);
    // B's nodes reach A's other nodes, which they were never told about.
    for n in &b {
        let v = n.cluster().unwrap();
        for other in &a[1..] {
            let seen = v["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|x| x["id"] == other.node_id.as_str() && x["reachable"] == true);
            assert!(
                seen,
                "{} reaches {} through Kademlia: {v}",
                n.name, other.name
            );
        }
    }
    // And a job submitted in subnet B runs.
    let corpus = corpus(dir.path(), 4, 500);
    let out = dir.path().join("out");
    let (_, o) = wordcount(&b[1], &corpus, &out, &[]);
    assert!(o.status.success(), "{}", text(&o));
    let reference = reference(&corpus);
    assert!(check_keyed_parts(&parts(&out, 5)) == reference);
}

#[test]
fn a_job_completes_over_a_lossy_slow_network() {
    let Some((_serial, dir, lan)) = setup("a_job_completes_over_a_lossy_slow_network", &[3]) else {
        return;
    };
    // Raft timeouts raised through the flags, as a user on a poor network would.
    let nodes = start_on(
        dir.path(),
        &lan,
        &[0, 1, 2],
        &[
            "--expect",
            "3",
            "--heartbeat-ms",
            "300",
            "--election-ms",
            "2000-3000",
            "--node-timeout",
            "15",
        ],
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let corpus = corpus(dir.path(), 8, 10000);
    let reference = reference(&corpus);
    let mut took = Vec::new();
    let mut applied = String::new();
    for lossy in [false, true] {
        if lossy {
            for h in &lan.hosts {
                applied = lan.impair(h, 5, 20);
            }
        }
        let out = dir.path().join(format!("out-{lossy}"));
        let started = Instant::now();
        let (_, o) = wordcount(&nodes[1], &corpus, &out, &[]);
        took.push(started.elapsed().as_secs_f64());
        assert!(o.status.success(), "lossy={lossy}: {}", text(&o));
        assert!(
            check_keyed_parts(&parts(&out, 5)) == reference,
            "lossy={lossy}: output differs"
        );
    }
    let dropped: u64 = lan.hosts.iter().map(common::netns::dropped).sum();
    println!(
        "word count, 3 machines: {:.2} s on a clean network, {:.2} s with {applied}, {dropped} packets dropped ({:.1}x)",
        took[0],
        took[1],
        took[1] / took[0]
    );
}
