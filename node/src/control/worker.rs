//! The worker loop, on every node: watch the applied job table for attempts assigned to this
//! node, run each on the task pool (never on the runtime that drives Raft and libp2p), and
//! report `TaskFinished`/`TaskFailed` to the leader, retrying through leader changes.
//!
//! A map attempt reads its split from this node's store (fetching it from a holder first when
//! this node has no copy) and leaves one sorted file per partition under its attempt's key. A
//! reduce attempt pulls its partition of every map output — from its own store, or over
//! `/shoal/data/1` from the node that ran the map — merges, reduces, writes its part file,
//! copies it to `replication` other nodes, and only then reports.
//!
//! The invariant: an attempt is started at most once per process, stopped as soon as the
//! table says it is no longer running (job killed or ended), and its report names its
//! attempt, so a late report is ignored. When a job ends, its splits and map outputs are
//! deleted here.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{self, Applied, NodeId};
use shoal_net::wire::{CtlRequest, Heartbeat};
use shoal_net::Transport;
use tracing::{debug, info, warn};

use crate::cluster::propose::ProposeError;
use crate::cluster::state::Command;
use crate::control::reconcile::{reconcile, Actions, Seen};
use crate::control::work::{task_id, AttemptState, Cause, Done, Failure, Report, Running, Work};
pub use crate::control::work::{AttemptKey, MapOut};
use crate::control::Control;
use crate::supervisor::Stop;
use crate::sync::Locked;
/// How often the loop looks even when nothing changed.
const TICK: Duration = Duration::from_millis(500);
/// How long a finished attempt keeps trying to report (leader changes, no leader).
const REPORT_PATIENCE: Duration = Duration::from_secs(300);

pub use crate::control::reconcile::{assigned, map_outputs, still_running};

/// What the worker loop needs from where it runs — a node with processes and files, or a
/// node of the simulator with tasks in memory: the applied table, proposing, spawning, and
/// running and cleaning up attempts.
pub trait WorkerHost: Send + Sync + 'static {
    /// This node's id, and when its process started (ms since the epoch): attempts
    /// assigned to it before then died with the previous process.
    fn id_and_boot(&self) -> (NodeId, u64);
    /// Now, in the job table's time (ms since the epoch).
    fn now_ms(&self) -> u64;
    /// Wait until Raft runs here; then what changes when it applies a command (or, on a
    /// plain worker, when the leader pushes).
    fn table_changes(&self) -> impl Future<Output = crate::cluster::node::TableChanges> + Send;
    /// Read the job table and the index of the last command applied to it: the applied
    /// table on a member, the pushed one on a plain worker (`cluster::pushed`).
    fn read_table<T>(&self, f: impl FnOnce(&cluster::Cluster, Option<u64>) -> T) -> T;
    /// Propose `cmd`, retrying through leader changes for up to `patience`.
    fn propose(
        &self,
        cmd: &Command,
        patience: Duration,
    ) -> impl Future<Output = Result<Applied, ProposeError>> + Send;
    /// Run `f` as long as this node runs.
    fn spawn(&self, f: impl Future<Output = ()> + Send + 'static);
    /// Run attempt `w` to its end (stopping early once `st.stop` is set).
    fn execute(
        self: Arc<Self>,
        w: Work,
        st: Arc<AttemptState>,
    ) -> impl Future<Output = Result<Done, Failure>> + Send;
    /// Delete what this node keeps of `job`: everything once the table forgot it (`keep` is
    /// `None`), else its splits, map outputs and the part files not in `keep`.
    fn clean(self: Arc<Self>, job: String, keep: Option<Vec<(u32, u32)>>);
}

/// Run the worker loop of a node, and its heartbeats to the leader beside it, until the
/// node stops.
pub async fn run(ctl: Arc<Control>, stop: Stop) {
    let running = Running::default();
    tokio::join!(
        heartbeats(Arc::clone(&ctl), Arc::clone(&running), stop.clone()),
        run_on(ctl, running, stop),
    );
}

