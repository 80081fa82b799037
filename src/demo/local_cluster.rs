//! Clusters of `shoal node` child processes, for `shoal demo`, the benches and the
//! end-to-end tests (the one harness): on loopback (127.0.0.1, port 0, mDNS off, each node
//! given the earlier ones as `--peer`s), or inside network namespaces with the product's
//! defaults. Waits are on events (ready files, the HTTP API), with deadlines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// One `shoal node` process: on this machine's loopback (127.0.0.1, port 0, mDNS off), or
/// inside a network namespace with the product's defaults. The one harness of the demo, the
/// benches and the end-to-end tests.
pub struct LocalNode {
    /// Short name for messages.
    pub name: String,
    /// Data dir (kept across restarts).
    pub data: PathBuf,
    /// Log file (stderr).
    pub log: PathBuf,
    /// Arguments it is started with (besides the per-start ones).
    pub args: Vec<String>,
    /// The running process.
    pub child: Option<Child>,
    /// HTTP address (from the ready file).
    pub http: String,
    /// Its PeerId.
    pub peer_id: String,
    /// Its listen multiaddrs.
    pub addrs: Vec<String>,
    /// Raft node id.
    pub node_id: String,
    /// The network namespace it runs in (None: this host's loopback, mDNS off).
    pub ns: Option<String>,
    /// Where the process runs and the `--data` it is given, when it runs as a user on one
    /// machine would start it: in a working directory of its own, with a relative `--data`
    /// or none at all (the default, `./shoal-data`). None: `--data` is the absolute `data`.
    pub relative: Option<(PathBuf, Option<String>)>,
    /// The `shoal` binary.
    pub program: PathBuf,
    /// The uid and gid it runs as (None: this process's).
    pub user: Option<(u32, u32)>,
}

/// MiB each node of a local cluster keeps free on its data dir's disk (`--min-free-mb`)
/// unless `SHOAL_MIN_FREE_MB` or its args say otherwise.
pub const LOCAL_MIN_FREE_MB: &str = "64";

/// How to start a [`LocalNode`].
#[derive(Debug, Clone, Default)]
pub struct Launch {
    /// The `shoal` binary (default: this process's executable).
    pub program: Option<PathBuf>,
    /// A network namespace to run in.
    pub ns: Option<String>,
    /// A working directory of its own and its relative `--data` (None: the default).
    pub relative: Option<(PathBuf, Option<String>)>,
    /// Another uid and gid to run as (this process must be root).
    pub user: Option<(u32, u32)>,
}

/// The processes of a local cluster; killed on drop.
pub struct LocalCluster {
    /// The nodes, in start order.
    pub nodes: Vec<LocalNode>,
}

/// GET a JSON document over plain HTTP/1.1; None when the node does not answer.
pub fn get_json(addr: &str, path: &str) -> Option<Value> {
    get(addr, path).map(|(_, v)| v)
}

/// GET over plain HTTP/1.1: the status code and the JSON body.
pub fn get(addr: &str, path: &str) -> Option<(u16, Value)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).ok()?;
    let (head, body) = resp.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// Poll `f` every 10 ms until it answers, or fail after `limit`.
