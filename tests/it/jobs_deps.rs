//! Dependencies and logs on a cluster: a Python job whose mapper imports a package that its
//! `--setup` installed, with no network, from wheels shipped in an `--archive`; a setup that
//! fails; and `shoal logs` showing a failed attempt's whole traceback after the job ended and
//! after its manager was killed. Three real `shoal node` processes on 127.0.0.1, one cluster
//! at a time.

use std::path::Path;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

/// A wheel of package `shoalpkg` (its `shout` upper-cases a word), written with Python's
/// zipfile into `dir`: what `pip download` would have fetched on a machine with a network.
fn write_wheel(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    let script = r#"
import sys, zipfile
with zipfile.ZipFile(sys.argv[1] + "/shoalpkg-1.0-py3-none-any.whl", "w") as z:
    z.writestr("shoalpkg/__init__.py", "def shout(w):\n    return w.upper()\n")
    z.writestr("shoalpkg-1.0.dist-info/METADATA", "Metadata-Version: 2.1\nName: shoalpkg\nVersion: 1.0\n")
    z.writestr("shoalpkg-1.0.dist-info/WHEEL", "Wheel-Version: 1.0\nGenerator: shoal-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    z.writestr("shoalpkg-1.0.dist-info/RECORD", "")
"#;
    let o = run(std::process::Command::new("python3")
        .args(["-c", script])
        .arg(dir));
    assert!(o.status.success(), "writing the wheel: {}", text(&o));
}

/// `tar czf archive -C dir .`
fn tar_gz(dir: &Path, archive: &Path) {
    let o = run(std::process::Command::new("tar")
        .arg("czf")
        .arg(archive)
        .arg("-C")
        .arg(dir)
        .arg("."));
    assert!(o.status.success(), "tar: {}", text(&o));
}

/// A zip holding `words.txt` (stop words), written with Python's zipfile.
fn stop_words_zip(archive: &Path, words: &str) {
    let script = "import sys, zipfile\nwith zipfile.ZipFile(sys.argv[1], 'w') as z:\n    z.writestr('words.txt', sys.argv[2])\n";
    let o = run(std::process::Command::new("python3")
        .args(["-c", script])
        .arg(archive)
        .arg(words));
    assert!(o.status.success(), "writing the zip: {}", text(&o));
}

const MAPPER: &str = r#"import sys, shoalpkg
stop = set(open('stop/words.txt').read().split())
for line in sys.stdin:
    for w in line.split():
        if w not in stop:
            print(shoalpkg.shout(w) + '\t1')
"#;

#[test]
fn a_python_job_imports_what_its_setup_installed_from_an_archive_once_per_node() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let (input, all) = small_word_input(dir.path(), 6, 400);
    let wheels = dir.path().join("wheels");
    write_wheel(&wheels);
    let deps = dir.path().join("deps.tar.gz");
    tar_gz(&wheels, &deps);
    let stop = dir.path().join("stop.zip");
    stop_words_zip(&stop, "w0 w3\n");
    let map = write_script(dir.path(), "map.py", MAPPER);
    let reduce = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let setup = "python3 -m venv venv && venv/bin/pip install --no-index wheels/*.whl";

    let c = three_nodes(dir.path());
    let out = dir.path().join("out");
    let (id, o) = c.submit(&[
        "--input",
        input.to_str().unwrap(),
        "--split-size",
        "2000",
        "--reducers",
        "3",
        "--map",
        "venv/bin/python map.py",
        "--file",
        &map,
        "--reduce",
        &reduce,
        "--archive",
        &format!("{}#wheels", deps.display()),
        "--archive",
        stop.to_str().unwrap(),
        "--setup",
        setup,
        "--output",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o));
    let mut want: Vec<(String, usize)> = word_counts(&all)
        .into_iter()
        .filter(|(w, _)| w != "w0" && w != "w3")
        .map(|(w, n)| (w.to_uppercase(), n))
        .collect();
    want.sort();
    assert_eq!(
        uniq_counts(&parts(&out, 3)),
        want,
        "the mapper used the package"
    );

    // Once per node that ran a task: counted in the table (whatever became of the attempt
    // that waited for it), and each node's setup output (appended to at every run) shows
    // pip's words once.
    let job = c.job(0, &id);
    let mut ran_on: Vec<String> = attempt_nodes(&job, "map");
    ran_on.extend(attempt_nodes(&job, "reduce"));
    ran_on.sort();
    ran_on.dedup();
    assert_eq!(ran_on.len(), 3, "tasks ran on every node: {job}");
    let counted = wait_for(30, "every node's setup counted", || {
        let j = c.job(0, &id);
        (shoal_counter(&j, "setup_runs") == 3).then_some(j)
    });
    assert_eq!(shoal_counter(&counted, "setup_runs"), 3);
    let o = run(shoal().args(["logs", &id, "--setup", "--node", &c.url(1)]));
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    for n in &ran_on {
        assert!(
            shown.contains(&format!("==> setup of {id} on node {n} <==")),
            "{shown}"
        );
    }
    assert_eq!(
        shown.matches("Successfully installed shoalpkg-1.0").count(),
        3,
        "pip's own words, once per node: {shown}"
    );

    // A setup that fails fails the job, after its attempts, with the setup's words.
    let wheels = format!("{}#wheels", deps.display());
    let error = failed_job_error(
        &c,
        &input,
        &[
            "--archive",
            &wheels,
            "--setup",
            "echo 'no such index: pypi' >&2; exit 7",
            "--max-attempts",
            "2",
        ],
    );
    assert!(
        error.contains("--setup failed") && error.contains("exited with status 7"),
        "{error}"
    );
    assert!(
        error.contains("no such index: pypi"),
        "the setup's stderr: {error}"
    );
    hostile_archives(&c, dir.path(), &input, &deps);
}

