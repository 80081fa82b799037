//! Faults planted on purpose in a real node process, to show what the node does when one of
//! its own loops dies (tests/it/lifecycle.rs). Off unless `shoal node` is started with the
//! hidden `--plant NAME`; process-wide, since a node is a process.

use std::sync::atomic::{AtomicU8, Ordering};

/// A fault a node can be started with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fault {
    /// The worker loop panics when it is first assigned an attempt.
    WorkerPanic,
}

static PLANTED: AtomicU8 = AtomicU8::new(0);

fn bit(f: Fault) -> u8 {
    1 << f as u8
}

/// Plant `fault` in this process.
pub fn plant(fault: Fault) {
    PLANTED.fetch_or(bit(fault), Ordering::Relaxed);
}

/// Whether `fault` is planted in this process.
pub fn active(fault: Fault) -> bool {
    PLANTED.load(Ordering::Relaxed) & bit(fault) != 0
}
