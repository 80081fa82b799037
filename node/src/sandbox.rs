//! The node's side of task containment (the mechanisms are `shoal_jobs::sandbox`): whom its
//! tasks run as (a uid of each job's own, as root), where their attempt directories lie so
//! that they can reach them (without listing or reading anything else on the way), and
//! their cgroups.
//!
//! The invariant: a task process can read nothing the node keeps but its own attempt
//! directory and its job's files — as another user when the node runs as root, by Landlock
//! when it runs as the node's user. Without either (no root, a kernel without Landlock) the
//! node warns at start and the README tells how to give it a user of its own. Wherever the
//! data dir lies, a root node's tasks reach their directories: when the way to the data dir
//! is closed to them (a 0700 home), attempt directories go under the temporary directory.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::Context;
use shoal_jobs::sandbox::{Cgroups, Limits, Sandbox, TaskUser};
use shoal_jobs::scratch::Scratch;
use shoal_jobs::users::{Registry, UidPool};

use crate::storage::blobs::Blobs;
use crate::usage::UsageError;

/// What the node's flags say about its tasks.
pub struct TaskFlags<'a> {
    /// `--task-user`.
    pub user: Option<&'a str>,
    /// `--task-uids`.
    pub uids: (u32, u32),
    /// `--task-memory`, `--task-pids`, `--task-cpu-weight` (`all_tasks_mb` is the node's to
    /// work out, from `reserve_mb`).
    pub limits: Limits,
    /// `--node-reserve-mb`.
    pub reserve_mb: Option<u64>,
    /// The data dir (absolute).
    pub data: &'a Path,
    /// The key files (`--cluster-key`, `--api-token`).
    pub secrets: Vec<&'a Path>,
}

/// `--task-uids FIRST-LAST`.
pub fn uid_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?}: give FIRST-LAST, e.g. 61184-65519"))?;
    let parse = |n: &str| n.trim().parse::<u32>().map_err(|e| format!("{n:?}: {e}"));
    let (a, b) = (parse(a)?, parse(b)?);
    UidPool::new(a, b, None).map_err(|e| e.to_string())?;
    Ok((a, b))
}

/// Decide the sandbox of this node's tasks from its flags: the task users, where their
/// attempt directories go (`blobs`' scratch root), and the cgroups. Logged by the caller
/// once the node has started (`Sandbox::describe`).
pub fn setup(args: &TaskFlags<'_>, blobs: &mut Blobs) -> anyhow::Result<Sandbox> {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    let lookup = |name: &str| {
        TaskUser::lookup(name).map_err(|e| UsageError(format!("--task-user {name}: {e}")))
    };
    let tag = format!(
        "{:016x}",
        shoal_jobs::partition::stable_hash(args.data.as_os_str().as_encoded_bytes())
    );
    let uids = match euid == 0 && args.user.is_none() {
        true => Some(uid_pool(args.uids, &tag)?),
        false => None,
    };
    let user = match (args.user, euid == 0) {
        (Some(name), true) => Some(lookup(name)?),
        (None, _) => None,
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
    };
    // Who must cross the way to the attempt directories: every uid of the pool alike.
    let crosser = uids.as_ref().map(UidPool::any).or_else(|| user.clone());
    if let Some(u) = crosser.filter(|u| u.uid != 0) {
        place_scratch(args.data, blobs, &u, &tag)?;
    }
    let mut limits = args.limits;
    limits.all_tasks_mb = all_tasks_mb(args.reserve_mb)?;
    if limits.memory_mb == Some(0) || limits.pids == Some(0) {
        return Err(UsageError("--task-memory and --task-pids must be above 0".into()).into());
    }
    if limits
        .cpu_weight
        .is_some_and(|w| !(1..=10_000).contains(&w))
    {
        return Err(UsageError("--task-cpu-weight takes 1..10000".into()).into());
    }
    let cgroups = Cgroups::setup(&tag, limits).map_err(|e| UsageError(e.to_string()))?;
    let kept = cgroups.as_ref().and_then(|c| c.limits().all_tasks_mb);
    if args.reserve_mb.is_some() && kept.is_none() {
        return Err(UsageError(
            "--node-reserve-mb needs a writable cgroup with the memory controller (cgroup v2 with it delegated to this node's cgroup, or v1); none was found".into(),
        )
        .into());
    }
    // Tasks of the node's own user read what it reads, mode bits or not: Landlock keeps
    // them from its files, where the kernel has it.
    let own_user = uids.is_none() && user.as_ref().is_none_or(|u| u.uid == euid);
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
        uids,
    })
}

