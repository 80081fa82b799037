//! The node among its peers: its identity, what it knows of its peers and their heartbeats,
//! proposing commands, forming or joining a cluster, the leader's membership policy, Raft
//! over libp2p and the replicated state Raft applies.

pub(crate) mod bootstrap;
pub(crate) mod identity;
pub(crate) mod membership;
pub mod node;
pub mod rpc;
pub mod state;
