//! One attempt of one task, as the worker loop starts it: a map reads its split (fetching it
//! first when this node has no copy) and writes its sorted output; a reduce fetches its
//! partition of every map output, merges, reduces, writes its part and copies it to
//! `replication` other nodes. Each runs on the task pool, never on the runtime that drives
//! Raft and libp2p, and ends in one report.

use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use futures::StreamExt;
use shoal_jobs::checksum;
use shoal_jobs::cluster::{self, NodeId, SplitInfo, TaskKind};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::scratch::AttemptDirs;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_jobs::split::Split;
use shoal_jobs::task::{run_map, run_reduce, ReduceInput, TaskEnv};
use tracing::{info, warn};

use crate::clock::now_ms;
use crate::cluster::members::peer_of;
use crate::control::work::{task_id, AttemptState, Done, Failure, MapOut, Work};
use crate::control::worker::WorkerHost;
use crate::control::Control;
use crate::storage::blobs::{attempt_log_key, map_output_key, part_key, split_key};
use crate::storage::replication::{replica_targets, replicate};

/// Map outputs a reduce fetches at once.
const PARALLEL_FETCHES: usize = 4;

/// The daemon's worker: attempts as processes (or native apps) on the task pool, over files
/// in the node's object store, with splits and map outputs fetched over `/shoal/data/1`.
impl WorkerHost for Control {
    fn id_and_boot(&self) -> (NodeId, u64) {
        (self.node.id, self.node.started_ms)
    }

    fn now_ms(&self) -> u64 {
        now_ms()
    }

    async fn table_changes(&self) -> crate::cluster::node::TableChanges {
        let raft = self.node.raft_started().await.raft.metrics();
        crate::cluster::node::TableChanges::new(raft, Some(self.node.pushed.changes()))
    }

    fn read_table<T>(&self, f: impl FnOnce(&cluster::Cluster, Option<u64>) -> T) -> T {
        crate::cluster::node::read_table(&self.node, |t, at| match t {
            Some(t) => f(t, at),
            None => f(&cluster::Cluster::default(), None),
        })
    }

    async fn propose(
        &self,
        cmd: &crate::cluster::state::Command,
        patience: std::time::Duration,
    ) -> Result<cluster::Applied, crate::cluster::propose::ProposeError> {
        self.node.propose(cmd, patience).await
    }

    fn spawn(&self, f: impl std::future::Future<Output = ()> + Send + 'static) {
        tokio::spawn(f);
    }

    async fn execute(self: Arc<Self>, w: Work, st: Arc<AttemptState>) -> Result<Done, Failure> {
        match w.key.kind {
            TaskKind::Map => map_attempt(&self, &w, &st).await,
            TaskKind::Reduce => reduce_attempt(&self, &w, &st).await,
        }
    }

    fn clean(self: Arc<Self>, job: String, keep: Option<Vec<(u32, u32)>>) {
        self.job_dirs.forget(&job);
        // Its task processes ended with its attempts: its uid may serve another job.
        if let Some(pool) = &self.node.settings.sandbox.uids {
            pool.release(&job);
        }
        // When a job is forgotten, the archives no job left in the table names go too.
        let named: Option<Vec<String>> = keep.is_none().then(|| {
            self.read_table(|t, _| {
                t.jobs
                    .values()
                    .flat_map(|j| j.spec.archives.iter().map(|a| a.digest.clone()))
                    .collect()
            })
        });
        tokio::task::spawn_blocking(move || {
            let _ = std::fs::remove_dir_all(crate::control::jobdir::job_dir(&self, &job));
            match keep {
                None => {
                    let freed = self.store.blobs.remove_job(&job)
                        + crate::control::jobdir::remove_unused_archives(
                            &self,
                            named.as_deref().unwrap_or_default(),
                        );
                    info!(%job, freed, "job forgotten (--retain-jobs); its files are deleted here");
                }
                Some(keep) => {
                    let freed = self.store.blobs.remove_job_scratch(&job, &keep);
                    if freed > 0 {
                        info!(%job, freed, "job ended; its splits, map outputs and stray parts are deleted here");
                    }
                }
            }
        });
    }
}

