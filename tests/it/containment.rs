//! Tasks are contained. A `shoal node` run as root starts each job's task processes as a
//! uid of the job's own: a mapper that reads the node's identity key or its cluster key is denied. Each attempt
//! runs in a cgroup of its own: a mapper that allocates past `--task-memory` fails with the
//! OOM reason, a mapper that double-forks a `sleep` out of its process group leaves nothing
//! behind once its job is killed, and after `kill -9` of the node such a `sleep` (which
//! outlived it) is killed when the node restarts. A node run as a normal user (`nobody`)
//! runs its tasks as itself, and Landlock keeps them from its keys. Needs root and a writable
//! cgroup: a failure under SHOAL_REQUIRE_CGROUPS=1 (CI), skipped with a message elsewhere.

use std::path::Path;

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

/// The cluster-test lock, a scratch directory and a cluster key in its subdirectory `keys`
/// ("" for itself), when this machine can run the test: root, and a cgroup hierarchy (the
/// node's own check is what the test exercises; this only decides skipping).
fn setup(
    test: &str,
    keys: &str,
) -> Option<(
    std::sync::MutexGuard<'static, ()>,
    tempfile::TempDir,
    std::path::PathBuf,
)> {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    let cgroups = std::fs::read_to_string("/proc/self/mountinfo")
        .is_ok_and(|m| m.lines().any(|l| l.contains(" - cgroup")));
    if !(root && cgroups) {
        skip(test, "needs root and cgroups", "SHOAL_REQUIRE_CGROUPS");
        return None;
    }
    let serial = one_at_a_time();
    let dir = common::tempdir();
    std::fs::create_dir_all(dir.path().join(keys)).unwrap();
    let key = dir.path().join(keys).join("cluster.key");
    let o = run(shoal().arg("keygen").arg(&key));
    assert!(o.status.success(), "{}", text(&o));
    Some((serial, dir, key))
}

/// Pids of live processes whose whole command line is `word`.
fn processes_with(word: &str) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let cmd = std::fs::read(e.path().join("cmdline")).ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            let zombie = stat.rsplit(')').next()?.trim_start().starts_with('Z');
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            // The whole command line: the shell that starts an escapee names it too, and
            // counting the shell as the escapee let a check pass before the escapee existed.
            (!zombie && cmd.trim_end() == word).then_some(pid)
        })
        .collect()
}

/// Submit a one-attempt streaming job with mapper `map` to `node`; its id.
fn submit(node: &NodeProc, input: &Path, map: &str, wait: bool) -> (String, std::process::Output) {
    let mut cmd = shoal();
    cmd.args(["submit", "--node", &format!("http://{}", node.http)])
        .arg("--input")
        .arg(input)
        .args(["--map", map, "--reduce", "cat", "--max-attempts", "1"]);
    if wait {
        cmd.arg("--wait");
    }
    let o = run(&mut cmd);
    (job_id(&o), o)
}

/// Submit mappers that read each of `secrets`: each is denied, and the node says so.
fn secrets_are_denied(node: &NodeProc, input: &Path, secrets: &[&Path]) {
    for secret in secrets {
        let (id, o) = submit(node, input, &format!("cat {}", secret.display()), true);
        assert!(!o.status.success(), "reading {} worked", secret.display());
        let error = attempt_error(node, &id);
        assert!(
            error.contains("Permission denied"),
            "{}: {error}",
            secret.display()
        );
        println!(
            "reading {}: {}",
            secret.display(),
            error.lines().last().unwrap_or("")
        );
    }
}

/// The first failed attempt's error of job `id`.
fn attempt_error(node: &NodeProc, id: &str) -> String {
    let v = job_at(&node.http, id).expect("the node knows the job");
    common::three::tasks(&v)
        .iter()
        .flat_map(|t| &t.attempts)
        .find_map(|a| a.error.clone())
        .unwrap_or_else(|| panic!("no failed attempt: {v}"))
}

#[test]
fn tasks_cannot_read_the_node_s_keys_are_limited_and_die_with_their_attempt_and_node() {
    let test = "tasks_cannot_read_the_node_s_keys_are_limited_and_die_with_their_attempt_and_node";
    let Some((_serial, dir, key)) = setup(test, "") else {
        return;
    };
    let mut node = NodeProc::start(
        dir.path(),
        "n1",
        &[
            "--expect",
            "1",
            "--cluster-key",
            &key.to_string_lossy(),
            "--task-memory",
            "64",
        ]
        .map(String::from),
    );
    wait_for(60, "the node to lead", || leader_of(&node));
    assert!(
        node.log_text()
            .contains("tasks run as a user of its own for each job"),
        "the node says whom its tasks run as: {}",
        node.log_text()
    );
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "one line\n").unwrap();

    // The keys: a mapper that reads either is denied.
    secrets_are_denied(&node, &input, &[&node.data.join("identity.key"), &key]);

    // Past --task-memory: the OOM killer, named.
    let hog = "python3 -c 'b = bytearray(300 << 20); print(len(b))'";
    let (id, o) = submit(&node, &input, hog, true);
    assert!(!o.status.success(), "{}", text(&o));
    let error = attempt_error(&node, &id);
    assert!(
        error.contains("killed: out of memory (limit 64 MiB)"),
        "{error}"
    );
    println!("the memory hog: {}", error.lines().next().unwrap_or(""));

    // A double-forked escapee dies with its attempt when the job is killed.
    let escape = |secs: &str| format!("(setsid sleep {secs} &); sleep 1000");
    // Durations no other process has: this test's pid, twice.
    let (first, second) = (
        format!("{}1", std::process::id()),
        format!("{}2", std::process::id()),
    );
    let (id, o) = submit(&node, &input, &escape(&first), false);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(30, "the escapee to start", || {
        (!processes_with(&format!("sleep {first}")).is_empty()).then_some(())
    });
    let o = run(shoal().args(["kill", &id, "--node", &format!("http://{}", node.http)]));
    assert!(o.status.success(), "{}", text(&o));
    wait_for(30, "the escapee to die with its attempt", || {
        processes_with(&format!("sleep {first}"))
            .is_empty()
            .then_some(())
    });

    // kill -9 of the node: its escapee outlives it, and dies when the node restarts.
    let (_, o) = submit(&node, &input, &escape(&second), false);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(30, "the second escapee to start", || {
        (!processes_with(&format!("sleep {second}")).is_empty()).then_some(())
    });
    node.kill();
    assert!(
        !processes_with(&format!("sleep {second}")).is_empty(),
        "the escapee outlived the node (the death signal reaches only the mapper)"
    );
    node.restart_now();
    wait_for(
        30,
        "the restarted node to kill what the killed one left",
        || {
            processes_with(&format!("sleep {second}"))
                .is_empty()
                .then_some(())
        },
    );
}

