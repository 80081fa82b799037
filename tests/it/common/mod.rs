//! Helpers shared by the end-to-end tests: the `shoal` binary, a seeded test corpus, and
//! reference results computed by Python, independently of Shoal's code.

pub mod slow;
pub mod three;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `shoal` binary under test.
pub fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

/// Run a command, returning its output; panics if it cannot start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output().expect("command starts")
}

/// The job id `shoal submit` prints first on stdout (empty if it printed none).
pub fn job_id(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .trim()
        .to_string()
}

/// Skip a test that needs what this machine lacks (`why`), loudly — or fail it when `var`
/// is set to 1, as CI sets each. Returns false (not ready), for `return skip(…)`.
pub fn skip(test: &str, why: &str, var: &str) -> bool {
    if std::env::var(var).as_deref() == Ok("1") {
        panic!("{test}: {why}, and {var}=1");
    }
    eprintln!("SKIPPED {test}: {why}; {var}=1 makes this a failure");
    false
}

/// The headless Chromium of the browser tests (Debian's chromium, chromium-driver and
/// python3-selenium), by the Python that drives it. Without them the test is skipped, loudly,
/// or fails when `SHOAL_REQUIRE_BROWSER=1` (as in CI).
pub fn browser(test: &str) -> Option<&'static str> {
    let python = "/usr/bin/python3";
    let ready = Path::new("/usr/bin/chromedriver").exists()
        && Command::new(python)
            .args(["-c", "import selenium"])
            .output()
            .is_ok_and(|o| o.status.success());
    if ready {
        return Some(python);
    }
    skip(
        test,
        "needs Debian's chromium, chromium-driver and python3-selenium",
        "SHOAL_REQUIRE_BROWSER",
    );
    None
}

/// A temporary directory only its owner may enter (0700), as `mktemp -d` and a home
/// directory are: the tests run where users run, and open nothing to other users.
pub fn tempdir() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    tempfile::Builder::new()
        .permissions(std::fs::Permissions::from_mode(0o700))
        .tempdir()
        .unwrap()
}

