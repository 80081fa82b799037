//! Draining: a node the table marks draining is given no new task (the scheduler leaves it
//! out), while what already runs there finishes. An operator drains a node for maintenance
//! (`shoal drain`) and it stays drained until `shoal undrain`, across restarts; a node that
//! is stopping (SIGTERM) drains itself for its grace period and undrains itself when it
//! starts again.

use serde::{Deserialize, Serialize};

use super::{Applied, Cluster, JobState, NodeId, TaskState};

/// What a copy is of: a job's split (input of a map) or part file (a reduce's output).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Held {
    /// Split `index`.
    Split(u32),
    /// Part `index` (the accepted attempt's).
    Part(u32),
}

/// Who drained a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DrainCause {
    /// `shoal drain` (or the API): until `shoal undrain`.
    Operator,
    /// The node itself, stopping: until it starts again.
    Stopping,
    /// `shoal remove`: once nothing there is needed, it leaves the membership and stops.
    Removing,
}

/// A node taking no new task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drain {
    /// Since when (ms since the epoch, from the command).
    pub since_ms: u64,
    /// Why.
    pub cause: DrainCause,
}

impl Cluster {
    /// `Drain`: mark `node` draining; an operator's drain replaces a stopping one (so the
    /// node stays drained when it starts again), not the other way round.
    pub(super) fn drain(&mut self, node: NodeId, cause: DrainCause, at_ms: u64) -> Applied {
        match self.draining.get(&node) {
            // An operator's cause (drain, remove) is replaced only by the other one.
            Some(d)
                if d.cause == cause
                    || (d.cause != DrainCause::Stopping && cause == DrainCause::Stopping) =>
            {
                Applied::Ignored(format!("node {node:016x} is already draining"))
            }
            _ => {
                self.draining.insert(
                    node,
                    Drain {
                        since_ms: at_ms,
                        cause,
                    },
                );
                Applied::Changed
            }
        }
    }

    /// `Undrain`: `node` takes tasks again.
    pub(super) fn undrain(&mut self, node: NodeId) -> Applied {
        match self.draining.remove(&node) {
            Some(_) => Applied::Changed,
            None => Applied::Ignored(format!("node {node:016x} is not draining")),
        }
    }

    /// Attempts of running jobs that run on `node` now.
    pub fn running_on(&self, node: NodeId) -> usize {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .flat_map(|j| j.maps.iter().chain(&j.reduces))
            .flat_map(|t| t.running_attempts())
            .filter(|a| a.node == node)
            .count()
    }

    /// Map outputs that only `node` holds and that a running job's reduces still need:
    /// taking the node down now would make their maps run again.
    pub fn map_outputs_only_on(&self, node: NodeId) -> usize {
        self.jobs
            .values()
            .filter(|j| j.state == JobState::Running)
            .filter(|j| j.reduces.iter().any(|t| t.state != TaskState::Done))
            .flat_map(|j| &j.maps)
            .filter(|t| t.state == TaskState::Done && t.holders == [node])
            .count()
    }

    /// The copies `node` holds that are short without it: splits of running jobs and part
    /// files of every job whose holders besides `node` and the draining nodes are fewer
    /// than the job's `--replication` + 1, or than `others` (how many nodes that take
    /// copies there are besides it) when that is less. A split read in place has no copies.
    /// Each with how many copies it lacks. Empty while `node` is not draining: its copies
    /// count.
    pub fn under_copied(&self, node: NodeId, others: usize) -> Vec<(&str, Held, usize)> {
        if !self.draining.contains_key(&node) {
            return Vec::new();
        }
        let missing = |holders: &[NodeId], replication: u32| {
            let elsewhere = holders
                .iter()
                .filter(|&&h| h != node && !self.draining.contains_key(&h))
                .count();
            let want = (replication as usize + 1).min(others);
            if holders.contains(&node) {
                want.saturating_sub(elsewhere)
            } else {
                0
            }
        };
        let mut out = Vec::new();
        for j in self.jobs.values() {
            let r = j.spec.replication;
            if j.state == JobState::Running {
                // Another job's part is that job's to keep copied.
                for s in j.splits.iter().filter(|s| s.uploaded()) {
                    match missing(&s.holders, r) {
                        0 => {}
                        n => out.push((j.id.as_str(), Held::Split(s.index), n)),
                    }
                }
            }
            for t in j.reduces.iter().filter(|t| t.state == TaskState::Done) {
                match missing(&t.holders, r) {
                    0 => {}
                    n => out.push((j.id.as_str(), Held::Part(t.index), n)),
                }
            }
        }
        out
    }

