//! Whom task processes run as: a named user ([`TaskUser::lookup`], `--task-user`), or a user
//! of its own for each job, as systemd's dynamic users are ([`UidPool`]): a node running as
//! root takes each job's task processes to a uid of a range (`--task-uids`, default
//! 61184–65519, systemd's own), with the group of the same number, and gives that uid back
//! when the job ends here. Tasks of two jobs then cannot read, write or signal each other's
//! processes and directories, whatever their modes.
//!
//! The nodes of one machine share the range through a [`Registry`]: a job that runs on two
//! of them runs as one uid, and two jobs never as the same one.
//!
//! The invariant: a uid is handed to one job at a time on a machine, never one the user
//! database names or a running process holds, and the next job takes the next free uid in
//! turn, so a uid comes back only after the whole range has.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::sync::Mutex;

/// The user task processes run as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskUser {
    /// Its name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
}

impl TaskUser {
    /// Look `name` up in the user database.
    pub fn lookup(name: &str) -> io::Result<TaskUser> {
        let cname = CString::new(name).map_err(|_| io::Error::other("a user name with NUL"))?;
        // SAFETY: `pwd` and `buf` outlive the call; getpwnam_r writes only into them.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut buf = vec![0 as libc::c_char; 16 << 10];
        let mut found: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut found,
            )
        };
        if rc != 0 {
            return Err(io::Error::from_raw_os_error(rc));
        }
        if found.is_null() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("there is no user {name:?} on this machine"),
            ));
        }
        Ok(TaskUser {
            name: name.to_owned(),
            uid: pwd.pw_uid,
            gid: pwd.pw_gid,
        })
    }
}

/// The uids a node hands its jobs.
#[derive(Debug)]
pub struct UidPool {
    first: u32,
    last: u32,
    registry: Option<Registry>,
    state: Mutex<Handed>,
}

/// Where the nodes of a machine say which uid each job holds: a file `UID.NODE` per claim,
/// holding the job's id and the claiming process (pid and start time), in a directory only
/// root may enter; a node reads and writes them under an exclusive `flock` of the directory.
/// A claim whose process is gone (a node killed and not restarted) is dropped when read.
#[derive(Debug)]
pub struct Registry {
    dir: std::path::PathBuf,
    node: String,
}

impl Registry {
    /// The registry in `dir` (made by the caller, root's alone) for the node tagged `node`;
    /// the claims a previous process of the node left go.
    pub fn open(dir: std::path::PathBuf, node: &str) -> io::Result<Registry> {
        let r = Registry {
            dir,
            node: node.to_owned(),
        };
        let _lock = r.lock()?;
        for (uid, owner, _) in r.claims()? {
            if owner == r.node {
                r.unclaim(uid);
            }
        }
        Ok(r)
    }

