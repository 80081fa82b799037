//! What each [`Command`](super::Command) does to the table: one method per command, each
//! deterministic and attempt-tagged (a report about an attempt that is not running is
//! ignored with its reason).

use super::{
    Applied, Attempt, Cluster, Job, JobState, NodeId, SplitInfo, Task, TaskKind, TaskState,
};
use crate::counters::Counters;
use crate::partition::Partitioner;
use crate::spec::JobSpec;

impl Attempt {
    pub(crate) fn start(attempt: u32, node: NodeId, at_ms: u64, backup: bool) -> Attempt {
        Attempt {
            attempt,
            node,
            state: TaskState::Running,
            start_ms: at_ms,
            end_ms: None,
            error: None,
            exit: None,
            stderr_tail: None,
            lost: false,
            backup,
        }
    }

    /// End a running attempt as failed at `at_ms`; `lost` when it was not its own fault.
    pub(super) fn fail(&mut self, at_ms: u64, error: String, lost: bool) {
        self.state = TaskState::Failed;
        self.end_ms = Some(at_ms);
        self.error = Some(error);
        self.lost = lost;
    }
}

/// The attempt a command is about.
pub(super) struct AttemptOf {
    pub job: String,
    pub kind: TaskKind,
    pub index: u32,
    pub attempt: u32,
}

/// Why an attempt failed, as its report says.
pub(super) struct Failure {
    pub error: String,
    pub exit: Option<String>,
    pub stderr_tail: Option<String>,
    pub lost: bool,
}

/// Most splits (map tasks) one job may have: refused at submit, ignored where applied.
pub const MAX_SPLITS: usize = 50_000;

/// Whether a submitted job can be applied on every replica alike: its id can name files, its
/// spec holds (the same checks as at submit), its splits are numbered 0..n within the bound
/// and its partitioner fits its reducers. Pure, so every node decides the same.
fn check_job(
    id: &str,
    spec: &JobSpec,
    splits: &[SplitInfo],
    partitioner: &Partitioner,
) -> Result<(), String> {
    if !job_id_ok(id) {
        return Err("a job id is up to 64 lowercase letters, digits and . _ - (not first)".into());
    }
    spec.validate().map_err(|e| e.to_string())?;
    if splits.len() > MAX_SPLITS {
        return Err(format!("{} splits; at most {MAX_SPLITS}", splits.len()));
    }
    if let Some((i, _)) = splits
        .iter()
        .enumerate()
        .find(|(i, s)| s.index as usize != *i)
    {
        return Err(format!("split {i} is numbered out of order"));
    }
    for s in splits {
        if s.holders.len() > MAX_HOLDERS {
            return Err(format!(
                "split {} names {} holders; at most {MAX_HOLDERS}",
                s.index,
                s.holders.len()
            ));
        }
        if let Some(p) = &s.in_place {
            crate::inplace::check_relative(&p.path, &p.path).map_err(|e| e.to_string())?;
        }
        if let Some(p) = &s.part_of {
            if !job_id_ok(&p.job) || p.job == id {
                return Err(format!("split {} is a part of job {:.80}", s.index, p.job));
            }
        }
    }
    if let Partitioner::Range(bounds) = partitioner {
        if bounds.len() + 1 != spec.reducers as usize {
            return Err(format!(
                "a range partitioner with {} bounds for {} reducers",
                bounds.len(),
                spec.reducers
            ));
        }
    }
    Ok(())
}

/// Whether `id` can be a job's id: it names directories on every node, so one plain path
/// component.
fn job_id_ok(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id.bytes().enumerate().all(|(i, b)| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || (i > 0 && b"._-".contains(&b))
        })
}

fn ignored(why: impl Into<String>) -> Applied {
    Applied::Ignored(why.into())
}

/// Most characters of a failed attempt's error and of its stderr tail the table keeps (a
/// worker sends a 20-line tail of 500-character lines at most).
pub const MAX_ERROR_CHARS: usize = 12_000;

/// Most nodes the table records as holding one copy of anything: more than any replication
/// asks for; a report naming more is cut to that many, first named first.
pub const MAX_HOLDERS: usize = 64;

/// `text` cut to `max` characters.
pub(super) fn cut(text: String, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => text[..at].to_owned(),
        None => text,
    }
}

