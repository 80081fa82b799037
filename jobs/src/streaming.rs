//! Running a user's executable under the Hadoop Streaming contract.
//!
//! A process gets a fresh working directory holding the job's shipped files, a clean
//! environment (`PATH`, `HOME` and `TMPDIR` inside the attempt directory, `LANG=C`, the
//! `SHOAL_*` variables and the job's `--env`), its own process group and a parent-death
//! signal. Its stdin is fed on one thread while stdout is consumed on the caller's thread and
//! stderr on a third (no deadlock whatever order the program reads and writes in); stderr's
//! `reporter:counter:` and `reporter:status:` lines become counters and status, the rest
//! keeps a bounded tail for error messages. A watchdog kills the group after the inactivity
//! timeout (no input read, no output, no reporter line).
//!
//! In a node's [`Sandbox`] the process runs as the task user and in a cgroup of its own,
//! whose every process is killed when the run ends (see `sandbox`).
//!
//! The invariant: when [`run`] returns, the process and everything it started are dead and
//! reaped — no zombies, no orphans (in a cgroup, not even those that left the process group).

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::counters::Counters;
use crate::error::{Ended, Error, IoContext, Result};
use crate::pipes::{Paced, Patient};
use crate::sandbox::{Cell, Sandbox, TaskUser};
use crate::spec::{interpreter_for, Program, ShippedFile};
use crate::stderr::read_stderr;

/// What one process run is.
pub struct Launch<'a> {
    /// "mapper", "reducer" or "combiner", for messages.
    pub role: &'static str,
    /// What to run.
    pub program: &'a Program,
    /// The job's shipped files (already written into `dir`).
    pub files: &'a [ShippedFile],
    /// The attempt's working directory.
    pub dir: &'a Path,
    /// Environment beyond the base one.
    pub env: Vec<(String, String)>,
    /// Inactivity timeout.
    pub timeout: Duration,
    /// Set to stop the run (job killed, attempt superseded).
    pub cancel: &'a AtomicBool,
    /// Where this runs, for messages: "split 3 of words.txt (attempt 1 of 4)".
    pub context: String,
    /// The node's sandbox, if any.
    pub sandbox: Option<&'a Sandbox>,
    /// The user the process runs as (the job's, when the node runs as root; `None`: the
    /// node's own).
    pub user: Option<&'a TaskUser>,
    /// The job's directory on this node (`--archive`, `--setup`), which the process may
    /// read besides its own (`SHOAL_JOB_DIR`).
    pub job_dir: Option<&'a Path>,
    /// Where its stderr is kept for later ([`crate::tasklog`]), besides the tail kept for
    /// error messages.
    pub log: Option<&'a Path>,
}

/// What a successful run reported.
#[derive(Debug, Default)]
pub struct Outcome {
    /// `reporter:counter:` totals.
    pub counters: Counters,
    /// The last `reporter:status:` text.
    pub status: Option<String>,
    /// Bytes written to stderr.
    pub stderr_bytes: u64,
}

/// How a program is shown in messages.
pub fn display(p: &Program) -> &str {
    match p {
        Program::Shell(cmd) | Program::File(cmd) => cmd,
    }
}

