//! `shoal run`: a whole job in one process. Plans splits, runs map tasks then reduce tasks on
//! a [`TaskPool`] with retries, writes `part-NNNNN` files and `_SUCCESS`
//! last. The same task units run on cluster nodes.
//!
//! The invariant: `_SUCCESS` exists only when every part file is complete; a failed job
//! leaves neither part files nor intermediate data behind.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use crate::apps::{self, App, PartitionKind};
use crate::counters::Counters;
use crate::error::{Error, IoContext, Result};
use crate::partition::Partitioner;
use crate::pool::TaskPool;
use crate::spec::{JobKind, JobSpec};
use crate::split::{expand_inputs, plan_splits, Split};
use crate::task::{self, TaskEnv};

/// What the driver tells its caller as the job goes.
#[derive(Debug)]
pub enum Event {
    /// Splits planned.
    Planned {
        /// Map tasks.
        maps: usize,
        /// Reduce tasks.
        reduces: usize,
        /// Input bytes.
        bytes: u64,
    },
    /// A task finished.
    TaskDone {
        /// `m-…` or `r-…`.
        task: String,
    },
    /// An attempt failed; another may follow.
    AttemptFailed {
        /// Task id.
        task: String,
        /// Attempt number.
        attempt: u32,
        /// Why.
        error: String,
    },
    /// The map phase ended.
    MapsDone,
}

/// The figures of a finished job.
#[derive(Debug, Default)]
pub struct Summary {
    /// Map tasks run.
    pub maps: usize,
    /// Reduce tasks run.
    pub reduces: usize,
    /// Job counters (successful attempts only).
    pub counters: Counters,
    /// Time in the map phase.
    pub map_time: Duration,
    /// Time in the reduce phase.
    pub reduce_time: Duration,
    /// Failed attempts that were retried.
    pub failed_attempts: u32,
    /// Part files written.
    pub parts: Vec<PathBuf>,
}

/// Check an output directory: absent, or an empty directory.
pub fn check_output_dir(output: &Path) -> Result<()> {
    match std::fs::read_dir(output) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(Error::InvalidSpec(format!(
                    "--output {} exists and is not empty",
                    output.display()
                )));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(Error::InvalidSpec(
            format!("--output {} is a file", output.display()),
        )),
        Err(e) => Err(Error::io(format!("--output {}", output.display()), e)),
    }
}

/// Pick the job's partitioner: the spec's, or the app's choice (sampling ranges from the
/// splits when the app wants a total order).
pub fn choose_partitioner(
    spec: &JobSpec,
    app: Option<&Arc<dyn App>>,
    splits: &[Split],
) -> Result<Partitioner> {
    if let Some(p) = &spec.partitioner {
        return Ok(p.clone());
    }
    match app {
        Some(app) if app.partition_kind() == PartitionKind::SampledRanges && spec.reducers > 1 => {
            Ok(Partitioner::sampled_ranges(
                sample_keys(app.as_ref(), splits, 20, 1000)?,
                spec.reducers,
            ))
        }
        _ => Ok(Partitioner::Hash),
    }
}

/// Map keys of up to `per_split` lines from up to `max_splits` evenly chosen splits.
fn sample_keys(
    app: &dyn App,
    splits: &[Split],
    max_splits: usize,
    per_split: usize,
) -> Result<Vec<Vec<u8>>> {
    use std::io::BufRead;
    let step = splits.len().div_ceil(max_splits).max(1);
    let mut keys = Vec::new();
    for s in splits.iter().step_by(step) {
        let reader = crate::split::open(s, None)?;
        for line in reader.split(b'\n').take(per_split) {
            let line = line.ctx(|| format!("reading {}", s.path.display()))?;
            app.map(s.name.as_bytes(), &line, &mut |k, _| keys.push(k.to_vec()));
        }
    }
    Ok(keys)
}

struct Shared {
    job_id: String,
    spec: JobSpec,
    app: Option<Arc<dyn App>>,
    partitioner: Partitioner,
    tmp: PathBuf,
    cancel: AtomicBool,
    /// The job's directory (`--archive`, `--setup`), when it has one.
    job_dir: Option<PathBuf>,
}

