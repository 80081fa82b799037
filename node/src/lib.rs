//! # shoal-node — a Shoal node: the daemon and its HTTP surface
//!
//! Wiring: identity and data dir, Raft over libp2p, the manager and worker loops, the object
//! store and data plane, the HTTP API. The `shoal` command line (client, demo, benchmarks)
//! lives in the root package.
//!
//! # Rooms
//! - [`daemon`]: `shoal node`: start-up, the event dispatcher, shutdown.
//! - [`flags`]: `shoal node`'s flags, the user's contract.
//! - [`cluster`]: the node among its peers: identity, peers and heartbeats, proposing,
//!   bootstrap, membership, Raft over libp2p, the replicated state.
//! - [`control`]: the manager loop (leader only) and the worker loop with its attempts.
//! - [`storage`]: the object store, the data plane (`/shoal/data/1`) and replication.
//! - [`http`]: the HTTP API: router, token, submit, the views it serves, metrics, the
//!   dashboard.
//! - [`ports`]: the ports a node takes on its machine (`--local`, no shared p2p port).
//! - `supervisor`: the node's loops; one that dies stops the node.
//! - `clock`, [`sync`], `planted`: the job table's time; locks that ignore poisoning; faults
//!   planted on purpose for tests.
//!
//! Modules are private unless the root package or the simulator uses them.

mod clock;
pub mod cluster;
pub mod control;
pub mod daemon;
pub mod flags;
pub mod http;
mod planted;
pub mod ports;
pub mod sandbox;
pub mod storage;
pub mod supervisor;
pub mod sync;
mod usage;
mod wiring;
