//! The per-task units every node runs: a map task turns one split into one sorted file per
//! partition; a reduce task merges its partition's sorted runs, groups by key, reduces, and
//! writes one part file. Native apps and streaming executables go through the same units.
//!
//! The invariant: a task's results appear only when it succeeds, and atomically (files are
//! written in the attempt directory and renamed into place), so a failed or superseded
//! attempt never leaves output that looks finished.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::Duration;

use crate::apps::App;
use crate::counters::Counters;
use crate::error::{Error, IoContext, Result};
use crate::partition::Partitioner;
use crate::sort::{write_run, GroupValues, HashBuffer, Merger, PackedValues, Run, SortBuffer};
use crate::spec::{JobKind, JobSpec, Program};
use crate::split::Split;
use crate::streaming::{self, Launch};

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
    /// Scratch directory of this attempt: working directory of processes, spills. The
    /// caller removes it afterwards, whatever happened.
    pub dir: &'a Path,
    /// Set to stop the attempt.
    pub cancel: &'a AtomicBool,
    /// Where a map publishes how many bytes of its split it has consumed (for heartbeats).
    pub progress: Option<&'a AtomicU64>,
}

impl TaskEnv<'_> {
    fn base_env(&self, task_id: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .spec
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        env.push(("SHOAL_JOB_ID".into(), self.job_id.into()));
        env.push(("SHOAL_TASK_ID".into(), task_id.into()));
        env.push(("SHOAL_ATTEMPT".into(), self.attempt.to_string()));
        env
    }

    /// The native app of an app job.
    fn app(&self) -> Result<Arc<dyn App>> {
        self.app
            .clone()
            .ok_or_else(|| Error::InvalidSpec("app job without its app".into()))
    }

    fn attempt_text(&self) -> String {
        format!("attempt {} of {}", self.attempt, self.spec.max_attempts)
    }

    fn launch<'b>(
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

/// A part file's name: `part-00003`.
pub fn part_name(partition: u32) -> String {
    format!("part-{partition:05}")
}

/// What a finished map task produced. Its output is one file of sorted records, partition
/// after partition (Hadoop's `file.out`), renamed to the `out_file` it was given: one file
/// per map however many reducers, so a job of thousands of small maps creates thousands of
/// files, not thousands times R.
#[derive(Debug)]
pub struct MapOutput {
    /// The bytes of each partition in it, in partition order (see [`partition_range`]).
    pub sizes: Vec<u64>,
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
    let offset = sizes.iter().take(p).sum();
    (offset, sizes.get(p).copied().unwrap_or(0))
}

/// Where a map output is written before the task commits it: a hidden name beside it
/// (a rename, not a copy, and no directory made and removed per attempt), ending in `.tmp`
/// like every uncommitted object, so a restarted node's sweep removes what a crash left.
fn staged_path(out_file: &Path) -> PathBuf {
    let name = out_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    out_file.with_file_name(format!(".{name}.tmp"))
}

