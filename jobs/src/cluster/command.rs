//! The commands that change the job table, as Raft carries them, and what applying one did.

use serde::{Deserialize, Serialize};

use super::{DrainCause, Held, NodeId, SplitInfo, TaskKind};
use crate::counters::Counters;
use crate::partition::Partitioner;
use crate::spec::JobSpec;

/// The counters a [`Command::SubmitJob`] may carry from the node that took the upload: how
/// long reading and cutting it took, and how long the splits' copies took after it.
pub const SUBMISSION_COUNTERS: [&str; 2] = ["submission_upload_ms", "submission_copy_ms"];

/// A change to the table, applied by [`Cluster::apply`](super::Cluster::apply).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Command {
    /// Accept a job whose splits are stored.
    SubmitJob {
        /// New job id.
        id: String,
        /// The spec (boxed: it dwarfs every other command).
        spec: Box<JobSpec>,
        /// Its splits and their holders.
        splits: Vec<SplitInfo>,
        /// Its partitioner.
        partitioner: Partitioner,
        /// Now.
        at_ms: u64,
        /// What the submitting node measured: `submission_upload_ms` (reading and cutting
        /// the upload) and `submission_copy_ms` (the splits' copies after it). Added to the
        /// job's counters; any other name is left out.
        #[serde(default, skip_serializing_if = "Counters::is_empty")]
        counters: Counters,
    },
    /// Start attempt `attempt` of a pending task on `node` — or, as a `backup`, a
    /// speculative second attempt of a running one on another node: whichever attempt
    /// finishes first wins and the other is stopped.
    Assign {
        /// Job.
        job: String,
        /// Map or reduce.
        kind: TaskKind,
        /// Task index.
        index: u32,
        /// The attempt being started (one more than the task's attempts so far).
        attempt: u32,
        /// Where (for a backup, never where the running attempt is).
        node: NodeId,
        /// A backup of the task's one running attempt.
        #[serde(default)]
        backup: bool,
        /// Now.
        at_ms: u64,
    },
    /// An attempt finished; its output is on its node.
    TaskFinished {
        /// Job.
        job: String,
        /// Map or reduce.
        kind: TaskKind,
        /// Task index.
        index: u32,
        /// Which attempt.
        attempt: u32,
        /// Output sizes (per partition for a map).
        sizes: Vec<u64>,
        /// Their checksums, one per size (empty: none taken).
        #[serde(default)]
        checksums: Vec<u32>,
        /// Nodes holding the output (empty means the attempt's node).
        #[serde(default)]
        holders: Vec<NodeId>,
        /// The attempt's counters.
        counters: Counters,
        /// Now.
        at_ms: u64,
    },
    /// An attempt failed.
    TaskFailed {
        /// Job.
        job: String,
        /// Map or reduce.
        kind: TaskKind,
        /// Task index.
        index: u32,
        /// Which attempt.
        attempt: u32,
        /// Why (exit status, signal, timeout, stderr tail).
        error: String,
        /// How the user's program ended, when that is why.
        #[serde(default)]
        exit: Option<String>,
        /// The tail of its stderr.
        #[serde(default)]
        stderr_tail: Option<String>,
        /// Not the task's fault (a map output it needed was lost): does not count.
        #[serde(default)]
        lost: bool,
        /// Now.
        at_ms: u64,
    },
    /// A node stopped answering: its running attempts end (lost), and map outputs that
    /// lived only there are run again unless every reduce of their job is done.
    NodeLost {
        /// The node.
        node: NodeId,
        /// Now.
        at_ms: u64,
    },
    /// A reduce could not fetch attempt `attempt` of map `index`: run that map again.
    MapOutputLost {
        /// Job.
        job: String,
        /// The map task.
        index: u32,
        /// Its successful attempt whose output is gone.
        attempt: u32,
        /// Why the reduce could not use it (cut to [`MAX_REASON_CHARS`](super::MAX_REASON_CHARS) where applied).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        /// Now.
        at_ms: u64,
    },
    /// Drop an ended job from the table (the retention limit): its metadata goes, and every
    /// node deletes its files.
    Forget {
        /// Job.
        job: String,
    },
    /// Cancel a running job.
    KillJob {
        /// Job.
        job: String,
        /// Now.
        at_ms: u64,
    },
    /// The job's `--setup` ran to success on `node` (counted once per node).
    SetupRan {
        /// Job.
        job: String,
        /// The node that ran it.
        node: NodeId,
    },
    /// Give `node` no new task; what runs there finishes.
    Drain {
        /// The node.
        node: NodeId,
        /// An operator's, or the node's own as it stops.
        cause: DrainCause,
        /// Now.
        at_ms: u64,
    },
    /// `node` takes tasks again.
    Undrain {
        /// The node.
        node: NodeId,
    },
    /// `nodes` now hold copies of `what` of `job` too (a draining node copied what would be
    /// short without it).
    AddHolders {
        /// Job.
        job: String,
        /// A split or a part.
        what: Held,
        /// The new holders.
        nodes: Vec<NodeId>,
    },
}

/// What applying a command did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum Applied {
    /// The table changed.
    #[default]
    Changed,
    /// Nothing to do: the command was stale, duplicated or about something unknown.
    Ignored(String),
}
