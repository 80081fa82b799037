//! The command line's contract: help lists the commands, exit codes follow DESIGN.md.

use std::process::Command;

use crate::common;
use crate::common::cluster::{leader_of, wait_for, NodeProc, TestNode};

fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

#[test]
fn help_lists_every_command() {
    let out = shoal().arg("--help").output().expect("shoal runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "node",
        "submit",
        "status",
        "jobs",
        "output",
        "kill",
        "drain",
        "undrain",
        "remove",
        "logs",
        "run",
        "demo",
        "sim",
        "bench",
        "completions",
        "manpage",
    ] {
        assert!(
            help.contains(cmd),
            "`shoal --help` does not mention {cmd}:\n{help}"
        );
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = shoal().arg("frobnicate").output().expect("shoal runs");
    assert_eq!(out.status.code(), Some(2));
}

/// `shoal run` with the given arguments in a fresh directory; (exit code, stderr).
fn run_in(dir: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = shoal()
        .current_dir(dir)
        .arg("run")
        .args(args)
        .output()
        .expect("shoal runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn bad_input_is_rejected_before_anything_runs_naming_the_culprit() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("in.txt"), "a b\n").unwrap();
    std::fs::write(d.join("data.bin"), [0u8, 1, 2]).unwrap();
    std::fs::create_dir(d.join("full")).unwrap();
    std::fs::write(d.join("full/x"), "").unwrap();
    let cases: [(&[&str], &str); 9] = [
        (
            &[
                "--input",
                "missing.txt",
                "--app",
                "wordcount",
                "--output",
                "o",
            ],
            "missing.txt",
        ),
        (
            &["--input", "in.txt", "--app", "nosuchapp", "--output", "o"],
            "nosuchapp",
        ),
        (
            &[
                "--input",
                "in.txt",
                "--app",
                "wordcount",
                "--reducers",
                "200000",
                "--output",
                "o",
            ],
            "--reducers",
        ),
        (
            &[
                "--input", "in.txt", "--map", "data.bin", "--reduce", "cat", "--output", "o",
            ],
            "no known interpreter",
        ),
        (
            &[
                "--input",
                "in.txt",
                "--map",
                "nosuch.py",
                "--reduce",
                "cat",
                "--output",
                "o",
            ],
            "nosuch.py",
        ),
        (
            &[
                "--input",
                "in.txt",
                "--app",
                "wordcount",
                "--output",
                "full",
            ],
            "not empty",
        ),
        (
            &["--input", "in.txt", "--app", "grep", "--output", "o"],
            "GREP_PATTERN",
        ),
        (
            &[
                "--input",
                "in.txt",
                "--app",
                "wordcount",
                "--priority",
                "-9",
                "--output",
                "o",
            ],
            "--priority must be -8..=8",
        ),
        (
            &[
                "--input",
                "in.txt",
                "--app",
                "wordcount",
                "--user",
                "a\u{7}b",
                "--output",
                "o",
            ],
            "--user",
        ),
    ];
    for (args, culprit) in cases {
        let (code, err) = run_in(d, args);
        assert_eq!(code, Some(2), "{args:?} should be a usage error: {err}");
        assert!(
            err.contains(culprit),
            "{args:?}: the message should name {culprit:?}: {err}"
        );
        assert!(!err.contains("panicked"), "{err}");
        assert!(
            !d.join("o").exists(),
            "nothing is created for a rejected job"
        );
    }
}

#[test]
fn a_failed_job_exits_1_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.txt"), "a b\n").unwrap();
    let args = [
        "--input",
        "in.txt",
        "--map",
        "exit 4",
        "--reduce",
        "cat",
        "--output",
        "o",
        "--max-attempts",
        "1",
    ];
    let (code, err) = run_in(dir.path(), &args);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("exited with status 4"), "{err}");
}

