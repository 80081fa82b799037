//! A cluster of `shoal node` child processes on loopback, for `shoal demo` and
//! `shoal bench failover`: 127.0.0.1 only, port 0, mDNS off, each node given the earlier
//! ones as `--peer`s. Waits are on events (ready files, the HTTP API), with deadlines.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use serde_json::Value;

/// One node process.
pub struct LocalNode {
    /// Data dir.
    pub data: PathBuf,
    /// Log file (stderr).
    pub log: PathBuf,
    args: Vec<String>,
    child: Option<Child>,
    /// HTTP address.
    pub http: String,
    /// `--peer` address of this node.
    pub peer_addr: String,
    /// Raft node id.
    pub node_id: String,
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
    fn start(dir: &Path, name: &str, args: Vec<String>) -> anyhow::Result<LocalNode> {
        let mut n = LocalNode {
            data: dir.join(name),
            log: dir.join(format!("{name}.log")),
            args,
            child: None,
            http: String::new(),
            peer_addr: String::new(),
            node_id: String::new(),
        };
        n.restart()?;
        Ok(n)
    }

    /// Start the process again with the same data dir (and, after the first start, the same
    /// p2p port, as a real node with a fixed port would).
    pub fn restart(&mut self) -> anyhow::Result<()> {
        let ready = self.data.with_extension("ready");
        let listen = match self.peer_addr.split("/p2p/").next() {
            Some(addr) if !addr.is_empty() => addr.to_string(),
            _ => "/ip4/127.0.0.1/tcp/0".to_string(),
        };
        let _ = std::fs::remove_file(&ready);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)?;
        let child = Command::new(std::env::current_exe()?)
            .arg("node")
            .arg("--data")
            .arg(&self.data)
            .args([
                "--listen",
                &listen,
                "--http",
                "127.0.0.1:0",
                "--no-mdns",
                "--ready-file",
            ])
            .arg(&ready)
            .args(&self.args)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .context("starting shoal node")?;
        self.child = Some(child);
        let text = wait_for(Duration::from_secs(30), "a node's ready file", || {
            std::fs::read_to_string(&ready).ok()
        })?;
        let v: Value = serde_json::from_str(&text)?;
        let field = |k: &str| {
            v[k].as_str()
                .map(String::from)
                .with_context(|| format!("ready file lacks {k}"))
        };
        self.http = field("http")?;
        self.node_id = field("node_id")?;
        let addr = v["addrs"][0].as_str().context("ready file lacks addrs")?;
        self.peer_addr = format!("{addr}/p2p/{}", field("peer_id")?);
        Ok(())
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
        get_json(&self.http, "/api/v1/cluster")
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
                args.extend(["--peer".into(), p.peer_addr.clone()]);
            }
            nodes.push(LocalNode::start(dir, &format!("node{}", i + 1), args)?);
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
