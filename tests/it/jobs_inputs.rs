//! The jobs people run, on a cluster: compressed inputs uploaded beside plain ones (packed
//! with `--combine-files` or not), compressed output fetched with `shoal output`, and the
//! key-field flags travelling with `shoal submit` — each against `shoal run` of the same job
//! on plain input. Three real `shoal node` processes on 127.0.0.1, one cluster at a time.

use std::path::Path;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

/// `shoal run` of `job` over `input` into `out` (the reference).
fn shoal_run(input: &Path, out: &Path, job: &[&str]) {
    let o = run(shoal()
        .args(["run", "--input"])
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(job));
    assert!(o.status.success(), "shoal run {job:?}: {}", text(&o));
}

/// The part files of `out`, in name order, decompressed with `tool -dc` when given.
fn part_files(out: &Path, tool: Option<&str>) -> Vec<(String, Vec<u8>)> {
    let mut names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("part-"))
        .collect();
    names.sort();
    names
        .into_iter()
        .map(|n| {
            let path = out.join(&n);
            let bytes = match tool {
                None => std::fs::read(&path).unwrap(),
                Some(t) => {
                    let o = run(std::process::Command::new(t).arg("-dc").arg(&path));
                    assert!(o.status.success(), "{t} -dc {n}: {}", text(&o));
                    o.stdout
                }
            };
            (n, bytes)
        })
        .collect()
}

/// The native word count into two parts, over splits of about 20 kB.
const WORDCOUNT: [&str; 6] = [
    "--app",
    "wordcount",
    "--reducers",
    "2",
    "--split-size",
    "20000",
];

/// `n` files `f0.txt`… in `dir` of 3,000 lines `wA xB userNN<TAB>SCORE`; their bytes.
fn word_files(dir: &Path, n: u64) -> u64 {
    std::fs::create_dir_all(dir).unwrap();
    let mut bytes = 0;
    for f in 0..n {
        let text: String = (0..3000u64)
            .map(|i| {
                format!(
                    "w{} x{} user{:02}\t{}\n",
                    (i * 7 + f) % 211,
                    i % 13,
                    (i + f) % 17,
                    i * 31 % 1009
                )
            })
            .collect();
        bytes += text.len() as u64;
        std::fs::write(dir.join(format!("f{f}.txt")), text).unwrap();
    }
    bytes
}

