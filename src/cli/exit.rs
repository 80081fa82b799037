//! The exit codes of `shoal`'s client commands, the user's contract (DESIGN.md): 0 success,
//! 1 job failed or killed, 2 bad usage or input rejected, 3 cluster unreachable.

/// Exit code for a job that failed or was killed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code for bad usage or input rejected before anything ran.
pub const EXIT_USAGE: u8 = 2;
/// Exit code when no node of the cluster answered.
pub const EXIT_UNREACHABLE: u8 = 3;
