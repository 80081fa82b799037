//! The replicated state of a Shoal cluster, applied by Raft on every node: the cluster's
//! identity, its plain workers and the job table (`shoal_jobs::cluster`).
//!
//! The invariant: `apply` is deterministic — no clocks, no randomness, no I/O.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_jobs::cluster::{Applied, Cluster, NodeId};
use shoal_raft::{AppState, NodeInfo};

/// The largest command the log takes (a job's spec with its shipped files, its splits):
/// half the transport's frame, so an entry always fits in one message. Checked wherever a
/// command enters: `POST /api/v1/jobs`, a member's forwarded proposal, and every write to
/// Raft (`cluster::propose::write_local`).
pub const MAX_COMMAND_BYTES: usize = shoal_net::codec::MAX_COMMAND_BYTES;

/// The cluster's replicated state.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterState {
    /// The cluster id, recorded by the first leader.
    pub cluster_id: Option<u64>,
    /// Commands applied (a cheap way to see that logs agree).
    pub commands: u64,
    /// Every job, task and attempt.
    #[serde(default)]
    pub jobs: Cluster,
    /// Plain workers: nodes of the cluster that are not Raft members (beyond `--learners`),
    /// and their records. The leader pushes each its assignments (`cluster::workers`).
    #[serde(default)]
    pub workers: BTreeMap<NodeId, NodeInfo>,
}

/// Changes to [`ClusterState`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Command {
    /// Record the cluster id (the first leader's first command).
    Init {
        /// The id.
        cluster_id: u64,
    },
    /// A change to the job table.
    Jobs(shoal_jobs::cluster::Command),
    /// Several changes to the job table, applied in order (the manager's assignments).
    Batch(Vec<shoal_jobs::cluster::Command>),
    /// Record a plain worker, or its new record (the leader's, when it joins).
    Worker {
        /// Its id.
        node_id: NodeId,
        /// Its record.
        info: NodeInfo,
    },
    /// A plain worker is one no more (promoted to learner, or removed).
    DropWorker {
        /// Its id.
        node_id: NodeId,
    },
}

impl AppState for ClusterState {
    type Command = Command;
    type Response = Applied;

    fn panicked(why: String) -> Applied {
        Applied::Ignored(why)
    }

    fn apply(&mut self, cmd: Command) -> Applied {
        self.commands = self.commands.wrapping_add(1);
        match cmd {
            Command::Init { cluster_id } => match self.cluster_id {
                None => {
                    self.cluster_id = Some(cluster_id);
                    Applied::Changed
                }
                Some(_) => Applied::Ignored("the cluster id is already recorded".into()),
            },
            Command::Jobs(c) => self.jobs.apply(c),
            Command::Worker { node_id, info } => {
                if self.workers.get(&node_id) == Some(&info) {
                    return Applied::Ignored("the worker's record is unchanged".into());
                }
                self.workers.insert(node_id, info);
                Applied::Changed
            }
            Command::DropWorker { node_id } => match self.workers.remove(&node_id) {
                Some(_) => Applied::Changed,
                None => Applied::Ignored("no such worker".into()),
            },
            Command::Batch(cs) => {
                let mut first_ignored = None;
                let mut changed = false;
                for c in cs {
                    match self.jobs.apply(c) {
                        Applied::Changed => changed = true,
                        Applied::Ignored(why) => {
                            first_ignored.get_or_insert(why);
                        }
                    }
                }
                match (changed, first_ignored) {
                    (false, Some(why)) => Applied::Ignored(why),
                    _ => Applied::Changed,
                }
            }
        }
    }
}
