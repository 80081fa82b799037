//! Real `shoal node` processes on 127.0.0.1 (port 0, mDNS off) for end-to-end tests.
//! Tests wait on events — the ready file, the HTTP API answering what they expect — with
//! deadlines, never on fixed sleeps.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use serde_json::Value;

/// End-to-end cluster tests run one at a time (they share two cores).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

use shoal::demo::local_cluster::Launch;
/// A `shoal node` process: the product's harness (`shoal::demo::local_cluster`), the same
/// one `shoal demo` and the benches use.
pub use shoal::demo::local_cluster::LocalNode as NodeProc;

/// How the tests start and restart nodes: the test's `shoal` binary, and a failure to start
/// is the test's failure (with the node's log).
pub trait TestNode: Sized {
    /// Start a node in `dir/name` with extra args; returns once its ready file exists.
    fn start(dir: &Path, name: &str, args: &[String]) -> Self {
        Self::start_in(None, dir, name, args)
    }
    /// Start a node inside network namespace `ns` (when given) with only `args` besides its
    /// data dir and ready file: the product's defaults (all interfaces, mDNS on) unless
    /// `args` say otherwise.
    fn start_in(ns: Option<&str>, dir: &Path, name: &str, args: &[String]) -> Self;
    /// Start a node whose working directory is `dir/name`, with `--data data_arg` (a
    /// relative path) or, for `None`, no `--data` at all.
    fn start_relative(dir: &Path, name: &str, data_arg: Option<&str>, args: &[String]) -> Self;
    /// Start it again (same data dir and port).
    fn restart_now(&mut self);
}

fn launch(dir: &Path, name: &str, args: &[String], how: Launch) -> NodeProc {
    let how = Launch {
        program: Some(PathBuf::from(env!("CARGO_BIN_EXE_shoal"))),
        ..how
    };
    NodeProc::launch(dir, name, args, how).unwrap_or_else(|e| {
        panic!(
            "{e:#}\nholders of its lock: {}",
            holders_of(&dir.join(name).join("LOCK"))
        )
    })
}

impl TestNode for NodeProc {
    fn start_in(ns: Option<&str>, dir: &Path, name: &str, args: &[String]) -> Self {
        let how = Launch {
            ns: ns.map(String::from),
            ..Launch::default()
        };
        launch(dir, name, args, how)
    }

    fn start_relative(dir: &Path, name: &str, data_arg: Option<&str>, args: &[String]) -> Self {
        let cwd = dir.join(name);
        std::fs::create_dir_all(&cwd).unwrap();
        let how = Launch {
            relative: Some((cwd, data_arg.map(String::from))),
            ..Launch::default()
        };
        launch(dir, name, args, how)
    }

    fn restart_now(&mut self) {
        if let Err(e) = self.restart() {
            panic!(
                "{e:#}\nholders of its lock: {}",
                holders_of(&self.data.join("LOCK"))
            );
        }
    }
}

/// The product's plain HTTP GET (status and JSON), as `shoal demo` and the benches use it.
#[allow(unused_imports)] // not every test binary that includes this module calls both
pub use shoal::demo::local_cluster::{get as http_get, get_json as http_get_json};

/// Job `id` as the node at `http` shows it (`GET /api/v1/jobs/ID`); None when it does not
/// answer or does not know the job yet. An answer that is not a job view fails the test.
pub fn job_at(http: &str, id: &str) -> Option<shoal_node::http::jobs_view::JobView> {
    let (status, v) = http_get(http, &format!("/api/v1/jobs/{id}"))?;
    (status == 200).then(|| serde_json::from_value(v).expect("a job view"))
}

/// Poll `f` until it returns Some, or panic with `what` after `secs`.
pub fn wait_for<T>(secs: u64, what: &str, f: impl FnMut() -> Option<T>) -> T {
    shoal::demo::local_cluster::wait_for(Duration::from_secs(secs), what, f)
        .unwrap_or_else(|e| panic!("{e}"))
}

/// Start `n` nodes that find each other through `--peer`s, each with `extra` args.
pub fn start_cluster(dir: &Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    std::fs::create_dir_all(dir).unwrap();
    let mut nodes: Vec<NodeProc> = Vec::new();
    for i in 0..n {
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        for p in &nodes {
            args.push("--peer".into());
            args.push(p.peer_addr());
        }
        nodes.push(NodeProc::start(dir, &format!("n{}", i + 1), &args));
    }
    nodes
}

