//! A running node: its identity, database, network client, Raft (once it has a cluster) and
//! what it knows of its peers; and the handlers for everything peers send it.
//!
//! The invariant: the cluster id is persisted before Raft starts, Raft starts at most once,
//! and nothing from a node of another cluster reaches Raft.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use shoal_net::wire::{
    CtlRequest, CtlResponse, Heartbeat, Hello, PeerInfo, RaftRequest, RaftResponse,
};
use shoal_net::{codec, Client, PeerId, PeerRef, Transport};
use shoal_raft::{Applied, NodeInfo, Raft, Store, Timing};
use tokio::sync::OnceCell;
use tracing::{info, warn};

use shoal_jobs::cluster::Applied as JobsApplied;
use shoal_jobs::pool::TaskPool;

use crate::cluster::rpc::{answer_raft, peer_ref, NetRpc};
use crate::cluster::state::{ClusterState, Command};
use crate::storage::blobs::Blobs;
use crate::sync::{Locked, ReadWrite};

/// Metadata key of the cluster id in the node's database.
pub const CLUSTER_ID_KEY: &str = "node.cluster_id";

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

/// What this node knows about a peer.
#[derive(Debug, Default, Clone)]
pub struct PeerEntry {
    /// Its last hello.
    pub hello: Option<Hello>,
    /// An open connection.
    pub connected: bool,
    /// Last sign of life (ping, message).
    pub last_seen: Option<Instant>,
    /// Its cluster, when it is not ours.
    pub foreign: Option<u64>,
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
    pub peers: Mutex<BTreeMap<PeerId, PeerEntry>>,
    /// Settings.
    pub settings: Settings,
    /// What the node is doing before it has a cluster ("waiting for 2 more nodes…").
    pub status: Mutex<String>,
    /// Set while a bootstrapper has made us an initial voter (so we do not also ask to join).
    pub adopted: Mutex<Option<Instant>>,
    /// Splits, map outputs and part files stored here.
    pub blobs: Blobs,
    /// The threads that run tasks (never the runtime's).
    pub pool: TaskPool,
    /// Bytes of map output this node fetched from other nodes, and read from its own store.
    pub shuffle: ShuffleStats,
    /// When this process started (ms since the epoch): attempts assigned to this node before
    /// then died with the previous process.
    pub started_ms: u64,
    /// The last heartbeat of each node and when it came (the leader hears every node's;
    /// every node records its own).
    pub heartbeats: Mutex<Heartbeats>,
    /// Leader changes this node has seen (a leader elected where there was another or none).
    pub leader_changes: AtomicU64,
    logged: Mutex<HashSet<String>>,
}

/// The last heartbeat of each node, and when it came.
pub type Heartbeats = BTreeMap<u64, (Instant, Heartbeat)>;

