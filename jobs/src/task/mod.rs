//! The per-task units every node runs: a map task turns one split into one sorted file per
//! partition; a reduce task merges its partition's sorted runs, groups by key, reduces, and
//! writes one part file. Native apps and streaming executables go through the same units.
//!
//! The invariant: a task's results appear only when it succeeds, and atomically (files are
//! written in the attempt directory and renamed into place), so a failed or superseded
//! attempt never leaves output that looks finished.

use std::fs::File;
use std::io::{self, BufRead, Read, Write};
use std::path::Path;
use std::sync::atomic::AtomicU64;

use crate::counters::Counters;
use crate::error::{Error, IoContext, Result};
use crate::sort::{GroupValues, Merger};
use crate::spec::{InputFormat, JobKind};
use crate::split::Split;
use crate::streaming::{self};

pub use crate::spec::part_name;

use crate::line::write_line;

mod collect;
mod env;

use collect::Collector;
use env::{for_each_line, write_input};
pub use env::{
    job_env, map_output_file, map_task_id, partition_range, reduce_task_id, MapOutput, TaskEnv,
};

/// Run a map task over `split`; on success its output is renamed to `out_file`, and on
/// failure nothing of it is left.
pub fn run_map(env: &TaskEnv<'_>, split: &Split, out_file: &Path) -> Result<MapOutput> {
    let result = map_into(env, split, out_file);
    if result.is_err() {
        // A map-only job writes its part beside `out_file` as it goes.
        let _ = std::fs::remove_file(env::staged_path(out_file));
    }
    result
}

fn map_into(env: &TaskEnv<'_>, split: &Split, out_file: &Path) -> Result<MapOutput> {
    let started = std::time::Instant::now();
    let r = env.spec.reducers;
    let mut c = Collector::new(env, r, out_file)?;
    let context = format!(
        "split {} of {} ({})",
        split.index,
        split.name,
        env.attempt_text()
    );
    match &env.spec.kind {
        JobKind::App(_) => map_with_app(env, split, &mut c, &context)?,
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
            // Whole files go to the mapper as they are: no line to bound, nothing decoded.
            let max = match env.spec.input_format {
                InputFormat::Lines => Some(env.spec.max_record_bytes),
                InputFormat::WholeFiles => None,
            };
            let (mut lines, mut bytes) = (0u64, 0u64);
            let out = streaming::run(
                &launch,
                |stdin| feed_split(split, max, stdin, &mut lines, &mut bytes, env.progress),
                |stdout| {
                    if r == 0 {
                        // A map-only job's part is the mapper's output, byte for byte.
                        return copy_chunks(stdout, |chunk| {
                            c.emit_bytes(chunk);
                            c.error.take().map_or(Ok(()), Err)
                        });
                    }
                    for_each_line(stdout, |line| {
                        c.emit_line(line);
                        c.error.take().map_or(Ok(()), Err)
                    })
                },
            )?;
            c.counters.add_builtin("map_input_records", lines);
            c.counters.add_builtin("map_input_bytes", bytes);
            c.counters.merge(&out.counters);
        }
    }
    let mut out = c.finish(out_file)?;
    out.counters
        .add_builtin("map_task_ms", collect::millis(started));
    Ok(out)
}

/// A native app's map over `split`: each line to the app (or its task mapper), bounded by
/// the maximum record size.
fn map_with_app(
    env: &TaskEnv<'_>,
    split: &Split,
    c: &mut Collector<'_, '_>,
    context: &str,
) -> Result<()> {
    let app = env.app()?;
    let mut own = app.task_mapper();
    let mut input = crate::split::open(split, env.progress)?;
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
        let at = offset;
        offset += n as u64;
        lines += 1;
        let emit = &mut |k: &[u8], v: &[u8]| c.emit(k, v);
        match own.as_mut() {
            None => app.map(file.as_bytes(), body, emit),
            Some(m) => m
                .map(file.as_bytes(), body, emit)
                .map_err(|reason| Error::BadRecord {
                    file: file.to_owned(),
                    offset: at,
                    reason,
                })?,
        }
        if let Some(e) = c.error.take() {
            return Err(e);
        }
        if lines.is_multiple_of(4096) && env.cancel.load(std::sync::atomic::Ordering::Relaxed) {
            return Err(Error::Cancelled);
        }
    }
    if let Some(m) = own.as_mut() {
        m.finish(&mut |k, v| c.emit(k, v))
            .map_err(|e| Error::TaskFailed(format!("{context}: {e}")))?;
        if let Some(e) = c.error.take() {
            return Err(e);
        }
    }
    c.counters.add_builtin("map_input_records", lines);
    c.counters
        .add_builtin("map_input_bytes", offset - split.offset);
    Ok(())
}

/// Call `f` with each chunk `r` reads, straight from its buffer.
fn copy_chunks(r: &mut dyn BufRead, mut f: impl FnMut(&[u8]) -> Result<()>) -> Result<()> {
    loop {
        let buf = r.fill_buf().ctx(|| "reading the program's stdout".into())?;
        if buf.is_empty() {
            return Ok(());
        }
        let n = buf.len();
        f(buf)?;
        r.consume(n);
    }
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

/// Copy a split to a mapper's stdin, refusing lines longer than `max`; counts the lines and
/// the bytes (decompressed). Without `max` (whole files), the stored bytes as they are,
/// one record.
fn feed_split(
    split: &Split,
    max: Option<u64>,
    stdin: &mut dyn Write,
    lines: &mut u64,
    bytes: &mut u64,
    progress: Option<&AtomicU64>,
) -> Result<()> {
    let Some(max) = max else {
        let mut input = crate::split::open_raw(split, progress)?;
        *bytes = io::copy(&mut input, stdin).ctx(|| "writing to the mapper's stdin".into())?;
        *lines = 1;
        return Ok(());
    };
    let mut input = crate::split::open(split, progress)?;
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
        *bytes = pos - split.offset;
    }
    Ok(())
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
    let started = std::time::Instant::now();
    let mut counters = Counters::default();
    let mut merger = Merger::new(inputs)?;
    let file = File::create(tmp).ctx(|| format!("creating {}", tmp.display()))?;
    let file = crate::compress::writer(env.spec.compress_output, file)?;
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
            let keyed = env.spec.keys.is_some();
            let report = streaming::run(
                &launch,
                |stdin| {
                    let mut w = io::BufWriter::with_capacity(256 << 10, stdin);
                    while let Some((k, v)) = merger.next_record()? {
                        write_input(&mut w, keyed, k, v)
                            .ctx(|| "writing to the reducer's stdin".into())?;
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
    let file = out
        .into_inner()
        .map_err(|e| werr(e.into_error()))?
        .finish()
        .map_err(werr)?;
    let bytes = file.metadata().map(|m| m.len()).unwrap_or(0);
    let syncing = std::time::Instant::now();
    file.sync_all().map_err(werr)?;
    counters.add_builtin("reduce_fsync_ms", collect::millis(syncing));
    counters.add_builtin("reduce_task_ms", collect::millis(started));
    counters.add_builtin("output_bytes", bytes);
    Ok(counters)
}
