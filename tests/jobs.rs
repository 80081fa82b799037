//! Distributed jobs end to end: three real `shoal node` processes on 127.0.0.1; jobs
//! submitted to a follower with `shoal submit`, checked against independent references, with
//! task placement, overlap, exact run counts, the shuffle's bytes, chaining and kill checked
//! through the job's JSON. One cluster test at a time (they share two cores).

mod common;

use std::path::Path;
use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::Value;

/// A three-node cluster and one of its followers.
struct Cluster {
    nodes: Vec<NodeProc>,
    follower: usize,
}

fn three_nodes(dir: &Path) -> Cluster {
    let nodes = start_cluster(&dir.join("nodes"), 3, &["--expect", "3", "--slots", "2"]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let follower = nodes
        .iter()
        .position(|n| n.node_id != leader)
        .expect("a follower");
    Cluster { nodes, follower }
}

impl Cluster {
    fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].http)
    }

    /// `shoal submit --node FOLLOWER …`; the job id and the command's output.
    fn submit(&self, args: &[&str]) -> (String, std::process::Output) {
        let o = run(shoal()
            .args(["submit", "--node", &self.url(self.follower)])
            .args(args));
        let id = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        (id, o)
    }

    fn job(&self, i: usize, id: &str) -> Value {
        let (status, v) = http_get(&self.nodes[i].http, &format!("/api/v1/jobs/{id}"))
            .unwrap_or_else(|| panic!("node {i} did not answer"));
        assert_eq!(status, 200, "GET job {id}: {v}");
        v
    }
}

