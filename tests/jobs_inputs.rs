//! The jobs people run, on a cluster: compressed inputs uploaded beside plain ones (packed
//! with `--combine-files` or not), compressed output fetched with `shoal output`, and the
//! key-field flags travelling with `shoal submit` — each against `shoal run` of the same job
//! on plain input. Three real `shoal node` processes on 127.0.0.1, one cluster at a time.

mod common;

use std::path::Path;

use common::cluster::*;
use common::three::*;
use common::*;

/// Compress each file of `from` with `tool -c` into `to`, adding `ext`.
fn compress_into(from: &Path, to: &Path, tool: &str, ext: &str) {
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let o = run(std::process::Command::new(tool).arg("-c").arg(e.path()));
        assert!(o.status.success(), "{tool}: {}", text(&o));
        let name = format!("{}{ext}", e.file_name().to_string_lossy());
        std::fs::write(to.join(name), o.stdout).unwrap();
    }
}

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

#[test]
fn compressed_uploads_compressed_output_and_key_fields_on_a_cluster() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let plain = dir.path().join("plain");
    std::fs::create_dir(&plain).unwrap();
    let mut plain_bytes = 0u64;
    for f in 0..8u64 {
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
        plain_bytes += text.len() as u64;
        std::fs::write(plain.join(format!("f{f}.txt")), text).unwrap();
    }
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
            Some((tool, ext)) if i % 2 == 0 => compress_into(&one, &mixed, tool, ext),
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
        args.extend([
            "--app",
            "wordcount",
            "--reducers",
            "2",
            "--split-size",
            "20000",
        ]);
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
            job["counters"]["shoal"]["map_input_bytes"], plain_bytes,
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
}
