//! # shoal-node — a Shoal node: the daemon and its HTTP surface
//!
//! Wiring: identity and data dir, Raft over libp2p, the manager and worker loops, the HTTP
//! API. The `shoal` command line (client, demo, benchmarks) lives in the root package.
//!
//! # Layout
//! - [`daemon`]: `shoal node`: start-up, the event dispatcher, shutdown.
//! - [`node`]: a running node and its handlers for what peers send.
//! - [`bootstrap`]: forming a cluster from identical nodes, and joining one.
//! - [`membership`]: the leader's policy: promote learners, keep member records current.
//! - [`manager`]: the manager loop (leader only): plan, propose assignments.
//! - [`worker`]: the worker loop (every node): run assigned attempts, report, clean up.
//! - [`blobs`], [`data`]: the node's object store and `/shoal/data/1` fetch and put.
//! - [`submit`]: `POST /api/v1/jobs`: upload, split, replicate, propose.
//! - [`rpc`]: Raft over libp2p (the raft crate's RPC trait over `shoal_net`).
//! - [`state`]: the replicated cluster state Raft applies.
//! - [`identity`]: the node's persistent keypair and its node id (and how ids are shown).
//! - [`clock`]: milliseconds since the epoch, the job table's time.
//! - [`http_error`]: the HTTP API's `{"error"}` answer.
//! - [`shuffle_bench`]: the data-plane measurement behind `shoal bench shuffle`.
//! - [`sync`]: locks that ignore poisoning, in one place.
//! - [`api`], [`view`], [`jobs_view`]: the HTTP API and the cluster and job views it serves.

pub mod api;
pub mod blobs;
pub mod bootstrap;
pub mod clock;
pub mod daemon;
pub mod data;
pub mod http_error;
pub mod identity;
pub mod jobs_view;
pub mod manager;
pub mod membership;
pub mod metrics;
pub mod node;
pub mod rpc;
pub mod shuffle_bench;
pub mod state;
pub mod submit;
pub mod sync;
pub mod token;
pub mod view;
pub mod worker;