/// Run a map task over `split`; on success its output is renamed to `out_file`.
pub fn run_map(env: &TaskEnv<'_>, split: &Split, out_file: &Path) -> Result<MapOutput> {
    let r = env.spec.reducers;
    let mut c = Collector::new(env, r)?;
    c.counters.add_builtin("map_input_bytes", split.len);
    let context = format!(
        "split {} of {} ({})",
        split.index,
        split.name,
        env.attempt_text()
    );
    match &env.spec.kind {
        JobKind::App(_) => {
            let app = env.app()?;
            let mut input = open_split(split)?;
            let mut line = Vec::new();
            let mut offset = split.offset;
            let mut lines = 0u64;
            let mut file_of = FileOf::new(split);
            loop {
                line.clear();
                let n = (&mut input)
                    .take(env.spec.max_record_bytes + 2)
                    .read_until(b'\n', &mut line)
                    .ctx(|| format!("reading {}", split.path.display()))?;
                if n == 0 {
                    break;
                }
                let mut body = line.as_slice();
                if body.last() == Some(&b'\n') {
                    body = &body[..body.len() - 1];
                }
                let file = file_of.at(offset - split.offset);
                if body.len() as u64 > env.spec.max_record_bytes {
                    return Err(Error::RecordTooLong {
                        file: file.to_owned(),
                        offset,
                        max: env.spec.max_record_bytes,
                    });
                }
                offset += n as u64;
                lines += 1;
                app.map(file.as_bytes(), body, &mut |k, v| c.emit(k, v));
                if let Some(e) = c.error.take() {
                    return Err(e);
                }
                if lines.is_multiple_of(4096) {
                    if env.cancel.load(std::sync::atomic::Ordering::Relaxed) {
                        return Err(Error::Cancelled);
                    }
                    if let Some(p) = env.progress {
                        p.store(offset - split.offset, std::sync::atomic::Ordering::Relaxed);
                    }
                }
            }
            c.counters.add_builtin("map_input_records", lines);
        }
        JobKind::Streaming { map, .. } => {
            let mut vars = env.base_env(&map_task_id(split.index));
            // A combined split is several files on one stdin: their names, one per line,
            // and SHOAL_INPUT_FILE only when there is just one.
            if !split.files.is_empty() {
                let names: Vec<&str> = split.files.iter().map(|(n, _)| n.as_str()).collect();
                vars.push(("SHOAL_INPUT_FILES".into(), names.join("\n")));
            }
            if split.files.len() <= 1 {
                vars.push(("SHOAL_INPUT_FILE".into(), split.name.clone()));
                vars.push(("mapreduce_map_input_file".into(), split.name.clone()));
            }
            vars.push(("SHOAL_PARTITIONS".into(), r.to_string()));
            let launch = env.launch("mapper", map, vars, context);
            let max = env.spec.max_record_bytes;
            let mut lines = 0u64;
            let out = streaming::run(
                &launch,
                |stdin| feed_split(split, max, stdin, &mut lines, env.progress),
                |stdout| {
                    for_each_line(stdout, |line| {
                        let (k, v) = split_tab(line);
                        c.emit(k, v);
                        c.error.take().map_or(Ok(()), Err)
                    })
                },
            )?;
            c.counters.add_builtin("map_input_records", lines);
            c.counters.merge(&out.counters);
        }
    }
    c.finish(out_file)
}

/// The input file a record of a split came from: the split's own name, or, for a combined
/// split, the member file the record starts in. Asked in increasing positions.
struct FileOf<'s> {
    split: &'s Split,
    /// Members passed so far (the current one is `next - 1`).
    next: usize,
    /// Where the current member ends, relative to the split's start.
    end: u64,
}

impl<'s> FileOf<'s> {
    fn new(split: &'s Split) -> Self {
        FileOf {
            split,
            next: 0,
            end: 0,
        }
    }

    fn at(&mut self, pos: u64) -> &'s str {
        let files = &self.split.files;
        if files.is_empty() {
            return &self.split.name;
        }
        while pos >= self.end && self.next < files.len() {
            self.end += files[self.next].1;
            self.next += 1;
        }
        &files[self.next.max(1) - 1].0
    }
}

fn open_split(split: &Split) -> Result<BufReader<io::Take<File>>> {
    let mut f = File::open(&split.path).map_err(|e| Error::Input {
        path: split.path.clone(),
        source: e,
    })?;
    f.seek(SeekFrom::Start(split.offset))
        .ctx(|| format!("reading {}", split.path.display()))?;
    // A small split gets a small buffer (thousands of 1 KB splits are common).
    let cap = (split.len + 1).min(256 << 10) as usize;
    Ok(BufReader::with_capacity(cap, f.take(split.len)))
}

/// Copy a split to a mapper's stdin, refusing lines longer than `max`; counts the lines.
fn feed_split(
    split: &Split,
    max: u64,
    stdin: &mut dyn Write,
    lines: &mut u64,
    progress: Option<&AtomicU64>,
) -> Result<()> {
    let mut input = open_split(split)?.into_inner();
    let mut buf = vec![0u8; 256 << 10];
    let mut pos = split.offset;
    let mut line_start = split.offset;
    loop {
        let n = input
            .read(&mut buf)
            .ctx(|| format!("reading {}", split.path.display()))?;
        if n == 0 {
            break;
        }
        for i in memchr::memchr_iter(b'\n', &buf[..n]) {
            let end = pos + i as u64;
            if end - line_start > max {
                return Err(Error::RecordTooLong {
                    file: split.name.clone(),
                    offset: line_start,
                    max,
                });
            }
            line_start = end + 1;
            *lines += 1;
        }
        pos += n as u64;
        if pos - line_start > max {
            return Err(Error::RecordTooLong {
                file: split.name.clone(),
                offset: line_start,
                max,
            });
        }
        stdin
            .write_all(&buf[..n])
            .ctx(|| "writing to the mapper's stdin".into())?;
        if let Some(p) = progress {
            p.store(pos - split.offset, std::sync::atomic::Ordering::Relaxed);
        }
    }
    Ok(())
}

