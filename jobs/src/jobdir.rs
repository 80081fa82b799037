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
use crate::sandbox::{Sandbox, TaskUser};
use crate::spec::{JobSpec, Program};
use crate::streaming::{self, Launch};

/// Make `dir` afresh (what a failed try left there goes), unpack each archive, a local file,
/// into it under its name, and only then give it to `user` (the job's, when the node runs as
/// root): the node never unpacks into a directory a task could have planted names in. No
/// entry may leave less than `keep_free` bytes free on the disk.
pub fn unpack_archives(
    dir: &Path,
    archives: &[(PathBuf, &ArchiveRef)],
    user: Option<&TaskUser>,
    keep_free: u64,
) -> Result<()> {
    crate::scratch::fresh_dir(dir, 0o700).ctx(|| format!("creating {}", dir.display()))?;
    let tmp = dir.join("tmp");
    crate::scratch::new_dir(&tmp, 0o700).ctx(|| format!("creating {}", tmp.display()))?;
    for (file, a) in archives {
        let dest = dir.join(&a.name);
        crate::unpack::unpack(file, &dest, &format!("archive {}", a.name), keep_free)?;
    }
    crate::scratch::give(dir, user).ctx(|| format!("giving {} to the job's user", dir.display()))
}

/// Run the job's `--setup` command in `dir`: as a task runs (the sandbox, the job's `--env`,
/// the inactivity timeout), with an empty stdin, its stdout and stderr kept in `log`.
pub fn run_setup(
    spec: &JobSpec,
    job_id: &str,
    dir: &Path,
    log: Option<&Path>,
    cancel: &AtomicBool,
    (sandbox, user): (Option<&Sandbox>, Option<&TaskUser>),
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
        user,
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
