//! `shoal run` end to end: every kind of job against an independent Python reference, for
//! R = 1, 3 and 10, on a corpus of many files with non-UTF-8 words.

use std::path::Path;

use crate::common;
use crate::common::*;

fn setup() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = common::tempdir();
    let corpus = corpus(dir.path(), 6, 3000);
    (dir, corpus)
}

#[test]
fn word_count_three_ways_matches_the_reference() {
    let (dir, corpus) = setup();
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        &corpus,
        &[],
    ));
    assert!(want.len() > 500, "the corpus has many distinct words");
    std::fs::write(dir.path().join("map.py"), MAPPER_PY).unwrap();
    std::fs::write(dir.path().join("reduce.py"), REDUCER_PY).unwrap();
    let map_py = dir.path().join("map.py").to_string_lossy().into_owned();
    let reduce_py = dir.path().join("reduce.py").to_string_lossy().into_owned();
    for r in [1, 3, 10] {
        let jobs = wordcount_jobs(&map_py, &reduce_py);
        for (name, args) in jobs {
            let out = dir.path().join(format!("out-{name}-{r}"));
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let summary = shoal_run(&corpus, &out, r, &args);
            if name == "app" {
                // Counters count each record once: every word is one map output record.
                let words: u64 = want
                    .iter()
                    .map(|l| {
                        std::str::from_utf8(&l[key(l).len() + 1..])
                            .unwrap()
                            .parse::<u64>()
                            .unwrap()
                    })
                    .sum();
                let lines = python_reference(
                    &format!("{PY_FILES}n = sum(b.count(b'\\n') for _, b in files())\nprint(n)"),
                    &corpus,
                    &[],
                );
                let lines: u64 = String::from_utf8(lines).unwrap().trim().parse().unwrap();
                assert_eq!(counter(&summary, "shoal.map_output_records"), words);
                assert_eq!(counter(&summary, "shoal.map_input_records"), lines);
                assert_eq!(
                    counter(&summary, "shoal.reduce_output_records"),
                    want.len() as u64
                );
            }
            let got = check_keyed_parts(&parts(&out, r));
            assert!(
                got == want,
                "word count via {name} with R={r} differs from the reference"
            );
        }
    }
}

#[test]
fn python_combiner_gives_the_same_counts() {
    let (dir, corpus) = setup();
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        &corpus,
        &[],
    ));
    std::fs::write(dir.path().join("map.py"), MAPPER_PY).unwrap();
    std::fs::write(dir.path().join("reduce.py"), REDUCER_PY).unwrap();
    let (m, r) = (dir.path().join("map.py"), dir.path().join("reduce.py"));
    let out = dir.path().join("out");
    let (m, r) = (
        m.to_string_lossy().into_owned(),
        r.to_string_lossy().into_owned(),
    );
    shoal_run(
        &corpus,
        &out,
        3,
        &[
            "--map",
            &m,
            "--reduce",
            &r,
            "--combine",
            &r,
            "--sort-mb",
            "1",
        ],
    );
    assert!(check_keyed_parts(&parts(&out, 3)) == want);
}

#[test]
fn inverted_index_matches_the_reference() {
    let (dir, corpus) = setup();
    let reference = INVERTED_PY;
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{reference}"),
        &corpus,
        &[],
    ));
    for r in [1, 3, 10] {
        let out = dir.path().join(format!("out-{r}"));
        shoal_run(&corpus, &out, r, &["--app", "invertedindex"]);
        assert!(
            check_keyed_parts(&parts(&out, r)) == want,
            "inverted index with R={r} differs"
        );
    }
}

#[test]
fn grep_matches_the_reference_in_file_order() {
    let (dir, corpus) = setup();
    let reference = r#"
pat = re.compile(sys.argv[2].encode())
for name, b in files():
    for line in b.split(b'\n'):
        if pat.search(line):
            w.write(name.encode() + b'\t' + line + b'\n')
"#;
    let pattern = "w1[0-9] w2";
    let want = python_reference(&format!("{PY_FILES}{reference}"), &corpus, &[pattern]);
    assert!(lines(&want).len() > 10);
    for r in [1, 3, 10] {
        let out = dir.path().join(format!("out-{r}"));
        shoal_run(
            &corpus,
            &out,
            r,
            &["--app", "grep", "--env", &format!("GREP_PATTERN={pattern}")],
        );
        // Each file's matches are one key, in file order: compare file by file.
        let mut got: Vec<Vec<u8>> = Vec::new();
        let mut by_file: std::collections::BTreeMap<Vec<u8>, Vec<Vec<u8>>> = Default::default();
        for part in parts(&out, r) {
            for l in lines(&part) {
                by_file.entry(key(&l).to_vec()).or_default().push(l);
            }
        }
        by_file.into_values().for_each(|ls| got.extend(ls));
        assert!(
            got == lines(&want),
            "grep with R={r} differs from the reference"
        );
    }
}

