//! Shoal's end-to-end tests, one binary sharing one harness (`common`): real `shoal`
//! processes on loopback, in network namespaces, in cgroups and in a browser. Cluster tests
//! take `common::cluster::one_at_a_time()`, so they run one at a time while the quick ones run
//! beside them. One binary links the product once, where one per file linked it 30 times.
//! Run one file's tests with `cargo test --test it engine::`.

// An end-to-end scenario reads best as one script: `scripts/structure` holds the functions
// of the test directories to 200 lines of code, not clippy's 100.
#![allow(clippy::too_many_lines)]

mod common;
mod peer;

mod adversary;
mod cli;
mod cli_units;
mod cluster;
mod config;
mod containment;
mod dashboard;
mod disk_full;
mod drain;
mod engine;
mod faults;
mod flood;
mod hadoop;
mod http_guard;
mod impostors;
mod integrity;
mod jobs;
mod jobs_deps;
mod jobs_inputs;
mod jobs_more;
mod lifecycle;
mod limits;
mod links;
mod net_units;
mod netns;
mod node_units;
mod readme;
mod remove;
mod scale;
mod sharing;
mod soak;
mod streaming;
mod tera;
mod upgrade;
mod versions;
mod wire_garbage;
