//! The state of each job's directory on this node (see `jobdir`): whether it is ready, and
//! the flag that stops a setup still running when the job ends.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Each job's directory being made or made on this node.
#[derive(Debug, Default)]
pub struct JobDirs {
    jobs: Mutex<HashMap<String, Arc<JobDirState>>>,
}

/// One job's directory here.
#[derive(Debug, Default)]
pub(crate) struct JobDirState {
    /// Held while the directory is made; `true` once it is ready.
    pub(crate) ready: tokio::sync::Mutex<bool>,
    /// Set when the job ends: a setup still running is stopped. A setup is the job's, not
    /// the attempt's that started it: an attempt superseded meanwhile does not stop it.
    pub(crate) cancel: AtomicBool,
}

impl JobDirs {
    pub(crate) fn state(&self, job: &str) -> Arc<JobDirState> {
        let mut g = self.jobs.lock().unwrap_or_else(|p| p.into_inner());
        Arc::clone(g.entry(job.to_owned()).or_default())
    }

    /// The job has ended here: a setup still running stops, and its directory goes.
    pub fn forget(&self, job: &str) {
        let gone = self
            .jobs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(job);
        if let Some(s) = gone {
            s.cancel.store(true, Ordering::Relaxed);
        }
    }
}
