//! A plain worker's job table: what the leader pushes it over `/shoal/ctl/1` instead of
//! the Raft log — the jobs that concern it (an attempt, a split or a part on it) and the
//! cluster's roster (who may talk to it, and where the leader is).
//!
//! Pushes are numbered within a leader's term: the first of a term, or one after the worker
//! said it is out of step, carries everything (`base` 0); every other one only what changed
//! since the push it names as its base. A push is answered only once applied, so the leader
//! knows what the worker holds. The roster (every member and worker: N entries) is the one
//! part that grows with the cluster, so even a first push leaves it out when the worker
//! already holds the very roster it names by digest (a new leader's, usually): the worker
//! answers [`Reason::RosterWanted`] when it does not, and the next push carries it. A leader change
//! thus costs each worker its jobs, not every node's record.
//!
//! The leader pushes every worker at least every [`KEEPALIVE`], so a worker knows its
//! leader is alive: while it is, a push from a node outside the roster the worker holds is
//! refused (a key holder that is no member cannot take a worker over); after
//! [`LEADER_SILENT`] without one, a new leader that the worker's roster does not name yet
//! is taken.
//!
//! While the leader is heard from, another node takes a worker over only as a voter of the
//! roster (only a voter can be elected) whose term is later than the one held, by at most
//! [`MAX_TERM_STEP`]: a member that lies about its term (2^40, say) cannot lock the real
//! leader out, and a plain worker or learner holding the key cannot push at all.
//!
//! The invariant: a push is applied only from the node it names as leader, never from an
//! older term than the last one applied, and only onto the very push it was made against.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_jobs::cluster::{Cluster, Drain, Job, NodeId};
use shoal_net::wire::{Reason, Refusal};
use shoal_raft::NodeInfo;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cluster::identity::hex;
use crate::sync::Locked;

/// The leader pushes each worker at least this often, changes or not.
pub const KEEPALIVE: Duration = Duration::from_secs(1);
/// A worker takes a push from outside its roster only after its leader was silent this long.
pub const LEADER_SILENT: Duration = Duration::from_secs(5);
/// How much later than the held term a new leader's may be while the held leader is heard
/// from: each election round adds one, and a new leader is elected in a few.
pub const MAX_TERM_STEP: u64 = 64;

/// Why a worker refuses a push that does not follow the one it holds: the leader sends
/// everything next.
const OUT_OF_STEP: &str = "out of step with the leader's pushes; send everything";
/// Why a worker refuses a push that names a roster it lacks: the leader sends it next.
const ROSTER_WANTED: &str = "this worker does not hold the roster the push names; send it";

/// One push from the leader to a plain worker.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// The leader's Raft term.
    pub term: u64,
    /// The leader.
    pub leader: NodeId,
    /// This push's number in the term (from 1).
    pub seq: u64,
    /// The push this one adds to; 0: it carries everything.
    pub base: u64,
    /// The leader's last applied log index when it made the push.
    pub index: u64,
    /// Every member and plain worker, its record and role, when it or `draining` changed,
    /// or when the worker said it lacks it ([`Reason::RosterWanted`]).
    pub roster: Option<Vec<(NodeId, NodeInfo, Role)>>,
    /// The digest of the roster and `draining` as of this push: a push without them is
    /// applied only onto a table that holds this very roster.
    pub roster_digest: u64,
    /// The nodes being drained (`shoal drain`, `shoal remove`, stopping), with `roster`.
    pub draining: Option<BTreeMap<NodeId, Drain>>,
    /// Jobs that are new to the worker or changed. A job whose spec the worker already has
    /// comes with `spec_sent` false and a default spec, and keeps the one it has.
    pub jobs: Vec<PushedJob>,
    /// Jobs that no longer concern the worker (or that the table forgot).
    pub gone: Vec<String>,
}

/// What a node of the roster is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// A Raft voter.
    Voter,
    /// A Raft learner.
    Learner,
    /// A plain worker.
    Worker,
}

impl Role {
    /// As the cluster view names it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Voter => "voter",
            Role::Learner => "learner",
            Role::Worker => "worker",
        }
    }
}

/// A job in a [`Push`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushedJob {
    /// The job.
    pub job: Job,
    /// Whether `job.spec` is the job's (else the worker keeps the spec it has).
    pub spec_sent: bool,
}

