//! # shoal-raft — consensus for Shoal
//!
//! openraft behind a small surface: a type config, a durable log and vote store, a state
//! machine generic over the application's state, and the RPC trait the node implements to
//! reach peers. Nothing here names libp2p or MapReduce.
//!
//! Not built yet: this crate is filled in by the foundation work (log store on redb, the
//! state machine, membership policy).
