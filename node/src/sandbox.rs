//! The node's side of task containment (the mechanisms are `shoal_jobs::sandbox`): whom its
//! tasks run as, which of its directories they may cross on the way to their attempt
//! directory (without listing or reading them), and their cgroups.
//!
//! The invariant: a task process can read nothing the node keeps but its own attempt
//! directory and the job's shipped files — as another user when the node runs as root, by
//! Landlock when it runs as the node's user. Without either (no root, a kernel without
//! Landlock) the node warns at start and the README tells how to give it a user of its own.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use shoal_jobs::sandbox::{Cgroups, Limits, Sandbox, TaskUser};

use crate::storage::blobs::Blobs;
use crate::usage::UsageError;

/// What the node's flags say about its tasks.
pub struct TaskFlags<'a> {
    /// `--task-user`.
    pub user: Option<&'a str>,
    /// `--task-memory`, `--task-pids`, `--task-cpu-weight`.
    pub limits: Limits,
    /// The data dir (absolute).
    pub data: &'a Path,
    /// The key files (`--cluster-key`, `--api-token`).
    pub secrets: Vec<&'a Path>,
}

/// The task user when the node runs as root and none is named.
pub const DEFAULT_TASK_USER: &str = "nobody";

/// Decide the sandbox of this node's tasks from its flags: the task user, the directory
/// modes that let it reach its attempt directories, and the cgroups. Logged by the caller
/// once the node has started (`Sandbox::describe`).
pub fn setup(args: &TaskFlags<'_>, blobs: &Blobs) -> anyhow::Result<Sandbox> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let lookup = |name: &str| {
        TaskUser::lookup(name).map_err(|e| UsageError(format!("--task-user {name}: {e}")))
    };
    let user = match (args.user, euid == 0) {
        (name, true) => Some(lookup(name.unwrap_or(DEFAULT_TASK_USER))?),
        (Some(name), false) => {
            let u = lookup(name)?;
            if u.uid != euid {
                return Err(UsageError(format!(
                    "--task-user {name} needs the node to run as root; without root, tasks run as the node's own user (run the node as a user of its own)"
                ))
                .into());
            }
            None
        }
        (None, false) => None,
    };
    if user.as_ref().is_some_and(|u| u.uid != 0) {
        // The user crosses these on its way to its attempt directory, and lists none.
        let scratch = blobs.scratch_root();
        std::fs::create_dir_all(&scratch)
            .with_context(|| format!("cannot create {}", scratch.display()))?;
        for dir in [args.data, blobs.root(), &scratch] {
            traversable(dir)?;
        }
    }
    let blocked = user
        .as_ref()
        .filter(|u| u.uid != 0)
        .and_then(|u| first_uncrossable(args.data, u));
    if let (Some(dir), Some(u)) = (&blocked, &user) {
        tracing::warn!(
            "the task user {} may not cross {} on the way to its attempt directories: programs that open their own path (Python scripts do) will fail there with \"Permission denied\"; give the node a --data it can cross, or `chmod o+x {}`",
            u.name,
            dir.display(),
            dir.display()
        );
    }
    let limits = args.limits;
    if limits.memory_mb == Some(0) || limits.pids == Some(0) {
        return Err(UsageError("--task-memory and --task-pids must be above 0".into()).into());
    }
    if limits
        .cpu_weight
        .is_some_and(|w| !(1..=10_000).contains(&w))
    {
        return Err(UsageError("--task-cpu-weight takes 1..10000".into()).into());
    }
    let tag = format!(
        "{:016x}",
        shoal_jobs::partition::stable_hash(args.data.as_os_str().as_encoded_bytes())
    );
    let cgroups = Cgroups::setup(&tag, limits).map_err(|e| UsageError(e.to_string()))?;
    // Tasks of the node's own user read what it reads, mode bits or not: Landlock keeps
    // them from its files, where the kernel has it.
    let own_user = user.as_ref().is_none_or(|u| u.uid == euid);
    let confine = if own_user && shoal_jobs::landlock::abi() >= 1 {
        let mut paths = vec![args.data.to_path_buf()];
        for file in &args.secrets {
            paths.push(
                std::fs::canonicalize(file)
                    .with_context(|| format!("cannot resolve {}", file.display()))?,
            );
        }
        paths
    } else {
        Vec::new()
    };
    // What a killed predecessor's tasks left outside any cgroup.
    let killed = shoal_jobs::sandbox::kill_tagged(&tag);
    if killed > 0 {
        tracing::warn!(
            killed,
            "killed task processes a previous run of this node left"
        );
    }
    Ok(Sandbox {
        user,
        cgroups,
        confine,
        tag,
        blocked,
    })
}

/// The first directory from `/` down to `dir` (absolute) that `user` may not cross, going
/// by its mode bits, owner and group (supplementary groups and ACLs aside).
fn first_uncrossable(dir: &Path, user: &TaskUser) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        (!crosses(m.mode(), m.uid(), m.gid(), user)).then(|| d.to_path_buf())
    })
}

/// Whether `user` may cross a directory of `mode` owned by `uid`:`gid`.
fn crosses(mode: u32, uid: u32, gid: u32, user: &TaskUser) -> bool {
    let bit = if uid == user.uid {
        0o100
    } else if gid == user.gid {
        0o010
    } else {
        0o001
    };
    mode & bit != 0
}

/// Warn when secret file `path` (the cluster key, the API token) can be read by users other
/// than its owner: a task user or anyone else on the machine could take it.
pub fn warn_if_readable(path: &Path, what: &str) {
    use std::os::unix::fs::MetadataExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.mode() & 0o077 != 0 {
            tracing::warn!(
                "{what} {} can be read by other users (mode {:o}): `chmod 600 {}`",
                path.display(),
                m.mode() & 0o777,
                path.display()
            );
        }
    }
}

/// Create the data dir `dir` (under the node's umask, 0700) and any missing directory above
/// it, which others may cross but not list (0711): the task user crosses them on its way to
/// its attempt directories.
pub fn create_data_dir(dir: &Path) -> anyhow::Result<()> {
    let missing: Vec<&Path> = dir
        .ancestors()
        .skip(1)
        .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
        .collect();
    std::fs::create_dir_all(dir)
        .with_context(|| format!("cannot create the data dir {}", dir.display()))?;
    missing.into_iter().try_for_each(traversable)
}

/// Let others cross `dir` (but not list it).
fn traversable(dir: &Path) -> anyhow::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o711))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn someone() -> TaskUser {
        TaskUser {
            name: "someone".into(),
            uid: 4242,
            gid: 4343,
        }
    }

    #[test]
    fn a_directory_others_may_not_cross_is_found_on_the_way() {
        let d = tempfile::tempdir().unwrap();
        let locked = d.path().join("locked");
        let data = locked.join("inner/data");
        std::fs::create_dir_all(&data).unwrap();
        for p in [d.path(), &locked, &locked.join("inner"), &data] {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o711)).unwrap();
        }
        let u = someone();
        // What lies above the test's directory is the machine's; judge from there down.
        let above = first_uncrossable(d.path(), &u);
        assert_eq!(first_uncrossable(&data, &u), above);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
        if above.is_none() {
            assert_eq!(first_uncrossable(&data, &u), Some(locked.clone()));
        }
        assert!(!crosses(0o700, 0, 0, &u));
        assert!(crosses(0o700, u.uid, 0, &u));
        assert!(crosses(0o710, 0, u.gid, &u));
        assert!(
            !crosses(0o701, 0, u.gid, &u),
            "the group's bit decides for the group"
        );
        assert!(crosses(0o701, 0, 0, &u));
    }
}
