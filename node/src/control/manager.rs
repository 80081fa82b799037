//! The manager loop: on the Raft leader only, read the applied job table, ask the pure
//! scheduler what to start, and propose it as one batch. It wakes whenever Raft's metrics
//! change (a command applied, a leader change) and at least twice a second.
//!
//! The invariant: the loop proposes only while this node is the leader, and only what
//! [`shoal_jobs::scheduler::plan`] returned for the state it read; a stale proposal is
//! harmless because every command is attempt-tagged.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{self, Cluster, JobState, NodeId, TaskKind, TaskState};
use shoal_jobs::scheduler::{plan, NodeSlots};
use shoal_raft::ServerState;
use tracing::{debug, warn};

use crate::clock::now_ms;
use crate::cluster::heartbeats::last_heard;
use crate::cluster::members::live_nodes;
use crate::cluster::propose::ProposeError;
use crate::cluster::state::Command;
use crate::control::worker::WorkerHost;
use crate::control::Control;
use crate::supervisor::Stop;

/// How often the loop looks even when nothing changed.
const TICK: Duration = Duration::from_millis(500);

/// Nodes whose lease ran out — `silent` says whether a node has been quiet past
/// `--node-timeout` — and with something the job table still expects of them (a running
/// attempt, or map output that only they hold).
fn expired(jobs: &Cluster, me: NodeId, silent: &impl Fn(NodeId) -> bool) -> Vec<NodeId> {
    let mut out = BTreeSet::new();
    for j in jobs.jobs.values().filter(|j| j.state == JobState::Running) {
        let reduces_done = j.reduces.iter().all(|t| t.state == TaskState::Done);
        for t in j.maps.iter().chain(j.reduces.iter()) {
            for a in t.attempts.iter().filter(|a| a.state == TaskState::Running) {
                if a.node != me && silent(a.node) {
                    out.insert(a.node);
                }
            }
            // A map that only one node's disk can feed waits for that node.
            let pinned = match t.kind {
                TaskKind::Map => j.splits.get(t.index as usize).and_then(|s| s.pinned()),
                TaskKind::Reduce => None,
            };
            if let Some(n) = pinned.filter(|_| t.state != TaskState::Done) {
                if n != me && silent(n) {
                    out.insert(n);
                }
            }
            if t.kind == TaskKind::Map && t.state == TaskState::Done && !reduces_done {
                if let [only] = t.holders[..] {
                    if only != me && silent(only) {
                        out.insert(only);
                    }
                }
            }
        }
    }
    out.into_iter().collect()
}

/// What the manager knows besides the job table when it decides.
#[derive(Debug, Clone)]
pub struct Outlook {
    /// This node (the leader).
    pub me: NodeId,
    /// Members it can reach and their slots.
    pub members: Vec<NodeSlots>,
    /// `--node-timeout`.
    pub node_timeout: Duration,
    /// `--retain-jobs`.
    pub retain_jobs: usize,
    /// Now, ms since the epoch (goes into the commands).
    pub now_ms: u64,
}

/// The manager's next proposal, a pure function of the applied table, what it knows of the
/// members, and how long each has been silent (since its last heartbeat, or since this node
/// became leader when later): a silent node that the table still needs is declared lost;
/// else the oldest ended job beyond `--retain-jobs` is forgotten; else the scheduler's
/// assignments for the members heard from within the timeout. The daemon and the simulator
/// both call it.
pub fn decide(
    jobs: &Cluster,
    o: &Outlook,
    silent_for: impl Fn(NodeId) -> Duration,
) -> Option<Command> {
    let silent = |n: NodeId| silent_for(n) > o.node_timeout;
    if let Some(&n) = expired(jobs, o.me, &silent).first() {
        return Some(Command::Jobs(cluster::Command::NodeLost {
            node: n,
            at_ms: o.now_ms,
        }));
    }
    if let Some(job) = beyond_retention(jobs, o.retain_jobs) {
        return Some(Command::Jobs(cluster::Command::Forget { job }));
    }
    // Live: heard within the timeout (or, with no heartbeat yet, still inside the grace
    // period since this node became leader) — the same clock as `expired`, so a node is
    // never given work it would be declared lost for.
    let live: Vec<NodeSlots> = o
        .members
        .iter()
        .filter(|n| n.node == o.me || !silent(n.node))
        .copied()
        .collect();
    let cmds = plan(jobs, &live, o.now_ms);
    (!cmds.is_empty()).then_some(Command::Batch(cmds))
}

