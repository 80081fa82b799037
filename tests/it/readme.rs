//! README.md, run as written. Its command blocks marked `<!-- README test: NAME -->` are
//! executed line by line as a new user would type them: the cluster block on three
//! "machines" (a working directory each, default flags and data dir), the jobs block and
//! the one-process block in a working directory holding a checkout's README.md and
//! examples/. Only the addresses move: nodes listen on loopback ports with mDNS off, the
//! block's `--peer` address becomes the first node's, and clients find that node through
//! `SHOAL_NODE` (the env twin of `--node`). When the README changes, this runs the new text.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

/// The pages whose marked blocks run: README.md, then docs/*.md.
fn pages() -> Vec<PathBuf> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo().join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    std::iter::once(repo().join("README.md"))
        .chain(docs)
        .collect()
}

/// The lines of the block marked `name` in README.md or docs/, comments kept, `\`
/// continuations joined.
fn block(name: &str) -> Vec<String> {
    let marker = format!("<!-- README test: {name} ");
    let page = pages()
        .into_iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .find(|text| text.contains(&marker))
        .unwrap_or_else(|| panic!("neither README.md nor docs/ has a block marked {marker:?}"));
    let start = page.find(&marker).expect("found");
    let body = &page[start..];
    let body = &body[body.find("```sh\n").expect("a sh block follows the marker") + 6..];
    let body = &body[..body.find("```").expect("the block ends")];
    body.replace("\\\n", " ")
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(String::from)
        .collect()
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The shell words of a line before its comment (the cluster block has no quotes).
fn words(line: &str) -> Vec<String> {
    line.split(" #")
        .next()
        .unwrap()
        .split_whitespace()
        .map(String::from)
        .collect()
}

/// `PATH` with the `shoal` under test first, as an installed `shoal` would be.
fn path_with_shoal() -> String {
    let bin = Path::new(env!("CARGO_BIN_EXE_shoal")).parent().unwrap();
    format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    )
}

/// Run `script` with bash (stop at the first failing command) in `dir`; its output.
fn sh(dir: &Path, node: &str, script: &str) -> std::process::Output {
    let o = run(Command::new("bash")
        .args(["-e", "-c", script])
        .current_dir(dir)
        .env("PATH", path_with_shoal())
        .env("SHOAL_NODE", node)
        .env_remove("PYTHONUNBUFFERED"));
    assert!(o.status.success(), "{script}\n{}", text(&o));
    o
}

/// A checkout's files the blocks use, in a fresh working directory.
fn checkout(dir: &Path) -> PathBuf {
    let work = dir.join("work");
    std::fs::create_dir_all(work.join("examples")).unwrap();
    std::fs::copy(repo().join("README.md"), work.join("README.md")).unwrap();
    for f in ["map.py", "reduce.py"] {
        std::fs::copy(
            repo().join("examples").join(f),
            work.join("examples").join(f),
        )
        .unwrap();
    }
    work
}

/// Word count of README.md, computed by Python: `word<TAB>count` lines, sorted.
fn readme_wordcount(work: &Path) -> Vec<Vec<u8>> {
    let out = run(Command::new("python3")
        .arg("-c")
        .arg(
            "import sys, collections\n\
             c = collections.Counter(open(sys.argv[1], 'rb').read().split())\n\
             for k in sorted(c): sys.stdout.buffer.write(k + b'\\t' + str(c[k]).encode() + b'\\n')",
        )
        .arg(work.join("README.md")));
    assert!(out.status.success(), "{}", text(&out));
    sorted_lines(&out.stdout)
}

#[test]
fn the_quick_start_command_is_what_the_test_script_runs() {
    let demo = block("demo");
    assert_eq!(demo.len(), 1, "one command: {demo:?}");
    let command = words(&demo[0]).join(" ");
    // The script runs the binary its tests built (`shoal …`, a function in the script), which
    // is what `cargo run -- …` runs.
    let args = command
        .strip_prefix("cargo run -- ")
        .unwrap_or_else(|| panic!("the quick start is `cargo run -- …`: {command}"));
    let script = std::fs::read_to_string(repo().join("scripts/test")).unwrap();
    assert!(
        script.contains("shoal() { \"${CARGO_TARGET_DIR:-target}/debug/shoal\" \"$@\"; }")
            && script.lines().any(|l| l.trim() == format!("shoal {args}")),
        "./scripts/test runs README's quick start `{command}`"
    );
}