/// The worker loop on `host`, its running attempts in `running`: start what the table
/// assigns here, stop what it no longer wants, report attempts of a previous process lost,
/// and clean up after jobs that ended. Until `stop`.
pub async fn run_on<H: WorkerHost>(host: Arc<H>, running: Running, mut stop: Stop) {
    let Some(mut changes) = stop.or(host.table_changes()).await else {
        return;
    };
    let (reports, queued) = tokio::sync::mpsc::unbounded_channel();
    host.spawn(send_reports(Arc::clone(&host), queued));
    let (me, boot_ms) = host.id_and_boot();
    let mut seen = Seen::default();
    let mut last_applied = None;
    loop {
        if stop.or(changes.next(TICK)).await.is_none() {
            return;
        }
        let applied_at = host.read_table(|_, at| at);
        if applied_at == last_applied && last_applied.is_some() {
            continue;
        }
        last_applied = applied_at;
        let actions = host.read_table(|jobs, _| {
            let run = running.locked();
            let acts = reconcile(jobs, me, boot_ms, &mut seen, run.keys());
            for k in &acts.stop {
                if run.get(k).is_some_and(|st| !st.stop.swap(true, Ordering::Relaxed)) {
                    info!(job = %k.job, task = %task_id(k), attempt = k.attempt, "stopping an attempt the job no longer wants");
                }
            }
            acts
        });
        act(&host, &running, &reports, actions);
    }
}

/// Do what one look at the table decided: start attempts, report those of before the
/// restart lost, and clean up after jobs.
fn act<H: WorkerHost>(
    host: &Arc<H>,
    running: &Running,
    reports: &tokio::sync::mpsc::UnboundedSender<Report>,
    actions: Actions,
) {
    if !actions.start.is_empty() && crate::planted::active(crate::planted::Fault::WorkerPanic) {
        panic!("planted fault: the worker loop dies at its first assignment");
    }
    for w in actions.start {
        let st = Arc::new(AttemptState::new());
        running.locked().insert(w.key.clone(), Arc::clone(&st));
        host.spawn(attempt(
            Arc::clone(host),
            w,
            st,
            Arc::clone(running),
            reports.clone(),
        ));
    }
    for k in actions.stale {
        let h = Arc::clone(host);
        host.spawn(async move {
            info!(job = %k.job, task = %task_id(&k), attempt = k.attempt, "an attempt of before the restart is reported lost");
            let cmd = cluster::Command::TaskFailed {
                job: k.job.clone(),
                kind: k.kind,
                index: k.index,
                attempt: k.attempt,
                error: "its node restarted while it ran".into(),
                exit: None,
                stderr_tail: None,
                lost: true,
                at_ms: h.now_ms(),
            };
            if let Err(e) = h.propose(&Command::Jobs(cmd), REPORT_PATIENCE).await {
                warn!(job = %k.job, error = %e, "reporting a stale attempt failed");
            }
        });
    }
    for job in actions.forget {
        Arc::clone(host).clean(job, None);
    }
    for (job, keep) in actions.clean {
        Arc::clone(host).clean(job, Some(keep));
    }
}

/// One attempt from start to report: run it on the host, then queue its report — unless
/// the table stopped it meanwhile (its report would be stale).
#[tracing::instrument(name = "attempt", skip_all, fields(job = %w.key.job, task = %task_id(&w.key), attempt = w.key.attempt))]
async fn attempt<H: WorkerHost>(
    host: Arc<H>,
    w: Work,
    st: Arc<AttemptState>,
    running: Running,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
) {
    let k = w.key.clone();
    debug!(job = %k.job, task = %task_id(&k), attempt = k.attempt, "attempt starts");
    let result = Arc::clone(&host).execute(w, Arc::clone(&st)).await;
    running.locked().remove(&k);
    if st.stop.load(Ordering::Relaxed) {
        debug!(job = %k.job, task = %task_id(&k), attempt = k.attempt, "attempt stopped");
        return;
    }
    let mut cmds = Vec::new();
    let cmd = match result {
        Ok(done) => cluster::Command::TaskFinished {
            job: k.job.clone(),
            kind: k.kind,
            index: k.index,
            attempt: k.attempt,
            sizes: done.sizes,
            checksums: done.checksums,
            holders: done.holders,
            counters: done.counters,
            at_ms: host.now_ms(),
        },
        Err(mut f) => {
            // A full disk is this node's fault, not the task's: it runs elsewhere.
            if !f.lost && f.cause == Cause::DiskFull {
                f.lost = true;
                f.error = format!(
                    "disk full on node {:016x}: {}",
                    host.id_and_boot().0,
                    f.error
                );
            }
            warn!(job = %k.job, task = %task_id(&k), attempt = k.attempt, error = %f.error, "attempt failed");
            // The lost map output first: the map runs again before this attempt's failure
            // frees its task for another attempt.
            if let Some((index, attempt)) = f.lost_map {
                cmds.push(cluster::Command::MapOutputLost {
                    job: k.job.clone(),
                    index,
                    attempt,
                    reason: Some(f.error.clone()),
                    at_ms: host.now_ms(),
                });
            }
            cluster::Command::TaskFailed {
                job: k.job.clone(),
                kind: k.kind,
                index: k.index,
                attempt: k.attempt,
                error: f.error,
                exit: f.exit,
                stderr_tail: f.stderr_tail,
                lost: f.lost,
                at_ms: host.now_ms(),
            }
        }
    };
    cmds.push(cmd);
    if reports.send((cmds, k.clone())).is_err() {
        warn!(job = %k.job, task = %task_id(&k), "the report was dropped: the worker is stopping");
    }
}

