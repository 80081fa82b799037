//! # shoal — MapReduce on a cluster of identical nodes
//!
//! The public facade for native jobs. Implement [`prelude::App`]; then either run it as a
//! streaming executable with [`streaming_main`] (ship it with `--file`, run it with
//! `--map 'myjob map' --reduce 'myjob reduce'`), or use a built-in app with `--app NAME`.
//! `examples/wordlengths.rs` is a complete job.

/// What a native job needs: the [`App`](prelude::App) trait and the built-in apps.
pub mod prelude {
    pub use shoal_jobs::apps::*;
}

pub use shoal_jobs::apps::streaming_main;

// The `shoal` command line, the demo and the benchmarks: the binary's code, public for the
// end-to-end tests (which drive the same local clusters as the demo).
#[doc(hidden)]
pub mod bench;
#[doc(hidden)]
pub mod cli;
#[doc(hidden)]
pub mod demo;
#[doc(hidden)]
pub mod show;