#[test]
fn compressed_uploads_compressed_output_and_key_fields_on_a_cluster() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let plain = dir.path().join("plain");
    let plain_bytes = word_files(&plain, 8);
    // The same files, two plain and two in each codec.
    let mixed = dir.path().join("mixed");
    std::fs::create_dir(&mixed).unwrap();
    let by_tool = [
        ("gzip", ".gz"),
        ("zstd", ".zst"),
        ("bzip2", ".bz2"),
        ("xz", ".xz"),
    ];
    for (i, e) in std::fs::read_dir(&plain).unwrap().enumerate() {
        let src = e.unwrap().path();
        let one = dir.path().join(format!("one-{i}"));
        std::fs::create_dir(&one).unwrap();
        std::fs::copy(&src, one.join(src.file_name().unwrap())).unwrap();
        match by_tool.get(i / 2) {
            Some((tool, ext)) if i % 2 == 0 => compress_dir(&one, &mixed, tool, ext),
            _ => {
                std::fs::copy(&src, mixed.join(src.file_name().unwrap())).unwrap();
            }
        }
    }
    let want_wc = dir.path().join("want-wc");
    shoal_run(&plain, &want_wc, &["--app", "wordcount", "--reducers", "2"]);

    let c = three_nodes(dir.path());
    for combine in [false, true] {
        let out = dir.path().join(format!("wc-{combine}"));
        let mut args = vec!["--input", mixed.to_str().unwrap(), "--output"];
        args.push(out.to_str().unwrap());
        args.extend(WORDCOUNT);
        if combine {
            args.push("--combine-files");
        }
        let (id, o) = c.submit(&args);
        assert!(o.status.success(), "combine={combine}: {}", text(&o));
        assert_eq!(
            part_files(&out, None),
            part_files(&want_wc, None),
            "combine={combine}: the cluster's output over mixed input is the plain run's"
        );
        let job = c.job(0, &id);
        assert_eq!(
            shoal_counter(&job, "map_input_bytes"),
            plain_bytes,
            "decompressed bytes are counted"
        );
    }

    // Key fields and a compressed output through submit: the top lines per user by a
    // numeric field, as `shoal run` orders them on plain input.
    let keyed = [
        &[
            "--map",
            "cut -d' ' -f3",
            "--reduce",
            "cat",
            "--reducers",
            "3",
        ][..],
        &BY_USER_BEST_FIRST,
    ]
    .concat();
    let want_keyed = dir.path().join("want-keyed");
    shoal_run(&plain, &want_keyed, &keyed);
    let out = dir.path().join("keyed");
    let mut args = vec!["--input", mixed.to_str().unwrap(), "--output"];
    args.push(out.to_str().unwrap());
    args.extend(&keyed);
    args.extend(["--compress-output", "zstd"]);
    let (_, o) = c.submit(&args);
    assert!(o.status.success(), "{}", text(&o));
    let got = part_files(&out, Some("zstd"));
    let want = part_files(&want_keyed, None);
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["part-00000.zst", "part-00001.zst", "part-00002.zst"]
    );
    // The same lines in each part; their order among equal keys follows the map tasks,
    // which differ in number between the runs, so compare order on the sort key alone.
    for ((name, g), (_, w)) in got.iter().zip(&want) {
        let key = |l: &Vec<u8>| {
            let s = String::from_utf8(l.clone()).unwrap();
            let (user, n) = s.split_once('\t').unwrap();
            (
                user.to_owned(),
                std::cmp::Reverse(n.parse::<u64>().unwrap()),
            )
        };
        let gl = lines(g);
        let keys: Vec<_> = gl.iter().map(key).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "{name} is in the key fields' order");
        assert_eq!(
            sorted_lines(g),
            sorted_lines(w),
            "{name} holds the same lines"
        );
    }

    // Map-only, whole files: binary files uploaded come back as parts, byte for byte.
    let bin = dir.path().join("bin");
    std::fs::create_dir(&bin).unwrap();
    let files: Vec<Vec<u8>> = (0..3usize)
        .map(|f| {
            (0..70_000 + f)
                .map(|i| ((i * 167 + f) % 256) as u8)
                .collect()
        })
        .collect();
    for (f, bytes) in files.iter().enumerate() {
        std::fs::write(bin.join(format!("b{f}.bin")), bytes).unwrap();
    }
    let out = dir.path().join("bin-out");
    let (_, o) = c.submit(&[
        "--input",
        bin.to_str().unwrap(),
        "--output",
        out.to_str().unwrap(),
        "--reducers",
        "0",
        "--input-format",
        "whole-files",
        "--split-size",
        "4096",
        "--map",
        "cat",
        "--reduce",
        "cat",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let got = parts(&out, 3);
    for (f, (g, w)) in got.iter().zip(&files).enumerate() {
        assert!(g == w, "part {f}: {} bytes, the file {}", g.len(), w.len());
    }
}

/// Three nodes started in `dir/nK` (their working directories) with `--data data` and
/// `--input-root inputs`: relative paths, so each node reads its own `dir/nK/inputs`.
fn three_with_input_roots(dir: &Path) -> Vec<NodeProc> {
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 1..=3 {
        let mut args: Vec<String> = [
            "--expect",
            "3",
            "--slots",
            "2",
            "--input-root",
            "inputs",
            "--node-timeout",
            "2",
        ]
        .map(String::from)
        .to_vec();
        for p in &nodes {
            args.extend(["--peer".into(), p.peer_addr()]);
        }
        nodes.push(NodeProc::start_relative(
            dir,
            &format!("n{i}"),
            Some("data"),
            &args,
        ));
    }
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    nodes
}

/// `shoal submit --node NODE ARGS` (waits when ARGS has --output); its output.
fn submit_to(node: &NodeProc, args: &[&str]) -> std::process::Output {
    run(shoal()
        .args(["submit", "--node", &format!("http://{}", node.http)])
        .args(args))
}

#[test]
fn node_and_shared_inputs_are_read_where_they_lie() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let all = dir.path().join("all");
    word_files(&all, 9);
    // Nine files: node K's own disk holds three of them (one gzipped), and every node's
    // root holds all nine under shared/ — as one NFS mount would show them.
    for f in 0..9u64 {
        let text = std::fs::read(all.join(format!("f{f}.txt"))).unwrap();
        let k = f % 3 + 1;
        let local = dir.path().join(format!("n{k}/inputs/local"));
        std::fs::create_dir_all(&local).unwrap();
        if f == k {
            let o = run(std::process::Command::new("gzip")
                .arg("-c")
                .arg(all.join(format!("f{f}.txt"))));
            std::fs::write(local.join(format!("f{f}.txt.gz")), o.stdout).unwrap();
        } else {
            std::fs::write(local.join(format!("f{f}.txt")), &text).unwrap();
        }
    }
    for k in 1..=3 {
        let shared = dir.path().join(format!("n{k}/inputs/shared"));
        std::fs::create_dir_all(&shared).unwrap();
        for e in std::fs::read_dir(&all).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), shared.join(e.file_name())).unwrap();
        }
    }
    // Outside every root: a secret, and on node 2 a link to it.
    std::fs::write(dir.path().join("secret.txt"), "do not read\n").unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("secret.txt"),
        dir.path().join("n2/inputs/escape.txt"),
    )
    .unwrap();
    let want = dir.path().join("want");
    shoal_run(&all, &want, &["--app", "wordcount", "--reducers", "2"]);
    let nodes = three_with_input_roots(dir.path());
    let ids: std::collections::BTreeSet<String> = nodes.iter().map(|n| n.node_id.clone()).collect();

    for input in ["node:local", "shared:shared/*.txt"] {
        let out = dir.path().join(format!("out-{}", &input[..4]));
        let o = submit_to(
            &nodes[0],
            &[
                &WORDCOUNT[..],
                &["--input", input, "--output", out.to_str().unwrap()],
            ]
            .concat(),
        );
        assert!(o.status.success(), "{input}: {}", text(&o));
        assert_eq!(
            part_files(&out, None),
            part_files(&want, None),
            "{input}: the same output as shoal run over the files"
        );
        let id = job_id(&o);
        let job = job_at(&nodes[0].http, &id).unwrap();
        assert_eq!(
            shoal_counter(&job, "input_uploaded_bytes"),
            0,
            "{input}: nothing uploaded"
        );
        let ran_on: std::collections::BTreeSet<String> =
            attempt_nodes(&job, "map").into_iter().collect();
        assert_eq!(ran_on, ids, "{input}: maps ran on every node");
        if input.starts_with("node:") {
            // Each map ran on the node whose disk has its file.
            for t in tasks(&job).iter().filter(|t| t.kind == "map") {
                let file = t.input.clone().unwrap_or_default();
                let node = done_node(t);
                let k = nodes.iter().position(|n| n.node_id == node).unwrap() + 1;
                assert!(
                    dir.path().join(format!("n{k}/inputs")).join(&file).exists(),
                    "map of {file:?} ran on n{k}, which does not have it: {t}"
                );
            }
        }
    }

    // Map-only over node: inputs: a part per split, in input order, every line counted.
    let out = dir.path().join("out-lines");
    let o = submit_to(
        &nodes[0],
        &[
            "--input",
            "node:local",
            "--reducers",
            "0",
            "--map",
            "wc -l",
            "--reduce",
            "cat",
        ]
        .iter()
        .copied()
        .chain(["--output", out.to_str().unwrap()])
        .collect::<Vec<_>>(),
    );
    assert!(o.status.success(), "{}", text(&o));
    let job = job_at(&nodes[0].http, &job_id(&o)).unwrap();
    let maps = tasks(&job).iter().filter(|t| t.kind == "map").count();
    let counted: u64 = parts(&out, maps as u32)
        .iter()
        .map(|p| String::from_utf8_lossy(p).trim().parse::<u64>().unwrap())
        .sum();
    assert_eq!(counted, 9 * 3000, "every line of every node's files, once");

    // Outside the root: a climbing pattern is refused by the client, a link out of the
    // root by the node that has it; both exit 2 and nothing runs.
    for (input, says) in [
        ("node:../n1/inputs/local", "may not escape"),
        ("node:escape.txt", "outside --input-root"),
        ("shared:nothing/*.txt", "no file matches"),
    ] {
        let o = submit_to(&nodes[1], &["--input", input, "--app", "wordcount"]);
        assert_eq!(o.status.code(), Some(2), "{input}: {}", text(&o));
        assert!(text(&o).contains(says), "{input}: {}", text(&o));
    }
    assert!(!text(&run(shoal().args([
        "jobs",
        "--node",
        &format!("http://{}", nodes[0].http)
    ])))
    .contains("failed"));

    // A node whose disk holds a file dies before that file's map is done: the job fails,
    // naming the node and the file.
    let shared = writable_by_tasks(dir.path());
    let gate = shared.join("gate");
    let map = gated_word_mapper(dir.path(), "true", &gate);
    let reduce = write_program(dir.path(), "reduce.sh", SUM_REDUCER_SH);
    let o = submit_to(
        &nodes[0],
        &["--input", "node:local", "--map", &map, "--reduce", &reduce],
    );
    assert!(o.status.success(), "{}", text(&o));
    let id = job_id(&o);
    let leader = leader_of(&nodes[0]).unwrap();
    let victim = (1..3).find(|&i| nodes[i].node_id != leader).unwrap();
    let victim_id = nodes[victim].node_id.clone();
    let mut nodes = nodes;
    wait_for(30, "the victim to run a map", || {
        let job = job_at(&nodes[0].http, &id)?;
        attempt_nodes(&job, "map")
            .contains(&victim_id)
            .then_some(())
    });
    nodes[victim].kill();
    let job = wait_for(30, "the job to fail", || {
        let job = job_at(&nodes[0].http, &id)?;
        (job.state == "failed").then_some(job)
    });
    std::fs::write(&gate, "").unwrap();
    let error = job.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&victim_id[..]) && error.contains("local/f") && error.contains("lost"),
        "the reason names the node and the file: {job}"
    );
}
