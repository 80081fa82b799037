//! A map task's output side: partition each record, buffer it (sorted, or hashed through a
//! native combiner), spill sorted runs when the buffer is full, combine each spill through a
//! streaming combiner, and merge the runs into the map's one output file.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::counters::Counters;
use crate::error::{Error, IoContext, Result};
use crate::line::write_line;
use crate::sort::{write_run, GroupValues, HashBuffer, Merger, PackedValues, Run, SortBuffer};
use crate::spec::{JobKind, Program};
use crate::streaming::{self};

use super::env::*;

enum Buffer {
    Sort(SortBuffer),
    Hash(HashBuffer),
    /// A map-only job (R = 0): records go straight to the part file, in emit order.
    Direct(Box<io::BufWriter<crate::compress::Encoder<File>>>),
}

/// A map task's output side: partition, buffer, spill, merge.
pub(super) struct Collector<'e, 'a> {
    env: &'e TaskEnv<'a>,
    r: u32,
    budget: usize,
    buffer: Buffer,
    lines: Lines<'e>,
    runs: Vec<Run>,
    pub(super) counters: Counters,
    /// Per-record counts, kept as plain integers on the hot path.
    out_records: u64,
    out_bytes: u64,
    pub(super) error: Option<Error>,
}

impl<'e, 'a> Collector<'e, 'a> {
    pub(super) fn new(env: &'e TaskEnv<'a>, r: u32, out_file: &Path) -> Result<Self> {
        let hash = env.app.as_ref().is_some_and(|a| a.has_combiner());
        let sums = env.app.as_ref().is_some_and(|a| a.combiner_sums());
        let buffer = if r == 0 {
            let staged = staged_path(out_file);
            let file = File::create(&staged).ctx(|| format!("creating {}", staged.display()))?;
            let w = crate::compress::writer(env.spec.compress_output, file)?;
            Buffer::Direct(Box::new(io::BufWriter::with_capacity(256 << 10, w)))
        } else if hash && sums {
            Buffer::Hash(HashBuffer::summing())
        } else if hash {
            Buffer::Hash(HashBuffer::default())
        } else {
            Buffer::Sort(SortBuffer::default())
        };
        Ok(Collector {
            env,
            r,
            budget: env.spec.sort_bytes as usize,
            buffer,
            lines: Lines::new(env, r),
            runs: Vec::new(),
            counters: Counters::default(),
            out_records: 0,
            out_bytes: 0,
            error: None,
        })
    }

    /// Add a record a native app emitted.
    #[inline]
    pub(super) fn emit(&mut self, key: &[u8], value: &[u8]) {
        let (env, r) = (self.env, self.r);
        let held = match &mut self.buffer {
            Buffer::Direct(w) => {
                let written = write_line(w, key, value);
                return self.written(written, key.len() + value.len());
            }
            // A key already held has its partition: a hashed buffer asks only for new keys.
            Buffer::Hash(b) => {
                let app = env.app.as_ref().expect("hash buffer only for apps");
                let part = || env.partitioner.partition(key, r);
                b.push(part, key, value, &|k, vs, e| app.combine(k, vs, e));
                b.bytes()
            }
            Buffer::Sort(b) => {
                b.push(env.partitioner.partition(key, r), key, value);
                b.bytes()
            }
        };
        self.counted(key.len() + value.len(), held > self.budget);
    }

    /// Add a line a streaming mapper wrote.
    #[inline]
    pub(super) fn emit_line(&mut self, line: &[u8]) {
        if let Buffer::Direct(w) = &mut self.buffer {
            let written = w.write_all(line).and_then(|()| w.write_all(b"\n"));
            return self.written(written, line.len());
        }
        let (p, k, v) = self.lines.record(line);
        let over = push(&mut self.buffer, self.env, p, k, v) > self.budget;
        self.counted(line.len(), over);
    }

    /// Bytes of a streaming mapper's output, written as they are to a map-only job's part.
    pub(super) fn emit_bytes(&mut self, bytes: &[u8]) {
        if let Buffer::Direct(w) = &mut self.buffer {
            if let Err(e) = w.write_all(bytes) {
                self.error
                    .get_or_insert_with(|| Error::io("writing the map's part file", e));
            }
            self.out_records += memchr::memchr_iter(b'\n', bytes).count() as u64;
            self.out_bytes += bytes.len() as u64;
        }
    }

    /// A record written straight to a map-only job's part.
    fn written(&mut self, result: io::Result<()>, bytes: usize) {
        if let Err(e) = result {
            self.error
                .get_or_insert_with(|| Error::io("writing the map's part file", e));
        }
        self.counted(bytes, false);
    }

    #[inline]
    fn counted(&mut self, bytes: usize, over: bool) {
        self.out_records += 1;
        self.out_bytes += bytes as u64;
        if over && self.error.is_none() {
            if let Err(e) = self.spill() {
                self.error = Some(e);
            }
        }
    }

    pub(super) fn spill(&mut self) -> Result<()> {
        let started = Instant::now();
        let path = self.next_run_path()?;
        let (run, records) = self.sorted_run(&path)?;
        self.counters.add_builtin("spilled_records", records);
        self.counters.add_builtin("spill_ms", millis(started));
        self.runs.push(run);
        Ok(())
    }

