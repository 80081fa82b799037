//! The leader's duties besides Raft's own: record the cluster id in the replicated state once,
//! promote live learners to voters up to the voter cap, replace or remove voters silent past
//! `--voter-grace`, keep members' records current (a node may come back on other
//! addresses), and keep heartbeats of members only.
//!
//! Liveness is the manager's: a heartbeat within `--node-timeout` (every lease starts fresh
//! when a node becomes leader). A silent voter is replaced by a live learner when there is
//! one, else removed while more than [`MIN_VOTERS`] voters remain, so a five-node cluster
//! survives three crashes that come one after another. It stays a learner, and is promoted
//! again when it comes back. Below `--learners` live learners, a live plain worker becomes
//! a learner: the nodes lost make room for it, and it can be a voter at the next loss.
//!
//! The invariant: one membership change at a time, only on the leader, and never below
//! [`MIN_VOTERS`] voters by removal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use shoal_raft::ChangeMembers;
use tracing::{info, warn};

use crate::cluster::node::{member_record, Node, RaftHandle};
use crate::cluster::state::Command;
use crate::supervisor::Stop;
use crate::sync::ReadWrite;

/// Removal never takes the voters below this many.
pub const MIN_VOTERS: usize = 3;

/// Run forever: every second, on the leader, apply one membership change if one is due.
pub async fn run(node: Arc<Node>, mut stop: Stop) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut leader_since: Option<Instant> = None;
    loop {
        if stop.or(tick.tick()).await.is_none() {
            return;
        }
        let Some(h) = node.raft.get() else { continue };
        let metrics = shoal_raft::metrics(&h.raft);
        if metrics.current_leader != Some(node.id) {
            leader_since = None;
            continue;
        }
        let since = *leader_since.get_or_insert_with(Instant::now);
        one_change(&node, h, &metrics, since).await;
    }
}

/// On the leader (since `since`): the first change that is due — record the cluster id,
/// replace a silent voter, promote a learner or a plain worker, or refresh the members'
/// records.
async fn one_change(node: &Node, h: &RaftHandle, metrics: &shoal_raft::Metrics, since: Instant) {
    // The first leader records the cluster id in the replicated state.
    let recorded = h
        .applied
        .read()
        .map(|a| a.state.cluster_id.is_some())
        .unwrap_or(true);
    if let (false, Some(cluster_id)) = (recorded, node.cluster_id()) {
        let cmd = shoal_raft::Cmd(shoal_net::codec::encode(&Command::Init { cluster_id }));
        if let Err(e) = h.raft.client_write(cmd).await {
            warn!(error = %e, "recording the cluster id failed; will retry");
        }
        return;
    }
    let m = metrics.membership_config.membership().clone();
    let voters: BTreeSet<u64> = m.voter_ids().collect();
    let learners: Vec<u64> = m.learner_ids().collect();
    let workers = h.applied.read_now().state.workers.clone();
    // Heartbeats are kept for members and workers only (a removed node's last one goes).
    node.heartbeats
        .retain(|id| m.get_node(&id).is_some() || workers.contains_key(&id));
    let hellos = node.peers.by_node(|h| h.info.clone());
    let silent_for = |id: u64| {
        let heard = node.heartbeats.locked();
        let at = heard.get(&id).map(|(at, _)| *at);
        crate::cluster::heartbeats::last_heard(at, since).elapsed()
    };
    let reachable = |id: u64| {
        id == node.id || (hellos.contains_key(&id) && silent_for(id) <= node.settings.node_timeout)
    };
    if let Some(change) = replace_silent_voter(
        &voters,
        &learners,
        |id| id != node.id && silent_for(id) > node.settings.voter_grace,
        reachable,
    ) {
        warn!(
            silent = format!("{:016x}", change.gone),
            replacement = change.by.map(|l| format!("{l:016x}")),
            grace = ?node.settings.voter_grace,
            "a voter was silent past the grace period; changing the voters"
        );
        if let Err(e) = h
            .raft
            .change_membership(ChangeMembers::ReplaceAllVoters(change.voters), true)
            .await
        {
            warn!(error = %e, "replacing a silent voter failed; will retry");
        }
        return;
    }
    if promote(node, h, (&voters, &learners, &workers), &reachable).await {
        return;
    }
    refresh_records(node, h, metrics, &hellos).await;
}

/// Promote a live learner to voter while voters are fewer than the cap, else a live plain
/// worker to learner while live learners are; whether it tried one.
async fn promote(
    node: &Node,
    h: &RaftHandle,
    (voters, learners, workers): (&BTreeSet<u64>, &[u64], &BTreeMap<u64, shoal_raft::NodeInfo>),
    reachable: &(dyn Fn(u64) -> bool + Sync),
) -> bool {
    if voters.len() < node.settings.voter_cap {
        if let Some(&l) = learners.iter().find(|&&l| reachable(l)) {
            info!(
                learner = format!("{l:016x}"),
                "promoting a learner to voter"
            );
            if let Err(e) = h
                .raft
                .change_membership(ChangeMembers::AddVoterIds([l].into()), true)
                .await
            {
                warn!(error = %e, "promotion failed");
            }
            return true;
        }
    }
    // A learner that is gone (a voter replaced while silent stays one) holds no place:
    // only live learners count against the cap, so a live worker takes over.
    if learners.iter().filter(|&&l| reachable(l)).count() < node.settings.learner_cap {
        if let Some((&w, info)) = workers.iter().find(|(&w, _)| reachable(w)) {
            info!(
                worker = format!("{w:016x}"),
                "promoting a plain worker to learner"
            );
            // A learner first, then no longer a worker: it is never neither.
            let added = h.raft.add_learner(w, info.clone(), false).await;
            let dropped = match added {
                Ok(_) => node
                    .propose_once(&Command::DropWorker { node_id: w })
                    .await
                    .map(|_| ()),
                Err(e) => Err(crate::cluster::propose::ProposeError::Raft(e.to_string())),
            };
            if let Err(e) = dropped {
                warn!(error = %e, "promoting a plain worker failed");
            }
            return true;
        }
    }
    false
}