/// `shoal sim ARGS…`: (exit code, stdout, stderr).
fn sim(args: &[&str]) -> (Option<i32>, String, String) {
    let out = shoal().arg("sim").args(args).output().expect("shoal runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn sim_passes_a_seed_and_names_the_failing_one_with_its_command() {
    let (code, out, err) = sim(&["--seed", "4", "--steps", "30"]);
    assert_eq!(code, Some(0), "{out}{err}");
    assert!(out.contains("seed     4: ok"), "{out}");
    assert!(out.contains("1 seeds: 0 with a violation"), "{out}");

    let (code, out, err) = sim(&[
        "--seeds",
        "1..3",
        "--plant",
        "apply-out-of-order",
        "--tail",
        "5",
    ]);
    assert_eq!(code, Some(1), "{out}{err}");
    assert!(out.contains("VIOLATION of logs_agree"), "{out}");
    assert!(out.contains("invariant logs_agree violated at"), "{out}");
    assert!(
        out.contains("reproduce with: shoal sim --seed 1 --nodes 5 --jobs 4 --faults crash,kill,partition,oneway,loss,dup,delay,rot --steps 60 --deadline 300 --plant apply-out-of-order"),
        "{out}"
    );
    assert!(out.contains("last 5 of "), "{out}");
}

#[test]
fn sim_usage_errors_exit_2() {
    for args in [
        &["--faults", "meteor"][..],
        &["--seeds", "5..2"],
        &["--plant", "nothing"],
        &["--nodes", "0"],
    ] {
        let (code, out, err) = sim(args);
        assert_eq!(code, Some(2), "{args:?}: {out}{err}");
    }
    let (code, out, _) = sim(&["--help"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("--plant") && out.contains("--seeds"), "{out}");
}

/// Off loopback, `shoal node` needs a cluster key: it exits 2 naming `--cluster-key` and
/// `shoal keygen`, before it listens or creates anything. (With `--insecure` it starts: the
/// network-namespace test starts such a node, since nothing here listens beyond loopback.)
#[test]
fn a_node_off_loopback_without_a_key_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    for listen in [
        "/ip4/0.0.0.0/tcp/0",
        "/ip4/192.0.2.7/tcp/7071",
        "/ip6/::/tcp/0",
    ] {
        let data = dir.path().join("data");
        let o = shoal()
            .args(["node", "--no-mdns", "--listen", listen, "--data"])
            .arg(&data)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{listen}: {err}");
        assert!(
            err.contains(&format!(
                "refusing to listen on {listen} without a cluster key"
            )) && err.contains("--cluster-key cluster.key")
                && err.contains("shoal keygen cluster.key")
                && err.contains("--insecure"),
            "{listen}: {err}"
        );
        assert!(!data.exists(), "{listen}: nothing is created");
    }
}

/// A map-only job needs no reducer: `--map` with `-R 0` runs; `--map` alone otherwise is
/// refused naming both ways, and `--split-size` takes units.
#[test]
fn a_map_only_job_needs_no_reducer_and_sizes_take_units() {
    let dir = common::tempdir();
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "b\ta\nc\td\n").unwrap();
    let out = dir.path().join("out");
    let o = shoal()
        .args([
            "run",
            "--map",
            "cat",
            "-R",
            "0",
            "--split-size",
            "64K",
            "--input",
        ])
        .arg(&input)
        .arg("--output")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let part = std::fs::read_to_string(out.join("part-00000")).unwrap();
    assert_eq!(part, "b\ta\nc\td\n");
    let o = shoal()
        .args(["run", "--map", "cat", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("out2"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--map and --reduce") && err.contains("-R 0"),
        "{err}"
    );
}

/// Ctrl-C on `submit --wait` says the job still runs and how to follow or kill it, and
/// waits on; a second, with no terminal to ask on, leaves the job running and exits 130.
#[test]
fn ctrl_c_on_a_waiting_submit_says_what_runs_and_a_second_leaves_it_running() {
    use std::io::BufRead;
    let dir = common::tempdir();
    let node = NodeProc::start(dir.path(), "n1", &["--expect", "1"].map(String::from));
    wait_for(60, "the node to lead", || leader_of(&node));
    let url = format!("http://{}", node.http);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a\n").unwrap();
    let mut child = shoal()
        .args([
            "submit",
            "--wait",
            "--map",
            "sleep 600; cat",
            "--reduce",
            "cat",
            "--node",
            &url,
        ])
        .arg("--input")
        .arg(&input)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut id = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut id)
        .unwrap();
    let id = id.trim().to_string();
    assert!(id.starts_with("j-"), "{id:?}");
    let (tx, lines) = std::sync::mpsc::channel::<String>();
    let stderr = child.stderr.take().unwrap();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            let _ = tx.send(line);
        }
    });
    let pid = child.id() as libc::pid_t;
    // SAFETY: signalling the child this test started.
    unsafe { libc::kill(pid, libc::SIGINT) };
    let said = wait_for(30, "the notice of the first Ctrl-C", || {
        lines.try_iter().find(|l| l.contains("still runs"))
    });
    assert!(
        said.contains(&format!("shoal status --wait {id}"))
            && said.contains(&format!("shoal kill {id}")),
        "{said}"
    );
    assert!(
        child.try_wait().unwrap().is_none(),
        "the client stopped waiting at the first Ctrl-C"
    );
    unsafe { libc::kill(pid, libc::SIGINT) };
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(130));
    let left = wait_for(10, "the client's last word", || {
        lines.try_iter().find(|l| l.contains("left job"))
    });
    assert!(left.contains(&id), "{left}");
    let job = node.get(&format!("/api/v1/jobs/{id}")).unwrap().1;
    assert!(
        job["state"] == "running" || job["state"] == "queued",
        "the job was left running: {job}"
    );
    let o = shoal()
        .args(["kill", &id, "--node", &url])
        .output()
        .unwrap();
    assert!(o.status.success());
}

