//! The cluster as the HTTP API shows it (`GET /api/v1/cluster`, `shoal status --json`).
//! Ids are strings: JavaScript cannot hold a u64.

use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use shoal_net::wire::{CtlRequest, CtlResponse};
use shoal_net::{PeerId, Transport};
use shoal_raft::{NodeInfo, ServerState};

use crate::cluster::identity::hex;
use crate::cluster::pushed::Role;
use crate::control::Control;
use crate::sync::{Locked, ReadWrite};

/// One node of the cluster.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeView {
    /// Raft node id (16 hex digits).
    pub id: String,
    /// libp2p PeerId.
    pub peer_id: String,
    /// Listen multiaddrs.
    pub addrs: Vec<String>,
    /// HTTP API address.
    pub http: String,
    /// "voter", "learner" or "worker" (a plain worker); null when not in the cluster
    /// (yet).
    pub membership: Option<String>,
    /// "leader", "follower", "candidate", "learner", "worker", "unknown" (not reachable
    /// now) or "lost" (not reachable, and silent past `--node-timeout`).
    pub state: String,
    /// Whether this node can reach it now.
    pub reachable: bool,
    /// Milliseconds since its last sign of life, as seen from this ctl.node.
    pub last_seen_ms_ago: Option<u64>,
    /// Its last heartbeat, where this node heard it (the leader hears every node's).
    #[serde(default)]
    pub heartbeat: Option<HeartbeatView>,
    /// The `shoal --version` it runs, from its heartbeat or hello; null when not heard.
    #[serde(default)]
    pub version: Option<String>,
    /// The wire protocol it speaks (`1.6`), likewise.
    #[serde(default)]
    pub protocol: Option<String>,
    /// `draining` (no new task; attempts still run there) or `drained` (none runs); null
    /// when it takes tasks (`shoal drain`, `shoal undrain`, or stopping).
    #[serde(default)]
    pub drain: Option<String>,
}

/// A node's last heartbeat.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HeartbeatView {
    /// How long ago it came.
    pub ms_ago: u64,
    /// Its slots.
    pub slots: u32,
    /// Slots busy.
    pub busy: u32,
    /// Its running attempts with their progress.
    pub running: Vec<shoal_net::wire::RunningAttempt>,
    /// Bytes its object store holds.
    #[serde(default)]
    pub disk_bytes: u64,
    /// Its data dir's disk is under its `--min-free-mb`: it takes no new task.
    #[serde(default)]
    pub disk_low: bool,
}

/// The build node `id` runs: from the hello of its process this node is connected to,
/// else from its last heartbeat heard here. The hello first: a node just restarted on a
/// new build says so at once, while its old process's last heartbeat may still be passed
/// around for a few seconds.
fn build_of(ctl: &Control, id: u64, peer_id: &str) -> Option<shoal_net::wire::Build> {
    if id == ctl.node.id {
        return Some(ctl.node.settings.build.clone());
    }
    let hello = peer_id.parse::<PeerId>().ok().and_then(|pid| {
        Some(
            ctl.node
                .peers
                .all()
                .get(&pid)?
                .hello
                .as_ref()?
                .build
                .clone(),
        )
    });
    hello.or_else(|| Some(ctl.node.heartbeats.locked().get(&id)?.1.build.clone()))
}

/// Fill each node's version and protocol; whether they differ.
fn versions(ctl: &Control, nodes: &mut [NodeView]) -> bool {
    let mut seen = std::collections::BTreeSet::new();
    for n in nodes.iter_mut() {
        let Some(b) = u64::from_str_radix(&n.id, 16)
            .ok()
            .and_then(|id| build_of(ctl, id, &n.peer_id))
        else {
            continue;
        };
        n.version = Some(b.version.clone()).filter(|v| !v.is_empty());
        n.protocol = Some(b.protocol.to_string());
        seen.insert((b.version, b.protocol));
    }
    seen.len() > 1
}

