//! Who is in the cluster, as this node sees it: the members (Raft's voters and learners)
//! and plain workers it can reach and their slots, a node's record and peer id, and what a
//! peer is. A member reads the plain workers from the applied state; a plain worker reads
//! members and workers from the roster the leader pushes it.

use std::collections::HashSet;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::scheduler::NodeSlots;
use shoal_raft::NodeInfo;

use crate::cluster::node::Node;
use crate::sync::ReadWrite;

/// Members and plain workers this node can reach (itself included) and their slots: a
/// node given no `--slots` gets its share of its host's cores ([`host_shares`]).
pub fn live_nodes(node: &Node) -> Vec<NodeSlots> {
    let info = node
        .peers
        .by_node(|h| (h.info.slots.max(1), h.info.host.clone()));
    // A node under its disk reserve takes no new task and no copy until it has room, as its
    // last heartbeat says (this node's own included: the worker loop records it each beat).
    let low: HashSet<u64> = node
        .heartbeats
        .locked()
        .iter()
        .filter(|(_, (_, hb))| hb.disk_low)
        .map(|(&id, _)| id)
        .collect();
    let nodes = member_ids(node)
        .into_iter()
        .filter(|id| !low.contains(id))
        .filter_map(|id| {
            if id == node.id {
                return Some((id, node.settings.slots, node.peer_info().host));
            }
            info.get(&id)
                .map(|(slots, host)| (id, *slots, host.clone()))
        })
        .collect();
    host_shares(nodes)
}

/// The tasks this node runs at once: its share of its host's cores as [`live_nodes`] counts
/// it, or its `--slots` (before it is in a cluster, or while its disk is low).
pub fn own_slots(node: &Node) -> u32 {
    live_nodes(node)
        .into_iter()
        .find(|n| n.node == node.id)
        .map_or(node.settings.slots, |n| n.slots)
}

/// Each node's slots, from (node, slots, host it shares): the nodes that share one host
/// divide their slots (that host's cores) between them, rounded up so that each keeps at
/// least one. Three nodes on a two-core machine run three tasks at once, not six: on one
/// machine, a cluster runs about as many as one process would. A node that says no host
/// (given its `--slots`, or of an older build) keeps its slots.
pub fn host_shares(nodes: Vec<(NodeId, u32, Option<String>)>) -> Vec<NodeSlots> {
    let mut on_host: std::collections::HashMap<&str, u32> = std::collections::HashMap::new();
    for (_, _, host) in &nodes {
        if let Some(h) = host {
            *on_host.entry(h.as_str()).or_default() += 1;
        }
    }
    nodes
        .iter()
        .map(|(id, slots, host)| {
            let sharing = host
                .as_deref()
                .and_then(|h| on_host.get(h))
                .copied()
                .unwrap_or(1);
            NodeSlots {
                node: *id,
                slots: slots.div_ceil(sharing.max(1)).max(1),
            }
        })
        .collect()
}

/// Every member's and plain worker's id (this node's included), in id order.
pub fn member_ids(node: &Node) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = match node.raft.get() {
        Some(h) if node.is_member() => {
            let m = shoal_raft::metrics(&h.raft);
            let workers = h
                .applied
                .read_now()
                .state
                .workers
                .keys()
                .copied()
                .collect::<Vec<_>>();
            m.membership_config
                .membership()
                .nodes()
                .map(|(&id, _)| id)
                .chain(workers)
                .collect()
        }
        _ => node
            .pushed
            .read(|t| t.map(|t| t.roster.keys().copied().collect()))
            .unwrap_or_default(),
    };
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Node `id`'s record: from the Raft membership or the applied plain workers on a node
/// that has a membership, else from the roster the leader pushed.
pub fn record_of(node: &Node, id: NodeId) -> Option<NodeInfo> {
    if let Some(h) = node.raft.get() {
        let m = shoal_raft::metrics(&h.raft);
        if m.membership_config.membership().nodes().next().is_some() {
            return m
                .membership_config
                .get_node(&id)
                .cloned()
                .or_else(|| h.applied.read_now().state.workers.get(&id).cloned());
        }
    }
    node.pushed.record(id)
}

/// The leader as this node knows it: Raft's on a member, the one that pushed last on a
/// plain worker.
pub fn leader(node: &Node) -> Option<NodeId> {
    let raft = node
        .raft
        .get()
        .and_then(|h| shoal_raft::metrics(&h.raft).current_leader);
    raft.or_else(|| node.pushed.leader())
}

/// Whether node `id` is a voter, from the Raft membership.
pub fn is_voter(node: &Node, id: NodeId) -> bool {
    let Some(h) = node.raft.get() else {
        return false;
    };
    let m = shoal_raft::metrics(&h.raft);
    let voter = m
        .membership_config
        .membership()
        .voter_ids()
        .any(|v| v == id);
    voter
}

/// The peer id of member or plain worker `id` ([`record_of`]).
pub fn peer_of(node: &Node, id: NodeId) -> Option<shoal_net::PeerId> {
    record_of(node, id)?.peer_id.parse().ok()
}

/// Where to reach member or plain worker `id`: its peer id and the addresses in its record
/// ([`record_of`]).
pub fn reach(node: &Node, id: NodeId) -> Option<shoal_net::PeerRef> {
    crate::cluster::rpc::peer_ref(&record_of(node, id)?).ok()
}

/// What a peer is to this node, from one look at the Raft membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A member or plain worker: its node id and this very PeerId are in the membership or
    /// the workers (the transport authenticated the peer by its key).
    Member(NodeId),
    /// Not a member.
    Stranger,
    /// This node knows no membership yet: it has not received its first log entries (a new
    /// voter of a bootstrap, a learner being added), and takes Raft RPCs from any key holder
    /// until it does.
    NoMembership,
}

impl Standing {
    /// The member's id, if it is one.
    pub fn member(self) -> Option<NodeId> {
        match self {
            Standing::Member(id) => Some(id),
            _ => None,
        }
    }
}

/// What `peer` is to this node: judged on the membership and the applied workers, or on a
/// plain worker by the roster the leader pushed.
pub fn standing(node: &Node, peer: &shoal_net::PeerId) -> Standing {
    let knows = node.raft.get().is_some_and(|h| {
        shoal_raft::metrics(&h.raft)
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    }) || node.pushed.leader().is_some();
    if !knows {
        return Standing::NoMembership;
    }
    let id = crate::cluster::identity::node_id(peer);
    match record_of(node, id) {
        Some(info) if info.peer_id == peer.to_string() => Standing::Member(id),
        _ => Standing::Stranger,
    }
}

/// The member id of `peer`, if it is a member.
pub fn member_id(node: &Node, peer: &shoal_net::PeerId) -> Option<NodeId> {
    standing(node, peer).member()
}

/// Why `peer`, asking in the name of `cluster_id`, may not exchange data with this node;
/// `None` for a member of this node's cluster that speaks a protocol it reads.
pub fn data_refusal(node: &Node, peer: &shoal_net::PeerId, cluster_id: u64) -> Option<String> {
    match node.cluster_id() {
        Some(ours) if ours == cluster_id => member_id(node, peer).is_none().then(|| {
            format!("peer {peer} is not a member of this cluster: data is for members only")
        }),
        Some(ours) => {
            node.peers.note_foreign(*peer, cluster_id, ours);
            Some(crate::cluster::node::foreign_reason(ours))
        }
        None => Some("this node has no cluster yet".into()),
    }
    .or_else(|| node.peers.incompatible(peer))
}
