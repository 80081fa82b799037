//! Jobs as the HTTP API shows them (`GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`), read from
//! the replicated job table. Ids are strings.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use shoal_jobs::cluster::{Job, JobState, Task, TaskKind, TaskState};

use crate::cluster::identity::hex;

/// Task counts of one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// Tasks in the phase.
    pub total: usize,
    /// Finished.
    pub done: usize,
    /// Running now.
    pub running: usize,
}

/// One attempt of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AttemptView {
    /// From 1.
    pub attempt: u32,
    /// Node id.
    pub node: String,
    /// "running", "done" or "failed".
    pub state: String,
    /// Assigned at (ms since the epoch).
    pub start_ms: u64,
    /// Ended at.
    pub end_ms: Option<u64>,
    /// Why it failed, in words (with the tail of stderr).
    pub error: Option<String>,
    /// How the program ended when that is why: `exit 3`, `signal 9 (SIGKILL)`, `timeout 600 s`.
    pub exit: Option<String>,
    /// The last lines of the program's stderr.
    pub stderr_tail: Option<String>,
    /// Ended by a lost node or lost output (does not count toward the attempts).
    pub lost: bool,
    /// A speculative backup of a slow attempt.
    pub backup: bool,
    /// Where its log (its processes' stderr) is read: `/api/v1/jobs/{id}/logs/{task}/{n}`.
    pub log: String,
}

/// One task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskView {
    /// `m-00003` / `r-00001`.
    pub id: String,
    /// "map" or "reduce".
    pub kind: String,
    /// "pending", "running", "done" or "failed".
    pub state: String,
    /// A map's input file (the first of a combined split), as its mapper sees it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input: Option<String>,
    /// Every attempt.
    pub attempts: Vec<AttemptView>,
    /// Bytes the successful attempt wrote: per partition for a map, the part file for a
    /// reduce.
    pub output_sizes: Vec<u64>,
    /// Nodes holding that output.
    pub holders: Vec<String>,
    /// A map's: nodes holding copies of its split (empty for a split read in place).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub input_holders: Vec<String>,
}

/// One job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobView {
    /// `j-…`.
    pub id: String,
    /// Its name.
    pub name: String,
    /// Its owner (`--user`): the scheduler shares slots fairly between owners.
    pub user: String,
    /// Its `--priority`.
    pub priority: i32,
    /// "queued", "running", "succeeded", "failed" or "killed".
    pub state: String,
    /// "map", "reduce" or "done".
    pub phase: String,
    /// Accepted at.
    pub submitted_ms: u64,
    /// Ended at.
    pub finished_ms: Option<u64>,
    /// Map progress.
    pub maps: Progress,
    /// Reduce progress.
    pub reduces: Progress,
    /// Counters of successful attempts, by group then name.
    pub counters: BTreeMap<String, BTreeMap<String, i64>>,
    /// Counters (`group.name`) whose sum passed the range of a 64-bit signed integer: they
    /// show the bound they passed, not the sum. Left out when there are none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub counters_saturated: Vec<String>,
    /// Why it failed or was killed.
    pub error: Option<String>,
    /// Every task (left out when the request says `?tasks=false`: a job of thousands of
    /// tasks is a large answer, and a client following progress needs only the counts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tasks: Option<Vec<TaskView>>,
}

impl JobView {
    /// Counter `group.name` of the job's successful attempts, if it has one.
    pub fn counter(&self, group: &str, name: &str) -> Option<i64> {
        self.counters.get(group)?.get(name).copied()
    }
}

/// Views show as the JSON the API answers with (in a log line or a failed check).
macro_rules! displayed_as_json {
    ($($t:ty),*) => {$(
        impl std::fmt::Display for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                let json = serde_json::to_string(self).map_err(|_| std::fmt::Error)?;
                f.write_str(&json)
            }
        }
    )*};
}
displayed_as_json!(JobView, TaskView, AttemptView);

/// The address of the log of attempt `attempt` of task `task` of job `id`.
pub fn attempt_log_url(id: &str, task: &str, attempt: u32) -> String {
    format!("/api/v1/jobs/{id}/logs/{task}/{attempt}")
}

