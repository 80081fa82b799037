//! `shoal bench terasort`: the sort benchmark end to end, at a size you pass. In one run:
//! the disk's sequential write rate; `teragen` → `terasort` → `teravalidate` with `shoal run`;
//! GNU sort on the same records given the memory `shoal run` used; and the same three jobs
//! on a 3-node loopback cluster, the sort reading the generated parts (`shoal://JOB`). Every sorted output is validated (order within and across parts, the
//! record count, the checksum the generator predicts); the figures are each time, the
//! ratios to GNU sort and to the disk, peak RSS, user and sys time, and where the sort's
//! time goes by the job's counters.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use clap::Args;
use shoal_jobs::apps::tera;

use super::{measure, Measured};

/// `shoal bench terasort` flags.
#[derive(Debug, Args)]
pub struct TerasortArgs {
    /// Records to sort, in GB (10^9 bytes: 10 million records of 100 bytes a GB).
    #[arg(long, default_value_t = 1.0)]
    pub size_gb: f64,
    /// Map tasks of teragen (files it writes). By default one per 64 MiB of records (at
    /// least 16): each file is then a split's size, which the cluster's terasort reads
    /// where it is stored.
    #[arg(long)]
    pub gen_maps: Option<u64>,
    /// Reducers of terasort (its part files).
    #[arg(long, default_value_t = 2)]
    pub reducers: u32,
    /// Leave the 3-node cluster out.
    #[arg(long)]
    pub no_cluster: bool,
    /// Leave GNU sort out.
    #[arg(long)]
    pub no_gnu_sort: bool,
    /// The cluster jobs' `--replication`. 0 by default: on one machine every copy of a part
    /// is another write to the one disk (a real cluster writes them to other machines'
    /// disks at once), and `shoal run` keeps none; give 2, the jobs' default, to see them.
    #[arg(long, default_value_t = 0)]
    pub replication: u32,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

/// What one sort of the records measured.
pub struct SortFigures {
    /// Records sorted.
    pub rows: u64,
    /// The disk's sequential write rate, MB/s (10^6 bytes).
    pub disk_mb_s: f64,
    /// teragen with `shoal run`.
    pub gen: Measured,
    /// terasort with `shoal run`.
    pub sort: Measured,
    /// Whether teravalidate found the sorted records right.
    pub valid: bool,
}

impl SortFigures {
    /// Bytes of the records.
    pub fn bytes(&self) -> f64 {
        self.rows as f64 * tera::RECORD_BYTES as f64
    }

