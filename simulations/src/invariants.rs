//! The invariants, one function each. The continuous ones run every 100 simulated ms (and
//! the leadership one on every change of a node's Raft metrics); the last one runs when the
//! liveness phase ends. Each records a [`Violation`](crate::world::Violation) naming itself.

use std::collections::BTreeSet;
use std::sync::Arc;

use shoal_jobs::cluster::{JobState, TaskKind, TaskState};
use shoal_raft::ServerState;

use crate::node::{part_key, SimNode, World};
use crate::world::lock;

/// Nodes that are up, in index order.
fn up(world: &World) -> Vec<Arc<SimNode>> {
    (0..world.machines.len())
        .filter_map(|i| world.live(i))
        .collect()
}

/// The node that is up and has applied the most (a member: a plain worker applies nothing).
pub fn most_advanced(world: &World) -> Option<Arc<SimNode>> {
    up(world).into_iter().max_by_key(|n| {
        n.applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .last_applied
            .map_or(0, |l| l.index)
    })
}

/// At most one leader per term: `node` says it leads in `term`.
pub fn one_leader_per_term(world: &World, term: u64, node: u64) {
    let other = *lock(&world.leaders).entry(term).or_insert(node);
    if other != node {
        world.violate(
            "one_leader_per_term",
            format!("nodes {other} and {node} both led term {term}"),
        );
    }
}

/// Applied logs never diverge: every node's chain of applied commands is a prefix of the
/// longest one.
pub fn logs_agree(world: &World) {
    let nodes = up(world);
    let Some(longest) = nodes.iter().max_by_key(|n| {
        n.applied
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .state
            .history
            .len()
    }) else {
        return;
    };
    let l = longest.applied.read().unwrap_or_else(|p| p.into_inner());
    for n in nodes.iter().filter(|n| n.idx != longest.idx) {
        let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
        let k = a.state.history.len();
        if k > 0 && a.state.history[k - 1] != l.state.history[k - 1] {
            world.violate(
                "logs_agree",
                format!(
                    "after {k} commands node {} and node {} applied different commands",
                    n.id, longest.id
                ),
            );
            return;
        }
    }
}

/// A job acknowledged is never lost: a node that has applied past a job's index has it.
pub fn acknowledged_jobs_kept(world: &World) {
    let acked = lock(&world.acked).clone();
    for n in up(world) {
        let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
        let at = a.last_applied.map_or(0, |l| l.index);
        for (id, ack) in acked.iter().filter(|(_, ack)| at >= ack.index) {
            if !a.state.state.jobs.jobs.contains_key(id) {
                world.violate(
                    "acknowledged_jobs_kept",
                    format!(
                        "node {} applied index {at} but has no job {id} (acknowledged at {})",
                        n.id, ack.index
                    ),
                );
                return;
            }
        }
    }
}

/// No task is finished by two attempts: the table accepts one finish per task.
pub fn one_accepted_finish(world: &World) {
    for n in up(world) {
        let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
        for j in a.state.state.jobs.jobs.values() {
            for t in j.maps.iter().chain(j.reduces.iter()) {
                let done: Vec<u32> = t
                    .attempts
                    .iter()
                    .filter(|a| a.state == TaskState::Done)
                    .map(|a| a.attempt)
                    .collect();
                if done.len() > 1 {
                    world.violate(
                        "one_accepted_finish",
                        format!(
                            "node {}: {} {:?} {} accepted the finish of attempts {done:?}",
                            n.id, j.id, t.kind, t.index
                        ),
                    );
                    return;
                }
            }
        }
    }
}

/// Every object a task reads — a split, a map's partition — is the bytes its writer wrote:
/// its checksum is the one the job table recorded (a corrupt copy is passed over, never
/// used). Checked at every read.
pub fn reads_match_checksums(world: &World, key: &str, want: Option<u32>, bytes: &[u8]) {
    let got = shoal_jobs::checksum::of(bytes);
    if want.is_some_and(|w| w != got) {
        world.violate(
            "reads_match_checksums",
            format!(
                "{key} was read with checksum {got:08x}, {:08x} recorded",
                want.unwrap_or_default()
            ),
        );
    }
}