/// What a plain worker holds of the leader's pushes.
#[derive(Debug, Clone, Default)]
pub struct Table {
    /// The term of the pushes applied.
    pub term: u64,
    /// Who pushed them.
    pub leader: NodeId,
    /// The last push applied.
    pub seq: u64,
    /// The leader's applied index it was made at.
    pub index: u64,
    /// Members and plain workers, their records and roles.
    pub roster: BTreeMap<NodeId, (NodeInfo, Role)>,
    /// The digest the leader gave the roster (and the draining nodes) held.
    pub roster_digest: u64,
    /// The jobs that concern this node.
    pub jobs: Cluster,
    /// When the last push was applied.
    pub heard: Option<Instant>,
}

/// A plain worker's pushed table, and a watch that changes with every push applied.
pub struct Pushed {
    table: std::sync::Mutex<Option<Table>>,
    changed: watch::Sender<u64>,
}

impl Default for Pushed {
    fn default() -> Self {
        Pushed {
            table: std::sync::Mutex::new(None),
            changed: watch::channel(0).0,
        }
    }
}

/// Whether node `from`, pushing under `term`, may push a worker that holds `t`.
fn takes_over(t: &Table, from: NodeId, term: u64, now: Instant) -> Result<(), Refusal> {
    let refuse = |why: String| Err(Refusal::new(Reason::NotTheLeader, why));
    if term < t.term {
        return refuse(format!(
            "a push of term {term} after one of term {}",
            t.term
        ));
    }
    let silent = t
        .heard
        .is_none_or(|h| now.saturating_duration_since(h) >= LEADER_SILENT);
    if from == t.leader || silent {
        return Ok(());
    }
    match t.roster.get(&from).map(|(_, role)| *role) {
        None => refuse(format!(
            "node {} is not in the cluster's roster and the leader is alive: only the leader \
             pushes",
            hex(from)
        )),
        Some(role @ (Role::Learner | Role::Worker)) => refuse(format!(
            "node {} is a {} and the leader {} is alive: only a voter is elected leader",
            hex(from),
            role.name(),
            hex(t.leader)
        )),
        Some(Role::Voter) if term == t.term => refuse(format!(
            "node {} pushed in term {term}, which node {} leads",
            hex(from),
            hex(t.leader)
        )),
        Some(Role::Voter) if term - t.term > MAX_TERM_STEP => refuse(format!(
            "node {} claims term {term}, {} after the leader's {}: no election gets that far \
             while the leader {} is heard",
            hex(from),
            term - t.term,
            t.term,
            hex(t.leader)
        )),
        Some(Role::Voter) => Ok(()),
    }
}

impl Pushed {
    /// Apply push `p` from node `from`; the reason when refused ([`Reason::OutOfStep`]: the
    /// leader sends everything next).
    pub fn apply(&self, from: NodeId, p: Push) -> Result<(), Refusal> {
        self.apply_at(from, p, Instant::now())
    }

