//! The cluster clients: `shoal submit`, `shoal status JOB`, `shoal jobs`, `shoal kill`
//! (`shoal output` is [`crate::cli::output`]). Each talks HTTP to the `--node`s in turn, moving on when one does not
//! answer. Exit codes are DESIGN.md's: 0 the job succeeded, 1 it failed or was killed, 2 bad
//! usage or input rejected, 3 the cluster could not be reached.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cli::exit::{EXIT_FAILED, EXIT_UNREACHABLE};
use crate::cli::http::{fail, usage, view_of, Client, ClientError, JsonBody, NodeUrls};
use crate::cli::jobargs::JobArgs;
use crate::cli::output::fetch_output;
use shoal_jobs::split::InputFile;
use shoal_node::http::jobs_view::{JobView, Progress};
use shoal_node::http::submit::CHAIN_PREFIX;
use shoal_node::http::view::ClusterView;

/// `shoal submit` flags.
#[derive(Debug, Args)]
pub struct SubmitArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    #[command(flatten)]
    job: JobArgs,
    /// Copies of each split and part file on other nodes.
    #[arg(help_heading = "Output", long, default_value_t = shoal_jobs::spec::DEFAULT_REPLICATION, env = "SHOAL_REPLICATION")]
    replication: u32,
    /// Wait until the job ends, showing progress; exit 0 only if it succeeded.
    #[arg(help_heading = "Output", long)]
    wait: bool,
    /// With --wait: fetch the output into DIR (part files and `_SUCCESS`).
    #[arg(help_heading = "Output", long)]
    output: Option<PathBuf>,
}

/// `shoal status JOB`, `shoal jobs`, `shoal kill JOB` flags.
#[derive(Debug, Args)]
pub struct JobRef {
    #[command(flatten)]
    nodes: NodeUrls,
    /// The job id (`j-…`), or enough of its first or last digits to name one job.
    job: String,
}

/// `shoal jobs` flags.
#[derive(Debug, Args)]
pub struct JobsArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// Print the JSON of GET /api/v1/jobs.
    #[arg(long)]
    json: bool,
}