fn heartbeat_view(ctl: &Control, id: u64) -> Option<HeartbeatView> {
    let hbs = ctl.node.heartbeats.locked();
    let (at, hb) = hbs.get(&id)?;
    Some(HeartbeatView {
        ms_ago: at.elapsed().as_millis() as u64,
        slots: hb.slots,
        busy: hb.busy,
        running: hb.running.clone(),
        disk_bytes: hb.disk_bytes,
        disk_low: hb.disk_low,
    })
}

/// A log position.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LogPos {
    /// Index.
    pub index: u64,
    /// Term.
    pub term: u64,
}

/// The whole cluster, as seen from one ctl.node.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClusterView {
    /// Cluster id (16 hex digits); null before the node has one.
    pub cluster_id: Option<String>,
    /// The node answering.
    pub this: NodeView,
    /// The current leader (the manager), if known.
    pub leader: Option<NodeView>,
    /// Current Raft term.
    pub term: u64,
    /// Last applied log position.
    pub applied: LogPos,
    /// Hash of the applied state: equal on nodes that applied the same log.
    pub state_hash: String,
    /// Every member (and this node, even before it is one).
    pub nodes: Vec<NodeView>,
    /// What the node is waiting for, before it has a cluster.
    pub status: Option<String>,
    /// Shuffle traffic of this node since it started.
    #[serde(default)]
    pub shuffle: ShuffleView,
    /// Input splits this node sent to, or took from, other nodes of its host as hard links
    /// since it started (bytes not written twice to one disk).
    #[serde(default)]
    pub linked_bytes: u64,
    /// Tasks this node runs at once, and how many run now.
    #[serde(default)]
    pub slots: SlotsView,
    /// The nodes run more than one build or protocol (a rolling upgrade under way, or a node
    /// left behind).
    #[serde(default)]
    pub mixed_versions: bool,
}

/// Map output this node's reduces read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ShuffleView {
    /// Received over `/shoal/data/1` from other nodes.
    pub fetched_bytes: u64,
    /// Read from this node's own store.
    pub local_bytes: u64,
}

/// The task pool.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SlotsView {
    /// Tasks it runs at once: its `--slots`, or given none, its share of its host's cores
    /// with the other nodes there.
    pub total: u32,
    /// Running tasks.
    pub busy: u32,
}

fn shuffle_view(ctl: &Control) -> ShuffleView {
    use std::sync::atomic::Ordering;
    ShuffleView {
        fetched_bytes: ctl.store.shuffle.fetched_bytes.load(Ordering::Relaxed),
        local_bytes: ctl.store.shuffle.local_bytes.load(Ordering::Relaxed),
    }
}

fn slots_view(ctl: &Control) -> SlotsView {
    SlotsView {
        total: ctl.pool.limit() as u32,
        busy: ctl.pool.busy() as u32,
    }
}

/// Bring this node's copy of everyone's heartbeats up to date before it shows the cluster:
/// the leader has them, and so do voters (their heartbeats are answered with them); a
/// learner asks the leader, at most once a second, waiting at most two seconds.
pub async fn gather_heartbeats(ctl: &Control) {
    let leader = crate::cluster::members::leader(&ctl.node);
    let (Some(leader), Some(cluster_id)) = (leader, ctl.node.cluster_id()) else {
        return;
    };
    if leader == ctl.node.id
        || crate::cluster::members::is_voter(&ctl.node, ctl.node.id)
        || !ctl.node.heartbeats.time_to_ask(Duration::from_secs(1))
    {
        return;
    }
    let Some(peer) = crate::cluster::members::peer_of(&ctl.node, leader) else {
        return;
    };
    let to = shoal_net::PeerRef {
        peer,
        addrs: vec![],
    };
    let asked = ctl
        .node
        .net
        .ctl(&to, CtlRequest::Heard { cluster_id }, ASK_TIMEOUT)
        .await;
    match asked {
        Ok(CtlResponse::Heartbeats(all)) => ctl.node.heartbeats.merge(all),
        Ok(other) => tracing::debug!(?other, "the leader did not give its heartbeats"),
        Err(e) => tracing::debug!(error = %e, "could not ask the leader for its heartbeats"),
    }
}

