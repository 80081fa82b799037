//! The simulated world: the nodes' durable state, the network between them and its faults,
//! the clock, the trace, and what the checker has seen.
//!
//! Every message between nodes goes through [`World::exchange`]: it is lost when its link is
//! cut (partition, one-way block), the sender or receiver is down, or the loss rate says so;
//! it may be duplicated; it waits a random delay each way (so messages reorder); and its
//! answer is dropped when the receiver crashed while handling it. A lost message is never
//! answered: the caller's timeout fires, as over TCP to a dead host.
//!
//! The invariant: nothing here reads a real clock or an unseeded random source, and every
//! collection decisions iterate over is ordered — so one seed gives one trace.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::partition::stable_hash;
use shoal_net::wire::{CtlRequest, CtlResponse, RaftRequest, RaftResponse};
use shoal_net::PeerId;
use tokio::time::Instant;

use crate::rng::{mix, Rng};

/// ms since the epoch at the start of every run (the commands' clock).
pub const EPOCH_MS: u64 = 1_700_000_000_000;

/// A node's stored objects (splits, map outputs, part files): kept across crashes.
pub type Blobs = Arc<Mutex<BTreeMap<String, Arc<Vec<u8>>>>>;

/// What the world needs of a node: to answer a message delivered to it.
pub trait Handle: Send + Sync + 'static {
    /// Answer `msg` from the peer with Raft id `from` (who sent it, as an authenticated
    /// transport would tell).
    fn handle(&self, from: u64, msg: Msg) -> impl Future<Output = Answer> + Send;
}

/// One machine of the simulation (its Raft id is its index + 1, see [`World::id`]).
pub struct Machine<N> {
    /// Its Raft log, vote and snapshot, on an in-memory redb: kept across crashes.
    pub store: shoal_raft::Store,
    /// Its objects: kept across crashes.
    pub blobs: Blobs,
    /// The running process, when up.
    pub live: Option<Arc<N>>,
    /// Bumped at every crash: an answer from an older incarnation is dropped.
    pub incarnation: u64,
    /// Crashed and never coming back (its disk is gone with it).
    pub killed: bool,
    /// A restart is under way.
    pub booting: bool,
}

/// The network's faults as they are now.
#[derive(Debug, Clone, Default)]
pub struct NetFaults {
    /// Side of each node while partitioned (`None`: no partition).
    pub sides: Option<Vec<u8>>,
    /// Directed links that drop everything (from, to).
    pub blocked: BTreeSet<(usize, usize)>,
    /// Chance a message is lost.
    pub loss: f64,
    /// Chance a request is delivered twice.
    pub dup: f64,
    /// Largest one-way delay, ms (at least 1).
    pub delay_ms: u64,
}

/// A message between nodes.
#[derive(Debug, Clone)]
pub enum Msg {
    /// A Raft RPC.
    Raft(RaftRequest),
    /// A control request (proposal, heartbeat).
    Ctl(CtlRequest),
    /// Read a stored object (the data protocol).
    Fetch(String),
    /// Store a copy of an object (replicating a part file).
    Push(String, Arc<Vec<u8>>),
}

/// An answer.
#[derive(Debug, Clone)]
pub enum Answer {
    /// To a Raft RPC.
    Raft(RaftResponse),
    /// To a control request.
    Ctl(CtlResponse),
    /// The object, or none.
    Fetched(Option<Arc<Vec<u8>>>),
    /// Stored.
    Pushed,
}

impl Msg {
    /// Its kind, a hash of its content, and its size in bytes as it would go on the wire.
    fn label(&self) -> (&'static str, u64, u64) {
        match self {
            Msg::Raft(r) => ("raft", stable_hash(&r.payload), r.payload.len() as u64),
            Msg::Ctl(c) => {
                let bytes = shoal_net::codec::encode(c);
                ("ctl", stable_hash(&bytes), bytes.len() as u64)
            }
            Msg::Fetch(k) => ("fetch", stable_hash(k.as_bytes()), k.len() as u64),
            Msg::Push(k, b) => (
                "push",
                stable_hash(k.as_bytes()) ^ b.len() as u64,
                (k.len() + b.len()) as u64,
            ),
        }
    }
}

impl Answer {
    /// Its size in bytes as it would go on the wire.
    fn size(&self) -> u64 {
        match self {
            Answer::Raft(RaftResponse::Ok(b)) => b.len() as u64,
            Answer::Raft(r @ (RaftResponse::Refused(_) | RaftResponse::Declined(_))) => {
                shoal_net::codec::encode(r).len() as u64
            }
            Answer::Ctl(c) => shoal_net::codec::encode(c).len() as u64,
            Answer::Fetched(b) => b.as_ref().map_or(0, |b| b.len() as u64),
            Answer::Pushed => 0,
        }
    }
}

