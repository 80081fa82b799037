//! # shoal-node — a Shoal node and the `shoal` command line
//!
//! Wiring: identity and data dir, Raft over libp2p, the manager and worker loops, the HTTP
//! API, and the CLI that the `shoal` binary calls.
//!
//! # Layout
//! - [`cli`]: the command line (clap derive): parses, builds a config, calls the subcommand.

pub mod cli;
