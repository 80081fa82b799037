//! The replicated job table: every job, its splits and tasks, and every attempt of every
//! task — everything a new manager needs to carry on after the old one died. Raft applies
//! [`Command`]s to it in log order on every node.
//!
//! The invariants: [`Cluster::apply`] is deterministic (no clocks: times come inside the
//! commands), idempotent, and attempt-tagged — a report about an attempt that is not the
//! running one (late, duplicated, superseded) is ignored, so a stale worker can never undo
//! or double-count work.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::counters::Counters;
use crate::partition::Partitioner;
use crate::spec::JobSpec;

mod apply;
mod command;
mod drain;
mod splits;
pub use apply::{MAX_ERROR_CHARS, MAX_HOLDERS, MAX_SPLITS};
pub use command::{Applied, Command, SUBMISSION_COUNTERS};
pub use drain::{Drain, DrainCause, Held};
pub use splits::{InPlace, PartOf, SplitInfo};

use apply::{AttemptOf, Failure};

/// A node's Raft id.
pub type NodeId = u64;

/// Map or reduce.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum TaskKind {
    /// A map task (one split).
    Map,
    /// A reduce task (one partition).
    Reduce,
}

/// Where a task or attempt stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TaskState {
    /// Waiting for a node.
    Pending,
    /// Assigned and running.
    Running,
    /// Finished; its output is recorded.
    Done,
    /// Failed (for a task: out of attempts).
    Failed,
}

/// Where a job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    /// Tasks are being run.
    Running,
    /// Every reduce task finished.
    Succeeded,
    /// A task ran out of attempts, or the job could not run.
    Failed,
    /// Cancelled by a user.
    Killed,
}

/// One try at a task, on one node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    /// From 1.
    pub attempt: u32,
    /// Where it runs.
    pub node: NodeId,
    /// Running, Done or Failed.
    pub state: TaskState,
    /// When it was assigned (ms since the epoch, from the command).
    pub start_ms: u64,
    /// When it ended.
    pub end_ms: Option<u64>,
    /// Why it failed.
    pub error: Option<String>,
    /// How the user's program ended, when that is why it failed (`exit 3`, `signal 9 …`).
    #[serde(default)]
    pub exit: Option<String>,
    /// The tail of the program's stderr, when it failed.
    #[serde(default)]
    pub stderr_tail: Option<String>,
    /// Ended by a lost node or lost output, not by its own fault: does not count toward
    /// the job's `max_attempts`.
    #[serde(default)]
    pub lost: bool,
    /// A speculative backup of a slow attempt still running.
    #[serde(default)]
    pub backup: bool,
}

/// A map or reduce task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Task {
    /// Map or reduce.
    pub kind: TaskKind,
    /// Split index (map) or partition (reduce).
    pub index: u32,
    /// Pending, Running, Done or Failed.
    pub state: TaskState,
    /// Every attempt, in order.
    pub attempts: Vec<Attempt>,
    /// Sizes of what the successful attempt wrote (per partition for a map).
    pub output_sizes: Vec<u64>,
    /// Checksums of what the successful attempt wrote, one per size ([`crate::checksum`]);
    /// empty when its report had none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_checksums: Vec<u32>,
    /// Nodes holding the successful attempt's output (a reduce's part file and its copies).
    #[serde(default)]
    pub holders: Vec<NodeId>,
    /// The successful attempt's counters (taken back from the job's if its output is lost).
    #[serde(default)]
    pub counters: Counters,
}

impl Task {
    pub(crate) fn new(kind: TaskKind, index: u32) -> Task {
        Task {
            kind,
            index,
            state: TaskState::Pending,
            attempts: Vec::new(),
            output_sizes: Vec::new(),
            output_checksums: Vec::new(),
            holders: Vec::new(),
            counters: Counters::default(),
        }
    }

    /// The attempt whose output the job uses: the one that finished first.
    pub fn accepted(&self) -> Option<&Attempt> {
        self.attempts.iter().find(|a| a.state == TaskState::Done)
    }

    /// The task's id: `m-00003` or `r-00001`.
    pub fn id(&self) -> String {
        match self.kind {
            TaskKind::Map => crate::task::map_task_id(self.index),
            TaskKind::Reduce => crate::task::reduce_task_id(self.index),
        }
    }