/// Run `shoal submit`.
pub fn submit(args: SubmitArgs) -> ExitCode {
    let wait = args.wait || args.output.is_some();
    if let Some(out) = &args.output {
        if let Err(e) = shoal_jobs::local::check_output_dir(out) {
            return usage("submit", e);
        }
    }
    let mut spec = match args.job.to_spec() {
        Ok(s) => s,
        Err(e) => return usage("submit", e),
    };
    for w in args.job.warnings() {
        eprintln!("{w}");
    }
    spec.replication = args.replication;
    let local: Vec<String> = spec
        .inputs
        .iter()
        .filter(|i| !i.starts_with(CHAIN_PREFIX) && shoal_jobs::inplace::in_place(i).is_none())
        .cloned()
        .collect();
    let files = match shoal_jobs::split::expand_inputs(&local) {
        Ok(f) => f,
        Err(e) => return usage("submit", e),
    };
    let archives: Vec<InputFile> = match args.job.archive_files() {
        Ok(paths) => paths
            .into_iter()
            .zip(&spec.archives)
            .map(|(path, a)| InputFile {
                path,
                name: a.name.clone(),
                len: a.len,
            })
            .collect(),
        Err(e) => return usage("submit", e),
    };
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("submit", &e),
    };
    let spec_bytes = shoal_net::codec::encode(&spec);
    let total: u64 = files.iter().map(|f| f.len).sum();
    // Every input uploaded (none read in place or chained): its size is known here.
    warn_of_reducers(
        &mut client,
        spec.reducers,
        (local.len() == spec.inputs.len()).then_some(total),
    );
    let started = std::time::Instant::now();
    let answer = client.send(
        Duration::from_secs(24 * 3600),
        |c, base| {
            let (content_type, body) =
                crate::cli::upload::multipart(spec_bytes.clone(), archives.clone(), files.clone());
            c.post(format!("{base}/api/v1/jobs"))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(reqwest::Body::wrap_stream(body))
        },
        JsonBody,
    );
    let id = match answer {
        Ok(v) => match v["id"].as_str() {
            Some(id) => id.to_owned(),
            None => {
                return fail(
                    "submit",
                    &ClientError::Unreachable(format!("an answer without a job id: {v}")),
                )
            }
        },
        Err(e) => return fail("submit", &e),
    };
    if wait {
        // Before the id is out: whoever reads it may press Ctrl-C at once.
        interrupt_notice(&id);
    }
    println!("{id}");
    let _ = std::io::stdout().flush();
    eprintln!(
        "submitted {id} to {} ({} input file(s), {total} bytes, {:.2} s)",
        client.node(),
        files.len(),
        started.elapsed().as_secs_f64()
    );
    if !wait {
        return ExitCode::SUCCESS;
    }
    let code = wait_for(&mut client, &id);
    if code != ExitCode::SUCCESS {
        return code;
    }
    match &args.output {
        Some(dir) => match fetch_output(&mut client, &id, dir) {
            Ok(n) => {
                eprintln!("output of {id}: {n} part file(s) in {}", dir.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail("submit", &e),
        },
        None => ExitCode::SUCCESS,
    }
}

/// Reducer counts at or below this never draw a warning.
const FEW_REDUCERS: u32 = 8;

/// Input bytes below which a reducer has too little to do to be worth its task.
const BYTES_PER_REDUCER: u64 = 64 * 1024;

/// Warn on stderr when `reducers` are far beyond the job's `input` (bytes, when known) or
/// the cluster's slots, asked of the cluster.
fn warn_of_reducers(client: &mut Client, reducers: u32, input: Option<u64>) {
    if reducers <= FEW_REDUCERS {
        return;
    }
    let slots = client
        .get_view::<ClusterView>("/api/v1/cluster", Duration::from_secs(10))
        .ok()
        .and_then(|v| cluster_slots(&v));
    if let Some(w) = reducer_warning(reducers, input, slots) {
        eprintln!("{w}");
    }
}

/// The task slots of the cluster `v` shows, from its nodes' heartbeats; `None` unless the
/// answering node heard every member's (the manager does).
fn cluster_slots(v: &ClusterView) -> Option<u32> {
    v.nodes.iter().try_fold(0u32, |sum, n| {
        let slots = match &n.heartbeat {
            Some(h) => h.slots,
            None if n.id == v.this.id => v.slots.total,
            None => return None,
        };
        Some(sum.saturating_add(slots))
    })
}

/// A warning for `reducers` far beyond the job's input (`input` bytes, when known) or
/// the cluster's `slots` (when known): each reducer is a task and a part file of its own.
pub fn reducer_warning(reducers: u32, input: Option<u64>, slots: Option<u32>) -> Option<String> {
    if reducers <= FEW_REDUCERS {
        return None;
    }
    let mut why = Vec::new();
    if let Some(bytes) = input.filter(|&b| b / BYTES_PER_REDUCER < u64::from(reducers)) {
        why.push(format!(
            "the input is {} ({} a reducer)",
            human(bytes),
            human(bytes / u64::from(reducers))
        ));
    }
    if let Some(slots) = slots.filter(|&s| s > 0 && u64::from(reducers) > 4 * u64::from(s)) {
        why.push(format!(
            "the cluster runs {slots} tasks at once, so they run in {} waves",
            reducers.div_ceil(slots)
        ));
    }
    if why.is_empty() {
        return None;
    }
    let fewer = slots
        .filter(|&s| s > 0)
        .unwrap_or(FEW_REDUCERS)
        .min(reducers)
        .max(1);
    Some(format!(
        "warning: -R {reducers} is far more reducers than this job needs: {}. Each reducer is a task and a part file of its own; -R {fewer} would finish sooner. Submitting anyway.",
        why.join(", and ")
    ))
}

/// What a client waiting for a job says besides its progress: a change of manager, and
/// finished maps that run again (their output was lost with a node), so progress that goes
/// backwards is explained.
#[derive(Debug, Default)]
pub struct News {
    /// The manager last seen.
    manager: Option<String>,
    /// Maps done when last seen.
    maps_done: usize,
}

impl News {
    /// What changed since the last call, given the job `v` and its cluster's `manager` now
    /// (`None` when not known, as during an election).
    pub fn of(&mut self, v: &JobView, manager: Option<String>) -> Vec<String> {
        let mut said = Vec::new();
        if let Some(now) = manager {
            if let Some(before) = self.manager.as_ref().filter(|b| **b != now) {
                said.push(format!(
                    "{}: the manager changed from {before} to {now}; the job goes on from the replicated job table",
                    v.id
                ));
            }
            self.manager = Some(now);
        }
        if v.maps.done < self.maps_done {
            said.push(format!(
                "{}: {} finished map(s) run again: their output was lost with a node",
                v.id,
                self.maps_done - v.maps.done
            ));
        }
        self.maps_done = v.maps.done;
        said
    }
}

fn progress_line(v: &JobView) -> String {
    let c = |name: &str| u64::try_from(v.counter("shoal", name).unwrap_or(0)).unwrap_or(0);
    format!(
        "{} {}: maps {} reduces {} · read {} · shuffled {} · wrote {}",
        v.id,
        v.state,
        done_of(&v.maps),
        done_of(&v.reduces),
        human(c("map_input_bytes")),
        human(c("shuffle_fetched_bytes").saturating_add(c("shuffle_local_bytes"))),
        human(c("output_bytes"))
    )
}

/// Milliseconds since the epoch, now.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// How long job `v` ran (ended) or has run (`now`), ms.
fn elapsed_ms(v: &JobView, now: u64) -> u64 {
    v.finished_ms.unwrap_or(now).saturating_sub(v.submitted_ms)
}

/// A duration for people: `850 ms`, `12.3 s`, `4m05s`, `2h07m`.
pub fn duration(ms: u64) -> String {
    match ms {
        0..1_000 => format!("{ms} ms"),
        1_000..60_000 => format!("{:.1} s", ms as f64 / 1000.0),
        60_000..3_600_000 => format!("{}m{:02}s", ms / 60_000, ms / 1000 % 60),
        _ => format!("{}h{:02}m", ms / 3_600_000, ms / 60_000 % 60),
    }
}

/// Milliseconds since the epoch as a UTC date and time, `2026-12-07 17:03:34`.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let days = (secs / 86_400) as i64;
    let (h, m, s) = (secs / 3600 % 24, secs / 60 % 60, secs % 60);
    // Days since 1970-01-01 to a civil date (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02}")
}