/// An invariant that did not hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Which invariant (its function's name).
    pub invariant: &'static str,
    /// What was seen.
    pub detail: String,
    /// Simulated ms since the start.
    pub at_ms: u64,
}

/// A job whose submission a client saw acknowledged.
#[derive(Debug, Clone)]
pub struct Acked {
    /// Its log index.
    pub index: u64,
}

/// The trace: a running hash of every event and the last lines.
#[derive(Debug, Default)]
pub struct Trace {
    /// Hash of every line so far, in order.
    pub hash: u64,
    /// Lines so far.
    pub lines: u64,
    /// The last lines.
    pub tail: VecDeque<String>,
}

/// Counts for the report.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    /// Messages sent.
    pub messages: u64,
    /// Messages lost (cut links, loss, down nodes).
    pub dropped: u64,
    /// Requests delivered twice.
    pub duplicated: u64,
    /// Crashes (restarted later).
    pub crashes: u64,
    /// Nodes killed for good.
    pub kills: u64,
    /// Partitions and one-way blocks.
    pub partitions: u64,
    /// Commands proposed by managers.
    pub proposals: u64,
    /// Stored bytes flipped on a disk.
    pub rotted: u64,
    /// Corrupt copies a reader caught and passed over.
    pub corrupt_caught: u64,
    /// Messages each node sent or received, by index.
    pub node_messages: Vec<u64>,
    /// Bytes each node sent or received (requests and answers), by index.
    pub node_bytes: Vec<u64>,
    /// For every attempt started, simulated ms from the manager's assignment to its start
    /// on the assigned node (the entry committed, replicated and applied there).
    pub assigned_ms: Vec<u64>,
}

impl Stats {
    /// Count `bytes` between nodes `a` and `b` (indexes): a request (a message for each)
    /// or its answer.
    fn load(&mut self, a: usize, b: usize, bytes: u64, request: bool) {
        let n = a.max(b) + 1;
        if self.node_bytes.len() < n {
            self.node_bytes.resize(n, 0);
            self.node_messages.resize(n, 0);
        }
        for i in [a, b] {
            self.node_messages[i] += u64::from(request);
            self.node_bytes[i] += bytes;
        }
    }

    /// The busiest node (the leader, in a run without faults): its index, messages and
    /// bytes.
    pub fn busiest(&self) -> (usize, u64, u64) {
        (0..self.node_bytes.len())
            .max_by_key(|&i| (self.node_messages[i], self.node_bytes[i]))
            .map_or((0, 0, 0), |i| {
                (i, self.node_messages[i], self.node_bytes[i])
            })
    }
}

/// Everything the run shares; its nodes are `N`s.
pub struct World<N> {
    /// The seed.
    pub seed: u64,
    /// The one random source.
    pub rng: Mutex<Rng>,
    /// The machines, by index (Raft id = index + 1).
    pub machines: Vec<Mutex<Machine<N>>>,
    /// Each machine's peer id (what the membership records), by index.
    pub peers: Vec<PeerId>,
    /// The network's faults.
    pub net: Mutex<NetFaults>,
    /// The trace.
    pub trace: Mutex<Trace>,
    /// Counts.
    pub stats: Mutex<Stats>,
    /// Jobs acknowledged to a client, by id.
    pub acked: Mutex<BTreeMap<String, Acked>>,
    /// The expected part files of every job submitted, by id.
    pub expected: Mutex<BTreeMap<String, Vec<Vec<u8>>>>,
    /// The leader seen in each term.
    pub leaders: Mutex<BTreeMap<u64, u64>>,
    /// Invariant violations seen.
    pub violations: Mutex<Vec<Violation>>,
    /// When the run started.
    pub start: Instant,
    /// Lines of trace kept for the report.
    pub tail: usize,
    /// Answer every heartbeat with every heartbeat heard, as before protocol 1.2 (the
    /// scale benchmark's baseline), not only voters'.
    pub heartbeats_to_all: bool,
}

