//! The manager loop: on the Raft leader only, read the applied job table, ask the pure
//! scheduler what to start, and propose it as one batch. It wakes whenever Raft's metrics
//! change (a command applied, a leader change) and at least twice a second.
//!
//! The invariant: the loop proposes only while this node is the leader, and only what
//! [`shoal_jobs::scheduler::plan`] returned for the state it read; a stale proposal is
//! harmless because every command is attempt-tagged.

use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::scheduler::{plan, NodeSlots};
use shoal_raft::ServerState;
use tracing::{debug, warn};

use crate::node::Node;
use crate::state::Command;

/// How often the loop looks even when nothing changed.
const TICK: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Members this node can reach (itself included) and their slots.
pub fn live_nodes(node: &Node) -> Vec<NodeSlots> {
    let Some(h) = node.raft.get() else {
        return Vec::new();
    };
    let m = shoal_raft::metrics(&h.raft);
    let hellos = node.hellos();
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

/// Run forever.
pub async fn run(node: Arc<Node>) {
    let h = node.raft_started().await;
    let mut changes = h.raft.metrics();
    loop {
        crate::node::next_change(&mut changes, TICK).await;
        let m = shoal_raft::metrics(&h.raft);
        if m.current_leader != Some(node.id) || m.state != ServerState::Leader {
            continue;
        }
        let nodes = live_nodes(&node);
        let cmds = {
            let applied = h.applied.read().unwrap_or_else(|p| p.into_inner());
            plan(&applied.state.jobs, &nodes, now_ms())
        };
        if cmds.is_empty() {
            continue;
        }
        debug!(n = cmds.len(), "proposing assignments");
        if let Err(e) = node.propose_once(&Command::Batch(cmds)).await {
            warn!(error = %e, "proposing assignments failed; will retry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The peer id of member `id`, from the Raft membership.
pub fn peer_of(node: &Node, id: NodeId) -> Option<shoal_net::PeerId> {
    let h = node.raft.get()?;
    let m = shoal_raft::metrics(&h.raft);
    let info = m.membership_config.get_node(&id)?;
    info.peer_id.parse().ok()
}