/// A finished job's output equals the reference: every part file, read as `shoal output`
/// reads it — from a node the table names as its holder, the first copy that matches its
/// recorded checksum — is the expected one. Checked once per job.
pub fn outputs_match(world: &World, checked: &mut BTreeSet<String>) {
    let Some(n) = most_advanced(world) else {
        return;
    };
    let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
    let expected = lock(&world.expected).clone();
    for j in a.state.state.jobs.jobs.values() {
        if j.state != JobState::Succeeded || checked.contains(&j.id) {
            continue;
        }
        let Some(parts) = expected.get(&j.id) else {
            continue;
        };
        checked.insert(j.id.clone());
        for t in j.reduces.iter().filter(|t| t.kind == TaskKind::Reduce) {
            let want = parts.get(t.index as usize).cloned().unwrap_or_default();
            let Some(a) = t.accepted() else {
                world.violate(
                    "outputs_match",
                    format!("{} part {}: done with no accepted attempt", j.id, t.index),
                );
                continue;
            };
            let key = part_key(&j.id, t.index, a.attempt);
            let sum = t.output_checksums.first().copied();
            let got = t.holders.iter().find_map(|&h| {
                let m = lock(world.machines.get(World::index(h))?);
                let b = lock(&m.blobs).get(&key).cloned();
                b.filter(|b| sum.is_none_or(|s| s == shoal_jobs::checksum::of(b)))
            });
            match got {
                None => world.violate(
                    "outputs_match",
                    format!(
                        "{} part {}: no holder {:?} has an intact copy",
                        j.id, t.index, t.holders
                    ),
                ),
                Some(b) if *b != want => world.violate(
                    "outputs_match",
                    format!(
                        "{} part {}: {} bytes, expected {} ({} of {} lines differ)",
                        j.id,
                        t.index,
                        b.len(),
                        want.len(),
                        differing_lines(&b, &want),
                        want.split(|&c| c == b'\n').count().saturating_sub(1)
                    ),
                ),
                Some(_) => {}
            }
        }
    }
}

fn differing_lines(a: &[u8], b: &[u8]) -> usize {
    let la: BTreeSet<&[u8]> = a.split(|&c| c == b'\n').collect();
    let lb: BTreeSet<&[u8]> = b.split(|&c| c == b'\n').collect();
    la.symmetric_difference(&lb).count()
}

/// Whether every holder of an input split of a map `job` still needed was killed with its
/// disk: that input is gone, and failing the job is the honest end.
fn input_lost(world: &World, job: &shoal_jobs::cluster::Job) -> bool {
    job.maps
        .iter()
        .filter(|t| t.state != TaskState::Done)
        .filter_map(|t| job.splits.get(t.index as usize))
        .any(|s| {
            s.holders.iter().all(|&h| {
                world
                    .machines
                    .get(World::index(h))
                    .is_some_and(|m| lock(m).killed)
            })
        })
}

/// Every job ends: once faults stop and the liveness deadline passed, every job in the
/// table of the most advanced node has succeeded — or failed because an input split it
/// still needed was on killed disks only (splits are copied at submission as far as the
/// network lets them, and never again) — and every acknowledged job is there.
pub fn every_job_ends(world: &World) {
    let Some(n) = most_advanced(world) else {
        world.violate("every_job_ends", "no node is up".into());
        return;
    };
    let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
    let jobs = &a.state.state.jobs.jobs;
    if let Some(j) = jobs.values().find(|j| {
        j.state != JobState::Succeeded && !(j.state == JobState::Failed && input_lost(world, j))
    }) {
        let maps = j.maps.iter().filter(|t| t.state == TaskState::Done).count();
        let reduces = j
            .reduces
            .iter()
            .filter(|t| t.state == TaskState::Done)
            .count();
        world.violate(
            "every_job_ends",
            format!(
                "{} is {:?} at the deadline ({maps}/{} maps, {reduces}/{} reduces done){}",
                j.id,
                j.state,
                j.maps.len(),
                j.reduces.len(),
                j.error
                    .as_deref()
                    .map(|e| format!(": {e}"))
                    .unwrap_or_default()
            ),
        );
        return;
    }
    for id in lock(&world.acked).keys() {
        if !jobs.contains_key(id) {
            world.violate(
                "every_job_ends",
                format!("acknowledged job {id} is not in node {}'s table", n.id),
            );
            return;
        }
    }
}

/// Whether every job in the most advanced table has ended.
pub fn all_ended(world: &World) -> bool {
    up(world).iter().all(|n| {
        let a = n.applied.read().unwrap_or_else(|p| p.into_inner());
        a.state
            .state
            .jobs
            .jobs
            .values()
            .all(|j| j.state != JobState::Running)
    })
}

/// On every change of this node's Raft metrics, tell the checker when it leads a term.
pub async fn watch_leadership(node: Arc<SimNode>) {
    use shoal_raft::WatchReceiver;
    let mut changes = node.raft.metrics();
    let mut last = None;
    loop {
        let m = node.metrics();
        if m.state == ServerState::Leader && last != Some(m.current_term) {
            last = Some(m.current_term);
            node.world
                .trace(format!("n{} leads term {}", node.id, m.current_term));
            one_leader_per_term(&node.world, m.current_term, node.id);
        }
        if changes.changed().await.is_err() {
            if !node.stopping.load(std::sync::atomic::Ordering::Relaxed) {
                node.world.violate(
                    "raft_keeps_running",
                    format!(
                        "node {}'s Raft stopped by itself (a panic in its core?)",
                        node.id
                    ),
                );
            }
            return;
        }
    }
}