    /// `AddHolders`: `nodes` now hold copies of `what` of `job` too.
    pub(super) fn add_holders(&mut self, job: &str, what: Held, nodes: &[NodeId]) -> Applied {
        let Some(j) = self.jobs.get_mut(job) else {
            return Applied::Ignored(format!("no job {job}"));
        };
        let holders = match what {
            Held::Split(i) => j.splits.get_mut(i as usize).map(|s| &mut s.holders),
            Held::Part(i) => j
                .reduces
                .get_mut(i as usize)
                .filter(|t| t.state == TaskState::Done)
                .map(|t| &mut t.holders),
        };
        let Some(holders) = holders else {
            return Applied::Ignored(format!("job {job} has no such copy: {what:?}"));
        };
        let before = holders.len();
        for &n in nodes {
            if holders.len() >= super::MAX_HOLDERS {
                break;
            }
            if !holders.contains(&n) {
                holders.push(n);
            }
        }
        if holders.len() == before {
            Applied::Ignored(format!("every node named already holds {what:?} of {job}"))
        } else {
            Applied::Changed
        }
    }

    /// What `node` is still needed for: attempts running there, copies that are short
    /// without it (see [`Cluster::under_copied`]; `others` counts the nodes that could take
    /// them), and — unless an operator drained it for maintenance — map outputs only it holds
    /// that reduces still need. A node drained for maintenance keeps its disk and serves
    /// them when it is back (a reduce that tries meanwhile has the map run again), so a
    /// rolling upgrade need not wait for every job to end; a node leaving for good or
    /// stopping waits for them.
    pub fn needed_on(&self, node: NodeId, others: usize) -> usize {
        let outputs = match self.draining.get(&node).map(|d| d.cause) {
            Some(DrainCause::Operator) => 0,
            _ => self.map_outputs_only_on(node),
        };
        self.running_on(node) + outputs + self.under_copied(node, others).len()
    }

