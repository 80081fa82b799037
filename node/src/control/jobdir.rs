//! A job's directory on this node (`--archive`, `--setup`): made before the job's first
//! attempt here — each archive fetched into the store (known by its SHA-256, so one copy
//! serves every job that ships it), checked, unpacked, then the setup run — and shared by
//! every later attempt of the job here. Attempts that start while it is being made wait for
//! it; a setup that fails leaves nothing, so the next attempt here runs it afresh.
//!
//! Where things are: archives at `archives/SHA256` in the store, kept while a job in the
//! table names them; job directories beside attempt directories (`JOB.job`), removed when
//! the job ends (a restart sweeps them, and a restarted node runs the setup again); setup
//! output in the job's `logs/setup.log`, kept until the job is forgotten.

use std::path::PathBuf;
use std::sync::Arc;

use shoal_jobs::archive::{ArchiveRef, Hasher};
use tracing::{info, warn};

use crate::cluster::members::peer_of;
use crate::control::work::{Failure, Work};
use crate::control::Control;
use crate::storage::blobs::setup_log_key;

/// The store key of the archive with `digest`.
pub fn archive_key(digest: &str) -> String {
    format!("{ARCHIVES}/{digest}")
}

/// The store's directory of archives.
pub const ARCHIVES: &str = "archives";

/// Where the directory of `job` is on this ctl.node.
pub fn job_dir(ctl: &Control, job: &str) -> PathBuf {
    ctl.store.blobs.scratch().path(&format!("{job}.job"))
}

/// The job's directory, made first when this is the job's first attempt here. `None`: the
/// job needs none.
pub async fn ensure(ctl: &Arc<Control>, w: &Work) -> Result<Option<PathBuf>, Failure> {
    let spec = Arc::clone(&w.spec);
    if spec.archives.is_empty() && spec.setup.is_none() {
        return Ok(None);
    }
    let job = w.key.job.clone();
    let dir = job_dir(ctl, &job);
    let state = ctl.job_dirs.state(&job);
    let mut ready = state.ready.lock().await;
    if *ready {
        return Ok(Some(dir));
    }
    let mut files = Vec::with_capacity(spec.archives.len());
    for a in &spec.archives {
        files.push(ensure_archive(ctl, a).await?);
    }
    let log = ctl
        .store
        .blobs
        .path(&setup_log_key(&job))
        .ok_or("a malformed job id")?;
    if let Some(parent) = log.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("creating {}: {e}", parent.display()))?;
    }
    // Appended to: every run of the setup here (a failed one, then another) stays in it.
    let (node2, st2, dir2) = (Arc::clone(ctl), Arc::clone(&state), dir.clone());
    let context = format!("node {:016x}", ctl.node.id);
    // Off the runtime, beside the task pool: a setup is not one of the node's task slots.
    let made = tokio::task::spawn_blocking(move || {
        let sandbox = &node2.node.settings.sandbox;
        let user = sandbox
            .user_for(&job)
            .map_err(|e| Failure::from(format!("choosing the job's task user: {e}")))?;
        let pairs: Vec<(PathBuf, &ArchiveRef)> = files.into_iter().zip(&spec.archives).collect();
        let keep_free = node2.node.settings.min_free_mb << 20;
        let r = shoal_jobs::jobdir::unpack_archives(&dir2, &pairs, user.as_ref(), keep_free)
            .and_then(|()| {
                shoal_jobs::jobdir::run_setup(
                    &spec,
                    &job,
                    &dir2,
                    Some(&log),
                    &st2.cancel,
                    (Some(sandbox), user.as_ref()),
                    context,
                )
                .map_err(shoal_jobs::jobdir::setup_failed)
            });
        if r.is_err() {
            let _ = std::fs::remove_dir_all(&dir2);
        }
        r.map_err(Failure::from)
    })
    .await
    .map_err(|e| format!("the setup's thread failed: {e}"))?;
    made?;
    *ready = true;
    info!(job = %w.key.job, dir = %dir.display(), "the job's directory is ready here");
    if w.spec.setup.is_some() {
        // Counted in the table (`setup_runs`), once per node, whatever becomes of the
        // attempt that waited for it.
        let cmd = crate::cluster::state::Command::Jobs(shoal_jobs::cluster::Command::SetupRan {
            job: w.key.job.clone(),
            node: ctl.node.id,
        });
        let ctl = Arc::clone(ctl);
        tokio::spawn(async move {
            if let Err(e) = ctl
                .node
                .propose(&cmd, std::time::Duration::from_secs(30))
                .await
            {
                warn!(error = %e, "reporting the setup's run failed");
            }
        });
    }
    Ok(Some(dir))
}

