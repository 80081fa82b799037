//! Inputs read where they lie (`node:` and `shared:`, see `shoal_jobs::inplace`): this
//! node's listing of its files under `--input-root` for a job being submitted, and where a
//! map finds its split.

use std::path::PathBuf;

use shoal_jobs::cluster::SplitInfo;
use shoal_net::wire::InputSplit;

use crate::cluster::node::Node;

/// Why this node cannot read inputs in place.
fn no_root(node: &Node) -> String {
    format!(
        "node {:016x} has no --input-root: node: and shared: inputs are read under every node's --input-root",
        node.id
    )
}

impl Node {
    /// This node's files matching `pattern` under its input root, as line-aligned splits.
    pub(crate) async fn list_inputs(
        &self,
        pattern: String,
        split_size: u64,
        max_record: u64,
    ) -> Result<Vec<InputSplit>, String> {
        let root = self
            .settings
            .input_root
            .clone()
            .ok_or_else(|| no_root(self))?;
        let listed = tokio::task::spawn_blocking(move || {
            shoal_jobs::inplace::list(&root, &pattern, split_size.max(1024), max_record)
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("node {:016x}: {e}", self.id))?;
        if listed.len() > shoal_jobs::cluster::MAX_SPLITS {
            return Err(format!(
                "node {:016x}: more than {} splits match",
                self.id,
                shoal_jobs::cluster::MAX_SPLITS
            ));
        }
        Ok(listed
            .into_iter()
            .map(|s| InputSplit {
                path: s.path,
                offset: s.offset,
                len: s.len,
            })
            .collect())
    }

    /// The file and offset of an in-place split on this node, its path checked again to lie
    /// inside the input root; `None` for a split Shoal stores.
    pub(crate) fn in_place_split(
        &self,
        split: &SplitInfo,
    ) -> Option<Result<(PathBuf, u64), String>> {
        let at = split.in_place.as_ref()?;
        if at.node.is_some_and(|n| n != self.id) {
            return Some(Err(format!(
                "split {} is on node {:016x}'s disk, not on this node's",
                split.index,
                at.node.unwrap_or_default()
            )));
        }
        let Some(root) = &self.settings.input_root else {
            return Some(Err(no_root(self)));
        };
        Some(
            shoal_jobs::inplace::resolve(root, &at.path)
                .map(|p| (p, at.offset))
                .map_err(|e| e.to_string()),
        )
    }
}
