//! The worker's reconciliation: one look at the job table, as a pure function of the table,
//! this node, when its process started and what it already started, deciding what to do —
//! start attempts, report those of a previous process lost, stop attempts the table no
//! longer wants, clean up after jobs that ended or were forgotten. The worker loop
//! (`control::worker`) does what it decides; the golden scripts below check the deciding.
//!
//! The invariant: an attempt is started at most once per process, and one assigned before
//! the process started is never started, only reported lost.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use shoal_jobs::cluster::{self, Job, JobState, NodeId, TaskKind, TaskState};
use shoal_jobs::planted::{self, Bug};
use shoal_jobs::spec::JobSpec;

use crate::control::work::{AttemptKey, MapOut, Work};

/// What the worker remembers between looks at the table.
#[derive(Debug, Default)]
pub struct Seen {
    /// Attempts started (or reported lost) by this process.
    started: HashSet<AttemptKey>,
    /// The specs of jobs it runs attempts of, shared by those attempts.
    specs: HashMap<String, Arc<JobSpec>>,
    /// Jobs that ended and were cleaned up after.
    cleaned: HashSet<String>,
}

/// What one look at the table decided.
#[derive(Default)]
pub struct Actions {
    /// Attempts to start.
    pub start: Vec<Work>,
    /// Attempts assigned before this process started: report them lost.
    pub stale: Vec<AttemptKey>,
    /// Running attempts the table no longer wants: stop them.
    pub stop: Vec<AttemptKey>,
    /// Jobs that ended: delete what this node keeps of them but the parts named
    /// (index, attempt).
    pub clean: Vec<(String, Vec<(u32, u32)>)>,
    /// Jobs the table forgot: delete everything of them.
    pub forget: Vec<String>,
}

/// One look at `jobs` by node `me`, whose process started at `boot_ms`, running the
/// attempts `running`: what to do, with `seen` updated to what is done once it is.
pub fn reconcile<'a>(
    jobs: &cluster::Cluster,
    me: NodeId,
    boot_ms: u64,
    seen: &mut Seen,
    running: impl IntoIterator<Item = &'a AttemptKey>,
) -> Actions {
    let mut acts = Actions {
        forget: seen
            .cleaned
            .iter()
            .filter(|j| !jobs.jobs.contains_key(*j))
            .cloned()
            .collect(),
        ..Actions::default()
    };
    acts.forget.sort();
    for job in jobs.jobs.values().filter(|j| j.state != JobState::Running) {
        if !seen.cleaned.contains(&job.id) {
            // The parts this node holds (a map-only job's are its maps').
            let keep: Vec<(u32, u32)> = job
                .parts()
                .into_iter()
                .filter(|p| p.holders.contains(&me))
                .filter(|_| !planted::active(Bug::WorkerDeletesParts))
                .map(|p| (p.index, p.attempt))
                .collect();
            acts.clean.push((job.id.clone(), keep));
        }
    }
    for (job, t, key, start_ms) in assigned(jobs, me) {
        if !seen.started.insert(key.clone()) {
            continue;
        }
        // Assigned before this process started: whatever ran then died with the old
        // process, and is not trusted.
        if start_ms < boot_ms {
            acts.stale.push(key);
            continue;
        }
        let spec = seen
            .specs
            .entry(job.id.clone())
            .or_insert_with(|| Arc::new(job.spec.clone()))
            .clone();
        acts.start.push(work(job, t, key, start_ms, spec));
    }
    acts.stop = running
        .into_iter()
        .filter(|k| !still_running(jobs, k))
        .cloned()
        .collect();
    acts.stop.sort();
    for job in &acts.forget {
        seen.cleaned.remove(job);
    }
    for (job, _) in &acts.clean {
        seen.cleaned.insert(job.clone());
        seen.started.retain(|k| &k.job != job);
        seen.specs.remove(job);
    }
    acts
}

/// Attempt `key` of task `t` of `job`, assigned at `start_ms`, as the worker runs it.
fn work(job: &Job, t: &cluster::Task, key: AttemptKey, start_ms: u64, spec: Arc<JobSpec>) -> Work {
    Work {
        spec,
        partitioner: job.partitioner.clone(),
        split: match t.kind {
            TaskKind::Map => job.splits.get(t.index as usize).cloned(),
            TaskKind::Reduce => None,
        },
        inputs: match t.kind {
            TaskKind::Map => Ok(Vec::new()),
            TaskKind::Reduce => map_outputs(job, t.index).ok_or_else(|| {
                "a map output it needs is being made again; it will be reassigned".to_string()
            }),
        },
        key,
        assigned_ms: start_ms,
    }
}

/// Whether the table still wants attempt `k` to run (its job running, it not ended).
pub fn still_running(jobs: &cluster::Cluster, k: &AttemptKey) -> bool {
    jobs.jobs
        .get(&k.job)
        .filter(|j| j.state == JobState::Running)
        .and_then(|j| j.task(k.kind, k.index))
        .and_then(|t| t.attempts.iter().find(|a| a.attempt == k.attempt))
        .is_some_and(|a| a.state == TaskState::Running)
}

/// Running attempts that the table assigns to node `me`, in table order: what the node
/// must be running. The daemon's worker and the simulator's both start from it.
pub fn assigned(
    jobs: &cluster::Cluster,
    me: NodeId,
) -> impl Iterator<Item = (&Job, &cluster::Task, AttemptKey, u64)> {
    jobs.jobs
        .values()
        .filter(|j| j.state == JobState::Running)
        .flat_map(|j| j.maps.iter().chain(j.reduces.iter()).map(move |t| (j, t)))
        .flat_map(move |(j, t)| {
            t.attempts
                .iter()
                .filter(move |a| a.node == me && a.state == TaskState::Running)
                .map(move |a| {
                    let key = AttemptKey {
                        job: j.id.clone(),
                        kind: t.kind,
                        index: t.index,
                        attempt: a.attempt,
                    };
                    (j, t, key, a.start_ms)
                })
        })
}

/// The maps' outputs that reduce `p` of `job` must read: each map's successful attempt and
/// the node that ran it — or `None` while a map is not done (its output was lost after the
/// reduce was assigned, and it is being run again): a reduce over fewer than every map
/// would write a wrong part file. (The simulator found that one.)
pub fn map_outputs(job: &Job, p: u32) -> Option<Vec<MapOut>> {
    use shoal_jobs::planted::{active, Bug};
    let partial = active(Bug::PartialReduceInput);
    job.maps
        .iter()
        .filter(|t| !partial || t.state == TaskState::Done)
        .map(|t| {
            let a = t.accepted()?;
            let (offset, size) = shoal_jobs::task::partition_range(&t.output_sizes, p);
            Some(MapOut {
                map: t.index,
                node: a.node,
                attempt: a.attempt,
                offset,
                size,
                checksum: t.output_checksums.get(p as usize).copied(),
            })
        })
        .collect()
}