/// A client whose node is not running is told where it looked and how to start one.
#[test]
fn a_client_whose_node_is_not_running_is_told_to_start_one() {
    // A port nothing listens on: one the system just gave and took back.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let o = shoal().args(["jobs", "--node", &url]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(3), "{err}");
    assert!(
        err.contains(&format!("127.0.0.1:{port}"))
            && err.contains("is one running?")
            && err.contains("`shoal node`"),
        "{err}"
    );
}

/// `shoal completions` writes each shell's script, naming the subcommands and their flags;
/// `shoal manpage` writes a roff page of them.
#[test]
fn completions_and_the_manual_page_name_the_commands() {
    for (shell, marker) in [
        ("bash", "_shoal()"),
        ("zsh", "#compdef shoal"),
        ("fish", "complete -c shoal"),
    ] {
        let out = shoal()
            .args(["completions", shell])
            .output()
            .expect("shoal runs");
        assert!(
            out.status.success(),
            "{shell}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let script = String::from_utf8_lossy(&out.stdout);
        assert!(script.contains(marker), "{shell}: {script}");
        for word in ["submit", "logs", "archive", "input-root"] {
            assert!(script.contains(word), "{shell} completes {word}");
        }
    }
    let out = shoal()
        .args(["completions", "tcsh"])
        .output()
        .expect("shoal runs");
    assert_eq!(out.status.code(), Some(2), "an unknown shell is bad usage");
    let out = shoal().arg("manpage").output().expect("shoal runs");
    assert!(out.status.success());
    let page = String::from_utf8_lossy(&out.stdout);
    assert!(
        page.starts_with(".ie") || page.contains(".TH shoal"),
        "{page}"
    );
    assert!(page.contains("submit") && page.contains("logs"), "{page}");
}

/// `deploy/shoal.service` passes `systemd-analyze verify` (with the binary it names put
/// where this build is: the unit's other settings are checked as they are shipped).
#[test]
fn the_systemd_unit_passes_systemd_analyze_verify() {
    let unit =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/shoal.service"))
            .expect("deploy/shoal.service");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/shoal node"),
        "{unit}"
    );
    for setting in [
        "User=shoal",
        "StateDirectory=shoal",
        "Restart=on-failure",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(
            unit.lines().any(|l| l == setting),
            "the unit sets {setting}"
        );
    }
    let dir = tempfile::tempdir().expect("tmp");
    let here = dir.path().join("shoal.service");
    std::fs::write(
        &here,
        unit.replace("/usr/local/bin/shoal", env!("CARGO_BIN_EXE_shoal")),
    )
    .expect("write");
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&here)
        .output()
        .expect("systemd-analyze runs (.ci/run installs systemd)");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "systemd-analyze verify: {said}");
    assert!(said.trim().is_empty(), "no warnings: {said}");
}

