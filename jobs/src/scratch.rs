//! Where attempts run, and who may touch what there. A node keeps one scratch root; each
//! attempt gets a directory of its own under it, in two halves:
//!
//! ```text
//! ROOT/                      the node's, 0711: crossed by tasks, listed by none
//!   JOB.m-00003.a1.3f9c…/    the node's, 0711 (the suffix is keyed: no task can guess it)
//!     work/                  the node's, 0700: spills, sort runs, fetched map outputs
//!     task/                  the task user's, 0700: the task's working directory, HOME,
//!       tmp/                 TMPDIR, the shipped files
//! ```
//!
//! The invariant: the node never opens a path a task controls. What the node writes for an
//! attempt goes into `work/`, which no task process can write (another user's 0700
//! directory as root; outside its Landlock rules otherwise), or into `task/` before the task
//! user is given it, each file created new (`O_EXCL`, `O_NOFOLLOW`). A job's directory
//! (archives, setup) is made the same way: unpacked by the node, then given to the job's
//! user.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use sha2::Digest;

use crate::error::{IoContext, Result};
use crate::spec::ShippedFile;
use crate::users::TaskUser;

/// The node's scratch root: attempt and job directories under names no task can guess.
/// Clones share the key, so they name the same directories.
#[derive(Debug, Clone)]
pub struct Scratch {
    root: PathBuf,
    key: [u8; 32],
}

impl Scratch {
    /// A scratch root at `root`, made if missing; others may cross it, not list it (0711).
    /// Names under it are keyed with a secret of this process.
    pub fn open(root: PathBuf) -> io::Result<Scratch> {
        std::fs::create_dir_all(&root)?;
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o711))?;
        Ok(Scratch {
            root,
            key: rand::random(),
        })
    }

    /// The root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where `name` (`JOB.m-00003.a1`, `JOB.job`) lives under the root: the name, then 16
    /// hex digits of a keyed SHA-256 of it, so a task that knows another job's id still
    /// cannot name its directories.
    pub fn path(&self, name: &str) -> PathBuf {
        let mut h = sha2::Sha256::new();
        h.update(self.key);
        h.update(name.as_bytes());
        let digest = h.finalize();
        let suffix: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        self.root.join(format!("{name}.{suffix}"))
    }

    /// Fresh directories for attempt `name` (what a previous process left under that name
    /// is removed first).
    pub fn attempt(&self, name: &str) -> io::Result<AttemptDirs> {
        AttemptDirs::make(self.path(name))
    }
}

/// An attempt's directories: the node's half and the task's.
#[derive(Debug)]
pub struct AttemptDirs {
    top: PathBuf,
    /// The node's own files for the attempt; no task process can reach it.
    pub work: PathBuf,
    /// The task's working directory (with `tmp/`), the node's until [`prepare_dir`]
    /// gives it to the task user.
    pub task: PathBuf,
}

impl AttemptDirs {
    /// Make `top` afresh with its `work/`, `task/` and `task/tmp/` (and the directories
    /// above it that are missing).
    pub fn make(top: PathBuf) -> io::Result<AttemptDirs> {
        fresh_dir(&top, 0o711)?;
        let dirs = AttemptDirs {
            work: top.join("work"),
            task: top.join("task"),
            top,
        };
        new_dir(&dirs.work, 0o700)?;
        new_dir(&dirs.task, 0o700)?;
        new_dir(&dirs.task.join("tmp"), 0o700)?;
        Ok(dirs)
    }

    /// Remove them, whatever is in them.
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.top);
    }
}

/// Make directory `dir` with `mode`, empty: what was there under its name goes first, and
/// the directories above it that are missing are made.
pub fn fresh_dir(dir: &Path, mode: u32) -> io::Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    if let Some(up) = dir.parent() {
        std::fs::create_dir_all(up)?;
    }
    new_dir(dir, mode)
}

/// Make directory `dir`, which must not exist yet, with `mode` (whatever the umask).
pub fn new_dir(dir: &Path, mode: u32) -> io::Result<()> {
    std::fs::DirBuilder::new().mode(mode).create(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
}

/// Create file `path` for writing, new: an existing name — a file, a hard link, a symbolic
/// link or a FIFO someone planted — fails it rather than being written through.
pub fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
}

/// Create file `path` afresh in a directory only the node may write: whatever was there
/// under that name is removed first, and a name planted between the two fails the create.
pub fn replace(path: &Path, mode: u32) -> io::Result<File> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    create_new(path, mode)
}