fn write_script(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// Node ids of every attempt of the job's tasks of `kind`.
fn attempt_nodes(job: &Value, kind: &str) -> Vec<String> {
    job["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"] == kind)
        .flat_map(|t| t["attempts"].as_array().unwrap().iter())
        .map(|a| a["node"].as_str().unwrap().to_string())
        .collect()
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

fn done_node(task: &Value) -> String {
    task["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["state"] == "done")
        .map(|a| a["node"].as_str().unwrap().to_string())
        .expect("a done attempt")
}

#[test]
fn jobs_submitted_to_a_follower_match_the_reference_and_the_shuffle_crosses_nodes() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
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
        assert_eq!(v["state"], "succeeded", "{v}");
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

    // A chained job reads the word count's output inside the cluster: count → word.
    let out = dir.path().join("out-chain");
    let (_, o) = c.submit(&[
        "--input",
        &format!("shoal://{wordcount_job}"),
        "--map",
        "awk -F'\\t' '{print $2 \"\\t\" $1}'",
        "--reduce",
        "cat",
        "-R",
        "2",
        "--output",
        &out.to_string_lossy(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut swapped: Vec<Vec<u8>> = want
        .iter()
        .map(|l| {
            let k = key(l);
            [&l[k.len() + 1..], b"\t", k].concat()
        })
        .collect();
    swapped.sort();
    assert!(
        check_keyed_parts(&parts(&out, 2)) == swapped,
        "the chained job differs"
    );

    // Every node's fetched shuffle bytes equal the map output its reduces needed from the
    // other nodes, over every job this cluster ran.
    let jobs = http_get_json(&c.nodes[0].http, "/api/v1/jobs").unwrap();
    let mut want_fetched = std::collections::HashMap::<String, u64>::new();
    let mut crossed = 0u64;
    for j in jobs.as_array().unwrap() {
        let tasks = j["tasks"].as_array().unwrap();
        let maps: Vec<&Value> = tasks.iter().filter(|t| t["kind"] == "map").collect();
        for (p, red) in tasks.iter().filter(|t| t["kind"] == "reduce").enumerate() {
            let rn = done_node(red);
            for m in &maps {
                if done_node(m) != rn {
                    let size = m["output_sizes"][p].as_u64().unwrap();
                    *want_fetched.entry(rn.clone()).or_default() += size;
                    crossed += size;
                }
            }
        }
    }
    assert!(crossed > 0, "some map output crossed nodes");

    // Ended jobs leave no splits or map outputs on any node; their part files stay.
    wait_for(10, "every node to delete finished jobs' scratch", || {
        let leftovers: Vec<String> = c
            .nodes
            .iter()
            .flat_map(|n| files_under(&n.data.join("blobs")))
            .filter(|p| !p.contains("/out/") && !p.contains("/.scratch"))
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
    let dir = tempfile::tempdir().unwrap();
    let c = three_nodes(dir.path());
    let input = dir.path().join("eight");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for f in 0..8 {
        let text: String = (0..200).map(|i| format!("w{} w{}\n", i % 17, f)).collect();
        all.push_str(&text);
        std::fs::write(input.join(format!("f{f}.txt")), text).unwrap();
    }
    let log = dir.path().join("map.log");
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
    let dir = tempfile::tempdir().unwrap();
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
            &["--input", &input, "--app", "wordcount", "-R", "0"],
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
    assert_eq!(v["state"], "failed");
    let attempts = v["tasks"][0]["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2);
    assert_ne!(
        attempts[0]["node"], attempts[1]["node"],
        "the retry ran elsewhere"
    );
    for a in attempts {
        assert_eq!(a["exit"], "exit 3", "{a}");
        assert!(
            a["stderr_tail"]
                .as_str()
                .unwrap()
                .contains("oops: bad record"),
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
    let runner = c.job(li, &id)["tasks"][0]["attempts"][0]["node"]
        .as_str()
        .unwrap()
        .to_string();
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
    assert_eq!(c.job(c.follower, &id)["state"], "killed");
    wait_for(10, "no task process left", || {
        task_processes(&marker).is_empty().then_some(())
    });
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

#[test]
fn busy_slots_do_not_cost_the_manager_its_term() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let c = three_nodes(dir.path());
    let corpus = dir.path().join("corpus.txt");
    shoal::demo::corpus::generate(&corpus, 96 << 20, 200_000, 3).unwrap();
    let term = |i: usize| c.nodes[i].cluster().unwrap()["term"].as_u64().unwrap();
    let leader = leader_of(&c.nodes[0]).unwrap();
    let term_before = term(0);

    // CPU-bound native word counts, back to back, for at least 30 s; every node's two slots
    // are seen full while they run.
    let started = std::time::Instant::now();
    let mut full = std::collections::HashSet::new();
    let mut jobs = 0;
    while started.elapsed() < Duration::from_secs(30) {
        let mut child = shoal()
            .args(["submit", "--node", &c.url(c.follower), "--app", "wordcount"])
            .args(["--split-size", "4194304", "-R", "3", "--wait", "--input"])
            .arg(&corpus)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break s;
            }
            for (i, n) in c.nodes.iter().enumerate() {
                if let Some(v) = n.cluster() {
                    if v["slots"]["busy"] == v["slots"]["total"] {
                        full.insert(i);
                    }
                }
            }
            std::thread::park_timeout(Duration::from_millis(50));
        };
        assert!(status.success(), "job {jobs} failed");
        jobs += 1;
    }
    assert_eq!(
        full.len(),
        3,
        "every node's slots were all busy at some point"
    );
    for i in 0..3 {
        assert_eq!(
            term(i),
            term_before,
            "the term changed on node {i} during {jobs} jobs"
        );
    }
    assert_eq!(
        leader_of(&c.nodes[0]).unwrap(),
        leader,
        "the manager kept its role"
    );
    println!(
        "{jobs} jobs in {:.1} s, term {term_before} throughout",
        started.elapsed().as_secs_f64()
    );
}

#[test]
fn nodes_on_relative_data_dirs_run_shipped_mappers_reducers_and_combiners() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let nodes_dir = dir.path().join("nodes");
    // As a user starts them: each in its own working directory, the first with the default
    // `./shoal-data`, the others with a relative `--data`.
    let mut nodes: Vec<NodeProc> = Vec::new();
    for (i, data) in [None, Some("rel/dir"), Some("./d3")]
        .into_iter()
        .enumerate()
    {
        let mut args: Vec<String> = ["--expect", "3", "--slots", "2"].map(String::from).to_vec();
        for p in &nodes {
            args.extend(["--peer".to_string(), p.peer_addr()]);
        }
        nodes.push(NodeProc::start_relative(
            &nodes_dir,
            &format!("n{}", i + 1),
            data,
            &args,
        ));
    }
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    assert!(nodes_dir.join("n1/shoal-data/node.redb").is_file());
    assert!(nodes_dir.join("n2/rel/dir/node.redb").is_file());
    assert!(nodes_dir.join("n3/d3/node.redb").is_file());

    // The client too runs with relative paths, from its own working directory.
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let want = shebang_wordcount_setup(&work, 4, 1500);
    let node = format!("http://{}", nodes[0].http);
    for (lang, map, reduce) in [
        ("python", "./mapper.py", "reducer.py"),
        ("shell", "./map.sh", "reduce.sh"),
    ] {
        let out = format!("out-{lang}");
        let o = run(shoal()
            .current_dir(&work)
            .args(["submit", "--node", &node])
            .args(shebang_job(map, reduce))
            .args(["-R", "2", "--split-size", "32768", "--output", &out]));
        assert!(o.status.success(), "{lang}: {}", text(&o));
        let got = check_keyed_parts(&parts(&work.join(&out), 2));
        assert!(
            got == want,
            "word count by shipped {lang} scripts differs from the reference"
        );
        // Every node ran a part of it: the paths held on each of them.
        let id = job_id(&o);
        let (_, v) = http_get(&nodes[0].http, &format!("/api/v1/jobs/{id}")).unwrap();
        let mut ran = attempt_nodes(&v, "map");
        ran.extend(attempt_nodes(&v, "reduce"));
        ran.sort();
        ran.dedup();
        assert_eq!(ran.len(), 3, "{lang}: attempts ran on every node: {v}");
    }
}

#[test]
fn combined_small_files_keep_every_file_name_and_line() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let c = three_nodes(dir.path());
    let corpus = corpus(dir.path(), 40, 30);
    // A file without a final newline before another file: its last word must not run into
    // the next file's first one.
    std::fs::write(corpus.join("doc00.txt.part"), b"lastword").unwrap();
    // Files with something in them (an empty file has no record, so no split names it).
    let files = python_reference(
        &format!("{PY_FILES}\nfor n, b in files():\n    if b: w.write(n.encode() + b'\\n')"),
        &corpus,
        &[],
    );
    let n_files = lines(&files).len();
    let input = corpus.to_string_lossy().into_owned();
    let combined = ["--combine-files", "--split-size", "4096", "-R", "2"];

    // A native app sees each record's own file: the inverted index names the right files.
    let out = dir.path().join("out-index");
    let (id, o) = c.submit(
        &[
            &["--input", &input, "--app", "invertedindex"][..],
            &combined,
            &["--output", &out.to_string_lossy()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{INVERTED_PY}"),
        &corpus,
        &[],
    ));
    assert!(
        check_keyed_parts(&parts(&out, 2)) == want,
        "the inverted index differs"
    );
    let maps = c.job(c.follower, &id)["maps"]["total"].as_u64().unwrap();
    assert!(
        maps > 1 && maps * 4 <= n_files as u64,
        "{n_files} files packed into a few splits: {maps}"
    );

    // A streaming mapper gets several files on one stdin and their names, one per line.
    let out = dir.path().join("out-names");
    let (_, o) = c.submit(
        &[
            &["--input", &input][..],
            &[
                "--map",
                "cat > /dev/null; printf '%s\\n' \"$SHOAL_INPUT_FILES\" | sed 's/$/\\t1/'",
                "--reduce",
                "uniq",
            ],
            &combined,
            &["--output", &out.to_string_lossy()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let names: Vec<Vec<u8>> = check_keyed_parts(&parts(&out, 2))
        .iter()
        .map(|l| key(l).to_vec())
        .collect();
    assert_eq!(
        names,
        sorted_lines(&files),
        "every file named by SHOAL_INPUT_FILES"
    );

    // Word count over the same packing equals the reference: no line lost or joined. With
    // no copies, the nodes that run maps without holding the input fetch just their split.
    let out = dir.path().join("out-wc");
    let (id, o) = c.submit(
        &[
            &[
                "--input",
                &input,
                "--app",
                "wordcount",
                "--replication",
                "0",
            ][..],
            &combined,
            &["--output", &out.to_string_lossy()],
        ]
        .concat(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let mut ran = attempt_nodes(&c.job(c.follower, &id), "map");
    ran.sort();
    ran.dedup();
    assert!(
        ran.len() > 1,
        "maps ran beyond the one node holding the input: {ran:?}"
    );
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        &corpus,
        &[],
    ));
    assert!(
        check_keyed_parts(&parts(&out, 2)) == want,
        "the word count differs"
    );
}
