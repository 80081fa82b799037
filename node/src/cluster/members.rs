//! Who is in the cluster, as this node sees it: the members it can reach and their slots,
//! a member's peer id, and the member a peer is.

use shoal_jobs::cluster::NodeId;
use shoal_jobs::scheduler::NodeSlots;

use crate::cluster::node::Node;

/// Members this node can reach (itself included) and their slots.
pub fn live_nodes(node: &Node) -> Vec<NodeSlots> {
    let Some(h) = node.raft.get() else {
        return Vec::new();
    };
    let m = shoal_raft::metrics(&h.raft);
    let hellos = node.peers.hellos();
    let mut out: Vec<NodeSlots> = m
        .membership_config
        .membership()
        .nodes()
        .filter_map(|(&id, _)| {
            if id == node.id {
                return Some(NodeSlots {
                    node: id,
                    slots: node.settings.slots,
                });
            }
            hellos.iter().find(|h| h.node_id == id).map(|h| NodeSlots {
                node: id,
                slots: h.info.slots.max(1),
            })
        })
        .collect();
    out.sort_by_key(|n| n.node);
    out
}

/// The peer id of member `id`, from the Raft membership.
pub fn peer_of(node: &Node, id: NodeId) -> Option<shoal_net::PeerId> {
    let h = node.raft.get()?;
    let m = shoal_raft::metrics(&h.raft);
    let info = m.membership_config.get_node(&id)?;
    info.peer_id.parse().ok()
}

/// The member id of `peer`: its node id, when the Raft membership lists that id with this
/// very PeerId (the transport authenticated the peer by its key). None for anyone else.
pub fn member_id(node: &Node, peer: &shoal_net::PeerId) -> Option<NodeId> {
    let h = node.raft.get()?;
    let id = crate::cluster::identity::node_id(peer);
    let m = shoal_raft::metrics(&h.raft);
    let info = m.membership_config.get_node(&id)?;
    (info.peer_id == peer.to_string()).then_some(id)
}

/// Whether this node knows a membership yet: a node that has not received its first log
/// entries (a new voter of a bootstrap, a learner being added) does not, and takes Raft
/// RPCs from any key holder until it does.
pub fn knows_members(node: &Node) -> bool {
    node.raft.get().is_some_and(|h| {
        shoal_raft::metrics(&h.raft)
            .membership_config
            .membership()
            .nodes()
            .next()
            .is_some()
    })
}

/// The ids of every member (voters and learners).
pub fn member_ids(node: &Node) -> std::collections::BTreeSet<NodeId> {
    node.raft.get().map_or_else(Default::default, |h| {
        shoal_raft::metrics(&h.raft)
            .membership_config
            .membership()
            .nodes()
            .map(|(&id, _)| id)
            .collect()
    })
}
