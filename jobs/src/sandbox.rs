//! Where a task's processes run: as which user, in which cgroup, under which limits.
//!
//! A node running as root starts every task process as an unprivileged user ([`TaskUser`],
//! `--task-user`, `nobody` by default), so what the node keeps with mode 0600 or 0700 — its
//! identity key, the Raft database, other jobs' data — is out of a task's reach. Where
//! cgroups are writable each attempt gets a cgroup of its own ([`Cell`]): in the v2 hierarchy
//! `cgroup.kill` ends the attempt's whole process tree, `setsid` and double-fork escapees
//! included; memory and process limits come from v2's controllers or — on a hybrid host whose
//! v2 hierarchy has none — from v1's `memory` and `pids`. A task the OOM killer ended is
//! named as such. Cgroups are named after the node ([`Cgroups::setup`]'s tag), so those a
//! previous process of the node left (it was killed with -9) are found at start and their
//! processes killed: no task outlives its node for longer than the node's restart.
//!
//! The invariant: every process of an attempt that has a [`Cell`] is dead when the cell is
//! dropped.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::users::TaskUser;

/// What each attempt may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Limits {
    /// Memory, MiB (`memory.max`; no swap).
    pub memory_mb: Option<u64>,
    /// Memory of all the node's attempts together, MiB: the limit of the cgroup every
    /// attempt's sits under, which leaves the node and the machine the rest
    /// (`--node-reserve-mb`).
    pub all_tasks_mb: Option<u64>,
    /// Processes and threads (`pids.max`).
    pub pids: Option<u64>,
    /// CPU weight, 1..10000 (`cpu.weight`; v2 only).
    pub cpu_weight: Option<u64>,
}

/// One hierarchy attempts are placed in: its directory for this node, and what it enforces.
#[derive(Debug)]
struct Hierarchy {
    base: PathBuf,
    v2: bool,
    memory: bool,
    pids: bool,
    cpu: bool,
}

/// The node's cgroups: one directory per hierarchy used, a child of it per attempt.
#[derive(Debug)]
pub struct Cgroups {
    hierarchies: Vec<Hierarchy>,
    limits: Limits,
}

/// The variable every task process of a node carries (its children inherit it): how a
/// node restarted after `kill -9` finds what its predecessor's tasks left running where no
/// cgroup holds them.
pub const TAG_VAR: &str = "SHOAL_NODE_TAG";

/// Kill every process (but this one) whose environment carries `SHOAL_NODE_TAG=tag`; how
/// many were signalled.
pub fn kill_tagged(tag: &str) -> usize {
    let needle = format!("{TAG_VAR}={tag}");
    let me = std::process::id() as i32;
    let mut killed = 0;
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = e.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(env) = fs::read(e.path().join("environ")) else {
            continue;
        };
        if pid != me && env.split(|&b| b == 0).any(|v| v == needle.as_bytes()) {
            // SAFETY: a plain syscall; a process that is gone answers ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
            killed += 1;
        }
    }
    killed
}

/// Everything a node decides about its tasks' processes.
#[derive(Debug, Default)]
pub struct Sandbox {
    /// Run task processes as this user (the node runs as root).
    pub user: Option<TaskUser>,
    /// Per-attempt cgroups, where writable.
    pub cgroups: Option<Cgroups>,
    /// The node's tag, set in every task's environment as [`TAG_VAR`] (empty: none).
    pub tag: String,
    /// Paths task processes must not reach (the node's data dir, its key files), enforced
    /// by Landlock for tasks that run as the node's own user; empty: no confinement.
    pub confine: Vec<PathBuf>,
    /// A user of its own for each job's tasks (the node runs as root, and no `--task-user`
    /// names one for all): then [`Sandbox::user`] is `None`.
    pub uids: Option<crate::users::UidPool>,
}

impl Sandbox {
    /// The user `job`'s task processes run as here: its own from the pool, the one
    /// `--task-user` names, or `None` (the node's own).
    pub fn user_for(&self, job: &str) -> io::Result<Option<TaskUser>> {
        match &self.uids {
            Some(pool) => pool.user_for(job).map(Some),
            None => Ok(self.user.clone()),
        }
    }

    /// Whether task processes run as another user than the node's.
    pub fn other_user(&self) -> bool {
        self.uids.is_some() || self.user.as_ref().is_some_and(|u| u.uid != 0)
    }

