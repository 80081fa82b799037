//! What every task shares: its environment (job, attempt, directories, app), task and part
//! names, where a map's output lies, and the `key<TAB>value` line format.

use std::io::{self, BufRead, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::apps::App;
use crate::counters::Counters;
use crate::error::{Error, IoContext, Result};
use crate::keys::KeyFields;
use crate::line::{split_tab, write_line};
use crate::partition::Partitioner;
use crate::spec::{JobSpec, Program};
use crate::streaming::Launch;

/// Everything a task attempt needs to know about its job and itself.
pub struct TaskEnv<'a> {
    /// The job's id (`SHOAL_JOB_ID`).
    pub job_id: &'a str,
    /// The job.
    pub spec: &'a JobSpec,
    /// The native app, for app jobs.
    pub app: Option<Arc<dyn App>>,
    /// The job's partitioner (ranges already sampled).
    pub partitioner: &'a Partitioner,
    /// Attempt number, from 1.
    pub attempt: u32,
    /// The task's directory of this attempt: the working directory of its processes, the
    /// task user's. The node writes nothing there once a process may run.
    pub dir: &'a Path,
    /// The node's own directory of this attempt (spills, sort runs), which no task process
    /// can reach. The caller makes both and removes them afterwards, whatever happened
    /// ([`crate::scratch::AttemptDirs`]).
    pub work: &'a Path,
    /// Set to stop the attempt.
    pub cancel: &'a AtomicBool,
    /// Where a map publishes how many bytes of its split it has consumed (for heartbeats).
    pub progress: Option<&'a AtomicU64>,
    /// In which cgroup its processes run, under which rules (`None`: unconfined).
    pub sandbox: Option<&'a crate::sandbox::Sandbox>,
    /// As whom its processes run (the job's user; `None`: as this process).
    pub user: Option<&'a crate::sandbox::TaskUser>,
    /// The job's directory on this node, its archives and what its setup made, which the
    /// attempt's processes may read (`None`: the job has neither).
    pub job_dir: Option<&'a Path>,
    /// Where the attempt's processes' stderr is kept ([`crate::tasklog`]; `None`: not kept).
    pub log: Option<&'a Path>,
}

/// The environment every process of job `job_id` gets beyond the base one: the job's
/// `--env` and `SHOAL_JOB_ID` (tasks add their own ids; a setup runs with these alone).
pub fn job_env(spec: &JobSpec, job_id: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = spec
        .env
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    env.push(("SHOAL_JOB_ID".into(), job_id.into()));
    env
}

impl TaskEnv<'_> {
    pub(super) fn base_env(&self, task_id: &str) -> Vec<(String, String)> {
        let mut env = job_env(self.spec, self.job_id);
        env.push(("SHOAL_TASK_ID".into(), task_id.into()));
        env.push(("SHOAL_ATTEMPT".into(), self.attempt.to_string()));
        env
    }

    /// The native app of an app job.
    pub(super) fn app(&self) -> Result<Arc<dyn App>> {
        self.app
            .clone()
            .ok_or_else(|| Error::InvalidSpec("app job without its app".into()))
    }

    pub(super) fn attempt_text(&self) -> String {
        format!("attempt {} of {}", self.attempt, self.spec.max_attempts)
    }

    pub(super) fn launch<'b>(
        &'b self,
        role: &'static str,
        program: &'b Program,
        env: Vec<(String, String)>,
        context: String,
    ) -> Launch<'b> {
        Launch {
            role,
            program,
            files: &self.spec.files,
            dir: self.dir,
            env,
            timeout: Duration::from_secs(self.spec.task_timeout_secs),
            cancel: self.cancel,
            context,
            sandbox: self.sandbox,
            user: self.user,
            job_dir: self.job_dir,
            log: self.log,
        }
    }
}

/// A map task's id: `m-00003`.
pub fn map_task_id(index: u32) -> String {
    format!("m-{index:05}")
}

/// A reduce task's id: `r-00003`.
pub fn reduce_task_id(partition: u32) -> String {
    format!("r-{partition:05}")
}