/// `done/total` of a phase.
fn done_of(p: &Progress) -> String {
    format!("{}/{}", p.done, p.total)
}

/// Bytes for people: `512 B`, `3.2 MiB`.
fn human(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut x = b as f64 / 1024.0;
    let mut u = 0;
    while x >= 1024.0 && u < UNITS.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.1} {}", UNITS[u])
}

/// What the first Ctrl-C while waiting for job `id` says (from now on).
fn interrupt_notice(id: &str) {
    crate::cli::interrupt::on_first(&format!(
        "\nshoal: job {id} still runs on the cluster. Follow it: shoal status --wait {id}; \
         kill it: shoal kill {id}. Ctrl-C again to kill it or leave it running.\n"
    ));
}

/// Wait for job `id` to end, showing progress on stderr. 0 if it succeeded.
fn wait_for(client: &mut Client, id: &str) -> ExitCode {
    interrupt_notice(id);
    let tty = std::io::stderr().is_terminal();
    let bar = tty.then(|| {
        let b = indicatif::ProgressBar::new(0);
        b.set_style(
            indicatif::ProgressStyle::with_template("{msg} [{bar:30}] {pos}/{len} tasks {elapsed}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        b
    });
    let mut last = String::new();
    let mut news = News::default();
    loop {
        if crate::cli::interrupt::count() >= 2 {
            if let Some(b) = &bar {
                b.abandon();
            }
            return interrupted(client, id);
        }
        let path = format!("/api/v1/jobs/{id}?wait=1000&tasks=false");
        let v: JobView = match client.get_view(&path, Duration::from_secs(10)) {
            Ok(v) => v,
            Err(ClientError::Unreachable(e)) => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                eprintln!(
                    "shoal: the node went away ({e}); job {id} may still be running: check with `shoal status {id}` on another node"
                );
                return ExitCode::from(EXIT_UNREACHABLE);
            }
            Err(e) => return fail("submit", &e),
        };
        let manager = client
            .get_view::<ClusterView>("/api/v1/cluster", Duration::from_secs(5))
            .ok()
            .and_then(|c| c.leader.map(|l| l.id));
        for said in news.of(&v, manager) {
            match &bar {
                Some(b) => b.println(&said),
                None => eprintln!("{said}"),
            }
        }
        let line = progress_line(&v);
        if let Some(b) = &bar {
            let n = |k: usize| u64::try_from(k).unwrap_or(u64::MAX);
            b.set_length(n(v.maps.total).saturating_add(n(v.reduces.total)));
            b.set_position(n(v.maps.done).saturating_add(n(v.reduces.done)));
            b.set_message(format!("{id} {}", v.phase));
        } else if line != last {
            eprintln!("{line}");
        }
        last = line;
        match v.state.as_str() {
            "succeeded" => {
                if let Some(b) = &bar {
                    b.finish();
                }
                eprintln!("{id} succeeded");
                return ExitCode::SUCCESS;
            }
            "failed" | "killed" => {
                if let Some(b) = &bar {
                    b.abandon();
                }
                eprintln!(
                    "{id} {}: {}",
                    v.state,
                    v.error.as_deref().unwrap_or("no reason given")
                );
                return ExitCode::from(EXIT_FAILED);
            }
            _ => {}
        }
    }
}

/// After a second Ctrl-C while waiting for job `id`: on a terminal, ask whether to kill it;
/// else (or when the answer is no) leave it running. Exits 130, as a command interrupted.
fn interrupted(client: &mut Client, id: &str) -> ExitCode {
    const INTERRUPTED: u8 = 130;
    let stdin = std::io::stdin();
    let kill = stdin.is_terminal() && {
        eprint!("shoal: kill job {id}? [y/N] ");
        let mut answer = String::new();
        stdin.read_line(&mut answer).is_ok()
            && matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
    };
    if !kill {
        eprintln!("shoal: left job {id} running (shoal status --wait {id}, shoal kill {id})");
        return ExitCode::from(INTERRUPTED);
    }
    match kill_job(client, id) {
        Ok(()) => {
            eprintln!("shoal: {id} killed");
            ExitCode::from(INTERRUPTED)
        }
        Err(e) => fail("kill", &e),
    }
}

/// Ask the cluster to kill job `id`.
fn kill_job(client: &mut Client, id: &str) -> Result<(), ClientError> {
    let path = format!("/api/v1/jobs/{id}");
    client
        .send(
            Duration::from_secs(15),
            |c, b| c.delete(format!("{b}{path}")),
            JsonBody,
        )
        .map(|_| ())
}

/// Run `shoal kill`.
pub fn kill(args: JobRef) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("kill", &e),
    };
    let job = match client.resolve_job(&args.job) {
        Ok(id) => id,
        Err(e) => return fail("kill", &e),
    };
    match kill_job(&mut client, &job) {
        Ok(()) => {
            eprintln!("{job} killed");
            ExitCode::SUCCESS
        }
        Err(e) => fail("kill", &e),
    }
}

