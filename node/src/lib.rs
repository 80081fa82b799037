//! # shoal-node — a Shoal node and the `shoal` command line
//!
//! Wiring: identity and data dir, Raft over libp2p, the manager and worker loops, the HTTP
//! API, and the CLI that the `shoal` binary calls.
//!
//! # Layout
//! - [`bench`]: `shoal bench`, benchmarks that print figures.
//! - [`corpus`]: the seeded English-like corpus of benchmarks and the demo.
//! - [`cli`]: the command line (clap derive): parses, builds a config, calls the subcommand.
//! - [`jobargs`]: the job flags shared by `shoal run` and `shoal submit`, into a `JobSpec`.
//! - [`run`]: `shoal run`, a whole job in one process through `shoal_jobs::local`.

pub mod bench;
pub mod cli;
pub mod corpus;
pub mod jobargs;
pub mod run;