/// The memory all tasks together may use, MiB: what this node may use less `reserve` (an
/// eighth of it, from 512 to 4096 MiB, by default). `None` when the memory is unknown.
fn all_tasks_mb(reserve: Option<u64>) -> anyhow::Result<Option<u64>> {
    let Some(total) = shoal_jobs::sandbox::memory_available_mb() else {
        return Ok(None);
    };
    let asked = reserve;
    let reserve = reserve.unwrap_or((total / 8).clamp(512, 4096));
    match (total.checked_sub(reserve).filter(|&left| left >= 64), asked) {
        (Some(left), _) => Ok(Some(left)),
        (None, Some(_)) => Err(UsageError(format!(
            "--node-reserve-mb {reserve} leaves the tasks less than 64 of this node's {total} MiB"
        ))
        .into()),
        // A machine too small for the default reserve: no limit for all tasks together.
        (None, None) => Ok(None),
    }
}

/// The pool of task uids, shared with the other nodes of this machine through the registry
/// `shoal-uids` in the temporary directory.
fn uid_pool((first, last): (u32, u32), tag: &str) -> anyhow::Result<UidPool> {
    let dir = std::env::temp_dir().join("shoal-uids");
    claim_dir(&dir, 0o700)?;
    let registry = Registry::open(dir.clone(), tag)
        .with_context(|| format!("cannot open the task uid registry {}", dir.display()))?;
    UidPool::new(first, last, Some(registry))
        .map_err(|e| UsageError(format!("--task-uids: {e}")).into())
}

/// Put the scratch root where task user `u` can reach it: in the data dir, opened to be
/// crossed (0711), when every directory above the data dir lets `u` cross; else — a data
/// dir in a home only its owner may enter, `mktemp -d` — in `shoal-TAG` under the
/// temporary directory (`TMPDIR`), the node's own. Refuses to start when neither can be
/// reached, naming the directory in the way.
fn place_scratch(data: &Path, blobs: &mut Blobs, u: &TaskUser, tag: &str) -> anyhow::Result<()> {
    let above = data.parent().and_then(|d| first_uncrossable(d, u));
    let Some(closed) = above else {
        // The user crosses these on its way to its attempt directory, and lists none.
        for dir in [data, blobs.root(), blobs.scratch().root()] {
            traversable(dir)?;
        }
        return Ok(());
    };
    let alt = std::env::temp_dir().join(format!("shoal-{tag}"));
    claim_dir(&alt, 0o711)?;
    if let Some(d) = first_uncrossable(&alt, u) {
        return Err(UsageError(format!(
            "the task users may cross neither {} (on the way to the data dir) nor {} (on the way to {}): give the node a --data below directories others may cross, or set TMPDIR to one",
            closed.display(),
            d.display(),
            alt.display()
        ))
        .into());
    }
    let scratch = Scratch::open(alt.clone())
        .with_context(|| format!("cannot open the scratch root {}", alt.display()))?;
    blobs.set_scratch(scratch);
    // Said once the node has started, in the line that says how tasks run.
    tracing::debug!(
        scratch = %alt.display(),
        "the task users may not cross {} on the way to the data dir: attempt directories go under the temporary directory",
        closed.display()
    );
    Ok(())
}

/// Make `dir` this process's own directory (of `mode`), or take it over when a previous run
/// of the node (or another node of this user) left it: refused when it is a link or another
/// user's (someone else's trap in a shared temporary directory).
fn claim_dir(dir: &Path, mode: u32) -> anyhow::Result<()> {
    use std::os::unix::fs::MetadataExt;
    match shoal_jobs::scratch::new_dir(dir, mode) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("cannot create {}", dir.display()));
        }
        Err(_) => {}
    }
    let m =
        std::fs::symlink_metadata(dir).with_context(|| format!("cannot read {}", dir.display()))?;
    // SAFETY: geteuid has no preconditions.
    let me = unsafe { libc::geteuid() };
    if !m.file_type().is_dir() || m.uid() != me {
        return Err(UsageError(format!(
            "{} exists and is not this node's directory (a {}, owner uid {}): remove it, or set TMPDIR elsewhere",
            dir.display(),
            if m.file_type().is_symlink() { "symbolic link" } else if m.is_dir() { "directory" } else { "file" },
            m.uid()
        ))
        .into());
    }
    set_mode(dir, mode)
}

/// The first directory from `/` down to `dir` (absolute) that `user` may not cross, going
/// by its mode bits, owner and group (supplementary groups and ACLs aside).
pub fn first_uncrossable(dir: &Path, user: &TaskUser) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::MetadataExt;
    let mut ancestors: Vec<&Path> = dir.ancestors().collect();
    ancestors.reverse();
    ancestors.into_iter().find_map(|d| {
        let m = std::fs::metadata(d).ok()?;
        (!crosses(m.mode(), m.uid(), m.gid(), user)).then(|| d.to_path_buf())
    })
}

/// Whether `user` may cross a directory of `mode` owned by `uid`:`gid`.
pub fn crosses(mode: u32, uid: u32, gid: u32, user: &TaskUser) -> bool {
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
    set_mode(dir, 0o711)
}

fn set_mode(dir: &Path, mode: u32) -> anyhow::Result<()> {
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}