/// A directory that task processes may write — as root the node runs each job as a uid of
/// its own — for the markers and logs a test's mappers leave. It lies in the temporary
/// directory, beside the test's `dir`, never above a node's data dir: a test opens nothing on
/// the way to a data dir (a user's home is 0700, and so is `dir`). It goes with the next
/// call after `dir` is gone.
pub fn writable_by_tasks(dir: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    const PREFIX: &str = "shoal-test-marks-";
    let tmp = std::env::temp_dir();
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let owner = std::fs::read_to_string(e.path().join(".owner")).unwrap_or_default();
        let ours = e.file_name().to_string_lossy().starts_with(PREFIX);
        if ours && !owner.is_empty() && !Path::new(&owner).exists() {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    let d = tempfile::Builder::new()
        .prefix(PREFIX)
        .tempdir_in(&tmp)
        .unwrap()
        .keep();
    std::fs::write(d.join(".owner"), dir.as_os_str().as_encoded_bytes()).unwrap();
    std::fs::set_permissions(&d, std::fs::Permissions::from_mode(0o1777)).unwrap();
    d
}

/// Stdout and stderr of an output, for assertion messages.
pub fn text(out: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// `files` small text files of `lines` lines of three short words each, in `dir/in`: the
/// directory and all their text (for a reference count).
pub fn small_word_input(dir: &Path, files: usize, lines: usize) -> (PathBuf, String) {
    let input = dir.join("in");
    std::fs::create_dir_all(&input).unwrap();
    let mut all = String::new();
    for f in 0..files {
        let text: String = (0..lines)
            .map(|i| format!("w{} w{} f{f}\n", i % 7, (i * f) % 5))
            .collect();
        all.push_str(&text);
        std::fs::write(input.join(format!("f{f}.txt")), text).unwrap();
    }
    (input, all)
}

/// A corpus directory of `files` text files: Zipf-ish words from a seeded generator, some
/// words with non-UTF-8 bytes, tabs among the spaces, one empty file.
pub fn corpus(dir: &Path, files: usize, lines_per_file: usize) -> PathBuf {
    let root = dir.join("corpus");
    std::fs::create_dir_all(root.join("sub")).unwrap();
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for f in 0..files {
        let mut text = Vec::new();
        for _ in 0..lines_per_file {
            let words = 1 + next() % 12;
            for w in 0..words {
                if w > 0 {
                    text.push(if next() % 10 == 0 { b'\t' } else { b' ' });
                }
                let r = next() % 1000;
                let rank = (r * r * r) / 1_000_000; // skewed towards small ranks
                match next() % 50 {
                    0 => {
                        text.extend_from_slice(b"caf\xe9");
                        text.extend_from_slice(rank.to_string().as_bytes());
                    }
                    1 => text.extend_from_slice(&[b'n', 0xe9, b'e', b'0' + (rank % 10) as u8]),
                    _ => text.extend_from_slice(format!("w{rank}").as_bytes()),
                }
            }
            text.push(b'\n');
        }
        let name = if f % 2 == 0 {
            format!("doc{f:02}.txt")
        } else {
            format!("sub/doc{f:02}.txt")
        };
        std::fs::write(root.join(name), text).unwrap();
    }
    std::fs::write(root.join("empty.txt"), b"").unwrap();
    root
}

/// Run a Python reference program with the corpus directory as argv[1]; its stdout bytes.
pub fn python_reference(program: &str, corpus: &Path, extra: &[&str]) -> Vec<u8> {
    let out = Command::new("python3")
        .arg("-c")
        .arg(program)
        .arg(corpus)
        .args(extra)
        .env_remove("PYTHONUNBUFFERED")
        .output()
        .expect("python3 runs");
    assert!(out.status.success(), "reference failed: {}", text(&out));
    out.stdout
}

/// Python prelude: `files()` yields (name relative to the corpus, bytes) in path order,
/// skipping names that start with `_` or `.`, as Shoal's inputs do.
pub const PY_FILES: &str = r#"
import os, sys, re, collections
def files():
    root = sys.argv[1]
    out = []
    for d, dirs, names in os.walk(root):
        dirs[:] = [x for x in dirs if not x.startswith(('_', '.'))]
        for n in names:
            if not n.startswith(('_', '.')):
                p = os.path.join(d, n)
                out.append((os.path.relpath(p, root), open(p, 'rb').read()))
    return sorted(out)
w = sys.stdout.buffer
"#;

/// Python reference of word count (after [`PY_FILES`]).
pub const WORDCOUNT_PY: &str = r#"
c = collections.Counter()
for _, b in files():
    c.update(b.split())
for k in sorted(c):
    w.write(k + b'\t' + str(c[k]).encode() + b'\n')
"#;

/// A Python streaming mapper for word count.
pub const MAPPER_PY: &str = "import sys\nfor line in sys.stdin:\n    for word in line.split():\n        print(word + '\\t1')\n";
/// A Python streaming reducer for word count.
pub const REDUCER_PY: &str = r#"import sys
current, count = None, 0
for line in sys.stdin:
    word, n = line.rstrip('\n').split('\t')
    if word != current:
        if current is not None:
            print(current + '\t' + str(count))
        current, count = word, 0
    count += int(n)
if current is not None:
    print(current + '\t' + str(count))
"#;

/// A Python word-count mapper run by its shebang (not by `python3 FILE`).
pub const SHEBANG_MAPPER_PY: &str = "#!/usr/bin/env python3\nimport sys\nfor line in sys.stdin.buffer:\n    for word in line.split():\n        sys.stdout.buffer.write(word + b'\\t1\\n')\n";
/// A Python word-count reducer and combiner run by its shebang.
pub const SHEBANG_REDUCER_PY: &str = "#!/usr/bin/env python3\nimport sys\ncur, n = None, 0\nfor line in sys.stdin.buffer:\n    k, v = line.rstrip(b'\\n').split(b'\\t')\n    if k != cur:\n        if cur is not None:\n            sys.stdout.buffer.write(cur + b'\\t' + str(n).encode() + b'\\n')\n        cur, n = k, 0\n    n += int(v)\nif cur is not None:\n    sys.stdout.buffer.write(cur + b'\\t' + str(n).encode() + b'\\n')\n";
/// The same word count as shell scripts run by their shebang.
pub const SHEBANG_MAPPER_SH: &str =
    "#!/bin/sh\ntr -s ' \\t' '\\n\\n' | sed '/^$/d' | sed 's/$/\\t1/'\n";
pub const SHEBANG_REDUCER_SH: &str =
    "#!/bin/sh\nawk -F '\\t' '$1 != k { if (NR > 1) print k \"\\t\" n; k = $1; n = 0 } { n += $2 } END { if (NR > 0) print k \"\\t\" n }'\n";

/// Write a word-count corpus and the shebang scripts (`mapper.py`, `reducer.py`, `map.sh`,
/// `reduce.sh`) into `work`; the reference output's lines, sorted.
pub fn shebang_wordcount_setup(work: &Path, files: usize, lines: usize) -> Vec<Vec<u8>> {
    let input = corpus(work, files, lines);
    for (name, text) in [
        ("mapper.py", SHEBANG_MAPPER_PY),
        ("reducer.py", SHEBANG_REDUCER_PY),
        ("map.sh", SHEBANG_MAPPER_SH),
        ("reduce.sh", SHEBANG_REDUCER_SH),
    ] {
        std::fs::write(work.join(name), text).unwrap();
    }
    sorted_lines(&python_reference(
        &format!("{PY_FILES}{WORDCOUNT_PY}"),
        &input,
        &[],
    ))
}

/// The job flags of the shebang word count over `corpus`: `map` and `reduce` (also the
/// combiner), as relative paths.
pub fn shebang_job<'a>(map: &'a str, reduce: &'a str) -> [&'a str; 8] {
    [
        "--input",
        "corpus",
        "--map",
        map,
        "--reduce",
        reduce,
        "--combine",
        reduce,
    ]
}

/// Word count three ways — Python streaming, shell one-liners, the native app: each with its
/// job flags.
pub fn wordcount_jobs(map_py: &str, reduce_py: &str) -> Vec<(&'static str, Vec<String>)> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect();
    vec![
        ("python", v(&["--map", map_py, "--reduce", reduce_py])),
        (
            "shell",
            v(&[
                "--map",
                "tr -s ' \\t' '\\n\\n' | sed '/^$/d'",
                "--reduce",
                "uniq -c | awk '{print $2 \"\\t\" $1}'",
            ]),
        ),
        ("app", v(&["--app", "wordcount"])),
    ]
}

/// Python reference of the inverted index (after [`PY_FILES`]).
pub const INVERTED_PY: &str = r#"
idx = collections.defaultdict(set)
for name, b in files():
    for word in b.split():
        idx[word].add(name.encode())
for k in sorted(idx):
    w.write(k + b'\t' + b','.join(sorted(idx[k])) + b'\n')
"#;

/// The part files of an output directory in order, checking `_SUCCESS` and that nothing
/// else is there.
pub fn parts(out: &Path, r: u32) -> Vec<Vec<u8>> {
    assert!(
        out.join("_SUCCESS").exists(),
        "no _SUCCESS in {}",
        out.display()
    );
    let names: Vec<String> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        r as usize + 1,
        "unexpected files in the output: {names:?}"
    );
    (0..r)
        .map(|p| std::fs::read(out.join(format!("part-{p:05}"))).unwrap())
        .collect()
}