/// Call `f` with each line (without its newline) of `r`, straight from the read buffer.
fn for_each_line(r: &mut dyn BufRead, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
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

/// `key<TAB>value` → (key, value); no tab: the whole line is the key.
#[inline]
fn split_tab(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\t', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, b""),
    }
}

/// Write a record as an output or streaming input line: `key<TAB>value`, or `key` alone
/// when the value is empty.
#[inline]
pub fn write_line(w: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    w.write_all(key)?;
    if !value.is_empty() {
        w.write_all(b"\t")?;
        w.write_all(value)?;
    }
    w.write_all(b"\n")
}

enum Buffer {
    Sort(SortBuffer),
    Hash(HashBuffer),
}

/// A map task's output side: partition, buffer, spill, merge.
struct Collector<'e, 'a> {
    env: &'e TaskEnv<'a>,
    r: u32,
    budget: usize,
    buffer: Buffer,
    runs: Vec<Run>,
    counters: Counters,
    /// Per-record counts, kept as plain integers on the hot path.
    out_records: u64,
    out_bytes: u64,
    error: Option<Error>,
}

impl<'e, 'a> Collector<'e, 'a> {
    fn new(env: &'e TaskEnv<'a>, r: u32) -> Result<Self> {
        let hash = env.app.as_ref().is_some_and(|a| a.has_combiner());
        let buffer = if hash {
            Buffer::Hash(HashBuffer::default())
        } else {
            Buffer::Sort(SortBuffer::default())
        };
        Ok(Collector {
            env,
            r,
            budget: env.spec.sort_bytes as usize,
            buffer,
            runs: Vec::new(),
            counters: Counters::default(),
            out_records: 0,
            out_bytes: 0,
            error: None,
        })
    }

    #[inline]
    fn emit(&mut self, key: &[u8], value: &[u8]) {
        let p = self.env.partitioner.partition(key, self.r);
        let over = match &mut self.buffer {
            Buffer::Sort(b) => {
                b.push(p, key, value);
                b.bytes() > self.budget
            }
            Buffer::Hash(b) => {
                let app = self.env.app.as_ref().expect("hash buffer only for apps");
                b.push(p, key, value, &|k, vs, e| app.combine(k, vs, e));
                b.bytes() > self.budget
            }
        };
        self.out_records += 1;
        self.out_bytes += (key.len() + value.len()) as u64;
        if over && self.error.is_none() {
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
        }
    }

    fn spill(&mut self) -> Result<()> {
        let path = self.next_run_path()?;
        let (run, records) = self.sorted_run(&path)?;
        self.counters.add_builtin("spilled_records", records);
        self.runs.push(run);
        Ok(())
    }

    /// The next run's file. The attempt directory is made when first needed: a native
    /// app's attempt that never spills needs none.
    fn next_run_path(&self) -> Result<PathBuf> {
        std::fs::create_dir_all(self.env.dir)
            .ctx(|| format!("creating {}", self.env.dir.display()))?;
        Ok(self.env.dir.join(format!("spill-{:04}", self.runs.len())))
    }

    /// Sort (or fold) what the buffer holds and write it as a run; empties the buffer.
    fn sorted_run(&mut self, path: &Path) -> Result<(Run, u64)> {
        let r = self.r;
        match &mut self.buffer {
            Buffer::Hash(b) => {
                let app = self.env.app.clone().expect("hash buffer only for apps");
                let drained = b.drain_sorted(&|k, vs, e| app.combine(k, vs, e));
                let mut records = Vec::new();
                for (p, k, packed) in &drained {
                    for v in PackedValues::new(packed) {
                        records.push((*p, &k[..], v));
                    }
                }
                write_run(path, r, records.into_iter())
            }
            Buffer::Sort(b) => {
                b.sort();
                let combine = match &self.env.spec.kind {
                    JobKind::Streaming {
                        combine: Some(c), ..
                    } => Some(c.clone()),
                    _ => None,
                };
                let result = match combine {
                    None => write_run(path, r, b.iter()),
                    Some(program) => {
                        let combined =
                            combine_with_process(self.env, &program, b, r, &mut self.counters)?;
                        write_run(path, r, combined.iter())
                    }
                };
                b.clear();
                result
            }
        }
    }

