//! `shoal run`: one job in this process, no cluster. Progress is a bar on a terminal and
//! plain lines otherwise (both on stderr); the summary goes to stdout.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use shoal_jobs::local::{run_local_with_archives, Event, Summary};
use shoal_jobs::Error;

use crate::cli::exit::{EXIT_FAILED, EXIT_USAGE};
use crate::cli::jobargs::JobArgs;

/// `shoal run` flags.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    job: JobArgs,
    /// Output directory (absent or empty): part-NNNNN files and _SUCCESS.
    #[arg(help_heading = "Output", long, short = 'o')]
    output: PathBuf,
    /// Tasks run at once (default: the number of cores).
    #[arg(help_heading = "Running", long, env = "SHOAL_SLOTS")]
    slots: Option<usize>,
}

/// Run the job; exit codes as DESIGN.md.
pub fn run(args: RunArgs) -> ExitCode {
    let spec = match args.job.to_spec() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("shoal run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    for w in args.job.warnings() {
        eprintln!("{w}");
    }
    let slots = args.slots.unwrap_or_else(shoal_jobs::pool::default_slots);
    let bar = if std::io::stderr().is_terminal() {
        Some(ProgressBar::new(0))
    } else {
        None
    };
    if let Some(b) = &bar {
        b.set_style(
            ProgressStyle::with_template("{prefix:>7} [{bar:40}] {pos}/{len} tasks  {elapsed}")
                .expect("a valid template")
                .progress_chars("=> "),
        );
        b.set_prefix("map");
    }
    let started = Instant::now();
    let events = |e: Event| match (&bar, e) {
        (Some(b), Event::Planned { maps, .. }) => b.set_length(maps as u64),
        (Some(b), Event::TaskDone { .. }) => b.inc(1),
        (Some(b), Event::MapsDone) => {
            b.set_prefix("reduce");
            b.set_position(0);
        }
        (
            Some(b),
            Event::AttemptFailed {
                task,
                attempt,
                error,
            },
        ) => {
            b.println(format!("attempt {attempt} of {task} failed: {error}"));
        }
        (
            None,
            Event::Planned {
                maps,
                reduces,
                bytes,
            },
        ) => {
            eprintln!("planned {maps} map tasks and {reduces} reduce tasks over {bytes} bytes");
        }
        (None, Event::TaskDone { task }) => eprintln!("{task} done"),
        (None, Event::MapsDone) => eprintln!("map phase done"),
        (
            None,
            Event::AttemptFailed {
                task,
                attempt,
                error,
            },
        ) => {
            eprintln!("attempt {attempt} of {task} failed: {error}");
        }
    };
    let archives = match args.job.archive_files() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("shoal run: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = run_local_with_archives(&spec, &archives, &args.output, slots, &events);
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    match result {
        Ok(summary) => {
            print_summary(&summary, started.elapsed().as_secs_f64(), &args.output);
            ExitCode::SUCCESS
        }
        Err(e @ (Error::InvalidSpec(_) | Error::Input { .. })) => {
            eprintln!("shoal run: {e}");
            ExitCode::from(EXIT_USAGE)
        }
        Err(e) => {
            eprintln!("shoal run: job failed: {e}");
            ExitCode::from(EXIT_FAILED)
        }
    }
}

fn print_summary(s: &Summary, secs: f64, output: &std::path::Path) {
    let c = &s.counters;
    let g = shoal_jobs::counters::GROUP;
    let mib = c.get(g, "map_input_bytes") as f64 / (1 << 20) as f64;
    println!(
        "job succeeded in {secs:.2} s ({:.1} MiB/s)",
        mib / secs.max(1e-9)
    );
    println!(
        "  map:    {} tasks in {:.2} s",
        s.maps,
        s.map_time.as_secs_f64()
    );
    println!(
        "  reduce: {} tasks in {:.2} s",
        s.reduces,
        s.reduce_time.as_secs_f64()
    );
    if s.failed_attempts > 0 {
        println!("  failed attempts retried: {}", s.failed_attempts);
    }
    println!(
        "  records: {} in, {} map out, {} out; bytes: {} in, {} out",
        c.get(g, "map_input_records"),
        c.get(g, "map_output_records"),
        c.get(g, "reduce_output_records"),
        c.get(g, "map_input_bytes"),
        c.get(g, "output_bytes"),
    );
    println!("  counters:");
    for (group, names) in &c.0 {
        for (name, v) in names {
            println!("    {group}.{name} = {v}");
        }
    }
    println!(
        "  output: {} ({} part files)",
        output.display(),
        s.parts.len()
    );
}
