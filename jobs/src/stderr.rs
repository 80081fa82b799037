//! What a task writes to stderr: `reporter:counter:` and `reporter:status:` lines become
//! counters and status (each counts as activity for the inactivity timeout), the rest keeps
//! a bounded tail for error messages, and every byte goes to the attempt's log when it has
//! one.

use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;

use crate::counters::Counters;

/// Lines of stderr kept for error messages.
const TAIL_LINES: usize = 20;
/// Longest stderr line kept (the rest of the line is dropped).
const TAIL_LINE_BYTES: usize = 500;

#[derive(Default)]
pub(crate) struct StderrReport {
    pub counters: Counters,
    pub status: Option<String>,
    tail: VecDeque<String>,
    pub bytes: u64,
}

impl StderrReport {
    fn line(&mut self, line: &[u8], touch: &dyn Fn()) {
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end_matches(['\n', '\r']);
        let refused;
        let text = if let Some(rest) = text.strip_prefix("reporter:counter:") {
            match self.counters.add_reported(rest) {
                Ok(_) => {
                    touch();
                    return;
                }
                // Kept as plain stderr, the reason first (the tail keeps a line's start).
                Err(why) => {
                    refused = format!("not counted ({why}): {text}");
                    refused.as_str()
                }
            }
        } else if let Some(rest) = text.strip_prefix("reporter:status:") {
            self.status = Some(rest.to_owned());
            touch();
            return;
        } else {
            text
        };
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        let mut kept: String = text.chars().take(TAIL_LINE_BYTES).collect();
        if kept.len() < text.len() {
            kept.push('…');
        }
        self.tail.push_back(kept);
    }

    pub fn tail_text(&self) -> String {
        self.tail
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()
            .join("\n")
    }
}

fn warn_log(p: &Path, e: &io::Error) {
    tracing::warn!(log = %p.display(), error = %e, "cannot keep a task's stderr");
}

/// Read stderr to its end with bounded memory: lines longer than a few KiB are cut. With a
/// log, the bytes are kept there too (a log that cannot be written is given up, with a
/// warning: the run goes on).
pub(crate) fn read_stderr(
    mut err: impl Read,
    touch: &dyn Fn(),
    log: Option<&Path>,
) -> StderrReport {
    let mut report = StderrReport::default();
    let kept = log.map(|p| (p, crate::tasklog::Log::append(p)));
    let mut log = kept.and_then(|(p, l)| l.map_err(|e| warn_log(p, &e)).ok());
    let mut buf = vec![0u8; 64 << 10];
    let mut line: Vec<u8> = Vec::new();
    const LINE_CAP: usize = 4096;
    loop {
        let n = match err.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        report.bytes += n as u64;
        if let Some(l) = &mut log {
            if let Err(e) = l.write(&buf[..n]) {
                tracing::warn!(error = %e, "cannot keep a task's stderr");
                log = None;
            }
        }
        let mut chunk = &buf[..n];
        while let Some(i) = memchr::memchr(b'\n', chunk) {
            let room = LINE_CAP.saturating_sub(line.len());
            line.extend_from_slice(&chunk[..i.min(room)]);
            report.line(&line, touch);
            line.clear();
            chunk = &chunk[i + 1..];
        }
        let room = LINE_CAP.saturating_sub(line.len());
        line.extend_from_slice(&chunk[..chunk.len().min(room)]);
    }
    if !line.is_empty() {
        report.line(&line, touch);
    }
    if let Some(Err(e)) = log.map(crate::tasklog::Log::finish) {
        tracing::warn!(error = %e, "cannot keep a task's stderr");
    }
    report
}