    /// Write the output file, partition after partition, then rename it into place.
    fn finish(mut self, out_file: &Path) -> Result<MapOutput> {
        let staged = staged_path(out_file);
        let sizes = if self.runs.is_empty() {
            // Nothing spilled: the sorted buffer is the output.
            let (run, _) = self.sorted_run(&staged)?;
            run.sections.iter().map(|&(_, len)| len).collect()
        } else {
            self.merge_runs(&staged)?
        };
        self.counters
            .add_builtin("map_output_records", self.out_records);
        self.counters
            .add_builtin("map_output_bytes", self.out_bytes);
        std::fs::rename(&staged, out_file)
            .ctx(|| format!("moving map output to {}", out_file.display()))?;
        Ok(MapOutput {
            sizes,
            counters: self.counters,
        })
    }

    /// Merge the spilled runs (and what is still buffered) into `path`, partition after
    /// partition, folding with the app's combiner; the bytes of each partition.
    fn merge_runs(&mut self, path: &Path) -> Result<Vec<u64>> {
        let buffered = match &self.buffer {
            Buffer::Sort(b) => !b.is_empty(),
            Buffer::Hash(b) => !b.is_empty(),
        };
        if buffered {
            let run_path = self.next_run_path()?;
            let (run, _) = self.sorted_run(&run_path)?;
            self.runs.push(run);
        }
        let fold = self
            .env
            .app
            .clone()
            .filter(|a| a.has_combiner() && self.runs.len() > 1);
        let file = File::create(path).ctx(|| format!("creating {}", path.display()))?;
        let mut w = crate::record::RecordWriter::new(file);
        let werr = |e| Error::io(format!("writing {}", path.display()), e);
        let mut sizes = Vec::with_capacity(self.r as usize);
        for p in 0..self.r {
            let start = w.bytes();
            let sources = self
                .runs
                .iter()
                .map(|r| r.section(p as usize))
                .collect::<Result<Vec<_>>>()?;
            let mut merger = Merger::new(sources)?;
            match &fold {
                Some(app) => {
                    while let Some(k) = merger.peek_key()? {
                        let key = k.to_vec();
                        let mut folded = Vec::new();
                        let mut vs = GroupValues::new(&mut merger, &key);
                        app.combine(&key, &mut vs, &mut |v| folded.push(v.to_vec()));
                        vs.drain();
                        if let Some(e) = vs.error.take() {
                            return Err(e);
                        }
                        for v in folded {
                            w.write(&key, &v).map_err(werr)?;
                        }
                    }
                }
                None => {
                    while let Some((k, v)) = merger.next_record()? {
                        w.write(k, v).map_err(werr)?;
                    }
                }
            }
            sizes.push(w.bytes() - start);
        }
        w.finish().map_err(werr)?;
        Ok(sizes)
    }
}

/// Pipe a sorted buffer through a streaming combiner; its output, re-partitioned and sorted.
fn combine_with_process(
    env: &TaskEnv<'_>,
    program: &Program,
    sorted: &SortBuffer,
    r: u32,
    counters: &mut Counters,
) -> Result<SortBuffer> {
    let mut out = SortBuffer::default();
    let launch = env.launch(
        "combiner",
        program,
        env.base_env("combine"),
        format!("a map spill ({})", env.attempt_text()),
    );
    let report = streaming::run(
        &launch,
        |stdin| {
            let mut w = io::BufWriter::with_capacity(256 << 10, stdin);
            for (_, k, v) in sorted.iter() {
                write_line(&mut w, k, v).ctx(|| "writing to the combiner's stdin".into())?;
            }
            w.flush().ctx(|| "writing to the combiner's stdin".into())
        },
        |stdout| {
            for_each_line(stdout, |line| {
                let (k, v) = split_tab(line);
                out.push(env.partitioner.partition(k, r), k, v);
                Ok(())
            })
        },
    )?;
    counters.add_builtin("combine_input_records", sorted.len() as u64);
    counters.add_builtin("combine_output_records", out.len() as u64);
    counters.merge(&report.counters);
    out.sort();
    Ok(out)
}