/// Run `shoal jobs`.
pub fn jobs(args: JobsArgs) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("jobs", &e),
    };
    // The table needs no task lists; --json shows the whole API answer.
    let path = if args.json {
        "/api/v1/jobs"
    } else {
        "/api/v1/jobs?tasks=false"
    };
    let v = match client.get_json(path, Duration::from_secs(10)) {
        Ok(v) => v,
        Err(e) => return fail("jobs", &e),
    };
    if args.json {
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    match view_of::<Vec<JobView>>(v) {
        Ok(jobs) => {
            print!("{}", jobs_text(&jobs, usize::MAX));
            ExitCode::SUCCESS
        }
        Err(e) => fail("jobs", &e),
    }
}

/// The newest `limit` jobs of a `GET /api/v1/jobs` answer as a table.
pub fn jobs_text(jobs: &[JobView], limit: usize) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<19} {:<10} {:<7} {:>11} {:>11} {:<20} {:>9} {:<12}  NAME",
        "JOB", "STATE", "PHASE", "MAPS", "REDUCES", "SUBMITTED (UTC)", "TIME", "OWNER"
    );
    let now = now_ms();
    for j in jobs.iter().take(limit) {
        let owner = match (j.user.as_str(), j.priority) {
            (u, p) if p != 0 => format!("{u} ({p:+})"),
            ("", _) => "-".to_owned(),
            (u, _) => u.to_owned(),
        };
        let _ = writeln!(
            out,
            "{:<19} {:<10} {:<7} {:>11} {:>11} {:<20} {:>9} {:<12}  {}",
            j.id,
            j.state,
            j.phase,
            done_of(&j.maps),
            done_of(&j.reduces),
            utc(j.submitted_ms),
            duration(elapsed_ms(j, now)),
            owner,
            j.name
        );
    }
    out
}