/// Run `f` on the task pool and wait for it.
async fn on_pool<T: Send + 'static>(
    ctl: &Control,
    f: impl FnOnce() -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    ctl.pool.execute(move || {
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

/// Run `work` for attempt `w` on the task pool, in its directories (after the job's
/// directory here is ready, when it has one).
async fn on_pool_in_attempt_dir<T: Send + 'static>(
    ctl: &Arc<Control>,
    w: &Work,
    st: &Arc<AttemptState>,
    dirs: AttemptDirs,
    work: impl FnOnce(&TaskEnv<'_>) -> Result<T, Failure> + Send + 'static,
) -> Result<T, Failure> {
    let job_dir = match crate::control::jobdir::ensure(ctl, w).await {
        Ok(d) => d,
        Err(f) => {
            dirs.remove();
            return Err(f);
        }
    };
    let log = attempt_log(ctl, w);
    let at = Where { dirs, job_dir, log };
    let (spec, partitioner, job_id, attempt) = (
        Arc::clone(&w.spec),
        w.partitioner.clone(),
        w.key.job.clone(),
        w.key.attempt,
    );
    let st = Arc::clone(st);
    let sandbox = Arc::clone(&ctl.node.settings.sandbox);
    on_pool(ctl, move || {
        let ids = (job_id.as_str(), attempt);
        in_attempt_dir(&at, &spec, &partitioner, ids, &st, &sandbox, work)
    })
    .await
}

/// The file that keeps attempt `w`'s stderr (made empty now), if it can be made.
fn attempt_log(ctl: &Control, w: &Work) -> Option<PathBuf> {
    let path = ctl.store.blobs.path(&attempt_log_key(
        &w.key.job,
        &task_id(&w.key),
        w.key.attempt,
    ))?;
    let made = path
        .parent()
        .map_or(Ok(()), std::fs::create_dir_all)
        .and_then(|()| std::fs::write(&path, b""));
    match made {
        Ok(()) => Some(path),
        Err(e) => {
            warn!(log = %path.display(), error = %e, "cannot keep the attempt's stderr");
            None
        }
    }
}

/// Where an attempt runs: its directories, the job's directory, its stderr's log.
struct Where {
    dirs: AttemptDirs,
    job_dir: Option<PathBuf>,
    log: Option<PathBuf>,
}

/// Run `work` for one attempt in its directories (the task's prepared with the job's
/// shipped files and links into the job's directory, then given to the job's user; both
/// removed afterwards whatever happened).
fn in_attempt_dir<T>(
    at: &Where,
    spec: &JobSpec,
    partitioner: &Partitioner,
    (job_id, attempt): (&str, u32),
    st: &AttemptState,
    sandbox: &shoal_jobs::sandbox::Sandbox,
    work: impl FnOnce(&TaskEnv<'_>) -> Result<T, Failure>,
) -> Result<T, Failure> {
    let dirs = &at.dirs;
    let result = (|| {
        let user = sandbox
            .user_for(job_id)
            .map_err(|e| format!("choosing the job's task user: {e}"))?;
        // Processes run in it with the shipped files.
        if matches!(spec.kind, JobKind::Streaming { .. }) {
            shoal_jobs::scratch::prepare_dir(
                &dirs.task,
                &spec.files,
                at.job_dir.as_deref(),
                user.as_ref(),
            )
            .map_err(|e| e.to_string())?;
        }
        let env = TaskEnv {
            job_id,
            spec,
            app: app_of(spec)?,
            partitioner,
            attempt,
            dir: &dirs.task,
            work: &dirs.work,
            cancel: &st.stop,
            progress: Some(&st.progress),
            sandbox: Some(sandbox),
            user: user.as_ref(),
            job_dir: at.job_dir.as_deref(),
            log: at.log.as_deref(),
        };
        work(&env)
    })();
    dirs.remove();
    result
}

/// Attempt `w`'s directories, made afresh under the scratch root.
fn attempt_dirs(ctl: &Control, w: &Work) -> Result<AttemptDirs, Failure> {
    let k = &w.key;
    let name = format!("{}.{}.a{}", k.job, task_id(k), k.attempt);
    ctl.store
        .blobs
        .scratch()
        .attempt(&name)
        .map_err(|e| Failure::io("creating the attempt's directories".into(), &e))
}

/// The nodes that hold split `split`: for another job's part, those the table names for it
/// now (a drain may have copied it since) first, then those named when the job was
/// submitted.
fn holders_now(ctl: &Control, split: &SplitInfo) -> Vec<NodeId> {
    let mut holders = split
        .part_of
        .as_ref()
        .and_then(|p| {
            crate::cluster::node::with_jobs(&ctl.node, |t| {
                let task = t.jobs.get(&p.job)?.part_writers().get(p.part as usize)?;
                (task.accepted()?.attempt == p.attempt).then(|| task.holders.clone())
            })
            .flatten()
        })
        .unwrap_or_default();
    for &h in &split.holders {
        if !holders.contains(&h) {
            holders.push(h);
        }
    }
    holders
}

/// Where this node reads split `split` of `job` (a file and the offset in it): in its own
/// copy of the split's segment, or, when it has none, in the split alone, fetched from a
/// holder first. A copy whose bytes do not match the table's checksum is passed over like a
/// missing one.
async fn ensure_split(
    ctl: &Control,
    job: &str,
    split: &SplitInfo,
) -> Result<(PathBuf, u64), Failure> {
    let (key, offset) = crate::storage::blobs::split_object(job, split);
    let own = split_key(job, split.index);
    let what = || format!("split {} of job {job}", split.index);
    let mut last = "no node holds it".to_string();
    let mut local = vec![(key.clone(), offset)];
    if own != key {
        local.push((own.clone(), 0));
    }
    for (k, off) in local
        .into_iter()
        .filter(|(k, _)| ctl.store.blobs.contains(k))
    {
        let path = ctl.store.blobs.path(&k).ok_or("a malformed split key")?;
        match crate::storage::blobs::verified(path.clone(), off, split.len, split.checksum, what())
            .await
        {
            Ok(()) => return Ok((path, off)),
            Err(e) => {
                warn!(error = %e, "a stored split is unusable here; fetching another copy");
                last = e.to_string();
            }
        }
    }
    for h in holders_now(ctl, split)
        .into_iter()
        .filter(|&h| h != ctl.node.id)
    {
        let Some(peer) = peer_of(&ctl.node, h) else {
            continue;
        };
        let mut w = ctl
            .store
            .blobs
            .create(&own)
            .map_err(|e| Failure::io(format!("storing {own}"), &e))?;
        let piece = shoal_net::wire::Piece {
            key: key.clone(),
            offset,
            len: split.len,
        };
        let sum = match crate::storage::data::fetch_range(&ctl.store, peer, &piece, &mut w).await {
            Ok((_, sum)) => sum,
            Err(e) => {
                w.abort();
                last = e.to_string();
                continue;
            }
        };
        // Checked as it arrived: a corrupt copy is never stored.
        if let Some(want) = split.checksum.filter(|&want| want != sum) {
            w.abort();
            last = format!(
                "{} from node {h:016x} is corrupt: checksum {sum:08x}, {want:08x} recorded",
                what()
            );
            warn!(error = %last, "a fetched split is unusable; trying another holder");
            continue;
        }
        w.commit()
            .map_err(|e| Failure::io(format!("storing {own}"), &e))?;
        return Ok((
            ctl.store.blobs.path(&own).ok_or("a malformed split key")?,
            0,
        ));
    }
    Err(Failure::from(format!(
        "split {} could not be fetched: {last}",
        split.index
    )))
}

async fn map_attempt(
    ctl: &Arc<Control>,
    w: &Work,
    st: &Arc<AttemptState>,
) -> Result<Done, Failure> {
    let k = &w.key;
    let split = w.split.clone().ok_or("the job has no such split")?;
    let (path, offset) = match ctl.node.in_place_split(&split) {
        Some(at) => at?,
        None => ensure_split(ctl, &k.job, &split).await?,
    };
    // A map-only job's map writes its part, kept and copied as a reduce's part is.
    let map_only = w.spec.reducers == 0;
    let out_key = if map_only {
        part_key(&k.job, k.index, k.attempt)
    } else {
        map_output_key(&k.job, k.index, k.attempt)
    };
    let out_file = ctl
        .store
        .blobs
        .path(&out_key)
        .ok_or("a malformed map output key")?;
    // A split read in place leaves no object of the job here before its output.
    if let Some(dir) = out_file.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| Failure::io(format!("creating {}", dir.display()), &e))?;
    }
    let target = out_file.clone();
    let dirs = attempt_dirs(ctl, w)?;
    let task_split = Split {
        index: k.index,
        path,
        name: split.name.clone(),
        offset,
        len: split.len,
        files: split.files.clone(),
    };
    let out = on_pool_in_attempt_dir(ctl, w, st, dirs, move |env| {
        run_map(env, &task_split, &target).map_err(Failure::from)
    })
    .await?;
    let mut counters = out.counters;
    let holders = if map_only {
        copied_part(ctl, w, &out_key, &out_file, &mut counters).await?
    } else {
        vec![ctl.node.id]
    };
    Ok(Done {
        sizes: out.sizes,
        checksums: out.checksums,
        counters,
        holders,
    })
}

/// Copy a finished part file to `--replication` other nodes; its holders, this node first.
/// The time it took goes into `counters` (`output_copy_ms`).
/// A part on one disk only is lost with that disk after its job succeeded: when another
/// member could have taken a copy but none did, the attempt fails as lost (it runs again,
/// elsewhere).
async fn copied_part(
    ctl: &Arc<Control>,
    w: &Work,
    key: &str,
    file: &std::path::Path,
    counters: &mut shoal_jobs::counters::Counters,
) -> Result<Vec<NodeId>, Failure> {
    let targets = replica_targets(&ctl.store, w.spec.replication, w.key.index);
    let started = std::time::Instant::now();
    let holders = replicate(&ctl.store, key, file, &targets).await;
    counters.add_builtin("output_copy_ms", started.elapsed().as_millis() as u64);
    if holders.len() == 1 && !targets.is_empty() {
        return Err(Failure::lost(
            "the part file could not be copied to any other node".into(),
        ));
    }
    Ok(holders)
}

async fn reduce_attempt(
    ctl: &Arc<Control>,
    w: &Work,
    st: &Arc<AttemptState>,
) -> Result<Done, Failure> {
    let k = &w.key;
    let p = k.index;
    let outputs = w
        .inputs
        .as_ref()
        .map_err(|why| Failure::lost(why.clone()))?;
    let dirs = attempt_dirs(ctl, w)?;
    // Local map outputs are read in place; remote ones are pulled into the attempt
    // directory, the pieces from one node into one file, one after another.
    // Each map's partition: where its bytes are here (file, offset), and whether they were
    // checked as they arrived; the others are checked before use.
    let mut inputs: Vec<ReduceFrom> = Vec::new();
    let mut remote = Vec::new();
    let mut local_bytes = 0u64;
    for m in outputs.iter().filter(|m| m.size > 0) {
        let key = map_output_key(&k.job, m.map, m.attempt);
        if m.node == ctl.node.id {
            let path = ctl.store.blobs.path(&key).ok_or("a malformed key")?;
            inputs.push((m.clone(), path, m.offset, false));
            local_bytes = local_bytes.saturating_add(m.size);
        } else {
            remote.push((m.clone(), key));
        }
    }
    // Small pieces of one node come in one stream (a job of many small maps would otherwise
    // pay a stream per map); large ones still come a stream each, in parallel.
    let batches =
        crate::storage::data::batches(remote.into_iter().map(|r| (r.0.node, r)), |r| r.0.size);
    let fetch_started = std::time::Instant::now();
    let fetched = futures::stream::iter(batches.into_iter().enumerate())
        .map(|(i, (holder, batch))| {
            let path = dirs.work.join(format!("fetched-{i:04}"));
            fetch_batch(ctl, holder, batch, path)
        })
        .buffer_unordered(PARALLEL_FETCHES)
        .collect::<Vec<_>>()
        .await;
    let mut fetched_bytes = 0u64;
    st.progress.fetch_add(local_bytes, Ordering::Relaxed);
    for f in fetched {
        match f {
            Ok((got, n)) => {
                fetched_bytes = fetched_bytes.saturating_add(n);
                st.progress.fetch_add(n, Ordering::Relaxed);
                inputs.extend(got);
            }
            Err(f) => {
                dirs.remove();
                return Err(f);
            }
        }
    }
    inputs.sort_by_key(|(m, ..)| m.map);
    let fetch_ms = fetch_started.elapsed().as_millis() as u64;
    ctl.store
        .shuffle
        .fetched_bytes
        .fetch_add(fetched_bytes, Ordering::Relaxed);
    ctl.store
        .shuffle
        .local_bytes
        .fetch_add(local_bytes, Ordering::Relaxed);

    let out_key = part_key(&k.job, p, k.attempt);
    ctl.store
        .blobs
        .dir(&format!("{}/out", k.job))
        .map_err(|e| Failure::io("creating the output directory".into(), &e))?;
    let out_file = ctl.store.blobs.path(&out_key).ok_or("a malformed key")?;
    let target = out_file.clone();
    let (mut counters, checksum) = on_pool_in_attempt_dir(ctl, w, st, dirs, move |env| {
        let mut readers: Vec<ReduceInput> = Vec::with_capacity(inputs.len());
        for (m, path, offset, checked) in &inputs {
            if !checked {
                check_map_output(env.job_id, m, path, *offset)?;
            }
            let f = shoal_jobs::sort::open_range(path, *offset, m.size)?;
            readers.push(Box::new(f) as Box<dyn Read + Send>);
        }
        let counters = run_reduce(env, p, readers, &target)?;
        let checksum = std::fs::File::open(&target)
            .and_then(|mut f| {
                let len = f.metadata()?.len();
                checksum::of_range(&mut f, 0, len)
            })
            .map_err(|e| Failure::io("checksumming the part file".into(), &e))?;
        Ok((counters, checksum))
    })
    .await?;
    counters.add_builtin("shuffle_fetched_bytes", fetched_bytes);
    counters.add_builtin("shuffle_local_bytes", local_bytes);
    counters.add_builtin("shuffle_fetch_ms", fetch_ms);
    let size = std::fs::metadata(&out_file)
        .map(|m| m.len())
        .map_err(|e| Failure::io("the part file vanished".into(), &e))?;
    let holders = copied_part(ctl, w, &out_key, &out_file, &mut counters).await?;
    Ok(Done {
        sizes: vec![size],
        checksums: vec![checksum],
        counters,
        holders,
    })
}

/// One map output a reduce reads: the map's report, the file its bytes are in here, at what
/// offset, and whether they were checked as they arrived (the others are checked before use).
type ReduceFrom = (MapOut, PathBuf, u64, bool);

/// Fetch `batch`, map outputs node `holder` holds, into the file at `path` in one stream,
/// checking each against its map's checksum: where each is, and the bytes fetched. A piece
/// that cannot be had or is corrupt is a lost map output; this node's own disk failing is
/// not the map's fault.
async fn fetch_batch(
    ctl: &Arc<Control>,
    holder: NodeId,
    batch: Vec<(MapOut, String)>,
    path: PathBuf,
) -> Result<(Vec<ReduceFrom>, u64), Failure> {
    let lost = |m: &MapOut, why: String| Failure {
        lost_map: Some((m.map, m.attempt)),
        ..Failure::lost(format!(
            "fetching the output of map {} from node {:016x} failed: {why}",
            m.map, m.node
        ))
    };
    let Some(peer) = peer_of(&ctl.node, holder) else {
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
    match crate::storage::data::fetch_pieces_to_file(&ctl.store, peer, &pieces, &path).await {
        Ok((n, sums)) => {
            let mut at = 0;
            let mut got: Vec<ReduceFrom> = Vec::new();
            for ((m, _), sum) in batch.iter().zip(sums) {
                if m.checksum.is_some_and(|want| want != sum) {
                    let why = format!(
                        "job's map {} output (attempt {}) is corrupt: checksum {sum:08x}, {:08x} recorded",
                        m.map,
                        m.attempt,
                        m.checksum.unwrap_or_default()
                    );
                    return Err(lost(m, why));
                }
                got.push((m.clone(), path.clone(), at, true));
                at = at.saturating_add(m.size);
            }
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

/// Check map `m`'s partition, at `offset` in the file at `path`, against the map's report:
/// a copy that is corrupt or cut short is a lost map output (the map runs again), never
/// reduce input.
fn check_map_output(
    job: &str,
    m: &MapOut,
    path: &std::path::Path,
    offset: u64,
) -> Result<(), Failure> {
    let what = || {
        format!(
            "job {job}'s map {} output (attempt {}) from node {:016x}",
            m.map, m.attempt, m.node
        )
    };
    checksum::verify(path, offset, m.size, m.checksum, what).map_err(|e| Failure {
        lost_map: Some((m.map, m.attempt)),
        ..Failure::lost(e.to_string())
    })
}
