//! # shoal-jobs — the MapReduce domain
//!
//! Everything a MapReduce job is and does, with no networking and no Raft: the distributed
//! node runs these very units on every machine, and `shoal run` drives them on local threads.
//!
//! # Layout
//! - [`spec`]: the job spec (inputs, mapper, reducer, R, budgets, limits) and its validation.
//! - [`split`]: cutting inputs into line-aligned splits.
//! - [`checksum`]: CRC32C of stored objects, taken by their writer and checked by readers.
//! - [`compress`]: compressed input (`.gz`, `.bz2`, `.zst`, `.xz`) and `--compress-output`.
//! - [`inplace`]: `node:` and `shared:` inputs, read where they lie under `--input-root`.
//! - [`record`]: the on-disk record format of intermediate data (length-prefixed key/value).
//! - [`keys`]: key fields, partition fields and sort specs of streaming map output.
//! - [`partition`]: the stable key hash and the partitioners (hash, sampled ranges).
//! - [`sort`]: the in-memory sort buffer, spills to sorted runs, and the k-way merge.
//! - [`archive`]: `--archive` files as a spec names them (name, SHA-256, size).
//! - [`unpack`]: unpacking an archive into a job's directory, bounded and contained.
//! - [`streaming`]: running an external mapper/reducer under the Hadoop Streaming contract.
//! - [`scratch`]: attempt directories, the node's half and the task's, under unguessable names.
//! - [`users`]: whom tasks run as: a named user, or a uid of each job's own as root.
//! - [`apps`]: the native [`apps::App`] trait and the built-in apps.
//! - [`task`]: the per-task units: a map task over one split, a reduce task over sorted runs.
//! - [`planted`]: bugs the simulator plants to show its invariants fire (off elsewhere).
//! - [`pool`]: the task pool that runs user code away from any async runtime.
//! - [`cluster`]: the replicated job table (jobs, tasks, attempts) and its commands.
//! - [`scheduler`]: the manager's pure `plan(&Cluster, nodes, now) -> Vec<Command>`.
//! - [`local`]: the one-process driver behind `shoal run`.
//! - [`counters`]: job counters (built-in and `reporter:counter:` lines).
//! - [`error`]: the error type.
//!
//! The invariant every module keeps: a record's key and value are bytes. Nothing here
//! assumes UTF-8, and reducer input is ordered by key bytes, then by (map task, position).

pub mod apps;
pub mod archive;
pub mod checksum;
pub mod cluster;
pub mod compress;
pub mod counters;
pub mod error;
pub mod inplace;
pub mod jobdir;
pub mod keys;
pub mod landlock;
pub mod line;
pub mod local;
pub mod partition;
pub mod pipes;
pub mod planted;
pub mod pool;
pub mod record;
pub mod sandbox;
pub mod scheduler;
pub mod scratch;
pub mod sort;
pub mod spec;
pub mod split;
mod stderr;
pub mod streaming;
pub mod task;
pub mod tasklog;
pub mod unpack;
pub mod users;

pub use counters::Counters;
pub use error::{Ended, Error, Result};
pub use spec::JobSpec;
