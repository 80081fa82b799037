//! The node among its peers: its identity, what it knows of its peers and their heartbeats,
//! proposing commands, forming or joining a cluster, the leader's membership policy, Raft
//! over libp2p and the replicated state Raft applies.

pub mod admission;
pub mod answers;
pub(crate) mod bootstrap;
mod handlers;
pub(crate) mod health;
pub mod heartbeats;
pub(crate) mod identity;
pub(crate) mod inplace;
pub(crate) mod members;
pub(crate) mod membership;
pub mod node;
pub(crate) mod peers;
pub mod propose;
pub mod pushed;
#[cfg(test)]
mod refusals;
pub mod rpc;
pub mod state;
pub mod workers;