    /// The time a sort that spills once cannot beat on this disk: the records written
    /// twice (the spill and the output), read back from the page cache.
    pub fn disk_limit_secs(&self) -> f64 {
        2.0 * self.bytes() / 1e6 / self.disk_mb_s
    }
}

/// Run `shoal bench terasort`.
pub fn run(args: TerasortArgs) -> anyhow::Result<bool> {
    let (dir, _removed_on_drop) = super::work_dir(args.dir.as_deref())?;
    let rows = rows_of(args.size_gb)?;
    println!(
        "terasort of {rows} records ({:.2} GB), {} cores, shoal built with the {}",
        rows as f64 * 1e-7,
        shoal_jobs::pool::default_slots(),
        super::profile()
    );
    let bytes = rows * tera::RECORD_BYTES as u64;
    // The generated records, the maps' output, the sorted records and GNU sort's output
    // and temporary files, with a margin.
    enough_room(
        &dir,
        bytes.saturating_mul(if args.no_gnu_sort { 3 } else { 5 }),
        "shoal run and GNU sort",
    )?;
    let f = one_process(&dir, rows, &args)?;
    let mut ok = f.valid;
    println!(
        "  shoal run teragen / the disk writing the records once: {:.2}x the time",
        f.gen.secs / (f.bytes() / 1e6 / f.disk_mb_s)
    );
    let limit = f.disk_limit_secs();
    println!(
        "  shoal run terasort / the disk's limit for one spill ({limit:.2} s): {:.2}x (goal <= 1.5x: {})",
        f.sort.secs / limit,
        met(f.sort.secs <= 1.5 * limit)
    );
    if !args.no_gnu_sort {
        ok &= gnu_sort(&dir, &f)?;
    }
    let _ = std::fs::remove_dir_all(dir.join("gen"));
    let _ = std::fs::remove_dir_all(dir.join("sorted"));
    if !args.no_cluster {
        // Teragen's parts and their copies, the sort's splits (the parts read again), the
        // maps' output, the sorted parts and their copies.
        let copies = u64::from(args.replication.min(2)) + 1;
        enough_room(
            &dir,
            bytes.saturating_mul(2 * copies + 2),
            "the cluster's jobs",
        )?;
        ok &= on_cluster(&dir, &f, &args)?;
    }
    println!(
        "  every sorted output valid: {}",
        if ok { "yes" } else { "NO" }
    );
    Ok(ok)
}

/// The records in `size_gb` GB.
pub fn rows_of(size_gb: f64) -> anyhow::Result<u64> {
    anyhow::ensure!(
        size_gb.is_finite() && size_gb > 0.0 && size_gb <= 100_000.0,
        "--size-gb {size_gb}: give a size above 0 GB and at most 100,000 GB"
    );
    Ok(((size_gb * 1e9 / tera::RECORD_BYTES as f64) as u64).max(1))
}

/// The disk, then teragen, terasort and teravalidate with `shoal run` in `dir`.
pub fn one_process(dir: &Path, rows: u64, args: &TerasortArgs) -> anyhow::Result<SortFigures> {
    let bytes = rows * tera::RECORD_BYTES as u64;
    let disk_mb_s = super::disk_write_rate(dir, bytes)? / 1e6;
    println!("  the disk writes {disk_mb_s:.0} MB/s (a file of the records' size, synced)");
    let control = write_control(dir, rows, args.gen_maps.unwrap_or(gen_maps(rows)))?;
    let gen_dir = dir.join("gen");
    let gen = measure(&mut shoal_run(&control, &gen_dir, "teragen", 0))?;
    row("shoal run teragen", bytes, &gen);
    let sorted = dir.join("sorted");
    let mut cmd = shoal_run(&gen_dir, &sorted, "terasort", args.reducers);
    let summary = dir.join("terasort-summary.txt");
    cmd.stdout(std::fs::File::create(&summary)?);
    let sort = measure(&mut cmd)?;
    row(
        &format!("shoal run terasort -R {}", args.reducers),
        bytes,
        &sort,
    );
    where_the_time_goes(&std::fs::read_to_string(&summary)?, &sort);
    let t = Instant::now();
    let valid = validate(dir, &sorted, rows, "shoal run terasort")?;
    println!(
        "    teravalidate (shoal run, with the expected checksum) {:.2} s",
        t.elapsed().as_secs_f64()
    );
    Ok(SortFigures {
        rows,
        disk_mb_s,
        gen,
        sort,
        valid,
    })
}

/// GNU sort on the generated records with the memory terasort used; whether its output is
/// valid.
fn gnu_sort(dir: &Path, f: &SortFigures) -> anyhow::Result<bool> {
    let out = dir.join("gnu");
    std::fs::create_dir_all(&out)?;
    let mem = format!("{}M", f.sort.rss_mib.ceil() as u64);
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir.join("gen"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("part-"))
        })
        .collect();
    parts.sort();
    let m = measure(
        Command::new("sort")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("LC_ALL", "C")
            .args(["--parallel=2", "-S", &mem, "-T"])
            .arg(dir)
            .arg("-o")
            .arg(out.join("part-00000"))
            .args(&parts),
    )?;
    row(
        &format!("LC_ALL=C sort --parallel=2 -S {mem}"),
        f.rows * tera::RECORD_BYTES as u64,
        &m,
    );
    let valid = validate(dir, &out, f.rows, "GNU sort")?;
    std::fs::remove_dir_all(&out)?;
    println!(
        "  shoal run terasort / GNU sort at equal memory: {:.2}x the time (goal < 1x: {})",
        f.sort.secs / m.secs,
        met(f.sort.secs < m.secs)
    );
    Ok(valid)
}