/// What the manager loop needs from where it runs, besides what the worker loop needs (the
/// applied table, Raft's changes, the clock): whether this node leads, what it knows of the
/// members, their heartbeats, and proposing here.
pub trait ManagerHost: WorkerHost {
    /// Whether this node is the Raft leader now.
    fn leads(&self) -> bool;
    /// The members this node can reach, `--node-timeout`, `--retain-jobs`, and now.
    fn outlook(&self) -> Outlook;
    /// When each node's last heartbeat came.
    fn heard(&self) -> BTreeMap<NodeId, tokio::time::Instant>;
    /// Propose `cmd` once, through this node's Raft (it leads).
    fn propose_here(&self, cmd: &Command) -> impl Future<Output = Result<(), ProposeError>> + Send;
}

/// The daemon's manager loop, until the node stops.
pub async fn run(ctl: Arc<Control>, stop: Stop) {
    run_on(ctl, stop).await
}

/// The manager loop on `host`: while it leads, propose what [`decide`] says the table
/// needs next. Until `stop`.
pub async fn run_on<H: ManagerHost>(host: Arc<H>, mut stop: Stop) {
    let Some(mut changes) = stop.or(host.table_changes()).await else {
        return;
    };
    let mut leader_since: Option<tokio::time::Instant> = None;
    loop {
        if stop.or(changes.next(TICK)).await.is_none() {
            return;
        }
        if !host.leads() {
            leader_since = None;
            continue;
        }
        // A new manager starts every lease fresh.
        let since = *leader_since.get_or_insert_with(tokio::time::Instant::now);
        let outlook = host.outlook();
        // The heartbeats first, the table after: no lock of one is held while taking the
        // other.
        let heard = host.heard();
        let next = host.read_table(|jobs, _| {
            decide(jobs, &outlook, |n| {
                last_heard(heard.get(&n).copied(), since).elapsed()
            })
        });
        let Some(cmd) = next else { continue };
        match &cmd {
            Command::Jobs(cluster::Command::NodeLost { node: n, .. }) => {
                warn!(node = %crate::cluster::identity::hex(*n), timeout = ?outlook.node_timeout, "a node went silent; declaring it lost");
            }
            Command::Jobs(cluster::Command::Forget { job }) => {
                debug!(%job, "forgetting an ended job beyond --retain-jobs");
            }
            Command::Batch(cmds) => debug!(n = cmds.len(), "proposing assignments"),
            _ => {}
        }
        if let Err(e) = host.propose_here(&cmd).await {
            warn!(error = %e, "the manager's proposal failed; will retry");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl ManagerHost for Control {
    fn leads(&self) -> bool {
        self.node.raft.get().is_some_and(|h| {
            let m = shoal_raft::metrics(&h.raft);
            m.current_leader == Some(self.node.id) && m.state == ServerState::Leader
        })
    }

    fn outlook(&self) -> Outlook {
        Outlook {
            me: self.node.id,
            members: live_nodes(&self.node),
            node_timeout: self.node.settings.node_timeout,
            retain_jobs: self.node.settings.retain_jobs,
            now_ms: now_ms(),
        }
    }

    fn heard(&self) -> BTreeMap<NodeId, tokio::time::Instant> {
        self.node
            .heartbeats
            .locked()
            .iter()
            .map(|(&n, (at, _))| (n, *at))
            .collect()
    }

    async fn propose_here(&self, cmd: &Command) -> Result<(), ProposeError> {
        self.node.propose_once(cmd).await.map(|_| ())
    }
}

/// The oldest ended job (by when it ended) that no running job reads in place, when more
/// than `keep` have ended.
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
    // A job whose parts a running job reads stays: the oldest of the others goes.
    let read = jobs.read_in_place();
    ended
        .iter()
        .find(|(_, id)| !read.contains(id.as_str()))
        .map(|(_, id)| (*id).clone())
}
