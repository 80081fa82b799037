//! Native apps: MapReduce jobs written in Rust behind the small [`App`] trait, run in-process
//! through the very same map/partition/sort/spill/merge/reduce units as streaming jobs.
//!
//! - [`WordCount`] (`wordcount`): words are maximal runs of non-whitespace bytes (C
//!   `isspace`, as `wc -w` counts them); output `word<TAB>count`.
//! - [`Grep`] (`grep`): lines matching the regex in the job's `GREP_PATTERN` env; output
//!   `input-file<TAB>line`, lines of a file in file order.
//! - [`InvertedIndex`] (`invertedindex`): output `word<TAB>file1,file2,…` (sorted, distinct).
//! - [`Sort`] (`sort`): TeraSort-style total order; lines are keys, partitions are sampled
//!   ranges, so `part-00000`, `part-00001`, … concatenated are sorted bytewise.
//! - [`TeraGen`], `terasort` ([`Sort`]), [`TeraValidate`]: the sort benchmark's jobs on
//!   `gensort -a` records (see [`tera`]).
//!
//! The invariant: an app is a pure function of its input records — re-running a task gives
//! the same output, which is what makes retries and speculative attempts safe.

mod grep;
mod invertedindex;
mod sort;
mod stdio;
pub mod tera;
mod wordcount;

use std::collections::BTreeMap;
use std::sync::Arc;

pub use grep::Grep;
pub use invertedindex::InvertedIndex;
pub use sort::Sort;
pub use stdio::streaming_main;
pub use tera::{TeraGen, TeraValidate};
pub use wordcount::WordCount;

use crate::error::{Error, Result};

/// The values of one key, in (map task, position) order.
pub trait Values {
    /// The next value, or `None` when this key has no more.
    fn next_value(&mut self) -> Option<&[u8]>;
}

/// How an app wants its keys partitioned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PartitionKind {
    /// Stable hash of the key mod R.
    Hash,
    /// Ranges sampled from the input, for a total order across part files.
    SampledRanges,
}

/// A native MapReduce job.
pub trait App: Send + Sync {
    /// Map one input line. `input` is the input file's name as the job sees it (the path
    /// relative to its `--input` argument).
    fn map(&self, input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8]));

    /// Reduce all values of `key`; each `emit(k, v)` becomes an output line `k<TAB>v`
    /// (just `k` when `v` is empty).
    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8]));

    /// Whether [`App::combine`] folds values (map-side aggregation).
    fn has_combiner(&self) -> bool {
        false
    }

    /// Fold some values of `key` into fewer; must be associative, and the reducer must accept
    /// its output as values.
    fn combine(&self, _key: &[u8], _values: &mut dyn Values, _emit: &mut dyn FnMut(&[u8])) {}

    /// Whether the combiner sums: its values are decimal integers and [`App::combine`]
    /// emits their sum (as [`sum_values`] reads them). A map then keeps one number per key
    /// instead of the values, and never calls `combine`.
    fn combiner_sums(&self) -> bool {
        false
    }

    /// How keys are partitioned.
    fn partition_kind(&self) -> PartitionKind {
        PartitionKind::Hash
    }

    /// A mapper with a state of its own for each map task, used instead of [`App::map`]
    /// when the app gives one: for a summary of the whole split, or to refuse a bad line.
    fn task_mapper(&self) -> Option<Box<dyn TaskMapper>> {
        None
    }
}

/// A map task's own mapper ([`App::task_mapper`]): it sees the split's lines in order and
/// may emit more when the split ends. An error names what is wrong with the line, and fails
/// the job: another attempt would read the same bytes.
pub trait TaskMapper: Send {
    /// Map one input line, as [`App::map`].
    fn map(
        &mut self,
        input: &[u8],
        line: &[u8],
        emit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> std::result::Result<(), String>;

    /// The split has ended.
    fn finish(&mut self, _emit: &mut dyn FnMut(&[u8], &[u8])) -> std::result::Result<(), String> {
        Ok(())
    }
}

/// Names accepted by `--app`.
pub const APP_NAMES: [&str; 7] = [
    "wordcount",
    "grep",
    "invertedindex",
    "sort",
    "teragen",
    "terasort",
    "teravalidate",
];

/// Build a built-in app from its name and the job's environment.
pub fn by_name(name: &str, env: &BTreeMap<String, String>) -> Result<Arc<dyn App>> {
    Ok(match name {
        "wordcount" => Arc::new(WordCount),
        "invertedindex" => Arc::new(InvertedIndex),
        "sort" => Arc::new(Sort),
        "teragen" => Arc::new(TeraGen),
        "terasort" => Arc::new(Sort),
        "teravalidate" => Arc::new(TeraValidate),
        "grep" => {
            let pattern = env.get("GREP_PATTERN").ok_or_else(|| {
                Error::InvalidSpec("--app grep needs its pattern: --env GREP_PATTERN=REGEX".into())
            })?;
            Arc::new(Grep::new(pattern)?)
        }
        other => {
            return Err(Error::InvalidSpec(format!(
                "unknown --app {other:?}; the built-in apps are {}",
                APP_NAMES.join(", ")
            )))
        }
    })
}

/// C `isspace` over bytes: space, \t, \n, \v, \f, \r.
#[inline]
pub fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// The words of a line: maximal runs of non-`isspace` bytes.
#[inline]
pub fn words(line: &[u8]) -> impl Iterator<Item = &[u8]> {
    line.split(|&b| is_space(b)).filter(|w| !w.is_empty())
}

/// Values parsed as decimal integers and summed; values that do not parse count as zero,
/// and the sum stops at `u64::MAX`.
pub fn sum_values(values: &mut dyn Values) -> u64 {
    let mut total = 0u64;
    while let Some(v) = values.next_value() {
        total = total.saturating_add(parse_u64(v));
    }
    total
}

/// The decimal digits `v` starts with, as a number (0 when none; `u64::MAX` past it).
#[inline]
pub fn parse_u64(v: &[u8]) -> u64 {
    if let [d] = v {
        return if d.is_ascii_digit() {
            u64::from(d - b'0')
        } else {
            0
        };
    }
    v.iter()
        .take_while(|b| b.is_ascii_digit())
        .fold(0u64, |n, &b| {
            n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
        })
}