/// The error of a `cat | cat` job over `input` with `extra` flags, which must fail.
fn failed_job_error(c: &Cluster, input: &Path, extra: &[&str]) -> String {
    let mut args = vec!["--input", input.to_str().unwrap(), "--map", "cat"];
    args.extend(["--reduce", "cat", "--wait"]);
    args.extend(extra);
    let (id, o) = c.submit(&args);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    c.job(0, &id).error.unwrap_or_default()
}

/// An archive whose entry climbs out fails its job naming the entry, and nothing lands
/// outside; a client that sends other bytes than its spec names, or one archive twice, is
/// refused (400) and nothing of it is kept.
fn hostile_archives(c: &Cluster, dir: &Path, input: &Path, deps: &Path) {
    let evil = dir.join("evil.tar");
    let script = "import io, sys, tarfile\n\
                  with tarfile.open(sys.argv[1], 'w') as t:\n    \
                  i = tarfile.TarInfo('../../planted'); i.size = 2\n    \
                  t.addfile(i, io.BytesIO(b'x\\n'))\n";
    let o = run(std::process::Command::new("python3")
        .args(["-c", script])
        .arg(&evil));
    assert!(o.status.success(), "{}", text(&o));
    let error = failed_job_error(
        c,
        input,
        &["--archive", evil.to_str().unwrap(), "--max-attempts", "1"],
    );
    assert!(
        error.contains("../../planted would land outside"),
        "{error}"
    );
    let planted: Vec<String> = files_under(dir)
        .into_iter()
        .filter(|p| p.ends_with("/planted"))
        .collect();
    assert!(planted.is_empty(), "{planted:?}");

    let post = |spec: &Path, archives: usize| {
        let mut curl = std::process::Command::new("curl");
        curl.args(["-sS", "-w", "\n%{http_code}", "-F"])
            .arg(format!("spec=@{};type=application/json", spec.display()));
        for _ in 0..archives {
            curl.arg("-F")
                .arg(format!("archive=@{};filename=wheels", deps.display()));
        }
        curl.arg("-F")
            .arg(format!(
                "input=@{};filename=in.txt",
                input.join("f0.txt").display()
            ))
            .arg(format!("{}/api/v1/jobs", c.url(c.follower)));
        String::from_utf8_lossy(&run(&mut curl).stdout).into_owned()
    };
    let spec_naming = |digest: &str| {
        let len = std::fs::metadata(deps).unwrap().len();
        let spec = dir.join(format!("spec-{}.json", &digest[..8]));
        std::fs::write(
            &spec,
            format!(
                r#"{{"inputs":["in.txt"],"kind":{{"Streaming":{{"map":{{"Shell":"cat"}},"reduce":{{"Shell":"cat"}},"combine":null}}}},"archives":[{{"name":"wheels","digest":"{digest}","len":{len}}}]}}"#
            ),
        )
        .unwrap();
        spec
    };
    let wrong = format!("{:064x}", 7);
    let answer = post(&spec_naming(&wrong), 1);
    assert!(answer.trim_end().ends_with("400"), "{answer}");
    assert!(answer.contains("is not the one the spec names"), "{answer}");
    let kept: Vec<String> = c
        .nodes
        .iter()
        .flat_map(|n| files_under(&n.data.join("blobs/archives")))
        .filter(|p| p.contains(&wrong))
        .collect();
    assert!(kept.is_empty(), "{kept:?}");

    let o = run(std::process::Command::new("sha256sum").arg(deps));
    let right = String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_owned();
    let answer = post(&spec_naming(&right), 2);
    assert!(answer.trim_end().ends_with("400"), "{answer}");
    assert!(answer.contains("was sent twice"), "{answer}");
    // Sent once, it is taken.
    let answer = post(&spec_naming(&right), 1);
    assert!(answer.trim_end().ends_with("201"), "{answer}");
}

