//! The manager loop: on the Raft leader only, read the applied job table, ask the pure
//! scheduler what to start, and propose it as one batch. It wakes whenever Raft's metrics
//! change (a command applied, a leader change) and at least twice a second.
//!
//! The invariant: the loop proposes only while this node is the leader, and only what
//! [`shoal_jobs::scheduler::plan`] returned for the state it read; a stale proposal is
//! harmless because every command is attempt-tagged.

use std::sync::Arc;
use std::time::Duration;

use std::collections::BTreeSet;
use std::time::Instant;

use shoal_jobs::cluster::{self, Cluster, JobState, NodeId, TaskKind, TaskState};
use shoal_jobs::scheduler::{plan, NodeSlots};
use shoal_raft::ServerState;
use tracing::{debug, warn};

use crate::node::{Heartbeats, Node};
use crate::state::Command;

/// How often the loop looks even when nothing changed.
const TICK: Duration = Duration::from_millis(500);

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Members this node can reach (itself included) and their slots.
pub fn live_nodes(node: &Node) -> Vec<NodeSlots> {
    let Some(h) = node.raft.get() else {
        return Vec::new();
    };
    let m = shoal_raft::metrics(&h.raft);
    let hellos = node.hellos();
    let mut out: Vec<NodeSlots> = m
        .membership_config
        .membership()
        .nodes()
        .filter_map(|(&id, _)| {
            if id == node.id {
                return Some(NodeSlots {
                    node: id,
                    slots: node.settings.slots,
                });
            }
            hellos.iter().find(|h| h.node_id == id).map(|h| NodeSlots {
                node: id,
                slots: h.info.slots.max(1),
            })
        })
        .collect();
    out.sort_by_key(|n| n.node);
    out
}

/// The start of node `n`'s current lease: its last heartbeat, but never before this node
/// became leader (a new manager starts every lease fresh).
pub fn last_heard(heard: &Heartbeats, n: NodeId, leader_since: Instant) -> Instant {
    heard
        .get(&n)
        .map_or(leader_since, |(at, _)| (*at).max(leader_since))
}

/// Nodes whose lease ran out: silent (no heartbeat) for longer than `--node-timeout`,
/// counted from when this node became leader at the earliest, and with something the job
/// table still expects of them (a running attempt, or map output that only they hold).
fn expired(node: &Node, jobs: &Cluster, leader_since: Instant) -> Vec<NodeId> {
    let timeout = node.settings.node_timeout;
    let heard = node.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
    let silent = |n: NodeId| last_heard(&heard, n, leader_since).elapsed() > timeout;
    let mut out = BTreeSet::new();
    for j in jobs.jobs.values().filter(|j| j.state == JobState::Running) {
        let reduces_done = j.reduces.iter().all(|t| t.state == TaskState::Done);
        for t in j.maps.iter().chain(j.reduces.iter()) {
            for a in t.attempts.iter().filter(|a| a.state == TaskState::Running) {
                if a.node != node.id && silent(a.node) {
                    out.insert(a.node);
                }
            }
            if t.kind == TaskKind::Map && t.state == TaskState::Done && !reduces_done {
                if let [only] = t.holders[..] {
                    if only != node.id && silent(only) {
                        out.insert(only);
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// Run forever.
pub async fn run(node: Arc<Node>) {
    let h = node.raft_started().await;
    let mut changes = h.raft.metrics();
    let mut leader_since: Option<Instant> = None;
    loop {
        crate::node::next_change(&mut changes, TICK).await;
        let m = shoal_raft::metrics(&h.raft);
        if m.current_leader != Some(node.id) || m.state != ServerState::Leader {
            leader_since = None;
            continue;
        }
        // A new manager starts every lease fresh.
        let since = *leader_since.get_or_insert_with(Instant::now);
        let lost = {
            let applied = h.applied.read().unwrap_or_else(|p| p.into_inner());
            expired(&node, &applied.state.jobs, since)
        };
        if let Some(&n) = lost.first() {
            warn!(node = %crate::view::hex(n), timeout = ?node.settings.node_timeout, "a node went silent; declaring it lost");
            let cmd = Command::Jobs(cluster::Command::NodeLost {
                node: n,
                at_ms: now_ms(),
            });
            if let Err(e) = node.propose_once(&cmd).await {
                warn!(error = %e, "declaring a node lost failed; will retry");
            }
            continue;
        }
        let forget = {
            let applied = h.applied.read().unwrap_or_else(|p| p.into_inner());
            beyond_retention(&applied.state.jobs, node.settings.retain_jobs)
        };
        if let Some(job) = forget {
            debug!(%job, "forgetting an ended job beyond --retain-jobs");
            if let Err(e) = node
                .propose_once(&Command::Jobs(cluster::Command::Forget { job }))
                .await
            {
                warn!(error = %e, "forgetting an old job failed; will retry");
            }
            continue;
        }
        let nodes: Vec<NodeSlots> = {
            let heard = node.heartbeats.lock().unwrap_or_else(|p| p.into_inner());
            live_nodes(&node)
                .into_iter()
                .filter(|n| {
                    // Live: heard within the timeout (or, with no heartbeat yet, still inside
                    // the grace period since this node became leader) — the same clock as
                    // `expired`, so a node is never given work it would be declared lost for.
                    n.node == node.id
                        || last_heard(&heard, n.node, since).elapsed() <= node.settings.node_timeout
                })
                .collect()
        };
        let cmds = {
            let applied = h.applied.read().unwrap_or_else(|p| p.into_inner());
            plan(&applied.state.jobs, &nodes, now_ms())
        };
        if cmds.is_empty() {
            continue;
        }
        debug!(n = cmds.len(), "proposing assignments");
        if let Err(e) = node.propose_once(&Command::Batch(cmds)).await {
            warn!(error = %e, "proposing assignments failed; will retry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// The oldest ended job (by when it ended) when more than `keep` have ended.
fn beyond_retention(jobs: &Cluster, keep: usize) -> Option<String> {
    let mut ended: Vec<(u64, &String)> = jobs
        .jobs
        .values()
        .filter(|j| j.state != JobState::Running)
        .map(|j| (j.finished_ms.unwrap_or(j.submitted_ms), &j.id))
        .collect();
    if ended.len() <= keep {
        return None;
    }
    ended.sort();
    ended.first().map(|(_, id)| (*id).clone())
}

/// The peer id of member `id`, from the Raft membership.
pub fn peer_of(node: &Node, id: NodeId) -> Option<shoal_net::PeerId> {
    let h = node.raft.get()?;
    let m = shoal_raft::metrics(&h.raft);
    let info = m.membership_config.get_node(&id)?;
    info.peer_id.parse().ok()
}
