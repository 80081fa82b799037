//! openraft's type config for Shoal. The invariant: commands and responses are opaque CBOR
//! bytes here — only the application's [`AppState`](crate::AppState) knows their types.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A Raft node id: derived by the node from its libp2p PeerId.
pub type NodeId = u64;

/// What the cluster records about a node: how to reach it and what it serves.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// libp2p PeerId, base58.
    pub peer_id: String,
    /// Multiaddrs it listens on.
    pub addrs: Vec<String>,
    /// Its HTTP API address.
    pub http: String,
}

impl fmt::Display for NodeInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.peer_id)
    }
}

/// A command for the application state, CBOR-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cmd(#[serde(with = "serde_bytes")] pub Vec<u8>);

impl fmt::Display for Cmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "command ({} bytes)", self.0.len())
    }
}

/// The application's response to a command, CBOR-encoded.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reply(#[serde(with = "serde_bytes")] pub Vec<u8>);

openraft::declare_raft_types!(
    /// Shoal's Raft types.
    pub TypeConfig:
        D = Cmd,
        R = Reply,
        NodeId = NodeId,
        Node = NodeInfo,
        AsyncRuntime = Runtime,
        LeaderId = openraft::impls::leader_id_std::LeaderId<u64, NodeId>,
);

// Standard Raft leader ids: at most one leader per term. (openraft's default, "advanced"
// ids, let two candidates both win one term — the simulator's one-leader-per-term invariant
// caught it.)

/// openraft's runtime for Shoal: tokio, with openraft's random choices (election timeouts,
/// tick phases) drawn from a seeded generator. A node seeds it from the OS; the simulator
/// from its run's seed, so the same seed elects the same leaders.
pub type Runtime =
    openraft_rt::deterministic_rng::DeterministicRng<openraft_rt_tokio::TokioRuntime>;

/// openraft's log id for Shoal.
pub type LogId = openraft::alias::LogIdOf<TypeConfig>;
/// openraft's log entry for Shoal.
pub type Entry = openraft::alias::EntryOf<TypeConfig>;
/// openraft's vote for Shoal.
pub type Vote = openraft::alias::VoteOf<TypeConfig>;
/// openraft's stored membership for Shoal.
pub type StoredMembership = openraft::alias::StoredMembershipOf<TypeConfig>;
/// openraft's snapshot metadata for Shoal.
pub type SnapshotMeta = openraft::alias::SnapshotMetaOf<TypeConfig>;