    /// [`Pushed::apply`] at time `now`.
    pub fn apply_at(&self, from: NodeId, p: Push, now: Instant) -> Result<(), Refusal> {
        if p.leader != from {
            return Err(Refusal::new(
                Reason::NotAMember,
                format!(
                    "node {} pushed in the name of node {}",
                    hex(from),
                    hex(p.leader)
                ),
            ));
        }
        let mut slot = self.table.locked();
        if let Some(t) = slot.as_ref() {
            takes_over(t, from, p.term, now)?;
        }
        if p.base == 0
            && p.roster.is_none()
            && slot
                .as_ref()
                .is_none_or(|t| t.roster_digest != p.roster_digest)
        {
            return Err(Refusal::new(Reason::RosterWanted, ROSTER_WANTED));
        }
        let mut t = match (p.base, slot.take()) {
            (0, old) => {
                // The jobs' specs carry over: a new leader need not ship them again; so
                // does the roster, when the push names the one held.
                let (jobs, roster, roster_digest) = old
                    .map(|o| (o.jobs, o.roster, o.roster_digest))
                    .unwrap_or_default();
                Table {
                    jobs,
                    roster,
                    roster_digest,
                    ..Table::default()
                }
            }
            (base, Some(t)) if t.term == p.term && t.leader == from && t.seq == base => t,
            (_, old) => {
                *slot = old;
                return Err(Refusal::new(Reason::OutOfStep, OUT_OF_STEP));
            }
        };
        let mut jobs = std::mem::take(&mut t.jobs.jobs);
        let mut next = BTreeMap::new();
        if p.base != 0 {
            next = std::mem::take(&mut jobs);
        }
        for id in &p.gone {
            next.remove(id);
        }
        for pj in p.jobs {
            let mut job = pj.job;
            if !pj.spec_sent {
                match next.get(&job.id).or_else(|| jobs.get(&job.id)) {
                    Some(had) => job.spec = had.spec.clone(),
                    None => {
                        *slot = None;
                        return Err(Refusal::new(Reason::OutOfStep, OUT_OF_STEP));
                    }
                }
            }
            next.insert(job.id.clone(), job);
        }
        t.jobs.jobs = next;
        if let Some(d) = p.draining {
            t.jobs.draining = d;
        }
        if let Some(r) = p.roster {
            t.roster = r.into_iter().map(|(id, i, role)| (id, (i, role))).collect();
            t.roster_digest = p.roster_digest;
        }
        (t.term, t.leader, t.seq, t.index) = (p.term, p.leader, p.seq, p.index);
        t.heard = Some(now);
        *slot = Some(t);
        drop(slot);
        self.changed.send_modify(|v| *v += 1);
        Ok(())
    }

    /// Read the table; `None` before the first push.
    pub fn read<T>(&self, f: impl FnOnce(Option<&Table>) -> T) -> T {
        f(self.table.locked().as_ref())
    }

    /// The leader that pushed last.
    pub fn leader(&self) -> Option<NodeId> {
        self.read(|t| t.map(|t| t.leader))
    }

    /// Node `id`'s record in the roster.
    pub fn record(&self, id: NodeId) -> Option<NodeInfo> {
        self.read(|t| t.and_then(|t| t.roster.get(&id).map(|(i, _)| i.clone())))
    }

    /// A watch that changes with every push applied.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Wait (at most `limit`) until job `id` is in the table: a job submitted through a
    /// plain worker holds its splits there, so the leader pushes it at once.
    pub async fn wait_for_job(&self, id: &str, limit: std::time::Duration) -> bool {
        let mut changes = self.changes();
        let has = || self.read(|t| t.is_some_and(|t| t.jobs.jobs.contains_key(id)));
        let deadline = tokio::time::Instant::now() + limit;
        while !has() {
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                return has();
            }
        }
        true
    }
}

/// The leader's side (`cluster::workers`): what it knows each plain worker holds, which
/// is what the worker acknowledged.
#[derive(Default)]
pub struct Pushes {
    pub(crate) sent: std::sync::Mutex<std::collections::HashMap<NodeId, Sent>>,
}

/// What one plain worker acknowledged.
#[derive(Default)]
pub(crate) struct Sent {
    /// The term the pushes were made in.
    pub(crate) term: u64,
    /// The last push acknowledged; 0: none (the next carries everything).
    pub(crate) seq: u64,
    /// The roster's digest acknowledged.
    pub(crate) roster: u64,
    /// Each job acknowledged and its digest.
    pub(crate) jobs: std::collections::HashMap<String, u64>,
    /// The worker said it lacks the roster: the next push carries it.
    pub(crate) roster_wanted: bool,
    /// A push is in flight.
    pub(crate) busy: bool,
    /// When the last push was sent.
    pub(crate) sent_at: Option<Instant>,
}

impl Pushes {
    /// Send worker `w` everything next (it joined again, and holds nothing).
    pub fn reset(&self, w: NodeId) {
        self.sent.locked().remove(&w);
    }
}

/// Whether `job` concerns node `w`: an attempt ran or runs there, or it holds a split or
/// a finished task's output.
pub fn concerns(job: &Job, w: NodeId) -> bool {
    job.splits.iter().any(|s| s.holders.contains(&w))
        || job
            .maps
            .iter()
            .chain(job.reduces.iter())
            .any(|t| t.holders.contains(&w) || t.attempts.iter().any(|a| a.node == w))
}
