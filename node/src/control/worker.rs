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

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::StreamExt;
use shoal_jobs::cluster::{self, Applied, Job, JobState, NodeId, SplitInfo, TaskKind, TaskState};
use shoal_jobs::counters::Counters;
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_jobs::split::Split;
use shoal_jobs::task::{run_map, run_reduce, ReduceInput, TaskEnv};
use shoal_net::wire::{CtlRequest, Heartbeat, RunningAttempt};
use shoal_net::Transport;
use tracing::{debug, info, warn};

use crate::clock::now_ms;
use crate::cluster::node::Node;
use crate::cluster::state::Command;
use crate::control::manager::{live_nodes, peer_of};
use crate::storage::blobs::{map_output_key, part_key, split_key};
use crate::sync::{Locked, ReadWrite};

/// How often the loop looks even when nothing changed.
const TICK: Duration = Duration::from_millis(500);
/// How long a finished attempt keeps trying to report (leader changes, no leader).
const REPORT_PATIENCE: Duration = Duration::from_secs(300);
/// Map outputs a reduce fetches at once.
const PARALLEL_FETCHES: usize = 4;

/// One attempt of one task.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttemptKey {
    /// Job id.
    pub job: String,
    /// Map or reduce.
    pub kind: TaskKind,
    /// Task index.
    pub index: u32,
    /// Attempt number.
    pub attempt: u32,
}

/// One map's output as a reduce needs it.
#[derive(Debug, Clone)]
pub struct MapOut {
    /// The map task.
    pub map: u32,
    /// The node that ran it.
    pub node: NodeId,
    /// Its successful attempt.
    pub attempt: u32,
    /// Where the reduce's partition starts in the map's output.
    pub offset: u64,
    /// Bytes of the reduce's partition.
    pub size: u64,
}

struct Work {
    key: AttemptKey,
    spec: Arc<JobSpec>,
    partitioner: Partitioner,
    split: Option<SplitInfo>,
    /// A reduce's inputs, or why it cannot run now (not its fault).
    inputs: Result<Vec<MapOut>, String>,
}

/// Why an attempt failed, as its report carries it.
#[derive(Debug)]
struct Failure {
    error: String,
    exit: Option<String>,
    stderr_tail: Option<String>,
    /// Not the task's fault (does not count toward its attempts).
    lost: bool,
    /// The map whose output could not be fetched, and its attempt.
    lost_map: Option<(u32, u32)>,
}

impl From<String> for Failure {
    fn from(error: String) -> Self {
        Failure {
            error,
            exit: None,
            stderr_tail: None,
            lost: false,
            lost_map: None,
        }
    }
}

impl Failure {
    /// A failure that is not the task's fault: it does not count toward its attempts.
    fn lost(error: String) -> Self {
        Failure {
            lost: true,
            ..Failure::from(error)
        }
    }
}

impl From<&str> for Failure {
    fn from(error: &str) -> Self {
        Failure::from(error.to_string())
    }
}

impl From<shoal_jobs::Error> for Failure {
    fn from(e: shoal_jobs::Error) -> Self {
        let error = e.to_string();
        match e {
            shoal_jobs::Error::Program {
                exit, stderr_tail, ..
            } => Failure {
                exit,
                stderr_tail: Some(stderr_tail).filter(|t| !t.is_empty()),
                ..Failure::from(error)
            },
            _ => Failure::from(error),
        }
    }
}

/// What a successful attempt reports.
struct Done {
    sizes: Vec<u64>,
    counters: Counters,
    holders: Vec<NodeId>,
}

/// A running attempt's shared state: its stop flag and progress.
#[derive(Debug)]
struct AttemptState {
    stop: AtomicBool,
    progress: AtomicU64,
    started: Instant,
}

type Running = Arc<Mutex<HashMap<AttemptKey, Arc<AttemptState>>>>;

