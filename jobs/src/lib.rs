//! # shoal-jobs — the MapReduce domain
//!
//! Everything a MapReduce job is and does, with no networking and no Raft. Not built yet:
//! the engine work fills it in.