pub(crate) fn task_state(s: TaskState) -> &'static str {
    match s {
        TaskState::Pending => "pending",
        TaskState::Running => "running",
        TaskState::Done => "done",
        TaskState::Failed => "failed",
    }
}

/// A task's or an attempt's state as every view shows it (JSON, dashboard, `/metrics`): one
/// that a job left pending or running when it ended (killed, failed, or succeeded while a
/// backup still ran) is "cancelled" — the job will never run or wait for it again.
pub fn shown_state(job: JobState, s: TaskState) -> &'static str {
    match (job, s) {
        (JobState::Running, s) => task_state(s),
        (_, TaskState::Pending | TaskState::Running) => "cancelled",
        (_, s) => task_state(s),
    }
}

fn progress(job: JobState, tasks: &[Task]) -> Progress {
    Progress {
        total: tasks.len(),
        done: tasks.iter().filter(|t| t.state == TaskState::Done).count(),
        running: tasks
            .iter()
            .filter(|t| shown_state(job, t.state) == "running")
            .count(),
    }
}

/// The API's view of a job.
pub fn job_view(job: &Job, with_tasks: bool) -> JobView {
    let started = job
        .maps
        .iter()
        .chain(&job.reduces)
        .any(|t| !t.attempts.is_empty());
    let state = match job.state {
        JobState::Running if !started => "queued",
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Killed => "killed",
    };
    let phase = match job.state {
        JobState::Running if job.maps_done() => "reduce",
        JobState::Running => "map",
        _ => "done",
    };
    let tasks = with_tasks.then(|| {
        job.maps
            .iter()
            .chain(&job.reduces)
            .map(|t| TaskView {
                id: t.id(),
                kind: if t.kind == TaskKind::Map {
                    "map"
                } else {
                    "reduce"
                }
                .into(),
                state: shown_state(job.state, t.state).into(),
                input: (t.kind == TaskKind::Map)
                    .then(|| job.splits.get(t.index as usize).map(|s| s.name.clone()))
                    .flatten(),
                attempts: t
                    .attempts
                    .iter()
                    .map(|a| AttemptView {
                        attempt: a.attempt,
                        node: hex(a.node),
                        state: shown_state(job.state, a.state).into(),
                        start_ms: a.start_ms,
                        end_ms: a.end_ms,
                        error: a.error.clone(),
                        exit: a.exit.clone(),
                        stderr_tail: a.stderr_tail.clone(),
                        lost: a.lost,
                        backup: a.backup,
                        log: attempt_log_url(&job.id, &t.id(), a.attempt),
                    })
                    .collect(),
                output_sizes: t.output_sizes.clone(),
                holders: t.holders.iter().map(|&n| hex(n)).collect(),
                input_holders: match t.kind {
                    TaskKind::Map => job
                        .splits
                        .get(t.index as usize)
                        .map(|s| s.holders.iter().map(|&n| hex(n)).collect())
                        .unwrap_or_default(),
                    TaskKind::Reduce => Vec::new(),
                },
            })
            .collect()
    });
    JobView {
        id: job.id.clone(),
        name: job.spec.name.clone(),
        user: job.spec.user.clone(),
        priority: job.spec.priority,
        state: state.into(),
        phase: phase.into(),
        submitted_ms: job.submitted_ms,
        finished_ms: job.finished_ms,
        maps: progress(job.state, &job.maps),
        reduces: progress(job.state, &job.reduces),
        counters: job.counters.0.clone(),
        counters_saturated: job.counters_saturated.clone(),
        error: job.error.clone(),
        tasks,
    }
}

/// Every job, newest first.
pub fn jobs_view(jobs: &shoal_jobs::cluster::Cluster, with_tasks: bool) -> Vec<JobView> {
    let mut v: Vec<&Job> = jobs.jobs.values().collect();
    v.sort_by(|a, b| {
        b.submitted_ms
            .cmp(&a.submitted_ms)
            .then_with(|| b.id.cmp(&a.id))
    });
    v.into_iter().map(|j| job_view(j, with_tasks)).collect()
}