/// How long a view waits for the leader's heartbeats.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Build the view from the node's Raft metrics and peer table.
pub fn cluster_view(ctl: &Control) -> ClusterView {
    let me = ctl.node.peer_info();
    let peers = ctl.node.peers.all();
    let seen = |peer_id: &str| -> (bool, Option<u64>) {
        let Ok(pid) = peer_id.parse::<PeerId>() else {
            return (false, None);
        };
        match peers.get(&pid) {
            Some(p) => {
                let ago = p
                    .last_seen
                    .map(|t| Instant::now().duration_since(t).as_millis() as u64);
                (p.connected && ago.is_some_and(|a| a < 5000), ago)
            }
            None => (false, None),
        }
    };
    let status = ctl.node.status.locked().clone();
    let mut this = NodeView {
        id: hex(ctl.node.id),
        peer_id: me.peer_id.clone(),
        addrs: me.addrs.clone(),
        http: me.http.clone(),
        membership: None,
        state: "unknown".into(),
        reachable: true,
        last_seen_ms_ago: Some(0),
        heartbeat: heartbeat_view(ctl, ctl.node.id),
        version: Some(ctl.node.settings.build.version.clone()),
        protocol: Some(ctl.node.settings.build.protocol.to_string()),
        drain: None,
    };
    let Some(h) = ctl.node.raft.get() else {
        return ClusterView {
            cluster_id: ctl.node.cluster_id().map(hex),
            this: this.clone(),
            leader: None,
            term: 0,
            applied: LogPos { index: 0, term: 0 },
            state_hash: String::new(),
            nodes: vec![this],
            status: Some(status).filter(|s| !s.is_empty()),
            shuffle: shuffle_view(ctl),
            linked_bytes: ctl.store.links.linked_bytes(),
            slots: slots_view(ctl),
            mixed_versions: false,
        };
    };
    let metrics = shoal_raft::metrics(&h.raft);
    let (roster, leader_id) = roster(ctl, h, &metrics);
    let roles: std::collections::HashMap<u64, Role> =
        roster.iter().map(|(id, _, r)| (*id, *r)).collect();
    this.membership = roles.get(&ctl.node.id).map(|r| r.name().to_string());
    this.state = match metrics.state {
        _ if roles.get(&ctl.node.id) == Some(&Role::Worker) => "worker",
        ServerState::Leader => "leader",
        ServerState::Follower => "follower",
        ServerState::Candidate => "candidate",
        ServerState::Learner => "learner",
        ServerState::Shutdown => "unknown",
    }
    .into();
    let mut nodes: Vec<NodeView> = roster
        .iter()
        .map(|(id, info, r)| match *id == ctl.node.id {
            true => this.clone(),
            false => other_node(ctl, &seen, (*id, info, *r), leader_id),
        })
        .collect();
    if !nodes.iter().any(|n| n.id == this.id) {
        nodes.push(this.clone());
    }
    let mixed_versions = versions(ctl, &mut nodes);
    set_drains(ctl, h, &mut nodes, &mut this);
    let leader = leader_id.and_then(|l| nodes.iter().find(|n| n.id == hex(l)).cloned());
    let (state_hash, applied) = state_hash(h);
    ClusterView {
        cluster_id: ctl.node.cluster_id().map(hex),
        this,
        leader,
        term: metrics.current_term,
        applied,
        state_hash,
        nodes,
        status: Some(status).filter(|s| !s.is_empty()),
        shuffle: shuffle_view(ctl),
        linked_bytes: ctl.store.links.linked_bytes(),
        slots: slots_view(ctl),
        mixed_versions,
    }
}

