//! The node among its peers: its identity, what it knows of its peers and their heartbeats,
//! proposing commands, forming or joining a cluster, the leader's membership policy, Raft
//! over libp2p and the replicated state Raft applies.

pub mod admission;
pub mod answers;
pub(crate) mod bootstrap;
mod handlers;
pub(crate) mod health;
pub mod heartbeats;
pub mod identity;
pub(crate) mod inplace;
pub mod members;
pub mod membership;
pub mod node;
pub mod pace;
pub mod peers;
pub mod propose;
pub mod pushed;
pub mod rpc;
pub mod state;
pub mod workers;
