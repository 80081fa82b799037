//! Copies of an object on other nodes: which nodes, and the pushes.

use std::sync::Arc;

use shoal_jobs::cluster::NodeId;
use tracing::warn;

use crate::storage::Storage;

/// Copy a local object to `targets` (see [`replica_targets`]). Returns this node and the
/// nodes that now hold it.
pub async fn replicate(
    store: &Arc<Storage>,
    key: &str,
    path: &std::path::Path,
    targets: &[NodeId],
) -> Vec<NodeId> {
    let pushes = targets.iter().map(|&t| {
        let store = Arc::clone(store);
        async move {
            let peer = store
                .book
                .peer_of(t)
                .ok_or_else(|| "not a member".to_string())?;
            crate::storage::data::push_file(&store, peer, key, path)
                .await
                .map(|_| t)
                .map_err(|e| e.to_string())
        }
    });
    let mut holders = vec![store.id];
    for r in futures::future::join_all(pushes).await {
        match r {
            Ok(t) => holders.push(t),
            Err(e) => warn!(%key, error = %e, "copying to another node failed"),
        }
    }
    holders
}

/// Up to `copies` live nodes other than this one, rotated by `spread` so copies spread out.
pub fn replica_targets(store: &Storage, copies: u32, spread: u32) -> Vec<NodeId> {
    rotated(&store.book.copy_takers(), copies, spread)
}

/// Up to `copies` of `takers`, starting at the `spread`th.
pub fn rotated(takers: &[NodeId], copies: u32, spread: u32) -> Vec<NodeId> {
    if takers.is_empty() {
        return Vec::new();
    }
    let start = spread as usize % takers.len();
    takers
        .iter()
        .cycle()
        .skip(start)
        .take((copies as usize).min(takers.len()))
        .copied()
        .collect()
}
