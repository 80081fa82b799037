//! Distributed jobs end to end: three real `shoal node` processes on 127.0.0.1; jobs
//! submitted to a follower with `shoal submit`, checked against independent references, with
//! task placement, overlap, exact run counts, the shuffle's bytes, chaining and kill checked
//! through the job's JSON. One cluster test at a time (they share two cores).

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;
use shoal_node::http::jobs_view::{JobView, TaskView};

#[test]
fn jobs_submitted_to_a_follower_match_the_reference_and_the_shuffle_crosses_nodes() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    let corpus = corpus(dir.path(), 6, 3000);
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        &corpus,
        &[],
    ));
    assert!(want.len() > 500, "the corpus has many distinct words");
    let map_py = write_script(dir.path(), "map.py", MAPPER_PY);
    let reduce_py = write_script(dir.path(), "reduce.py", REDUCER_PY);
    let input = corpus.to_string_lossy().into_owned();
    let r = 3;
    let jobs = wordcount_jobs(&map_py, &reduce_py);
    let mut wordcount_job = String::new();
    for (name, job) in jobs {
        let job: Vec<&str> = job.iter().map(String::as_str).collect();
        let out = dir.path().join(format!("out-{name}"));
        let (id, o) = c.submit(
            &[
                &["--input", &input, "-R", "3", "--split-size", "65536"][..],
                &job,
                &["--wait", "--output", &out.to_string_lossy()],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{name}: {}", text(&o));
        assert!(
            id.starts_with("j-"),
            "the first stdout line is the job id: {id:?}"
        );
        // The moment --wait returns: succeeded, _SUCCESS there, output = reference.
        let v = c.job(c.follower, &id);
        assert_eq!(v.state, "succeeded", "{v}");
        let got = check_keyed_parts(&parts(&out, r));
        assert!(
            got == want,
            "word count via {name} differs from the reference"
        );
        if name == "app" {
            wordcount_job = id;
        }
    }

    let out = dir.path().join("out-index");
    let (_, o) = c.submit(&[
        "--input",
        &input,
        "--app",
        "invertedindex",
        "-R",
        "3",
        "--split-size",
        "65536",
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let want_index = sorted_lines(&python_reference(
        &format!("{PY_FILES}{INVERTED_PY}"),
        &corpus,
        &[],
    ));
    assert!(
        check_keyed_parts(&parts(&out, r)) == want_index,
        "inverted index differs"
    );

    // A chained job reads the word count's output inside the cluster: count → word. Its
    // parts are a split's size, so each is one split read where it is stored; at a split
    // size they are over twice of, this node reads them and cuts them into splits.
    let mut swapped: Vec<Vec<u8>> = want
        .iter()
        .map(|l| {
            let k = key(l);
            [&l[k.len() + 1..], b"\t", k].concat()
        })
        .collect();
    swapped.sort();
    let source = c.job(c.follower, &wordcount_job);
    let part_bytes: u64 = tasks(&source)
        .iter()
        .filter(|t| t.kind == "reduce")
        .map(|t| t.output_sizes[0])
        .sum();
    assert!(part_bytes > 3 * 2048, "parts over twice 1,024 bytes");
    for (split_size, in_place) in [("65536", true), ("1024", false)] {
        let out = dir.path().join(format!("out-chain-{split_size}"));
        let (id, o) = c.submit(&[
            "--input",
            &format!("shoal://{wordcount_job}"),
            "--map",
            "awk -F'\\t' '{print $2 \"\\t\" $1}'",
            "--reduce",
            "cat",
            "-R",
            "2",
            "--split-size",
            split_size,
            "--output",
            &out.to_string_lossy(),
        ]);
        assert!(o.status.success(), "{}", text(&o));
        assert!(
            check_keyed_parts(&parts(&out, 2)) == swapped,
            "the chained job at split size {split_size} differs"
        );
        let chain = c.job(c.follower, &id);
        let uploaded = shoal_counter(&chain, "input_uploaded_bytes");
        if in_place {
            assert_eq!(chain.maps.total, r as usize, "one map per part: {chain}");
            assert_eq!(uploaded, 0, "nothing uploaded: {chain}");
        } else {
            assert!(chain.maps.total > r as usize, "cut into splits: {chain}");
            assert_eq!(uploaded, part_bytes, "the parts stored again: {chain}");
        }
    }

    // Every node's fetched shuffle bytes equal the map output its reduces needed from the
    // other nodes, over every job this cluster ran.
    let jobs: Vec<JobView> =
        serde_json::from_value(http_get_json(&c.nodes[0].http, "/api/v1/jobs").unwrap()).unwrap();
    let mut want_fetched = std::collections::HashMap::<String, u64>::new();
    let mut crossed = 0u64;
    for j in &jobs {
        let tasks = tasks(j);
        let maps: Vec<&TaskView> = tasks.iter().filter(|t| t.kind == "map").collect();
        for (p, red) in tasks.iter().filter(|t| t.kind == "reduce").enumerate() {
            let rn = done_node(red);
            for m in &maps {
                if done_node(m) != rn {
                    let size = m.output_sizes[p];
                    *want_fetched.entry(rn.clone()).or_default() += size;
                    crossed += size;
                }
            }
        }
    }
    assert!(crossed > 0, "some map output crossed nodes");

    // Ended jobs leave no splits or map outputs on any node; their part files and their
    // attempts' logs stay (until the job is forgotten).
    wait_for(10, "every node to delete finished jobs' scratch", || {
        let leftovers: Vec<String> = c
            .nodes
            .iter()
            .flat_map(|n| files_under(&n.data.join("blobs")))
            .filter(|p| !p.contains("/out/") && !p.contains("/logs/") && !p.contains("/.scratch"))
            .collect();
        leftovers.is_empty().then_some(())
    });
    let parts_stored = c
        .nodes
        .iter()
        .flat_map(|n| files_under(&n.data.join("blobs")))
        .filter(|p| p.contains(&format!("{wordcount_job}/out/part-")))
        .count();
    assert_eq!(parts_stored, 3 * 3, "three part files, each on three nodes");
    for n in &c.nodes {
        let v = n.cluster().unwrap();
        assert_eq!(
            v["shuffle"]["fetched_bytes"].as_u64().unwrap(),
            want_fetched.get(&n.node_id).copied().unwrap_or(0),
            "shuffle bytes received by {}",
            n.name
        );
    }
}

/// A mapper that logs its start and end (ns) to a shared file, works a little, and splits
/// words.
const LOGGING_MAPPER: &str = r#"#!/bin/sh
echo "start $SHOAL_TASK_ID $(date +%s%N)" >> "$MAP_LOG"
sleep 0.4
tr -s ' \t' '\n\n' | sed '/^$/d'
echo "end $SHOAL_TASK_ID $(date +%s%N)" >> "$MAP_LOG"
"#;

#[test]
fn eight_files_run_eight_maps_spread_over_all_nodes_and_overlapping() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    let input = dir.path().join("eight");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for f in 0..8 {
        let text: String = (0..200).map(|i| format!("w{} w{}\n", i % 17, f)).collect();
        all.push_str(&text);
        std::fs::write(input.join(format!("f{f}.txt")), text).unwrap();
    }
    let log = writable_by_tasks(dir.path()).join("map.log");
    let mapper = write_script(dir.path(), "map.sh", LOGGING_MAPPER);
    let out = dir.path().join("out");
    // The first --node does not answer: the client moves on to the next.
    let (id, o) = c.submit(&[
        "--node",
        "http://127.0.0.1:1",
        "--input",
        &input.to_string_lossy(),
        "--map",
        &mapper,
        "--reduce",
        "uniq -c",
        "-R",
        "2",
        "--env",
        &format!("MAP_LOG={}", log.display()),
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));

    // Exactly 8 runs: no duplicate or speculative attempts on a healthy cluster.
    let log_text = std::fs::read_to_string(&log).unwrap();
    let starts: Vec<&str> = log_text
        .lines()
        .filter(|l| l.starts_with("start"))
        .collect();
    assert_eq!(
        starts.len(),
        8,
        "the mapper ran {} times:\n{log_text}",
        starts.len()
    );
    let v = c.job(c.follower, &id);
    let map_nodes = attempt_nodes(&v, "map");
    assert_eq!(map_nodes.len(), 8, "one attempt per map task: {v}");

    // Placement: maps ran on all three nodes.
    let mut distinct = map_nodes.clone();
    distinct.sort();
    distinct.dedup();
    let mut ids: Vec<String> = c.nodes.iter().map(|n| n.node_id.clone()).collect();
    ids.sort();
    assert_eq!(distinct, ids, "maps ran on every node");

    // Overlap: some two mappers, by their own clocks, ran at the same time.
    let span = |task: &str, what: &str| -> u128 {
        log_text
            .lines()
            .find_map(|l| {
                let mut f = l.split(' ');
                (f.next() == Some(what) && f.next() == Some(task))
                    .then(|| f.next().unwrap().parse::<u128>().unwrap())
            })
            .unwrap()
    };
    let spans: Vec<(u128, u128)> = (0..8)
        .map(|i| {
            let t = format!("m-{i:05}");
            (span(&t, "start"), span(&t, "end"))
        })
        .collect();
    let overlapping = spans
        .iter()
        .enumerate()
        .any(|(i, a)| spans[i + 1..].iter().any(|b| a.0 < b.1 && b.0 < a.1));
    assert!(overlapping, "no two maps overlapped: {spans:?}");

    // And the output is right: `uniq -c` of the sorted words.
    assert_eq!(uniq_counts(&parts(&out, 2)), word_counts(&all));
}

fn task_processes(marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(marker) {
                found.push(cmd);
            }
        }
    }
    found
}