/// The same three jobs on a 3-node loopback cluster; whether the sort is valid.
fn on_cluster(dir: &Path, f: &SortFigures, args: &TerasortArgs) -> anyhow::Result<bool> {
    let (cluster, url) = super::cluster::start(&dir.join("cluster"))?;
    let control = dir.join("control");
    let replication = ["--replication".to_string(), args.replication.to_string()];
    let submit =
        |app: &str, input: &str, r: u32, out: Option<&Path>| -> anyhow::Result<(String, f64)> {
            let mut c = Command::new(std::env::current_exe()?);
            c.args(["submit", "--node", &url, "--app", app, "--input", input])
                .args(["-R", &r.to_string()])
                .args(&replication)
                .stdout(Stdio::piped())
                .stderr(Stdio::null());
            match out {
                Some(o) => c.arg("--output").arg(o),
                None => c.arg("--wait"),
            };
            let t = Instant::now();
            let o = c.output()?;
            anyhow::ensure!(
                o.status.success(),
                "the cluster's {app} job failed ({})",
                o.status
            );
            let id = super::first_line(&o.stdout);
            Ok((id, t.elapsed().as_secs_f64()))
        };
    let (gen_id, gen_secs) = submit("teragen", &control.to_string_lossy(), 0, None)?;
    println!("  3-node loopback cluster:");
    println!("    teragen                             {gen_secs:>8.2} s");
    let nodes_cpu = || -> f64 {
        cluster
            .nodes
            .iter()
            .filter_map(|n| super::cpu_secs_of(n.child.as_ref()?.id()))
            .sum()
    };
    let cpu_before = nodes_cpu();
    let started = super::cluster::now_ms();
    let (sort_id, secs) = submit(
        "terasort",
        &format!("shoal://{gen_id}"),
        args.reducers,
        None,
    )?;
    let (cpu, ended) = (nodes_cpu() - cpu_before, super::cluster::now_ms());
    let price = secs / f.sort.secs;
    println!(
        "    terasort -R {} (--input shoal://TERAGEN)    {secs:>8.2} s  {:.2}x shoal run's time (goal <= 1.5x: {})",
        args.reducers,
        price,
        met(price <= 1.5)
    );
    println!(
        "      CPU of the three nodes {cpu:.2} s ({:.2}x shoal run's {:.2} s)",
        cpu / f.sort.cpu_secs.max(0.001),
        f.sort.cpu_secs
    );
    if let Some((_, view)) = cluster.nodes[0].get(&format!("/api/v1/jobs/{sort_id}")) {
        if let Some(p) = super::cluster::phases(&view, started, ended, 0.0) {
            print!("{p}");
        }
        let c = |n: &str| view["counters"]["shoal"][n].as_f64().unwrap_or(0.0) / 1e3;
        println!(
            "      task time: maps {:.1} s (spills {:.1} s, final sort and merge {:.1} s), reduces {:.1} s (shuffle fetches {:.1} s, fsync {:.1} s, part copies {:.1} s)",
            c("map_task_ms"), c("spill_ms"), c("map_final_write_ms"), c("reduce_task_ms"),
            c("shuffle_fetch_ms"), c("reduce_fsync_ms"), c("output_copy_ms")
        );
    }
    let out = dir.join("cluster-validate");
    submit("teravalidate", &format!("shoal://{sort_id}"), 1, Some(&out))?;
    let valid = check_report(&out, f.rows, "the cluster's terasort")?;
    drop(cluster);
    Ok(valid)
}

/// An error, before anything is written, when the disk of `dir` has less than `need` bytes
/// free for `what`: a bench that fills the disk stops every other program on it.
pub fn enough_room(dir: &Path, need: u64, what: &str) -> anyhow::Result<()> {
    let free = shoal_jobs::scratch::free_bytes(dir)?;
    anyhow::ensure!(
        free >= need,
        "{what} need about {:.1} GB free in {}, and it has {:.1} GB: give a smaller --size-gb, \
         --dir on a larger disk, or leave out GNU sort (--no-gnu-sort) or the cluster (--no-cluster)",
        need as f64 / 1e9,
        dir.display(),
        free as f64 / 1e9
    );
    Ok(())
}

/// Teragen's maps for `rows` records by default: one per split of the default size, at
/// least 16.
pub fn gen_maps(rows: u64) -> u64 {
    let bytes = rows.saturating_mul(tera::RECORD_BYTES as u64);
    bytes.div_ceil(shoal_jobs::spec::DEFAULT_SPLIT_SIZE).max(16)
}

