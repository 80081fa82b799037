//! The engine's error type. Messages name what a user can act on: the file, the task, the
//! attempt, the exit status and the tail of stderr.

use std::path::PathBuf;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The job spec is not runnable; the message names the culprit.
    #[error("{0}")]
    InvalidSpec(String),
    /// An input path does not exist or cannot be read.
    #[error("input {path}: {source}")]
    Input {
        /// The path as the user gave it.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line longer than the maximum record size.
    #[error("{file}: line at byte offset {offset} is longer than the maximum record size of {max} bytes")]
    RecordTooLong {
        /// Input file.
        file: String,
        /// Byte offset where the line starts.
        offset: u64,
        /// The limit.
        max: u64,
    },
    /// A native app refused an input line.
    #[error("{file}: the line at byte offset {offset}: {reason}")]
    BadRecord {
        /// Input file.
        file: String,
        /// Byte offset where the line starts.
        offset: u64,
        /// What the app said.
        reason: String,
    },
    /// A task failed for good (the job-level reason).
    #[error("{0}")]
    TaskFailed(String),
    /// A user's mapper, reducer or combiner failed this attempt: how it ended, and the tail
    /// of its stderr.
    #[error("{message}{}", tail_suffix(.stderr_tail))]
    Program {
        /// What happened, naming the program, the task and the attempt.
        message: String,
        /// How it ended; none when it could not start.
        exit: Option<Ended>,
        /// Its last lines of stderr (empty when it wrote none).
        stderr_tail: String,
    },
    /// An I/O error with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// Intermediate data that does not decode (a corrupt run file or batch).
    #[error("corrupt intermediate data: {0}")]
    Corrupt(String),
    /// The job was cancelled.
    #[error("cancelled")]
    Cancelled,
}

/// How a program ended, as a type; its `Display` is what a report says (`exit 3`,
/// `signal 9 (SIGKILL)`, `timeout 600 s`, `killed: …`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ended {
    /// It exited with this status.
    Exit(i32),
    /// This signal killed it (its number and name).
    Signal(i32, &'static str),
    /// It was killed after this many seconds without progress.
    Timeout(u64),
    /// The memory controller killed it; what the controller said.
    OutOfMemory(String),
    /// It ended without a status or a signal.
    Unknown,
}

impl std::fmt::Display for Ended {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Ended::Exit(code) => write!(f, "exit {code}"),
            Ended::Signal(sig, name) => write!(f, "signal {sig} ({name})"),
            Ended::Timeout(secs) => write!(f, "timeout {secs} s"),
            Ended::OutOfMemory(what) => write!(f, "killed: {what}"),
            Ended::Unknown => f.write_str("unknown"),
        }
    }
}

impl Error {
    /// Whether the disk (or its quota) was full: the node's fault, not the task's.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } | Error::Input { source, .. } => is_disk_full(source),
            _ => false,
        }
    }
}

/// Whether an I/O error says the disk or the quota is full (ENOSPC, EDQUOT).
pub fn is_disk_full(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
    )
}

fn tail_suffix(tail: &str) -> String {
    if tail.is_empty() {
        String::new()
    } else {
        format!("; last stderr:\n{tail}")
    }
}

impl Error {
    /// An I/O error with the action and path that failed.
    pub fn io(what: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }
}

/// Attach "what was being done" to an I/O result.
pub(crate) trait IoContext<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::io(what(), e))
    }
}
