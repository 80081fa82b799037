//! Who is in the cluster, as this node sees it: the members it can reach and their slots,
//! a member's peer id, and the member a peer is.

use std::collections::HashSet;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::scheduler::NodeSlots;

use crate::cluster::node::Node;

/// Members this node can reach (itself included) and their slots.
pub fn live_nodes(node: &Node) -> Vec<NodeSlots> {
    let Some(h) = node.raft.get() else {
        return Vec::new();
    };
    let m = shoal_raft::metrics(&h.raft);
    let slots = node.peers.by_node(|h| h.info.slots.max(1));
    // A node under its disk reserve takes no new task and no copy until it has room, as its
    // last heartbeat says (this node's own included: the worker loop records it each beat).
    let low: HashSet<u64> = node
        .heartbeats
        .locked()
        .iter()
        .filter(|(_, (_, hb))| hb.disk_low)
        .map(|(&id, _)| id)
        .collect();
    let mut out: Vec<NodeSlots> = m
        .membership_config
        .membership()
        .nodes()
        .filter(|(id, _)| !low.contains(id))
        .filter_map(|(&id, _)| {
            if id == node.id {
                return Some(NodeSlots {
                    node: id,
                    slots: node.settings.slots,
                });
            }
            slots.get(&id).map(|&slots| NodeSlots { node: id, slots })
        })
        .collect();
    out.sort_by_key(|n| n.node);
    out
}

/// Every member's id, from the Raft membership (this node's included), in id order.
pub fn member_ids(node: &Node) -> Vec<NodeId> {
    let Some(h) = node.raft.get() else {
        return Vec::new();
    };
    let m = shoal_raft::metrics(&h.raft);
    let mut ids: Vec<NodeId> = m
        .membership_config
        .membership()
        .nodes()
        .map(|(&id, _)| id)
        .collect();
    ids.sort_unstable();
    ids
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

/// The peer id of member `id`, from the Raft membership.
pub fn peer_of(node: &Node, id: NodeId) -> Option<shoal_net::PeerId> {
    let h = node.raft.get()?;
    let m = shoal_raft::metrics(&h.raft);
    let info = m.membership_config.get_node(&id)?;
    info.peer_id.parse().ok()
}

/// What a peer is to this node, from one look at the Raft membership.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    /// A member: its node id and this very PeerId are in the membership (the transport
    /// authenticated the peer by its key).
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

/// What `peer` is to this node.
pub fn standing(node: &Node, peer: &shoal_net::PeerId) -> Standing {
    let Some(h) = node.raft.get() else {
        return Standing::NoMembership;
    };
    let m = shoal_raft::metrics(&h.raft);
    let config = &m.membership_config;
    if config.membership().nodes().next().is_none() {
        return Standing::NoMembership;
    }
    let id = crate::cluster::identity::node_id(peer);
    match config.get_node(&id) {
        Some(info) if info.peer_id == peer.to_string() => Standing::Member(id),
        _ => Standing::Stranger,
    }
}

/// The member id of `peer`, if it is a member.
pub fn member_id(node: &Node, peer: &shoal_net::PeerId) -> Option<NodeId> {
    standing(node, peer).member()
}