#[test]
fn the_cluster_and_jobs_blocks_run_as_written_on_three_machines() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let machines = dir.path().join("machines");
    let work = checkout(dir.path());
    let mut nodes: Vec<NodeProc> = Vec::new();
    let mut first_http = String::new();
    for line in block("cluster") {
        let w = words(&line);
        assert_eq!(w[0], "shoal", "a shoal command: {line}");
        if w[1] == "node" {
            // The node without --peer on the first machine, the one with it on the others.
            let targets: &[&str] = if w.contains(&"--peer".to_string()) {
                &["m2", "m3"]
            } else {
                &["m1"]
            };
            for m in targets {
                let first = nodes.first().map(|n| n.addrs[0].clone());
                let args: Vec<String> = w[2..]
                    .iter()
                    .map(|a| match (&first, a.starts_with("/ip4/10.")) {
                        (Some(addr), true) => addr.clone(),
                        _ => a.clone(),
                    })
                    .collect();
                nodes.push(NodeProc::start_relative(&machines, m, None, &args));
            }
            continue;
        }
        if nodes.len() == 3 && first_http.is_empty() {
            wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
            first_http = format!("http://{}", nodes[0].http);
        }
        let at = if nodes.is_empty() {
            machines.join("m1")
        } else {
            work.clone()
        };
        std::fs::create_dir_all(&at).unwrap();
        let o = sh(&at, &first_http, &line);
        if w[1] == "keygen" {
            // "once; copy the file to every machine"
            let key = at.join(&w[2]);
            for m in ["m2", "m3"] {
                std::fs::create_dir_all(machines.join(m)).unwrap();
                std::fs::copy(&key, machines.join(m).join(&w[2])).unwrap();
            }
        }
        if w[1] == "status" {
            let shown = String::from_utf8_lossy(&o.stdout);
            for n in &nodes {
                assert!(
                    shown.contains(&n.node_id),
                    "status shows {}: {shown}",
                    n.node_id
                );
            }
            assert!(shown.contains("leader"), "{shown}");
        }
    }
    assert_eq!(nodes.len(), 3, "three machines run a node");
    for (n, m) in nodes.iter().zip(["m1", "m2", "m3"]) {
        assert!(
            machines.join(m).join("shoal-data/node.redb").is_file(),
            "{} keeps its data in ./shoal-data",
            n.name
        );
        assert!(
            n.log_text().contains("cluster key loaded"),
            "{} runs with the cluster key",
            n.name
        );
    }

    // The jobs block, as one shell session in the checkout.
    let script = block("jobs").join("\n");
    let o = sh(&work, &first_http, &script);
    let want = readme_wordcount(&work);
    let got = check_keyed_parts(&all_parts(&work.join("out")));
    assert!(
        got == want,
        "shoal output --dir: the word count of README.md"
    );
    let got = check_keyed_parts(&all_parts(&work.join("out-py")));
    assert!(
        got == want,
        "the shipped Python job: the word count of README.md"
    );
    // `sort -k2,2nr | head -5` of the parts on stdout: the most frequent word first.
    let top = want
        .iter()
        .max_by_key(|l| {
            let n: u64 = String::from_utf8_lossy(&l[key(l).len() + 1..])
                .parse()
                .unwrap();
            n
        })
        .unwrap();
    let count_of = |l: &[u8]| String::from_utf8_lossy(&l[key(l).len() + 1..]).to_string();
    let first_line = o
        .stdout
        .split(|&b| b == b'\n')
        .find(|l| l.contains(&b'\t'))
        .unwrap();
    assert_eq!(
        count_of(first_line),
        count_of(top),
        "the top word's count first"
    );
    // The chained shell job: how many words occur N times, for every N.
    let mut freq = std::collections::BTreeMap::<u64, u64>::new();
    for l in &want {
        *freq.entry(count_of(l).parse().unwrap()).or_default() += 1;
    }
    let mut got = std::collections::BTreeMap::<u64, u64>::new();
    for l in all_parts(&work.join("out-counts"))
        .iter()
        .flat_map(|p| lines(p))
    {
        let s = String::from_utf8(l).unwrap();
        let mut f = s.split_whitespace();
        let (words, n) = (
            f.next().unwrap().parse().unwrap(),
            f.next().unwrap().parse().unwrap(),
        );
        got.insert(n, words);
    }
    assert_eq!(got, freq, "the chained job counts words by frequency");
    // Every job in `shoal jobs`; the slow one killed, the others succeeded.
    let jobs = http_get_json(&nodes[1].http, "/api/v1/jobs").unwrap();
    let states: Vec<(String, String)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| {
            (
                j["name"].as_str().unwrap().into(),
                j["state"].as_str().unwrap().into(),
            )
        })
        .collect();
    assert_eq!(states.len(), 4, "{states:?}");
    assert_eq!(
        states[0].1, "killed",
        "the newest (slow) job was killed: {states:?}"
    );
    assert!(
        states[1..].iter().all(|(_, s)| s == "succeeded"),
        "{states:?}"
    );
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains("succeeded"),
        "shoal status shows the job's end: {shown}"
    );
}