/// How often a worker tells the leader what it runs.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Every [`HEARTBEAT`], send this node's slots (its share of its host's cores, which its
/// pool keeps to) and running attempts to the leader (and keep a copy here).
async fn heartbeats(ctl: Arc<Control>, running: Running, mut stop: Stop) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let disk = Arc::new(AtomicU64::new(0));
    let mut beats = 0u64;
    loop {
        if stop.or(tick.tick()).await.is_none() {
            return;
        }
        // The store's size, every tenth beat, off the runtime.
        if beats.is_multiple_of(10) {
            let (ctl, disk) = (Arc::clone(&ctl), Arc::clone(&disk));
            tokio::task::spawn_blocking(move || {
                disk.store(ctl.store.blobs.used_bytes(), Ordering::Relaxed)
            });
        }
        beats += 1;
        let Some(cluster_id) = ctl.node.cluster_id() else {
            continue;
        };
        // This node's share of its host's cores may change as nodes there come and go: the
        // pool runs that many at once, and the heartbeat says so.
        let slots = crate::cluster::members::own_slots(&ctl.node);
        ctl.pool.set_limit(slots as usize);
        let attempts = crate::control::work::running_attempts(&running, |st| {
            st.started.elapsed().as_millis() as u64
        });
        let hb = Heartbeat {
            cluster_id,
            node_id: ctl.node.id,
            slots,
            busy: ctl.pool.busy() as u32,
            running: attempts,
            disk_bytes: disk.load(Ordering::Relaxed),
            disk_low: ctl.store.disk_ok().is_err(),
            build: ctl.node.settings.build.clone(),
        };
        ctl.node.heartbeats.record(hb.clone());
        let Some(to) = crate::cluster::members::leader(&ctl.node)
            .filter(|&l| l != ctl.node.id)
            .and_then(|l| crate::cluster::members::reach(&ctl.node, l))
        else {
            continue;
        };
        // Never wait on a send: a leader that just died must not delay the heartbeats the
        // next one needs.
        let ctl = Arc::clone(&ctl);
        tokio::spawn(async move {
            match ctl
                .node
                .net
                .ctl(&to, CtlRequest::Heartbeat(hb), HEARTBEAT)
                .await
            {
                Ok(shoal_net::wire::CtlResponse::Heartbeats(all)) => ctl.node.heartbeats.merge(all),
                Ok(_) => {}
                Err(e) => debug!(error = %e, "heartbeat not delivered"),
            }
        });
    }
}

/// Propose the attempts' reports to the leader, those that queued up while the previous
/// proposal was in flight together as one `Batch`: a node finishing many short tasks makes
/// one Raft entry per round trip, not one per task. Reports are never lost to a busy
/// leader: each proposal is retried for [`REPORT_PATIENCE`].
async fn send_reports<H: WorkerHost>(
    host: Arc<H>,
    mut queued: tokio::sync::mpsc::UnboundedReceiver<Report>,
) {
    /// Reports in one proposal at most (a bound on the entry's size).
    const MAX_BATCH: usize = 256;
    while let Some(first) = queued.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queued.try_recv() {
                Ok(r) => batch.push(r),
                Err(_) => break,
            }
        }
        let mut cmds: Vec<cluster::Command> = Vec::new();
        for (c, _) in &batch {
            cmds.extend(c.iter().cloned());
        }
        let cmd = match cmds.len() {
            1 => Command::Jobs(cmds.remove(0)),
            _ => Command::Batch(cmds),
        };
        match host.propose(&cmd, REPORT_PATIENCE).await {
            Ok(Applied::Changed) => {}
            Ok(Applied::Ignored(why)) => {
                debug!(reports = batch.len(), %why, "a report was ignored")
            }
            Err(e) => {
                for (_, k) in &batch {
                    warn!(job = %k.job, task = %task_id(k), attempt = k.attempt, error = %e, "the report was not accepted");
                }
            }
        }
    }
}
