//! `shoal bench local`: word count on one machine. In one run: a seeded Zipf corpus; the
//! practical limit (a two-thread hash-map count written here); `shoal run --app wordcount`
//! with default and with 16 MiB sort buffers; `LC_ALL=C sort | uniq -c`; and on a prefix,
//! the Python streaming word count through Shoal against the classic
//! `python3 map.py | LC_ALL=C sort | python3 reduce.py` pipeline. Every output is checked
//! against the hash count; figures are MiB/s, peak RSS and ratios.
//!
//! Environment: Shoal's tasks get their clean environment (LANG=C, no PYTHONUNBUFFERED);
//! the pipelines run with `env -i PATH=… LC_ALL=C`, so Python is block-buffered everywhere.

use std::io::{BufRead, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use clap::Args;
use rustc_hash::FxHashMap;

use super::{measure, Measured};
use crate::demo::corpus::read_counts;

const MAP_PY: &str = "import sys\nfor line in sys.stdin:\n    for word in line.split():\n        print(word + '\\t1')\n";
const REDUCE_PY: &str = "import sys\ncurrent, count = None, 0\nfor line in sys.stdin:\n    word, n = line.rstrip('\\n').split('\\t')\n    if word != current:\n        if current is not None:\n            print(current + '\\t' + str(count))\n        current, count = word, 0\n    count += int(n)\nif current is not None:\n    print(current + '\\t' + str(count))\n";

/// `shoal bench local` flags.
#[derive(Debug, Args)]
pub struct LocalArgs {
    /// Corpus size, MiB.
    #[arg(long, default_value_t = 1024)]
    size_mb: u64,
    /// Prefix used for the Python contenders, MiB.
    #[arg(long, default_value_t = 100)]
    python_mb: u64,
    /// Distinct words in the corpus.
    #[arg(long, default_value_t = 500_000)]
    distinct: usize,
    /// Corpus seed.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Working directory (default: a temporary one, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Rounds of the hash count and native word count, one after the other: their ratio
    /// is the median of the rounds'.
    #[arg(long, default_value_t = 3)]
    rounds: usize,
    /// Another `shoal` binary (say the release build, `target/release/shoal`): it runs the
    /// same Shoal contenders, and its times are compared with this build's.
    #[arg(long, value_name = "SHOAL")]
    against: Option<PathBuf>,
}

struct Row {
    name: String,
    mib: f64,
    m: Measured,
}

/// The contenders' rows, and whether every output so far equals its reference.
struct Table {
    rows: Vec<Row>,
    ok: bool,
    /// The hash count's time over native word count's: the median of the rounds.
    ratio: f64,
}

impl Table {
    fn add(&mut self, name: impl Into<String>, mib: f64, m: Measured) -> Measured {
        self.rows.push(Row {
            name: name.into(),
            mib,
            m,
        });
        m
    }

    /// Whether `name`'s output `out` has the counts of `reference`; a mismatch is said, and
    /// fails the run.
    fn check(&mut self, name: &str, out: &Path, reference: &Path) -> anyhow::Result<()> {
        if read_counts(out)? != read_counts(reference)? {
            eprintln!("MISMATCH: the output of {name} differs from the hash count");
            self.ok = false;
        }
        Ok(())
    }
}

/// Where the benchmark works: its corpus, its prefix for the Python contenders, their sizes
/// in MiB.
struct Inputs {
    exe: PathBuf,
    dir: PathBuf,
    corpus: PathBuf,
    prefix: PathBuf,
    size: f64,
    psize: f64,
    /// The hash count's output over the corpus and over the prefix: the references.
    hash_out: PathBuf,
    phash: PathBuf,
    rounds: usize,
}

/// The figures the goals are judged on.
struct Figures {
    /// The median of the rounds' hash count time over native word count's.
    ratio: f64,
    native: Measured,
    gz: Measured,
    small: Measured,
    same16: bool,
    check_secs: f64,
    pipe: Measured,
    streaming: Measured,
}

/// Run the benchmark; Ok(false) when an output differs from the reference.
pub fn run(args: LocalArgs) -> anyhow::Result<bool> {
    let (dir, _removed_on_drop) = super::work_dir(args.dir.as_deref())?;
    let corpus = dir.join("corpus.txt");
    let prefix = dir.join("prefix.txt");
    eprintln!(
        "generating a {} MiB corpus ({} distinct words, seed {})…",
        args.size_mb, args.distinct, args.seed
    );
    crate::demo::corpus::generate(&corpus, args.size_mb << 20, args.distinct, args.seed)?;
    copy_prefix(&corpus, &prefix, args.python_mb << 20)?;
    std::fs::write(dir.join("map.py"), MAP_PY)?;
    std::fs::write(dir.join("reduce.py"), REDUCE_PY)?;
    let at = Inputs {
        exe: std::env::current_exe()?,
        size: std::fs::metadata(&corpus)?.len() as f64 / (1 << 20) as f64,
        psize: std::fs::metadata(&prefix)?.len() as f64 / (1 << 20) as f64,
        hash_out: dir.join("hash.txt"),
        rounds: args.rounds,
        phash: dir.join("hash-prefix.txt"),
        corpus,
        prefix,
        dir,
    };
    let mut t = Table {
        rows: Vec::new(),
        ok: true,
        ratio: 0.0,
    };
    let (_, native, gz, small, same16, check_secs) = word_count_contenders(&at, &mut t)?;
    let py_split = format!("{}", ((args.python_mb << 20) / 2).max(1 << 20));
    let (map_py, reduce_py) = (at.dir.join("map.py"), at.dir.join("reduce.py"));
    let (map_py, reduce_py) = (map_py.to_string_lossy(), reduce_py.to_string_lossy());
    let py_args = [
        "--map",
        &map_py,
        "--reduce",
        &reduce_py,
        "--combine",
        &reduce_py,
        "--reducers",
        "2",
        "--split-size",
        &py_split,
    ];
    let (pipe, streaming) = python_contenders(&at, &mut t, &py_args)?;
    // The same Shoal contenders with another build.
    let other = match &args.against {
        Some(bin) => Some(other_build(&at, &mut t, bin, &py_args)?),
        None => None,
    };
    let figures = Figures {
        ratio: t.ratio,
        native,
        gz,
        small,
        same16,
        check_secs,
        pipe,
        streaming,
    };
    print_table(&args, at.size, &t.rows);
    print_goals(&figures);
    if let Some((bin, app, py)) = &other {
        compare_builds(&at.exe, bin, [(&native, app), (&streaming, py)])?;
    }
    println!(
        "  every contender's output equals the hash count: {}",
        if t.ok { "yes" } else { "NO" }
    );
    Ok(t.ok && same16)
}

/// The word count contenders on the whole corpus: the hash count (the limit), `shoal run`
/// plain, over gzipped pieces, and with a small sort buffer; and the cost of checksumming
/// the corpus. (hash, native, gz, small, whether small's output equals native's, checksum
/// seconds.)
fn word_count_contenders(
    at: &Inputs,
    t: &mut Table,
) -> anyhow::Result<(Measured, Measured, Measured, Measured, bool, f64)> {
    let (dir, corpus, size) = (&at.dir, &at.corpus, at.size);
    let shoal_run =
        |input: &Path, out: &Path, extra: &[&str]| shoal_run_with(&at.exe, input, out, extra);
    // Rounds of the pair, one after the other: the machine's speed drifts, so the ratio is
    // the median of each round's, and the rows are each contender's median round.
    let (mut hashes, mut natives, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let out = dir.join("out-app");
    for round in 1..=at.rounds.max(1) {
        eprintln!("round {round}: hash count (2 threads), shoal run --app wordcount…");
        let hash = measure(
            Command::new(&at.exe)
                .args(["bench", "hashcount"])
                .arg(corpus)
                .arg(&at.hash_out),
        )?;
        let native = measure(&mut shoal_run(corpus, &out, &["--app", "wordcount"]))?;
        t.check("shoal run --app wordcount", &out, &at.hash_out)?;
        ratios.push(hash.secs / native.secs);
        hashes.push(hash);
        natives.push(native);
    }
    let rounds = ratios.len();
    let hash = t.add(
        format!("hash count, 2 threads (the limit), median of {rounds}"),
        size,
        median(hashes),
    );
    let native = t.add(
        format!("shoal run --app wordcount, median of {rounds}"),
        size,
        median(natives),
    );
    ratios.sort_by(f64::total_cmp);
    t.ratio = ratios[ratios.len() / 2];
    // The map checksums its output (read back from the page cache); here the same work
    // over the whole corpus, more bytes than the combined map output it stands for.
    let started = std::time::Instant::now();
    let mut f = std::fs::File::open(corpus)?;
    let len = f.metadata()?.len();
    shoal_jobs::checksum::of_range(&mut f, 0, len)?;
    let check_secs = started.elapsed().as_secs_f64();

    eprintln!("shoal run --app wordcount over the corpus as gzipped files…");
    let gz_dir = dir.join("gz");
    gzip_pieces(corpus, &gz_dir, 2 * cores())?;
    let out_gz = dir.join("out-gz");
    let m = measure(&mut shoal_run(&gz_dir, &out_gz, &["--app", "wordcount"]))?;
    t.check("shoal run over .gz files", &out_gz, &at.hash_out)?;
    let gz = t.add(
        format!("shoal run --app wordcount, {} .gz files", 2 * cores()),
        size,
        m,
    );

    eprintln!("shoal run --app wordcount --sort-mb 16…");
    let out16 = dir.join("out-app-16");
    let m = measure(&mut shoal_run(
        corpus,
        &out16,
        &["--app", "wordcount", "--sort-mb", "16"],
    ))?;
    t.check("shoal run --sort-mb 16", &out16, &at.hash_out)?;
    let same16 = read_counts(&out16)? == read_counts(&out)?;
    let small = t.add("shoal run --app wordcount --sort-mb 16", size, m);

    eprintln!("LC_ALL=C sort | uniq -c…");
    let uniq_out = dir.join("uniq.txt");
    let m = measure(&mut pipeline(&format!(
        "tr -s ' ' '\\n' < {} | sort | uniq -c > {}",
        corpus.display(),
        uniq_out.display()
    )))?;
    t.check("sort | uniq -c", &uniq_out, &at.hash_out)?;
    t.add("tr | LC_ALL=C sort | uniq -c", size, m);
    Ok((hash, native, gz, small, same16, check_secs))
}

/// The Python contenders on the prefix: the sort pipeline, and `shoal run` with `py_args`.
/// (pipeline, streaming.)
fn python_contenders(
    at: &Inputs,
    t: &mut Table,
    py_args: &[&str],
) -> anyhow::Result<(Measured, Measured)> {
    let (dir, prefix, psize) = (&at.dir, &at.prefix, at.psize);
    eprintln!("Python contenders on a {psize:.0} MiB prefix…");
    let m = measure(
        Command::new(&at.exe)
            .args(["bench", "hashcount"])
            .arg(prefix)
            .arg(&at.phash),
    )?;
    t.add("hash count, 2 threads, prefix", psize, m);
    let pipe_out = dir.join("pipeline.txt");
    let m = measure(&mut pipeline(&format!(
        "python3 {d}/map.py < {p} | sort | python3 {d}/reduce.py > {o}",
        d = dir.display(),
        p = prefix.display(),
        o = pipe_out.display()
    )))?;
    t.check("the Python sort pipeline", &pipe_out, &at.phash)?;
    let pipe = t.add("python3 map.py | sort | python3 reduce.py", psize, m);
    let sout = dir.join("out-python");
    let m = measure(&mut shoal_run_with(&at.exe, prefix, &sout, py_args))?;
    t.check("shoal run (Python streaming)", &sout, &at.phash)?;
    let streaming = t.add("shoal run, Python map/combine/reduce, R=2", psize, m);
    Ok((pipe, streaming))
}

/// The Shoal contenders again, with the build `bin`: (bin, its word count, its Python
/// streaming).
fn other_build(
    at: &Inputs,
    t: &mut Table,
    bin: &Path,
    py_args: &[&str],
) -> anyhow::Result<(PathBuf, Measured, Measured)> {
    eprintln!("the same with {}…", bin.display());
    let out = at.dir.join("out-other-app");
    let app = measure(&mut shoal_run_with(
        bin,
        &at.corpus,
        &out,
        &["--app", "wordcount"],
    ))?;
    t.check(
        "the other build's shoal run --app wordcount",
        &out,
        &at.hash_out,
    )?;
    let out = at.dir.join("out-other-python");
    let py = measure(&mut shoal_run_with(bin, &at.prefix, &out, py_args))?;
    t.check("the other build's Python streaming", &out, &at.phash)?;
    t.add("other build: shoal run --app wordcount", at.size, app);
    t.add("other build: shoal run Python streaming", at.psize, py);
    Ok((bin.to_path_buf(), app, py))
}

/// Every contender's row.
fn print_table(args: &LocalArgs, size: f64, rows: &[Row]) {
    println!();
    println!(
        "word count, {size:.0} MiB corpus ({} distinct words, seed {}), {} cores, shoal built with the {}",
        args.distinct,
        args.seed,
        cores(),
        super::profile()
    );
    println!(
        "{:<48} {:>9} {:>8} {:>9} {:>10}",
        "contender", "input", "secs", "MiB/s", "peak RSS"
    );
    for r in rows {
        println!(
            "{:<48} {:>5.0} MiB {:>8.2} {:>9.1} {:>6.0} MiB",
            r.name,
            r.mib,
            r.m.secs,
            r.mib / r.m.secs,
            r.m.rss_mib
        );
    }
}

/// Each goal, its figure and whether it is met.
fn print_goals(f: &Figures) {
    let ratio = f.ratio;
    let py_ratio = f.pipe.secs / f.streaming.secs;
    let rss_goal = 2.0 * 256.0 + 100.0;
    println!();
    println!("goals:");
    println!(
        "  native word count vs the hash-count limit: {ratio:.2}× (goal ≥ 0.90×) {}, the median of the rounds' ratios",
        met(ratio >= 0.9)
    );
    println!(
        "  Python streaming vs the sort pipeline:     {py_ratio:.2}× (goal ≥ 2×) {}",
        met(py_ratio >= 2.0)
    );
    println!(
        "  peak RSS, default settings:                {:.0} MiB (goal ≤ {rss_goal:.0} MiB) {}",
        f.native.rss_mib,
        met(f.native.rss_mib <= rss_goal)
    );
    println!(
        "  peak RSS, Python streaming:               {:.0} MiB (goal ≤ {rss_goal:.0} MiB) {}",
        f.streaming.rss_mib,
        met(f.streaming.rss_mib <= rss_goal)
    );
    println!(
        "  peak RSS with --sort-mb 16:                {:.0} MiB (goal < 200 MiB) {}; output identical: {}",
        f.small.rss_mib,
        met(f.small.rss_mib < 200.0),
        if f.same16 { "yes" } else { "NO" }
    );
    let gz_ratio = f.gz.secs / f.native.secs;
    println!(
        "  .gz input vs plain input:                  {gz_ratio:.2}× the time (goal ≤ 1.5×) {}",
        met(gz_ratio <= 1.5)
    );
    let cost = f.check_secs / f.native.secs;
    println!(
        "  checksums, at most (CRC32C of the whole corpus): {:.3} s = {:.1}% of shoal run (goal < 5%) {}",
        f.check_secs,
        cost * 100.0,
        met(cost < 0.05)
    );
}

/// `shoal run` of `exe` on `input` into `out` (removed first), quiet.
fn shoal_run_with(exe: &Path, input: &Path, out: &Path, extra: &[&str]) -> Command {
    let _ = std::fs::remove_dir_all(out);
    let mut c = Command::new(exe);
    c.arg("run")
        .arg("--input")
        .arg(input)
        .arg("--output")
        .arg(out)
        .args(extra);
    c.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    c
}

/// Print how the other build `bin` compares with this one, `exe`: what each says it is, its
/// size, and the time of each (this, other) pair of runs.
fn compare_builds(exe: &Path, bin: &Path, runs: [(&Measured, &Measured); 2]) -> anyhow::Result<()> {
    let about = |b: &Path| -> anyhow::Result<String> {
        let o = Command::new(b).arg("--version").output()?;
        let size = std::fs::metadata(b)?.len() as f64 / (1 << 20) as f64;
        let what = String::from_utf8_lossy(&o.stdout).trim().to_owned();
        Ok(format!("{what}, {size:.1} MiB"))
    };
    println!("  this build:  {}", about(exe)?);
    println!("  other build: {} ({})", about(bin)?, bin.display());
    for (name, (this, other)) in ["--app wordcount", "Python streaming"].iter().zip(runs) {
        println!(
            "  shoal run {name:<17} other build / this build: {:.2}× the time, {:.2}× the peak RSS",
            other.secs / this.secs,
            other.rss_mib / this.rss_mib
        );
    }
    Ok(())
}

/// Cut `corpus` at line ends into `n` pieces, each gzipped into `dir` (as rotated logs are).
/// Streamed: the bench's own peak memory would show in every later child's peak RSS (a
/// child inherits its parent's high-water mark).
fn gzip_pieces(corpus: &Path, dir: &Path, n: usize) -> anyhow::Result<()> {
    use std::io::{BufRead, Write};
    std::fs::create_dir_all(dir)?;
    let total = std::fs::metadata(corpus)?.len();
    let mut input = std::io::BufReader::new(std::fs::File::open(corpus)?);
    let mut line = Vec::new();
    let mut done = 0u64;
    for i in 0..n {
        let file = std::fs::File::create(dir.join(format!("part-{i:03}.txt.gz")))?;
        let mut w = shoal_jobs::compress::Codec::Gzip.encoder(std::io::BufWriter::new(file))?;
        let until = total * (i as u64 + 1) / n as u64;
        while done < until {
            line.clear();
            let got = input.read_until(b'\n', &mut line)?;
            if got == 0 {
                break;
            }
            w.write_all(&line)?;
            done += got as u64;
        }
        w.finish()?.flush()?;
    }
    Ok(())
}

/// The measure of median time.
fn median(mut v: Vec<Measured>) -> Measured {
    v.sort_by(|a, b| a.secs.total_cmp(&b.secs));
    v[v.len() / 2]
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT MET"
    }
}

fn cores() -> usize {
    shoal_jobs::pool::default_slots()
}

/// A shell pipeline with a controlled environment.
fn pipeline(script: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(script).env_clear();
    c.env(
        "PATH",
        std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".into()),
    );
    c.env("LC_ALL", "C").env("LANG", "C");
    c
}

fn copy_prefix(src: &Path, dst: &Path, bytes: u64) -> std::io::Result<()> {
    let mut r = std::io::BufReader::new(std::fs::File::open(src)?);
    let mut w = std::io::BufWriter::new(std::fs::File::create(dst)?);
    let mut n = 0u64;
    let mut line = Vec::new();
    while n < bytes {
        line.clear();
        if r.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        w.write_all(&line)?;
        n += line.len() as u64;
    }
    w.flush()
}

/// The baseline: split the file at line boundaries into `threads` parts, count words
/// (maximal runs of non-`isspace` bytes) with a hash map per thread, merge, write sorted.
pub fn hashcount(input: &Path, output: &Path, threads: usize) -> anyhow::Result<bool> {
    let len = std::fs::metadata(input)?.len();
    let mut bounds = vec![0u64];
    for i in 1..threads.max(1) {
        let mut f = std::fs::File::open(input)?;
        let at = len * i as u64 / threads as u64;
        std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(at))?;
        let mut skip = Vec::new();
        let n = std::io::BufReader::new(f).read_until(b'\n', &mut skip)?;
        bounds.push((at + n as u64).min(len));
    }
    bounds.push(len);
    let maps: Vec<FxHashMap<Vec<u8>, u64>> = std::thread::scope(|s| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (start, end) = (w[0], w[1]);
                s.spawn(move || count_range(input, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("counting thread"))
            .collect::<std::io::Result<_>>()
    })?;
    let mut total: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
    for m in maps {
        for (k, v) in m {
            *total.entry(k).or_insert(0) += v;
        }
    }
    let mut sorted: Vec<_> = total.into_iter().collect();
    sorted.sort_unstable();
    let mut w = std::io::BufWriter::new(std::fs::File::create(output)?);
    for (k, v) in sorted {
        w.write_all(&k)?;
        writeln!(w, "\t{v}")?;
    }
    w.flush()?;
    Ok(true)
}