/// A reported list of holders, each named once and at most [`MAX_HOLDERS`].
fn bounded_holders(mut holders: Vec<NodeId>) -> Vec<NodeId> {
    let mut seen = std::collections::BTreeSet::new();
    holders.retain(|h| seen.len() < MAX_HOLDERS && seen.insert(*h));
    holders
}

impl Cluster {
    /// `SubmitJob`: a new job with one pending map per split and `reducers` pending reduces.
    pub(super) fn submit_job(
        &mut self,
        id: String,
        spec: JobSpec,
        splits: Vec<SplitInfo>,
        partitioner: Partitioner,
        at_ms: u64,
        measured: &Counters,
    ) -> Applied {
        if self.jobs.contains_key(&id) {
            return ignored(format!("job {id} exists"));
        }
        if let Err(why) = check_job(&id, &spec, &splits, &partitioner) {
            return ignored(format!("job {id:.80} is invalid: {why}"));
        }
        let maps = splits
            .iter()
            .map(|s| Task::new(TaskKind::Map, s.index))
            .collect();
        // What the upload brought into the cluster (in-place inputs and other jobs' parts
        // bring nothing).
        let mut counters = Counters::default();
        // Lengths are a member's word: sums saturate rather than panic or wrap.
        let uploaded = splits
            .iter()
            .filter(|s| s.uploaded())
            .fold(0u64, |sum, s| sum.saturating_add(s.len));
        counters.add_builtin("input_uploaded_bytes", uploaded);
        // Each extra holder of an uploaded split took a copy of its bytes.
        let copied = splits
            .iter()
            .filter(|s| s.uploaded())
            .map(|s| {
                s.len
                    .saturating_mul(s.holders.len().saturating_sub(1) as u64)
            })
            .fold(0u64, u64::saturating_add);
        counters.add_builtin("input_copied_bytes", copied);
        for name in super::SUBMISSION_COUNTERS {
            let v = measured.get(crate::counters::GROUP, name);
            if v > 0 {
                counters.add(crate::counters::GROUP, name, v);
            }
        }
        let reduces = (0..spec.reducers)
            .map(|p| Task::new(TaskKind::Reduce, p))
            .collect();
        let job = Job {
            id: id.clone(),
            spec,
            state: JobState::Running,
            submitted_ms: at_ms,
            finished_ms: None,
            splits,
            partitioner,
            maps,
            reduces,
            counters,
            counters_saturated: Vec::new(),
            error: None,
            setup_nodes: Vec::new(),
        };
        self.jobs.insert(id, job);
        Applied::Changed
    }

    /// `SetupRan`: count the setup of a node once; a node of no attempt of the job, a job
    /// without a setup, or one already counted changes nothing.
    pub(super) fn setup_ran(&mut self, job: &str, node: NodeId) -> Applied {
        let Some(j) = self.jobs.get_mut(job) else {
            return Applied::Ignored(format!("no job {job}"));
        };
        if j.spec.setup.is_none() {
            return Applied::Ignored(format!("job {job} has no --setup"));
        }
        let ran_there = j
            .maps
            .iter()
            .chain(&j.reduces)
            .any(|t| t.attempts.iter().any(|a| a.node == node));
        if !ran_there {
            return Applied::Ignored(format!("node {node:016x} ran no attempt of {job}"));
        }
        if j.setup_nodes.contains(&node) {
            return Applied::Ignored(format!("the setup on node {node:016x} is counted"));
        }
        j.setup_nodes.push(node);
        j.counters.add_builtin("setup_runs", 1);
        Applied::Changed
    }

    /// `Assign`: the next attempt of a pending task, or a backup beside its one running
    /// attempt on another node.
    pub(super) fn assign(
        &mut self,
        at: AttemptOf,
        node: NodeId,
        backup: bool,
        at_ms: u64,
    ) -> Applied {
        let attempt = at.attempt;
        let Some(task) = self
            .running_job(&at.job)
            .and_then(|j| j.task_mut(at.kind, at.index))
        else {
            return ignored("no such running job or task");
        };
        let next = attempt as usize == task.attempts.len() + 1;
        let ok = if backup {
            let running: Vec<NodeId> = task.running_attempts().map(|a| a.node).collect();
            next && running.len() == 1 && !running.contains(&node)
        } else {
            next && task.state == TaskState::Pending
        };
        if !ok {
            let what = if backup { "a backup" } else { "attempt" };
            return ignored(format!("{} is not waiting for {what} {attempt}", task.id()));
        }
        task.attempts
            .push(Attempt::start(attempt, node, at_ms, backup));
        task.state = TaskState::Running;
        Applied::Changed
    }

