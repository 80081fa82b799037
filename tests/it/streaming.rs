//! The streaming jobs people run, through `shoal run`: key fields, partition fields and sort
//! specs as Hadoop Streaming documents them, and a secondary sort against a Python reference.

use std::path::Path;

use crate::common;
use crate::common::three::files_under;
use crate::common::*;

/// `shoal run` with `job` over `input` into `out`, from `dir` with relative paths; its
/// part files.
fn run_job(dir: &Path, input: &str, r: u32, job: &[&str]) -> Vec<Vec<u8>> {
    let out = dir.join("out");
    let _ = std::fs::remove_dir_all(&out);
    let o = run(shoal()
        .current_dir(dir)
        .args(["run", "--input", input, "--output", "out"])
        .args(["--reducers", &r.to_string()])
        .args(job));
    assert!(o.status.success(), "shoal run {job:?} failed: {}", text(&o));
    parts(&out, r)
}

fn text_lines(part: &[u8]) -> Vec<String> {
    String::from_utf8(part.to_vec())
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The map output keys of Hadoop Streaming's documentation, in its order.
const HADOOP_KEYS: &str = "11.12.1.2\n11.14.2.3\n11.11.4.1\n11.12.1.1\n11.14.2.2\n";

/// Identity mapper and reducer over lines of four '.'-separated key fields.
const DOTTED: [&str; 8] = [
    "--map",
    "cat",
    "--reduce",
    "cat",
    "--separator",
    ".",
    "--key-fields",
    "4",
];

#[test]
fn key_field_partitioner_groups_as_hadoops_example() {
    // -D stream.map.output.field.separator=. -D stream.num.map.output.key.fields=4
    // -D map.output.key.field.separator=. -D mapreduce.partition.keypartitioner.options=-k1,2
    // with 3 reducers: lines sharing the first two fields meet in one reducer, and each
    // reducer's input is sorted on all four fields. Then the same with many more keys, so
    // that every partition holds several groups.
    let dir = common::tempdir();
    std::fs::write(dir.path().join("keys.txt"), HADOOP_KEYS).unwrap();
    let mut many = String::new();
    for i in 0..600u32 {
        let (a, b, c, d) = (10 + i % 7, 10 + (i * 13) % 11, i % 5, (i * 7919) % 97);
        many.push_str(&format!("{a}.{b}.{c}.{d}\n"));
    }
    std::fs::write(dir.path().join("many.txt"), &many).unwrap();
    let flags = [&DOTTED[..], &["--partition-fields", "1,2"]].concat();
    for (input, text) in [("keys.txt", HADOOP_KEYS), ("many.txt", many.as_str())] {
        let parts = run_job(dir.path(), input, 3, &flags);
        let mut seen = std::collections::BTreeMap::new();
        let mut all = Vec::new();
        for (p, part) in parts.iter().enumerate() {
            let lines = text_lines(part);
            let mut sorted = lines.clone();
            sorted.sort();
            assert_eq!(
                lines, sorted,
                "part {p} of {input} is not sorted on the key"
            );
            for l in &lines {
                let prefix: Vec<&str> = l.split('.').take(2).collect();
                let prev = seen.insert(prefix.join("."), p);
                assert!(
                    prev.is_none_or(|q| q == p),
                    "{input}: the lines of {} went to parts {prev:?} and {p}",
                    prefix.join(".")
                );
            }
            all.extend(lines);
        }
        let mut want: Vec<String> = text.lines().map(str::to_owned).collect();
        want.sort();
        all.sort();
        assert_eq!(all, want, "{input}: every line comes out once");
        if input == "many.txt" {
            assert!(
                parts.iter().filter(|p| !p.is_empty()).count() == 3,
                "the groups spread over all three parts"
            );
        }
    }
}

#[test]
fn key_field_comparator_sorts_as_hadoops_example() {
    // -D mapreduce.partition.keycomparator.options=-k2,2nr with one reducer: the second
    // field, numerically, reversed; lines equal on it stay in map output order — exactly
    // the documentation's illustration.
    let dir = common::tempdir();
    std::fs::write(dir.path().join("keys.txt"), HADOOP_KEYS).unwrap();
    let parts = run_job(
        dir.path(),
        "keys.txt",
        1,
        &[&DOTTED[..], &["--sort-keys", "-k2,2nr"]].concat(),
    );
    assert_eq!(
        text_lines(&parts[0]),
        [
            "11.14.2.3",
            "11.14.2.2",
            "11.12.1.2",
            "11.12.1.1",
            "11.11.4.1"
        ]
    );
}

/// Keeps the first three lines of each user (the reducer of a top-3 secondary sort).
const TOP3_PY: &str = "import sys\nlast, n = None, 0\nfor line in sys.stdin:\n    user = line.split('\\t', 1)[0]\n    if user != last:\n        last, n = user, 0\n    if n < 3:\n        sys.stdout.write(line)\n        n += 1\n";

/// The same, computed directly: each user's lines by score, highest first.
const TOP3_REFERENCE_PY: &str = r#"
import sys, os, collections
by_user = collections.defaultdict(list)
for name in sorted(os.listdir(sys.argv[1])):
    for line in open(os.path.join(sys.argv[1], name)):
        user, score, item = line.rstrip('\n').split('\t')
        by_user[user].append((float(score), line))
for user in sorted(by_user):
    for _, line in sorted(by_user[user], key=lambda t: -t[0])[:3]:
        sys.stdout.write(line)
"#;

#[test]
fn secondary_sort_top_three_per_key_matches_python() {
    // Key = user and score; partition on the user alone; order by user, then score as a
    // number, highest first. The reducer sees each user's lines best first and keeps three.
    let dir = common::tempdir();
    let input = dir.path().join("scores");
    std::fs::create_dir(&input).unwrap();
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let mut next = |m: u64| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state % m
    };
    for f in 0..4 {
        let mut text = String::new();
        for i in 0..2500u64 {
            let user = format!("user{:03}", next(150));
            // Distinct scores (the line number is in them), negative, fractional and
            // of every width: a bytewise sort would get them wrong.
            let whole = next(20_000) as i64 - 10_000;
            let score = format!("{whole}.{:04}{f}", i);
            text.push_str(&format!("{user}\t{score}\titem{}\n", next(1000)));
        }
        std::fs::write(input.join(format!("part{f}.tsv")), text).unwrap();
    }
    std::fs::write(dir.path().join("top3.py"), TOP3_PY).unwrap();
    let want = python_reference(TOP3_REFERENCE_PY, &input, &[]);
    let parts = run_job(
        dir.path(),
        "scores",
        4,
        &[
            &[
                "--map",
                "cat",
                "--reduce",
                "top3.py",
                "--split-size",
                "20000",
            ][..],
            &BY_USER_BEST_FIRST,
        ]
        .concat(),
    );
    // Each user in one part, its lines in the reducer's order; users ordered as Python's.
    let mut by_user: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for part in &parts {
        let mut users_here = Vec::new();
        for l in text_lines(part) {
            let user = l.split('\t').next().unwrap().to_owned();
            if users_here.last() != Some(&user) {
                assert!(!users_here.contains(&user), "{user} is not contiguous");
                users_here.push(user.clone());
            }
            let lines = by_user.entry(user.clone()).or_default();
            assert!(
                lines.is_empty() || users_here.contains(&user),
                "{user} is in two parts"
            );
            lines.push(l);
        }
        let mut sorted = users_here.clone();
        sorted.sort();
        assert_eq!(users_here, sorted, "users are sorted within a part");
    }
    let got: String = by_user
        .values()
        .flatten()
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(got, String::from_utf8(want).unwrap());
    assert!(by_user.len() >= 140, "most users appear");
}