/// Whether the table still wants attempt `k` to run (its job running, it not ended).
pub fn still_running(jobs: &cluster::Cluster, k: &AttemptKey) -> bool {
    jobs.jobs
        .get(&k.job)
        .filter(|j| j.state == JobState::Running)
        .and_then(|j| j.task(k.kind, k.index))
        .and_then(|t| t.attempts.iter().find(|a| a.attempt == k.attempt))
        .is_some_and(|a| a.state == TaskState::Running)
}

/// Running attempts that the table assigns to node `me`, in table order: what the node
/// must be running. The daemon's worker and the simulator's both start from it.
pub fn assigned(
    jobs: &cluster::Cluster,
    me: NodeId,
) -> impl Iterator<Item = (&Job, &cluster::Task, AttemptKey, u64)> {
    jobs.jobs
        .values()
        .filter(|j| j.state == JobState::Running)
        .flat_map(|j| j.maps.iter().chain(j.reduces.iter()).map(move |t| (j, t)))
        .flat_map(move |(j, t)| {
            t.attempts
                .iter()
                .filter(move |a| a.node == me && a.state == TaskState::Running)
                .map(move |a| {
                    let key = AttemptKey {
                        job: j.id.clone(),
                        kind: t.kind,
                        index: t.index,
                        attempt: a.attempt,
                    };
                    (j, t, key, a.start_ms)
                })
        })
}

/// The maps' outputs that reduce `p` of `job` must read: each map's successful attempt and
/// the node that ran it — or `None` while a map is not done (its output was lost after the
/// reduce was assigned, and it is being run again): a reduce over fewer than every map
/// would write a wrong part file. (The simulator found that one.)
pub fn map_outputs(job: &Job, p: u32) -> Option<Vec<MapOut>> {
    use shoal_jobs::planted::{active, Bug};
    let partial = active(Bug::PartialReduceInput);
    job.maps
        .iter()
        .filter(|t| !partial || t.state == TaskState::Done)
        .map(|t| {
            let a = t.attempts.iter().find(|a| a.state == TaskState::Done)?;
            let (offset, size) = shoal_jobs::task::partition_range(&t.output_sizes, p);
            Some(MapOut {
                map: t.index,
                node: a.node,
                attempt: a.attempt,
                offset,
                size,
            })
        })
        .collect()
}

