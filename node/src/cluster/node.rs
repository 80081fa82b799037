//! A running node: its identity, database, network client, Raft (once it has a cluster) and
//! its settings. What it knows of its peers is in `peers` and `heartbeats`, proposing in
//! `propose`, and the handlers for what peers send in `handlers`.
//!
//! The invariant: the cluster id is persisted before Raft starts, Raft starts at most once,
//! and nothing from a node of another cluster reaches Raft.

use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shoal_net::wire::{CtlRequest, CtlResponse, Hello, PeerInfo, Reason};
use shoal_net::{Client, PeerId, PeerRef, Transport};
use shoal_raft::{Applied, NodeInfo, Raft, Store, Timing};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use crate::cluster::heartbeats::HeartbeatBook;
use crate::cluster::peers::PeerBook;
use crate::cluster::rpc::NetRpc;
use crate::cluster::state::ClusterState;
use crate::sync::ReadWrite;

/// Metadata key of the cluster id in the node's database.
pub const CLUSTER_ID_KEY: &str = "node.cluster_id";

/// Most learners by default (`--learners`); further nodes join as plain workers.
pub const DEFAULT_LEARNERS: usize = 4;

/// Timeout of control requests.
pub const CTL_TIMEOUT: Duration = Duration::from_secs(5);
/// Timeout of a forwarded proposal (a commit on a majority).
pub const PROPOSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Raft, once started.
pub struct RaftHandle {
    /// The Raft node.
    pub raft: Raft<ClusterState>,
    /// The applied state.
    pub applied: Arc<RwLock<Applied<ClusterState>>>,
    /// The order of inbound AppendEntries and snapshots.
    pub inbound: shoal_raft::Inbound,
}

/// Settings the node's loops need.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Uninitialized nodes to wait for before bootstrapping a new cluster.
    pub expect: usize,
    /// Raft timing.
    pub timing: Timing,
    /// Most voters; more members stay learners.
    pub voter_cap: usize,
    /// Most learners; more nodes are plain workers (`cluster::workers`).
    pub learner_cap: usize,
    /// Tasks this node runs at once.
    pub slots: u32,
    /// Copies of each split and part file on nodes besides the one that made it.
    pub replication: u32,
    /// A node silent this long while the job table expects something of it is lost.
    pub node_timeout: Duration,
    /// A voter silent this long is replaced by a live learner, or removed while more than
    /// three voters remain.
    pub voter_grace: Duration,
    /// Ended jobs the table keeps; older ones are forgotten (and their files deleted).
    pub retain_jobs: usize,
    /// As whom, in which cgroups and under which limits tasks' processes run.
    pub sandbox: Arc<shoal_jobs::sandbox::Sandbox>,
    /// MiB kept free on the data dir's disk (`--min-free-mb`).
    pub min_free_mb: u64,
    /// Where `node:` and `shared:` inputs are read (`--input-root`), absolute; `None`: off.
    pub input_root: Option<std::path::PathBuf>,
    /// This build and the wire protocol it speaks (another only in tests).
    pub build: shoal_net::wire::Build,
}

/// A running node.
pub struct Node {
    /// Raft node id.
    pub id: u64,
    /// libp2p identity.
    pub peer_id: PeerId,
    /// Listen addresses and HTTP address.
    pub info: RwLock<PeerInfo>,
    /// The node's database.
    pub store: Store,
    /// The network.
    pub net: Client,
    /// The cluster id, once bootstrapped, adopted or joined.
    pub cluster: Arc<RwLock<Option<u64>>>,
    /// Raft, once started.
    pub raft: OnceCell<RaftHandle>,
    /// Known peers.
    pub peers: PeerBook,
    /// Settings.
    pub settings: Settings,
    /// What the node is doing before it has a cluster ("waiting for 2 more nodes…").
    pub status: Mutex<String>,
    /// Set while a bootstrapper has made us an initial voter (so we do not also ask to join).
    pub adopted: Mutex<Option<Instant>>,
    /// When this process started (ms since the epoch): attempts assigned to this node before
    /// then died with the previous process.
    pub started_ms: u64,
    /// The last heartbeat of each node and when it came (the leader hears every node's;
    /// every node records its own).
    pub heartbeats: HeartbeatBook,
    /// Leader changes this node has seen (a leader elected where there was another or none).
    pub leader_changes: AtomicU64,
    /// Notified when this node has left the cluster (`shoal remove`): the process stops.
    pub left: tokio::sync::Notify,
    /// As a plain worker: the table the leader pushes here.
    pub pushed: crate::cluster::pushed::Pushed,
    /// As the leader: what each plain worker acknowledged.
    pub pushes: crate::cluster::pushed::Pushes,
    /// How fast key holders outside the cluster may ask.
    pub pace: crate::cluster::pace::Pacer,
}