    /// How tasks run, in a few words for the node's start line.
    pub fn describe(&self) -> String {
        let who = match (&self.uids, &self.user) {
            (Some(p), _) => {
                let u = p.any();
                format!("as a user of its own for each job (from uid {})", u.uid)
            }
            (None, Some(u)) => format!("as user {} (uid {}) for every job", u.name, u.uid),
            (None, None) => "as the node's own user".to_owned(),
        };
        let cells = match &self.cgroups {
            Some(c) => {
                let l = c.limits;
                let mut parts = Vec::new();
                if let Some(mb) = l.memory_mb {
                    parts.push(format!("memory {mb} MiB"));
                }
                if let Some(mb) = l.all_tasks_mb {
                    parts.push(format!("{mb} MiB for all tasks together"));
                }
                if let Some(n) = l.pids {
                    parts.push(format!("pids {n}"));
                }
                if let Some(w) = l.cpu_weight {
                    parts.push(format!("cpu weight {w}"));
                }
                let tree = if c.kills_trees() {
                    ""
                } else {
                    ", v1: no cgroup.kill"
                };
                format!(
                    "in a cgroup per attempt ({}{tree})",
                    if parts.is_empty() {
                        "no limits".to_owned()
                    } else {
                        parts.join(", ")
                    }
                )
            }
            None => "without cgroups (a process that leaves its group can outlive its attempt)"
                .to_owned(),
        };
        let confined = if self.confine.is_empty() {
            ""
        } else {
            ", kept from the node's files by Landlock"
        };
        format!("{who}{confined}, {cells}")
    }
}

/// Mount points of this process's cgroup hierarchies and its place in each.
#[derive(Debug, Default)]
struct Found {
    v2: Option<PathBuf>,
    memory: Option<PathBuf>,
    pids: Option<PathBuf>,
}

fn find_hierarchies() -> Found {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let own = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let own_path = |controller: &str| {
        own.lines().find_map(|l| {
            let mut f = l.splitn(3, ':');
            let (_, ctrls, path) = (f.next()?, f.next()?, f.next()?);
            let hit = if controller.is_empty() {
                ctrls.is_empty()
            } else {
                ctrls.split(',').any(|c| c == controller)
            };
            hit.then(|| path.trim_start_matches('/').to_owned())
        })
    };
    let mut found = Found::default();
    for line in mounts.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let point = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let (fstype, _, opts) = (
            r.next().unwrap_or(""),
            r.next(),
            r.next().unwrap_or_default(),
        );
        let at = |path: Option<String>| path.map(|p| Path::new(point).join(p));
        if fstype == "cgroup2" && found.v2.is_none() {
            found.v2 = at(own_path(""));
        } else if fstype == "cgroup" {
            let has = |c: &str| opts.split(',').any(|o| o == c);
            if has("memory") {
                found.memory = at(own_path("memory"));
            }
            if has("pids") {
                found.pids = at(own_path("pids"));
            }
        }
    }
    found
}

fn write(path: &Path, value: &str) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .open(path)?
        .write_all(value.as_bytes())
}

/// Kill every process in cgroup `dir` (`cgroup.kill` where there is one), then remove it.
fn kill_and_remove(dir: &Path) {
    kill_all(dir);
    for _ in 0..200 {
        match fs::remove_dir(dir) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                kill_all(dir);
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return,
        }
    }
    tracing::warn!(cgroup = %dir.display(), "could not remove a task cgroup: processes remain in it");
}

