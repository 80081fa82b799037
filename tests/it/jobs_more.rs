//! More distributed jobs end to end: a busy cluster keeps its manager, nodes on relative
//! data dirs run shipped programs, many small files combined into splits keep every file's
//! name and line, and a follower that missed 84 MiB of log catches up. Three real `shoal node` processes on 127.0.0.1, one cluster test at
//! a time.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

#[test]
fn busy_slots_do_not_cost_the_manager_its_term() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
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
    let dir = common::tempdir();
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
        let v = job_at(&nodes[0].http, &id).unwrap();
        let mut ran = attempt_nodes(&v, "map");
        ran.extend(attempt_nodes(&v, "reduce"));
        ran.sort();
        ran.dedup();
        assert_eq!(ran.len(), 3, "{lang}: attempts ran on every node: {v}");
        // Python opens its script by its absolute path: the task user crosses every
        // directory the node created above its data dir (rel/ of rel/dir).
        let failed: Vec<_> = tasks(&v)
            .iter()
            .flat_map(|t| &t.attempts)
            .filter(|a| a.state == "failed")
            .collect();
        assert!(failed.is_empty(), "{lang}: no attempt failed: {failed:?}");
    }
    let rel = std::fs::metadata(nodes_dir.join("n2/rel")).unwrap();
    assert_eq!(
        rel.permissions().mode() & 0o777,
        0o711,
        "rel/ may be crossed, not listed"
    );
}

#[test]
fn combined_small_files_keep_every_file_name_and_line() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
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
    let maps = c.job(c.follower, &id).maps.total;
    assert!(
        maps > 1 && maps * 4 <= n_files,
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

/// `shoal submit` of a `cat | cat` job over `input` that ships `file`.
fn ship(c: &Cluster, input: &std::path::Path, file: &std::path::Path) -> std::process::Output {
    c.submit(&[
        "--input",
        &input.to_string_lossy(),
        "--file",
        &file.to_string_lossy(),
        "--map",
        "cat",
        "--reduce",
        "cat",
    ])
    .1
}

/// A node's applied log index, as its API says.
fn applied(node: &NodeProc) -> Option<u64> {
    node.cluster()?["applied"]["index"].as_u64()
}

#[test]
fn a_follower_that_missed_big_jobs_catches_up_and_a_spec_over_the_log_s_bound_is_refused() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut c = three_nodes(dir.path());
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a b\n").unwrap();
    let seven = dir.path().join("seven.bin");
    let bytes: Vec<u8> = (0..7u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    std::fs::write(&seven, &bytes).unwrap();

    // One follower down while twelve jobs each ship 7 MiB (84 MiB of log it misses).
    let leader = leader_of(&c.nodes[c.follower]).unwrap();
    let other = (0..3)
        .find(|&i| i != c.follower && c.nodes[i].node_id != leader)
        .unwrap();
    c.nodes[other].kill();
    for _ in 0..12 {
        let o = ship(&c, &input, &seven);
        assert!(o.status.success(), "{}", text(&o));
    }
    let target = applied(&c.nodes[c.follower]).unwrap();
    c.nodes[other].restart_now();
    let started = std::time::Instant::now();
    // A deadline, not a target: the time is printed (5-8 s on a loaded two-core machine).
    wait_for(30, "the restarted follower to catch up", || {
        (applied(&c.nodes[other])? >= target).then_some(())
    });
    println!(
        "the follower caught up with 84 MiB of missed log in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // A spec over the log's bound is refused at submit, naming the bound; nothing is added:
    // by `shoal` before it sends anything, and by the node (413, before it reads the rest)
    // when another client sends one.
    let forty = dir.path().join("forty.bin");
    std::fs::write(&forty, vec![7u8; 40 << 20]).unwrap();
    let (_, jobs_before) = c.nodes[c.follower].get("/api/v1/jobs?tasks=false").unwrap();
    let o = ship(&c, &input, &forty);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("limit"), "{err}");
    println!("shoal, a 40 MiB shipped file: {}", err.trim());
    let spec = dir.path().join("spec.json");
    let name = "x".repeat(33 << 20);
    std::fs::write(
        &spec,
        format!(r#"{{"name":"{name}","inputs":["in.txt"],"kind":{{"App":"wordcount"}}}}"#),
    )
    .unwrap();
    let o = run(std::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-F"])
        .arg(format!("spec=@{};type=application/json", spec.display()))
        .arg("-F")
        .arg(format!("input=@{}", input.display()))
        .arg(format!("{}/api/v1/jobs", c.url(c.follower))));
    let answer = String::from_utf8_lossy(&o.stdout);
    assert!(answer.trim_end().ends_with("413"), "{answer}");
    assert!(answer.contains("over 32 MiB"), "{answer}");
    println!("curl, a 33 MiB spec: {}", answer.trim());
    let (_, jobs_after) = c.nodes[c.follower].get("/api/v1/jobs?tasks=false").unwrap();
    assert_eq!(jobs_before, jobs_after);
}