/// `shoal manpage --dir` writes a page per command, which `man shoal-submit` renders with
/// the flags under their headings; `--help` shows the same headings.
#[test]
fn every_command_has_a_manual_page_and_help_groups_the_flags_under_headings() {
    let dir = tempfile::tempdir().unwrap();
    let man1 = dir.path().join("man/man1");
    let out = shoal()
        .args(["manpage", "--dir"])
        .arg(&man1)
        .output()
        .expect("shoal runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for cmd in [
        "submit", "node", "status", "jobs", "output", "kill", "logs", "run", "demo",
    ] {
        assert!(
            man1.join(format!("shoal-{cmd}.1")).is_file(),
            "shoal-{cmd}.1 written"
        );
    }
    let page = std::process::Command::new("man")
        .arg("shoal-submit")
        .env("MANPATH", dir.path().join("man"))
        .env("MANWIDTH", "100")
        .env("MANPAGER", "cat")
        .env("PAGER", "cat")
        .output()
        .expect("man runs");
    assert!(
        page.status.success(),
        "{}",
        String::from_utf8_lossy(&page.stderr)
    );
    let text = String::from_utf8_lossy(&page.stdout);
    for want in [
        "shoal-submit",
        "INPUT",
        "PROGRAM",
        "OUTPUT",
        "--wait",
        "--split-size",
    ] {
        assert!(
            text.contains(want),
            "man shoal-submit shows {want}:\n{text}"
        );
    }
    for (cmd, headings) in [
        (
            "submit",
            &[
                "Reaching the cluster:",
                "Input:",
                "Program:",
                "Keys, partitions and sorting:",
                "Output:",
                "Running:",
            ][..],
        ),
        ("run", &["Input:", "Program:", "Output:", "Running:"][..]),
        (
            "node",
            &[
                "Storage:",
                "Network:",
                "Cluster:",
                "Tasks:",
                "Configuration:",
            ][..],
        ),
    ] {
        let out = shoal().args([cmd, "--help"]).output().expect("shoal runs");
        let help = String::from_utf8_lossy(&out.stdout);
        for h in headings {
            assert!(
                help.lines().any(|l| l == *h),
                "shoal {cmd} --help has the heading {h}:\n{help}"
            );
        }
    }
}

/// A second node given a taken port is refused with what to do instead (two nodes never
/// share a p2p port: libp2p's `SO_REUSEPORT` would let them), and a node that waits for
/// peers with nothing new seen says why and what to try.
#[test]
fn a_taken_port_is_refused_with_what_to_try_and_a_waiting_node_says_why() {
    let dir = common::tempdir();
    let first = NodeProc::start(dir.path(), "first", &[]);
    let p2p = first.addrs[0].clone();
    let second = |listen: &str, http: &str| {
        shoal()
            .args([
                "node",
                "--no-mdns",
                "--listen",
                listen,
                "--http",
                http,
                "--data",
            ])
            .arg(dir.path().join("second"))
            .env("SHOAL_MIN_FREE_MB", "64")
            .output()
            .expect("shoal runs")
    };
    let out = second(&p2p, "127.0.0.1:0");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let port = p2p.rsplit('/').next().unwrap();
    assert!(
        err.contains(&format!("the p2p port {port} is taken"))
            && err.contains("shoal node --local"),
        "{err}"
    );
    let out = second("/ip4/127.0.0.1/tcp/0", &first.http);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&format!("cannot listen on --http {}", first.http))
            && err.contains("another node on this machine?")
            && err.contains("shoal node --local"),
        "{err}"
    );
    // The first node waits for two more nodes (the default --expect 3) and sees none.
    wait_for(30, "the waiting node to say why", || {
        first
            .log_text()
            .lines()
            .find(|l| l.contains("waiting for 2 more nodes") && l.contains("shoal node --local"))
            .map(String::from)
    });
    assert!(first.log_text().contains("--peer ADDRESS"));
}

