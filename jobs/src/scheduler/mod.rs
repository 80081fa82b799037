//! The manager's decisions as a pure function of the replicated table: which pending task
//! runs where next. The manager loop (on the Raft leader) only reads the applied state,
//! calls [`plan`], and proposes what it returns; the simulator can drive it the same way.
//!
//! Rules: a node runs at most its slots of attempts at once; reduces wait until every map
//! of their job is done; a map goes first to a node holding its split (locality); a retry
//! avoids the nodes where the task already failed when another node has a free slot; jobs
//! are served in submission order within an owner, nodes in (busy, id) order; a node the
//! table marks draining gets nothing new.
//!
//! Fair sharing: every job has an owner (`--user`) and a `--priority`. Each free slot goes
//! to the owner whose running attempts, divided by its weight (2^priority of the job it
//! would run next), are the fewest — ties to the owner with the oldest job — so owners with
//! equal demand converge to equal shares and priority 1 gets twice the share of priority
//! 0. Nothing running is ever killed for fairness: shares are reached as slots free up, so
//! a short job submitted behind a long one starts as soon as one of the long job's tasks
//! ends.
//!
//! Stragglers: once every task of a job's phase has started and at least half of them are
//! done, a task whose only attempt has run [`SPECULATE_FACTOR`] times the phase's median
//! duration and at least [`SPECULATE_MARGIN_MS`] longer than it gets one backup attempt on
//! another node with a free slot (slowest first, after all pending work). The margin keeps
//! even tasks on a busy machine from ever being backed up.
//!
//! Short tasks queue ahead: once the oldest running job's current phase has finished at
//! least [`QUEUE_AHEAD_SAMPLES`] tasks with a median under [`QUEUE_AHEAD_MS`], a node may
//! hold twice its slots of attempts (four times under a tenth of that, so the wait of a
//! queued attempt stays around a third of a second at most). The extra ones wait on the
//! node's task pool, so a slot
//! that frees starts the next task at once instead of waiting for a report and then an
//! assignment to pass through Raft — for a 1 KB map those round trips took as long as the
//! map. Long tasks never queue (a queued attempt would only wait, and could not go to a node
//! that frees up sooner).
//!
//! The invariant: `plan` is deterministic — ordered maps only, no clock but `now_ms`.

use std::collections::{BTreeMap, BTreeSet};

use crate::cluster::{Cluster, Command, Job, JobState, NodeId, Task, TaskKind, TaskState};
use crate::spec::{MAX_PRIORITY, MIN_PRIORITY};

/// A live node and how many tasks it may run at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeSlots {
    /// The node.
    pub node: NodeId,
    /// Its `--slots`.
    pub slots: u32,
}

/// How many times the phase's median duration an attempt must have run to be backed up.
pub const SPECULATE_FACTOR: u64 = 3;

/// How much longer than the phase's median an attempt must have run to be backed up.
pub const SPECULATE_MARGIN_MS: u64 = 5_000;

/// Finished tasks of a phase needed before its tasks may queue ahead.
pub const QUEUE_AHEAD_SAMPLES: usize = 4;

/// The median task duration below which tasks queue ahead on their nodes.
pub const QUEUE_AHEAD_MS: u64 = 1_000;

/// How many attempts a node may hold per slot: more than one once the oldest running job's
/// phase has shown its tasks to be short.
fn queue_ahead(cluster: &Cluster) -> u32 {
    let Some(job) = cluster
        .jobs
        .values()
        .filter(|j| j.state == JobState::Running)
        .min_by_key(|j| (j.submitted_ms, &j.id))
    else {
        return 1;
    };
    let (_, tasks) = job.phase();
    let took = finished_took(tasks);
    if took.len() < QUEUE_AHEAD_SAMPLES {
        return 1;
    }
    match took[took.len() / 2] {
        m if m < QUEUE_AHEAD_MS / 10 => 4,
        m if m < QUEUE_AHEAD_MS => 2,
        _ => 1,
    }
}