/// Start `n` nodes as machines booting together do: the first, then all the others at once,
/// each given the first as `--peer` (and `extra` args); in start order.
#[allow(dead_code)] // not every test binary that includes this module starts nodes so
pub fn start_together(dir: &Path, n: usize, extra: &[&str]) -> Vec<NodeProc> {
    std::fs::create_dir_all(dir).unwrap();
    let args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    let first = NodeProc::start(dir, "n1", &args);
    let mut args = args;
    args.extend(["--peer".into(), first.peer_addr()]);
    let rest: Vec<NodeProc> = std::thread::scope(|s| {
        let started: Vec<_> = (2..=n)
            .map(|i| {
                let args = &args;
                s.spawn(move || NodeProc::start(dir, &format!("n{i}"), args))
            })
            .collect();
        started
            .into_iter()
            .map(|t| t.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    std::iter::once(first).chain(rest).collect()
}

/// Wait until every node of `nodes` is a member of one and the same cluster of them all;
/// fails naming the clusters the nodes are in.
#[allow(dead_code)]
pub fn wait_one_cluster(nodes: &[NodeProc], secs: u64) {
    // Each node's cluster id, from one look at every node's view.
    let ids = || -> Vec<Option<String>> {
        nodes
            .iter()
            .map(|n| {
                n.cluster()
                    .and_then(|v| v["cluster_id"].as_str().map(String::from))
            })
            .collect()
    };
    let formed =
        shoal::demo::local_cluster::wait_for(Duration::from_secs(secs), "one cluster", || {
            let ids = ids();
            let v = nodes[0].cluster()?;
            let all = ["voter", "learner", "worker"]
                .iter()
                .map(|m| members(&v, m).len())
                .sum::<usize>();
            (ids[0].is_some() && ids.iter().all(|i| *i == ids[0]) && all == nodes.len())
                .then_some(())
        });
    if formed.is_err() {
        let ids = ids();
        let mut count: std::collections::BTreeMap<String, usize> = Default::default();
        for id in &ids {
            *count
                .entry(id.clone().unwrap_or_else(|| "none".into()))
                .or_default() += 1;
        }
        // The nodes the first node's view leaves out, and their last words too.
        let listed: Vec<String> = nodes[0]
            .cluster()
            .map(|v| {
                ["voter", "learner", "worker"]
                    .iter()
                    .flat_map(|m| members(&v, m))
                    .collect()
            })
            .unwrap_or_default();
        let last_words: Vec<String> = nodes
            .iter()
            .zip(&ids)
            .filter(|(n, id)| id.is_none() || !listed.contains(&n.node_id))
            .map(|(n, _)| {
                let log = n.log_text();
                let tail: Vec<&str> = log.lines().rev().take(8).collect();
                format!("{} ({}):\n{}", n.name, n.node_id, tail.join("\n"))
            })
            .collect();
        panic!(
            "{} nodes did not form one cluster in {secs} s; nodes per cluster id: {count:?}\n{}",
            nodes.len(),
            last_words.join("\n")
        );
    }
}

/// The leader's node id as `node` sees it.
pub fn leader_of(node: &NodeProc) -> Option<String> {
    node.cluster()?
        .get("leader")?
        .get("id")?
        .as_str()
        .map(String::from)
}

/// Node ids with the given membership, as `v` (a cluster view) lists them.
pub fn members(v: &Value, membership: &str) -> Vec<String> {
    let mut ids: Vec<String> = v["nodes"]
        .as_array()
        .map(|ns| {
            ns.iter()
                .filter(|n| n["membership"].as_str() == Some(membership))
                .filter_map(|n| n["id"].as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    ids.sort();
    ids
}

/// Wait until every node in `nodes` names the same leader and `voters` voters; the leader.
pub fn wait_agreed(nodes: &[&NodeProc], voters: usize, secs: u64) -> String {
    wait_for(
        secs,
        &format!("one leader and {voters} voters on every node"),
        || {
            let views: Vec<Value> = nodes.iter().map(|n| n.cluster()).collect::<Option<_>>()?;
            let leader = views[0]["leader"]["id"].as_str()?.to_string();
            let voter_ids = members(&views[0], "voter");
            let all_agree = views.iter().all(|v| {
                v["leader"]["id"].as_str() == Some(leader.as_str())
                    && members(v, "voter") == voter_ids
            });
            (all_agree && voter_ids.len() == voters).then_some(leader)
        },
    )
}

/// Processes holding `path` open (pid, state, command line).
fn holders_of(path: &Path) -> String {
    let mut out = Vec::new();
    for p in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let fds = p.path().join("fd");
        for fd in std::fs::read_dir(&fds).into_iter().flatten().flatten() {
            if std::fs::read_link(fd.path()).ok().as_deref() == Some(path) {
                let stat = std::fs::read_to_string(p.path().join("stat")).unwrap_or_default();
                let cmd = std::fs::read_to_string(p.path().join("cmdline")).unwrap_or_default();
                out.push(format!("{stat} | {}", cmd.replace('\0', " ")));
            }
        }
    }
    out.join("\n")
}