    /// The next run's file, in the node's half of the attempt's directories: a task process
    /// can neither see nor plant anything there.
    pub(super) fn next_run_path(&self) -> Result<PathBuf> {
        Ok(self.env.work.join(format!("spill-{:04}", self.runs.len())))
    }

    /// Sort (or fold) what the buffer holds and write it as a run; empties the buffer.
    pub(super) fn sorted_run(&mut self, path: &Path) -> Result<(Run, u64)> {
        let r = self.r;
        match &mut self.buffer {
            // Written as it came (emit never buffers in a map-only job).
            Buffer::Direct(_) => Err(Error::InvalidSpec(
                "a map-only job's output is not sorted into runs".into(),
            )),
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
                        let combined = combine_with_process(
                            self.env,
                            &program,
                            b,
                            &mut self.lines,
                            &mut self.counters,
                        )?;
                        write_run(path, r, combined.iter())
                    }
                };
                b.clear();
                result
            }
        }
    }

    /// Write the output file, partition after partition, then rename it into place.
    pub(super) fn finish(mut self, out_file: &Path) -> Result<MapOutput> {
        let staged = staged_path(out_file);
        let direct = match std::mem::replace(&mut self.buffer, Buffer::Sort(SortBuffer::default()))
        {
            Buffer::Direct(w) => Some(w),
            other => {
                self.buffer = other;
                None
            }
        };
        let started = Instant::now();
        let sizes = if let Some(w) = direct {
            let werr = |e| Error::io(format!("writing {}", staged.display()), e);
            let file = w
                .into_inner()
                .map_err(|e| werr(e.into_error()))?
                .finish()
                .map_err(werr)?;
            file.sync_all().map_err(werr)?;
            vec![file.metadata().map_err(werr)?.len()]
        } else if self.runs.is_empty() {
            // Nothing spilled: the sorted buffer is the output.
            let (run, _) = self.sorted_run(&staged)?;
            run.sections.iter().map(|&(_, len)| len).collect()
        } else {
            self.merge_runs(&staged)?
        };
        // Sorting what is buffered and merging the spills, or syncing a map-only part.
        self.counters
            .add_builtin("map_final_write_ms", millis(started));
        self.counters
            .add_builtin("map_output_records", self.out_records);
        self.counters
            .add_builtin("map_output_bytes", self.out_bytes);
        // Read back while the pages are still cached: cheaper than threading a checksum
        // through every way the file is written (one sorted run, or a merge of spills).
        let checksums = crate::checksum::of_sections(&staged, &sizes)
            .ctx(|| format!("checksumming {}", staged.display()))?;
        std::fs::rename(&staged, out_file)
            .ctx(|| format!("moving map output to {}", out_file.display()))?;
        Ok(MapOutput {
            sizes,
            checksums,
            counters: self.counters,
        })
    }

    /// Merge the spilled runs (and what is still buffered) into `path`, partition after
    /// partition, folding with the app's combiner; the bytes of each partition.
    pub(super) fn merge_runs(&mut self, path: &Path) -> Result<Vec<u64>> {
        let buffered = match &self.buffer {
            Buffer::Sort(b) => !b.is_empty(),
            Buffer::Hash(b) => !b.is_empty(),
            Buffer::Direct(_) => false,
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

/// Milliseconds since `started`, for the counters that say where a task's time went.
pub(super) fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Add a record to the buffer; the bytes it then holds.
#[inline]
fn push(buffer: &mut Buffer, env: &TaskEnv<'_>, p: u32, key: &[u8], value: &[u8]) -> usize {
    match buffer {
        Buffer::Sort(b) => {
            b.push(p, key, value);
            b.bytes()
        }
        Buffer::Hash(b) => {
            let app = env.app.as_ref().expect("hash buffer only for apps");
            b.push(|| p, key, value, &|k, vs, e| app.combine(k, vs, e));
            b.bytes()
        }
        // Never reached: a map-only job's records are written by `emit` directly.
        Buffer::Direct(_) => 0,
    }
}

/// Pipe a sorted buffer through a streaming combiner; its output, re-partitioned and sorted.
fn combine_with_process(
    env: &TaskEnv<'_>,
    program: &Program,
    sorted: &SortBuffer,
    lines: &mut Lines<'_>,
    counters: &mut Counters,
) -> Result<SortBuffer> {
    let mut out = SortBuffer::default();
    let launch = env.launch(
        "combiner",
        program,
        env.base_env("combine"),
        format!("a map spill ({})", env.attempt_text()),
    );
    let keyed = lines.keyed();
    let report = streaming::run(
        &launch,
        |stdin| {
            let mut w = io::BufWriter::with_capacity(256 << 10, stdin);
            for (_, k, v) in sorted.iter() {
                write_input(&mut w, keyed, k, v)
                    .ctx(|| "writing to the combiner's stdin".into())?;
            }
            w.flush().ctx(|| "writing to the combiner's stdin".into())
        },
        |stdout| {
            for_each_line(stdout, |line| {
                let (p, k, v) = lines.record(line);
                out.push(p, k, v);
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