/// This node's copy of archive `a`, fetched from a holder when it has none; a copy whose
/// SHA-256 is not the archive's is passed over (and a fetched one never stored).
async fn ensure_archive(ctl: &Control, a: &ArchiveRef) -> Result<PathBuf, Failure> {
    let key = archive_key(&a.digest);
    // The table's digest was checked at submission, but a table entry is not trusted to be
    // well-formed here: a short or odd one is shown whole.
    let short = a.digest.get(..12).unwrap_or(&a.digest);
    let what = format!("archive {} ({short})", a.name);
    let path = ctl
        .store
        .blobs
        .path(&key)
        .ok_or("a malformed archive digest")?;
    if ctl.store.blobs.contains(&key) {
        let p = path.clone();
        let sum = tokio::task::spawn_blocking(move || shoal_jobs::archive::digest_file(&p))
            .await
            .map_err(|e| e.to_string())?;
        match sum {
            Ok((d, _)) if d == a.digest => return Ok(path),
            Ok((d, _)) => {
                warn!(%what, found = %d, "a stored archive is corrupt; fetching another copy");
                let _ = std::fs::remove_file(&path);
            }
            Err(e) => {
                warn!(%what, error = %e, "a stored archive is unreadable; fetching another copy")
            }
        }
    }
    let mut last = "no node holds it".to_string();
    for &h in a.holders.iter().filter(|&&h| h != ctl.node.id) {
        let Some(peer) = peer_of(&ctl.node, h) else {
            continue;
        };
        let mut w = ctl
            .store
            .blobs
            .create(&key)
            .map_err(|e| format!("storing {what}: {e}"))?;
        let piece = shoal_net::wire::Piece {
            key: key.clone(),
            offset: 0,
            len: a.len,
        };
        let mut hashing = Hashing {
            inner: &mut w,
            hasher: Hasher::default(),
        };
        let fetched =
            crate::storage::data::fetch_range(&ctl.store, peer, &piece, &mut hashing).await;
        let (digest, _) = hashing.hasher.finish();
        match fetched {
            Ok(_) if digest == a.digest => {
                w.commit().map_err(|e| format!("storing {what}: {e}"))?;
                return Ok(path);
            }
            Ok(_) => {
                w.abort();
                last = format!("the copy on node {h:016x} is corrupt (SHA-256 {digest})");
                warn!(%what, error = %last, "a fetched archive is unusable; trying another holder");
            }
            Err(e) => {
                w.abort();
                last = e.to_string();
            }
        }
    }
    Err(Failure::from(format!(
        "{what} could not be fetched: {last}"
    )))
}

/// A writer that takes the SHA-256 of what passes through it.
struct Hashing<'a, W> {
    inner: &'a mut W,
    hasher: Hasher,
}

impl<W: std::io::Write> std::io::Write for Hashing<'_, W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

/// Remove the stored archives no job in the table names (a job was forgotten). Returns
/// the bytes freed.
pub fn remove_unused_archives(ctl: &Control, named: &[String]) -> u64 {
    let Some(dir) = ctl.store.blobs.path(ARCHIVES) else {
        return 0;
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return 0;
    };
    let mut freed = 0;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || named.contains(&name) {
            continue;
        }
        let len = e.metadata().map(|m| m.len()).unwrap_or(0);
        if std::fs::remove_file(e.path()).is_ok() {
            freed += len;
        }
    }
    freed
}