    /// The node of the successful attempt.
    pub fn done_on(&self) -> Option<NodeId> {
        self.attempts
            .iter()
            .find(|a| a.state == TaskState::Done)
            .map(|a| a.node)
    }

    /// Attempts that count toward `max_attempts` (not ended by a lost node or output).
    pub fn counted_attempts(&self) -> u32 {
        self.attempts.iter().filter(|a| !a.lost).count() as u32
    }

    /// Attempts still running (two while a backup races the original).
    pub fn running_attempts(&self) -> impl Iterator<Item = &Attempt> {
        self.attempts
            .iter()
            .filter(|a| a.state == TaskState::Running)
    }

    /// Pending again when no attempt is left running, else still running.
    fn settle(&mut self) {
        self.state = if self.running_attempts().next().is_some() {
            TaskState::Running
        } else {
            TaskState::Pending
        };
    }

    fn running(&mut self, attempt: u32) -> Option<&mut Attempt> {
        self.attempts
            .iter_mut()
            .find(|a| a.attempt == attempt && a.state == TaskState::Running)
    }
}

/// A job in the table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    /// `j-…`.
    pub id: String,
    /// What was submitted.
    pub spec: JobSpec,
    /// Where it stands.
    pub state: JobState,
    /// When it was accepted.
    pub submitted_ms: u64,
    /// When it ended.
    pub finished_ms: Option<u64>,
    /// Its input splits.
    pub splits: Vec<SplitInfo>,
    /// Its partitioner (ranges already sampled).
    pub partitioner: Partitioner,
    /// One map task per split.
    pub maps: Vec<Task>,
    /// One reduce task per partition.
    pub reduces: Vec<Task>,
    /// Counters of successful attempts.
    pub counters: Counters,
    /// Counters (`group.name`) whose sum went past `i64`'s range and stays at the bound it
    /// passed: their value is a floor (or ceiling), not the sum.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters_saturated: Vec<String>,
    /// Why it failed or was killed.
    pub error: Option<String>,
    /// Nodes where the job's `--setup` ran to success, once each (the `setup_runs`
    /// counter).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub setup_nodes: Vec<NodeId>,
}

impl Job {
    /// The task of `kind` with `index`.
    pub fn task(&self, kind: TaskKind, index: u32) -> Option<&Task> {
        match kind {
            TaskKind::Map => self.maps.get(index as usize),
            TaskKind::Reduce => self.reduces.get(index as usize),
        }
    }

    fn task_mut(&mut self, kind: TaskKind, index: u32) -> Option<&mut Task> {
        match kind {
            TaskKind::Map => self.maps.get_mut(index as usize),
            TaskKind::Reduce => self.reduces.get_mut(index as usize),
        }
    }

    /// Put finished map `index` back to pending because its output is gone — unless every
    /// reduce is already done. Its counters are taken back; the re-run adds them again.
    fn rerun_map(&mut self, index: u32, at_ms: u64, why: &str) -> bool {
        if crate::planted::active(crate::planted::Bug::NoRerun) {
            return false;
        }
        if self.reduces.iter().all(|t| t.state == TaskState::Done) {
            return false;
        }
        let Some(t) = self.maps.get_mut(index as usize) else {
            return false;
        };
        let Some(a) = t.attempts.iter_mut().find(|a| a.state == TaskState::Done) else {
            return false;
        };
        a.state = TaskState::Failed;
        a.end_ms = a.end_ms.or(Some(at_ms));
        a.error = Some(format!("finished, but {why}"));
        a.lost = true;
        t.state = TaskState::Pending;
        t.output_sizes.clear();
        t.output_checksums.clear();
        t.holders.clear();
        let saturated = self.counters.unmerge(&t.counters);
        t.counters = Counters::default();
        self.saturated(saturated);
        true
    }

    /// Record counters that saturated (each once; there are at most as many as counters).
    fn saturated(&mut self, names: Vec<String>) {
        for n in names {
            if !self.counters_saturated.contains(&n) {
                self.counters_saturated.push(n);
            }
        }
    }

    /// The phase the job is in and its tasks: maps until every map is done, then reduces.
    pub fn phase(&self) -> (TaskKind, &[Task]) {
        if self.maps_done() {
            (TaskKind::Reduce, &self.reduces)
        } else {
            (TaskKind::Map, &self.maps)
        }
    }

    /// Whether every map task is done (reduces may start).
    pub fn maps_done(&self) -> bool {
        self.maps.iter().all(|t| t.state == TaskState::Done)
    }

