//! Where a node keeps data and how data moves between nodes: the object store (input
//! segments, map outputs, parts), `/shoal/data/1` fetch and put, and replication.

pub mod bench;
pub(crate) mod blobs;
pub(crate) mod data;
pub(crate) mod inplace;
pub mod link;
pub(crate) mod replication;
pub(crate) mod serve;
pub mod space;