fn kill_all(dir: &Path) {
    if write(&dir.join("cgroup.kill"), "1").is_ok() {
        return;
    }
    // v1: no cgroup.kill; signal what is listed until nothing is (a fork between reading
    // and killing shows up in the next round).
    for _ in 0..100 {
        let pids = fs::read_to_string(dir.join("cgroup.procs")).unwrap_or_default();
        let pids: Vec<i32> = pids.lines().filter_map(|l| l.trim().parse().ok()).collect();
        if pids.is_empty() {
            return;
        }
        for pid in pids {
            // SAFETY: a plain syscall; a pid that is gone answers ESRCH.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

impl Cgroups {
    /// Find writable cgroup hierarchies and make this node's directory, `shoal/{tag}`, in
    /// each that is needed; kill and remove attempt cgroups a previous process of the node
    /// left. `None` when no hierarchy is writable and no limit is asked for; an error when a
    /// limit is asked for that no writable hierarchy can enforce.
    pub fn setup(tag: &str, limits: Limits) -> io::Result<Option<Cgroups>> {
        let found = find_hierarchies();
        // One directory for every node of this machine, one inside it per node.
        let name = Path::new("shoal").join(tag);
        let mut hierarchies = Vec::new();
        let want_memory = limits.memory_mb.or(limits.all_tasks_mb).is_some();
        let (mut memory, mut pids) = (false, false);
        if let Some(own) = &found.v2 {
            let base = own.join(&name);
            if fs::create_dir_all(&base).is_ok() {
                let available =
                    fs::read_to_string(own.join("cgroup.controllers")).unwrap_or_default();
                let shared = own.join("shoal");
                let enable = |c: &str, wanted: bool| {
                    wanted
                        && available.split_whitespace().any(|a| a == c)
                        && [own, &shared, &base].iter().all(|d| {
                            write(&d.join("cgroup.subtree_control"), &format!("+{c}")).is_ok()
                        })
                };
                let h = Hierarchy {
                    memory: enable("memory", want_memory),
                    pids: enable("pids", limits.pids.is_some()),
                    cpu: enable("cpu", limits.cpu_weight.is_some()),
                    base,
                    v2: true,
                };
                (memory, pids) = (h.memory, h.pids);
                hierarchies.push(h);
            }
        }
        let v1 = |own: &Option<PathBuf>, wanted: bool, is_memory: bool| {
            let base = own.as_ref()?.join(&name);
            (wanted && fs::create_dir_all(&base).is_ok()).then_some(Hierarchy {
                base,
                v2: false,
                memory: is_memory,
                pids: !is_memory,
                cpu: false,
            })
        };
        if let Some(h) = v1(&found.memory, want_memory && !memory, true) {
            memory = true;
            hierarchies.push(h);
        }
        if let Some(h) = v1(&found.pids, limits.pids.is_some() && !pids, false) {
            pids = true;
            hierarchies.push(h);
        }
        for (asked, got, flag) in [
            (limits.memory_mb.is_some(), memory, "--task-memory"),
            (limits.pids.is_some(), pids, "--task-pids"),
        ] {
            if asked && !got {
                return Err(io::Error::other(format!(
                    "{flag} needs a writable cgroup with its controller (cgroup v2 with it delegated to this node's cgroup, or v1); none was found"
                )));
            }
        }
        // The limit of all attempts together: a default the node asks for where it can, so
        // where no hierarchy takes it, it is dropped with a warning (the caller checks an
        // asked-for one is kept).
        let mut limits = limits;
        if let Some(mb) = limits.all_tasks_mb {
            let set = match memory {
                true => hierarchies
                    .iter()
                    .filter(|h| h.memory)
                    .try_for_each(|h| limit_memory(&h.base, h.v2, mb)),
                false => Err(io::Error::other("no writable memory controller")),
            };
            if let Err(e) = set {
                // Without any writable hierarchy the node says so at start already.
                if !hierarchies.is_empty() {
                    tracing::warn!(error = %e, "cannot limit the memory of all tasks together: a task can take the node's memory");
                }
                limits.all_tasks_mb = None;
            }
        }
        for h in &hierarchies {
            for e in fs::read_dir(&h.base).into_iter().flatten().flatten() {
                if e.path().is_dir() {
                    tracing::warn!(cgroup = %e.path().display(), "killing what a previous run of this node left");
                    kill_and_remove(&e.path());
                }
            }
        }
        Ok((!hierarchies.is_empty()).then_some(Cgroups {
            hierarchies,
            limits,
        }))
    }

    /// The limits every attempt gets.
    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Whether attempts are placed in the v2 hierarchy (whose `cgroup.kill` ends a tree).
    pub fn kills_trees(&self) -> bool {
        self.hierarchies.iter().any(|h| h.v2)
    }

    /// A fresh cgroup for one attempt, named `name`, with the limits set.
    pub fn cell(&self, name: &str) -> io::Result<Cell> {
        let mut cell = Cell {
            dirs: Vec::new(),
            procs: Vec::new(),
            memory_mb: self.limits.memory_mb,
            all_tasks_mb: self.limits.all_tasks_mb,
        };
        for h in &self.hierarchies {
            let dir = h.base.join(name);
            if dir.exists() {
                kill_and_remove(&dir);
            }
            fs::create_dir(&dir)?;
            cell.dirs.push((dir.clone(), h.v2, h.memory));
            let l = &self.limits;
            if let (true, Some(mb)) = (h.memory, l.memory_mb) {
                limit_memory(&dir, h.v2, mb)?;
            }
            if let (true, Some(n)) = (h.pids, l.pids) {
                write(&dir.join("pids.max"), &n.to_string())?;
            }
            if let (true, Some(w)) = (h.cpu, l.cpu_weight) {
                write(&dir.join("cpu.weight"), &w.to_string())?;
            }
            cell.procs.push(
                OpenOptions::new()
                    .write(true)
                    .custom_flags(libc::O_CLOEXEC)
                    .open(dir.join("cgroup.procs"))?,
            );
        }
        Ok(cell)
    }
}

impl Drop for Cgroups {
    /// A node that stops cleanly leaves no cgroup behind (one killed with -9 leaves its
    /// directory, emptied when it restarts).
    fn drop(&mut self) {
        for h in &self.hierarchies {
            let _ = fs::remove_dir(&h.base);
        }
    }
}

/// One attempt's cgroups (one per hierarchy). Dropping it kills what is left in them.
#[derive(Debug)]
pub struct Cell {
    /// Each directory, whether it is v2, and whether it limits memory.
    dirs: Vec<(PathBuf, bool, bool)>,
    /// Their `cgroup.procs`, open for the child to write itself into.
    procs: Vec<File>,
    memory_mb: Option<u64>,
    all_tasks_mb: Option<u64>,
}

/// Why the OOM killer ended a process of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutOfMemory {
    /// It passed its own limit (`--task-memory`), MiB.
    Own(u64),
    /// The node's tasks together passed theirs (what `--node-reserve-mb` leaves), MiB.
    AllTasks(u64),
}

impl std::fmt::Display for OutOfMemory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OutOfMemory::Own(mb) => write!(f, "out of memory (limit {mb} MiB)"),
            OutOfMemory::AllTasks(mb) => write!(
                f,
                "out of memory (the node's tasks together may use {mb} MiB; --node-reserve-mb keeps the rest for the node)"
            ),
        }
    }
}

