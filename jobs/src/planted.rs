//! Bugs the simulator plants on purpose, to show that its invariants catch them (in the job
//! table, the scheduler, and the daemon's worker loop that the simulator runs).
//!
//! Each switch is a thread-local flag, off unless the simulator turns it on for the one
//! thread its run lives on, so a planted bug never leaks into another run, a test running
//! beside it, or a node.

use std::cell::Cell;

/// A bug the job table or the scheduler can be made to have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Bug {
    /// A reduce reads the map outputs that exist when it starts, even when a map whose
    /// output was lost is being run again (the bug the simulator found).
    PartialReduceInput,
    /// A finish report is accepted from an attempt that is no longer running.
    FinishAnyAttempt,
    /// A map whose output was lost is never run again.
    NoRerun,
    /// The worker loop's cleanup after a job ends deletes the job's part files with its
    /// scratch (a bug in the daemon's worker loop, which the simulator runs).
    WorkerDeletesParts,
    /// A worker uses a stored copy without comparing it with its recorded checksum (the
    /// simulator's worker, whose reads stand for the daemon's checked ones).
    TrustCorruptCopies,
    /// Proposing gives up after its first refusal instead of retrying through a leader
    /// change (a bug in the membership's proposing, which the simulator runs).
    ProposalGivesUp,
}

thread_local! {
    static PLANTED: Cell<u8> = const { Cell::new(0) };
}

fn bit(bug: Bug) -> u8 {
    1 << bug as u8
}

/// Turn `bug` on or off for this thread.
pub fn set(bug: Bug, on: bool) {
    PLANTED.with(|p| {
        let v = p.get();
        p.set(if on { v | bit(bug) } else { v & !bit(bug) });
    });
}

/// Whether `bug` is planted on this thread.
pub fn active(bug: Bug) -> bool {
    PLANTED.with(|p| p.get() & bit(bug) != 0)
}