impl Shared {
    /// Run one task with retries; `work` runs an attempt in its scratch directory.
    fn attempts<T>(
        &self,
        task_id: &str,
        events: &(dyn Fn(Event) + Sync),
        failed: &mut u32,
        work: impl Fn(&TaskEnv<'_>) -> Result<T>,
    ) -> Result<T> {
        let mut last = String::new();
        for attempt in 1..=self.spec.max_attempts {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(Error::Cancelled);
            }
            let top = self
                .tmp
                .join("attempts")
                .join(format!("{task_id}-{attempt}"));
            let dirs = crate::scratch::AttemptDirs::make(top)
                .ctx(|| format!("making the directories of {task_id}"))?;
            // Processes run in it with the shipped files.
            if matches!(self.spec.kind, JobKind::Streaming { .. }) {
                crate::scratch::prepare_dir(
                    &dirs.task,
                    &self.spec.files,
                    self.job_dir.as_deref(),
                    None,
                )?;
            }
            let env = TaskEnv {
                job_id: &self.job_id,
                spec: &self.spec,
                app: self.app.clone(),
                partitioner: &self.partitioner,
                attempt,
                dir: &dirs.task,
                work: &dirs.work,
                cancel: &self.cancel,
                progress: None,
                sandbox: None,
                user: None,
                job_dir: self.job_dir.as_deref(),
                log: None,
            };
            let result = work(&env);
            dirs.remove();
            match result {
                Ok(v) => return Ok(v),
                Err(Error::Cancelled) => return Err(Error::Cancelled),
                // Bad input fails the job at once: another attempt would read the same bytes.
                Err(
                    e @ (Error::RecordTooLong { .. }
                    | Error::BadRecord { .. }
                    | Error::Input { .. }
                    | Error::InvalidSpec(_)),
                ) => return Err(e),
                Err(e) => {
                    last = e.to_string();
                    *failed += 1;
                    events(Event::AttemptFailed {
                        task: task_id.to_owned(),
                        attempt,
                        error: last.clone(),
                    });
                }
            }
        }
        Err(Error::TaskFailed(format!(
            "task {task_id} failed {n} of {n} attempts; the last: {last}",
            n = self.spec.max_attempts
        )))
    }
}