    fn lock(&self) -> io::Result<std::fs::File> {
        use std::os::fd::AsRawFd;
        let d = std::fs::File::open(&self.dir)?;
        // SAFETY: a plain syscall on a descriptor this function owns; the lock goes with it.
        if unsafe { libc::flock(d.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(d)
    }

    /// Every live claim: uid, node, job. (Called under the lock: stale ones are removed.)
    fn claims(&self) -> io::Result<Vec<(u32, String, String)>> {
        let mut out = Vec::new();
        for e in std::fs::read_dir(&self.dir)?.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some((uid, node)) = name.split_once('.') else {
                continue;
            };
            let (Ok(uid), Ok(text)) = (uid.parse(), std::fs::read_to_string(e.path())) else {
                continue;
            };
            let (job, holder) = text.split_once('\n').unwrap_or((&text, ""));
            let live = process_id(holder_pid(holder)).is_some_and(|now| now == holder.trim());
            if !live {
                let _ = std::fs::remove_file(e.path());
                continue;
            }
            out.push((uid, node.to_owned(), job.to_owned()));
        }
        Ok(out)
    }

    fn claim(&self, uid: u32, job: &str) -> io::Result<()> {
        let me = process_id(std::process::id()).unwrap_or_default();
        std::fs::write(
            self.dir.join(format!("{uid}.{}", self.node)),
            format!("{job}\n{me}\n"),
        )
    }

    fn unclaim(&self, uid: u32) {
        let _ = std::fs::remove_file(self.dir.join(format!("{uid}.{}", self.node)));
    }
}

#[derive(Debug, Default)]
struct Handed {
    by_job: BTreeMap<String, u32>,
    next: u32,
}

impl UidPool {
    /// The uids `first..=last`, shared with the other nodes of the machine through
    /// `registry` when given; none of them may be root's.
    pub fn new(first: u32, last: u32, registry: Option<Registry>) -> io::Result<UidPool> {
        if first == 0 || first > last {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{first}-{last} is no range of task uids (from 1, low to high)"),
            ));
        }
        Ok(UidPool {
            first,
            last,
            registry,
            state: Mutex::new(Handed {
                next: first,
                ..Handed::default()
            }),
        })
    }

    /// A user standing for every uid of the pool (for what all of them may cross).
    pub fn any(&self) -> TaskUser {
        dynamic(self.first)
    }

    /// The user of `job`'s tasks here: the one it has, or the next free uid.
    pub fn user_for(&self, job: &str) -> io::Result<TaskUser> {
        let mut h = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&uid) = h.by_job.get(job) {
            return Ok(dynamic(uid));
        }
        let _lock = self.registry.as_ref().map(Registry::lock).transpose()?;
        let claims = match &self.registry {
            Some(r) => r.claims()?,
            None => Vec::new(),
        };
        // The same job on another node of this machine: the same user.
        if let Some(&(uid, ..)) = claims.iter().find(|c| c.2 == job) {
            return self.hand(&mut h, uid, job);
        }
        let mut taken: BTreeSet<u32> = h.by_job.values().copied().collect();
        taken.extend(claims.iter().map(|c| c.0));
        let running = uids_running();
        let span = u64::from(self.last - self.first) + 1;
        let mut uid = h.next;
        for _ in 0..span {
            let free = !taken.contains(&uid) && !running.contains(&uid) && !named(uid);
            let after = if uid == self.last {
                self.first
            } else {
                uid + 1
            };
            if free {
                h.next = after;
                return self.hand(&mut h, uid, job);
            }
            uid = after;
        }
        Err(io::Error::other(format!(
            "every task uid of {}-{} is taken (a job each, a named user or a running process): widen --task-uids",
            self.first, self.last
        )))
    }

    fn hand(&self, h: &mut Handed, uid: u32, job: &str) -> io::Result<TaskUser> {
        if let Some(r) = &self.registry {
            r.claim(uid, job)?;
        }
        h.by_job.insert(job.to_owned(), uid);
        Ok(dynamic(uid))
    }

    /// `job` has ended here: its uid may serve another job once the others have had theirs
    /// (and once no other node of the machine runs the job).
    pub fn release(&self, job: &str) {
        let mut h = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let (Some(uid), Some(r)) = (h.by_job.remove(job), &self.registry) {
            if let Ok(_lock) = r.lock() {
                r.unclaim(uid);
            }
        }
    }

    /// How many jobs hold a uid now.
    pub fn handed(&self) -> usize {
        let h = self.state.lock().unwrap_or_else(|p| p.into_inner());
        h.by_job.len()
    }
}

/// A process as `PID START` (its start time in clock ticks since boot, field 22 of
/// `/proc/PID/stat`): a pid used again by another process reads otherwise. `None` when the
/// process is gone.
fn process_id(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, field 2, is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')')? + 1..];
    let start = after.split_whitespace().nth(19)?;
    Some(format!("{pid} {start}"))
}

fn holder_pid(holder: &str) -> u32 {
    holder
        .split_whitespace()
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or(0)
}

fn dynamic(uid: u32) -> TaskUser {
    TaskUser {
        name: format!("uid {uid}"),
        uid,
        gid: uid,
    }
}

/// Whether the user database names `uid` (then it is someone's, not ours to hand out).
fn named(uid: u32) -> bool {
    // SAFETY: `pwd` and `buf` outlive the call; getpwuid_r writes only into them.
    let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
    let mut buf = vec![0 as libc::c_char; 16 << 10];
    let mut found: *mut libc::passwd = std::ptr::null_mut();
    let rc = unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut found) };
    rc == 0 && !found.is_null()
}