/// The assignments to propose now.
pub fn plan(cluster: &Cluster, nodes: &[NodeSlots], now_ms: u64) -> Vec<Command> {
    let mut slots = Slots::new(cluster, nodes);
    let running = || {
        cluster
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
    };
    let mut out = Vec::new();
    let mut owners = Owners::new(cluster);
    while let Some(owner) = owners.next() {
        // The owner's next pending task that has somewhere to run.
        while let Some((job, kind, task)) = owner.pop() {
            let pinned = match kind {
                TaskKind::Map => job.splits.get(task.index as usize).and_then(|s| s.pinned()),
                TaskKind::Reduce => None,
            };
            let node = match pinned {
                // Only the node whose disk has the input may run it.
                Some(n) => match slots.take_on(n) {
                    Some(n) => n,
                    None => continue,
                },
                None => match slots.take(job, task, None) {
                    Some(n) => n,
                    // No free slot anywhere: no backup either.
                    None => return out,
                },
            };
            out.push(Command::Assign {
                job: job.id.clone(),
                kind,
                index: task.index,
                attempt: task.attempts.len() as u32 + 1,
                node,
                backup: false,
                at_ms: now_ms,
            });
            owner.running += 1;
            break;
        }
        owners.requeue();
    }
    for job in running() {
        for (task, runs_on) in stragglers(job, now_ms) {
            // Its one node already runs it: no backup elsewhere.
            if task.kind == TaskKind::Map
                && job
                    .splits
                    .get(task.index as usize)
                    .is_some_and(|s| s.pinned().is_some())
            {
                continue;
            }
            let Some(node) = slots.take(job, task, Some(runs_on)) else {
                continue;
            };
            out.push(Command::Assign {
                job: job.id.clone(),
                kind: task.kind,
                index: task.index,
                attempt: task.attempts.len() as u32 + 1,
                node,
                backup: true,
                at_ms: now_ms,
            });
        }
    }
    out
}

/// One owner's running jobs, oldest first, walked task by task; and how many attempts its
/// jobs run.
struct Owner<'a> {
    jobs: Vec<&'a Job>,
    job: usize,
    task: usize,
    running: u64,
}

impl<'a> Owner<'a> {
    /// The next pending task, in submission order then task order, without taking it.
    fn peek(&mut self) -> Option<(&'a Job, TaskKind, &'a Task)> {
        while let Some(&job) = self.jobs.get(self.job) {
            let (kind, tasks) = job.phase();
            match tasks.get(self.task) {
                Some(t) if t.state == TaskState::Pending => return Some((job, kind, t)),
                Some(_) => self.task += 1,
                None => {
                    self.job += 1;
                    self.task = 0;
                }
            }
        }
        None
    }

    /// Take the next pending task.
    fn pop(&mut self) -> Option<(&'a Job, TaskKind, &'a Task)> {
        let next = self.peek();
        self.task += 1;
        next
    }

    /// Where it stands in the queue for the next slot: its running attempts scaled by the
    /// weight of the job it would run next (each priority step doubles it), so the smallest
    /// is furthest below its share; ties go to the owner with the oldest job.
    fn rank(&mut self) -> Option<(u64, u64, &'a str)> {
        let (job, _, _) = self.peek()?;
        let shift = (MAX_PRIORITY - job.spec.priority.clamp(MIN_PRIORITY, MAX_PRIORITY)) as u32;
        let oldest = self.jobs.first().map_or(0, |j| j.submitted_ms);
        Some((self.running << shift, oldest, job.spec.user.as_str()))
    }
}

/// Every owner with work waiting, in the order they get the next free slot: fair sharing
/// between owners weighted by priority, FIFO within an owner, and no preemption — a share
/// is reached only as slots free up.
struct Owners<'a> {
    owners: BTreeMap<&'a str, Owner<'a>>,
    queue: BTreeSet<(u64, u64, &'a str)>,
    current: Option<&'a str>,
}

impl<'a> Owners<'a> {
    fn new(cluster: &'a Cluster) -> Owners<'a> {
        let mut owners: BTreeMap<&str, Owner> = BTreeMap::new();
        let mut jobs: Vec<&Job> = cluster
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .collect();
        jobs.sort_by_key(|j| (j.submitted_ms, &j.id));
        for job in jobs {
            let owner = owners.entry(job.spec.user.as_str()).or_insert(Owner {
                jobs: Vec::new(),
                job: 0,
                task: 0,
                running: 0,
            });
            owner.running += job
                .maps
                .iter()
                .chain(&job.reduces)
                .map(|t| t.running_attempts().count() as u64)
                .sum::<u64>();
            owner.jobs.push(job);
        }
        let queue = owners.values_mut().filter_map(Owner::rank).collect();
        Owners {
            owners,
            queue,
            current: None,
        }
    }

    /// The owner furthest below its share, taken out of the queue until [`Owners::requeue`].
    fn next(&mut self) -> Option<&mut Owner<'a>> {
        let (_, _, name) = self.queue.pop_first()?;
        self.current = Some(name);
        self.owners.get_mut(name)
    }

    /// Put the owner [`Owners::next`] gave back in the queue, if it has work left.
    fn requeue(&mut self) {
        let Some(name) = self.current.take() else {
            return;
        };
        if let Some(rank) = self.owners.get_mut(name).and_then(Owner::rank) {
            self.queue.insert(rank);
        }
    }
}

/// Live nodes' slots and how many of them running attempts use; the nodes with a free slot
/// ordered by (busy, id), so each assignment costs a few set operations, not a pass over
/// every node (1,000 nodes × 4,000 free slots is one `plan`).
struct Slots {
    busy: BTreeMap<NodeId, u32>,
    slots: BTreeMap<NodeId, u32>,
    free: BTreeSet<(u32, NodeId)>,
}