#[test]
fn bad_submissions_are_refused_failures_are_explained_and_kill_stops_a_job() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b c\n".repeat(100)).unwrap();
    let input = input.to_string_lossy().into_owned();

    // 5. Bad input: a clear error, exit 2, and no job queued.
    let not_exec = write_script(dir.path(), "mapper.bin", "not a program\n");
    let bad: [(&[&str], &str); 4] = [
        (
            &["--input", "/nonexistent/input", "--app", "wordcount"],
            "/nonexistent/input",
        ),
        (&["--input", &input, "--app", "nosuchapp"], "unknown --app"),
        (
            &["--input", &input, "--app", "wordcount", "-R", "200000"],
            "--reducers",
        ),
        (
            &["--input", &input, "--map", &not_exec, "--reduce", "cat"],
            "mapper.bin",
        ),
    ];
    for (args, says) in bad {
        let (_, o) = c.submit(args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?} should name {says:?}: {err}");
    }
    let jobs = http_get_json(&c.nodes[0].http, "/api/v1/jobs").unwrap();
    assert_eq!(
        jobs.as_array().unwrap().len(),
        0,
        "nothing was queued: {jobs}"
    );

    // A mapper that fails: retried on another node, then the job fails with the reason;
    // every attempt shows the exit status and the stderr tail.
    let (id, o) = c.submit(&[
        "--input",
        &input,
        "--map",
        "echo 'oops: bad record' >&2; exit 3",
        "--reduce",
        "cat",
        "--max-attempts",
        "2",
        "--wait",
    ]);
    assert_eq!(
        o.status.code(),
        Some(1),
        "a failed job exits 1: {}",
        text(&o)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("failed 2 of 2 attempts") && err.contains("oops: bad record"),
        "the reason is printed: {err}"
    );
    let v = c.job(c.follower, &id);
    assert_eq!(v.state, "failed");
    let attempts = &tasks(&v)[0].attempts;
    assert_eq!(attempts.len(), 2);
    assert_ne!(
        attempts[0].node, attempts[1].node,
        "the retry ran elsewhere"
    );
    for a in attempts {
        assert_eq!(a.exit.as_deref(), Some("exit 3"), "{a}");
        assert!(
            a.stderr_tail
                .as_deref()
                .is_some_and(|t| t.contains("oops: bad record")),
            "{a}"
        );
    }

    // 4d. kill: a job whose mappers would run for minutes stops within seconds.
    let marker = format!("shoal-kill-test-{}", std::process::id());
    let (id, o) = c.submit(&[
        "--input",
        &input,
        "--split-size",
        "1024",
        "--map",
        &format!("sleep 300 # {marker}"),
        "--reduce",
        "cat",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(30, "the job's mappers to be running", || {
        (!task_processes(&marker).is_empty()).then_some(())
    });
    // The worker's heartbeat tells the leader what it runs and how far it got: the whole
    // split (600 bytes) is in the mapper's stdin.
    let leader = leader_of(&c.nodes[0]).unwrap();
    let li = c.nodes.iter().position(|n| n.node_id == leader).unwrap();
    let runner = tasks(&c.job(li, &id))[0].attempts[0].node.clone();
    wait_for(10, "the leader to hear the map's progress", || {
        let v = c.nodes[li].cluster()?;
        let node = v["nodes"]
            .as_array()?
            .iter()
            .find(|n| n["id"] == runner.as_str())?
            .clone();
        let running = node["heartbeat"]["running"].as_array()?.clone();
        running
            .iter()
            .any(|a| {
                a["job"] == id.as_str() && a["task"] == "m-00000" && a["progress_bytes"] == 600
            })
            .then_some(())
    });
    let o = run(shoal().args(["kill", "--node", &c.url(c.follower), &id]));
    assert!(o.status.success(), "{}", text(&o));
    let killed = c.job(c.follower, &id);
    assert_eq!(killed.state, "killed");
    wait_for(10, "no task process left", || {
        task_processes(&marker).is_empty().then_some(())
    });
    // Every view says the job's tasks will not run: none is left pending or running.
    let states: Vec<&str> = tasks(&killed)
        .iter()
        .flat_map(|t| {
            std::iter::once(t.state.as_str()).chain(t.attempts.iter().map(|a| a.state.as_str()))
        })
        .collect();
    assert!(
        !states.iter().any(|s| ["pending", "running"].contains(s)),
        "{killed}"
    );
    assert!(states.contains(&"cancelled"), "{killed}");
    assert_eq!(killed.maps.running + killed.reduces.running, 0, "{killed}");
    let scrape = scrape(&c.nodes[c.follower].http);
    for kind in ["map", "reduce"] {
        for state in ["pending", "running"] {
            let n = sample(&scrape, "shoal_tasks", &[("kind", kind), ("state", state)]);
            assert_eq!(n, Some(0.0), "shoal_tasks {kind} {state}");
        }
        let n = sample(
            &scrape,
            "shoal_task_attempts",
            &[("kind", kind), ("outcome", "running")],
        );
        assert_eq!(n, Some(0.0), "running {kind} attempts");
    }
    let cancelled = sample(
        &scrape,
        "shoal_tasks",
        &[("kind", "map"), ("state", "cancelled")],
    );
    assert!(cancelled.is_some_and(|n| n >= 1.0), "{cancelled:?}");
    let o = run(shoal().args(["status", "--node", &c.url(0), &id]));
    assert_eq!(o.status.code(), Some(1), "a killed job's status exits 1");
    assert!(String::from_utf8_lossy(&o.stdout).contains("killed"));
    // Its output cannot be fetched, with a clear error.
    let o = run(shoal()
        .args(["output", "--node", &c.url(0), &id, "--dir"])
        .arg(dir.path().join("nope")));
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("killed"),
        "{}",
        text(&o)
    );
}