#[test]
fn key_flags_are_refused_where_they_mean_nothing() {
    let dir = common::tempdir();
    std::fs::write(dir.path().join("in.txt"), "a b\n").unwrap();
    for (flags, want) in [
        (
            vec!["--app", "wordcount", "--key-fields", "2"],
            "--key-fields",
        ),
        (
            vec!["--map", "cat", "--reduce", "cat", "--sort-keys", "k2,1"],
            "ends before it starts",
        ),
        (
            vec!["--map", "cat", "--reduce", "cat", "--partition-fields", "0"],
            "--partition-fields",
        ),
        (
            vec!["--map", "cat", "--reduce", "cat", "--separator", ""],
            "--separator",
        ),
    ] {
        let o = run(shoal()
            .current_dir(dir.path())
            .args(["run", "--input", "in.txt", "--output", "out"])
            .args(&flags));
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(text(&o).contains(want), "{flags:?}: {}", text(&o));
    }
}

#[test]
fn a_combiner_reads_and_writes_whole_lines_under_key_fields() {
    // Word count keyed on the first field of a '|'-separated line: the combiner and the
    // reducer read lines as the mapper wrote them and their output is keyed again.
    let dir = common::tempdir();
    let (_, all) = small_word_input(dir.path(), 5, 4000);
    let map = "tr ' ' '\\n' | sed 's/$/|1/'";
    let sum = "awk -F'|' '{ n[$1] += $2 } END { for (w in n) print w \"|\" n[w] }'";
    let parts = run_job(
        dir.path(),
        "in",
        3,
        &[
            "--map",
            map,
            "--combine",
            sum,
            "--reduce",
            sum,
            "--separator",
            "|",
            "--key-fields",
            "1",
            "--split-size",
            "8192",
            "--sort-mb",
            "1",
        ],
    );
    let mut got: Vec<(String, usize)> = parts
        .iter()
        .flat_map(|p| text_lines(p))
        .map(|l| {
            let (w, n) = l.split_once('|').unwrap();
            (w.to_owned(), n.parse().unwrap())
        })
        .collect();
    got.sort();
    assert_eq!(got, word_counts(&all));
}