pub fn wait_for<T>(
    limit: Duration,
    what: &str,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {limit:?} waiting for {what}");
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

impl LocalNode {
    /// Start node `name` under `dir` with `args` as `how` says; returns once its ready file
    /// is written.
    pub fn launch(dir: &Path, name: &str, args: &[String], how: Launch) -> anyhow::Result<Self> {
        let data = match &how.relative {
            Some((cwd, arg)) => cwd.join(arg.as_deref().unwrap_or("shoal-data")),
            None => dir.join(name),
        };
        let program = match how.program {
            Some(p) => p,
            None => std::env::current_exe()?,
        };
        let mut n = LocalNode {
            name: name.into(),
            data,
            log: dir.join(format!("{name}.log")),
            args: args.to_vec(),
            child: None,
            http: String::new(),
            peer_id: String::new(),
            addrs: Vec::new(),
            node_id: String::new(),
            ns: how.ns,
            relative: how.relative,
            program,
            user: how.user,
        };
        n.restart()?;
        Ok(n)
    }

    /// The `shoal` binary, run where this node runs (inside its namespace, if any).
    pub fn command(&self) -> Command {
        let mut c = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&self.program);
                c
            }
            None => Command::new(&self.program),
        };
        if let Some((uid, gid)) = self.user {
            use std::os::unix::process::CommandExt;
            c.uid(uid).gid(gid);
        }
        c
    }

    /// (Re)start the process with the same data dir (and, after the first start, the same
    /// p2p port, as a real node with a fixed port would). Fails with the node's log when it
    /// exits before it is ready.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        if self.child.is_some() {
            bail!("{} is running", self.name);
        }
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
            .with_context(|| format!("opening {}", self.log.display()))?;
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
        // `--local` picks its own loopback ports.
        if self.ns.is_none() && !self.args.iter().any(|a| a == "--local") {
            cmd.args(["--listen", &listen, "--http", "127.0.0.1:0", "--no-mdns"]);
        }
        let child = cmd
            .arg("--ready-file")
            .arg(&ready)
            .args(&self.args)
            // A cluster of small jobs on one disk keeps 64 MiB free, not a real node's
            // 1 GiB: on a nearly full disk a demo or test still runs (and the full-disk tests
            // set their own `--min-free-mb`, which overrides this).
            .env(
                "SHOAL_MIN_FREE_MB",
                std::env::var("SHOAL_MIN_FREE_MB").unwrap_or_else(|_| LOCAL_MIN_FREE_MB.into()),
            )
            .env(
                "SHOAL_LOG",
                std::env::var("SHOAL_LOG").unwrap_or_else(|_| {
                    "info,libp2p=warn,openraft=warn,openraft::core::heartbeat=error,openraft::replication=error,openraft::engine::handler::replication_handler=error".into()
                }),
            )
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting shoal node")?;
        self.child = Some(child);
        let text = wait_for(Duration::from_secs(30), "a node's ready file", || {
            if let Ok(t) = std::fs::read_to_string(&ready) {
                return Some(Ok(t));
            }
            match self.child.as_mut().map(|c| c.try_wait()) {
                Some(Ok(Some(status))) => Some(Err(status)),
                _ => None,
            }
        })
        .with_context(|| format!("{}:\n{}", self.name, self.log_text()))?;
        let text = match text {
            Ok(t) => t,
            Err(status) => {
                self.child = None;
                bail!(
                    "{} exited ({status}) before it was ready:\n{}",
                    self.name,
                    self.log_text()
                );
            }
        };
        let v: Value = serde_json::from_str(&text)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .with_context(|| format!("ready file lacks {k}"))
        };
        self.http = field("http")?;
        self.peer_id = field("peer_id")?;
        self.node_id = field("node_id")?;
        self.addrs = v["addrs"]
            .as_array()
            .context("ready file lacks addrs")?
            .iter()
            .filter_map(|a| a.as_str().map(String::from))
            .collect();
        if self.addrs.is_empty() {
            bail!("ready file lacks addrs");
        }
        Ok(())
    }

    /// A multiaddr to give other nodes as `--peer`.
    pub fn peer_addr(&self) -> String {
        format!(
            "{}/p2p/{}",
            self.addrs.first().map_or("", String::as_str),
            self.peer_id
        )
    }

    /// Its log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// GET `path` from this node's API (from inside its namespace, if any).
    pub fn get(&self, path: &str) -> Option<(u16, Value)> {
        match &self.ns {
            Some(ns) => in_netns(ns, || get(&self.http, path)).ok().flatten(),
            None => get(&self.http, path),
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stop with SIGTERM (a clean shutdown), waiting for the exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child process.
            unsafe {
                libc::kill(c.id() as i32, libc::SIGTERM);
            }
            let _ = c.wait();
        }
    }

    /// Whether the process is running.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// This node's view of the cluster.
    pub fn cluster(&self) -> Option<Value> {
        self.get("/api/v1/cluster").map(|(_, v)| v)
    }

    /// The leader's id as this node sees it.
    pub fn leader(&self) -> Option<String> {
        self.cluster()?["leader"]["id"].as_str().map(String::from)
    }
}

impl Drop for LocalNode {
    fn drop(&mut self) {
        self.kill();
    }
}

impl LocalCluster {
    /// Start `n` nodes under `dir` (each with `extra` args) that form one cluster.
    pub fn start(dir: &Path, n: usize, extra: &[&str]) -> anyhow::Result<LocalCluster> {
        std::fs::create_dir_all(dir)?;
        let mut nodes: Vec<LocalNode> = Vec::new();
        for i in 0..n {
            let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
            args.extend(["--expect".into(), n.to_string()]);
            for p in &nodes {
                args.extend(["--peer".into(), p.peer_addr()]);
            }
            let name = format!("node{}", i + 1);
            nodes.push(LocalNode::launch(dir, &name, &args, Launch::default())?);
        }
        Ok(LocalCluster { nodes })
    }

    /// Wait until every running node names the same leader and `voters` voters; the leader.
    pub fn wait_agreed(&self, voters: usize, limit: Duration) -> anyhow::Result<String> {
        wait_for(limit, &format!("one leader and {voters} voters"), || {
            let views: Vec<Value> = self
                .nodes
                .iter()
                .filter(|n| n.is_running())
                .map(|n| n.cluster())
                .collect::<Option<_>>()?;
            let leader = views.first()?["leader"]["id"].as_str()?.to_string();
            let count = |v: &Value| {
                v["nodes"].as_array().map_or(0, |ns| {
                    ns.iter().filter(|n| n["membership"] == "voter").count()
                })
            };
            views
                .iter()
                .all(|v| v["leader"]["id"].as_str() == Some(leader.as_str()) && count(v) == voters)
                .then_some(leader)
        })
    }

    /// The index of the node with this id.
    pub fn index_of(&self, node_id: &str) -> Option<usize> {
        self.nodes.iter().position(|n| n.node_id == node_id)
    }
}

/// Run `f` on a thread inside network namespace `ns` (`ip netns add NAME`): what it
/// connects to is that namespace's network.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> anyhow::Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(format!("/var/run/netns/{ns}"))
                .with_context(|| format!("no network namespace {ns}"))?;
            use std::os::fd::AsRawFd;
            // SAFETY: setns on a descriptor we own; it changes only this thread's namespace.
            let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
            if rc != 0 {
                bail!("setns {ns}: {}", std::io::Error::last_os_error());
            }
            Ok(f())
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in namespace {ns} panicked"))?
    })
}
