//! `shoal bench`: benchmarks that print figures. Every contender runs as a child process so
//! its wall time and peak RSS are measured the same way (`wait4`), and every contender's
//! output is checked against a reference computed in the same run.

mod cluster;
mod failover;
mod growth;
mod local;
mod shuffle;
mod small_files;
mod terasort;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::Subcommand;

/// `shoal bench` subcommands.
#[derive(Debug, Subcommand)]
pub enum BenchCmd {
    /// Word count on one machine: shoal run against a hash count, Python and Unix pipelines.
    Local(local::LocalArgs),
    /// Failover: kill -9 the leader of a 3-node loopback cluster, time the new election.
    Failover(failover::FailoverArgs),
    /// The data plane: /shoal/data/1 against a bare libp2p stream and loopback TCP.
    Shuffle(shuffle::ShuffleArgs),
    /// Latency of a 10-line job on a 3-node loopback cluster (submit → --wait returns).
    Latency(cluster::LatencyArgs),
    /// Word count on a 3-node loopback cluster against `shoal run` on the same data.
    Cluster(cluster::ClusterArgs),
    /// The job stall after a manager's kill -9: until task completions resume.
    Stall(cluster::StallArgs),
    /// Many small input files (2,000 of 1 KB) on a 3-node loopback cluster: upload and job.
    SmallFiles(small_files::SmallFilesArgs),
    /// The sort benchmark: teragen, terasort, teravalidate with shoal run and on a 3-node
    /// loopback cluster, beside GNU sort and the disk.
    Terasort(terasort::TerasortArgs),
    /// Word count and terasort with shoal run at 1x, 4x and 16x a base size: time per GB
    /// and peak RSS at each.
    Growth(growth::GrowthArgs),
    /// The baseline: a plain multi-threaded hash-map word count (used by `bench local`).
    #[command(hide = true)]
    Hashcount {
        /// Input file.
        input: std::path::PathBuf,
        /// Output file: `word<TAB>count` lines, sorted.
        output: std::path::PathBuf,
        /// Threads.
        #[arg(long, default_value_t = 2)]
        threads: usize,
    },
}