#[test]
fn compressed_inputs_give_the_plain_output_and_count_decompressed_bytes() {
    let dir = common::tempdir();
    let plain = corpus(dir.path(), 5, 3000);
    let files = files_under(&plain);
    let plain_bytes: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    let n_files = files.len() as u64;
    let mut kinds = vec![("plain".to_string(), "corpus".to_string())];
    for (tool, ext) in [
        ("gzip", ".gz"),
        ("zstd", ".zst"),
        ("bzip2", ".bz2"),
        ("xz", ".xz"),
    ] {
        compress_dir(&plain, &dir.path().join(tool), tool, ext);
        kinds.push((tool.to_string(), tool.to_string()));
    }
    let mut outputs = Vec::new();
    for (kind, input) in &kinds {
        for job in [
            vec!["--app", "wordcount"],
            vec!["--map", "tr -s ' \\t' '\\n\\n'", "--reduce", "uniq -c"],
        ] {
            let out = dir.path().join(format!("out-{kind}-{}", job[1]));
            let o = run(shoal()
                .current_dir(dir.path())
                .args(["run", "--input", input, "--output"])
                .arg(&out)
                .args(["--reducers", "3", "--split-size", "65536"])
                .args(&job));
            assert!(o.status.success(), "{kind} {job:?}: {}", text(&o));
            let summary = String::from_utf8_lossy(&o.stdout).into_owned();
            assert_eq!(
                counter(&summary, "shoal.map_input_bytes"),
                plain_bytes,
                "{kind}: the counter counts decompressed bytes"
            );
            if kind != "plain" {
                assert!(
                    summary.contains(&format!("map:    {n_files} tasks")),
                    "{kind}: one split per compressed file: {summary}"
                );
            }
            outputs.push((kind.clone(), job[1], parts(&out, 3)));
        }
    }
    for (kind, job, parts) in &outputs[2..] {
        let plain = &outputs[if *job == "wordcount" { 0 } else { 1 }].2;
        assert_eq!(parts, plain, "{kind} {job}: same output as the plain input");
    }
}

#[test]
fn a_file_whose_name_lies_about_its_codec_fails_naming_it() {
    let dir = common::tempdir();
    std::fs::write(dir.path().join("notes.gz"), "plain text, not gzip\n").unwrap();
    let o = run(shoal()
        .current_dir(dir.path())
        .args([
            "run",
            "--input",
            "notes.gz",
            "--output",
            "out",
            "--app",
            "wordcount",
        ])
        .args(["--max-attempts", "1"]));
    assert_eq!(
        o.status.code(),
        Some(2),
        "refused before it runs: {}",
        text(&o)
    );
    assert!(
        text(&o).contains("notes.gz") && text(&o).contains("does not start as gzip"),
        "{}",
        text(&o)
    );
}

#[test]
fn compressed_output_decompresses_to_the_plain_output() {
    let dir = common::tempdir();
    let (_, all) = small_word_input(dir.path(), 4, 5000);
    for (codec, ext, tool) in [("gzip", ".gz", "gzip"), ("zstd", ".zst", "zstd")] {
        let out = dir.path().join(format!("out-{codec}"));
        let o = run(shoal()
            .current_dir(dir.path())
            .args(["run", "--input", "in", "--output"])
            .arg(&out)
            .args(["--app", "wordcount", "--reducers", "2"])
            .args(["--compress-output", codec]));
        assert!(o.status.success(), "{codec}: {}", text(&o));
        let mut plain_parts = Vec::new();
        for p in 0..2 {
            let path = out.join(format!("part-{p:05}{ext}"));
            let d = run(std::process::Command::new(tool).arg("-dc").arg(&path));
            assert!(
                d.status.success(),
                "{tool} -d {}: {}",
                path.display(),
                text(&d)
            );
            plain_parts.push(d.stdout);
        }
        assert_eq!(tab_counts(&plain_parts), word_counts(&all), "{codec}");
    }
}