/// A Python mapper that fails deep in a call chain: a traceback of over 40 lines (frames that
/// alternate, which Python does not fold), more than the tail an attempt's error carries.
const FAILING_MAPPER: &str = r#"import sys
def ping(n):
    if n == 0:
        raise ValueError('the record was not what ping expected')
    return pong(n - 1)
def pong(n):
    return ping(n - 1)
for line in sys.stdin:
    pass
print('mapper starting', file=sys.stderr)
ping(40)
"#;

#[test]
fn logs_show_a_failed_attempts_whole_traceback_after_the_job_and_its_manager_are_gone() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let (input, _) = small_word_input(dir.path(), 3, 50);
    let map = write_script(dir.path(), "fail.py", FAILING_MAPPER);
    let mut c = three_nodes(dir.path());
    let (id, o) = c.submit(&[
        "--input",
        input.to_str().unwrap(),
        "--map",
        &map,
        "--reduce",
        "cat",
        "--max-attempts",
        "3",
        "--wait",
    ]);
    assert_eq!(o.status.code(), Some(1), "the job fails: {}", text(&o));

    let logs = |c: &Cluster, nodes: &[usize], extra: &[&str]| {
        let urls: Vec<String> = nodes.iter().map(|&i| c.url(i)).collect();
        run(shoal()
            .args(["logs", &id, "--failed", "--node", &urls.join(",")])
            .args(extra))
    };
    // The whole traceback: its first line and every frame, which the error's tail lacks.
    let whole = |shown: &str| {
        shown.contains("mapper starting\nTraceback (most recent call last):")
            && shown.matches("in ping").count() >= 21
            && shown.contains("ValueError: the record was not what ping expected")
    };
    let o = logs(&c, &[0, 1, 2], &[]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(whole(&shown), "{shown}");
    let job = c.job(0, &id);
    let tail = tasks(&job)[0].attempts[0]
        .stderr_tail
        .as_deref()
        .unwrap_or("");
    assert!(!whole(tail), "the attempt's error carries a tail only");
    // One attempt, by task and number.
    let o = logs(&c, &[0], &["m-00000", "--attempt", "1"]);
    assert!(o.status.success(), "{}", text(&o));
    let one = String::from_utf8_lossy(&o.stdout);
    assert_eq!(one.matches("==> ").count(), 1, "{one}");
    assert!(one.starts_with("==> m-00000 attempt 1 on node "), "{one}");

    // The manager that ran the job is killed: the logs kept on the other nodes are still
    // shown, asked of either of them; those on the dead node are named as unreachable.
    let leader = wait_agreed(&c.nodes.iter().collect::<Vec<_>>(), 3, 60);
    let li = c.nodes.iter().position(|n| n.node_id == leader).unwrap();
    c.nodes[li].kill();
    let live: Vec<usize> = (0..3).filter(|&i| i != li).collect();
    wait_for(60, "a new manager", || {
        leader_of(&c.nodes[live[0]]).filter(|l| *l != leader)
    });
    let on_live = attempt_nodes(&job, "map")
        .iter()
        .filter(|n| **n != leader)
        .count();
    assert!(on_live > 0, "some attempts ran off the manager: {job}");
    let o = logs(&c, &live, &[]);
    let shown = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(whole(&shown), "after the manager died: {}", text(&o));
    let on_dead = attempt_nodes(&job, "map")
        .iter()
        .filter(|n| **n == leader)
        .count();
    if on_dead > 0 {
        assert_eq!(o.status.code(), Some(3), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(&format!("on node {leader}")),
            "the dead node is named: {}",
            text(&o)
        );
    } else {
        assert!(o.status.success(), "{}", text(&o));
    }
}