fn command_for(
    l: &Launch<'_>,
    cell: Option<&Cell>,
    fence: Option<&crate::landlock::Ruleset>,
) -> Result<Command> {
    // The child starts in `l.dir`, so a relative `l.dir` (a relative `--data` or `--output`)
    // would name the program, HOME and TMPDIR relative to itself: resolve it first.
    let dir = std::path::absolute(l.dir).ctx(|| format!("resolving {}", l.dir.display()))?;
    let mut cmd = match l.program {
        Program::Shell(line) => {
            let mut c = Command::new("sh");
            c.arg("-c").arg(line);
            c
        }
        Program::File(name) => {
            let f = l.files.iter().find(|f| &f.name == name).ok_or_else(|| {
                Error::InvalidSpec(format!("program file {name} is not shipped with the job"))
            })?;
            match interpreter_for(f)? {
                // Relative to the working directory: a task user may not traverse the
                // node's directories above it.
                None => Command::new(Path::new(".").join(name)),
                Some(interp) => {
                    let mut c = Command::new(interp);
                    c.arg(name);
                    c
                }
            }
        }
    };
    let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
    cmd.current_dir(&dir)
        .env_clear()
        .env("PATH", path)
        .env("HOME", &dir)
        .env("TMPDIR", dir.join("tmp"))
        .env("LANG", "C")
        .envs(l.env.iter().map(|(k, v)| (k, v)))
        .envs(
            l.job_dir
                .and_then(|d| Some(("SHOAL_JOB_DIR", std::path::absolute(d).ok()?))),
        )
        .envs(
            l.sandbox
                .filter(|s| !s.tag.is_empty())
                .map(|s| (crate::sandbox::TAG_VAR, s.tag.as_str())),
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let parent = std::process::id() as libc::pid_t;
    let join = cell.map(Cell::join_fds).unwrap_or_default();
    let fence = fence.map(crate::landlock::Ruleset::fd);
    let user = l.user.map(|u| (u.uid, u.gid));
    // SAFETY: write, setpgid, setgroups, setgid, setuid, prctl and getppid are
    // async-signal-safe and touch only the child; `join` was made before the fork.
    unsafe {
        cmd.pre_exec(move || {
            for &fd in &join {
                if libc::write(fd, b"0".as_ptr().cast(), 1) != 1 {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The user last but for the death signal, which a change of user clears.
            if let Some((uid, gid)) = user {
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(gid) != 0
                    || libc::setuid(uid) != 0
                {
                    return Err(io::Error::last_os_error());
                }
            }
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) != 0 {
                return Err(io::Error::last_os_error());
            }
            // The node died between the fork and the prctl: the signal will never come.
            if libc::getppid() != parent {
                return Err(io::Error::other("the node died while starting the task"));
            }
            if let Some(fd) = fence {
                crate::landlock::restrict_self(fd)?;
            }
            Ok(())
        });
    }
    Ok(cmd)
}

/// Time of the last sign of life, in ms since the run started.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn touch(&self) {
        self.last_ms
            .store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
    fn idle(&self) -> Duration {
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

struct Tracked<'a, T> {
    inner: T,
    activity: &'a Activity,
}

impl<T: Write> Write for Tracked<'_, T> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.activity.touch();
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<T: Read> Read for Tracked<'_, T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.activity.touch();
        Ok(n)
    }
}

fn kill_group(pgid: i32) {
    // SAFETY: plain syscall; a group that is already gone answers ESRCH, which is fine.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

/// `waitid` for the child's exit without reaping it (the pid cannot be reused while the
/// zombie exists, so its group can still be signalled safely); `flags` adds `WNOHANG` or
/// not. Whether it has exited.
fn exited_unreaped(pid: i32, flags: libc::c_int) -> io::Result<bool> {
    // SAFETY: `info` is plain data that waitid fills in.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT | flags,
        )
    };
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: waitid filled `info` (si_pid stays 0 under WNOHANG while the child runs).
    Ok(unsafe { info.si_pid() } != 0)
}

/// Wait until the child has exited, without reaping it.
fn wait_exited_unreaped(pid: i32) {
    while let Err(e) = exited_unreaped(pid, 0) {
        if e.kind() != io::ErrorKind::Interrupted {
            return;
        }
    }
}

/// Whether the child has exited (without reaping it).
fn has_exited(pid: i32) -> bool {
    exited_unreaped(pid, libc::WNOHANG).unwrap_or(false)
}

fn is_broken_pipe(e: &Error) -> bool {
    matches!(e, Error::Io { source, .. } if source.kind() == io::ErrorKind::BrokenPipe)
}

/// Spawn the attempt's process. A shipped executable written just now can be briefly "busy"
/// (ETXTBSY): another task thread forked while its write descriptor was open, and the child
/// holds it until it execs. That clears within moments, so it is retried a few times.
fn spawn_retrying_busy(
    l: &Launch<'_>,
    cell: Option<&Cell>,
) -> Result<std::io::Result<std::process::Child>> {
    // The attempt's directory and the job's are the task's; the node's other files are not.
    let allowed: Vec<&Path> = [Some(l.dir), l.job_dir].into_iter().flatten().collect();
    let fence = match l.sandbox.filter(|s| !s.confine.is_empty()) {
        Some(s) => crate::landlock::Ruleset::all_but(&s.confine, &allowed)
            .ctx(|| "building the task's Landlock ruleset".into())?,
        None => None,
    };
    let mut tries = 0;
    loop {
        match command_for(l, cell, fence.as_ref())?.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(5 * tries));
            }
            other => return Ok(other),
        }
    }
}