/// Run forever.
pub async fn run(node: Arc<Node>) {
    let h = node.raft_started().await;
    let mut changes = h.raft.metrics();
    let running: Running = Arc::default();
    tokio::spawn(heartbeats(Arc::clone(&node), Arc::clone(&running)));
    let (reports, queued) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(send_reports(Arc::clone(&node), queued));
    let mut started: HashSet<AttemptKey> = HashSet::new();
    let mut specs: HashMap<String, Arc<JobSpec>> = HashMap::new();
    let mut cleaned: HashSet<String> = HashSet::new();
    let mut last_applied = None;
    let boot_ms = node.started_ms;
    loop {
        crate::cluster::node::next_change(&mut changes, TICK).await;
        let applied_at = shoal_raft::metrics(&h.raft).last_applied;
        if applied_at == last_applied && last_applied.is_some() {
            continue;
        }
        last_applied = applied_at;
        let mut to_start = Vec::new();
        let mut to_clean = Vec::new();
        let mut stale = Vec::new();
        let forgotten: Vec<String>;
        {
            let applied = h.applied.read_now();
            let jobs = &applied.state.jobs;
            forgotten = cleaned
                .iter()
                .filter(|j| !jobs.jobs.contains_key(*j))
                .cloned()
                .collect();
            for job in jobs.jobs.values().filter(|j| j.state != JobState::Running) {
                if !cleaned.contains(&job.id) {
                    let keep: Vec<u32> = job
                        .reduces
                        .iter()
                        .filter(|t| t.state == TaskState::Done && t.holders.contains(&node.id))
                        .map(|t| t.index)
                        .collect();
                    to_clean.push((job.id.clone(), keep));
                }
            }
            for (job, t, key, start_ms) in assigned(jobs, node.id) {
                if !started.insert(key.clone()) {
                    continue;
                }
                // Assigned before this process started: whatever ran then died with the
                // old process, and is not trusted.
                if start_ms < boot_ms {
                    stale.push(key);
                    continue;
                }
                let spec = specs
                    .entry(job.id.clone())
                    .or_insert_with(|| Arc::new(job.spec.clone()))
                    .clone();
                to_start.push(Work {
                    spec,
                    partitioner: job.partitioner.clone(),
                    split: match t.kind {
                        TaskKind::Map => job.splits.get(t.index as usize).cloned(),
                        TaskKind::Reduce => None,
                    },
                    inputs: match t.kind {
                        TaskKind::Map => Ok(Vec::new()),
                        TaskKind::Reduce => map_outputs(job, t.index).ok_or_else(|| {
                            "a map output it needs is being made again; it will be reassigned"
                                .to_string()
                        }),
                    },
                    key,
                });
            }
            let run = running.locked();
            for (k, st) in run.iter() {
                if !still_running(jobs, k) && !st.stop.swap(true, Ordering::Relaxed) {
                    info!(job = %k.job, task = %task_id(k), attempt = k.attempt, "stopping an attempt the job no longer wants");
                }
            }
        }
        for w in to_start {
            let st = Arc::new(AttemptState {
                stop: AtomicBool::new(false),
                progress: AtomicU64::new(0),
                started: Instant::now(),
            });
            running.locked().insert(w.key.clone(), Arc::clone(&st));
            tokio::spawn(attempt(
                Arc::clone(&node),
                w,
                st,
                Arc::clone(&running),
                reports.clone(),
            ));
        }
        for k in stale {
            let node = Arc::clone(&node);
            tokio::spawn(async move {
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
                    at_ms: now_ms(),
                };
                if let Err(e) = node.propose(&Command::Jobs(cmd), REPORT_PATIENCE).await {
                    warn!(job = %k.job, error = %e, "reporting a stale attempt failed");
                }
            });
        }
        for job in forgotten {
            cleaned.remove(&job);
            let node = Arc::clone(&node);
            tokio::task::spawn_blocking(move || {
                let freed = node.blobs.remove_job(&job);
                info!(%job, freed, "job forgotten (--retain-jobs); its files are deleted here");
            });
        }
        for (job, keep) in to_clean {
            cleaned.insert(job.clone());
            started.retain(|k| k.job != job);
            specs.remove(&job);
            let node = Arc::clone(&node);
            tokio::task::spawn_blocking(move || {
                let freed = node.blobs.remove_job_scratch(&job, &keep);
                if freed > 0 {
                    info!(%job, freed, "job ended; its splits, map outputs and stray parts are deleted here");
                }
            });
        }
    }
}

