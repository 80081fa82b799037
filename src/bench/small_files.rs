//! `shoal bench small-files`: many small input files (rotated logs, one file per day or per
//! host) on a 3-node loopback cluster. 2,000 files of about 1 KB, native word count: the
//! upload (from the command's start until the job is accepted) and the whole job (until
//! `--wait` returns) are timed, one split per file and with `--combine-files`, against
//! `shoal run` on the same files; every output is checked against `shoal run`'s.

use std::process::Command;
use std::time::Instant;

use clap::Args;

use crate::demo::corpus::read_counts;

/// `shoal bench small-files` flags.
#[derive(Debug, Args)]
pub struct SmallFilesArgs {
    /// Input files.
    #[arg(long, default_value_t = 2000)]
    files: usize,
    /// Bytes per file (about; whole lines).
    #[arg(long, default_value_t = 1000)]
    file_bytes: u64,
}

/// Run `shoal bench small-files`.
pub fn run(args: SmallFilesArgs) -> anyhow::Result<bool> {
    super::in_kept_dir_on_error(|dir| measure_small_files(&args, dir))
}

fn measure_small_files(args: &SmallFilesArgs, dir: &std::path::Path) -> anyhow::Result<bool> {
    let input = dir.join("logs");
    std::fs::create_dir_all(&input)?;
    for f in 0..args.files {
        crate::demo::corpus::generate(
            &input.join(format!("host-{f:05}.log")),
            args.file_bytes,
            5_000,
            f as u64,
        )?;
    }
    let total_kb = args.files as u64 * args.file_bytes / 1000;
    println!(
        "word count of {} files of ~{} bytes ({total_kb} KB) on a 3-node loopback cluster",
        args.files, args.file_bytes
    );
    let exe = std::env::current_exe()?;
    let local_out = dir.join("out-run");
    let local = super::measure_local_wordcount(&input, &local_out, &[])?;
    let want = read_counts(&local_out)?;
    println!("  shoal run (one process)        {:>6.2} s", local.secs);
    let (_cluster, url) = super::cluster::start(dir)?;
    let mut runs: Vec<(f64, u64)> = Vec::new();
    for (name, extra, goal) in [
        ("one split per file", None, 3.0),
        ("--combine-files", Some("--combine-files"), 1.0),
    ] {
        let out = dir.join(format!("out-{}", name.replace(' ', "-")));
        let t = Instant::now();
        let o = Command::new(&exe)
            .args(["submit", "--node", &url, "--app", "wordcount", "-R", "3"])
            .args(extra)
            .arg("--input")
            .arg(&input)
            .stderr(std::process::Stdio::null())
            .output()?;
        let upload = t.elapsed().as_secs_f64();
        anyhow::ensure!(o.status.success(), "submitting ({name}) failed");
        let id = String::from_utf8_lossy(&o.stdout).trim().to_string();
        let status = Command::new(&exe)
            .args(["status", "--node", &url, &id, "--wait"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()?;
        let whole = t.elapsed().as_secs_f64();
        anyhow::ensure!(status.success(), "the job ({name}) failed");
        let fetched = Command::new(&exe)
            .args(["output", "--node", &url, &id, "--dir"])
            .arg(&out)
            .stderr(std::process::Stdio::null())
            .status()?;
        anyhow::ensure!(fetched.success(), "fetching the output ({name}) failed");
        anyhow::ensure!(
            read_counts(&out)? == want,
            "the cluster's word count ({name}) differs from shoal run's"
        );
        let maps = crate::demo::local_cluster::get_json(
            url.trim_start_matches("http://"),
            &format!("/api/v1/jobs/{id}"),
        )
        .and_then(|v| v["maps"]["total"].as_u64())
        .unwrap_or(0);
        println!(
            "  cluster, {name:<20} upload {upload:>5.2} s  whole job {whole:>5.2} s  ({maps} map task(s); goal < {goal:.0} s{})",
            if whole < goal { "" } else { ": NOT MET" }
        );
        runs.push((whole, maps));
    }
    // The same bytes either way: what the extra map tasks cost, each.
    if let [(split_each, many), (combined, few)] = runs[..] {
        if many > few {
            println!(
                "  per map task: {:.2} ms (assignment, start, report; the difference over the extra tasks)",
                (split_each - combined) * 1e3 / (many - few) as f64
            );
        }
    }
    println!("  outputs identical to shoal run's");
    Ok(true)
}
