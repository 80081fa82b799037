//! A node leaving service. Stopping (SIGTERM, Ctrl-C) while attempts run here, it marks
//! itself draining in the table — the manager gives it nothing new — lets those attempts
//! finish and report, and the reduces fetch the map outputs only it holds, for at most
//! `--drain-secs`, and then stops; whatever still runs then is ended with the process and
//! runs again elsewhere (as do maps whose output was still needed). Started again, it takes
//! tasks again (an operator's drain, `shoal drain`, stays until `shoal undrain`). While
//! draining it copies away what would be short without it; removed (`shoal remove`), it
//! leaves the membership and stops.

use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{Cluster, Command, DrainCause, Held, NodeId};
use shoal_net::Transport;
use tracing::{info, warn};

use crate::cluster::node::{next_change, with_jobs};
use crate::cluster::state::Command as StateCommand;
use crate::control::Control;
use crate::supervisor::Stop;

/// Members other than `of` that take copies (not draining).
pub fn others(ctl: &Control, of: NodeId, table: &Cluster) -> usize {
    let Some(h) = ctl.node.raft.get() else {
        return 0;
    };
    let m = shoal_raft::metrics(&h.raft).membership_config;
    let n = m
        .nodes()
        .filter(|(id, _)| **id != of && !table.draining.contains_key(*id))
        .count();
    n
}

/// What this node is still needed for: attempts running here (in the table — assigned, not
/// yet reported — or in the pool), map outputs only it holds that reduces still need, and
/// copies that would be short without it.
fn running(ctl: &Control) -> usize {
    let table = with_jobs(&ctl.node, |t| {
        t.needed_on(ctl.node.id, others(ctl, ctl.node.id, t))
    })
    .unwrap_or(0);
    table.max(ctl.pool.busy())
}