impl Slots {
    fn new(cluster: &Cluster, nodes: &[NodeSlots]) -> Slots {
        let mut busy: BTreeMap<NodeId, u32> = nodes.iter().map(|n| (n.node, 0)).collect();
        for job in cluster
            .jobs
            .values()
            .filter(|j| j.state == JobState::Running)
        {
            for t in job.maps.iter().chain(job.reduces.iter()) {
                for a in t.running_attempts() {
                    if let Some(b) = busy.get_mut(&a.node) {
                        *b += 1;
                    }
                }
            }
        }
        let ahead = queue_ahead(cluster);
        // A draining node keeps its running attempts and gets no new one.
        let slots: BTreeMap<NodeId, u32> = nodes
            .iter()
            .filter(|n| !cluster.draining.contains_key(&n.node))
            .map(|n| (n.node, n.slots.saturating_mul(ahead)))
            .collect();
        let free = busy
            .iter()
            .filter(|&(n, &b)| slots.get(n).copied().unwrap_or(0) > b)
            .map(|(&n, &b)| (b, n))
            .collect();
        Slots { busy, slots, free }
    }

    /// Take a free slot on `node`, if it is live and has one.
    fn take_on(&mut self, node: NodeId) -> Option<NodeId> {
        let b = *self.busy.get(&node)?;
        if !self.free.remove(&(b, node)) {
            return None;
        }
        self.busy.insert(node, b + 1);
        if self.slots.get(&node).copied().unwrap_or(0) > b + 1 {
            self.free.insert((b + 1, node));
        }
        Some(node)
    }

    /// Take a free slot for a new attempt of `task`, never on `not`; candidates by
    /// preference: (tried there before, not holding its split, busy, id).
    fn take(&mut self, job: &Job, task: &Task, not: Option<NodeId>) -> Option<NodeId> {
        let holders: &[NodeId] = match task.kind {
            TaskKind::Map => job
                .splits
                .get(task.index as usize)
                .map_or(&[], |s| s.holders.as_slice()),
            TaskKind::Reduce => &[],
        };
        let tried: Vec<NodeId> = task.attempts.iter().map(|a| a.node).collect();
        let allowed = |n: NodeId| Some(n) != not;
        let free_holder = |want_tried: bool| {
            holders
                .iter()
                .filter(|&&h| allowed(h) && tried.contains(&h) == want_tried)
                .filter_map(|&h| {
                    let b = *self.busy.get(&h)?;
                    self.free.contains(&(b, h)).then_some((b, h))
                })
                .min()
        };
        let first_free = |want_tried: bool| {
            self.free
                .iter()
                .find(|&&(_, n)| allowed(n) && tried.contains(&n) == want_tried)
                .copied()
        };
        // Untried holders, then any untried node (the holders among them came first), then
        // tried holders, then any tried node.
        let (b, node) = free_holder(false)
            .or_else(|| first_free(false))
            .or_else(|| free_holder(true))
            .or_else(|| first_free(true))?;
        self.free.remove(&(b, node));
        let b = b + 1;
        self.busy.insert(node, b);
        if self.slots.get(&node).copied().unwrap_or(0) > b {
            self.free.insert((b, node));
        }
        Some(node)
    }
}

/// How long each finished task of `tasks` took (its successful attempt), sorted: what the
/// phase's median — for backups and for queueing ahead — is taken from.
fn finished_took(tasks: &[Task]) -> Vec<u64> {
    let mut took: Vec<u64> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Done)
        .filter_map(|t| t.attempts.iter().find(|a| a.state == TaskState::Done))
        .map(|a| a.end_ms.unwrap_or(a.start_ms).saturating_sub(a.start_ms))
        .collect();
    took.sort_unstable();
    took
}

fn stragglers(job: &Job, now_ms: u64) -> Vec<(&Task, NodeId)> {
    let (_, tasks) = job.phase();
    if tasks.iter().any(|t| t.state == TaskState::Pending) {
        return Vec::new();
    }
    let took = finished_took(tasks);
    if took.is_empty() || took.len() * 2 < tasks.len() {
        return Vec::new();
    }
    let median = took[took.len() / 2];
    let threshold = (median * SPECULATE_FACTOR).max(median + SPECULATE_MARGIN_MS);
    let mut slow: Vec<(u64, &Task, NodeId)> = tasks
        .iter()
        .filter(|t| t.state == TaskState::Running)
        .filter_map(|t| {
            let mut running = t.running_attempts();
            let a = running.next()?;
            if running.next().is_some() {
                return None;
            }
            let ran = now_ms.saturating_sub(a.start_ms);
            (ran > threshold).then_some((ran, t, a.node))
        })
        .collect();
    slow.sort_by_key(|(ran, t, _)| (std::cmp::Reverse(*ran), t.index));
    slow.into_iter().map(|(_, t, n)| (t, n)).collect()
}

#[cfg(test)]
mod fair_tests;
#[cfg(test)]
mod tests;
