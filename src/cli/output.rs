//! `shoal output JOB [--dir DIR]`: a job's part files, each checked against the size and
//! checksum the job table recorded before it counts as fetched. A download that breaks off
//! or arrives corrupt is tried again from another holder; into a directory, every part is
//! synced before `_SUCCESS` is written.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;

use crate::cli::http::{error_text, fail, usage, AsyncRead, Client, ClientError, NodeUrls};
use shoal_node::sync::Locked;

/// `shoal output` flags.
#[derive(Debug, Args)]
pub struct OutputArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// The job id (`j-…`), or enough of its first or last digits to name one job.
    job: String,
    /// Where to write the part files (absent or empty). Without it the part files are
    /// written to stdout one after another, in order.
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Tries at a part file whose download breaks off or arrives corrupt (each try starts at
/// another holder).
const PART_TRIES: usize = 3;

/// Fetch every part file of `id` into `dir`, each checked against its size and checksum and
/// synced, then `_SUCCESS` (synced, with the directory). Returns the number of parts.
pub fn fetch_output(client: &mut Client, id: &str, dir: &Path) -> Result<usize, ClientError> {
    let local = |e: std::io::Error| ClientError::Http {
        status: 400,
        message: format!("{}: {e}", dir.display()),
    };
    let parts = part_list(client, id)?;
    std::fs::create_dir_all(dir).map_err(local)?;
    for part in &parts {
        let target = dir.join(&part.name);
        let tmp = dir.join(format!(".{}.tmp", part.name));
        let mut tried = Vec::new();
        for n in 0..PART_TRIES {
            let file = std::fs::File::create(&tmp).map_err(local)?;
            let sync = file.try_clone().map_err(local)?;
            match fetch_part(client, id, part, n, Box::new(file)) {
                Ok(()) => {
                    sync.sync_all().map_err(local)?;
                    tried.clear();
                    break;
                }
                Err(e @ ClientError::Http { .. }) => return Err(e),
                Err(e) => {
                    eprintln!("{}: {e}", part.name);
                    tried.push(e.to_string());
                }
            }
        }
        if !tried.is_empty() {
            let _ = std::fs::remove_file(&tmp);
            return Err(ClientError::Unreachable(format!(
                "{} could not be fetched intact in {PART_TRIES} tries: {}",
                part.name,
                tried.join("; ")
            )));
        }
        std::fs::rename(&tmp, &target).map_err(local)?;
    }
    std::fs::File::create(dir.join("_SUCCESS"))
        .and_then(|f| f.sync_all())
        .and_then(|()| std::fs::File::open(dir)?.sync_all())
        .map_err(local)?;
    Ok(parts.len())
}

/// A part file as the node lists it.
struct Listed {
    name: String,
    size: Option<u64>,
    checksum: Option<u32>,
}

/// `id`'s part files, in order. A name other than `part-NNNNN` is refused: it becomes a
/// path on this machine.
fn part_list(client: &mut Client, id: &str) -> Result<Vec<Listed>, ClientError> {
    let list = client.get_json(
        &format!("/api/v1/jobs/{id}/output"),
        Duration::from_secs(10),
    )?;
    let mut parts = Vec::new();
    for p in list["parts"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or_default();
        if !is_part_name(name) {
            return Err(ClientError::Unreachable(format!(
                "the node listed a part named {name:?}, not part-NNNNN; nothing was written"
            )));
        }
        parts.push(Listed {
            name: name.to_owned(),
            size: p["size"].as_u64(),
            checksum: p["checksum"].as_str().and_then(parse_checksum),
        });
    }
    Ok(parts)
}

/// Whether `name` is `part-` and five or more digits, with `.gz` or `.zst` under
/// `--compress-output`: the only names written into the output directory.
pub fn is_part_name(name: &str) -> bool {
    let name = [".gz", ".zst"]
        .iter()
        .find_map(|ext| name.strip_suffix(ext))
        .unwrap_or(name);
    let digits = name.strip_prefix("part-").unwrap_or_default();
    digits.len() >= 5 && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `crc32c=` and eight hex digits.
pub fn parse_checksum(s: &str) -> Option<u32> {
    u32::from_str_radix(s.strip_prefix("crc32c=")?, 16).ok()
}

/// Download `part` of `id` into `to` (try `n`), checked against its size and checksum.
fn fetch_part(
    client: &mut Client,
    id: &str,
    part: &Listed,
    n: usize,
    to: Box<dyn Write + Send>,
) -> Result<(), ClientError> {
    let path = format!("/api/v1/jobs/{id}/output/{}?try={n}", part.name);
    client.send(
        Duration::from_secs(24 * 3600),
        |c, b| c.get(format!("{b}{path}")),
        ToWriter {
            to: std::sync::Mutex::new(Some(to)),
            name: part.name.clone(),
            size: part.size,
            checksum: part.checksum,
        },
    )
}

/// Write every part file of `id` to stdout, in order. Returns the number of parts.
pub fn cat_output(client: &mut Client, id: &str) -> Result<usize, ClientError> {
    let parts = part_list(client, id)?;
    for part in &parts {
        fetch_part(client, id, part, 0, Box::new(std::io::stdout()))?;
    }
    Ok(parts.len())
}

/// A body written to a file or stdout, checked as it passes.
struct ToWriter {
    to: std::sync::Mutex<Option<Box<dyn Write + Send>>>,
    name: String,
    size: Option<u64>,
    checksum: Option<u32>,
}

impl AsyncRead<()> for ToWriter {
    async fn read(&self, mut resp: reqwest::Response) -> Result<(), ClientError> {
        let mut file = self
            .to
            .locked()
            .take()
            .ok_or_else(|| ClientError::Unreachable("the body was already read".into()))?;
        let checksum = resp
            .headers()
            .get(shoal_node::http::CHECKSUM_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(parse_checksum)
            .or(self.checksum);
        let (mut sum, mut n) = (shoal_jobs::checksum::Running::default(), 0u64);
        while let Some(chunk) = resp.chunk().await.map_err(|e| {
            ClientError::Unreachable(format!("the download broke off: {}", error_text(&e)))
        })? {
            sum.update(&chunk);
            n += chunk.len() as u64;
            file.write_all(&chunk).map_err(|e| ClientError::Http {
                status: 400,
                message: format!("writing the output: {e}"),
            })?;
        }
        if self.size.is_some_and(|s| s != n) || checksum.is_some_and(|c| c != sum.value()) {
            return Err(ClientError::Unreachable(format!(
                "{} arrived corrupt: {n} bytes with checksum {:08x}, {} bytes with {} listed",
                self.name,
                sum.value(),
                self.size.map_or("?".into(), |s| s.to_string()),
                checksum.map_or("none".into(), |c| format!("{c:08x}"))
            )));
        }
        file.flush().map_err(|e| ClientError::Http {
            status: 400,
            message: format!("writing the output: {e}"),
        })
    }
}

/// Run `shoal output`.
pub fn output(args: OutputArgs) -> ExitCode {
    if let Some(dir) = &args.dir {
        if let Err(e) = shoal_jobs::local::check_output_dir(dir) {
            return usage("output", e);
        }
    }
    let mut client = match Client::new(&args.nodes) {
        Ok(c) => c,
        Err(e) => return fail("output", &e),
    };
    let job = match client.resolve_job(&args.job) {
        Ok(id) => id,
        Err(e) => return fail("output", &e),
    };
    let fetched = match &args.dir {
        Some(dir) => fetch_output(&mut client, &job, dir),
        None => cat_output(&mut client, &job),
    };
    match fetched {
        Ok(n) => {
            if let Some(dir) = &args.dir {
                eprintln!("{n} part file(s) in {}", dir.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail("output", &e),
    }
}
