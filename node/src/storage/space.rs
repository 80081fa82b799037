//! The free space a node keeps on its data dir (`--min-free-mb`). Under it the node takes
//! no upload (507), no copy of another node's object, and no new task (its heartbeats say
//! so and the manager passes it over); a task that still meets a full disk fails as lost —
//! "disk full on node N" — and runs elsewhere.
//!
//! The invariant: the reserve is checked before bytes are accepted, never after they were
//! half written; a write that meets a full disk anyway is an error with that name, not a
//! corrupt object (objects become visible only once whole).

use std::io;
use std::path::{Path, PathBuf};

/// The reserve of a data dir.
#[derive(Debug, Clone)]
pub struct Reserve {
    dir: PathBuf,
    bytes: u64,
}

/// The data dir has less free space than the reserve.
#[derive(Debug, Clone, thiserror::Error)]
#[error("disk full: {free_mib} MiB free on the data dir, under the {reserve_mib} MiB this node keeps free (--min-free-mb)")]
pub struct DiskFull {
    /// Free MiB.
    pub free_mib: u64,
    /// The reserve, MiB.
    pub reserve_mib: u64,
}

impl Reserve {
    /// Keep `mib` MiB free on the filesystem of `dir`.
    pub fn new(dir: &Path, mib: u64) -> Reserve {
        Reserve {
            dir: dir.to_owned(),
            bytes: mib << 20,
        }
    }

    /// Bytes an unprivileged writer may still use on the data dir's filesystem.
    pub fn free_bytes(&self) -> io::Result<u64> {
        free_bytes(&self.dir)
    }

    /// `Err` when the data dir's free space is under the reserve (or cannot be read).
    pub fn check(&self) -> Result<(), DiskFull> {
        let free = self.free_bytes().unwrap_or(0);
        if free < self.bytes {
            Err(DiskFull {
                free_mib: free >> 20,
                reserve_mib: self.bytes >> 20,
            })
        } else {
            Ok(())
        }
    }
}

/// Free bytes on the filesystem holding `path` (for unprivileged writers).
pub use shoal_jobs::scratch::free_bytes;