/// Run `shoal status JOB`.
pub fn job_status(nodes: &NodeUrls, job: &str, json: bool, wait: bool) -> ExitCode {
    let mut client = match Client::new(nodes) {
        Ok(c) => c,
        Err(e) => return fail("status", &e),
    };
    let job = &match client.resolve_job(job) {
        Ok(id) => id,
        Err(e) => return fail("status", &e),
    };
    if wait {
        let code = wait_for(&mut client, job);
        if code != ExitCode::SUCCESS {
            return code;
        }
    }
    let v = match client.get_json(&format!("/api/v1/jobs/{job}"), Duration::from_secs(10)) {
        Ok(v) => v,
        Err(e) => return fail("status", &e),
    };
    if json {
        println!("{v}");
        return ExitCode::SUCCESS;
    }
    match view_of::<JobView>(v) {
        Ok(v) => {
            print!("{}", status_text(&v));
            match v.state.as_str() {
                "failed" | "killed" => ExitCode::from(EXIT_FAILED),
                _ => ExitCode::SUCCESS,
            }
        }
        Err(e) => fail("status", &e),
    }
}

/// `shoal status JOB` as text: the progress line, the error, a row per attempt.
fn status_text(v: &JobView) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "{}", progress_line(v));
    let ran = if v.finished_ms.is_some() {
        "ran"
    } else {
        "running for"
    };
    let _ = writeln!(
        out,
        "submitted {} UTC, {ran} {}",
        utc(v.submitted_ms),
        duration(elapsed_ms(v, now_ms()))
    );
    if let Some(e) = &v.error {
        let _ = writeln!(out, "error: {e}");
    }
    for (group, names) in &v.counters {
        let line: Vec<String> = names.iter().map(|(n, c)| format!("{n}={c}")).collect();
        let _ = writeln!(out, "counters {group}: {}", line.join(" "));
    }
    let _ = writeln!(
        out,
        "{:<8} {:<8} {:>7} {:<17} {:>10}  NOTE",
        "TASK", "STATE", "ATTEMPT", "NODE", "TIME (ms)"
    );
    for t in v.tasks.iter().flatten() {
        for a in &t.attempts {
            let ms = match a.end_ms {
                Some(e) => e.saturating_sub(a.start_ms).to_string(),
                None => "-".into(),
            };
            let mut note = Vec::new();
            if a.backup {
                note.push("backup".to_string());
            }
            if a.lost {
                note.push("lost".to_string());
            }
            if let Some(e) = a.exit.as_ref().or(a.error.as_ref()) {
                note.push(e.lines().next().unwrap_or("").to_string());
            }
            let _ = writeln!(
                out,
                "{:<8} {:<8} {:>7} {:<17} {:>10}  {}",
                t.id,
                a.state,
                a.attempt,
                a.node,
                ms,
                note.join(", ")
            );
        }
    }
    out
}
