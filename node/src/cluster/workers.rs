//! The leader's side of plain workers: nodes beyond `--learners` that are not Raft members.
//! Every [`PUSH_EVERY`], the leader sends each worker, over `/shoal/ctl/1`, what changed of
//! the jobs that concern it and of the roster since the last push the worker acknowledged
//! (`cluster::pushed` is the worker's side). A worker that joins again, or says it is out of
//! step, gets everything; so does every worker after a leader change, because a new leader
//! starts with no record of what was sent.
//!
//! The invariant: what the leader records as a worker's is only what the worker
//! acknowledged, so a lost push or answer costs one resend, never a gap.

use std::collections::HashMap;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::spec::JobSpec;
use shoal_net::wire::{CtlRequest, CtlResponse, Reason};
use shoal_net::{codec, Transport};
use shoal_raft::NodeInfo;
use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cluster::identity::hex;
use crate::cluster::node::{Node, CTL_TIMEOUT};
use crate::cluster::propose::Proposer;
use crate::cluster::pushed::{concerns, Push, PushedJob, Pushes, Role, Sent, KEEPALIVE};
use crate::cluster::rpc::peer_ref;
use crate::cluster::state::ClusterState;
use crate::supervisor::Stop;
use crate::sync::{Locked, ReadWrite};

/// How often the leader looks for something to push.
pub const PUSH_EVERY: Duration = Duration::from_millis(100);
/// Jobs' bytes in one push at most (the rest follows in the next): a frame holds 64 MiB.
const PUSH_BYTES: usize = 16 << 20;

fn digest<T: serde::Serialize>(v: &T) -> (u64, usize) {
    let bytes = codec::encode(v);
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    (h.finish(), bytes.len())
}

/// The members in Raft's membership, each with its record and role: the roster's first part.
pub fn members_roster(m: &shoal_raft::Metrics) -> Vec<(NodeId, NodeInfo, Role)> {
    let membership = m.membership_config.membership();
    membership
        .nodes()
        .map(|(&id, info)| {
            let voter = membership.voter_ids().any(|v| v == id);
            let role = if voter { Role::Voter } else { Role::Learner };
            (id, info.clone(), role)
        })
        .collect()
}

/// One push the leader is to send, and what it records once the worker acknowledges it.
pub struct Outgoing {
    /// The plain worker.
    pub worker: NodeId,
    /// Where it is reached.
    pub info: NodeInfo,
    /// The push.
    pub push: Push,
    acked: HashMap<String, u64>,
    roster: u64,
}

impl Outgoing {
    /// Where to send the push, and the request, for cluster `cluster_id`.
    pub fn request(&self, cluster_id: u64) -> Result<(shoal_net::PeerRef, CtlRequest), String> {
        let req = CtlRequest::Push {
            cluster_id,
            push: codec::encode(&self.push),
        };
        Ok((peer_ref(&self.info)?, req))
    }
}

/// The leader's planning of pushes, for the daemon and the simulator alike: it keeps the
/// jobs' digests and sizes as of the applied index they were made at.
#[derive(Default)]
pub struct Planner {
    digests: (u64, HashMap<String, (u64, usize)>),
}

impl Planner {
    /// The pushes leader `me` is to send now, with Raft's metrics `m`, its applied `state`
    /// at log `index`, and `pushes` what each worker acknowledged (each worker planned for
    /// is marked busy until [`Pushes::settle`]).
    pub fn plan(
        &mut self,
        me: NodeId,
        m: &shoal_raft::Metrics,
        index: u64,
        state: &ClusterState,
        pushes: &Pushes,
    ) -> Vec<Outgoing> {
        let mut out = Vec::new();
        if state.workers.is_empty() {
            return out;
        }
        let term = m.current_term;
        let mut roster = members_roster(m);
        roster.extend(
            state
                .workers
                .iter()
                .map(|(&id, i)| (id, i.clone(), Role::Worker)),
        );
        let (roster_digest, _) = digest(&(&roster, &state.jobs.draining));
        if self.digests.0 != index || self.digests.1.len() != state.jobs.jobs.len() {
            self.digests = (
                index,
                state
                    .jobs
                    .jobs
                    .iter()
                    .map(|(id, j)| (id.clone(), digest(j)))
                    .collect(),
            );
        }
        let now = Instant::now();
        let mut sent = pushes.sent.locked();
        sent.retain(|w, _| state.workers.contains_key(w));
        for (&w, info) in &state.workers {
            let st = sent.entry(w).or_default();
            if st.term != term {
                *st = Sent {
                    term,
                    ..Sent::default()
                };
            }
            if st.busy {
                continue;
            }
            let full = st.seq == 0;
            let mut acked: HashMap<String, u64> = if full {
                HashMap::new()
            } else {
                st.jobs.clone()
            };
            let (jobs, gone) = self.changed_jobs(state, w, &mut acked);
            // A first push names the roster by its digest only, unless the worker said it
            // lacks it: a new leader's roster is the one its workers hold, mostly.
            let roster_changed = if full {
                st.roster_wanted
            } else {
                st.roster != roster_digest
            };
            let roster = roster_changed.then(|| roster.clone());
            let draining = roster_changed.then(|| state.jobs.draining.clone());
            // Nothing new: a bare push at least every KEEPALIVE, so the worker knows its
            // leader lives.
            let recent = st
                .sent_at
                .is_some_and(|t| now.saturating_duration_since(t) < KEEPALIVE);
            if !full && jobs.is_empty() && gone.is_empty() && roster.is_none() && recent {
                continue;
            }
            st.busy = true;
            st.sent_at = Some(now);
            let push = Push {
                term,
                leader: me,
                seq: st.seq + 1,
                base: st.seq,
                index,
                roster,
                roster_digest,
                draining,
                jobs,
                gone,
            };
            out.push(Outgoing {
                worker: w,
                info: info.clone(),
                push,
                acked,
                roster: roster_digest,
            });
        }
        out
    }

