//! Landlock, for tasks that run as the node's own user: the file mode bits cannot keep such a
//! task from the node's keys, so the kernel's Landlock LSM does. A ruleset allows every file
//! and directory of the machine except a few paths (the node's data directory, its key
//! files) and what lies beneath them — but for the attempt's own directory. Landlock only
//! allows, so "all but" is built by walking down from `/` along the denied paths: every
//! sibling of each step is allowed whole, the steps themselves only for walking through.
//! (A task cannot list those ancestors — `ls /` fails inside one — and, being confined, it
//! cannot ptrace the node either.)
//!
//! The ruleset is made in the node, per process; the child applies it between fork and exec
//! ([`restrict_self`]).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: libc::c_int = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
/// Every right of the first ABI: executing, reading, writing, listing, making and removing.
const ABI1: u64 = (1 << 13) - 1;
/// Linking or renaming across directories (ABI 2; denied unless handled and granted).
const REFER: u64 = 1 << 13;
/// Truncating (ABI 3).
const TRUNCATE: u64 = 1 << 14;

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
}

#[repr(C, packed)]
struct PathBeneath {
    allowed_access: u64,
    parent_fd: i32,
}

/// The Landlock ABI version this kernel offers; 0 without Landlock.
pub fn abi() -> i64 {
    // SAFETY: the version query takes no pointer.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    v.max(0)
}

/// A ruleset, ready for a child to restrict itself with.
#[derive(Debug)]
pub struct Ruleset {
    fd: OwnedFd,
    all: u64,
    file: u64,
}

impl Ruleset {
    /// Everything but `denied` and what lies beneath them, except `allowed` (which may lie
    /// beneath them). `None` when the kernel has no Landlock.
    pub fn all_but(denied: &[PathBuf], allowed: &[&Path]) -> io::Result<Option<Ruleset>> {
        let abi = abi();
        if abi < 1 {
            return Ok(None);
        }
        let mut all = ABI1;
        let mut file = EXECUTE | WRITE_FILE | READ_FILE;
        if abi >= 2 {
            all |= REFER;
        }
        if abi >= 3 {
            all |= TRUNCATE;
            file |= TRUNCATE;
        }
        let attr = RulesetAttr {
            handled_access_fs: all,
        };
        // SAFETY: `attr` is a valid ruleset attribute of the size passed.
        let fd = unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                std::mem::size_of::<RulesetAttr>(),
                0u32,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: the syscall returned a new descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as RawFd) };
        let rs = Ruleset { fd, all, file };
        if denied.is_empty() {
            rs.allow(Path::new("/"))?;
        } else {
            rs.allow_around(Path::new("/"), denied);
        }
        for a in allowed {
            rs.allow(a)?;
        }
        Ok(Some(rs))
    }

    /// Allow every entry of `dir` but the denied ones, walking into their ancestors.
    fn allow_around(&self, dir: &Path, denied: &[PathBuf]) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if denied.contains(&p) {
                continue;
            }
            if denied.iter().any(|d| d.starts_with(&p)) {
                self.allow_around(&p, denied);
            } else {
                // An entry that vanished or cannot be opened stays out; nothing is lost.
                let _ = self.allow(&p);
            }
        }
    }

    /// Allow `path` and everything beneath it (a file: what a file can be allowed).
    fn allow(&self, path: &Path) -> io::Result<()> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::other("a path with NUL"))?;
        // SAFETY: a valid C string; the descriptor is owned below.
        let raw = unsafe { libc::open(c.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: open returned a new descriptor.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let rule = PathBeneath {
            allowed_access: if is_dir { self.all } else { self.file },
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: `rule` is a valid path-beneath rule; both descriptors are open.
        let r = unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                self.fd.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule as *const PathBeneath,
                0u32,
            )
        };
        if r != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// The descriptor a child restricts itself with.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Confine the calling process (a child between fork and exec) to `ruleset`.
///
/// # Safety
/// Async-signal-safe (two syscalls); `ruleset` must be a Landlock ruleset descriptor.
pub unsafe fn restrict_self(ruleset: RawFd) -> io::Result<()> {
    if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
        return Err(io::Error::last_os_error());
    }
    if libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::process::CommandExt;

    /// A child confined away from `secret`'s directory cannot read it; the rest of the
    /// machine, and its own directory inside, it can.
    #[test]
    fn a_confined_child_reads_all_but_the_denied_paths() {
        if abi() < 1 {
            eprintln!("SKIPPED: this kernel has no Landlock");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let node = dir.path().join("node");
        let own = node.join("attempt");
        std::fs::create_dir_all(&own).unwrap();
        std::fs::write(node.join("secret"), "key").unwrap();
        std::fs::write(own.join("mine"), "mine").unwrap();
        std::fs::write(dir.path().join("beside"), "beside").unwrap();
        let rs = Ruleset::all_but(std::slice::from_ref(&node), &[&own])
            .unwrap()
            .unwrap();
        let fd = rs.fd();
        let cat = |file: &Path| {
            let mut c = std::process::Command::new("cat");
            c.arg(file);
            // SAFETY: restrict_self is async-signal-safe.
            unsafe {
                c.pre_exec(move || restrict_self(fd));
            }
            c.output().unwrap()
        };
        let denied = cat(&node.join("secret"));
        assert!(!denied.status.success());
        assert!(
            String::from_utf8_lossy(&denied.stderr).contains("Permission denied"),
            "{denied:?}"
        );
        assert_eq!(cat(&own.join("mine")).stdout, b"mine");
        assert_eq!(cat(&dir.path().join("beside")).stdout, b"beside");
        assert!(
            cat(Path::new("/etc/hostname")).status.success()
                || !Path::new("/etc/hostname").exists()
        );
    }
}
