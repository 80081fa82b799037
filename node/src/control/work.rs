//! What the worker loop and an attempt's execution share, wherever the attempt runs (as
//! processes and files in a node, in memory in the simulator): which attempt, what it
//! needs from the table, its stop flag, and what it reports.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use shoal_jobs::cluster::{self, NodeId, SplitInfo, TaskKind};
use shoal_jobs::counters::Counters;
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::JobSpec;

use crate::sync::Locked;

/// One attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// Job id.
    pub job: String,
    /// Map or reduce.
    pub kind: TaskKind,
    /// Task index.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
}

/// One map's output as a reduce needs it.
#[derive(Debug, Clone)]
pub struct MapOut {
    /// The map task.
    pub map: u32,
    /// The node that ran it.
    pub node: NodeId,
    /// Its successful attempt.
    pub attempt: u32,
    /// Where the reduce's partition starts in the map's output.
    pub offset: u64,
    /// Bytes of the reduce's partition.
    pub size: u64,
    /// Their checksum, when the map's report had one.
    pub checksum: Option<u32>,
}

/// An attempt to start, with what it needs from the table.
pub struct Work {
    /// Which attempt.
    pub key: AttemptKey,
    /// Its job's spec.
    pub spec: Arc<JobSpec>,
    /// Its job's partitioner.
    pub partitioner: Partitioner,
    /// A map's split.
    pub split: Option<SplitInfo>,
    /// A reduce's inputs, or why it cannot run now (not its fault).
    pub inputs: Result<Vec<MapOut>, String>,
    /// When the manager assigned it, by the manager's clock (ms since the epoch).
    pub assigned_ms: u64,
}

/// What kind of failure an attempt had: what the worker decides on. The text beside it says
/// it to people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The node's disk (or quota) is full: the node's fault, the task runs elsewhere.
    DiskFull,
    /// An input could not be had (a split, a map's output): not the task's fault.
    LostInput,
    /// The program exited with a failing status.
    Exit,
    /// A signal killed the program.
    Signal,
    /// The program made no progress within its timeout.
    Timeout,
    /// The memory controller killed the program.
    OutOfMemory,
    /// Anything else (a refused spec, a corrupt input, the node's own error).
    Other,
}

/// Why an attempt failed, as its report carries it.
#[derive(Debug)]
pub struct Failure {
    /// What kind.
    pub cause: Cause,
    /// What went wrong.
    pub error: String,
    /// The program's exit, when a program failed.
    pub exit: Option<String>,
    /// The end of its stderr.
    pub stderr_tail: Option<String>,
    /// Not the task's fault (does not count toward its attempts).
    pub lost: bool,
    /// The map whose output could not be fetched, and its attempt.
    pub lost_map: Option<(u32, u32)>,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure {
            cause: Cause::Other,
            error,
            exit: None,
            stderr_tail: None,
            lost: false,
            lost_map: None,
        }
    }
}

impl Failure {
    /// A failure that is not the task's fault: it does not count toward its attempts.
    pub fn lost(error: String) -> Self {
        Failure {
            cause: Cause::LostInput,
            lost: true,
            ..Failure::from(error)
        }
    }

    /// A failure of this node's I/O while doing `what`: a full disk says so in its cause.
    pub fn io(what: String, e: &std::io::Error) -> Self {
        Failure {
            cause: if shoal_jobs::error::is_disk_full(e) {
                Cause::DiskFull
            } else {
                Cause::Other
            },
            ..Failure::from(format!("{what}: {e}"))
        }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        Failure::from(error.to_string())
    }
}

impl From<shoal_jobs::Error> for Failure {
    fn from(e: shoal_jobs::Error) -> Self {
        use shoal_jobs::Ended;
        let error = e.to_string();
        let disk_full = e.is_disk_full();
        match e {
            shoal_jobs::Error::Program {
                exit, stderr_tail, ..
            } => Failure {
                cause: match &exit {
                    Some(Ended::Exit(_)) | Some(Ended::Unknown) => Cause::Exit,
                    Some(Ended::Signal(..)) => Cause::Signal,
                    Some(Ended::Timeout(_)) => Cause::Timeout,
                    Some(Ended::OutOfMemory(_)) => Cause::OutOfMemory,
                    None => Cause::Other,
                },
                exit: exit.map(|e| e.to_string()),
                stderr_tail: Some(stderr_tail).filter(|t| !t.is_empty()),
                ..Failure::from(error)
            },
            _ if disk_full => Failure {
                cause: Cause::DiskFull,
                ..Failure::from(error)
            },
            _ => Failure::from(error),
        }
    }
}

/// What a successful attempt reports.
pub struct Done {
    /// Bytes of output (of each partition, for a map).
    pub sizes: Vec<u64>,
    /// Their checksums, one per size.
    pub checksums: Vec<u32>,
    /// The task's counters.
    pub counters: Counters,
    /// The nodes that hold the output (empty: this node only).
    pub holders: Vec<NodeId>,
}

/// A running attempt's shared state: its stop flag and progress.
#[derive(Debug)]
pub struct AttemptState {
    /// Set when the table no longer wants the attempt: it stops and does not report.
    pub stop: AtomicBool,
    /// Bytes it has read so far.
    pub progress: AtomicU64,
    /// When it started.
    pub started: Instant,
}

impl AttemptState {
    /// A state for an attempt starting now.
    pub fn new() -> Self {
        AttemptState {
            stop: AtomicBool::new(false),
            progress: AtomicU64::new(0),
            started: Instant::now(),
        }
    }
}

impl Default for AttemptState {
    fn default() -> Self {
        Self::new()
    }
}

/// The attempts a node runs, by key.
pub type Running = Arc<Mutex<HashMap<AttemptKey, Arc<AttemptState>>>>;

/// The attempts in `running` as a heartbeat names them, in (job, task, attempt) order;
/// `elapsed` says how long each has run (ms).
pub fn running_attempts(
    running: &Running,
    elapsed: impl Fn(&AttemptState) -> u64,
) -> Vec<shoal_net::wire::RunningAttempt> {
    let mut attempts: Vec<shoal_net::wire::RunningAttempt> = running
        .locked()
        .iter()
        .map(|(k, st)| shoal_net::wire::RunningAttempt {
            job: k.job.clone(),
            task: task_id(k),
            attempt: k.attempt,
            progress_bytes: st.progress.load(std::sync::atomic::Ordering::Relaxed),
            elapsed_ms: elapsed(st),
        })
        .collect();
    attempts.sort_by(|a, b| (&a.job, &a.task, a.attempt).cmp(&(&b.job, &b.task, b.attempt)));
    attempts
}

/// An attempt's task id (`m-00003`, `r-00001`), for logs.
pub fn task_id(k: &AttemptKey) -> String {
    match k.kind {
        TaskKind::Map => shoal_jobs::task::map_task_id(k.index),
        TaskKind::Reduce => shoal_jobs::task::reduce_task_id(k.index),
    }
}

/// A finished attempt's report: its commands, in order, and the attempt for the logs.
pub type Report = (Vec<cluster::Command>, AttemptKey);