/// Lock, ignoring poisoning (a panicking task already failed the run).
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<N: Handle> World<N> {
    /// Simulated ms since the start.
    pub fn elapsed_ms(&self) -> u64 {
        self.start.elapsed().as_millis() as u64
    }

    /// The commands' clock: ms since the epoch.
    pub fn now_ms(&self) -> u64 {
        EPOCH_MS + self.elapsed_ms()
    }

    /// Draw from the run's random source.
    pub fn rng<T>(&self, f: impl FnOnce(&mut Rng) -> T) -> T {
        f(&mut lock(&self.rng))
    }

    /// Record a trace line.
    pub fn trace(&self, line: impl AsRef<str>) {
        let line = format!("{:>9} {}", self.elapsed_ms(), line.as_ref());
        let mut t = lock(&self.trace);
        t.hash = mix(t.hash ^ stable_hash(line.as_bytes()));
        t.lines += 1;
        if t.tail.len() >= self.tail {
            t.tail.pop_front();
        }
        t.tail.push_back(line);
    }

    /// Record a violation (and trace it).
    pub fn violate(&self, invariant: &'static str, detail: String) {
        if lock(&self.violations)
            .iter()
            .any(|v| v.invariant == invariant)
        {
            return;
        }
        self.trace(format!("VIOLATION {invariant}: {detail}"));
        lock(&self.violations).push(Violation {
            invariant,
            detail,
            at_ms: self.elapsed_ms(),
        });
    }

    /// The running process of node `i`, if up.
    pub fn live(&self, i: usize) -> Option<Arc<N>> {
        self.machines.get(i).and_then(|m| lock(m).live.clone())
    }

    /// Node `i`'s incarnation.
    pub fn incarnation(&self, i: usize) -> u64 {
        self.machines.get(i).map_or(0, |m| lock(m).incarnation)
    }

    /// The index of the machine with `peer`.
    pub fn index_of(&self, peer: &PeerId) -> Option<usize> {
        self.peers.iter().position(|p| p == peer)
    }

    /// The Raft id of machine `i`.
    pub fn id(i: usize) -> NodeId {
        i as NodeId + 1
    }

    /// The index of the machine with Raft id `id` (out of range for an unknown id).
    pub fn index(id: NodeId) -> usize {
        (id as usize).wrapping_sub(1)
    }

    fn link_open(&self, from: usize, to: usize) -> bool {
        let net = lock(&self.net);
        let same_side = net.sides.as_ref().is_none_or(|s| s.get(from) == s.get(to));
        same_side && !net.blocked.contains(&(from, to))
    }

    fn delay(&self) -> Duration {
        let max = lock(&self.net).delay_ms.max(1);
        Duration::from_millis(self.rng(|r| r.between(1, max)))
    }

    fn lost(&self) -> bool {
        let p = lock(&self.net).loss;
        self.rng(|r| r.chance(p))
    }

    /// Update the counts.
    pub fn count(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut lock(&self.stats));
    }

    /// Send `msg` from node `from` to node `to` and wait for the answer; `None` when it was
    /// lost, after `timeout`.
    pub async fn exchange(
        self: &Arc<Self>,
        from: usize,
        to: usize,
        msg: Msg,
        timeout: Duration,
    ) -> Option<Answer> {
        let (kind, hash, size) = msg.label();
        self.trace(format!("n{} > n{} {kind} {hash:016x}", from + 1, to + 1));
        self.count(|s| {
            s.messages += 1;
            s.load(from, to, size, true);
        });
        let dup = {
            let p = lock(&self.net).dup;
            self.rng(|r| r.chance(p))
        };
        if dup {
            self.count(|s| s.duplicated += 1);
            let (w, m) = (Arc::clone(self), msg.clone());
            tokio::spawn(async move {
                let _ = tokio::time::timeout(timeout, w.deliver(from, to, m)).await;
            });
        }
        match tokio::time::timeout(timeout, self.deliver(from, to, msg)).await {
            Ok(Some(a)) => {
                let size = a.size();
                self.count(|s| s.load(from, to, size, false));
                Some(a)
            }
            Ok(None) | Err(_) => {
                self.trace(format!("n{} > n{} {kind} lost", from + 1, to + 1));
                None
            }
        }
    }

    /// One delivery: the request's trip, the handling, the answer's trip. Never returns
    /// when the message or its answer is lost.
    async fn deliver(self: &Arc<Self>, from: usize, to: usize, msg: Msg) -> Option<Answer> {
        let lost_on_the_way = |w: &World<N>, a: usize, b: usize| {
            w.live(a).is_none() || w.live(b).is_none() || !w.link_open(a, b) || w.lost()
        };
        if lost_on_the_way(self, from, to) {
            self.count(|s| s.dropped += 1);
            return std::future::pending().await;
        }
        tokio::time::sleep(self.delay()).await;
        let (Some(node), true) = (self.live(to), self.link_open(from, to)) else {
            self.count(|s| s.dropped += 1);
            return std::future::pending().await;
        };
        let incarnation = self.incarnation(to);
        let answer = node.handle(Self::id(from), msg).await;
        drop(node);
        if self.incarnation(to) != incarnation || lost_on_the_way(self, to, from) {
            self.count(|s| s.dropped += 1);
            return std::future::pending().await;
        }
        tokio::time::sleep(self.delay()).await;
        if self.live(from).is_none() {
            return std::future::pending().await;
        }
        Some(answer)
    }
}
