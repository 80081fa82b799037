//! # shoal — MapReduce on a cluster of identical nodes
//!
//! The public facade for native jobs. Not built yet: the engine work fills it in.
