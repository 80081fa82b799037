//! The `shoal` command line. Parsing only: every subcommand hands a config to the module
//! that does the work. Exit codes are the user's contract (DESIGN.md): 0 success, 1 job
//! failed or killed, 2 bad usage or input rejected, 3 cluster unreachable.

pub mod client;
pub mod config;
pub mod exit;
pub mod http;
pub mod interrupt;
pub mod jobargs;
pub mod logs;
pub mod output;
pub mod run;
pub mod service;
pub mod status;
pub mod streaming;
pub mod upload;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// `shoal --version`: the version and the build profile (the optimised dev build everything
/// is tested with, or the release build people install).
#[cfg(debug_assertions)]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (dev profile)");
#[cfg(not(debug_assertions))]
const LONG_VERSION: &str = concat!(env!("CARGO_PKG_VERSION"), " (release profile)");

#[derive(Debug, Parser)]
#[command(
    name = "shoal",
    version,
    long_version = LONG_VERSION,
    about = "MapReduce on a cluster of identical nodes"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a node of a cluster.
    Node(Box<shoal_node::daemon::NodeArgs>),
    /// Submit a job to a cluster; prints its id (with --wait, waits and shows progress).
    Submit(Box<crate::cli::client::SubmitArgs>),
    /// Show the cluster, or one job with its tasks.
    Status(crate::cli::status::StatusArgs),
    /// List jobs, newest first.
    Jobs(crate::cli::client::JobsArgs),
    /// Fetch a job's output: its part files and `_SUCCESS`.
    Output(crate::cli::output::OutputArgs),
    /// Cancel a job; its running attempts are stopped.
    Kill(crate::cli::client::JobRef),
    /// Take a node out of service: no new task goes there, running ones finish (`--wait`
    /// until none runs); it stays so, across restarts, until `shoal undrain`.
    Drain(crate::cli::service::ServiceArgs),
    /// Put a drained node back in service.
    Undrain(crate::cli::service::ServiceArgs),
    /// Take a node out of the cluster: drained first, then it leaves the membership (a
    /// voter is replaced first, never below three voters) and its process exits 0.
    Remove(crate::cli::service::ServiceArgs),
    /// Print the kept stderr of a job's attempts (or its setups' output), from any node.
    Logs(crate::cli::logs::LogsArgs),
    /// Run a whole job in one process, no cluster.
    Run(Box<crate::cli::run::RunArgs>),
    /// Run a Hadoop Streaming command line as written after `hadoop jar
    /// hadoop-streaming.jar` (-input, -output, -mapper, -reducer, -D …) on the cluster, or
    /// with --in-process in this process.
    Streaming(Box<crate::cli::streaming::StreamingArgs>),
    /// A local demo: a 3-node cluster on loopback, a manager killed and replaced, a job.
    Demo(crate::demo::DemoArgs),
    /// Fault-injection simulations: many nodes in one process, seeded, invariant-checked
    /// (`shoal sim --help`).
    #[command(disable_help_flag = true)]
    Sim {
        /// Everything after `sim`, for the simulator's own parser.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<std::ffi::OsString>,
    },
    /// Write a new cluster key to FILE (give it to every node with --cluster-key).
    Keygen {
        /// Where to write the key (must not exist).
        file: std::path::PathBuf,
    },
    /// Benchmarks that print figures.
    #[command(subcommand)]
    Bench(crate::bench::BenchCmd),
    /// Print a completion script for SHELL (e.g. `shoal completions bash >
    /// /etc/bash_completion.d/shoal`).
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
    /// Print the manual page (roff; e.g. `shoal manpage > /usr/local/share/man/man1/shoal.1`),
    /// or with --dir write one page per command there (shoal.1, shoal-submit.1, …).
    Manpage {
        /// Write every command's page into this directory (e.g.
        /// /usr/local/share/man/man1), for `man shoal-submit`.
        #[arg(long)]
        dir: Option<std::path::PathBuf>,
    },
}

/// Entry point of the `shoal` binary.
pub fn main() -> ExitCode {
    let (cli, shown) = match parse() {
        Ok(parsed) => parsed,
        Err(code) => return code,
    };
    if let Some(text) = shown {
        print!("{text}");
        return ExitCode::SUCCESS;
    }
    init_logging();
    if matches!(
        cli.command,
        Command::Status(_)
            | Command::Jobs(_)
            | Command::Output(_)
            | Command::Kill(_)
            | Command::Drain(_)
            | Command::Undrain(_)
            | Command::Remove(_)
            | Command::Logs(_)
            | Command::Completions { .. }
            | Command::Manpage { .. }
            | Command::Keygen { .. }
    ) {
        stop_quietly_on_closed_stdout();
    }
    dispatch(cli.command)
}

/// Run `argv` (`shoal run …` or `shoal submit …`, as another command builds it) as if typed.
fn run_argv(argv: Vec<String>) -> ExitCode {
    match Cli::try_parse_from(argv) {
        Ok(cli) => dispatch(cli.command),
        Err(e) => {
            let _ = e.print();
            ExitCode::from(crate::cli::exit::EXIT_USAGE)
        }
    }
}

