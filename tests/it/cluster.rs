//! The foundation, end to end: real `shoal node` processes on 127.0.0.1 form a cluster, elect
//! a manager, fail over when it is killed, take back a restarted node, admit a new one, and
//! refuse a node of another cluster. One test at a time (they share two cores).

use std::time::Instant;

use crate::common;
use crate::common::cluster::*;

#[test]
fn three_nodes_elect_one_leader_fail_over_and_take_a_restarted_node_back() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = start_cluster(dir.path(), 3, &["--expect", "3"]);

    // 1. One cluster: every node names the same leader and three voters.
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let before = nodes[0].cluster().unwrap();
    let cluster_id = before["cluster_id"].as_str().unwrap().to_string();
    for n in &nodes {
        let v = n.cluster().unwrap();
        assert_eq!(
            v["cluster_id"].as_str(),
            Some(cluster_id.as_str()),
            "{} is in another cluster",
            n.name
        );
    }
    let bootstraps: usize = nodes
        .iter()
        .map(|n| n.log_text().matches("bootstrapping a new cluster").count())
        .sum();
    assert_eq!(bootstraps, 1, "exactly one node initializes the cluster");

    // 2. kill -9 the leader: the survivors elect a new one.
    let li = nodes
        .iter()
        .position(|n| n.node_id == leader)
        .expect("the leader is one of ours");
    let applied_before = nodes[li].cluster().unwrap()["applied"]["index"]
        .as_u64()
        .unwrap();
    let killed_at = Instant::now();
    nodes[li].kill();
    let survivors: Vec<&NodeProc> = nodes
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != li)
        .map(|(_, n)| n)
        .collect();
    let new_leader = wait_for(30, "a new leader on both survivors", || {
        let a = leader_of(survivors[0])?;
        (a != leader && leader_of(survivors[1]).as_deref() == Some(a.as_str())).then_some(a)
    });
    println!(
        "new leader visible on both survivors {:.0} ms after kill -9",
        killed_at.elapsed().as_secs_f64() * 1e3
    );

    // Restart it with the same data dir: it rejoins as a follower with its old log.
    let log_before_restart = nodes[li].log_text().len();
    nodes[li].restart_now();
    let v = wait_for(30, "the restarted node to answer", || nodes[li].cluster());
    assert_eq!(
        v["cluster_id"].as_str(),
        Some(cluster_id.as_str()),
        "a restarted node keeps its cluster"
    );
    assert!(
        v["applied"]["index"].as_u64().unwrap() >= applied_before,
        "it reopened its log: {v}"
    );
    let agreed = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    assert_eq!(
        agreed, new_leader,
        "the restarted node did not disturb the new leader"
    );
    let v = nodes[li].cluster().unwrap();
    assert_eq!(v["this"]["state"].as_str(), Some("follower"));
    // The logs agree: every node reaches the same applied position and state hash.
    wait_for(30, "the same applied state on every node", || {
        let views: Vec<_> = nodes
            .iter()
            .map(|n| n.cluster())
            .collect::<Option<Vec<_>>>()?;
        let first = (&views[0]["applied"], &views[0]["state_hash"]);
        views
            .iter()
            .all(|v| (&v["applied"], &v["state_hash"]) == first)
            .then_some(())
    });
    assert_eq!(
        nodes[li].log_text()[log_before_restart..]
            .matches("bootstrapping a new cluster")
            .count(),
        0,
        "a restarted node must never initialize again"
    );
}

#[test]
fn a_fourth_node_with_one_peer_joins_as_learner_and_is_promoted() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let mut nodes = start_cluster(dir.path(), 3, &["--expect", "3"]);
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let fourth = NodeProc::start(dir.path(), "n4", &["--peer".into(), nodes[1].peer_addr()]);
    nodes.push(fourth);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 4, 60);
    let leader_log = nodes
        .iter()
        .find(|n| n.node_id == leader)
        .unwrap()
        .log_text();
    assert!(
        leader_log.contains("added a learner"),
        "the leader added it as a learner first:\n{leader_log}"
    );
    assert!(
        leader_log.contains("promoting a learner to voter"),
        "then promoted it:\n{leader_log}"
    );
    let v = nodes[3].cluster().unwrap();
    assert_eq!(v["cluster_id"], nodes[0].cluster().unwrap()["cluster_id"]);

    // Every node serves the replicated job table: empty, and a clear 404 for an unknown job.
    for n in &nodes {
        let (status, list) = http_get(&n.http, "/api/v1/jobs").expect("the node answers");
        assert_eq!((status, list), (200, serde_json::json!([])), "{}", n.name);
        let (status, body) = http_get(&n.http, "/api/v1/jobs/j-nope").expect("the node answers");
        assert_eq!(status, 404);
        assert_eq!(body["error"], "no job \"j-nope\"");
    }
}