pub mod cluster;

/// The sample of `name` with every label in `labels`, from a parsed scrape.
pub fn sample(
    scrape: &prometheus_parse::Scrape,
    name: &str,
    labels: &[(&str, &str)],
) -> Option<f64> {
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .map(|s| match s.value {
            prometheus_parse::Value::Counter(v)
            | prometheus_parse::Value::Gauge(v)
            | prometheus_parse::Value::Untyped(v) => v,
            _ => f64::NAN,
        })
}

/// `GET /metrics` of the node serving HTTP at `addr`, parsed.
pub fn scrape(addr: &str) -> prometheus_parse::Scrape {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = String::new();
    s.read_to_string(&mut r).unwrap();
    let text = r.split_once("\r\n\r\n").unwrap().1.to_string();
    prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .expect("/metrics parses as Prometheus text")
}
#[allow(dead_code)] // only the netns tests use it
pub mod netns;

/// A counter's value from `shoal run`'s summary (`group.name = N` lines).
pub fn counter(summary: &str, name: &str) -> u64 {
    let prefix = format!("{name} = ");
    summary
        .lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no counter {name} in:\n{summary}"))
        .parse()
        .unwrap()
}

/// A secondary sort's flags: the key is `user<TAB>score`, partitioned on the user, ordered
/// by user and then score as a number, highest first.
pub const BY_USER_BEST_FIRST: [&str; 6] = [
    "--key-fields",
    "2",
    "--partition-fields",
    "1",
    "--sort-keys",
    "k1,1 k2,2nr",
];

/// Compress every file under `from` into the same place under `to` with `tool -c` (gzip,
/// bzip2, zstd, xz), adding `ext`.
pub fn compress_dir(from: &Path, to: &Path, tool: &str, ext: &str) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            compress_dir(&e.path(), &to.join(e.file_name()), tool, ext);
            continue;
        }
        let o = run(std::process::Command::new(tool)
            .arg("-c")
            .arg(e.path())
            .stdout(std::process::Stdio::piped()));
        assert!(o.status.success(), "{tool} failed: {}", text(&o));
        let name = format!("{}{ext}", e.file_name().to_string_lossy());
        std::fs::write(to.join(name), o.stdout).unwrap();
    }
}