    /// The tasks that write its part files: its reduces, or a map-only job's maps.
    pub fn part_writers(&self) -> &[Task] {
        if self.spec.reducers == 0 {
            &self.maps
        } else {
            &self.reduces
        }
    }

    /// The part files its finished reduces wrote (a map-only job's maps), in order.
    pub fn parts(&self) -> Vec<PartRef> {
        self.part_writers()
            .iter()
            .filter_map(|t| {
                Some(PartRef {
                    index: t.index,
                    name: self.spec.part_name(t.index),
                    attempt: t.accepted()?.attempt,
                    size: t.output_sizes.first().copied().unwrap_or(0),
                    checksum: t.output_checksums.first().copied(),
                    holders: t.holders.clone(),
                })
            })
            .collect()
    }
}

/// A part file as the table knows it: which attempt wrote it, its size and checksum, and the
/// nodes that hold a copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartRef {
    /// Its partition.
    pub index: u32,
    /// Its file name: `part-00003`, with `.gz` or `.zst` under `--compress-output`.
    pub name: String,
    /// The reduce attempt that wrote it (its object's key names the attempt).
    pub attempt: u32,
    /// Bytes.
    pub size: u64,
    /// Its checksum, when the reduce's report had one.
    pub checksum: Option<u32>,
    /// Nodes holding a copy.
    pub holders: Vec<NodeId>,
}

/// Most characters of a lost map output's reason the table keeps.
pub const MAX_REASON_CHARS: usize = 500;

/// The whole table.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cluster {
    /// Jobs by id (ids sort by submission).
    pub jobs: BTreeMap<String, Job>,
    /// Nodes given no new task (`shoal drain`, or stopping).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub draining: BTreeMap<NodeId, Drain>,
}

impl Cluster {
    /// The jobs whose part files running jobs read in place (`shoal://JOB`): they stay in
    /// the table, their parts on disk, until those jobs end.
    pub fn read_in_place(&self) -> std::collections::BTreeSet<&str> {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .flat_map(|j| j.splits.iter().filter_map(|s| s.part_of.as_ref()))
            .map(|p| p.job.as_str())
            .collect()
    }

    /// Apply one committed command (one method for each, in `cluster/apply.rs`).
    pub fn apply(&mut self, cmd: Command) -> Applied {
        match cmd {
            Command::SubmitJob {
                id,
                spec,
                splits,
                partitioner,
                at_ms,
                counters,
            } => self.submit_job(id, *spec, splits, partitioner, at_ms, &counters),
            Command::Assign {
                job,
                kind,
                index,
                attempt,
                node,
                backup,
                at_ms,
            } => self.assign(
                AttemptOf {
                    job,
                    kind,
                    index,
                    attempt,
                },
                node,
                backup,
                at_ms,
            ),
            Command::TaskFinished {
                job,
                kind,
                index,
                attempt,
                sizes,
                checksums,
                holders,
                counters,
                at_ms,
            } => self.task_finished(
                AttemptOf {
                    job,
                    kind,
                    index,
                    attempt,
                },
                (sizes, checksums),
                holders,
                counters,
                at_ms,
            ),
            Command::TaskFailed {
                job,
                kind,
                index,
                attempt,
                error,
                exit,
                stderr_tail,
                lost,
                at_ms,
            } => self.task_failed(
                AttemptOf {
                    job,
                    kind,
                    index,
                    attempt,
                },
                Failure {
                    error,
                    exit,
                    stderr_tail,
                    lost,
                },
                at_ms,
            ),
            Command::NodeLost { node, at_ms } => self.node_lost(node, at_ms),
            Command::MapOutputLost {
                job,
                index,
                attempt,
                reason,
                at_ms,
            } => self.map_output_lost(&job, (index, attempt), reason.as_deref(), at_ms),
            Command::Forget { job } => self.forget(&job),
            Command::KillJob { job, at_ms } => self.kill_job(&job, at_ms),
            Command::SetupRan { job, node } => self.setup_ran(&job, node),
            Command::Drain { node, cause, at_ms } => self.drain(node, cause, at_ms),
            Command::Undrain { node } => self.undrain(node),
            Command::AddHolders { job, what, nodes } => self.add_holders(&job, what, &nodes),
        }
    }
}

#[cfg(test)]
mod tests;
