//! The node stops when its Raft does. A Raft that stopped on a fatal error — its store could
//! not be written: a full disk, a failed device — would leave the node serving a table that
//! no longer changes and accepting jobs it cannot commit. A process that exits non-zero and
//! says why is better: it is restarted, and catches up, once its disk has room.

use std::sync::Arc;

use tracing::error;

use crate::cluster::node::Node;
use crate::supervisor::Stop;

/// Returns once this node's Raft has stopped on a fatal error (the supervisor then stops the
/// node, non-zero).
pub async fn until_raft_fails(node: Arc<Node>, mut stop: Stop) {
    use shoal_raft::WatchReceiver;
    let Some(h) = stop.or(node.raft_started()).await else {
        return;
    };
    let mut changes = h.raft.metrics();
    loop {
        if let Err(e) = &changes.borrow_watched().running_state {
            error!(error = %e, "Raft stopped: its store could not be written (is the data dir's disk full?); the node stops rather than serve a table that no longer changes");
            return;
        }
        let Some(changed) = stop.or(changes.changed()).await else {
            return;
        };
        if changed.is_err() {
            error!("Raft stopped; the node stops rather than serve a table that no longer changes");
            return;
        }
    }
}
