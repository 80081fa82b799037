//! # shoal-node — a Shoal node and the `shoal` command line
//!
//! Wiring: identity and data dir, Raft over libp2p, the manager and worker loops, the HTTP
//! API, and the CLI that the `shoal` binary calls.
//!
//! # Layout
//! - [`bench`](mod@bench): `shoal bench`, benchmarks that print figures.
//! - [`corpus`]: the seeded English-like corpus of benchmarks and the demo.
//! - [`demo`]: `shoal demo`, the README's main command.
//! - [`daemon`]: `shoal node`: start-up, the event dispatcher, shutdown.
//! - [`node`]: a running node and its handlers for what peers send.
//! - [`bootstrap`]: forming a cluster from identical nodes, and joining one.
//! - [`membership`]: the leader's policy: promote learners, keep member records current.
//! - [`manager`]: the manager loop (leader only): plan, propose assignments.
//! - [`worker`]: the worker loop (every node): run assigned attempts, report, clean up.
//! - [`blobs`], [`data`]: the node's object store and `/shoal/data/1` fetch and put.
//! - [`submit`]: `POST /api/v1/jobs`: upload, split, replicate, propose.
//! - [`client`]: `shoal submit`, `status JOB`, `jobs`, `output`, `kill`.
//! - [`rpc`]: Raft over libp2p (the raft crate's RPC trait over `shoal_net`).
//! - [`state`]: the replicated cluster state Raft applies.
//! - [`local_cluster`]: child-process clusters on loopback for `shoal demo` and benches.
//! - [`identity`]: the node's persistent keypair and its node id (and how ids are shown).
//! - [`clock`]: milliseconds since the epoch, the job table's time.
//! - [`exit`]: the client commands' exit codes.
//! - [`http_error`]: the HTTP API's `{"error"}` answer.
//! - [`sync`]: locks that ignore poisoning, in one place.
//! - [`api`], [`view`], [`jobs_view`]: the HTTP API and the cluster and job views it serves.
//! - [`status`]: `shoal status` and `shoal keygen`.
//! - [`cli`]: the command line (clap derive): parses, builds a config, calls the subcommand.
//! - [`jobargs`]: the job flags shared by `shoal run` and `shoal submit`, into a `JobSpec`.
//! - [`run`]: `shoal run`, a whole job in one process through `shoal_jobs::local`.

pub mod api;
pub mod bench;
pub mod blobs;
pub mod bootstrap;
pub mod cli;
pub mod client;
pub mod clock;
pub mod corpus;
pub mod daemon;
pub mod data;
pub mod demo;
pub mod exit;
pub mod http_error;
pub mod identity;
pub mod jobargs;
pub mod jobs_view;
pub mod local_cluster;
pub mod manager;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod run;
pub mod state;
pub mod status;
pub mod submit;
pub mod sync;
pub mod token;
pub mod view;
pub mod worker;