    /// `TaskFinished`: the running attempt is done and wins (a racing twin is stopped); the
    /// job succeeds with its last task.
    pub(super) fn task_finished(
        &mut self,
        at: AttemptOf,
        (sizes, checksums): (Vec<u64>, Vec<u32>),
        holders: Vec<NodeId>,
        counters: Counters,
        at_ms: u64,
    ) -> Applied {
        let attempt = at.attempt;
        let Some(j) = self.running_job(&at.job) else {
            return ignored("no such running job");
        };
        // One size per partition for a map (its part in a map-only job), one for a reduce's
        // part: nothing else is kept.
        let want = match at.kind {
            TaskKind::Map => j.spec.reducers.max(1) as usize,
            TaskKind::Reduce => 1,
        };
        if sizes.len() != want {
            return ignored(format!(
                "a report with {} output sizes where {want} belong",
                sizes.len()
            ));
        }
        if !checksums.is_empty() && checksums.len() != sizes.len() {
            return ignored(format!(
                "a report with {} checksums for {} output sizes",
                checksums.len(),
                sizes.len()
            ));
        }
        let Some(task) = j.task_mut(at.kind, at.index) else {
            return ignored("no such task");
        };
        let planted = crate::planted::active(crate::planted::Bug::FinishAnyAttempt);
        let found = if planted {
            task.attempts
                .iter_mut()
                .find(|a| a.attempt == attempt && a.state != TaskState::Done)
        } else {
            task.running(attempt)
        };
        let Some(a) = found else {
            return ignored(format!("attempt {attempt} of {} is not running", task.id()));
        };
        a.state = TaskState::Done;
        a.end_ms = Some(at_ms);
        let winner = a.node;
        // The first finisher wins; a racing attempt is stopped and does not count.
        for other in task
            .attempts
            .iter_mut()
            .filter(|o| o.state == TaskState::Running)
        {
            other.fail(
                at_ms,
                format!("superseded: attempt {attempt} finished first"),
                true,
            );
        }
        task.holders = if holders.is_empty() {
            vec![winner]
        } else {
            bounded_holders(holders)
        };
        task.state = TaskState::Done;
        task.output_sizes = sizes;
        task.output_checksums = checksums;
        // What a task reported is bounded here as at the task, so every replica keeps the
        // same whatever a member sent.
        let counters = counters.bounded();
        task.counters = counters.clone();
        let saturated = j.counters.merge(&counters);
        j.saturated(saturated);
        if j.maps_done() && j.reduces.iter().all(|t| t.state == TaskState::Done) {
            j.state = JobState::Succeeded;
            j.finished_ms = Some(at_ms);
        }
        Applied::Changed
    }

    /// `TaskFailed`: the running attempt failed; the task waits for another attempt, or the
    /// job fails once the task has used its attempts (lost ones do not count).
    pub(super) fn task_failed(&mut self, at: AttemptOf, f: Failure, at_ms: u64) -> Applied {
        let attempt = at.attempt;
        let Some(j) = self.running_job(&at.job) else {
            return ignored("no such running job");
        };
        let max = j.spec.max_attempts;
        let Some(task) = j.task_mut(at.kind, at.index) else {
            return ignored("no such task");
        };
        let Some(a) = task.running(attempt) else {
            return ignored(format!("attempt {attempt} of {} is not running", task.id()));
        };
        let error = cut(f.error, MAX_ERROR_CHARS);
        a.fail(at_ms, error.clone(), f.lost);
        a.exit = f.exit.map(|e| cut(e, super::MAX_REASON_CHARS));
        a.stderr_tail = f.stderr_tail.map(|t| cut(t, MAX_ERROR_CHARS));
        if task.running_attempts().next().is_some() {
            // Its racing twin carries on.
        } else if task.counted_attempts() >= max {
            task.state = TaskState::Failed;
            let reason = format!(
                "task {} failed {max} of {max} attempts; the last: {}",
                task.id(),
                error
            );
            j.state = JobState::Failed;
            j.finished_ms = Some(at_ms);
            j.error = Some(reason);
        } else {
            task.state = TaskState::Pending;
        }
        Applied::Changed
    }