/// Teragen's control files in `dir/control`: `maps` files of one `FIRST COUNT` line.
pub fn write_control(dir: &Path, rows: u64, maps: u64) -> anyhow::Result<PathBuf> {
    let control = dir.join("control");
    let _ = std::fs::remove_dir_all(&control);
    std::fs::create_dir_all(&control)?;
    for (i, line) in tera::control_lines(rows, maps).iter().enumerate() {
        std::fs::write(control.join(format!("rows-{i:04}")), format!("{line}\n"))?;
    }
    Ok(control)
}

/// `shoal run --app APP -R r` from `input` into `output` (removed first), quiet.
pub fn shoal_run(input: &Path, output: &Path, app: &str, r: u32) -> Command {
    let _ = std::fs::remove_dir_all(output);
    let mut c = Command::new(std::env::current_exe().unwrap_or_else(|_| "shoal".into()));
    c.args(["run", "--app", app, "-R", &r.to_string(), "--input"])
        .arg(input)
        .arg("--output")
        .arg(output)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    c
}

/// teravalidate over `sorted` with `shoal run`; whether it reports `rows` records in order
/// with the generator's checksum (each failure said, naming `what`).
pub fn validate(dir: &Path, sorted: &Path, rows: u64, what: &str) -> anyhow::Result<bool> {
    let out = dir.join("validate");
    measure(&mut shoal_run(sorted, &out, "teravalidate", 1))?;
    let ok = check_report(&out, rows, what)?;
    std::fs::remove_dir_all(&out)?;
    Ok(ok)
}

/// Whether teravalidate's report in `out` says `rows` records, in order, well formed, with
/// the checksum of records `0..rows`.
fn check_report(out: &Path, rows: u64, what: &str) -> anyhow::Result<bool> {
    let report = std::fs::read_to_string(out.join("part-00000"))?;
    let get = |k: &str| {
        report
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('\t'))
            .unwrap_or("?")
            .to_owned()
    };
    let want = format!("{:x}", tera::checksum_of_rows(0, rows));
    let ok = get("records") == rows.to_string()
        && get("checksum") == want
        && get("misordered") == "0"
        && get("malformed") == "0";
    if !ok {
        println!("  INVALID: {what}'s output: {}", report.replace('\n', "; "));
    }
    Ok(ok)
}

/// Where terasort's time went, by the counters `shoal run` printed (summed over tasks).
fn where_the_time_goes(summary: &str, m: &Measured) {
    let counter = |name: &str| -> f64 {
        summary
            .lines()
            .find_map(|l| l.trim().strip_prefix(&format!("shoal.{name} = ")))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1e3
    };
    let phase = |name: &str| -> f64 {
        summary
            .lines()
            .find_map(|l| {
                let rest = l.trim().strip_prefix(name)?;
                rest.split(" in ").nth(1)?.strip_suffix(" s")?.parse().ok()
            })
            .unwrap_or(0.0)
    };
    let (maps, spill, last) = (
        counter("map_task_ms"),
        counter("spill_ms"),
        counter("map_final_write_ms"),
    );
    println!(
        "    map phase {:.2} s: task time {maps:.2} s = read and map {:.2} s + spills (sort, write) {spill:.2} s + final sort and merge {last:.2} s",
        phase("map:"),
        (maps - spill - last).max(0.0),
    );
    let (reduces, fsync) = (counter("reduce_task_ms"), counter("reduce_fsync_ms"));
    println!(
        "    reduce phase {:.2} s: task time {reduces:.2} s = merge and write {:.2} s + fsync {fsync:.2} s",
        phase("reduce:"),
        (reduces - fsync).max(0.0),
    );
    println!(
        "    CPU: user {:.2} s, sys {:.2} s",
        m.user_secs, m.sys_secs
    );
}

/// One contender's line: its time, rate, peak RSS and CPU.
fn row(name: &str, bytes: u64, m: &Measured) {
    println!(
        "  {name:<44} {:>8.2} s {:>8.1} MB/s {:>7.0} MiB peak RSS  user {:.1} s sys {:.1} s",
        m.secs,
        bytes as f64 / 1e6 / m.secs,
        m.rss_mib,
        m.user_secs,
        m.sys_secs
    );
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}