/// What a finished map task produced. Its output is one file of sorted records, partition
/// after partition (Hadoop's `file.out`), renamed to the `out_file` it was given: one file
/// per map however many reducers, so a job of thousands of small maps creates thousands of
/// files, not thousands times R.
#[derive(Debug)]
pub struct MapOutput {
    /// The bytes of each partition in it, in partition order (see [`partition_range`]).
    pub sizes: Vec<u64>,
    /// The checksum of each partition ([`crate::checksum`]).
    pub checksums: Vec<u32>,
    /// The attempt's counters.
    pub counters: Counters,
}

/// Where map task `index`'s output file lives in a directory.
pub fn map_output_file(dir: &Path, index: u32) -> PathBuf {
    dir.join(format!("m-{index:05}.out"))
}

/// `(offset, length)` of partition `p` in a map output file whose partitions have `sizes`.
pub fn partition_range(sizes: &[u64], p: u32) -> (u64, u64) {
    let p = p as usize;
    // Sizes come in a member's report: a sum past u64 saturates (the read then fails).
    let offset = sizes
        .iter()
        .take(p)
        .fold(0u64, |sum, s| sum.saturating_add(*s));
    (offset, sizes.get(p).copied().unwrap_or(0))
}

/// Where a map output is written before the task commits it: a hidden name beside it
/// (a rename, not a copy, and no directory made and removed per attempt), ending in `.tmp`
/// like every uncommitted object, so a restarted node's sweep removes what a crash left.
pub(super) fn staged_path(out_file: &Path) -> PathBuf {
    let name = out_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out_file.with_file_name(format!(".{name}.tmp"))
}

/// Call `f` with each line (without its newline) of `r`, straight from the read buffer.
pub(super) fn for_each_line(
    r: &mut dyn BufRead,
    mut f: impl FnMut(&[u8]) -> Result<()>,
) -> Result<()> {
    let mut partial: Vec<u8> = Vec::new();
    loop {
        let buf = r.fill_buf().ctx(|| "reading the program's stdout".into())?;
        if buf.is_empty() {
            return if partial.is_empty() {
                Ok(())
            } else {
                f(&partial)
            };
        }
        let len = buf.len();
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', buf) {
            if partial.is_empty() {
                f(&buf[start..i])?;
            } else {
                partial.extend_from_slice(&buf[start..i]);
                f(&partial)?;
                partial.clear();
            }
            start = i + 1;
        }
        partial.extend_from_slice(&buf[start..]);
        r.consume(len);
    }
}

/// How a job's map output lines become records, and records lines again for a combiner or
/// reducer: `key<TAB>value` by default; with key fields ([`KeyFields`]) the record's key is
/// the encoded sort key and its value the whole line, handed on unchanged.
pub(super) struct Lines<'e> {
    keys: Option<&'e KeyFields>,
    partitioner: &'e Partitioner,
    r: u32,
    sort_key: Vec<u8>,
}

impl<'e> Lines<'e> {
    pub(super) fn new(env: &'e TaskEnv<'_>, r: u32) -> Self {
        Lines {
            keys: env.spec.keys.as_ref(),
            partitioner: env.partitioner,
            r,
            sort_key: Vec::new(),
        }
    }

    /// `(partition, key, value)` of an output line.
    #[inline]
    pub(super) fn record<'s>(&'s mut self, line: &'s [u8]) -> (u32, &'s [u8], &'s [u8]) {
        match self.keys {
            None => {
                let (k, v) = split_tab(line);
                (self.partitioner.partition(k, self.r), k, v)
            }
            Some(keys) => {
                let key = keys.key_of(line);
                let p = self
                    .partitioner
                    .partition(keys.partition_bytes(key), self.r);
                self.sort_key.clear();
                keys.encode_sort_key(key, &mut self.sort_key);
                (p, &self.sort_key, line)
            }
        }
    }

    /// Whether records are whole lines under an encoded sort key (see [`write_input`]).
    pub(super) fn keyed(&self) -> bool {
        self.keys.is_some()
    }
}

/// Write a record as a combiner's or reducer's input line: `key<TAB>value`, or, `keyed`, the
/// line the mapper wrote (the record's value).
#[inline]
pub(super) fn write_input(
    w: &mut impl Write,
    keyed: bool,
    key: &[u8],
    value: &[u8],
) -> io::Result<()> {
    if keyed {
        w.write_all(value)?;
        w.write_all(b"\n")
    } else {
        write_line(w, key, value)
    }
}