    /// `"draining"` while a drained node is still needed ([`Cluster::needed_on`]),
    /// `"drained"` once it is not — safe to stop; `"removing"` for a node `shoal remove`
    /// takes out (it leaves once it is not needed); `None` when it takes tasks.
    pub fn drain_state(&self, node: NodeId, others: usize) -> Option<&'static str> {
        let d = self.draining.get(&node)?;
        Some(if d.cause == DrainCause::Removing {
            "removing"
        } else if self.needed_on(node, others) > 0 {
            "draining"
        } else {
            "drained"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::{Command, SplitInfo, TaskKind};
    use crate::counters::Counters;
    use crate::partition::Partitioner;
    use crate::scheduler::{plan, NodeSlots};
    use crate::spec::{JobKind, JobSpec};

    fn assigned(c: &mut Cluster, nodes: &[NodeSlots], now: u64) -> Vec<(u32, NodeId)> {
        let mut out = Vec::new();
        for cmd in plan(c, nodes, now) {
            if let Command::Assign { index, node, .. } = &cmd {
                out.push((*index, *node));
            }
            assert_eq!(c.apply(cmd), Applied::Changed);
        }
        out
    }

    #[test]
    fn a_drained_node_gets_no_new_task_and_its_running_ones_finish() {
        let mut c = Cluster::default();
        let spec = JobSpec::new("j-1", vec!["in".into()], JobKind::App("wordcount".into()));
        let splits = (0..6)
            .map(|i| SplitInfo {
                index: i,
                name: "in".into(),
                len: 10,
                holders: vec![1, 2],
                ..Default::default()
            })
            .collect();
        let submit = Command::SubmitJob {
            id: "j-1".into(),
            spec: Box::new(spec),
            splits,
            partitioner: Partitioner::Hash,
            at_ms: 0,
            counters: Default::default(),
        };
        assert_eq!(c.apply(submit), Applied::Changed);
        let nodes = [
            NodeSlots { node: 1, slots: 1 },
            NodeSlots { node: 2, slots: 1 },
        ];
        assert_eq!(assigned(&mut c, &nodes, 1), [(0, 1), (1, 2)]);
        assert_eq!(c.drain_state(2, 1), None);
        let drain = |cause| Command::Drain {
            node: 2,
            cause,
            at_ms: 2,
        };
        assert_eq!(c.apply(drain(DrainCause::Stopping)), Applied::Changed);
        assert_eq!(
            c.drain_state(2, 1),
            Some("draining"),
            "map 1 still runs there"
        );
        // Node 1's map ends: its slot takes the next map; node 2's slot stays idle.
        let finish = |index, at_ms| Command::TaskFinished {
            job: "j-1".into(),
            kind: TaskKind::Map,
            index,
            attempt: 1,
            sizes: vec![1],
            checksums: Vec::new(),
            holders: Vec::new(),
            counters: Counters::default(),
            at_ms,
        };
        assert_eq!(c.apply(finish(0, 3)), Applied::Changed);
        assert_eq!(c.apply(finish(1, 3)), Applied::Changed);
        assert_eq!(
            (c.drain_state(2, 1), c.map_outputs_only_on(2)),
            (Some("draining"), 1),
            "the reduce still needs map 1's output, which only node 2 holds"
        );
        assert_eq!(assigned(&mut c, &nodes, 4), [(2, 1)]);
        // An operator's drain outlasts the stopping one; undrain brings the node back.
        assert_eq!(c.apply(drain(DrainCause::Operator)), Applied::Changed);
        assert!(matches!(
            c.apply(drain(DrainCause::Stopping)),
            Applied::Ignored(_)
        ));
        assert_eq!(c.draining[&2].cause, DrainCause::Operator);
        assert_eq!(c.apply(Command::Undrain { node: 2 }), Applied::Changed);
        assert_eq!(assigned(&mut c, &nodes, 5), [(3, 2)]);
        assert!(matches!(
            c.apply(Command::Undrain { node: 2 }),
            Applied::Ignored(_)
        ));
    }

    #[test]
    fn a_draining_node_s_copies_are_short_until_others_hold_them() {
        let mut c = Cluster::default();
        let mut spec = JobSpec::new("j-1", vec!["in".into()], JobKind::App("wordcount".into()));
        spec.replication = 1;
        let split = |index, holders: &[NodeId]| SplitInfo {
            index,
            name: "in".into(),
            len: 10,
            holders: holders.to_vec(),
            ..Default::default()
        };
        let submit = Command::SubmitJob {
            id: "j-1".into(),
            spec: Box::new(spec),
            splits: vec![split(0, &[1, 2]), split(1, &[2, 3]), split(2, &[1, 3])],
            partitioner: Partitioner::Hash,
            at_ms: 0,
            counters: Default::default(),
        };
        assert_eq!(c.apply(submit), Applied::Changed);
        // Not draining: its copies count; nothing is short.
        assert_eq!(c.under_copied(2, 2), []);
        let drain = Command::Drain {
            node: 2,
            cause: DrainCause::Operator,
            at_ms: 1,
        };
        assert_eq!(c.apply(drain), Applied::Changed);
        // One copy besides the original: two holders other than node 2 are wanted.
        assert_eq!(
            c.under_copied(2, 2),
            [("j-1", Held::Split(0), 1), ("j-1", Held::Split(1), 1)]
        );
        assert_eq!(c.drain_state(2, 2), Some("draining"));
        // With only one other node, one copy elsewhere is all there can be.
        assert_eq!(c.under_copied(2, 1), []);
        let add = |what, nodes: &[NodeId]| Command::AddHolders {
            job: "j-1".into(),
            what,
            nodes: nodes.to_vec(),
        };
        assert_eq!(c.apply(add(Held::Split(0), &[3])), Applied::Changed);
        assert_eq!(c.apply(add(Held::Split(1), &[1])), Applied::Changed);
        assert!(matches!(
            c.apply(add(Held::Split(1), &[1])),
            Applied::Ignored(_)
        ));
        assert!(
            matches!(c.apply(add(Held::Part(0), &[1])), Applied::Ignored(_)),
            "no part yet"
        );
        assert_eq!(c.under_copied(2, 2), []);
        assert_eq!(c.drain_state(2, 2), Some("drained"));
    }
}