/// A reducer count far beyond the input and the cluster is warned about before the job is
/// submitted, and the end of a job's id is enough to name it.
#[test]
fn a_huge_reducer_count_warns_and_a_job_is_named_by_the_end_of_its_id() {
    let dir = common::tempdir();
    let node = NodeProc::start(
        dir.path(),
        "n1",
        &["--expect", "1", "--slots", "2"].map(String::from),
    );
    wait_for(60, "the node to lead", || leader_of(&node));
    let url = format!("http://{}", node.http);
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "a few words\n".repeat(100)).unwrap();
    let o = shoal()
        .args([
            "submit",
            "--node",
            &url,
            "--app",
            "wordcount",
            "-R",
            "2000",
            "--input",
        ])
        .arg(&input)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(
        err.contains(
            "warning: -R 2000 is far more reducers than this job needs: the input is 1.2 KiB"
        ) && err.contains("the cluster runs 2 tasks at once, so they run in 1000 waves")
            && err.contains("-R 2 would finish sooner"),
        "{err}"
    );
    let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
    let end = &id[id.len() - 5..];
    let o = shoal()
        .args(["status", "--node", &url, end])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && shown.contains(&id),
        "status {end}: {shown}"
    );
    let o = shoal()
        .args(["kill", "--node", &url, end])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        o.status.success() && err.contains(&format!("{id} killed")),
        "{err}"
    );
    let o = shoal()
        .args(["status", "--node", &url, "fffff"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("no job's id starts or ends with fffff"),
        "{err}"
    );
}

/// Hadoop habits get guidance: Hadoop's spelling of options names what to write instead,
/// `--mapper` and `--reducer` are aliases, and a command naming a local script by a
/// relative path is told how to ship it.
#[test]
fn hadoop_habits_are_answered_with_what_to_write() {
    let dir = common::tempdir();
    std::fs::create_dir_all(dir.path().join("examples")).unwrap();
    std::fs::write(dir.path().join("in.txt"), "a b\nb c\n").unwrap();
    std::fs::write(
        dir.path().join("examples/map.py"),
        "import sys\nfor l in sys.stdin:\n    print(l.strip())\n",
    )
    .unwrap();
    let o = shoal()
        .current_dir(dir.path())
        .args(["submit", "-input", "in.txt", "-mapper", "cat"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(
        err.contains("-input is Hadoop Streaming's spelling")
            && err.contains("--input")
            && err.contains("shoal streaming"),
        "{err}"
    );
    let o = shoal()
        .current_dir(dir.path())
        .args([
            "run",
            "--input",
            "in.txt",
            "--output",
            "out",
            "--mapper",
            "cat",
            "--reducer",
            "cat",
        ])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = shoal()
        .current_dir(dir.path())
        .args([
            "run",
            "--input",
            "in.txt",
            "--output",
            "out2",
            "-R",
            "0",
            "--map",
            "python3 examples/map.py",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("warning: --map 'python3 examples/map.py' names examples/map.py, a file of this machine that no task sees")
            && err.contains("give --map examples/map.py to ship it")
            && err.contains("--file examples/map.py and call it map.py"),
        "{err}"
    );
}