/// Run a bench subcommand.
pub fn run(cmd: BenchCmd) -> ExitCode {
    let result = match cmd {
        BenchCmd::Local(args) => local::run(args),
        BenchCmd::Failover(args) => failover::run(args),
        BenchCmd::Shuffle(args) => shuffle::run(args),
        BenchCmd::Latency(args) => cluster::latency(args),
        BenchCmd::Cluster(args) => cluster::cluster(args),
        BenchCmd::Stall(args) => cluster::stall(args),
        BenchCmd::SmallFiles(args) => small_files::run(args),
        BenchCmd::Terasort(args) => terasort::run(args),
        BenchCmd::Growth(args) => growth::run(args),
        BenchCmd::Hashcount {
            input,
            output,
            threads,
        } => local::hashcount(&input, &output, threads),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("shoal bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Run `f` in a fresh temporary directory, kept (and named) when `f` fails so the nodes'
/// logs can be read.
pub fn in_kept_dir_on_error(f: impl FnOnce(&Path) -> anyhow::Result<bool>) -> anyhow::Result<bool> {
    let dir = tempfile::tempdir()?;
    let result = f(dir.path());
    if result.is_err() {
        let kept = dir.keep();
        eprintln!("the nodes' logs are kept in {}", kept.display());
    }
    result
}

/// The first line of a command's output: the job id `shoal submit` prints.
pub fn first_line(stdout: &[u8]) -> String {
    String::from_utf8_lossy(stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

/// The build profile of this binary, as the figures should name it.
pub fn profile() -> &'static str {
    if cfg!(debug_assertions) {
        "dev profile (the tests' build: optimised, with overflow checks)"
    } else {
        "release profile (what `cargo install` builds)"
    }
}

/// The directory a bench works in: `dir` (made if missing), or a temporary one, removed
/// when the second value drops.
pub fn work_dir(
    dir: Option<&Path>,
) -> anyhow::Result<(std::path::PathBuf, Option<tempfile::TempDir>)> {
    match dir {
        Some(d) => {
            std::fs::create_dir_all(d)?;
            Ok((d.to_path_buf(), None))
        }
        None => {
            let tmp = tempfile::Builder::new().prefix("shoal-bench-").tempdir()?;
            Ok((tmp.path().to_path_buf(), Some(tmp)))
        }
    }
}

/// Write `bytes` to a file in `dir` sequentially and sync it: the disk's write rate in
/// bytes a second.
pub fn disk_write_rate(dir: &Path, bytes: u64) -> anyhow::Result<f64> {
    use std::io::Write;
    let path = dir.join("disk-probe");
    let block: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let t = Instant::now();
    let mut f = std::fs::File::create(&path)?;
    let mut left = bytes;
    while left > 0 {
        let n = left.min(block.len() as u64) as usize;
        f.write_all(&block[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    let secs = t.elapsed().as_secs_f64();
    drop(f);
    std::fs::remove_file(&path)?;
    Ok(bytes as f64 / secs)
}

/// Wall time and peak RSS of one child process tree.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    /// Wall seconds.
    pub secs: f64,
    /// Peak resident set of the largest process in the tree, MiB.
    pub rss_mib: f64,
    /// CPU seconds (user and system) of the process and the children it waited for.
    pub cpu_secs: f64,
    /// Of those, user seconds.
    pub user_secs: f64,
    /// Of those, system seconds.
    pub sys_secs: f64,
}

fn seconds(t: libc::timeval) -> f64 {
    t.tv_sec as f64 + t.tv_usec as f64 / 1e6
}

/// CPU seconds (user and system) that the children this process waited for used, all told.
pub fn children_cpu_secs() -> f64 {
    // SAFETY: rusage is plain data filled in by getrusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    if unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) } != 0 {
        return 0.0;
    }
    seconds(usage.ru_utime) + seconds(usage.ru_stime)
}

/// CPU seconds (user and system) that process `pid` and the children it waited for used so
/// far, from /proc; `None` when it cannot be read.
pub fn cpu_secs_of(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command's closing parenthesis: state is field 3, utime 14, stime
    // 15, cutime 16, cstime 17.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    let ticks = fields
        .get(11..15)?
        .iter()
        .map(|f| f.parse::<f64>().ok())
        .sum::<Option<f64>>()?;
    // SAFETY: sysconf reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (hz > 0).then(|| ticks / hz as f64)
}

/// Run `cmd` to completion, measuring it; an error if it fails.
pub fn measure(cmd: &mut Command) -> anyhow::Result<Measured> {
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| anyhow::anyhow!("starting {cmd:?}: {e}"))?;
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: rusage is plain data filled in by wait4.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let r = loop {
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        if r == -1 && std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
            continue;
        }
        break r;
    };
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(
        r == pid,
        "waiting for {cmd:?}: {}",
        std::io::Error::last_os_error()
    );
    anyhow::ensure!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "{cmd:?} failed (wait status {status})"
    );
    Ok(Measured {
        secs,
        rss_mib: usage.ru_maxrss as f64 / 1024.0,
        cpu_secs: seconds(usage.ru_utime) + seconds(usage.ru_stime),
        user_secs: seconds(usage.ru_utime),
        sys_secs: seconds(usage.ru_stime),
    })
}

/// `shoal run --app wordcount -R 3` over `input` into `out`, with `extra` flags, measured:
/// the one-process baseline the cluster benches compare against.
pub fn measure_local_wordcount(
    input: &Path,
    out: &Path,
    extra: &[&str],
) -> anyhow::Result<Measured> {
    measure(
        Command::new(std::env::current_exe()?)
            .args(["run", "--app", "wordcount", "-R", "3"])
            .args(extra)
            .arg("--input")
            .arg(input)
            .arg("--output")
            .arg(out)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null()),
    )
}
