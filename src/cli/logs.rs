//! `shoal logs JOB [TASK] [--attempt N] [--failed] [--setup]`: the kept stderr of a job's
//! attempts (or its setups' output), from whichever node kept it, asked of any node. Each
//! log is printed after a `==> … <==` line naming task, attempt, node and state; on a
//! terminal, control characters are shown escaped (`--raw` prints them as they are).

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::cli::exit::EXIT_UNREACHABLE;
use crate::cli::http::{fail, usage, AsyncRead, Client, ClientError, NodeUrls};

/// `shoal logs` flags.
#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// The job id (`j-…`), or enough of its first or last digits to name one job.
    job: String,
    /// Only this task (`m-00003`, `r-00000`).
    task: Option<String>,
    /// Only this attempt (from 1).
    #[arg(long)]
    attempt: Option<u32>,
    /// Only attempts that failed.
    #[arg(long)]
    failed: bool,
    /// The output of the job's --setup on each node that ran it, instead of attempts.
    #[arg(long, conflicts_with_all = ["task", "attempt", "failed"])]
    setup: bool,
    /// Print the logs' bytes as they are, even on a terminal (where control characters, a
    /// task's escape sequences among them, are otherwise shown escaped: `\x1b`). Into a pipe
    /// or a file they always go raw.
    #[arg(long)]
    raw: bool,
}

/// `text` for a terminal: every control character but newline and tab written as an escape
/// (`\x1b`, `\u{9b}`), so a task's output cannot move the cursor, retitle the window or
/// hide lines; bytes that are not UTF-8 as `\xNN` too.
pub fn escaped(text: &[u8]) -> Vec<u8> {
    use std::fmt::Write as _;
    let mut out = String::with_capacity(text.len());
    for chunk in text.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' | '\t' => out.push(c),
                c if c.is_control() && u32::from(c) < 0x80 => {
                    let _ = write!(out, "\\x{:02x}", u32::from(c));
                }
                c if c.is_control() => {
                    let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\x{b:02x}");
        }
    }
    out.into_bytes()
}

/// A body as bytes.
struct Bytes;

impl AsyncRead<Vec<u8>> for Bytes {
    async fn read(&self, resp: reqwest::Response) -> Result<Vec<u8>, ClientError> {
        resp.bytes()
            .await
            .map(|b| b.to_vec())
            .map_err(|e| ClientError::Unreachable(format!("reading a log: {e}")))
    }
}

/// The logs to print: a header line and the log's address.
fn chosen(index: &Value, args: &LogsArgs) -> Vec<(String, String)> {
    let str_of = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_owned();
    if args.setup {
        return index["setups"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|s| {
                (
                    format!(
                        "==> setup of {} on node {} <==",
                        args.job,
                        str_of(s, "node")
                    ),
                    str_of(s, "log"),
                )
            })
            .collect();
    }
    index["attempts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| args.task.as_deref().is_none_or(|t| a["task"] == t))
        .filter(|a| args.attempt.is_none_or(|n| a["attempt"] == n))
        .filter(|a| !args.failed || a["state"] == "failed")
        .map(|a| {
            let error = a["error"]
                .as_str()
                .map(|e| format!(": {}", e.lines().next().unwrap_or("")))
                .unwrap_or_default();
            (
                format!(
                    "==> {} attempt {} on node {}, {}{error} <==",
                    str_of(a, "task"),
                    a["attempt"],
                    str_of(a, "node"),
                    str_of(a, "state")
                ),
                str_of(a, "log"),
            )
        })
        .collect()
}

/// Run `shoal logs`.
pub fn logs(mut args: LogsArgs) -> ExitCode {
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("logs", &e),
    };
    args.job = match client.resolve_job(&args.job) {
        Ok(id) => id,
        Err(e) => return fail("logs", &e),
    };
    let index = match client.get_json(
        &format!("/api/v1/jobs/{}/logs", args.job),
        Duration::from_secs(30),
    ) {
        Ok(v) => v,
        Err(e) => return fail("logs", &e),
    };
    let logs = chosen(&index, &args);
    if logs.is_empty() {
        let what = if args.setup {
            "ran no setup (it has no --setup or --archive, or no task ran yet)"
        } else {
            "has no attempt that matches"
        };
        return usage("logs", format!("job {} {what}", args.job));
    }
    let terminal = !args.raw && std::io::stdout().is_terminal();
    let shown = |b: &[u8]| if terminal { escaped(b) } else { b.to_vec() };
    let mut out = std::io::stdout().lock();
    let mut missing = 0;
    for (header, path) in logs {
        let _ = out.write_all(&shown(header.as_bytes()));
        let _ = writeln!(out);
        match client.send(
            Duration::from_secs(120),
            |c, b| c.get(format!("{b}{path}")),
            Bytes,
        ) {
            Ok(text) => {
                let text = shown(&text);
                let _ = out.write_all(&text);
                if !text.is_empty() && !text.ends_with(b"\n") {
                    let _ = writeln!(out);
                }
            }
            Err(e) => {
                missing += 1;
                let _ = out.flush();
                eprintln!("shoal logs: {e}");
            }
        }
    }
    let _ = out.flush();
    if missing > 0 {
        return ExitCode::from(EXIT_UNREACHABLE);
    }
    ExitCode::SUCCESS
}