/// Keep members' records current (addresses change when a node restarts).
async fn refresh_records(
    node: &Node,
    h: &RaftHandle,
    metrics: &shoal_raft::Metrics,
    hellos: &std::collections::HashMap<u64, shoal_net::wire::PeerInfo>,
) {
    let m = metrics.membership_config.membership();
    let mut updates = BTreeMap::new();
    for (&id, info) in hellos {
        if let Some(cur) = m.get_node(&id) {
            let fresh = member_record(info.clone());
            if *cur != fresh && !fresh.addrs.is_empty() {
                updates.insert(id, fresh);
            }
        }
    }
    if let Some(cur) = m.get_node(&node.id) {
        let me = node.node_info();
        if *cur != me {
            updates.insert(node.id, me);
        }
    }
    if !updates.is_empty() {
        if let Err(e) = h
            .raft
            .change_membership(ChangeMembers::SetNodes(updates), true)
            .await
        {
            warn!(error = %e, "updating member records failed");
        }
    }
}

/// On the leader: take member `x` out of the membership, as `shoal remove` asked (the table
/// says so) — a voter is first replaced by a live learner, or removed while more than
/// [`MIN_VOTERS`] voters remain, then it is dropped; `Err` with the reason when it may not
/// leave (yet).
pub async fn remove_member(node: &Node, x: u64) -> Result<(), String> {
    let h = node.raft.get().ok_or("this node has no cluster yet")?;
    let metrics = shoal_raft::metrics(&h.raft);
    if metrics.current_leader != Some(node.id) {
        return Err("not the leader".into());
    }
    let asked = crate::cluster::node::with_jobs(node, |t| {
        t.draining
            .get(&x)
            .is_some_and(|d| d.cause == shoal_jobs::cluster::DrainCause::Removing)
    })
    .unwrap_or(false);
    if !asked {
        return Err(format!(
            "node {x:016x} was not asked to leave (shoal remove)"
        ));
    }
    let m = metrics.membership_config.membership().clone();
    let voters: BTreeSet<u64> = m.voter_ids().collect();
    if voters.contains(&x) {
        let connected = node.peers.by_node(|_| ());
        let live = |id: u64| id == node.id || connected.contains_key(&id);
        let learners: Vec<u64> = m.learner_ids().collect();
        let change =
            replace_silent_voter(&voters, &learners, |id| id == x, live).ok_or_else(|| {
                format!(
                "removing voter {x:016x} would leave fewer than {MIN_VOTERS} voters and no live \
                 learner takes its place: add a node first"
            )
            })?;
        info!(
            leaving = format!("{x:016x}"),
            replacement = change.by.map(|l| format!("{l:016x}")),
            "a voter leaves the cluster (shoal remove)"
        );
        h.raft
            .change_membership(ChangeMembers::ReplaceAllVoters(change.voters), true)
            .await
            .map_err(|e| format!("changing the voters: {e}"))?;
    }
    let worker = h.applied.read_now().state.workers.contains_key(&x);
    if worker {
        node.propose_once(&Command::DropWorker { node_id: x })
            .await
            .map_err(|e| format!("removing the worker: {e}"))?;
        info!(
            left = format!("{x:016x}"),
            "a plain worker left the cluster (shoal remove)"
        );
    }
    if m.get_node(&x).is_some() {
        h.raft
            .change_membership(ChangeMembers::RemoveNodes([x].into()), false)
            .await
            .map_err(|e| format!("removing the node: {e}"))?;
        info!(
            left = format!("{x:016x}"),
            "a node left the cluster (shoal remove)"
        );
    }
    Ok(())
}

/// A change of voters for one that went silent.
#[derive(Debug, PartialEq, Eq)]
pub struct VoterChange {
    /// The silent voter.
    pub gone: u64,
    /// The live learner taking its place, if any.
    pub by: Option<u64>,
    /// The new set of voters.
    pub voters: BTreeSet<u64>,
}

/// The first voter `gone` says is silent past the grace period, replaced by the first
/// `live` learner, or removed when more than [`MIN_VOTERS`] voters remain; `None` when no
/// change is due or allowed.
pub fn replace_silent_voter(
    voters: &BTreeSet<u64>,
    learners: &[u64],
    gone: impl Fn(u64) -> bool,
    live: impl Fn(u64) -> bool,
) -> Option<VoterChange> {
    let silent = voters.iter().copied().find(|&v| gone(v))?;
    let mut next = voters.clone();
    next.remove(&silent);
    let by = learners.iter().copied().find(|&l| live(l));
    match by {
        Some(l) => {
            next.insert(l);
        }
        None if next.len() < MIN_VOTERS => return None,
        None => {}
    }
    Some(VoterChange {
        gone: silent,
        by,
        voters: next,
    })
}