fn count_range(input: &Path, start: u64, end: u64) -> std::io::Result<FxHashMap<Vec<u8>, u64>> {
    use shoal_jobs::apps::{is_space, words};
    let mut f = std::fs::File::open(input)?;
    std::io::Seek::seek(&mut f, std::io::SeekFrom::Start(start))?;
    let mut r = f.take(end - start);
    let mut counts: FxHashMap<Vec<u8>, u64> = FxHashMap::default();
    let mut count = |w: &[u8]| match counts.get_mut(w) {
        Some(c) => *c += 1,
        None => {
            counts.insert(w.to_vec(), 1);
        }
    };
    let mut buf = vec![0u8; 4 << 20];
    // The unfinished word at the end of the previous read.
    let mut pending: Vec<u8> = Vec::new();
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            if !pending.is_empty() {
                count(&pending);
            }
            return Ok(counts);
        }
        let chunk = &buf[..n];
        let (Some(first), Some(last)) = (
            chunk.iter().position(|&b| is_space(b)),
            chunk.iter().rposition(|&b| is_space(b)),
        ) else {
            pending.extend_from_slice(chunk);
            continue;
        };
        pending.extend_from_slice(&chunk[..first]);
        if !pending.is_empty() {
            count(&pending);
            pending.clear();
        }
        words(&chunk[first..last]).for_each(&mut count);
        pending.extend_from_slice(&chunk[last + 1..]);
    }
}