/// Run a process: `feed` writes its stdin (closed when `feed` returns), `consume` reads its
/// stdout on the calling thread.
pub fn run<F, C>(l: &Launch<'_>, feed: F, consume: C) -> Result<Outcome>
where
    F: FnOnce(&mut dyn Write) -> Result<()> + Send,
    C: FnOnce(&mut dyn BufRead) -> Result<()>,
{
    let shown = display(l.program);
    let cell = make_cell(l, shown)?;

    let mut child = spawn_retrying_busy(l, cell.as_ref())?.map_err(|e| Error::Program {
        message: format!("could not start {} `{shown}` on {}: {e}", l.role, l.context),
        exit: None,
        stderr_tail: String::new(),
    })?;
    let pid = child.id() as i32;
    // Everything the attempt started: its process group and, in a cgroup, whatever left
    // the group (setsid, double forks).
    let kill_all = || {
        kill_group(pid);
        if let Some(c) = &cell {
            c.kill();
        }
    };
    let stdin = child.stdin.take().expect("stdin is piped");
    let stdout = child.stdout.take().expect("stdout is piped");
    let (room, _) = (
        crate::pipes::enlarge(&stdin),
        crate::pipes::enlarge(&stdout),
    );
    let (stdin, stdout) = (Paced::new(stdin, room), Patient::new(stdout));
    let stderr = child.stderr.take().expect("stderr is piped");
    let activity = Activity {
        start: Instant::now(),
        last_ms: AtomicU64::new(0),
    };
    let done = AtomicBool::new(false);
    let timed_out = AtomicBool::new(false);

    let (consumed, fed, err_report, status) = std::thread::scope(|s| {
        let activity = &activity;
        let feeder = s.spawn(move || {
            let mut w = Tracked {
                inner: stdin,
                activity,
            };
            let r = feed(&mut w).and_then(|()| w.flush().ctx(|| "writing stdin".into()));
            drop(w);
            match r {
                Err(e) if is_broken_pipe(&e) => Ok(()),
                Err(e) => {
                    kill_group(pid);
                    Err(e)
                }
                ok => ok,
            }
        });
        let err_reader = s.spawn(move || read_stderr(stderr, &|| activity.touch(), l.log));
        let (kill_all, done, timed_out) = (&kill_all, &done, &timed_out);
        let watchdog = s.spawn(move || watch(l, pid, activity, done, timed_out, kill_all));
        let mut out = BufReader::with_capacity(
            256 << 10,
            Tracked {
                inner: stdout,
                activity,
            },
        );
        let consumed = consume(&mut out);
        if consumed.is_err() {
            kill_group(pid);
        }
        drop(out);
        wait_exited_unreaped(pid);
        kill_all();
        let status = child.wait();
        done.store(true, Ordering::Release);
        watchdog.thread().unpark();
        let fed = feeder
            .join()
            .unwrap_or_else(|_| Err(Error::TaskFailed("the stdin feeder panicked".into())));
        let err_report = err_reader.join().unwrap_or_default();
        (consumed, fed, err_report, status)
    });

    let stderr_tail = err_report.tail_text();
    let ended = RunEnd {
        timed_out: timed_out.load(Ordering::Acquire),
        status,
        fed,
        consumed,
    };
    verdict(l, shown, cell.as_ref(), ended, stderr_tail)?;
    Ok(Outcome {
        counters: err_report.counters,
        status: err_report.status,
        stderr_bytes: err_report.bytes,
    })
}

/// The attempt's cgroup, when the node runs programs in cgroups.
fn make_cell(l: &Launch<'_>, shown: &str) -> Result<Option<Cell>> {
    let Some(cg) = l.sandbox.and_then(|s| s.cgroups.as_ref()) else {
        return Ok(None);
    };
    cg.cell(&cell_name(l))
        .map(Some)
        .map_err(|e| Error::Program {
            message: format!(
                "could not make a cgroup for {} `{shown}` on {}: {e}",
                l.role, l.context
            ),
            exit: None,
            stderr_tail: String::new(),
        })
}

/// Watch a running program: kill all it started when the attempt is cancelled, when it
/// was idle past the timeout (saying so in `timed_out`), or once it has exited; return when
/// `done`.
fn watch(
    l: &Launch<'_>,
    pid: i32,
    activity: &Activity,
    done: &AtomicBool,
    timed_out: &AtomicBool,
    kill_all: &dyn Fn(),
) {
    loop {
        std::thread::park_timeout(Duration::from_millis(100));
        if done.load(Ordering::Acquire) {
            return;
        }
        if l.cancel.load(Ordering::Relaxed) {
            kill_all();
            return;
        }
        if activity.idle() > l.timeout {
            timed_out.store(true, Ordering::Release);
            kill_all();
            return;
        }
        // The program has exited: what it left running (holding its output open, or
        // detached) ends with it.
        if has_exited(pid) {
            kill_all();
            return;
        }
    }
}

/// How a program's run ended, as [`verdict`] judges it.
struct RunEnd {
    timed_out: bool,
    status: std::io::Result<std::process::ExitStatus>,
    fed: Result<()>,
    consumed: Result<()>,
}

/// Why a program's run failed, if it did: cancelled, timed out, our side's error, out of
/// memory, or its own exit status or signal.
fn verdict(
    l: &Launch<'_>,
    shown: &str,
    cell: Option<&Cell>,
    ended: RunEnd,
    stderr_tail: String,
) -> Result<()> {
    let RunEnd {
        timed_out,
        status,
        fed,
        consumed,
    } = ended;
    if l.cancel.load(Ordering::Relaxed) {
        return Err(Error::Cancelled);
    }
    if timed_out {
        return Err(Error::Program {
            message: format!(
                "{} `{shown}` was killed after {} s without reading input, writing output or reporting status, on {}",
                l.role,
                l.timeout.as_secs(),
                l.context
            ),
            exit: Some(Ended::Timeout(l.timeout.as_secs())),
            stderr_tail,
        });
    }
    // Our side's errors first: when feeding or collecting failed we killed the process, and
    // its exit status says nothing about the cause.
    let status = status.ctx(|| format!("waiting for {} `{shown}`", l.role))?;
    // Out of memory explains everything after it: a broken pipe, an exit status, a signal.
    if let Some(oom) = cell.and_then(|c| c.out_of_memory()) {
        if !status.success() || fed.is_err() || consumed.is_err() {
            return Err(Error::Program {
                message: format!("{} `{shown}` was killed: {oom}, on {}", l.role, l.context),
                exit: Some(Ended::OutOfMemory(oom.to_string())),
                stderr_tail,
            });
        }
    }
    fed?;
    consumed?;
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let (how, exit) = match (status.code(), status.signal()) {
            (Some(code), _) => (format!("exited with status {code}"), Ended::Exit(code)),
            (None, Some(sig)) => {
                let name = signal_name(sig);
                (
                    format!("was killed by signal {sig} ({name})"),
                    Ended::Signal(sig, name),
                )
            }
            _ => ("failed".to_string(), Ended::Unknown),
        };
        let message = format!("{} `{shown}` {how} on {}", l.role, l.context);
        return Err(Error::Program {
            message,
            exit: Some(exit),
            stderr_tail,
        });
    }
    Ok(())
}

/// A name for an attempt's cgroup, unique in this process: a map's mapper and the combiners
/// of its spills may run at once.
fn cell_name(l: &Launch<'_>) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // The attempt's name: its directory's, or, for the task half of one, its parent's.
    let dir = match l.dir.file_name() {
        Some(n) if n == "task" => l.dir.parent().and_then(Path::file_name),
        n => n,
    };
    let dir = dir.map(|n| n.to_string_lossy()).unwrap_or_default();
    format!("{dir}.{}.{}", l.role, NEXT.fetch_add(1, Ordering::Relaxed))
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGKILL => "SIGKILL",
        libc::SIGTERM => "SIGTERM",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGABRT => "SIGABRT",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGINT => "SIGINT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        _ => "signal",
    }
}