/// Lines of a byte buffer (without newlines).
pub fn lines(b: &[u8]) -> Vec<Vec<u8>> {
    b.split(|&c| c == b'\n')
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect()
}

/// The key of an output line: up to the first tab.
pub fn key(line: &[u8]) -> &[u8] {
    line.split(|&c| c == b'\t').next().unwrap_or(line)
}

/// Check that each part is sorted by key and that no key is in two parts; return all lines
/// sorted, for comparison with a reference.
pub fn check_keyed_parts(parts: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let mut owner = std::collections::HashMap::new();
    let mut all = Vec::new();
    for (p, part) in parts.iter().enumerate() {
        let ls = lines(part);
        for w in ls.windows(2) {
            assert!(key(&w[0]) <= key(&w[1]), "part {p} is not sorted by key");
        }
        for l in ls {
            let prev = owner.insert(key(&l).to_vec(), p);
            assert!(
                prev.is_none() || prev == Some(p),
                "key {:?} is in two parts",
                String::from_utf8_lossy(key(&l))
            );
            all.push(l);
        }
    }
    all.sort();
    all
}

/// Word counts from part files of `uniq -c` lines (`  count word`), sorted by word.
pub fn uniq_counts(parts: &[Vec<u8>]) -> Vec<(String, usize)> {
    let mut got: Vec<(String, usize)> = parts
        .iter()
        .flat_map(|p| lines(p))
        .map(|l| {
            let s = String::from_utf8(l).unwrap();
            let mut f = s.split_whitespace();
            let n = f.next().unwrap().parse().unwrap();
            (f.next().unwrap().to_string(), n)
        })
        .collect();
    got.sort();
    got
}

/// Word counts from part files of `word<TAB>count` lines (the native word count's), sorted
/// by word.
pub fn tab_counts(parts: &[Vec<u8>]) -> Vec<(String, usize)> {
    let mut out: Vec<(String, usize)> = parts
        .iter()
        .flat_map(|p| lines(p))
        .map(|l| {
            let l = String::from_utf8(l).unwrap();
            let (w, n) = l.split_once('\t').unwrap();
            (w.to_string(), n.parse().unwrap())
        })
        .collect();
    out.sort();
    out
}

/// Word counts of a text, sorted by word.
pub fn word_counts(text: &str) -> Vec<(String, usize)> {
    let mut counts = std::collections::BTreeMap::<String, usize>::new();
    for w in text.split_whitespace() {
        *counts.entry(w.to_string()).or_default() += 1;
    }
    counts.into_iter().collect()
}

/// Lines of a reference output, sorted.
pub fn sorted_lines(b: &[u8]) -> Vec<Vec<u8>> {
    let mut l = lines(b);
    l.sort();
    l
}

/// A new cluster key in `dir`: its file.
pub fn keygen(dir: &std::path::Path) -> std::path::PathBuf {
    let key_file = dir.join("cluster.key");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .arg("keygen")
        .arg(&key_file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    key_file
}

/// The resident memory of process `pid`, in KiB.
pub fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// Every part file of an output directory, after checking `_SUCCESS`.
pub fn all_parts(out: &std::path::Path) -> Vec<Vec<u8>> {
    assert!(
        out.join("_SUCCESS").exists(),
        "no _SUCCESS in {}",
        out.display()
    );
    let mut names: Vec<std::path::PathBuf> = std::fs::read_dir(out)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("part-")
        })
        .collect();
    names.sort();
    names.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// The first port of `n` free loopback ports below the ephemeral range, where `--local`'s
/// pairs may go (other tests' nodes take ephemeral ports).
pub fn free_ports(n: u16) -> u16 {
    use std::net::{Ipv4Addr, TcpListener};
    (20_000u16..30_000)
        .step_by(usize::from(n))
        .find(|&b| (b..b + n).all(|p| TcpListener::bind((Ipv4Addr::LOCALHOST, p)).is_ok()))
        .expect("a free range of loopback ports")
}

/// `shoal run` of `job` on `input` into `out` with `r` reducers and 64 KiB splits, which must
/// succeed: its summary.
pub fn shoal_run(input: &Path, out: &Path, r: u32, job: &[&str]) -> String {
    let o = run(shoal()
        .args(["run", "--input"])
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(["--reducers", &r.to_string(), "--split-size", "65536"])
        .args(job));
    assert!(o.status.success(), "shoal run {job:?} failed: {}", text(&o));
    let summary = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(summary.contains("job succeeded"), "{summary}");
    summary
}