#[test]
fn a_node_of_another_cluster_is_refused_and_changes_nothing() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let a_dir = dir.path().join("a");
    let b_dir = dir.path().join("b");
    let mut a = start_cluster(&a_dir, 3, &["--expect", "3"]);
    let b = start_cluster(&b_dir, 3, &["--expect", "3"]);
    let a_leader = wait_agreed(&a.iter().collect::<Vec<_>>(), 3, 60);
    let b_leader = wait_agreed(&b.iter().collect::<Vec<_>>(), 3, 60);
    let a_view = a[0].cluster().unwrap();
    let b_view = b[0].cluster().unwrap();
    assert_ne!(a_view["cluster_id"], b_view["cluster_id"]);

    // Restart a member of A with B's first node as an extra --peer.
    a[2].kill();
    a[2].args.push("--peer".into());
    a[2].args.push(b[0].peer_addr());
    a[2].restart_now();
    let b_log = || b.iter().map(|n| n.log_text()).collect::<String>();
    wait_for(30, "B to refuse A's node", || {
        b_log().contains("refusing peer").then_some(())
    });
    wait_agreed(&a.iter().collect::<Vec<_>>(), 3, 60);
    // Neither cluster changed: same ids, same voters, same leaders.
    assert_eq!(wait_agreed(&b.iter().collect::<Vec<_>>(), 3, 30), b_leader);
    let a_now = a[0].cluster().unwrap();
    let b_now = b[0].cluster().unwrap();
    assert_eq!(a_now["cluster_id"], a_view["cluster_id"]);
    assert_eq!(b_now["cluster_id"], b_view["cluster_id"]);
    assert_eq!(members(&a_now, "voter"), members(&a_view, "voter"));
    assert_eq!(members(&b_now, "voter"), members(&b_view, "voter"));
    assert_eq!(
        leader_of(&a[0]).map(|l| l == a_leader || members(&a_now, "voter").contains(&l)),
        Some(true)
    );
    // Logged once per peer by each node that met it, not on every message.
    let a2 = &a[2].peer_id;
    for n in &b {
        let log = n.log_text();
        let refusals = log
            .lines()
            .filter(|l| l.contains("refusing peer") && l.contains(a2.as_str()))
            .count();
        assert!(
            refusals <= 1,
            "{} logged the refusal {refusals} times:\n{log}",
            n.name
        );
    }
}

#[test]
fn bad_settings_end_the_node_with_one_clear_line() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
            .arg("node")
            .args([
                "--no-mdns",
                "--listen",
                "/ip4/127.0.0.1/tcp/0",
                "--http",
                "127.0.0.1:0",
            ])
            .args(args)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let data = |name: &str| dir.path().join(name).to_string_lossy().into_owned();

    let (code, err) = run(&["--data", &data("p"), "--peer", "not-a-multiaddr"]);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("--peer \"not-a-multiaddr\" is not a multiaddr"),
        "{err}"
    );

    std::fs::write(dir.path().join("file"), "").unwrap();
    let (code, err) = run(&["--data", &dir.path().join("file/sub").to_string_lossy()]);
    assert_eq!(code, Some(1));
    assert!(err.contains("cannot create the data dir"), "{err}");

    std::fs::create_dir_all(dir.path().join("corrupt")).unwrap();
    std::fs::write(
        dir.path().join("corrupt/node.redb"),
        b"definitely not a redb database file",
    )
    .unwrap();
    let (code, err) = run(&["--data", &data("corrupt")]);
    assert_eq!(code, Some(1));
    assert!(err.contains("node.redb"), "{err}");

    let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = busy.local_addr().unwrap().port();
    let (code, err) = run(&[
        "--data",
        &data("port"),
        "--listen",
        &format!("/ip4/127.0.0.1/tcp/{port}"),
    ]);
    assert_ne!(code, Some(0));
    assert!(
        err.contains(&port.to_string()),
        "the error names the port: {err}"
    );

    let (code, err2) = run(&["--data", &data("q"), "--election-ms", "400-300"]);
    assert_eq!(code, Some(1));
    assert!(err2.contains("--election-ms"), "{err2}");

    for e in [&err, &err2] {
        assert!(
            !e.contains("panicked") && e.trim().lines().count() <= 2,
            "one clear line, no backtrace: {e}"
        );
    }
}