/// Memory this process may use, MiB: the machine's (`MemTotal`), or its cgroup's limit where
/// that is lower (a container's). `None` when neither can be read.
pub fn memory_available_mb() -> Option<u64> {
    let meminfo = fs::read_to_string("/proc/meminfo").ok()?;
    let total_kib: u64 = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    let found = find_hierarchies();
    let limits = [
        found.v2.map(|d| d.join("memory.max")),
        found.memory.map(|d| d.join("memory.limit_in_bytes")),
    ];
    let own = limits
        .into_iter()
        .flatten()
        .filter_map(|f| fs::read_to_string(f).ok()?.trim().parse::<u64>().ok())
        .min()
        .map(|b| b >> 20);
    Some(own.map_or(total_kib >> 10, |o| o.min(total_kib >> 10)))
}

/// Limit the memory of cgroup `dir` to `mb` MiB, swap included.
fn limit_memory(dir: &Path, v2: bool, mb: u64) -> io::Result<()> {
    let bytes = mb.saturating_mul(1 << 20).to_string();
    if v2 {
        write(&dir.join("memory.max"), &bytes)?;
        let _ = write(&dir.join("memory.swap.max"), "0");
    } else {
        // v1 refuses a memory+swap limit below the memory limit: lower the pair in order.
        let _ = write(&dir.join("memory.memsw.limit_in_bytes"), "-1");
        write(&dir.join("memory.limit_in_bytes"), &bytes)?;
        let _ = write(&dir.join("memory.memsw.limit_in_bytes"), &bytes);
    }
    Ok(())
}

impl Cell {
    /// Descriptors the child writes "0" to, between fork and exec, to join the cell.
    pub fn join_fds(&self) -> Vec<RawFd> {
        self.procs.iter().map(|f| f.as_raw_fd()).collect()
    }

    /// Kill every process in the cell.
    pub fn kill(&self) {
        for (dir, _, _) in &self.dirs {
            kill_all(dir);
        }
    }

    /// Which memory limit the OOM killer enforced, when it ended a process of the cell.
    pub fn out_of_memory(&self) -> Option<OutOfMemory> {
        let killed = self.dirs.iter().filter(|d| d.2).any(|(dir, v2, _)| {
            let (file, key) = if *v2 {
                ("memory.events", "oom_kill")
            } else {
                ("memory.oom_control", "oom_kill")
            };
            fs::read_to_string(dir.join(file))
                .unwrap_or_default()
                .lines()
                .filter_map(|l| l.split_once(' '))
                .any(|(k, v)| k == key && v.trim().parse::<u64>().is_ok_and(|n| n > 0))
        });
        let own = self.memory_mb.map(OutOfMemory::Own);
        killed
            .then(|| own.or(self.all_tasks_mb.map(OutOfMemory::AllTasks)))
            .flatten()
    }
}

impl Drop for Cell {
    fn drop(&mut self) {
        self.procs.clear();
        for (dir, _, _) in &self.dirs {
            kill_and_remove(dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tagged_processes_are_found_and_killed() {
        let tag = format!("test-{}", std::process::id());
        // Once the shell says "ready" it has exec'd with the tag in its environment.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "echo ready; exec sleep 1000"])
            .env(TAG_VAR, &tag)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufRead::read_line(
            &mut std::io::BufReader::new(child.stdout.take().unwrap()),
            &mut line,
        )
        .unwrap();
        assert_eq!(line, "ready\n");
        let killed = kill_tagged(&tag);
        assert_eq!(killed, 1);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(child.wait().unwrap().signal(), Some(libc::SIGKILL));
        assert_eq!(kill_tagged(&tag), 0);
    }

    #[test]
    fn users_are_looked_up_and_unknown_ones_named() {
        let root = TaskUser::lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        let e = TaskUser::lookup("no-such-user-shoal").unwrap_err();
        assert!(e.to_string().contains("no-such-user-shoal"), "{e}");
    }
}
