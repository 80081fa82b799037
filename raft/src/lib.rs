//! # shoal-raft — consensus for Shoal
//!
//! openraft behind a small surface. A Shoal node's replicated state is an application state
//! `S: AppState` (the MapReduce cluster table, in the node); every change to it is a command
//! proposed to the Raft leader, appended to a durable log on a majority, then applied in log
//! order on every node. The leader is the manager. When it dies, the next leader has every
//! committed command, so it knows everything the old one knew.
//!
//! Nothing here names libp2p or MapReduce: commands and responses travel as CBOR bytes, and
//! Raft RPCs leave this crate through the [`RaftRpc`] trait that the node implements over its
//! transport (libp2p in production, an in-memory router in the simulator).
//!
//! # Layout
//! - [`types`]: the openraft type config, the node record ([`NodeInfo`]) and the opaque
//!   command/response wrappers.
//! - [`store`]: the redb file: the log and vote store (openraft's `RaftLogStorage`), the
//!   persisted snapshot, and a small metadata table for the node (its cluster id).
//! - [`state_machine`]: the state machine generic over [`AppState`]; snapshots are the CBOR
//!   of the state.
//! - [`network`]: the [`RaftRpc`] trait, openraft's network adapter on top of it, and
//!   [`network::handle_rpc`] for inbound RPCs.
//!
//! The invariant: the log and vote are on disk before openraft is told they are (redb
//! commits with immediate durability), and the state machine is only ever the result of
//! applying the committed log in order, from the last persisted snapshot.

pub mod network;
pub mod planted;
pub mod state_machine;
pub mod store;
pub mod types;

use std::sync::Arc;

pub use network::{handle_rpc, Inbound, RaftRpc, RpcError, RpcKind};
pub use state_machine::{apply_caught, AppState, Applied, StateMachine};
pub use store::{LogStore, Store, StoreError};
pub use types::{Cmd, NodeId, NodeInfo, Reply, TypeConfig};

/// A Raft node over application state `S`.
pub type Raft<S> = openraft::Raft<TypeConfig, StateMachine<S>>;

/// Raft timing (milliseconds).
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    /// Leader heartbeat interval.
    pub heartbeat_ms: u64,
    /// Election timeout, lower bound.
    pub election_min_ms: u64,
    /// Election timeout, upper bound.
    pub election_max_ms: u64,
    /// Take a snapshot every this many applied entries.
    pub snapshot_every: u64,
    /// Log entries kept behind a snapshot (a follower further behind gets the snapshot).
    pub keep_behind_snapshot: u64,
}

impl Default for Timing {
    fn default() -> Self {
        Timing {
            heartbeat_ms: 100,
            election_min_ms: 300,
            election_max_ms: 400,
            snapshot_every: 5000,
            keep_behind_snapshot: 1000,
        }
    }
}

/// Errors starting Raft.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Bad timing values.
    #[error("invalid Raft timing: {0}")]
    Config(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// openraft refused to start.
    #[error("raft failed to start: {0}")]
    Fatal(String),
}

/// Start Raft node `id` over `store`, reaching peers through `rpc`; `seed` seeds every
/// random choice openraft makes (a node passes one from the OS, the simulator its run's).
/// Returns the Raft handle and a handle on the applied state.
pub async fn start<S: AppState, R: RaftRpc>(
    id: NodeId,
    store: &Store,
    timing: Timing,
    rpc: R,
    seed: u64,
) -> Result<(Raft<S>, Arc<std::sync::RwLock<Applied<S>>>), StartError> {
    // openraft's tasks inherit the seed from the task that creates them: this one.
    types::Runtime::scope(seed, start_seeded(id, store, timing, rpc)).await
}

async fn start_seeded<S: AppState, R: RaftRpc>(
    id: NodeId,
    store: &Store,
    timing: Timing,
    rpc: R,
) -> Result<(Raft<S>, Arc<std::sync::RwLock<Applied<S>>>), StartError> {
    let config = openraft::Config {
        cluster_name: "shoal".into(),
        heartbeat_interval: timing.heartbeat_ms,
        election_timeout_min: timing.election_min_ms,
        election_timeout_max: timing.election_max_ms,
        snapshot_policy: openraft::SnapshotPolicy::LogsSinceLast(timing.snapshot_every.max(1)),
        max_in_snapshot_log_to_keep: timing.keep_behind_snapshot,
        ..Default::default()
    };
    let config = Arc::new(
        config
            .validate()
            .map_err(|e| StartError::Config(e.to_string()))?,
    );
    let sm = StateMachine::<S>::open(store.clone())?;
    let applied = sm.applied();
    let raft = Raft::new(
        id,
        config,
        network::Factory::new(rpc),
        store.log_store(),
        sm,
    )
    .await
    .map_err(|e| StartError::Fatal(e.to_string()))?;
    Ok((raft, applied))
}

/// Raft's metrics as they are now: role, term, leader, membership, applied position.
pub fn metrics<S: AppState>(raft: &Raft<S>) -> Metrics {
    use openraft::async_runtime::watch::WatchReceiver;
    raft.metrics().borrow_watched().clone()
}

/// openraft's metrics for Shoal.
pub type Metrics = openraft::RaftMetrics<TypeConfig>;
/// A receiver of metrics changes (`raft.metrics()`).
pub type MetricsWatch = openraft::alias::WatchReceiverOf<TypeConfig, Metrics>;
pub use openraft::async_runtime::watch::WatchReceiver;
pub use openraft::{ChangeMembers, ServerState};