/// Run `spec` to completion in this process, writing part files into `output`.
pub fn run_local(
    spec: &JobSpec,
    output: &Path,
    slots: usize,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Summary> {
    run_local_with_archives(spec, &[], output, slots, events)
}

/// [`run_local`] for a job with `--archive`s: `archives` holds the local file of each of
/// `spec.archives`, in order. The archives are unpacked and the `--setup` run once, before
/// the first task.
pub fn run_local_with_archives(
    spec: &JobSpec,
    archives: &[PathBuf],
    output: &Path,
    slots: usize,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Summary> {
    spec.validate()?;
    if archives.len() != spec.archives.len() {
        return Err(Error::InvalidSpec(format!(
            "the job names {} archive(s) and {} file(s) were given",
            spec.archives.len(),
            archives.len()
        )));
    }
    check_output_dir(output)?;
    if let Some(arg) = spec
        .inputs
        .iter()
        .find(|i| crate::inplace::in_place(i).is_some())
    {
        return Err(Error::InvalidSpec(format!(
            "--input {arg}: node: and shared: inputs are read by a cluster's nodes under their \
             --input-root (shoal submit); shoal run reads local paths"
        )));
    }
    let files = expand_inputs(&spec.inputs)?;
    let splits = plan_splits(&files, spec.cut_size(), spec.max_record_bytes)?;
    let app = match &spec.kind {
        JobKind::App(name) => Some(apps::by_name(name, &spec.env)?),
        JobKind::Streaming { .. } => None,
    };
    let partitioner = choose_partitioner(spec, app.as_ref(), &splits)?;
    std::fs::create_dir_all(output).ctx(|| format!("creating {}", output.display()))?;
    let tmp = output.join("_temporary");
    let job_dir = match prepare_job_dir(spec, archives, &tmp) {
        Ok(d) => d,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
    };
    let shared = Arc::new(Shared {
        job_id: format!("local-{}", std::process::id()),
        spec: spec.clone(),
        app,
        partitioner,
        tmp: tmp.clone(),
        cancel: AtomicBool::new(false),
        job_dir,
    });
    let n_maps = splits.len() as u32;
    let result = run_phases(&shared, splits, output, slots, events);
    let _ = std::fs::remove_dir_all(&tmp);
    match result {
        Ok(summary) => {
            let success = output.join("_SUCCESS");
            std::fs::write(&success, b"").ctx(|| format!("writing {}", success.display()))?;
            Ok(summary)
        }
        Err(e) => {
            // A map-only job's parts are its maps'.
            for r in 0..spec.reducers.max(n_maps) {
                let _ = std::fs::remove_file(output.join(spec.part_name(r)));
            }
            Err(e)
        }
    }
}

/// The job's directory under `tmp`, archives unpacked and setup run, when it needs one.
fn prepare_job_dir(spec: &JobSpec, archives: &[PathBuf], tmp: &Path) -> Result<Option<PathBuf>> {
    if spec.archives.is_empty() && spec.setup.is_none() {
        return Ok(None);
    }
    let dir = tmp.join("job");
    let pairs: Vec<(PathBuf, &crate::archive::ArchiveRef)> =
        archives.iter().cloned().zip(&spec.archives).collect();
    crate::jobdir::unpack_archives(&dir, &pairs, None, 0)?;
    let cancel = AtomicBool::new(false);
    crate::jobdir::run_setup(
        spec,
        "local",
        &dir,
        None,
        &cancel,
        (None, None),
        "this machine".into(),
    )
    .map_err(crate::jobdir::setup_failed)?;
    Ok(Some(dir))
}

/// One attempt-runner of a task: runs an attempt in the scratch directory it is given.
type Work<T> = Box<dyn Fn(&TaskEnv<'_>) -> Result<T> + Send>;

/// Run tasks on the pool, each with its retries. Events are reported from this thread; the
/// first task to run out of attempts cancels the others. Results come in completion order.
fn run_phase<T: Send + 'static>(
    pool: &TaskPool,
    shared: &Arc<Shared>,
    tasks: Vec<(String, Work<T>)>,
    summary: &mut Summary,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Vec<T>> {
    let (tx, rx) = mpsc::channel();
    let n = tasks.len();
    for (id, work) in tasks {
        let shared = Arc::clone(shared);
        let tx = tx.clone();
        pool.execute(move || {
            let (etx, erx) = mpsc::channel();
            let mut failed = 0;
            let res = shared.attempts(&id, &|e| drop(etx.send(e)), &mut failed, |env| work(env));
            let _ = tx.send((id, res, erx.try_iter().collect::<Vec<_>>(), failed));
        });
    }
    drop(tx);
    let mut done = Vec::with_capacity(n);
    let mut first_error = None;
    for _ in 0..n {
        let Ok((id, res, evs, failed)) = rx.recv() else {
            break;
        };
        evs.into_iter().for_each(events);
        summary.failed_attempts += failed;
        match res {
            Ok(v) => {
                done.push(v);
                events(Event::TaskDone { task: id });
            }
            Err(e) => {
                shared.cancel.store(true, Ordering::Relaxed);
                // The task that failed explains the job; the others were only cancelled.
                if first_error.is_none() || matches!(first_error, Some(Error::Cancelled)) {
                    first_error = Some(e);
                }
            }
        }
    }
    match first_error {
        Some(e) => Err(e),
        None => Ok(done),
    }
}

fn run_phases(
    shared: &Arc<Shared>,
    splits: Vec<Split>,
    output: &Path,
    slots: usize,
    events: &(dyn Fn(Event) + Sync),
) -> Result<Summary> {
    let r = shared.spec.reducers;
    let map_out = shared.tmp.join("map-out");
    std::fs::create_dir_all(&map_out).ctx(|| format!("creating {}", map_out.display()))?;
    let bytes = splits.iter().map(|s| s.len).sum();
    events(Event::Planned {
        maps: splits.len(),
        reduces: r as usize,
        bytes,
    });
    let mut summary = Summary {
        maps: splits.len(),
        reduces: r as usize,
        ..Summary::default()
    };
    let pool = TaskPool::new(slots);
    let n_maps = splits.len() as u32;

    let started = Instant::now();
    type MapDone = (u32, Counters, Vec<u64>);
    let maps: Vec<(String, Work<MapDone>)> = splits
        .into_iter()
        .map(|split| {
            let id = task::map_task_id(split.index);
            // Map-only: each map's output is its part file.
            let out_file = if r == 0 {
                output.join(shared.spec.part_name(split.index))
            } else {
                task::map_output_file(&map_out, split.index)
            };
            let work: Work<MapDone> = Box::new(move |env| {
                task::run_map(env, &split, &out_file).map(|o| (split.index, o.counters, o.sizes))
            });
            (id, work)
        })
        .collect();
    // Each map's partition sizes: where partition p lies in its output file.
    let mut sizes: Vec<Vec<u64>> = vec![Vec::new(); n_maps as usize];
    for (m, c, s) in run_phase(&pool, shared, maps, &mut summary, events)? {
        summary.counters.merge(&c);
        sizes[m as usize] = s;
    }
    let sizes = Arc::new(sizes);
    summary.map_time = started.elapsed();
    events(Event::MapsDone);
    if r == 0 {
        summary.parts = (0..n_maps)
            .map(|m| output.join(shared.spec.part_name(m)))
            .collect();
        return Ok(summary);
    }

    // Reduce phase: partition p reads every map task's p file, in map order.
    let started = Instant::now();
    let reduces: Vec<(String, Work<(Counters, PathBuf)>)> = (0..r)
        .map(|p| {
            let map_out = map_out.clone();
            let sizes = Arc::clone(&sizes);
            let out_file = output.join(shared.spec.part_name(p));
            let work: Work<(Counters, PathBuf)> = Box::new(move |env| {
                let inputs = (0..n_maps)
                    .map(|m| {
                        let path = task::map_output_file(&map_out, m);
                        let (offset, len) = task::partition_range(&sizes[m as usize], p);
                        crate::sort::open_range(&path, offset, len)
                            .map(|f| Box::new(f) as task::ReduceInput)
                    })
                    .collect::<Result<Vec<_>>>()?;
                task::run_reduce(env, p, inputs, &out_file).map(|c| (c, out_file.clone()))
            });
            (task::reduce_task_id(p), work)
        })
        .collect();
    for (c, file) in run_phase(&pool, shared, reduces, &mut summary, events)? {
        summary.counters.merge(&c);
        summary.parts.push(file);
    }
    summary.parts.sort();
    summary.reduce_time = started.elapsed();
    Ok(summary)
}