    /// The jobs concerning worker `w` that changed since what it `acked` (up to
    /// [`PUSH_BYTES`] of them), and those it holds that no longer concern it; `acked`
    /// becomes what it will hold once it takes them.
    fn changed_jobs(
        &self,
        state: &ClusterState,
        w: NodeId,
        acked: &mut HashMap<String, u64>,
    ) -> (Vec<PushedJob>, Vec<String>) {
        let mut jobs = Vec::new();
        let mut bytes = 0;
        let mut wanted = std::collections::HashSet::new();
        for job in state.jobs.jobs.values().filter(|j| concerns(j, w)) {
            wanted.insert(job.id.clone());
            let Some(&(d, size)) = self.digests.1.get(&job.id) else {
                continue;
            };
            if acked.get(&job.id) == Some(&d) || (bytes > 0 && bytes + size > PUSH_BYTES) {
                continue;
            }
            let spec_sent = !acked.contains_key(&job.id);
            let mut job = job.clone();
            if !spec_sent {
                job.spec = JobSpec::default();
            }
            bytes += size;
            acked.insert(job.id.clone(), d);
            jobs.push(PushedJob { job, spec_sent });
        }
        let mut gone: Vec<String> = acked
            .keys()
            .filter(|id| !wanted.contains(*id))
            .cloned()
            .collect();
        // In a fixed order: a simulated run replays byte for byte.
        gone.sort();
        for id in &gone {
            acked.remove(id);
        }
        (jobs, gone)
    }
}

impl Pushes {
    /// Record the worker's answer to `out`: acknowledged, out of step (everything next),
    /// or neither (the same again next).
    pub fn settle(&self, out: Outgoing, answer: Result<CtlResponse, shoal_net::NetError>) {
        let w = out.worker;
        let mut sent = self.sent.locked();
        let Some(st) = sent.get_mut(&w).filter(|st| st.term == out.push.term) else {
            return;
        };
        st.busy = false;
        match answer {
            Ok(CtlResponse::Ok) => {
                st.seq = out.push.seq;
                st.jobs = out.acked;
                st.roster = out.roster;
            }
            Ok(other)
                if let Some(r) = other
                    .refusal()
                    .filter(|r| matches!(r.reason, Reason::OutOfStep | Reason::RosterWanted)) =>
            {
                debug!(worker = %hex(w), why = %r, "sending a plain worker everything");
                *st = Sent {
                    term: out.push.term,
                    roster_wanted: r.reason == Reason::RosterWanted,
                    ..Sent::default()
                };
            }
            Ok(other) => {
                warn!(worker = %hex(w), answer = ?other, "a plain worker refused a push")
            }
            Err(e) => debug!(worker = %hex(w), error = %e, "a push was not delivered"),
        }
    }

    /// Forget every worker's acknowledgements (this node no longer leads).
    pub fn clear(&self) {
        self.sent.locked().clear();
    }
}

/// What the leader's push loop needs of a node beyond proposing: the daemon's [`Node`] and
/// the simulator's node alike, so `shoal sim` runs the loop below.
pub trait Leads: Proposer + 'static {
    /// What each plain worker acknowledged.
    fn pushes(&self) -> &Pushes;
    /// Read the applied state and the log index it is at; `None` before Raft runs.
    fn with_applied<R>(&self, f: impl FnOnce(u64, &ClusterState) -> R) -> Option<R>;
    /// Run one push's request, a task that ends with the node.
    fn spawn_request(&self, f: impl Future<Output = ()> + Send + 'static);
}

impl Leads for Node {
    fn pushes(&self) -> &Pushes {
        &self.pushes
    }

    fn with_applied<R>(&self, f: impl FnOnce(u64, &ClusterState) -> R) -> Option<R> {
        let h = self.raft.get()?;
        let applied = h.applied.read_now();
        Some(f(
            applied.last_applied.map_or(0, |l| l.index),
            &applied.state,
        ))
    }

    fn spawn_request(&self, f: impl Future<Output = ()> + Send + 'static) {
        tokio::spawn(f);
    }
}

/// Until stopped: while this node leads, push to every plain worker what it lacks.
pub async fn run<P: Leads>(node: Arc<P>, mut stop: Stop) {
    let mut tick = tokio::time::interval(PUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut planner = Planner::default();
    loop {
        if stop.or(tick.tick()).await.is_none() {
            return;
        }
        let Some(raft) = node.raft() else { continue };
        let m = shoal_raft::metrics(raft);
        if m.current_leader != Some(node.id()) || m.state != shoal_raft::ServerState::Leader {
            node.pushes().clear();
            continue;
        }
        let Some(cluster_id) = node.cluster() else {
            continue;
        };
        let Some(outgoing) = node
            .with_applied(|index, state| planner.plan(node.id(), &m, index, state, node.pushes()))
        else {
            continue;
        };
        for out in outgoing {
            let n = Arc::clone(&node);
            node.spawn_request(async move {
                let answer = match out.request(cluster_id) {
                    Ok((to, req)) => n.transport().ctl(&to, req, CTL_TIMEOUT).await,
                    Err(e) => Ok(CtlResponse::declined(Reason::Failed, e)),
                };
                n.pushes().settle(out, answer);
            });
        }
    }
}
