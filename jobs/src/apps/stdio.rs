//! [`streaming_main`]: turn a user's own [`App`] into an executable that speaks the streaming
//! contract, so a Rust job runs on a cluster without rebuilding Shoal:
//! `--map 'myjob map' --reduce 'myjob reduce' --file myjob`.

use std::io::{self, BufRead, BufWriter, Write};
use std::process::ExitCode;

use super::{App, Values};
use crate::line::{split_tab, write_line};

/// Values of one key read from sorted `key<TAB>value` lines on stdin.
struct LineValues<'a, R: BufRead> {
    input: &'a mut R,
    key: Vec<u8>,
    /// The pending line (already read, belongs to this key or the next one).
    line: &'a mut Vec<u8>,
    pending: &'a mut bool,
    error: Option<io::Error>,
    value: Vec<u8>,
}

fn split_line(line: &[u8]) -> (&[u8], &[u8]) {
    split_tab(line.strip_suffix(b"\n").unwrap_or(line))
}

impl<R: BufRead> Values for LineValues<'_, R> {
    fn next_value(&mut self) -> Option<&[u8]> {
        if !*self.pending {
            self.line.clear();
            match self.input.read_until(b'\n', self.line) {
                Ok(0) => return None,
                Ok(_) => *self.pending = true,
                Err(e) => {
                    self.error = Some(e);
                    return None;
                }
            }
        }
        let (k, v) = split_line(self.line);
        if k != self.key.as_slice() {
            return None;
        }
        self.value.clear();
        self.value.extend_from_slice(v);
        *self.pending = false;
        Some(&self.value)
    }
}

fn reduce_stream(
    app: &dyn App,
    combine: bool,
    input: &mut impl BufRead,
    out: &mut impl Write,
) -> io::Result<()> {
    let mut line = Vec::new();
    let mut pending = false;
    let mut write_err = None;
    loop {
        if !pending {
            line.clear();
            if input.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            pending = true;
        }
        let key = split_line(&line).0.to_vec();
        let mut values = LineValues {
            input,
            key: key.clone(),
            line: &mut line,
            pending: &mut pending,
            error: None,
            value: Vec::new(),
        };
        if combine {
            app.combine(&key, &mut values, &mut |v| {
                if let Err(e) = write_line(out, &key, v) {
                    write_err.get_or_insert(e);
                }
            });
        } else {
            app.reduce(&key, &mut values, &mut |k, v| {
                if let Err(e) = write_line(out, k, v) {
                    write_err.get_or_insert(e);
                }
            });
        }
        while values.next_value().is_some() {}
        if let Some(e) = values.error.take().or(write_err.take()) {
            return Err(e);
        }
    }
}

/// Run `app` as a streaming mapper (`argv[1] == "map"`), reducer (`"reduce"`) or combiner
/// (`"combine"`) over stdin/stdout. The mapper's input name is `SHOAL_INPUT_FILE`.
pub fn streaming_main(app: &dyn App) -> ExitCode {
    let role = std::env::args().nth(1).unwrap_or_default();
    let stdin = io::stdin();
    let mut input = io::BufReader::with_capacity(256 << 10, stdin.lock());
    let mut out = BufWriter::with_capacity(256 << 10, io::stdout().lock());
    let result = match role.as_str() {
        "map" => {
            let name = std::env::var("SHOAL_INPUT_FILE").unwrap_or_default();
            let mut line = Vec::new();
            let mut write_err = None;
            loop {
                line.clear();
                match input.read_until(b'\n', &mut line) {
                    Ok(0) => break Ok(()),
                    Ok(_) => {}
                    Err(e) => break Err(e),
                }
                let body = line.strip_suffix(b"\n").unwrap_or(&line);
                app.map(name.as_bytes(), body, &mut |k, v| {
                    if let Err(e) = write_line(&mut out, k, v) {
                        write_err.get_or_insert(e);
                    }
                });
                if let Some(e) = write_err.take() {
                    break Err(e);
                }
            }
        }
        "reduce" => reduce_stream(app, false, &mut input, &mut out),
        "combine" => reduce_stream(app, true, &mut input, &mut out),
        _ => {
            eprintln!(
                "usage: {} map|reduce|combine  (a Shoal streaming app)",
                std::env::args().next().unwrap_or_default()
            );
            return ExitCode::from(2);
        }
    };
    match result.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{role}: {e}");
            ExitCode::FAILURE
        }
    }
}
