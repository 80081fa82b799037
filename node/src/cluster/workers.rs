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
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::NodeId;
use shoal_jobs::spec::JobSpec;
use shoal_net::wire::{CtlRequest, CtlResponse};
use shoal_net::{codec, Transport};
use shoal_raft::NodeInfo;
use tracing::{debug, warn};

use crate::cluster::identity::hex;
use crate::cluster::node::{Node, CTL_TIMEOUT};
use crate::cluster::pushed::{concerns, Push, PushedJob, Role, Sent, KEEPALIVE, OUT_OF_STEP};
use crate::cluster::rpc::peer_ref;
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

/// Run forever: while this node leads, push to every plain worker what it lacks.
pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(PUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The jobs' digests and sizes, as of the applied index they were made at.
    let mut digests: (u64, HashMap<String, (u64, usize)>) = (0, HashMap::new());
    loop {
        tick.tick().await;
        let Some(h) = node.raft.get() else { continue };
        let m = shoal_raft::metrics(&h.raft);
        if m.current_leader != Some(node.id) {
            node.pushes.sent.locked().clear();
            continue;
        }
        let Some(cluster_id) = node.cluster_id() else {
            continue;
        };
        let term = m.current_term;
        let membership = m.membership_config.membership();
        let mut roster: Vec<(NodeId, NodeInfo, Role)> = membership
            .nodes()
            .map(|(&id, info)| {
                let voter = membership.voter_ids().any(|v| v == id);
                let role = if voter { Role::Voter } else { Role::Learner };
                (id, info.clone(), role)
            })
            .collect();
        let mut pushes = Vec::new();
        {
            let applied = h.applied.read_now();
            let index = applied.last_applied.map_or(0, |l| l.index);
            let state = &applied.state;
            if state.workers.is_empty() {
                continue;
            }
            roster.extend(
                state
                    .workers
                    .iter()
                    .map(|(&id, i)| (id, i.clone(), Role::Worker)),
            );
            let (roster_digest, _) = digest(&(&roster, &state.jobs.draining));
            if digests.0 != index || digests.1.len() != state.jobs.jobs.len() {
                digests = (
                    index,
                    state
                        .jobs
                        .jobs
                        .iter()
                        .map(|(id, j)| (id.clone(), digest(j)))
                        .collect(),
                );
            }
            let mut sent = node.pushes.sent.locked();
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
                let mut jobs = Vec::new();
                let mut bytes = 0;
                let mut wanted = std::collections::HashSet::new();
                for job in state.jobs.jobs.values().filter(|j| concerns(j, w)) {
                    wanted.insert(job.id.clone());
                    let Some(&(d, size)) = digests.1.get(&job.id) else {
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
                let gone: Vec<String> = acked
                    .keys()
                    .filter(|id| !wanted.contains(*id))
                    .cloned()
                    .collect();
                for id in &gone {
                    acked.remove(id);
                }
                let roster_changed = full || st.roster != roster_digest;
                let roster = roster_changed.then(|| roster.clone());
                let draining = roster_changed.then(|| state.jobs.draining.clone());
                // Nothing new: a bare push at least every KEEPALIVE, so the worker knows
                // its leader lives.
                let recent = st.sent_at.is_some_and(|t| t.elapsed() < KEEPALIVE);
                if !full && jobs.is_empty() && gone.is_empty() && roster.is_none() && recent {
                    continue;
                }
                st.busy = true;
                st.sent_at = Some(std::time::Instant::now());
                let push = Push {
                    term,
                    leader: node.id,
                    seq: st.seq + 1,
                    base: st.seq,
                    index,
                    roster,
                    draining,
                    jobs,
                    gone,
                };
                pushes.push((w, info.clone(), push, acked, roster_digest));
            }
        }
        for (w, info, push, acked, roster_digest) in pushes {
            let node = Arc::clone(&node);
            tokio::spawn(async move {
                let answer = match peer_ref(&info) {
                    Ok(to) => {
                        let req = CtlRequest::Push {
                            cluster_id,
                            push: codec::encode(&push),
                        };
                        node.net.ctl(&to, req, CTL_TIMEOUT).await
                    }
                    Err(e) => Ok(CtlResponse::Refused(e)),
                };
                let mut sent = node.pushes.sent.locked();
                let Some(st) = sent.get_mut(&w).filter(|st| st.term == push.term) else {
                    return;
                };
                st.busy = false;
                match answer {
                    Ok(CtlResponse::Ok) => {
                        st.seq = push.seq;
                        st.jobs = acked;
                        st.roster = roster_digest;
                    }
                    Ok(CtlResponse::Refused(why)) if why == OUT_OF_STEP => {
                        debug!(worker = %hex(w), "a plain worker is out of step; sending everything");
                        *st = Sent {
                            term: push.term,
                            ..Sent::default()
                        };
                    }
                    Ok(other) => {
                        warn!(worker = %hex(w), answer = ?other, "a plain worker refused a push")
                    }
                    Err(e) => debug!(worker = %hex(w), error = %e, "a push was not delivered"),
                }
            });
        }
    }
}