impl Node {
    /// A node; Raft is not started yet.
    pub fn new(
        id: u64,
        peer_id: PeerId,
        info: PeerInfo,
        store: Store,
        net: Client,
        settings: Settings,
    ) -> anyhow::Result<Self> {
        let cluster = store
            .get_meta(CLUSTER_ID_KEY)?
            .map(|b| b.as_slice().try_into().map(u64::from_be_bytes))
            .transpose()
            .map_err(|_| anyhow::anyhow!("the node's database holds a malformed cluster id"))?;
        Ok(Node {
            id,
            peer_id,
            info: RwLock::new(info),
            store,
            net,
            cluster: Arc::new(RwLock::new(cluster)),
            raft: OnceCell::new(),
            peers: PeerBook::new(settings.node_timeout),
            settings: settings.clone(),
            status: Mutex::new(String::new()),
            adopted: Mutex::new(None),
            heartbeats: HeartbeatBook::new(id),
            leader_changes: AtomicU64::new(0),
            left: tokio::sync::Notify::new(),
            pushed: Default::default(),
            pushes: Default::default(),
            pace: Default::default(),
            started_ms: crate::clock::now_ms(),
        })
    }

    /// The cluster id, if any.
    pub fn cluster_id(&self) -> Option<u64> {
        *self.cluster.read_now()
    }

    /// Persist and adopt a cluster id.
    pub fn set_cluster_id(&self, id: Option<u64>) -> anyhow::Result<()> {
        self.store.put_meta(
            CLUSTER_ID_KEY,
            id.map(u64::to_be_bytes).as_ref().map(|b| &b[..]),
        )?;
        *self.cluster.write_now() = id;
        Ok(())
    }

    /// This node's own info.
    pub fn peer_info(&self) -> PeerInfo {
        self.info.read_now().clone()
    }

    /// This node as a Raft membership record.
    pub fn node_info(&self) -> NodeInfo {
        member_record(self.peer_info())
    }

    /// What this node says about itself.
    pub fn hello(&self) -> Hello {
        Hello {
            node_id: self.id,
            info: self.peer_info(),
            cluster_id: self.cluster_id(),
            build: self.settings.build.clone(),
        }
    }

    /// Start Raft (once); requires a cluster id.
    pub async fn start_raft(&self) -> anyhow::Result<&RaftHandle> {
        self.raft
            .get_or_try_init(|| async {
                let rpc = NetRpc {
                    net: self.net.clone(),
                    cluster: Arc::clone(&self.cluster),
                };
                let (raft, applied) = shoal_raft::start(
                    self.id,
                    &self.store,
                    self.settings.timing,
                    rpc,
                    rand::random(),
                )
                .await?;
                info!(node = %crate::cluster::identity::hex(self.id), cluster = ?self.cluster_id().map(crate::cluster::identity::hex), "raft started");
                Ok::<_, anyhow::Error>(RaftHandle {
                    raft,
                    applied,
                    inbound: Default::default(),
                })
            })
            .await
    }

