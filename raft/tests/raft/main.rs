//! Raft's tests in one binary (each file once was one): the storage conformance suite,
//! entries bigger than a frame, and RPCs in another node's name.

mod apply;
mod big_entries;
mod common;
mod conformance;
mod impersonation;
