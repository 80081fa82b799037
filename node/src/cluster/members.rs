//! Who is in the cluster, as this node sees it: the members it can reach and their slots,
//! and a member's peer id.

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