/// Free bytes on the filesystem holding `path`, for writers without root's reserve.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `s` is plain data that statvfs fills in.
    let mut s: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `s` a writable statvfs.
    if unsafe { libc::statvfs(c.as_ptr(), &mut s) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(s.f_bavail as u64 * s.f_frsize as u64)
}

/// Give directory `dir`, which the node made with its `tmp/` and the task has never seen,
/// to `user`, both (not following a link).
pub fn give(dir: &Path, user: Option<&TaskUser>) -> io::Result<()> {
    let Some(u) = user else { return Ok(()) };
    for d in [dir.to_path_buf(), dir.join("tmp")] {
        std::os::unix::fs::lchown(&d, Some(u.uid), Some(u.gid))?;
    }
    Ok(())
}

/// Fill a task's directory, fresh from [`AttemptDirs`] and still the node's:
/// the job's shipped files (each created new, the node's and readable), a link to each entry
/// of the job's directory, and only then, with a task user, the directory and its `tmp` given
/// to that user — so nothing the node writes there goes through a name a task planted.
pub fn prepare_dir(
    dir: &Path,
    files: &[ShippedFile],
    job_dir: Option<&Path>,
    user: Option<&TaskUser>,
) -> Result<()> {
    for f in files {
        let p = dir.join(&f.name);
        let mode = if f.executable || f.bytes.starts_with(b"#!") {
            0o755
        } else {
            0o644
        };
        let mut file = create_new(&p, mode).ctx(|| format!("creating {}", p.display()))?;
        file.write_all(&f.bytes)
            .ctx(|| format!("writing {}", p.display()))?;
        // The mode whatever the umask.
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .ctx(|| format!("chmod {}", p.display()))?;
    }
    if let Some(d) = job_dir {
        link_into(dir, d)?;
    }
    give(dir, user).ctx(|| {
        format!(
            "giving {} to the task user {}",
            dir.display(),
            user.map_or("", |u| u.name.as_str())
        )
    })
}

/// Give attempt directory `attempt` a link to each entry of the job's directory `job_dir`
/// (but its `tmp` and hidden entries); a shipped file of the same name wins.
pub fn link_into(attempt: &Path, job_dir: &Path) -> Result<()> {
    // Links name absolute paths: a relative one would be read from the attempt directory.
    let job_dir =
        &std::path::absolute(job_dir).ctx(|| format!("resolving {}", job_dir.display()))?;
    let entries = std::fs::read_dir(job_dir).ctx(|| format!("listing {}", job_dir.display()))?;
    for e in entries {
        let e = e.ctx(|| format!("listing {}", job_dir.display()))?;
        let name = e.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') || text == "tmp" {
            continue;
        }
        let link = attempt.join(&name);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), &link)
            .ctx(|| format!("linking {} into {}", text, attempt.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn names_are_keyed_and_halves_have_their_modes() {
        let d = tempfile::tempdir().unwrap();
        let a = Scratch::open(d.path().join("s")).unwrap();
        let b = Scratch::open(d.path().join("s")).unwrap();
        assert_ne!(a.path("j-1.m-00000.a1"), b.path("j-1.m-00000.a1"));
        assert_eq!(a.path("j-1.job"), a.path("j-1.job"));
        let dirs = a.attempt("j-1.m-00000.a1").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(a.root()), 0o711);
        assert_eq!(mode(&dirs.top), 0o711);
        assert_eq!(mode(&dirs.work), 0o700);
        assert_eq!(mode(&dirs.task), 0o700);
        std::fs::write(dirs.work.join("left"), b"x").unwrap();
        let again = a.attempt("j-1.m-00000.a1").unwrap();
        assert!(!again.work.join("left").exists(), "made afresh");
        again.remove();
        assert!(!again.top.exists());
    }

    #[test]
    fn a_planted_name_is_never_written_through() {
        let d = tempfile::tempdir().unwrap();
        let target = d.path().join("target");
        std::fs::write(&target, b"precious").unwrap();
        let link = d.path().join("spill-0000");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        assert!(create_new(&link, 0o600).is_err());
        let hard = d.path().join("spill-0001");
        std::fs::hard_link(&target, &hard).unwrap();
        assert!(create_new(&hard, 0o600).is_err());
        let fifo = d.path().join("spill-0002");
        let c = std::ffi::CString::new(fifo.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a plain syscall with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        assert!(create_new(&fifo, 0o600).is_err());
        assert_eq!(std::fs::read(&target).unwrap(), b"precious");
    }
}