    /// Wait until Raft has started here (a node without a cluster waits for one).
    pub async fn raft_started(&self) -> &RaftHandle {
        loop {
            if let Some(h) = self.raft.get() {
                return h;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Exchange hellos with `peer`: learn its id, addresses and cluster.
    pub async fn greet(&self, peer: PeerId) {
        let to = PeerRef {
            peer,
            addrs: vec![],
        };
        match self
            .net
            .ctl(&to, CtlRequest::Hello(self.hello()), CTL_TIMEOUT)
            .await
        {
            Ok(CtlResponse::Hello(h)) => match self.settings.build.incompatible(&h.build) {
                Some(why) => self.peers.note_incompatible(peer, why),
                None => {
                    self.peers.record_hello(peer, h, self.cluster_id());
                }
            },
            // It found this node's protocol incompatible; its reason names both versions.
            Ok(a) if let Some(r) = a.refusal().filter(|r| r.reason == Reason::Incompatible) => {
                self.peers
                    .note_incompatible(peer, format!("it refused this node: {r}"));
            }
            Ok(CtlResponse::Foreign { cluster_id: theirs }) => {
                if let Some(ours) = self.cluster_id() {
                    self.peers.note_foreign(peer, theirs, ours);
                }
            }
            Ok(other) => warn!(%peer, ?other, "unexpected answer to hello"),
            Err(e) => tracing::debug!(%peer, error = %e, "hello failed"),
        }
    }

    /// Whether Raft's membership includes this node.
    pub fn is_member(&self) -> bool {
        self.raft.get().is_some_and(|h| {
            let m = shoal_raft::metrics(&h.raft).membership_config;
            let member = m.nodes().any(|(id, _)| *id == self.id);
            member
        })
    }

    /// Whether this node is a plain worker: not a member, and the leader pushes it its
    /// table.
    pub fn is_plain_worker(&self) -> bool {
        !self.is_member() && self.pushed.leader().is_some()
    }
}

/// Wait for Raft's metrics to change (a command applied, a leader change…), at most `tick`.
pub async fn next_change(changes: &mut shoal_raft::MetricsWatch, tick: Duration) {
    use shoal_raft::WatchReceiver;
    if let Ok(Err(_)) = tokio::time::timeout(tick, changes.changed()).await {
        // Raft has stopped (the node is shutting down): do not spin.
        tokio::time::sleep(tick).await;
    }
}

/// The refusal sent to a node of another cluster (it names ours, so the other side can log it).
pub fn foreign_reason(ours: u64) -> String {
    format!("foreign cluster: this node belongs to cluster {ours:016x}")
}

/// The job table: the applied one on a member, the pushed one (the jobs that concern it)
/// on a plain worker; `None` before this node has either.
pub(crate) fn with_jobs<T>(
    node: &Node,
    f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> T,
) -> Option<T> {
    read_table(node, |t, _| t.map(f))
}

/// Read the job table and the log index it is at: the applied one on a member, the pushed
/// one on a plain worker (at the leader's index when it pushed); `None` before this node
/// has either.
pub(crate) fn read_table<T>(
    node: &Node,
    f: impl FnOnce(Option<&shoal_jobs::cluster::Cluster>, Option<u64>) -> T,
) -> T {
    let h = node.raft.get();
    if h.is_none() || node.is_plain_worker() {
        return node
            .pushed
            .read(|t| f(t.map(|t| &t.jobs), t.map(|t| t.index)));
    }
    let Some(h) = h else { return f(None, None) };
    let applied = h.applied.read_now();
    f(
        Some(&applied.state.jobs),
        applied.last_applied.map(|l| l.index),
    )
}

/// What the worker and manager loops wait on: Raft's metrics (a command applied, a leader
/// change) and, on a plain worker, the leader's pushes.
pub struct TableChanges {
    raft: shoal_raft::MetricsWatch,
    pushed: Option<tokio::sync::watch::Receiver<u64>>,
}

impl TableChanges {
    /// Changes of Raft's metrics and of `pushed`.
    pub fn new(
        raft: shoal_raft::MetricsWatch,
        pushed: Option<tokio::sync::watch::Receiver<u64>>,
    ) -> Self {
        TableChanges { raft, pushed }
    }

    /// Wait for the next change, at most `tick`.
    pub async fn next(&mut self, tick: Duration) {
        match &mut self.pushed {
            None => next_change(&mut self.raft, tick).await,
            Some(p) => {
                tokio::select! {
                    _ = next_change(&mut self.raft, tick) => {}
                    _ = tokio::time::timeout(tick, p.changed()) => {}
                }
            }
        }
    }
}

/// A node's Raft membership record, from what it says about itself (its hello's info).
pub fn member_record(info: PeerInfo) -> NodeInfo {
    NodeInfo {
        peer_id: info.peer_id,
        addrs: info.addrs,
        http: info.http,
    }
}