/// How often a worker tells the leader what it runs.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// Every [`HEARTBEAT`], send this node's slots and running attempts to the leader (and keep
/// a copy here).
async fn heartbeats(node: Arc<Node>, running: Running) {
    let mut tick = tokio::time::interval(HEARTBEAT);
    let disk = Arc::new(AtomicU64::new(0));
    let mut beats = 0u64;
    loop {
        tick.tick().await;
        // The store's size, every tenth beat, off the runtime.
        if beats.is_multiple_of(10) {
            let (node, disk) = (Arc::clone(&node), Arc::clone(&disk));
            tokio::task::spawn_blocking(move || {
                disk.store(node.blobs.used_bytes(), Ordering::Relaxed)
            });
        }
        beats += 1;
        let Some(cluster_id) = node.cluster_id() else {
            continue;
        };
        let mut attempts: Vec<RunningAttempt> = running
            .locked()
            .iter()
            .map(|(k, st)| RunningAttempt {
                job: k.job.clone(),
                task: task_id(k),
                attempt: k.attempt,
                progress_bytes: st.progress.load(Ordering::Relaxed),
                elapsed_ms: st.started.elapsed().as_millis() as u64,
            })
            .collect();
        attempts.sort_by(|a, b| (&a.job, &a.task).cmp(&(&b.job, &b.task)));
        let hb = Heartbeat {
            cluster_id,
            node_id: node.id,
            slots: node.settings.slots,
            busy: node.pool.busy() as u32,
            running: attempts,
            disk_bytes: disk.load(Ordering::Relaxed),
        };
        node.record_heartbeat(hb.clone());
        let Some(h) = node.raft.get() else { continue };
        let leader = shoal_raft::metrics(&h.raft).current_leader;
        let Some(to) = leader
            .filter(|&l| l != node.id)
            .and_then(|l| peer_of(&node, l))
        else {
            continue;
        };
        let to = shoal_net::PeerRef {
            peer: to,
            addrs: vec![],
        };
        // Never wait on a send: a leader that just died must not delay the heartbeats the
        // next one needs.
        let node = Arc::clone(&node);
        tokio::spawn(async move {
            match node
                .net
                .ctl(&to, CtlRequest::Heartbeat(hb), HEARTBEAT)
                .await
            {
                Ok(shoal_net::wire::CtlResponse::Heartbeats(all)) => node.merge_heartbeats(all),
                Ok(_) => {}
                Err(e) => debug!(error = %e, "heartbeat not delivered"),
            }
        });
    }
}

fn task_id(k: &AttemptKey) -> String {
    match k.kind {
        TaskKind::Map => shoal_jobs::task::map_task_id(k.index),
        TaskKind::Reduce => shoal_jobs::task::reduce_task_id(k.index),
    }
}

/// A finished attempt's report: its commands, in order, and the attempt for the logs.
type Report = (Vec<cluster::Command>, AttemptKey);

/// Propose the attempts' reports to the leader, those that queued up while the previous
/// proposal was in flight together as one `Batch`: a node finishing many short tasks makes
/// one Raft entry per round trip, not one per task. Reports are never lost to a busy
/// leader: each proposal is retried for [`REPORT_PATIENCE`].
async fn send_reports(node: Arc<Node>, mut queued: tokio::sync::mpsc::UnboundedReceiver<Report>) {
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
        match node.propose(&cmd, REPORT_PATIENCE).await {
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

async fn attempt(
    node: Arc<Node>,
    w: Work,
    st: Arc<AttemptState>,
    running: Running,
    reports: tokio::sync::mpsc::UnboundedSender<Report>,
) {
    let k = w.key.clone();
    debug!(job = %k.job, task = %task_id(&k), attempt = k.attempt, "attempt starts");
    let result = match k.kind {
        TaskKind::Map => map_attempt(&node, &w, &st).await,
        TaskKind::Reduce => reduce_attempt(&node, &w, &st).await,
    };
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
            holders: done.holders,
            counters: done.counters,
            at_ms: now_ms(),
        },
        Err(f) => {
            warn!(job = %k.job, task = %task_id(&k), attempt = k.attempt, error = %f.error, "attempt failed");
            // The lost map output first: the map runs again before this attempt's failure
            // frees its task for another attempt.
            if let Some((index, attempt)) = f.lost_map {
                cmds.push(cluster::Command::MapOutputLost {
                    job: k.job.clone(),
                    index,
                    attempt,
                    at_ms: now_ms(),
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
                at_ms: now_ms(),
            }
        }
    };
    cmds.push(cmd);
    if reports.send((cmds, k.clone())).is_err() {
        warn!(job = %k.job, task = %task_id(&k), "the report was dropped: the worker is stopping");
    }
}

/// Run `f` on the task pool and wait for it.
async fn on_pool<T: Send + 'static>(
    node: &Node,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    node.pool.execute(move || {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f))
            .unwrap_or_else(|_| Err(Failure::from("the task panicked")));
        let _ = tx.send(r);
    });
    rx.await.map_err(|_| "the task pool stopped".to_string())?
}

