//! `shoal bench growth`: how `shoal run` grows with its input. Word count and terasort at
//! 1×, 4× and 16× a base size (by default 1, 4 and 16 GB), each output checked (word count
//! against the two-thread hash count run beside it, terasort by teravalidate); the table
//! gives each size's seconds per GB and peak RSS; the goals: every size's time per GB within
//! ±20% of the median size's, the largest peak RSS within 1.5× the smallest.

use std::process::Command;

use clap::Args;
use shoal_jobs::apps::tera;

use super::terasort::{enough_room, gen_maps, rows_of, shoal_run, validate, write_control};
use super::{measure, Measured};
use crate::demo::corpus::{generate, read_counts};

/// `shoal bench growth` flags.
#[derive(Debug, Args)]
pub struct GrowthArgs {
    /// The smallest size, GB (10^9 bytes).
    #[arg(long, default_value_t = 1.0)]
    base_gb: f64,
    /// The sizes, as multiples of the base.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 4, 16])]
    factors: Vec<u32>,
    /// Distinct words in the word count's corpus.
    #[arg(long, default_value_t = 500_000)]
    distinct: usize,
    /// Working directory (default: a temporary one, removed afterwards). It needs room for
    /// twice the largest size.
    #[arg(long)]
    dir: Option<std::path::PathBuf>,
}

/// One size's figures.
struct Size {
    gb: f64,
    hash: Measured,
    count: Measured,
    sort: Measured,
}

/// Run `shoal bench growth`; false when an output is wrong.
pub fn run(args: GrowthArgs) -> anyhow::Result<bool> {
    anyhow::ensure!(
        !args.factors.is_empty() && args.factors.iter().all(|&f| f > 0),
        "--factors: give one or more multiples above 0"
    );
    let (dir, _removed_on_drop) = super::work_dir(args.dir.as_deref())?;
    let exe = std::env::current_exe()?;
    let largest = args.base_gb * f64::from(args.factors.iter().copied().max().unwrap_or(1));
    // The largest terasort: its records, the maps' output and the sorted records.
    enough_room(&dir, (largest * 3e9) as u64, "the largest size")?;
    let mut sizes = Vec::new();
    let mut ok = true;
    for &f in &args.factors {
        let gb = args.base_gb * f64::from(f);
        eprintln!("{gb} GB: word count…");
        let corpus = dir.join("corpus.txt");
        generate(&corpus, (gb * 1e9) as u64, args.distinct, 42)?;
        let hash_out = dir.join("hash.txt");
        let hash = measure(
            Command::new(&exe)
                .args(["bench", "hashcount"])
                .arg(&corpus)
                .arg(&hash_out),
        )?;
        let out = dir.join("counts");
        let count = measure(&mut shoal_run(&corpus, &out, "wordcount", 3))?;
        if read_counts(&out)? != read_counts(&hash_out)? {
            println!("  MISMATCH: the word count of {gb} GB differs from the hash count");
            ok = false;
        }
        std::fs::remove_file(&corpus)?;
        std::fs::remove_dir_all(&out)?;
        eprintln!("{gb} GB: terasort…");
        let rows = rows_of(gb)?;
        let control = write_control(&dir, rows, gen_maps(rows))?;
        let gen = dir.join("gen");
        measure(&mut shoal_run(&control, &gen, "teragen", 0))?;
        let sorted = dir.join("sorted");
        let sort = measure(&mut shoal_run(&gen, &sorted, "terasort", 2))?;
        std::fs::remove_dir_all(&gen)?;
        ok &= validate(&dir, &sorted, rows, &format!("terasort of {gb} GB"))?;
        std::fs::remove_dir_all(&sorted)?;
        sizes.push(Size {
            gb: rows as f64 * tera::RECORD_BYTES as f64 / 1e9,
            hash,
            count,
            sort,
        });
    }
    print_table(&sizes);
    Ok(ok)
}

fn print_table(sizes: &[Size]) {
    println!(
        "growth of shoal run, {} cores, built with the {}: seconds per GB and peak RSS at each size",
        shoal_jobs::pool::default_slots(),
        super::profile()
    );
    println!(
        "{:>8} | {:>9} {:>7} {:>9} {:>8} | {:>9} {:>7} {:>9}",
        "GB", "wordcount", "s/GB", "peak RSS", "vs hash", "terasort", "s/GB", "peak RSS"
    );
    for s in sizes {
        println!(
            "{:>8.2} | {:>7.2} s {:>7.2} {:>5.0} MiB {:>7.2}x | {:>7.2} s {:>7.2} {:>5.0} MiB",
            s.gb,
            s.count.secs,
            s.count.secs / s.gb,
            s.count.rss_mib,
            s.hash.secs / s.count.secs,
            s.sort.secs,
            s.sort.secs / s.gb,
            s.sort.rss_mib
        );
    }
    if sizes.is_empty() {
        return;
    }
    for (name, pick) in [
        ("word count", (|s: &Size| s.count) as fn(&Size) -> Measured),
        ("terasort", |s: &Size| s.sort),
    ] {
        // Against the median size's figure, so that one size measured in a slow minute of
        // this machine does not move the yardstick.
        let per_gb = |s: &Size| pick(s).secs / s.gb;
        let mut all: Vec<f64> = sizes.iter().map(per_gb).collect();
        all.sort_by(f64::total_cmp);
        let middle = all[all.len() / 2];
        let worst = all.iter().map(|x| x / middle - 1.0).fold(0.0f64, |w, d| {
            if d.abs() > w.abs() {
                d
            } else {
                w
            }
        });
        let rss: Vec<f64> = sizes.iter().map(|s| pick(s).rss_mib).collect();
        let spread = rss.iter().copied().fold(0.0f64, f64::max)
            / rss.iter().copied().fold(f64::INFINITY, f64::min).max(1.0);
        println!(
            "  {name}: time per GB at most {:+.0}% from the median size's {middle:.2} s (goal within ±20%: {}); the largest peak RSS {spread:.2}x the smallest (goal <= 1.5x: {})",
            worst * 100.0,
            met(worst.abs() <= 0.2),
            met(spread <= 1.5)
        );
    }
}

fn met(yes: bool) -> &'static str {
    if yes {
        "met"
    } else {
        "NOT met"
    }
}