/// Run one parsed command.
fn dispatch(command: Command) -> ExitCode {
    match command {
        Command::Streaming(args) => match crate::cli::streaming::plan(*args) {
            Ok(Some(argv)) => run_argv(argv),
            Ok(None) => ExitCode::SUCCESS,
            Err(code) => code,
        },
        Command::Sim { args } => shoal_sim::cli::main(args),
        Command::Run(args) => crate::cli::run::run(*args),
        Command::Bench(cmd) => crate::bench::run(cmd),
        Command::Node(args) => match shoal_node::daemon::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shoal node: {e:#}");
                if e.downcast_ref::<shoal_node::daemon::UsageError>().is_some() {
                    ExitCode::from(crate::cli::exit::EXIT_USAGE)
                } else {
                    ExitCode::FAILURE
                }
            }
        },
        Command::Status(args) => crate::cli::status::run(args),
        Command::Submit(args) => crate::cli::client::submit(*args),
        Command::Jobs(args) => crate::cli::client::jobs(args),
        Command::Output(args) => crate::cli::output::output(args),
        Command::Kill(args) => crate::cli::client::kill(args),
        Command::Drain(args) => crate::cli::service::drain(args),
        Command::Undrain(args) => crate::cli::service::undrain(args),
        Command::Remove(args) => crate::cli::service::remove(args),
        Command::Logs(args) => crate::cli::logs::logs(args),
        Command::Demo(args) => crate::demo::run(args),
        Command::Completions { shell } => {
            let mut cmd = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(shell, &mut cmd, "shoal", &mut std::io::stdout());
            ExitCode::SUCCESS
        }
        Command::Manpage { dir } => {
            let cmd = <Cli as clap::CommandFactory>::command();
            let written = match &dir {
                Some(dir) => {
                    std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(cmd, dir))
                }
                None => clap_mangen::Man::new(cmd).render(&mut std::io::stdout()),
            };
            match written {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    eprintln!("shoal manpage: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Keygen { file } => match crate::cli::status::keygen(&file) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("shoal keygen: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

/// Parse the command line (with `shoal node`'s config file applied); with `shoal node
/// --print-config`, also the effective settings to print instead of running.
fn parse() -> Result<(Cli, Option<String>), ExitCode> {
    use clap::{CommandFactory, FromArgMatches};
    let mut command = Cli::command();
    let node = command
        .find_subcommand("node")
        .cloned()
        .unwrap_or_else(|| clap::Command::new("node"));
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if let Some(hint) = hadoop_habit(&argv) {
        eprintln!("{hint}");
        return Err(ExitCode::from(crate::cli::exit::EXIT_USAGE));
    }
    let (args, from_file) = match crate::cli::config::expand(argv, &node) {
        Ok(expanded) => expanded,
        Err(e) => {
            eprintln!("shoal node: {e}");
            return Err(ExitCode::from(crate::cli::exit::EXIT_USAGE));
        }
    };
    let matches = command
        .try_get_matches_from_mut(args)
        .unwrap_or_else(|e| e.exit());
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let shown = match (&cli.command, matches.subcommand()) {
        (Command::Node(args), Some(("node", m))) if args.print_config => {
            let node = command.find_subcommand("node").cloned().unwrap_or(node);
            Some(crate::cli::config::render(&node, m, from_file.as_ref()))
        }
        _ => None,
    };
    Ok((cli, shown))
}

/// Hadoop Streaming's options given to `shoal submit` or `shoal run` (`-input`, `-mapper`,
/// …): what to write instead.
fn hadoop_habit(argv: &[std::ffi::OsString]) -> Option<String> {
    const HADOOP: [&str; 9] = [
        "-input",
        "-output",
        "-mapper",
        "-reducer",
        "-combiner",
        "-file",
        "-files",
        "-numReduceTasks",
        "-cmdenv",
    ];
    let cmd = argv.get(1)?.to_str()?;
    if cmd != "submit" && cmd != "run" {
        return None;
    }
    let given = argv
        .iter()
        .skip(2)
        .filter_map(|a| a.to_str())
        .find(|a| HADOOP.contains(a))?;
    Some(format!(
        "shoal {cmd}: {given} is Hadoop Streaming's spelling: `shoal {cmd}` takes --input, --output, --map, --reduce, --combine, --file, --env and -R N; or give the Hadoop command line as written to `shoal streaming` ({given} …)"
    ))
}

/// Logs go to stderr through `tracing`; `SHOAL_LOG` (or `RUST_LOG`) sets the filter. By
/// default openraft's heartbeat worker and replication speak only of errors: they warn of
/// every heartbeat and every retry a silent peer misses, a dozen lines a second, while the
/// network says once that the peer is unreachable.
fn init_logging() {
    let filter = std::env::var("SHOAL_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
                .unwrap_or_else(|_| "warn,shoal=info,shoal_node=info,shoal_net=info,shoal_raft=info,shoal_jobs=info,libp2p_kad=error,openraft::core::heartbeat=error,openraft::replication=error,openraft::engine::handler::replication_handler=error".into());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
}

/// A client command whose reader goes away (`shoal status --watch | head -5`) stops quietly,
/// as Unix tools do: the next write raises SIGPIPE and ends the process, instead of
/// `println!` panicking with a backtrace. Rust ignores SIGPIPE by default; only the client
/// commands restore it — a node, `shoal run`, the demo and the benches write into their
/// tasks' pipes, where a closed pipe is an error to report, not a reason to die. Nor does
/// `shoal submit`: it streams its upload into a socket, and a node that refuses the job
/// before the last byte (413, 507) closes it; the answer must be read, not die unheard.
fn stop_quietly_on_closed_stdout() {
    // SAFETY: setting a signal's disposition to its default; no handler runs our code.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}