    /// `NodeLost`: every attempt running on `node` is lost, and every finished map whose
    /// output only it held runs again.
    pub(super) fn node_lost(&mut self, node: NodeId, at_ms: u64) -> Applied {
        let mut changed = false;
        for j in self
            .jobs
            .values_mut()
            .filter(|j| j.state == JobState::Running)
        {
            let why = format!("node {node:016x} was lost");
            for t in j.maps.iter_mut().chain(j.reduces.iter_mut()) {
                let mut ended = false;
                for a in t
                    .attempts
                    .iter_mut()
                    .filter(|a| a.node == node && a.state == TaskState::Running)
                {
                    a.fail(at_ms, why.clone(), true);
                    ended = true;
                }
                if ended {
                    t.settle();
                    changed = true;
                }
            }
            let lost_maps: Vec<u32> = j
                .maps
                .iter()
                .filter(|t| t.state == TaskState::Done && t.holders == [node])
                .map(|t| t.index)
                .collect();
            for m in lost_maps {
                changed |= j.rerun_map(
                    m,
                    at_ms,
                    &format!("its output was lost with node {node:016x}"),
                );
            }
            // A map still needed whose input only the lost node has can never run.
            let stranded = j.maps.iter().find_map(|t| {
                let s = j.splits.get(t.index as usize)?;
                (t.state != TaskState::Done && s.pinned() == Some(node))
                    .then(|| s.in_place.as_ref().map(|p| p.path.clone()))
                    .flatten()
            });
            if let Some(path) = stranded {
                j.state = JobState::Failed;
                j.finished_ms = Some(at_ms);
                j.error = Some(format!(
                    "input {path} is on node {node:016x}, which was lost (node: inputs are read \
                     only where they lie)"
                ));
                changed = true;
            }
        }
        if changed {
            Applied::Changed
        } else {
            ignored(format!("node {node:016x} had nothing running or needed"))
        }
    }

    /// `MapOutputLost`: a reduce could not fetch map `index`'s output of `attempt`; the map
    /// runs again (unless every reduce is done).
    pub(super) fn map_output_lost(
        &mut self,
        job: &str,
        (index, attempt): (u32, u32),
        reason: Option<&str>,
        at_ms: u64,
    ) -> Applied {
        let Some(j) = self.running_job(job) else {
            return ignored("no such running job");
        };
        let done = j
            .maps
            .get(index as usize)
            .and_then(|t| t.attempts.iter().find(|a| a.state == TaskState::Done))
            .map(|a| a.attempt);
        if done != Some(attempt) {
            return ignored(format!(
                "attempt {attempt} of map {index} is not its output"
            ));
        }
        let why = match reason {
            Some(r) => {
                let r: String = r.chars().take(super::MAX_REASON_CHARS).collect();
                format!("a reduce could not use its output: {r}")
            }
            None => "a reduce could not fetch its output".to_string(),
        };
        if j.rerun_map(index, at_ms, &why) {
            Applied::Changed
        } else {
            ignored("every reduce is done")
        }
    }

    /// `Forget`: an ended job leaves the table.
    pub(super) fn forget(&mut self, job: &str) -> Applied {
        match self.jobs.get(job) {
            Some(_) if self.read_in_place().contains(job) => {
                ignored(format!("a running job reads job {job}'s part files"))
            }
            Some(j) if j.state != JobState::Running => {
                self.jobs.remove(job);
                Applied::Changed
            }
            Some(_) => ignored(format!("job {job} is still running")),
            None => ignored(format!("no job {job}")),
        }
    }

    /// `KillJob`: a running job ends killed; its running attempts are stopped.
    pub(super) fn kill_job(&mut self, job: &str, at_ms: u64) -> Applied {
        let Some(j) = self.running_job(job) else {
            return ignored("no such running job");
        };
        for t in j.maps.iter_mut().chain(j.reduces.iter_mut()) {
            for a in t
                .attempts
                .iter_mut()
                .filter(|a| a.state == TaskState::Running)
            {
                a.fail(at_ms, "job killed".into(), false);
            }
        }
        j.state = JobState::Killed;
        j.finished_ms = Some(at_ms);
        j.error = Some("killed by a user".into());
        Applied::Changed
    }

    fn running_job(&mut self, id: &str) -> Option<&mut Job> {
        self.jobs
            .get_mut(id)
            .filter(|j| j.state == JobState::Running)
    }
}