#[test]
fn the_one_process_block_runs_as_written() {
    let dir = common::tempdir();
    let work = checkout(dir.path());
    std::fs::create_dir_all(work.join("target/debug")).unwrap();
    std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_shoal"), work.join("target/debug/shoal"))
        .unwrap();
    sh(&work, "", &block("run").join("\n"));
    let want = readme_wordcount(&work);
    for out in ["out-wc", "out-py"] {
        let got = check_keyed_parts(&all_parts(&work.join(out)));
        assert!(got == want, "{out}: the word count of README.md");
    }
    let grep = all_parts(&work.join("out-grep")).concat();
    assert!(
        lines(&grep).len() >= 4
            && lines(&grep).iter().all(|l| {
                let l = String::from_utf8_lossy(l);
                l.contains("stdin") || l.contains("stdout")
            }),
        "grep finds the lines of examples/*.py that name stdin or stdout"
    );
    let sorted: Vec<u8> = all_parts(&work.join("sorted")).concat();
    let sorted_lines = lines(&sorted);
    let keys: Vec<&[u8]> = sorted_lines.iter().map(|l| key(l)).collect();
    assert!(
        keys.windows(2).all(|w| w[0] <= w[1]),
        "the sort app's parts in total order"
    );
    assert!(all_parts(&work.join("out-sh")).concat().len() > 100);
}

#[test]
fn the_one_machine_blocks_run_as_written_the_same_command_in_three_directories() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let work = checkout(dir.path());
    let local = block("local");
    assert_eq!(local.len(), 1, "one command: {local:?}");
    let w = words(&local[0]);
    assert_eq!(w[..2], ["shoal", "node"], "a node: {local:?}");
    // Only the ports move: the first pair is a free one of this machine, not 7070.
    let base = free_ports(2 * shoal_node::ports::LOCAL_NODES);
    let mut args = w[2..].to_vec();
    args.extend(["--local-base".to_string(), base.to_string()]);
    let terminals = dir.path().join("terminals");
    let nodes: Vec<NodeProc> = ["n1", "n2", "n3"]
        .iter()
        .map(|t| NodeProc::start_relative(&terminals, t, None, &args))
        .collect();
    for (i, n) in (0u16..).zip(&nodes) {
        assert_eq!(
            n.http,
            format!("127.0.0.1:{}", base + 2 * i),
            "{}'s API on the next free port",
            n.name
        );
        assert!(
            n.addrs[0].ends_with(&format!("/tcp/{}", base + 2 * i + 1)),
            "{}'s p2p port: {:?}",
            n.name,
            n.addrs
        );
    }
    assert!(
        nodes[2]
            .log_text()
            .contains(&format!("port {base} is taken")),
        "the third node says it moved: {}",
        nodes[2].log_text()
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let o = sh(
        &work,
        &format!("http://{}", nodes[0].http),
        &block("python").join("\n"),
    );
    let shown = String::from_utf8_lossy(&o.stdout);
    for n in &nodes {
        assert!(
            shown.contains(&n.node_id),
            "status shows {}: {shown}",
            n.node_id
        );
        assert!(
            terminals
                .join(&n.name)
                .join("shoal-data/node.redb")
                .is_file(),
            "{} keeps its data in ./shoal-data",
            n.name
        );
    }
    let want = readme_wordcount(&work);
    let got = check_keyed_parts(&all_parts(&work.join("counts")));
    assert!(got == want, "the Python job: the word count of README.md");
    let most = want
        .iter()
        .map(|l| {
            String::from_utf8_lossy(&l[key(l).len() + 1..])
                .parse::<u64>()
                .unwrap()
        })
        .max()
        .unwrap();
    assert!(
        shown
            .lines()
            .find(|l| l.contains('\t'))
            .is_some_and(|l| l.ends_with(&format!("\t{most}"))),
        "the most frequent word first: {shown}"
    );
}

#[test]
fn every_marked_block_of_the_readme_and_the_docs_is_run_by_a_test() {
    let run_here = ["demo", "local", "python", "cluster", "jobs", "run", "tera"];
    let mut marked = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for (at, _) in text.match_indices("<!-- README test: ") {
            let name = text[at + 18..]
                .split_whitespace()
                .next()
                .unwrap()
                .to_string();
            marked.push(name);
        }
    }
    marked.sort();
    let mut known: Vec<String> = run_here.iter().map(|s| s.to_string()).collect();
    known.sort();
    assert_eq!(
        marked, known,
        "each marked block once, each run by a test in this file"
    );
    for name in run_here {
        assert!(!block(name).is_empty(), "{name} has commands");
    }
}

#[test]
fn the_sort_benchmark_block_generates_sorts_and_validates() {
    let dir = common::tempdir();
    let o = sh(dir.path(), "", &block("tera").join("\n"));
    assert!(o.status.success(), "{}", text(&o));
    let report = String::from_utf8_lossy(&o.stdout);
    let rows = 1_000_000u64;
    let checksum = format!("{:x}", shoal_jobs::apps::tera::checksum_of_rows(0, rows));
    for want in [
        format!("records\t{rows}"),
        format!("checksum\t{checksum}"),
        "misordered\t0".to_string(),
        "malformed\t0".to_string(),
    ] {
        assert!(report.lines().any(|l| l == want), "{want:?} in {report}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path().join("gen"))
            .unwrap()
            .filter(|e| e
                .as_ref()
                .unwrap()
                .file_name()
                .to_string_lossy()
                .starts_with("part-"))
            .count(),
        4,
        "one part per control file"
    );
}