/// A reduce task's input: sorted record streams, in map task order.
pub type ReduceInput = Box<dyn Read + Send>;

/// Run reduce task `partition` over `inputs`; on success `out_file` appears atomically.
pub fn run_reduce(
    env: &TaskEnv<'_>,
    partition: u32,
    inputs: Vec<ReduceInput>,
    out_file: &Path,
) -> Result<Counters> {
    let tmp = out_file.with_file_name(format!(
        ".{}.attempt-{}.tmp",
        out_file
            .file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default(),
        env.attempt
    ));
    let result = reduce_into(env, partition, inputs, &tmp);
    match result {
        Ok(counters) => {
            std::fs::rename(&tmp, out_file)
                .ctx(|| format!("moving output to {}", out_file.display()))?;
            Ok(counters)
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

fn reduce_into(
    env: &TaskEnv<'_>,
    partition: u32,
    inputs: Vec<ReduceInput>,
    tmp: &Path,
) -> Result<Counters> {
    let mut counters = Counters::default();
    let mut merger = Merger::new(inputs)?;
    let file = File::create(tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let mut out = io::BufWriter::with_capacity(256 << 10, file);
    let werr = |e| Error::io(format!("writing {}", tmp.display()), e);
    match &env.spec.kind {
        JobKind::App(_) => {
            let app = env.app()?;
            let (mut groups, mut records, mut written) = (0u64, 0u64, 0u64);
            let mut write_err: Option<io::Error> = None;
            while let Some(k) = merger.peek_key()? {
                let key = k.to_vec();
                let mut vs = GroupValues::new(&mut merger, &key);
                app.reduce(&key, &mut vs, &mut |k, v| {
                    if write_err.is_none() {
                        if let Err(e) = write_line(&mut out, k, v) {
                            write_err = Some(e);
                        }
                        written += 1;
                    }
                });
                vs.drain();
                if let Some(e) = vs.error.take() {
                    return Err(e);
                }
                records += vs.count;
                groups += 1;
                if let Some(e) = write_err.take() {
                    return Err(werr(e));
                }
                if groups.is_multiple_of(4096)
                    && env.cancel.load(std::sync::atomic::Ordering::Relaxed)
                {
                    return Err(Error::Cancelled);
                }
            }
            counters.add_builtin("reduce_input_groups", groups);
            counters.add_builtin("reduce_input_records", records);
            counters.add_builtin("reduce_output_records", written);
        }
        JobKind::Streaming { reduce, .. } => {
            let mut vars = env.base_env(&reduce_task_id(partition));
            vars.push(("SHOAL_PARTITION".into(), partition.to_string()));
            let context = format!("partition {partition} ({})", env.attempt_text());
            let launch = env.launch("reducer", reduce, vars, context);
            let mut records = 0u64;
            let mut lines = 0u64;
            let report = streaming::run(
                &launch,
                |stdin| {
                    let mut w = io::BufWriter::with_capacity(256 << 10, stdin);
                    while let Some((k, v)) = merger.next_record()? {
                        write_line(&mut w, k, v).ctx(|| "writing to the reducer's stdin".into())?;
                        records += 1;
                    }
                    w.flush().ctx(|| "writing to the reducer's stdin".into())
                },
                |stdout| {
                    let mut buf = vec![0u8; 256 << 10];
                    loop {
                        let n = stdout
                            .read(&mut buf)
                            .ctx(|| "reading the reducer's stdout".into())?;
                        if n == 0 {
                            return Ok(());
                        }
                        lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
                        out.write_all(&buf[..n]).map_err(werr)?;
                    }
                },
            )?;
            counters.merge(&report.counters);
            counters.add_builtin("reduce_input_records", records);
            counters.add_builtin("reduce_output_records", lines);
        }
    }
    let file = out.into_inner().map_err(|e| werr(e.into_error()))?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    file.sync_all().map_err(werr)?;
    counters.add_builtin("output_bytes", bytes);
    Ok(counters)
}