fn app_of(spec: &JobSpec) -> Result<Option<Arc<dyn shoal_jobs::apps::App>>, String> {
    match &spec.kind {
        JobKind::App(name) => shoal_jobs::apps::by_name(name, &spec.env)
            .map(Some)
            .map_err(|e| e.to_string()),
        JobKind::Streaming { .. } => Ok(None),
    }
}

/// Run `work` for attempt `w` on the task pool, in its scratch directory.
async fn on_pool_in_attempt_dir<T: Send + 'static>(
    node: &Node,
    w: &Work,
    st: &Arc<AttemptState>,
    scratch: PathBuf,
    work: impl FnOnce(&TaskEnv<'_>) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let (spec, partitioner, job_id, attempt) = (
        Arc::clone(&w.spec),
        w.partitioner.clone(),
        w.key.job.clone(),
        w.key.attempt,
    );
    let st = Arc::clone(st);
    on_pool(node, move || {
        in_attempt_dir(&scratch, &spec, &partitioner, &job_id, attempt, &st, work)
    })
    .await
}

/// Run `work` for one attempt in its scratch directory (prepared with the job's shipped
/// files, removed afterwards whatever happened).
fn in_attempt_dir<T>(
    scratch: &std::path::Path,
    spec: &JobSpec,
    partitioner: &Partitioner,
    job_id: &str,
    attempt: u32,
    st: &AttemptState,
    work: impl FnOnce(&TaskEnv<'_>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let result = (|| {
        // Processes run in it with the shipped files; a native app makes it if it spills.
        if matches!(spec.kind, JobKind::Streaming { .. }) {
            shoal_jobs::streaming::prepare_dir(scratch, &spec.files).map_err(|e| e.to_string())?;
        }
        let env = TaskEnv {
            job_id,
            spec,
            app: app_of(spec)?,
            partitioner,
            attempt,
            dir: scratch,
            cancel: &st.stop,
            progress: Some(&st.progress),
        };
        work(&env)
    })();
    let _ = std::fs::remove_dir_all(scratch);
    result
}

/// Where this node reads split `split` of `job` (a file and the offset in it): in its own
/// copy of the split's segment, or, when it has none, in the split alone, fetched from a
/// holder first.
async fn ensure_split(node: &Node, job: &str, split: &SplitInfo) -> Result<(PathBuf, u64), String> {
    let (key, offset) = crate::storage::blobs::split_object(job, split);
    let path = |key: &str| node.blobs.path(key).ok_or("a malformed split key");
    if node.blobs.contains(&key) {
        return Ok((path(&key)?, offset));
    }
    let own = split_key(job, split.index);
    if node.blobs.contains(&own) {
        return Ok((path(&own)?, 0));
    }
    let mut last = "no node holds it".to_string();
    for &h in split.holders.iter().filter(|&&h| h != node.id) {
        let Some(peer) = peer_of(node, h) else {
            continue;
        };
        let mut w = node
            .blobs
            .create(&own)
            .map_err(|e| format!("storing {own}: {e}"))?;
        let piece = shoal_net::wire::Piece {
            key: key.clone(),
            offset,
            len: split.len,
        };
        let got = crate::storage::data::fetch_range(node, peer, &piece, &mut w).await;
        match got {
            Ok(_) => {
                w.commit().map_err(|e| format!("storing {own}: {e}"))?;
                return Ok((path(&own)?, 0));
            }
            Err(e) => {
                w.abort();
                last = e.to_string();
            }
        }
    }
    Err(format!(
        "split {} could not be fetched: {last}",
        split.index
    ))
}