#[test]
fn a_node_run_as_a_normal_user_keeps_its_tasks_from_its_keys() {
    let test = "a_node_run_as_a_normal_user_keeps_its_tasks_from_its_keys";
    // A directory of its own for the node's user, as `useradd --system shoal` would give.
    let Some((_serial, dir, _)) = setup(test, "home") else {
        return;
    };
    let nobody = (65534, 65534);
    // Its home in the temporary directory, as /home/shoal is in /home: nothing on the way
    // to it is opened for the test.
    let home_dir = common::tempdir();
    let home = home_dir.path();
    std::fs::rename(
        dir.path().join("home/cluster.key"),
        home.join("cluster.key"),
    )
    .unwrap();
    let key = home.join("cluster.key");
    for p in [home, &key] {
        std::os::unix::fs::chown(p, Some(nobody.0), Some(nobody.1)).unwrap();
    }
    let how = shoal::demo::local_cluster::Launch {
        program: Some(env!("CARGO_BIN_EXE_shoal").into()),
        user: Some(nobody),
        ..Default::default()
    };
    let args = ["--expect", "1", "--cluster-key", &key.to_string_lossy()].map(String::from);
    let node = NodeProc::launch(home, "n1", &args, how).unwrap_or_else(|e| panic!("{e:#}"));
    wait_for(60, "the node to lead", || leader_of(&node));
    assert!(
        node.log_text()
            .contains("kept from the node's files by Landlock"),
        "{}",
        node.log_text()
    );
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "to be or not to be\n").unwrap();
    secrets_are_denied(&node, &input, &[&node.data.join("identity.key"), &key]);
    // The rest of the machine is the task's: a job that reads only its input runs.
    let (_, o) = submit(&node, &input, "tr ' ' '\\n'", true);
    assert!(o.status.success(), "{}", text(&o));
}

/// Without `--task-memory`, a mapper that allocates without bound meets the limit of all the
/// node's tasks together (what `--node-reserve-mb` leaves): its attempt fails as out of
/// memory, and the node and another job's task running beside it go on.
#[test]
fn a_task_that_takes_all_memory_is_killed_and_the_node_and_other_tasks_go_on() {
    let test = "a_task_that_takes_all_memory_is_killed_and_the_node_and_other_tasks_go_on";
    let Some((_serial, dir, _)) = setup(test, "") else {
        return;
    };
    let total = shoal_jobs::sandbox::memory_available_mb().expect("the machine's memory");
    let reserve = (total - 300).to_string();
    let node = NodeProc::start(
        dir.path(),
        "n1",
        &[
            "--expect",
            "1",
            "--slots",
            "2",
            "--node-reserve-mb",
            &reserve,
        ]
        .map(String::from),
    );
    wait_for(60, "the node to lead", || leader_of(&node));
    assert!(
        node.log_text().contains("300 MiB for all tasks together"),
        "{}",
        node.log_text()
    );
    let marks = writable_by_tasks(dir.path());
    let input = dir.path().join("in.txt");
    std::fs::write(&input, "to be or not to be\n").unwrap();
    // Another job's task, running until the test opens its gate.
    let waiting = format!(
        "touch {m}/started; i=0; while [ ! -e {m}/gate ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; cat",
        m = marks.display()
    );
    let other = shoal()
        .args([
            "submit",
            "--node",
            &format!("http://{}", node.http),
            "--wait",
        ])
        .arg("--input")
        .arg(&input)
        .args(["--map", &waiting, "--reduce", "cat", "--max-attempts", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    wait_for(60, "the other job's mapper to start", || {
        marks.join("started").exists().then_some(())
    });
    let hog = common::three::write_program(
        dir.path(),
        "hog.py",
        "#!/usr/bin/env python3\nheld = []\nwhile True:\n    held.append(b'x' * (1 << 20))\n",
    );
    let (id, o) = submit(&node, &input, &hog, true);
    assert!(!o.status.success(), "the hog's job fails: {}", text(&o));
    let error = attempt_error(&node, &id);
    assert!(
        error.contains("out of memory (the node's tasks together may use 300 MiB"),
        "{error}"
    );
    let pid = node.child.as_ref().expect("the node runs").id();
    let rss_mb = crate::common::rss_kib(pid) >> 10;
    println!("the hog was killed: {error}\nthe node's RSS: {rss_mb} MiB");
    assert!(rss_mb < 300, "the node kept its memory: {rss_mb} MiB");
    std::fs::write(marks.join("gate"), b"").unwrap();
    let o = other.wait_with_output().unwrap();
    assert!(
        o.status.success(),
        "the other job's task went on: {}",
        text(&o)
    );
    assert!(node.is_running());
}