#[test]
fn an_api_token_guards_every_route_and_is_required_beyond_loopback() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token-0123456789\n").unwrap();

    // Beyond loopback without a token: refused before anything is bound.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(["node", "--no-mdns", "--listen", "/ip4/127.0.0.1/tcp/0"])
        .args(["--http", "10.255.255.1:7070", "--data"])
        .arg(dir.path().join("open"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("without --api-token"), "{err}");
    assert!(!dir.path().join("open").exists(), "nothing was created");

    // With a token (on loopback too): every route answers 401 without it.
    let node = NodeProc::start(
        dir.path(),
        "n1",
        &[
            "--expect".into(),
            "1".into(),
            "--api-token".into(),
            token_file.to_string_lossy().into_owned(),
        ],
    );
    for path in [
        "/api/v1/cluster",
        "/api/v1/jobs",
        "/api/v1/jobs/j-1",
        "/nope",
    ] {
        let (status, body) = http_get(&node.http, path).unwrap();
        assert_eq!(status, 401, "{path}: {body}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
    }
    let status = |extra: &[&str], env: Option<&str>| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
        cmd.args(["status", "--json", "--node", &node.http])
            .args(extra)
            .env_remove("SHOAL_API_TOKEN")
            .env_remove("SHOAL_API_TOKEN_FILE");
        if let Some(t) = env {
            cmd.env("SHOAL_API_TOKEN", t);
        }
        let o = cmd.output().unwrap();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (ok, _, err) = status(&[], None);
    assert!(!ok && err.contains("401"), "no token: {err}");
    let (ok, _, err) = status(&[], Some("wrong-token-0123456789"));
    assert!(!ok && err.contains("401"), "a wrong token: {err}");
    let (ok, out, err) = status(&["--api-token", &token_file.to_string_lossy()], None);
    assert!(ok && out.contains("\"cluster_id\""), "--api-token: {err}");
    let (ok, out, err) = status(&[], Some("s3cret-token-0123456789"));
    assert!(
        ok && out.contains("\"cluster_id\""),
        "SHOAL_API_TOKEN: {err}"
    );
}

/// The writing end of a pipe whose reading end is already closed.
fn pipe_without_reader() -> std::process::Stdio {
    use std::os::fd::{FromRawFd, OwnedFd};
    let mut fds = [0i32; 2];
    // SAFETY: `fds` has room for the two descriptors pipe(2) writes.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    std::process::Stdio::from(write)
}

/// Ended quietly: no panic on stderr, and either exit 0 or SIGPIPE's default action.
fn assert_quiet_end(what: &str, status: std::process::ExitStatus, stderr: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert!(
        !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
        "{what}: {stderr}"
    );
    assert!(
        status.success() || status.signal() == Some(libc::SIGPIPE),
        "{what} ended with {status}: {stderr}"
    );
}

#[test]
fn printing_commands_stop_quietly_when_their_reader_goes_away() {
    use std::io::{BufRead, Read};
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let n = NodeProc::start(dir.path(), "n1", &["--expect".into(), "1".into()]);
    wait_agreed(&[&n], 1, 30);
    let url = format!("http://{}", n.http);
    // Output larger than a pipe's buffer, so `shoal output` must write after a reader left.
    let input = dir.path().join("words.txt");
    let words: String = (0..30_000).map(|i| format!("word{i} w\n")).collect();
    std::fs::write(&input, words).unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args([
            "submit",
            "--node",
            &url,
            "--app",
            "wordcount",
            "-R",
            "2",
            "--wait",
            "--input",
        ])
        .arg(&input)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();

    // `shoal output JOB` without --dir: the part files, in order, on stdout.
    let out_dir = dir.path().join("out");
    let shoal = || std::process::Command::new(env!("CARGO_BIN_EXE_shoal"));
    let o = shoal()
        .args(["output", "--node", &url, &id, "--dir"])
        .arg(&out_dir)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = shoal()
        .args(["output", "--node", &url, &id])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let parts: Vec<u8> = (0..2)
        .flat_map(|p| std::fs::read(out_dir.join(format!("part-{p:05}"))).unwrap())
        .collect();
    assert!(parts.len() > 256 << 10, "output larger than a pipe holds");
    assert!(o.stdout == parts, "stdout holds the part files in order");

    // `shoal status --watch | head -5`.
    let mut watch = shoal()
        .args(["status", "--watch", "--node", &url])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(watch.stdout.take().unwrap()).lines();
    for _ in 0..5 {
        lines.next().expect("a line").unwrap();
    }
    drop(lines);
    let status = wait_for(20, "status --watch to stop once its reader left", || {
        watch.try_wait().unwrap()
    });
    let mut stderr = String::new();
    watch
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    assert_quiet_end("status --watch | head -5", status, &stderr);

    // Every other command that prints, into a pipe nobody reads.
    for args in [
        vec!["status"],
        vec!["status", "--json"],
        vec!["status", &id],
        vec!["jobs"],
        vec!["jobs", "--json"],
        vec!["output", &id],
    ] {
        let o = shoal()
            .args(&args)
            .args(["--node", &url])
            .stdout(pipe_without_reader())
            .output()
            .unwrap();
        assert_quiet_end(
            &args.join(" "),
            o.status,
            &String::from_utf8_lossy(&o.stderr),
        );
    }
}
