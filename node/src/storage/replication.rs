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

#[cfg(test)]
mod tests {
    use super::rotated;

    #[test]
    fn copies_go_to_distinct_takers_and_spread_with_the_object() {
        let takers = [3, 5, 8];
        assert_eq!(rotated(&takers, 2, 0), vec![3, 5]);
        assert_eq!(rotated(&takers, 2, 2), vec![8, 3]);
        // Never more copies than takers, never one twice.
        assert_eq!(rotated(&takers, 5, 4), vec![5, 8, 3]);
        assert!(rotated(&[], 2, 1).is_empty());
        // Over as many objects as takers, each taker gets the same number of copies.
        let mut per = std::collections::BTreeMap::new();
        for spread in 0..3 {
            for t in rotated(&takers, 2, spread) {
                *per.entry(t).or_insert(0) += 1;
            }
        }
        assert_eq!(per.values().collect::<Vec<_>>(), vec![&2, &2, &2]);
    }
}