/// Each node's drain state, as the applied table says.
fn set_drains(
    ctl: &Control,
    h: &crate::cluster::node::RaftHandle,
    nodes: &mut [NodeView],
    this: &mut NodeView,
) {
    let a = h.applied.read_now();
    for n in nodes.iter_mut() {
        if let Ok(id) = u64::from_str_radix(&n.id, 16) {
            let others = crate::control::drain::others(ctl, id, &a.state.jobs);
            n.drain = a.state.jobs.drain_state(id, others).map(String::from);
        }
    }
    let others = crate::control::drain::others(ctl, ctl.node.id, &a.state.jobs);
    this.drain = a
        .state
        .jobs
        .drain_state(ctl.node.id, others)
        .map(String::from);
}

/// The applied state's hash (equal on every member at the same index) and its position.
fn state_hash(h: &crate::cluster::node::RaftHandle) -> (String, LogPos) {
    let a = h.applied.read_now();
    let bytes = shoal_net::codec::encode(&a.state);
    let pos = a
        .last_applied
        .map_or(LogPos { index: 0, term: 0 }, |l| LogPos {
            index: l.index,
            term: l.leader_id.term,
        });
    (hex(shoal_jobs::partition::stable_hash(&bytes)), pos)
}

/// Members and plain workers with their roles, and the leader: from the membership and the
/// applied state on a member, from the leader's pushes on a plain worker.
fn roster(
    ctl: &Control,
    h: &crate::cluster::node::RaftHandle,
    metrics: &shoal_raft::Metrics,
) -> (Vec<(u64, NodeInfo, Role)>, Option<u64>) {
    let pushed = ctl.node.is_plain_worker().then(|| {
        ctl.node.pushed.read(|t| {
            t.map(|t| {
                let roster: Vec<(u64, NodeInfo, Role)> = t
                    .roster
                    .iter()
                    .map(|(&id, (i, r))| (id, i.clone(), *r))
                    .collect();
                (roster, t.leader)
            })
        })
    });
    match pushed.flatten() {
        Some((roster, leader)) => (roster, Some(leader)),
        None => {
            let m = metrics.membership_config.membership();
            let mut roster: Vec<(u64, NodeInfo, Role)> = m
                .nodes()
                .map(|(&id, i)| {
                    let voter = m.voter_ids().any(|v| v == id);
                    (
                        id,
                        i.clone(),
                        if voter { Role::Voter } else { Role::Learner },
                    )
                })
                .collect();
            let a = h.applied.read_now();
            roster.extend(
                a.state
                    .workers
                    .iter()
                    .map(|(&id, i)| (id, i.clone(), Role::Worker)),
            );
            (roster, metrics.current_leader)
        }
    }
}

/// The view of node `id` (not this one), its record `info` and role `r`, as this node
/// sees it (`seen`: whether it is reachable, and since when it was not heard).
fn other_node(
    ctl: &Control,
    seen: &dyn Fn(&str) -> (bool, Option<u64>),
    (id, info, r): (u64, &NodeInfo, Role),
    leader_id: Option<u64>,
) -> NodeView {
    let (reachable, ago) = seen(&info.peer_id);
    // Unreachable and silent past `--node-timeout`: the manager declares such a node lost
    // (its work goes elsewhere), and so does the view.
    let timeout = ctl.node.settings.node_timeout.as_millis();
    let state = if !reachable && ago.is_none_or(|ms| u128::from(ms) > timeout) {
        "lost"
    } else if !reachable {
        "unknown"
    } else if leader_id == Some(id) {
        "leader"
    } else {
        match r {
            Role::Voter => "follower",
            Role::Learner => "learner",
            Role::Worker => "worker",
        }
    };
    NodeView {
        id: hex(id),
        peer_id: info.peer_id.clone(),
        addrs: info.addrs.clone(),
        http: info.http.clone(),
        membership: Some(r.name().to_string()),
        state: state.into(),
        reachable,
        last_seen_ms_ago: ago,
        heartbeat: heartbeat_view(ctl, id),
        version: None,
        protocol: None,
        drain: None,
    }
}