async fn map_attempt(node: &Arc<Node>, w: &Work, st: &Arc<AttemptState>) -> Result<Done, Failure> {
    let k = &w.key;
    let split = w.split.clone().ok_or("the job has no such split")?;
    let (path, offset) = ensure_split(node, &k.job, &split).await?;
    let out_file = node
        .blobs
        .path(&map_output_key(&k.job, k.index, k.attempt))
        .ok_or("a malformed map output key")?;
    let scratch = node
        .blobs
        .scratch_path(&format!("{}.{}.a{}", k.job, task_id(k), k.attempt));
    let task_split = Split {
        index: k.index,
        path,
        name: split.name.clone(),
        offset,
        len: split.len,
        files: split.files.clone(),
    };
    let out = on_pool_in_attempt_dir(node, w, st, scratch, move |env| {
        run_map(env, &task_split, &out_file).map_err(Failure::from)
    })
    .await?;
    Ok(Done {
        sizes: out.sizes,
        counters: out.counters,
        holders: vec![node.id],
    })
}

async fn reduce_attempt(
    node: &Arc<Node>,
    w: &Work,
    st: &Arc<AttemptState>,
) -> Result<Done, Failure> {
    let k = &w.key;
    let p = k.index;
    let outputs = w
        .inputs
        .as_ref()
        .map_err(|why| Failure::lost(why.clone()))?;
    let scratch = node
        .blobs
        .scratch(&format!("{}.{}.a{}", k.job, task_id(k), k.attempt))
        .map_err(|e| format!("creating the attempt directory: {e}"))?;
    // Local map outputs are read in place; remote ones are pulled into the attempt
    // directory, the pieces from one node into one file, one after another.
    let mut inputs: Vec<(u32, PathBuf, u64, u64)> = Vec::new();
    let mut remote = Vec::new();
    let mut local_bytes = 0u64;
    for m in outputs.iter().filter(|m| m.size > 0) {
        let key = map_output_key(&k.job, m.map, m.attempt);
        if m.node == node.id {
            let path = node.blobs.path(&key).ok_or("a malformed key")?;
            inputs.push((m.map, path, m.offset, m.size));
            local_bytes += m.size;
        } else {
            remote.push((m.clone(), key));
        }
    }
    // Small pieces of one node come in one stream (a job of many small maps would otherwise
    // pay a stream per map); large ones still come a stream each, in parallel.
    let batches =
        crate::storage::data::batches(remote.into_iter().map(|r| (r.0.node, r)), |r| r.0.size);
    let fetched = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(i, (holder, batch))| {
            let node = Arc::clone(node);
            let path = scratch.join(format!("fetched-{i:04}"));
            async move {
                let lost = |m: &MapOut, why: String| Failure {
                    lost_map: Some((m.map, m.attempt)),
                    ..Failure::lost(format!(
                        "fetching the output of map {} from node {:016x} failed: {why}",
                        m.map, m.node
                    ))
                };
                let Some(peer) = peer_of(&node, holder) else {
                    return Err(lost(&batch[0].0, "not a member".into()));
                };
                let pieces: Vec<shoal_net::wire::Piece> = batch
                    .iter()
                    .map(|(m, key)| shoal_net::wire::Piece {
                        key: key.clone(),
                        offset: m.offset,
                        len: m.size,
                    })
                    .collect();
                match crate::storage::data::fetch_pieces_to_file(&node, peer, &pieces, &path).await
                {
                    Ok(n) => {
                        let mut at = 0;
                        let got: Vec<(u32, PathBuf, u64, u64)> = batch
                            .iter()
                            .map(|(m, _)| {
                                at += m.size;
                                (m.map, path.clone(), at - m.size, m.size)
                            })
                            .collect();
                        Ok((got, n))
                    }
                    // This node's own disk failed: not the map's fault.
                    Err(crate::storage::data::BatchFailed {
                        error: e @ crate::storage::data::DataError::Local(_),
                        ..
                    }) => Err(Failure::from(e.to_string())),
                    Err(crate::storage::data::BatchFailed { done, error }) => {
                        Err(lost(&batch[done.min(batch.len() - 1)].0, error.to_string()))
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL_FETCHES)
        .collect::<Vec<_>>()
        .await;
    let mut fetched_bytes = 0u64;
    st.progress.fetch_add(local_bytes, Ordering::Relaxed);
    for f in fetched {
        match f {
            Ok((got, n)) => {
                fetched_bytes += n;
                st.progress.fetch_add(n, Ordering::Relaxed);
                inputs.extend(got);
            }
            Err(f) => {
                let _ = std::fs::remove_dir_all(&scratch);
                return Err(f);
            }
        }
    }
    inputs.sort_by_key(|(m, ..)| *m);
    node.shuffle
        .fetched_bytes
        .fetch_add(fetched_bytes, Ordering::Relaxed);
    node.shuffle
        .local_bytes
        .fetch_add(local_bytes, Ordering::Relaxed);

    let out_key = part_key(&k.job, p);
    node.blobs
        .dir(&format!("{}/out", k.job))
        .map_err(|e| format!("creating the output directory: {e}"))?;
    let out_file = node.blobs.path(&out_key).ok_or("a malformed key")?;
    let target = out_file.clone();
    let mut counters = on_pool_in_attempt_dir(node, w, st, scratch, move |env| {
        let mut readers: Vec<ReduceInput> = Vec::with_capacity(inputs.len());
        for (_, path, offset, len) in &inputs {
            let f = shoal_jobs::sort::open_range(path, *offset, *len)?;
            readers.push(Box::new(f) as Box<dyn Read + Send>);
        }
        run_reduce(env, p, readers, &target).map_err(Failure::from)
    })
    .await?;
    counters.add_builtin("shuffle_fetched_bytes", fetched_bytes);
    counters.add_builtin("shuffle_local_bytes", local_bytes);
    let size = std::fs::metadata(&out_file)
        .map(|m| m.len())
        .map_err(|e| format!("the part file vanished: {e}"))?;
    let targets = replica_targets(node, w.spec.replication, p);
    let holders = replicate(node, &out_key, &out_file, &targets).await;
    // A part file on one disk only is lost with that disk, after its job succeeded: when
    // another member could have taken a copy but none did, try again (elsewhere).
    if holders.len() == 1 && !targets.is_empty() {
        return Err(Failure::lost(
            "the part file could not be copied to any other node".into(),
        ));
    }
    Ok(Done {
        sizes: vec![size],
        counters,
        holders,
    })
}

/// Copy a local object to `targets` (see [`replica_targets`]). Returns this node and the
/// nodes that now hold it.
pub async fn replicate(
    node: &Arc<Node>,
    key: &str,
    path: &std::path::Path,
    targets: &[NodeId],
) -> Vec<NodeId> {
    let pushes = targets.iter().map(|&t| {
        let node = Arc::clone(node);
        async move {
            let peer = peer_of(&node, t).ok_or_else(|| "not a member".to_string())?;
            crate::storage::data::push_file(&node, peer, key, path)
                .await
                .map(|_| t)
                .map_err(|e| e.to_string())
        }
    });
    let mut holders = vec![node.id];
    for r in futures::future::join_all(pushes).await {
        match r {
            Ok(t) => holders.push(t),
            Err(e) => warn!(%key, error = %e, "copying to another node failed"),
        }
    }
    holders
}

/// Up to `copies` live nodes other than this one, rotated by `spread` so copies spread out.
pub fn replica_targets(node: &Node, copies: u32, spread: u32) -> Vec<NodeId> {
    let others: Vec<NodeId> = live_nodes(node)
        .into_iter()
        .map(|n| n.node)
        .filter(|&n| n != node.id)
        .collect();
    if others.is_empty() {
        return Vec::new();
    }
    let start = spread as usize % others.len();
    others
        .iter()
        .cycle()
        .skip(start)
        .take((copies as usize).min(others.len()))
        .copied()
        .collect()
}