/// `n` files of bytes of every value (NULs, no final newline, invalid UTF-8) in `dir/bin`,
/// in name order.
fn binary_files(dir: &Path, n: usize) -> Vec<Vec<u8>> {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    (0..n)
        .map(|f| {
            let bytes: Vec<u8> = (0..5000 + 1000 * f)
                .map(|i| ((i * 131 + f * 7) % 256) as u8)
                .collect();
            std::fs::write(bin.join(format!("b{f}.bin")), &bytes).unwrap();
            bytes
        })
        .collect()
}

/// `shoal run --input bin --output OUT --reducers 0 --input-format whole-files` with the
/// mapper `map`, in `dir`.
fn whole_files_map_only(dir: &Path, out: &str, map: &str) -> Vec<Vec<u8>> {
    let o = run(shoal()
        .current_dir(dir)
        .args(["run", "--input", "bin", "--output", out, "--reducers", "0"])
        .args(["--input-format", "whole-files", "--split-size", "1024"])
        .args(["--map", map, "--reduce", "cat"]));
    assert!(o.status.success(), "{}", text(&o));
    parts(&dir.join(out), 4)
}

#[test]
fn map_only_whole_files_pass_binary_files_through_unchanged() {
    let dir = common::tempdir();
    let files = binary_files(dir.path(), 4);
    // Each file whole on a mapper's stdin, its output the map's own part, in input order.
    let got = whole_files_map_only(dir.path(), "out", "cat");
    for (f, (got, want)) in got.iter().zip(&files).enumerate() {
        assert!(
            got == want,
            "part {f} is not its file, byte for byte ({} bytes, {} in the file)",
            got.len(),
            want.len()
        );
    }
    // The mapper knows which file it has.
    let named: Vec<String> = whole_files_map_only(
        dir.path(),
        "named",
        "printf '%s\\t' \"$SHOAL_INPUT_FILE\"; wc -c",
    )
    .iter()
    .map(|p| String::from_utf8(p.clone()).unwrap().trim().to_owned())
    .collect();
    let want: Vec<String> = files
        .iter()
        .enumerate()
        .map(|(f, b)| format!("b{f}.bin\t{}", b.len()))
        .collect();
    assert_eq!(named, want);
}

#[test]
fn map_only_lines_keep_each_maps_output_in_input_order() {
    let dir = common::tempdir();
    let (input, _) = small_word_input(dir.path(), 3, 3000);
    for job in [
        vec!["--app", "wordcount"],
        vec![
            "--map",
            "tr ' ' '\\n'",
            "--reduce",
            "cat",
            "--compress-output",
            "gzip",
        ],
    ] {
        let out = dir.path().join(format!("out-{}", job[1].len()));
        let o = run(shoal()
            .args(["run", "--input"])
            .arg(&input)
            .arg("--output")
            .arg(&out)
            .args(["--reducers", "0", "--split-size", "8192"])
            .args(&job));
        assert!(o.status.success(), "{job:?}: {}", text(&o));
        // The maps' words, in input order: the words of the files one after another.
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("part-"))
            .collect();
        names.sort();
        assert!(names.len() > 3, "{job:?}: a part per split: {names:?}");
        let mut words = Vec::new();
        for n in &names {
            let bytes = if n.ends_with(".gz") {
                run(std::process::Command::new("gzip")
                    .arg("-dc")
                    .arg(out.join(n)))
                .stdout
            } else {
                std::fs::read(out.join(n)).unwrap()
            };
            for l in String::from_utf8(bytes).unwrap().lines() {
                words.push(l.split('\t').next().unwrap().to_owned());
            }
        }
        let mut want = Vec::new();
        for f in 0..3 {
            let text = std::fs::read_to_string(input.join(format!("f{f}.txt"))).unwrap();
            want.extend(text.split_whitespace().map(str::to_owned));
        }
        assert_eq!(words, want, "{job:?}");
    }
    // A failing map-only job leaves no part, finished or half-written.
    let out = dir.path().join("out-failed");
    let o = run(shoal()
        .args(["run", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .args(["--reducers", "0", "--max-attempts", "1"])
        .args(["--map", "cat; exit 3", "--reduce", "cat"]));
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let left: Vec<String> = std::fs::read_dir(&out)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}
