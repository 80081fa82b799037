//! The node library's unit tests, one module per module of `shoal-node` they test. They
//! live in this binary, not in the library (`[lib] test = false` in node/Cargo.toml): a
//! library's own tests compile the whole library a second time, about five minutes of CI.

mod admission;
mod blobs;
mod guard;
mod heartbeats;
mod jobs_view;
mod limits;
mod link;
mod members;
mod membership;
mod pace;
mod peers;
mod ports;
mod pushed;
mod reconcile;
mod refusals;
mod replication;
mod retention;
mod sandbox;
mod space;
mod supervisor;
mod token;
mod work;
