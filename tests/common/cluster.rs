//! Real `shoal node` processes on 127.0.0.1 (port 0, mDNS off) for end-to-end tests.
//! Tests wait on events — the ready file, the HTTP API answering what they expect — with
//! deadlines, never on fixed sleeps.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde_json::Value;

/// End-to-end cluster tests run one at a time (they share two cores).
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|p| p.into_inner())
}

/// A `shoal node` process.
pub struct NodeProc {
    /// Short name for messages.
    pub name: String,
    /// Its data dir (kept across restarts).
    pub data: PathBuf,
    /// Its stderr log.
    pub log: PathBuf,
    /// Arguments it was started with (besides the per-start ones).
    pub args: Vec<String>,
    /// The running process.
    pub child: Option<Child>,
    /// Its HTTP address (from the ready file).
    pub http: String,
    /// Its PeerId.
    pub peer_id: String,
    /// Its listen multiaddrs.
    pub addrs: Vec<String>,
    /// Its node id.
    pub node_id: String,
    /// The network namespace it runs in (None: this host's loopback, mDNS off).
    pub ns: Option<String>,
    /// Where the process runs and the `--data` it is given, when it runs as a user on one
    /// machine would start it: in a working directory of its own, with a relative `--data`
    /// or none at all (the default, `./shoal-data`). None: `--data` is the absolute `data`.
    pub relative: Option<(PathBuf, Option<String>)>,
}

impl NodeProc {
    /// Start a node in `dir/name` with extra args; returns once its ready file exists.
    pub fn start(dir: &Path, name: &str, args: &[String]) -> NodeProc {
        Self::start_in(None, dir, name, args)
    }

    /// Start a node inside network namespace `ns` (when given) with only `args` besides its
    /// data dir and ready file: the product's defaults (all interfaces, mDNS on) unless
    /// `args` say otherwise.
    pub fn start_in(ns: Option<&str>, dir: &Path, name: &str, args: &[String]) -> NodeProc {
        Self::launch(ns, dir, name, args, None)
    }

    /// Start a node whose working directory is `dir/name`, with `--data data_arg` (a
    /// relative path) or, for `None`, no `--data` at all.
    pub fn start_relative(
        dir: &Path,
        name: &str,
        data_arg: Option<&str>,
        args: &[String],
    ) -> NodeProc {
        let cwd = dir.join(name);
        std::fs::create_dir_all(&cwd).unwrap();
        Self::launch(
            None,
            dir,
            name,
            args,
            Some((cwd, data_arg.map(String::from))),
        )
    }

    fn launch(
        ns: Option<&str>,
        dir: &Path,
        name: &str,
        args: &[String],
        relative: Option<(PathBuf, Option<String>)>,
    ) -> NodeProc {
        let data = match &relative {
            Some((cwd, arg)) => cwd.join(arg.as_deref().unwrap_or("shoal-data")),
            None => dir.join(name),
        };
        let mut n = NodeProc {
            ns: ns.map(String::from),
            name: name.into(),
            data,
            log: dir.join(format!("{name}.log")),
            args: args.to_vec(),
            child: None,
            http: String::new(),
            peer_id: String::new(),
            addrs: vec![],
            node_id: String::new(),
            relative,
        };
        n.restart();
        n
    }

    /// (Re)start the process with the same data dir (and, after the first start, the same
    /// p2p port, as a real node with a fixed port would).
    pub fn restart(&mut self) {
        assert!(self.child.is_none(), "{} is running", self.name);
        let listen = self
            .addrs
            .first()
            .cloned()
            .unwrap_or_else(|| "/ip4/127.0.0.1/tcp/0".into());
        let ready = match &self.relative {
            Some((cwd, _)) => cwd.with_extension("ready"),
            None => self.data.with_extension("ready"),
        };
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let mut cmd = self.command();
        cmd.arg("node");
        match &self.relative {
            Some((cwd, data_arg)) => {
                cmd.current_dir(cwd);
                if let Some(a) = data_arg {
                    cmd.args(["--data", a]);
                }
            }
            None => {
                cmd.arg("--data").arg(&self.data);
            }
        }
        if self.ns.is_none() {
            cmd.args(["--listen", &listen, "--http", "127.0.0.1:0", "--no-mdns"]);
        }
        let child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.args)
            .env("SHOAL_LOG", "info,libp2p=warn,openraft=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("shoal node starts");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        let text = loop {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                break t;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "{} exited ({status}) before it was ready:\n{}\nholders: {}",
                    self.name,
                    self.log_text(),
                    holders_of(&self.data.join("LOCK"))
                );
            }
            assert!(
                Instant::now() < deadline,
                "{} not ready in 30 s:\n{}",
                self.name,
                self.log_text()
            );
            std::thread::park_timeout(Duration::from_millis(20));
        };
        let v: Value = serde_json::from_str(&text).unwrap();
        self.http = v["http"].as_str().unwrap().into();
        self.peer_id = v["peer_id"].as_str().unwrap().into();
        self.node_id = v["node_id"].as_str().unwrap().into();
        self.addrs = v["addrs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_string())
            .collect();
    }

    /// The `shoal` binary, run where this node runs (inside its namespace, if any).
    pub fn command(&self) -> Command {
        match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_shoal")]);
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_shoal")),
        }
    }

    /// GET `path` from this node's API (from inside its namespace, if any).
    pub fn get(&self, path: &str) -> Option<(u16, Value)> {
        match &self.ns {
            Some(ns) => crate::common::netns::in_ns(ns, || http_get(&self.http, path)),
            None => http_get(&self.http, path),
        }
    }

    /// A multiaddr to give other nodes as `--peer`.
    pub fn peer_addr(&self) -> String {
        format!("{}/p2p/{}", self.addrs[0], self.peer_id)
    }

    /// `kill -9` the process.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET /api/v1/cluster from this node.
    pub fn cluster(&self) -> Option<Value> {
        self.get("/api/v1/cluster").map(|(_, v)| v)
    }
}

impl Drop for NodeProc {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The product's plain HTTP GET (status and JSON), as `shoal demo` and the benches use it.
#[allow(unused_imports)] // not every test binary that includes this module calls both
pub use shoal::demo::local_cluster::{get as http_get, get_json as http_get_json};

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
