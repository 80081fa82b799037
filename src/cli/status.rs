//! `shoal status` and `shoal keygen`. The status client tries each `--node` in turn and
//! exits 3 when none answers.

use std::path::Path;
use std::process::ExitCode;

use clap::Args;

use crate::cli::exit::EXIT_UNREACHABLE;
use crate::cli::http::NodeUrls;
use crate::show::{print_view, view_text};
use shoal_node::http::jobs_view::JobView;
use shoal_node::http::view::ClusterView;

/// `shoal status` flags.
#[derive(Debug, Args)]
pub struct StatusArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// Print the JSON (of GET /api/v1/cluster, or of the job).
    #[arg(long)]
    json: bool,
    /// With a job id: wait until the job ends, showing its progress (exit status as
    /// `submit --wait`).
    #[arg(long, requires = "job")]
    wait: bool,
    /// Keep showing the cluster and the newest jobs, refreshed every second.
    #[arg(long, conflicts_with_all = ["job", "json"])]
    watch: bool,
    /// A job id (or enough of its first or last digits to name one job): show that job and
    /// its tasks instead of the cluster.
    job: Option<String>,
}

/// GET `path` from the first node that answers; the body and the node's URL.
pub fn get(nodes: &NodeUrls, path: &str) -> Result<(String, String), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .default_headers(nodes.headers()?)
        .build()
        .map_err(|e| e.to_string())?;
    let mut errors = Vec::new();
    for n in &nodes.nodes {
        let base = if n.starts_with("http://") || n.starts_with("https://") {
            n.clone()
        } else {
            format!("http://{n}")
        };
        let url = format!("{}{path}", base.trim_end_matches('/'));
        let r = runtime.block_on(async {
            let resp = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let status = resp.status();
            let body = resp.text().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(body)
            } else {
                Err(format!("HTTP {status}: {body}"))
            }
        });
        match r {
            Ok(body) => return Ok((body, base)),
            Err(e) => errors.push(format!("{base}: {e}")),
        }
    }
    Err(errors.join("; "))
}

/// Run `shoal status`.
pub fn run(args: StatusArgs) -> ExitCode {
    if let Some(job) = &args.job {
        return crate::cli::client::job_status(&args.nodes, job, args.json, args.wait);
    }
    if args.watch {
        return watch(&args.nodes);
    }
    let (body, _) = match get(&args.nodes, "/api/v1/cluster") {
        Ok(b) => b,
        Err(e) => {
            eprintln!("shoal status: could not reach the cluster: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    if args.json {
        println!("{body}");
        return ExitCode::SUCCESS;
    }
    match serde_json::from_str::<ClusterView>(&body) {
        Ok(v) => {
            print_view(&v);
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("shoal status: unexpected answer from the node: {e}");
            ExitCode::from(EXIT_UNREACHABLE)
        }
    }
}

/// `shoal status --watch`: the cluster and the newest jobs, every second — redrawn in place
/// on a terminal, printed again only when it changed when piped. Runs until interrupted.
fn watch(nodes: &NodeUrls) -> ExitCode {
    use std::io::IsTerminal;
    let mut client = match crate::cli::http::Client::new(nodes) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("shoal status: {e}");
            return ExitCode::from(EXIT_UNREACHABLE);
        }
    };
    let tty = std::io::stdout().is_terminal();
    let mut last = String::new();
    loop {
        let wait = std::time::Duration::from_secs(5);
        let text = match (
            client.get_view::<ClusterView>("/api/v1/cluster", wait),
            client.get_view::<Vec<JobView>>("/api/v1/jobs?tasks=false", wait),
        ) {
            (Ok(v), Ok(jobs)) => format!(
                "{}\n{}",
                view_text(&v),
                crate::cli::client::jobs_text(&jobs, 15)
            ),
            (Err(e), _) | (_, Err(e)) => format!("{e}\n"),
        };
        if text != last {
            if tty {
                print!("\x1b[H\x1b[2J{text}");
            } else {
                println!("{text}");
            }
            let _ = std::io::Write::flush(&mut std::io::stdout());
            last = text;
        }
        // Piped into `head`, an unchanged view would never write again to learn that the
        // reader left: ask the pipe.
        if !tty && stdout_reader_gone() {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(std::time::Duration::from_secs(1));
    }
}

/// Whether stdout is a pipe whose reading end is closed.
fn stdout_reader_gone() -> bool {
    let mut fd = libc::pollfd {
        fd: libc::STDOUT_FILENO,
        events: 0,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut fd, 1, 0) };
    n > 0 && fd.revents & libc::POLLERR != 0
}

/// Write a new cluster key to `path` (refusing to overwrite one).
pub fn keygen(path: &Path) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut bytes = [0u8; 32];
    rand::fill(&mut bytes);
    let key = shoal_net::PreSharedKey::new(bytes);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", path.display()))?;
    writeln!(f, "{key}")?;
    eprintln!(
        "wrote a cluster key to {} (fingerprint {}); give it to every node with --cluster-key",
        path.display(),
        key.fingerprint()
    );
    Ok(())
}