#[test]
fn sort_app_is_a_total_order_across_parts() {
    let (dir, corpus) = setup();
    let reference = r#"
ls = []
for _, b in files():
    ls.extend(b.splitlines())
for l in sorted(ls):
    w.write(l + b'\n')
"#;
    let want = python_reference(&format!("{PY_FILES}{reference}"), &corpus, &[]);
    for r in [1, 3, 10] {
        let out = dir.path().join(format!("out-{r}"));
        shoal_run(&corpus, &out, r, &["--app", "sort"]);
        let ps = parts(&out, r);
        let nonempty = ps.iter().filter(|p| !p.is_empty()).count();
        assert!(
            r == 1 || nonempty >= 2,
            "sampled ranges spread keys over the parts"
        );
        assert!(
            ps.concat() == want,
            "parts concatenated in order are not the sorted input (R={r})"
        );
    }
}

#[test]
fn a_users_rust_app_runs_through_streaming_main() {
    let (dir, corpus) = setup();
    let exe = Path::new(env!("CARGO_BIN_EXE_shoal"))
        .with_file_name("examples")
        .join("wordlengths");
    {
        // `cargo test --all-targets` builds the example (`test = false`) but leaves it under a
        // hashed name: ask the cargo that runs these tests for it by its name. Over the whole
        // workspace, from its root (its config), features and flags are the test build's, so
        // this only copies what that build made.
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = std::process::Command::new(cargo)
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .args([
                "build",
                "--quiet",
                "--workspace",
                "--example",
                "wordlengths",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "building the example failed");
    }
    assert!(exe.exists(), "the example program is at {}", exe.display());
    let reference = r#"
c = collections.Counter()
for _, b in files():
    c.update(len(x) for x in b.split())
for k in sorted(c):
    w.write(b'%03d\t%d\n' % (k, c[k]))
"#;
    let want = sorted_lines(&python_reference(
        &format!("{PY_FILES}{reference}"),
        &corpus,
        &[],
    ));
    // Ship it as a user would ship a release build: stripped (a debug build is bigger than
    // the shipped-files limit, and the job spec says so).
    let shipped = dir.path().join("wordlengths");
    let strip = std::process::Command::new("strip")
        .arg("-o")
        .arg(&shipped)
        .arg(&exe)
        .status()
        .unwrap();
    assert!(strip.success());
    let out = dir.path().join("out");
    let exe = shipped.to_string_lossy().into_owned();
    shoal_run(
        &corpus,
        &out,
        3,
        &[
            "--file",
            &exe,
            "--map",
            "./wordlengths map",
            "--reduce",
            "./wordlengths reduce",
            "--combine",
            "./wordlengths combine",
        ],
    );
    assert!(check_keyed_parts(&parts(&out, 3)) == want);
}

#[test]
fn shipped_scripts_run_by_their_shebang_from_a_relative_output_dir() {
    let dir = common::tempdir();
    let work = dir.path();
    let want = shebang_wordcount_setup(work, 3, 500);
    for (lang, map, reduce) in [
        ("py", "./mapper.py", "reducer.py"),
        ("sh", "map.sh", "./reduce.sh"),
    ] {
        let out = format!("out-{lang}");
        let o = run(shoal()
            .current_dir(work)
            .arg("run")
            .args(shebang_job(map, reduce))
            .args(["--output", &out, "-R", "2"]));
        assert!(o.status.success(), "{lang}: {}", text(&o));
        let got = check_keyed_parts(&parts(&work.join(&out), 2));
        assert!(
            got == want,
            "{lang}: the word count differs from the reference"
        );
    }
}

#[test]
fn a_summing_map_buffer_gives_what_the_word_count_combiner_gives() {
    use shoal_jobs::apps::{App, WordCount};
    use shoal_jobs::sort::{HashBuffer, PackedValues};
    let app = WordCount;
    let combine = |k: &[u8], vs: &mut dyn shoal_jobs::apps::Values, e: &mut dyn FnMut(&[u8])| {
        app.combine(k, vs, e)
    };
    let (mut packing, mut summing) = (HashBuffer::default(), HashBuffer::summing());
    // Values that are not numbers count as zero; a sum past u64 stops at its maximum.
    let huge = u64::MAX.to_string();
    let records: Vec<(&[u8], &[u8])> = (0..1000u32)
        .map(|i| match i % 7 {
            0 => (&b"alpha"[..], &b"1"[..]),
            1 => (&b"beta"[..], &b"12"[..]),
            2 => (&b"beta"[..], &b"x"[..]),
            3 => (&b"gamma"[..], &b""[..]),
            4 => (&b"a key longer than sixteen bytes"[..], &b"3"[..]),
            5 => (&b"big"[..], huge.as_bytes()),
            _ => (&b"alpha"[..], &b"007"[..]),
        })
        .collect();
    for (k, v) in &records {
        let part = u32::from(k[0] % 3);
        packing.push(|| part, k, v, &combine);
        summing.push(|| part, k, v, &combine);
    }
    let drained = |b: &mut HashBuffer| -> Vec<(u32, Vec<u8>, Vec<Vec<u8>>)> {
        b.drain_sorted(&combine)
            .into_iter()
            .map(|(p, k, vs)| {
                (
                    p,
                    k.to_vec(),
                    PackedValues::new(&vs).map(<[u8]>::to_vec).collect(),
                )
            })
            .collect()
    };
    let (want, got) = (drained(&mut packing), drained(&mut summing));
    assert_eq!(got, want);
    assert!(got
        .iter()
        .any(|(_, k, vs)| k == b"big" && vs == &vec![huge.as_bytes().to_vec()]));
    assert!(summing.is_empty() && summing.bytes() == 0);
}
