//! Copies of an object on other nodes: which nodes, and the pushes.

use std::sync::Arc;

use shoal_jobs::cluster::NodeId;
use tracing::warn;

use crate::cluster::members::{live_nodes, peer_of};
use crate::cluster::node::Node;

/// Copy a local object to `targets` (see [`replica_targets`]). Returns this node and the
/// nodes that now hold it.
pub async fn replicate(
    node: &Arc<Node>,
    key: &str,
    path: &std::path::Path,
    targets: &[NodeId],
) -> Vec<NodeId> {
    let pushes = targets.iter().map(|&t| {
        let node = Arc::clone(node);
        async move {
            let peer = peer_of(&node, t).ok_or_else(|| "not a member".to_string())?;
            crate::storage::data::push_file(&node, peer, key, path)
                .await
                .map(|_| t)
                .map_err(|e| e.to_string())
        }
    });
    let mut holders = vec![node.id];
    for r in futures::future::join_all(pushes).await {
        match r {
            Ok(t) => holders.push(t),
            Err(e) => warn!(%key, error = %e, "copying to another node failed"),
        }
    }
    holders
}

/// Up to `copies` live nodes other than this one, rotated by `spread` so copies spread out.
pub fn replica_targets(node: &Node, copies: u32, spread: u32) -> Vec<NodeId> {
    // A draining node takes no copy: it is about to go.
    let draining =
        crate::cluster::node::with_jobs(node, |t| t.draining.clone()).unwrap_or_default();
    let others: Vec<NodeId> = live_nodes(node)
        .into_iter()
        .map(|n| n.node)
        .filter(|&n| n != node.id && !draining.contains_key(&n))
        .collect();
    if others.is_empty() {
        return Vec::new();
    }
    let start = spread as usize % others.len();
    others
        .iter()
        .cycle()
        .skip(start)
        .take((copies as usize).min(others.len()))
        .copied()
        .collect()
}
