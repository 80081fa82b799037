//! The replicated state of a Shoal cluster, applied by Raft on every node. Today it holds
//! the cluster's identity; the job and task table joins it with distributed jobs.
//!
//! The invariant: `apply` is deterministic — no clocks, no randomness, no I/O.

use serde::{Deserialize, Serialize};
use shoal_raft::AppState;

/// The cluster's replicated state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster id, recorded by the node that bootstrapped the cluster.
    pub cluster_id: Option<u64>,
    /// Commands applied (a cheap way to see that logs agree).
    pub commands: u64,
}

/// Changes to [`ClusterState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Record the cluster id (the bootstrapper's first command).
    Init {
        /// The id.
        cluster_id: u64,
    },
}

impl AppState for ClusterState {
    type Command = Command;
    type Response = ();

    fn apply(&mut self, cmd: Command) {
        self.commands += 1;
        match cmd {
            Command::Init { cluster_id } => {
                self.cluster_id.get_or_insert(cluster_id);
            }
        }
    }
}