/// The real uids of every running process.
fn uids_running() -> BTreeSet<u32> {
    let mut uids = BTreeSet::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        if !e
            .file_name()
            .as_encoded_bytes()
            .iter()
            .all(u8::is_ascii_digit)
        {
            continue;
        }
        let Ok(status) = std::fs::read_to_string(e.path().join("status")) else {
            continue;
        };
        let uid = status
            .lines()
            .find_map(|l| l.strip_prefix("Uid:"))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|u| u.parse::<u32>().ok());
        uids.extend(uid);
    }
    uids
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_job_has_its_own_uid_and_uids_come_back_in_turn() {
        let pool = UidPool::new(3_000_000_000, 3_000_000_002, None).unwrap();
        let a = pool.user_for("a").unwrap();
        let b = pool.user_for("b").unwrap();
        assert_ne!(a.uid, b.uid);
        assert_eq!(a.uid, a.gid);
        assert_eq!(pool.user_for("a").unwrap(), a, "a job keeps its uid");
        pool.release("a");
        // The next in turn, not the one just given back.
        let c = pool.user_for("c").unwrap();
        assert_eq!(c.uid, 3_000_000_002);
        let d = pool.user_for("d").unwrap();
        assert_eq!(d.uid, a.uid);
        assert!(pool.user_for("e").is_err(), "the range is spent");
        assert_eq!(pool.handed(), 3);
        assert!(UidPool::new(0, 10, None).is_err());
        assert!(UidPool::new(10, 9, None).is_err());
    }

    #[test]
    fn a_uid_a_process_holds_or_a_user_has_is_passed_over() {
        // This process's uid, and root's, are never handed out.
        // SAFETY: getuid has no preconditions.
        let me = unsafe { libc::getuid() };
        if me == 0 {
            // root is named: a pool can't start there, so try the uid of `nobody` instead.
            let pool = UidPool::new(65534, 65534, None).unwrap();
            assert!(pool.user_for("j").is_err(), "nobody is a named user");
        } else {
            let pool = UidPool::new(me, me, None).unwrap();
            assert!(pool.user_for("j").is_err(), "a running process holds it");
        }
    }

    #[test]
    fn nodes_of_one_machine_share_a_job_s_uid_and_never_give_two_jobs_one() {
        let d = tempfile::tempdir().unwrap();
        let reg = |node: &str| Registry::open(d.path().to_path_buf(), node).unwrap();
        let range = (3_000_000_100, 3_000_000_103);
        let a = UidPool::new(range.0, range.1, Some(reg("a"))).unwrap();
        let b = UidPool::new(range.0, range.1, Some(reg("b"))).unwrap();
        let x_on_a = a.user_for("x").unwrap();
        assert_eq!(b.user_for("x").unwrap(), x_on_a, "one job, one user");
        let y_on_b = b.user_for("y").unwrap();
        let z_on_a = a.user_for("z").unwrap();
        assert!(x_on_a.uid != y_on_b.uid && y_on_b.uid != z_on_a.uid && x_on_a.uid != z_on_a.uid);
        // x ends on a while b still runs it: no other job takes its uid.
        a.release("x");
        let w_on_a = a.user_for("w").unwrap();
        assert_ne!(w_on_a.uid, x_on_a.uid);
        // A node that restarts drops its own claims, not the others'.
        drop(a);
        let a = UidPool::new(range.0, range.1, Some(reg("a"))).unwrap();
        assert_eq!(a.user_for("y").unwrap(), y_on_b);
        assert!(
            a.user_for("v").is_ok(),
            "z's and w's uids came back when a restarted"
        );
        // A claim of a process that is gone (a node killed for good) is dropped when read.
        let gone = "j-gone\n4294967 1\n";
        std::fs::write(d.path().join(format!("{}.dead", range.1)), gone).unwrap();
        let c = UidPool::new(range.0, range.1, Some(reg("c"))).unwrap();
        assert_eq!(
            c.user_for("u").unwrap().uid,
            range.1,
            "the dead node's uid is free again"
        );
    }
}