/// Until the node should stop: a first SIGTERM or Ctrl-C, then its drain ([`before_stop`],
/// cut short by a second signal); or at once when it left the cluster (`shoal remove`).
pub async fn until_stopped(ctl: Arc<Control>, grace: Duration) {
    tokio::select! {
        _ = shutdown_signal() => {}
        _ = ctl.node.left.notified() => return,
    }
    tokio::select! {
        _ = before_stop(&ctl, grace) => {}
        _ = shutdown_signal() => warn!("told again to stop: not waiting for the running attempts"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return ctrl_c.await.unwrap_or(()),
    };
    tokio::select! {
        _ = ctrl_c => {}
        _ = term.recv() => {}
    }
}

/// Drain this node before it stops: returns once nothing runs here, or after `grace`.
pub async fn before_stop(ctl: &Arc<Control>, grace: Duration) {
    let Some(h) = ctl.node.raft.get() else { return };
    let n = running(ctl);
    if n == 0 || grace.is_zero() {
        return;
    }
    info!(running = n, grace = ?grace, "stopping: this node takes no new task; its running attempts may finish first (--drain-secs)");
    let deadline = tokio::time::Instant::now() + grace;
    let mut changes = h.raft.metrics();
    let cmd = StateCommand::Jobs(Command::Drain {
        node: ctl.node.id,
        cause: DrainCause::Stopping,
        at_ms: crate::clock::now_ms(),
    });
    let propose = tokio::time::timeout_at(deadline, ctl.node.propose(&cmd, grace));
    if let Ok(Err(e)) = propose.await {
        warn!(error = %e, "could not mark this node draining; its attempts still get the grace period");
    }
    while running(ctl) > 0 {
        if tokio::time::Instant::now() >= deadline {
            warn!(
                running = running(ctl),
                "the grace period ended while attempts ran here or reduces still needed map outputs here; they run again elsewhere"
            );
            return;
        }
        next_change(&mut changes, Duration::from_millis(200)).await;
    }
    info!("nothing here is needed any more (attempts finished and reported, map outputs fetched); stopping");
}

/// Undrain this node whenever the table says it drained itself as an earlier process
/// stopped (a stopping drain from before this process started): it takes tasks again. An
/// operator's drain is left alone. Forever.
pub async fn undrain_after_restart(ctl: Arc<Control>, mut stop: Stop) {
    let Some(h) = stop.or(ctl.node.raft_started()).await else {
        return;
    };
    let mut changes = h.raft.metrics();
    loop {
        let stale = with_jobs(&ctl.node, |t| {
            t.draining.get(&ctl.node.id).is_some_and(|d| {
                d.cause == DrainCause::Stopping && d.since_ms < ctl.node.started_ms
            })
        })
        .unwrap_or(false);
        if stale {
            let cmd = StateCommand::Jobs(Command::Undrain { node: ctl.node.id });
            match ctl.node.propose(&cmd, Duration::from_secs(10)).await {
                Ok(_) => {
                    info!("this node drained itself when it last stopped; it takes tasks again")
                }
                Err(e) => warn!(error = %e, "could not undrain this node; will retry"),
            }
        }
        if stop
            .or(next_change(&mut changes, Duration::from_secs(1)))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// While this node is draining, copy what would be short without it — splits of running
/// jobs, part files — to members that take copies, and record the new holders
/// (`AddHolders`), so every job's `--replication` holds without it. Forever.
pub async fn copy_away(ctl: Arc<Control>, mut stop: Stop) {
    let Some(h) = stop.or(ctl.node.raft_started()).await else {
        return;
    };
    let mut changes = h.raft.metrics();
    loop {
        if stop
            .or(next_change(&mut changes, Duration::from_secs(1)))
            .await
            .is_none()
        {
            return;
        }
        let takers = ctl.store.book.copy_takers();
        let plan = with_jobs(&ctl.node, |t| {
            if !t.draining.contains_key(&ctl.node.id) {
                return Vec::new();
            }
            let others = others(&ctl, ctl.node.id, t);
            t.under_copied(ctl.node.id, others)
                .into_iter()
                .filter_map(|(job, what, missing)| copy_of(&ctl, t, &takers, job, what, missing))
                .collect()
        })
        .unwrap_or_default();
        for c in plan {
            let Some(path) = ctl.store.blobs.path(&c.key).filter(|p| p.exists()) else {
                continue;
            };
            let copied: Vec<NodeId> =
                crate::storage::replication::replicate(&ctl.store, &c.key, &path, &c.targets)
                    .await
                    .into_iter()
                    .filter(|&n| n != ctl.node.id)
                    .collect();
            if copied.is_empty() {
                continue;
            }
            info!(key = %c.key, to = ?copied.iter().map(|&n| crate::cluster::identity::hex(n)).collect::<Vec<_>>(), "draining: copied elsewhere");
            for what in c.what {
                let cmd = StateCommand::Jobs(Command::AddHolders {
                    job: c.job.clone(),
                    what,
                    nodes: copied.clone(),
                });
                if let Err(e) = ctl.node.propose(&cmd, Duration::from_secs(10)).await {
                    warn!(error = %e, "recording a copy failed; will copy again");
                }
            }
        }
    }
}

/// One object to copy away: the splits or part it backs, and where to.
struct Copy {
    job: String,
    key: String,
    what: Vec<Held>,
    targets: Vec<NodeId>,
}

/// The copy that `what` of `job` needs: its object (a split's segment backs every split cut
/// from it: those of them this node holds go along), and `missing` of the members that take
/// copies (`takers`) that do not hold it yet (as many as there are).
fn copy_of(
    ctl: &Control,
    t: &Cluster,
    takers: &[NodeId],
    job: &str,
    what: Held,
    missing: usize,
) -> Option<Copy> {
    let j = t.jobs.get(job)?;
    let (key, holders, what) = match what {
        Held::Split(i) => {
            let s = j.splits.get(i as usize)?;
            let (key, _) = crate::storage::blobs::split_object(job, s);
            let same: Vec<Held> = j
                .splits
                .iter()
                .filter(|o| crate::storage::blobs::split_object(job, o).0 == key)
                .filter(|o| o.holders.contains(&ctl.node.id))
                .map(|o| Held::Split(o.index))
                .collect();
            (key, s.holders.clone(), same)
        }
        Held::Part(i) => {
            let r = j.reduces.get(i as usize)?;
            let a = r.accepted()?;
            (
                crate::storage::blobs::part_key(job, i, a.attempt),
                r.holders.clone(),
                vec![what],
            )
        }
    };
    let targets: Vec<NodeId> = takers
        .iter()
        .copied()
        .filter(|n| !holders.contains(n))
        .take(missing)
        .collect();
    (!targets.is_empty()).then(|| Copy {
        job: job.to_owned(),
        key,
        what,
        targets,
    })
}

/// Once an operator removed this node (`shoal remove`) and nothing here is needed any more,
/// ask the leader to take it out of the membership (or do it, when this node leads), then
/// stop the process (it exits 0). Forever, until then.
pub async fn leave_when_removed(ctl: Arc<Control>, mut stop: Stop) {
    let Some(h) = stop.or(ctl.node.raft_started()).await else {
        return;
    };
    let mut changes = h.raft.metrics();
    let mut said = String::new();
    loop {
        if stop
            .or(next_change(&mut changes, Duration::from_secs(1)))
            .await
            .is_none()
        {
            return;
        }
        let ready = with_jobs(&ctl.node, |t| {
            t.draining
                .get(&ctl.node.id)
                .is_some_and(|d| d.cause == DrainCause::Removing)
                && t.needed_on(ctl.node.id, others(&ctl, ctl.node.id, t)) == 0
        })
        .unwrap_or(false);
        if !ready || ctl.pool.busy() > 0 {
            continue;
        }
        let Some(leader) = crate::cluster::members::leader(&ctl.node) else {
            continue;
        };
        let left = if leader == ctl.node.id {
            crate::cluster::membership::remove_member(&ctl.node, ctl.node.id).await
        } else {
            let Some(peer) = crate::cluster::members::peer_of(&ctl.node, leader) else {
                continue;
            };
            let Some(cluster_id) = ctl.node.cluster_id() else {
                continue;
            };
            let to = shoal_net::PeerRef {
                peer,
                addrs: vec![],
            };
            let req = shoal_net::wire::CtlRequest::Leave { cluster_id };
            match ctl
                .node
                .net
                .ctl(&to, req, crate::cluster::node::CTL_TIMEOUT)
                .await
            {
                Ok(shoal_net::wire::CtlResponse::Ok) => Ok(()),
                Ok(other) => Err(format!("{other:?}")),
                Err(e) => Err(e.to_string()),
            }
        };
        match left {
            Ok(()) => {
                info!("this node left the cluster (shoal remove); stopping");
                ctl.node.left.notify_one();
                return;
            }
            // Said once per reason: a refusal (too few voters) holds until the cluster grows.
            Err(why) if why != said => {
                warn!(reason = %why, "leaving the cluster failed; will retry");
                said = why;
            }
            Err(_) => {}
        }
    }
}
