//! A job's directory on one machine (`--archive`, `--setup`): made once per job before its
//! first task there, with each archive unpacked under its name and the setup command run in
//! it; every attempt of the job then sees each of its entries, by a link of the same name,
//! in its own working directory (`venv/bin/python`, `wheels/`), and its path in
//! `SHOAL_JOB_DIR`. The node keeps one per job (`control::jobdir` in the node crate);
//! `shoal run` makes one in its temporary directory.

use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use crate::archive::ArchiveRef;
use crate::error::{Error, IoContext, Result};
use crate::sandbox::Sandbox;
use crate::spec::{JobSpec, Program};
use crate::streaming::{self, Launch};

/// Make `dir` (the task user's when there is one) and unpack each archive, a local file,
/// into it under its name. An archive already unpacked there is left as it is.
pub fn unpack_archives(
    dir: &Path,
    archives: &[(PathBuf, &ArchiveRef)],
    sandbox: Option<&Sandbox>,
) -> Result<()> {
    streaming::prepare_dir(dir, &[], sandbox.and_then(|s| s.user.as_ref()))?;
    for (file, a) in archives {
        let dest = dir.join(&a.name);
        if dest.exists() {
            continue;
        }
        crate::archive::unpack(file, &dest, &format!("archive {}", a.name))?;
    }
    Ok(())
}

/// Run the job's `--setup` command in `dir`: as a task runs (the sandbox, the job's `--env`,
/// the inactivity timeout), with an empty stdin, its stdout and stderr kept in `log`.
pub fn run_setup(
    spec: &JobSpec,
    job_id: &str,
    dir: &Path,
    log: Option<&Path>,
    cancel: &AtomicBool,
    sandbox: Option<&Sandbox>,
    context: String,
) -> Result<()> {
    let Some(cmd) = &spec.setup else {
        return Ok(());
    };
    let program = Program::Shell(cmd.clone());
    let env = crate::task::job_env(spec, job_id);
    let launch = Launch {
        role: "setup",
        program: &program,
        files: &[],
        dir,
        env,
        timeout: Duration::from_secs(spec.task_timeout_secs),
        cancel,
        context,
        sandbox,
        job_dir: Some(dir),
        log,
    };
    streaming::run(
        &launch,
        |_| Ok(()),
        |out| {
            // Its stdout joins its stderr in the log.
            let mut kept = match log {
                Some(p) => Some(
                    crate::tasklog::Log::append(p).ctx(|| format!("opening {}", p.display()))?,
                ),
                None => None,
            };
            let mut buf = vec![0u8; 64 << 10];
            loop {
                let n = std::io::Read::read(out, &mut buf)
                    .ctx(|| "reading the setup's output".into())?;
                if n == 0 {
                    break;
                }
                if let Some(k) = &mut kept {
                    k.write(&buf[..n])
                        .ctx(|| "keeping the setup's output".into())?;
                }
            }
            if let Some(k) = kept {
                k.finish().ctx(|| "keeping the setup's output".into())?;
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// Give attempt directory `attempt` a link to each entry of the job's directory `job_dir`
/// (but its `tmp` and hidden entries); a shipped file of the same name wins.
pub fn link_into(attempt: &Path, job_dir: &Path) -> Result<()> {
    // Links name absolute paths: a relative one would be read from the attempt directory.
    let job_dir =
        &std::path::absolute(job_dir).ctx(|| format!("resolving {}", job_dir.display()))?;
    let entries = std::fs::read_dir(job_dir).ctx(|| format!("listing {}", job_dir.display()))?;
    for e in entries {
        let e = e.ctx(|| format!("listing {}", job_dir.display()))?;
        let name = e.file_name();
        let text = name.to_string_lossy();
        if text.starts_with('.') || text == "tmp" {
            continue;
        }
        let link = attempt.join(&name);
        if link.symlink_metadata().is_ok() {
            continue;
        }
        std::os::unix::fs::symlink(e.path(), &link)
            .ctx(|| format!("linking {} into {}", text, attempt.display()))?;
    }
    Ok(())
}

/// The failure of a setup, as an attempt reports it.
pub fn setup_failed(e: Error) -> Error {
    match e {
        Error::Program {
            message,
            exit,
            stderr_tail,
        } => Error::Program {
            message: format!("the job's --setup failed: {message}"),
            exit,
            stderr_tail,
        },
        other => Error::TaskFailed(format!("the job's --setup failed: {other}")),
    }
}