/// Shuffle traffic seen by one node.
#[derive(Debug, Default)]
pub struct ShuffleStats {
    /// Map output received over `/shoal/data/1` from other nodes.
    pub fetched_bytes: AtomicU64,
    /// Map output read from this node's own store.
    pub local_bytes: AtomicU64,
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
        blobs: Blobs,
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
            peers: Mutex::new(BTreeMap::new()),
            settings: settings.clone(),
            status: Mutex::new(String::new()),
            adopted: Mutex::new(None),
            pool: TaskPool::new(settings.slots as usize),
            blobs,
            shuffle: ShuffleStats::default(),
            heartbeats: Mutex::new(BTreeMap::new()),
            leader_changes: AtomicU64::new(0),
            started_ms: crate::clock::now_ms(),
            logged: Mutex::new(HashSet::new()),
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
        let i = self.peer_info();
        NodeInfo {
            peer_id: i.peer_id,
            addrs: i.addrs,
            http: i.http,
        }
    }

    /// What this node says about itself.
    pub fn hello(&self) -> Hello {
        Hello {
            node_id: self.id,
            info: self.peer_info(),
            cluster_id: self.cluster_id(),
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
                info!(node = self.id, cluster = ?self.cluster_id(), "raft started");
                Ok::<_, anyhow::Error>(RaftHandle {
                    raft,
                    applied,
                    inbound: Default::default(),
                })
            })
            .await
    }

    /// Every node's last heartbeat this node knows, with how long ago it came.
    pub fn heard_heartbeats(&self) -> Vec<shoal_net::wire::HeardHeartbeat> {
        let heard = self.heartbeats.locked();
        heard
            .values()
            .map(|(at, hb)| shoal_net::wire::HeardHeartbeat {
                ms_ago: at.elapsed().as_millis() as u64,
                heartbeat: hb.clone(),
            })
            .collect()
    }

    /// Take the leader's copies of other nodes' heartbeats (newer than ours only).
    pub fn merge_heartbeats(&self, list: Vec<shoal_net::wire::HeardHeartbeat>) {
        let mut heard = self.heartbeats.locked();
        let now = Instant::now();
        for h in list {
            if h.heartbeat.node_id == self.id {
                continue;
            }
            let at = now
                .checked_sub(std::time::Duration::from_millis(h.ms_ago))
                .unwrap_or(now);
            let newer = heard
                .get(&h.heartbeat.node_id)
                .is_none_or(|(old, _)| *old < at);
            if newer {
                heard.insert(h.heartbeat.node_id, (at, h.heartbeat));
            }
        }
    }

    /// Record a heartbeat (this node's own, or one sent to it as leader).
    pub fn record_heartbeat(&self, hb: Heartbeat) {
        self.heartbeats
            .locked()
            .insert(hb.node_id, (Instant::now(), hb));
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

    /// Log `message` once per `key` (foreign peers, refused handshakes).
    pub fn warn_once(&self, key: String, message: impl FnOnce() -> String) {
        if self.logged.locked().insert(key) {
            warn!("{} (logged once)", message());
        }
    }

    fn with_peer<T>(&self, peer: PeerId, f: impl FnOnce(&mut PeerEntry) -> T) -> T {
        let mut peers = self.peers.locked();
        f(peers.entry(peer).or_default())
    }

    /// The peer is alive.
    pub fn seen(&self, peer: PeerId) {
        self.with_peer(peer, |p| p.last_seen = Some(Instant::now()));
    }

    /// A connection to the peer opened or closed.
    pub fn set_connected(&self, peer: PeerId, connected: bool) {
        self.with_peer(peer, |p| {
            p.connected = connected;
            if connected {
                p.last_seen = Some(Instant::now());
            }
        });
    }

    /// Remember that `peer` is of another cluster (and say so once).
    pub fn note_foreign(&self, peer: PeerId, theirs: u64, ours: u64) {
        self.with_peer(peer, |p| p.foreign = Some(theirs));
        self.warn_once(format!("foreign {peer}"), || {
            format!("refusing peer {peer}: it belongs to cluster {theirs:016x}, this node to cluster {ours:016x}")
        });
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
            Ok(CtlResponse::Hello(h)) => self.record_hello(peer, h),
            Ok(CtlResponse::Refused(why)) => {
                if let (Some(ours), Some(theirs)) = (self.cluster_id(), parse_foreign(&why)) {
                    self.note_foreign(peer, theirs, ours);
                }
            }
            Ok(other) => warn!(%peer, ?other, "unexpected answer to hello"),
            Err(e) => tracing::debug!(%peer, error = %e, "hello failed"),
        }
    }

    fn record_hello(&self, peer: PeerId, h: Hello) {
        if let (Some(ours), Some(theirs)) = (self.cluster_id(), h.cluster_id) {
            if ours != theirs {
                self.note_foreign(peer, theirs, ours);
                return;
            }
        }
        self.with_peer(peer, |p| {
            p.hello = Some(h);
            p.foreign = None;
            p.last_seen = Some(Instant::now());
        });
    }

    /// Answer an inbound Raft RPC.
    pub async fn on_raft(&self, peer: PeerId, req: RaftRequest) -> RaftResponse {
        let Some(ours) = self.cluster_id() else {
            return RaftResponse::Refused("this node has no cluster yet".into());
        };
        if req.cluster_id != ours {
            self.note_foreign(peer, req.cluster_id, ours);
            return RaftResponse::Refused(foreign_reason(ours));
        }
        self.seen(peer);
        match self.start_raft().await {
            Ok(h) => answer_raft(&h.raft, &h.inbound, &req).await,
            Err(e) => RaftResponse::Refused(format!("raft is not running here: {e}")),
        }
    }

    /// Answer an inbound control request.
    pub async fn on_ctl(&self, peer: PeerId, req: CtlRequest) -> CtlResponse {
        self.seen(peer);
        match req {
            CtlRequest::Hello(h) => {
                if let (Some(ours), Some(theirs)) = (self.cluster_id(), h.cluster_id) {
                    if ours != theirs {
                        self.note_foreign(peer, theirs, ours);
                        return CtlResponse::Refused(foreign_reason(ours));
                    }
                }
                self.record_hello(peer, h);
                CtlResponse::Hello(self.hello())
            }
            CtlRequest::Adopt { cluster_id, voters } => self.on_adopt(cluster_id, &voters),
            CtlRequest::Release { cluster_id } => {
                if self.cluster_id() == Some(cluster_id) && self.raft.get().is_none() {
                    info!(
                        cluster = format!("{cluster_id:016x}"),
                        "bootstrap aborted by its initiator; forgetting the cluster id"
                    );
                    *self.adopted.locked() = None;
                    if let Err(e) = self.set_cluster_id(None) {
                        return CtlResponse::Refused(e.to_string());
                    }
                }
                CtlResponse::Ok
            }
            CtlRequest::Join {
                cluster_id,
                node_id,
                info,
            } => self.on_join(cluster_id, node_id, info).await,
            CtlRequest::Heartbeat(hb) => match self.cluster_id() {
                Some(ours) if ours == hb.cluster_id => {
                    self.record_heartbeat(hb);
                    CtlResponse::Heartbeats(self.heard_heartbeats())
                }
                Some(ours) => CtlResponse::Refused(foreign_reason(ours)),
                None => CtlResponse::Refused("this node has no cluster yet".into()),
            },
            CtlRequest::Propose {
                cluster_id,
                command,
            } => match self.cluster_id() {
                Some(ours) if ours == cluster_id => match self.write_local(command).await {
                    Ok(answer) => CtlResponse::Applied(codec::encode(&answer)),
                    Err(why) => CtlResponse::Refused(why),
                },
                Some(ours) => CtlResponse::Refused(foreign_reason(ours)),
                None => CtlResponse::Refused("this node has no cluster yet".into()),
            },
        }
    }

    /// Apply `command` through Raft here; only the leader can. The state's answer and the
    /// log index of the command.
    async fn write_local(&self, command: Vec<u8>) -> Result<(JobsApplied, u64), String> {
        let h = self.raft.get().ok_or("raft is not running here yet")?;
        let m = shoal_raft::metrics(&h.raft);
        if m.current_leader != Some(self.id) {
            return Err(format!(
                "this node is not the leader (the leader is {})",
                m.current_leader
                    .map_or("unknown".into(), crate::cluster::identity::hex)
            ));
        }
        let resp = h
            .raft
            .client_write(shoal_raft::Cmd(command))
            .await
            .map_err(|e| format!("the proposal failed: {e}"))?;
        let applied =
            codec::decode(&resp.response().0).map_err(|e| format!("a malformed reply: {e}"))?;
        Ok((applied, resp.log_id().index))
    }

    /// Propose `command` once: here when this node leads, else to the leader over
    /// `/shoal/ctl/1`. Either way it returns once this node has applied the command too, so
    /// what a client reads from this node next includes it.
    pub async fn propose_once(&self, command: &Command) -> Result<JobsApplied, String> {
        let bytes = codec::encode(command);
        let h = self.raft.get().ok_or("raft is not running here yet")?;
        let m = shoal_raft::metrics(&h.raft);
        match m.current_leader {
            Some(l) if l == self.id => self.write_local(bytes).await.map(|(a, _)| a),
            Some(l) => {
                let cluster_id = self.cluster_id().ok_or("this node has no cluster yet")?;
                let to = m
                    .membership_config
                    .get_node(&l)
                    .ok_or("the leader's address is unknown")
                    .and_then(|n| peer_ref(n).map_err(|_| "the leader's address is malformed"))?;
                let req = CtlRequest::Propose {
                    cluster_id,
                    command: bytes,
                };
                let (applied, index): (JobsApplied, u64) =
                    match self.net.ctl(&to, req, PROPOSE_TIMEOUT).await {
                        Ok(CtlResponse::Applied(b)) => {
                            codec::decode(&b).map_err(|e| format!("a malformed reply: {e}"))?
                        }
                        Ok(CtlResponse::Refused(why)) => return Err(why),
                        Ok(other) => return Err(format!("unexpected answer {other:?}")),
                        Err(e) => return Err(format!("the leader did not answer: {e}")),
                    };
                self.wait_applied(index, PROPOSE_TIMEOUT).await;
                Ok(applied)
            }
            None => Err("no leader yet".into()),
        }
    }

    /// Wait (at most `limit`) until this node has applied log index `index`.
    pub async fn wait_applied(&self, index: u64, limit: Duration) {
        let Some(h) = self.raft.get() else { return };
        let deadline = tokio::time::Instant::now() + limit;
        let mut changes = h.raft.metrics();
        loop {
            let at = shoal_raft::metrics(&h.raft)
                .last_applied
                .map_or(0, |l| l.index);
            if at >= index {
                return;
            }
            use shoal_raft::WatchReceiver;
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }

    /// Propose `command`, retrying (leader changes, no leader yet) for up to `patience`.
    pub async fn propose(
        &self,
        command: &Command,
        patience: Duration,
    ) -> Result<JobsApplied, String> {
        let deadline = Instant::now() + patience;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.propose_once(command).await {
                Ok(a) => return Ok(a),
                Err(e) if Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "proposal not accepted yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn on_adopt(&self, cluster_id: u64, voters: &[u64]) -> CtlResponse {
        match self.cluster_id() {
            Some(c) if c == cluster_id => CtlResponse::Ok,
            Some(c) => CtlResponse::Refused(foreign_reason(c)),
            None if !voters.contains(&self.id) => {
                CtlResponse::Refused("this node is not among the voters".into())
            }
            None => match self.store.has_raft_state() {
                Ok(true) => CtlResponse::Refused("this node already has Raft state".into()),
                Err(e) => CtlResponse::Refused(e.to_string()),
                Ok(false) => match self.set_cluster_id(Some(cluster_id)) {
                    Ok(()) => {
                        info!(
                            cluster = format!("{cluster_id:016x}"),
                            "adopted as an initial voter of a new cluster"
                        );
                        *self.adopted.locked() = Some(Instant::now());
                        CtlResponse::Ok
                    }
                    Err(e) => CtlResponse::Refused(e.to_string()),
                },
            },
        }
    }

    async fn on_join(&self, cluster_id: u64, node_id: u64, info: PeerInfo) -> CtlResponse {
        let Some(ours) = self.cluster_id() else {
            return CtlResponse::Refused("this node has no cluster yet".into());
        };
        if cluster_id != ours {
            return CtlResponse::Refused(foreign_reason(ours));
        }
        let Some(h) = self.raft.get() else {
            return CtlResponse::Refused("raft is not running here yet".into());
        };
        let metrics = shoal_raft::metrics(&h.raft);
        match metrics.current_leader {
            Some(leader) if leader == self.id => {
                let node = NodeInfo {
                    peer_id: info.peer_id,
                    addrs: info.addrs,
                    http: info.http,
                };
                match h.raft.add_learner(node_id, node, false).await {
                    Ok(_) => {
                        info!(joiner = node_id, "added a learner");
                        CtlResponse::Ok
                    }
                    Err(e) => CtlResponse::Refused(format!("adding the learner failed: {e}")),
                }
            }
            Some(leader) => {
                let Some(to) = metrics
                    .membership_config
                    .get_node(&leader)
                    .and_then(|n| peer_ref(n).ok())
                else {
                    return CtlResponse::Refused("the leader's address is unknown".into());
                };
                let fwd = CtlRequest::Join {
                    cluster_id,
                    node_id,
                    info,
                };
                self.net
                    .ctl(&to, fwd, CTL_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| CtlResponse::Refused(e.to_string()))
            }
            None => CtlResponse::Refused("no leader yet".into()),
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

    /// Hellos of connected, same-cluster-or-none peers seen (a ping, a message) within
    /// `--node-timeout`: a peer behind a cut cable keeps its TCP connection for a while, but
    /// nothing should be sent its way.
    pub fn hellos(&self) -> Vec<Hello> {
        let peers = self.peers.locked();
        let fresh = |p: &PeerEntry| {
            p.last_seen
                .is_some_and(|t| t.elapsed() <= self.settings.node_timeout)
        };
        peers
            .values()
            .filter(|p| p.connected && p.foreign.is_none() && fresh(p))
            .filter_map(|p| p.hello.clone())
            .collect()
    }

    /// Connected peers with no hello yet.
    pub fn unknown_peers(&self) -> Vec<PeerId> {
        let peers = self.peers.locked();
        peers
            .iter()
            .filter(|(_, p)| p.connected && p.hello.is_none() && p.foreign.is_none())
            .map(|(id, _)| *id)
            .collect()
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

fn parse_foreign(why: &str) -> Option<u64> {
    let hex = why.strip_prefix("foreign cluster: this node belongs to cluster ")?;
    u64::from_str_radix(hex.trim(), 16).ok()
}

/// The applied job table; `None` before this node has Raft.
pub(crate) fn with_jobs<T>(
    node: &Node,
    f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> T,
) -> Option<T> {
    let h = node.raft.get()?;
    let applied = h.applied.read_now();
    Some(f(&applied.state.jobs))
}
