//! The job spec: what the user asked for, in a form that travels (serde) and is checked once,
//! before anything is queued. The invariant: a spec that passed [`JobSpec::validate`] names a
//! runnable mapper and reducer, R ≥ 1 and sane budgets; inputs are checked where they live.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::archive::ArchiveRef;
use crate::compress::Codec;
use crate::error::{Error, Result};
use crate::keys::KeyFields;
use crate::partition::Partitioner;

/// Default split size: 64 MiB.
pub const DEFAULT_SPLIT_SIZE: u64 = 64 << 20;
/// Default sort buffer per task, in MiB.
pub const DEFAULT_SORT_MB: u32 = 256;
/// Default task inactivity timeout (as Hadoop), in seconds.
pub const DEFAULT_TASK_TIMEOUT_SECS: u64 = 600;
/// Default attempts per task.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 4;
/// Default maximum record (line) size: 64 MiB.
pub const DEFAULT_MAX_RECORD: u64 = 64 << 20;
/// Most bytes of shipped files a job may carry (they travel inside the job spec).
pub const MAX_SHIPPED_BYTES: usize = 8 << 20;

/// A file shipped with the job into every attempt's working directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShippedFile {
    /// File name inside the attempt directory (no directories).
    pub name: String,
    /// Contents.
    #[serde(with = "serde_bytes")]
    pub bytes: Vec<u8>,
    /// Whether it had an executable bit where it came from.
    pub executable: bool,
}

/// How a mapper, reducer or combiner is run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Program {
    /// A shell command, run with `sh -c` in the attempt directory (Hadoop's `-mapper CMD`).
    Shell(String),
    /// A shipped file, run by its shebang (`.py` without one runs with `python3`).
    File(String),
}

/// What computes the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobKind {
    /// External executables under the Hadoop Streaming contract.
    Streaming {
        /// The mapper.
        map: Program,
        /// The reducer.
        reduce: Program,
        /// An optional combiner, run on sorted map output before it is spilled.
        combine: Option<Program>,
    },
    /// A native app built into Shoal, by name (`shoal_jobs::apps::by_name`).
    App(String),
}

/// A whole job as submitted. In JSON every field but `inputs` and `kind` may be left out
/// (the defaults of [`JobSpec::new`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobSpec {
    /// A human name (defaults to the app or mapper).
    pub name: String,
    /// Input paths as the user gave them (files, directories, globs).
    pub inputs: Vec<String>,
    /// Mapper and reducer.
    pub kind: JobKind,
    /// Number of reduce partitions R; 0: a map-only job, each map's output its own part
    /// file, in input order.
    pub reducers: u32,
    /// Target split size in bytes.
    pub split_size: u64,
    /// Sort buffer per task in bytes (`--sort-mb` × 2^20).
    pub sort_bytes: u64,
    /// Extra environment for tasks (`--env K=V`).
    pub env: BTreeMap<String, String>,
    /// Files shipped into each attempt's directory.
    pub files: Vec<ShippedFile>,
    /// Inactivity timeout of a task attempt, seconds.
    pub task_timeout_secs: u64,
    /// Attempts per task before the job fails.
    pub max_attempts: u32,
    /// Longest line accepted.
    pub max_record_bytes: u64,
    /// Partitioner; `None` means the app's choice (hash unless the app samples ranges).
    pub partitioner: Option<Partitioner>,
    /// On a cluster: copies of each split and part file besides the node that made it.
    #[serde(default = "default_replication")]
    pub replication: u32,
    /// On a cluster: pack small input files together into splits of up to `split_size`
    /// (`--combine-files`), so a thousand small files are a few map tasks, not a thousand.
    /// A native app still sees each record's own file name; a streaming mapper gets
    /// several files on one stdin, so `SHOAL_INPUT_FILE` is not set for it and
    /// `SHOAL_INPUT_FILES` lists the files, one per line.
    pub combine_files: bool,
    /// Streaming jobs: how map output lines are keyed, partitioned and sorted
    /// (`--separator`, `--key-fields`, `--partition-fields`, `--sort-keys`); `None`: the
    /// key is the text before the first tab, partitioned and sorted by its bytes.
    pub keys: Option<KeyFields>,
    /// Write each part compressed (`--compress-output gzip|zstd`), named `part-NNNNN.gz`
    /// or `.zst`.
    pub compress_output: Option<Codec>,
    /// How input becomes map input: lines (default), or each file whole on one mapper's
    /// stdin (`--input-format whole-files`).
    pub input_format: InputFormat,
    /// Archives unpacked once per job on each node that runs its tasks, each seen by every
    /// attempt as its name in the working directory (`--archive FILE[#name]`).
    pub archives: Vec<ArchiveRef>,
    /// A shell command run once per job on each node before its first task there, in the
    /// job's directory on that node, which every attempt sees (`--setup CMD`).
    pub setup: Option<String>,
    /// Who the job belongs to (`--user`, default `$USER`): the scheduler shares the
    /// cluster's slots fairly between owners. Empty in a spec that named none.
    pub user: String,
    /// Its owner's weight while this job is the owner's oldest with work waiting
    /// (`--priority`, [`MIN_PRIORITY`]..=[`MAX_PRIORITY`]): each step up doubles the share.
    pub priority: i32,
}

/// Lowest `--priority`.
pub const MIN_PRIORITY: i32 = -8;
/// Highest `--priority`.
pub const MAX_PRIORITY: i32 = 8;
/// Longest `--user`.
pub const MAX_USER_BYTES: usize = 64;

/// Most archives one job may carry.
pub const MAX_ARCHIVES: usize = 64;
/// Longest `--setup` command.
pub const MAX_SETUP_BYTES: usize = 64 << 10;

/// How input files become map input (`--input-format`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum InputFormat {
    /// Line-aligned splits of about `--split-size`; compressed files decompressed.
    #[default]
    Lines,
    /// One map task per file, its bytes unchanged (not decompressed) on the mapper's stdin.
    WholeFiles,
}

/// Copies kept of splits and part files besides the original (`--replication`).
pub const DEFAULT_REPLICATION: u32 = 2;

/// Most copies a job may ask for: the table records at most
/// `cluster::MAX_HOLDERS` (64) holders of anything.
pub const MAX_REPLICATION: u32 = 16;

fn default_replication() -> u32 {
    DEFAULT_REPLICATION
}

impl Default for JobSpec {
    /// No input and no program: [`JobSpec::validate`] refuses it until both are given.
    fn default() -> Self {
        JobSpec::new("", Vec::new(), JobKind::App(String::new()))
    }
}

impl JobSpec {
    /// A spec with the defaults of DESIGN.md's command line.
    pub fn new(name: impl Into<String>, inputs: Vec<String>, kind: JobKind) -> Self {
        JobSpec {
            name: name.into(),
            inputs,
            kind,
            reducers: 1,
            split_size: DEFAULT_SPLIT_SIZE,
            sort_bytes: u64::from(DEFAULT_SORT_MB) << 20,
            env: BTreeMap::new(),
            files: Vec::new(),
            task_timeout_secs: DEFAULT_TASK_TIMEOUT_SECS,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_record_bytes: DEFAULT_MAX_RECORD,
            partitioner: None,
            replication: DEFAULT_REPLICATION,
            combine_files: false,
            keys: None,
            compress_output: None,
            input_format: InputFormat::Lines,
            archives: Vec::new(),
            setup: None,
            user: String::new(),
            priority: 0,
        }
    }

    /// The file name of part `p`: `part-00003`, or `part-00003.gz` with `--compress-output
    /// gzip`.
    pub fn part_name(&self, p: u32) -> String {
        let ext = self.compress_output.map_or("", Codec::extension);
        format!("{}{ext}", part_name(p))
    }

    /// The split size to cut input files at: whole files are never cut.
    pub fn cut_size(&self) -> u64 {
        match self.input_format {
            InputFormat::Lines => self.split_size,
            InputFormat::WholeFiles => u64::MAX,
        }
    }

    /// Check everything that does not depend on where the inputs live.
    pub fn validate(&self) -> Result<()> {
        self.validate_shape()?;
        self.validate_bounds()?;
        self.validate_shipped()?;
        self.validate_dependencies()?;
        self.validate_programs()
    }

    /// Inputs given, and options that fit the kind of job.
    fn validate_shape(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.inputs.is_empty() {
            return bad("no input: give --input PATH".into());
        }
        for input in &self.inputs {
            if let Some((_, pattern)) = crate::inplace::in_place(input) {
                crate::inplace::check_relative(input, pattern)?;
            }
        }
        let streaming_combiner = matches!(
            self.kind,
            JobKind::Streaming {
                combine: Some(_),
                ..
            }
        );
        if self.reducers == 0 && streaming_combiner {
            return bad(
                "--combine needs reducers: a map-only job (--reducers 0) combines nothing".into(),
            );
        }
        if self.input_format == InputFormat::WholeFiles {
            if matches!(self.kind, JobKind::App(_)) {
                return bad("--input-format whole-files is for streaming mappers (--map)".into());
            }
            if self.combine_files {
                return bad("--input-format whole-files gives each file its own map: not with --combine-files".into());
            }
        }
        if let Some(c) = self.compress_output {
            if !matches!(c, Codec::Gzip | Codec::Zstd) {
                return bad(format!(
                    "--compress-output {}: only gzip and zstd are written",
                    c.name()
                ));
            }
        }
        if let Some(k) = &self.keys {
            if matches!(self.kind, JobKind::App(_)) {
                return bad(
                    "--separator, --key-fields, --partition-fields and --sort-keys apply to \
                     streaming jobs (--map/--reduce), not to --app"
                        .into(),
                );
            }
            k.validate()?;
        }
        Ok(())
    }

    /// Every number within its bounds.
    fn validate_bounds(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.replication > MAX_REPLICATION {
            return bad(format!(
                "--replication {} is more than {MAX_REPLICATION}",
                self.replication
            ));
        }
        if self.reducers > 100_000 {
            return bad(format!("--reducers {} is more than 100000", self.reducers));
        }
        if self.split_size < 1024 {
            return bad(format!(
                "--split-size {} is below 1024 bytes",
                self.split_size
            ));
        }
        if !(1..=4000 << 20).contains(&self.sort_bytes) {
            return bad(format!(
                "--sort-mb must be 1..=4000, got {}",
                self.sort_bytes as f64 / f64::from(1 << 20)
            ));
        }
        if !(MIN_PRIORITY..=MAX_PRIORITY).contains(&self.priority) {
            return bad(format!(
                "--priority must be {MIN_PRIORITY}..={MAX_PRIORITY}, got {}",
                self.priority
            ));
        }
        if self.user.len() > MAX_USER_BYTES || self.user.chars().any(char::is_control) {
            return bad(format!(
                "--user {:?} must be at most {MAX_USER_BYTES} bytes without control characters",
                self.user
            ));
        }
        if self.max_attempts < 1 {
            return bad("--max-attempts must be at least 1".into());
        }
        if self.task_timeout_secs < 1 {
            return bad("--task-timeout must be at least 1 second".into());
        }
        Ok(())
    }

    /// Shipped files of bounded size and plain names; environment names that are names.
    fn validate_shipped(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        let shipped: usize = self.files.iter().map(|f| f.bytes.len()).sum();
        if shipped > MAX_SHIPPED_BYTES {
            return bad(format!(
                "shipped files total {shipped} bytes, more than the {MAX_SHIPPED_BYTES}-byte limit \
                 (they travel inside the job spec; put large data in --input instead)"
            ));
        }
        for f in &self.files {
            if f.name.is_empty() || f.name.contains('/') || f.name == "." || f.name == ".." {
                return bad(format!(
                    "shipped file name {:?} must be a plain file name",
                    f.name
                ));
            }
        }
        for key in self.env.keys() {
            if key.is_empty() || key.contains('=') || key.contains('\0') {
                return bad(format!("--env name {key:?} is not a valid variable name"));
            }
        }
        Ok(())
    }

    /// A known app, or programs that are shipped with an interpreter this node knows.
    fn validate_programs(&self) -> Result<()> {
        match &self.kind {
            JobKind::App(name) => {
                crate::apps::by_name(name, &self.env)?;
            }
            JobKind::Streaming {
                map,
                reduce,
                combine,
            } => {
                for p in [Some(map), Some(reduce), combine.as_ref()]
                    .into_iter()
                    .flatten()
                {
                    if let Program::File(name) = p {
                        let f = self.files.iter().find(|f| &f.name == name).ok_or_else(|| {
                            Error::InvalidSpec(format!(
                                "program file {name} is not shipped with the job"
                            ))
                        })?;
                        interpreter_for(f)?;
                    }
                }
            }
        }
        Ok(())
    }
}

impl JobSpec {
    /// `--archive` and `--setup`: streaming jobs only; archive names unique, clashing with
    /// no shipped file; a setup command of bounded size.
    fn validate_dependencies(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.archives.is_empty() && self.setup.is_none() {
            return Ok(());
        }
        if matches!(self.kind, JobKind::App(_)) {
            return bad("--archive and --setup are for streaming jobs (--map/--reduce)".into());
        }
        if self.archives.len() > MAX_ARCHIVES {
            return bad(format!(
                "{} archives; a job may carry at most {MAX_ARCHIVES}",
                self.archives.len()
            ));
        }
        for (i, a) in self.archives.iter().enumerate() {
            a.validate()?;
            if self.archives[..i].iter().any(|b| b.name == a.name) {
                return bad(format!(
                    "two archives are named {}: rename one with FILE#name",
                    a.name
                ));
            }
            if a.name == "tmp" || self.files.iter().any(|f| f.name == a.name) {
                return bad(format!(
                    "archive name {} is also a shipped file (or `tmp`) in the attempt directory: rename it with FILE#name",
                    a.name
                ));
            }
        }
        if let Some(cmd) = &self.setup {
            if cmd.trim().is_empty() || cmd.contains('\0') || cmd.len() > MAX_SETUP_BYTES {
                return bad(format!(
                    "--setup must be a non-empty command of at most {} KiB",
                    MAX_SETUP_BYTES >> 10
                ));
            }
        }
        Ok(())
    }
}

/// A part file's name before any compression extension: `part-00003`.
pub fn part_name(partition: u32) -> String {
    format!("part-{partition:05}")
}

/// How a shipped program file is started: `None` = exec it directly (shebang or native
/// executable), `Some(interp)` = run `interp FILE`.
pub fn interpreter_for(f: &ShippedFile) -> Result<Option<&'static str>> {
    if f.bytes.starts_with(b"#!") || f.bytes.starts_with(b"\x7fELF") {
        return Ok(None);
    }
    if f.name.ends_with(".py") {
        return Ok(Some("python3"));
    }
    if f.name.ends_with(".sh") {
        return Ok(Some("sh"));
    }
    if f.executable {
        return Ok(None);
    }
    Err(Error::InvalidSpec(format!(
        "{}: not executable and has no known interpreter (add a #! line, or name it .py or .sh)",
        f.name
    )))
}

/// Turn a `--map`/`--reduce`/`--combine` value into a [`Program`], shipping the file it names.
///
/// A value without whitespace that names an existing file ships that file; one that looks
/// like a path (a `/` or a file extension) but does not exist is an error; anything else is a
/// shell command.
pub fn resolve_program(value: &str, files: &mut Vec<ShippedFile>) -> Result<Program> {
    if value.trim().is_empty() {
        return Err(Error::InvalidSpec("empty mapper/reducer command".into()));
    }
    if value.chars().any(char::is_whitespace) {
        return Ok(Program::Shell(value.to_owned()));
    }
    let path = Path::new(value);
    if path.is_file() {
        let f = read_shipped(path)?;
        let name = f.name.clone();
        if !files.iter().any(|g| g.name == name) {
            files.push(f);
        }
        return Ok(Program::File(name));
    }
    let looks_like_path = value.contains('/')
        || path
            .extension()
            .is_some_and(|e| !e.is_empty() && e.len() <= 4 && !value.starts_with('.'));
    if looks_like_path {
        return Err(Error::InvalidSpec(format!("{value}: no such file")));
    }
    Ok(Program::Shell(value.to_owned()))
}

/// Read a local file to ship with a job (`--file`, or a program file).
pub fn read_shipped(path: &Path) -> Result<ShippedFile> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input {
        path: path.to_owned(),
        source: e,
    })?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidSpec(format!("{}: not a file name", path.display())))?;
    let executable = {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path)
            .map(|m| m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    Ok(ShippedFile {
        name,
        bytes,
        executable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> JobSpec {
        JobSpec::new("t", vec!["in".into()], JobKind::App("wordcount".into()))
    }

    #[test]
    fn defaults_validate_and_bad_values_name_the_flag() {
        spec().validate().expect("defaults are valid");
        let mut s = spec();
        s.reducers = 200_000;
        assert!(s.validate().unwrap_err().to_string().contains("--reducers"));
        let mut s = spec();
        s.kind = JobKind::App("nope".into());
        assert!(s.validate().unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn program_values_resolve_as_the_contract_says() {
        let dir = tempfile::tempdir().unwrap();
        let script = dir.path().join("m.py");
        std::fs::write(&script, "print(1)\n").unwrap();
        let mut files = vec![];
        let p = resolve_program(script.to_str().unwrap(), &mut files).unwrap();
        assert_eq!(p, Program::File("m.py".into()));
        assert_eq!(interpreter_for(&files[0]).unwrap(), Some("python3"));
        assert_eq!(
            resolve_program("cat", &mut files).unwrap(),
            Program::Shell("cat".into())
        );
        assert_eq!(
            resolve_program("tr -s ' ' '\\n'", &mut files).unwrap(),
            Program::Shell("tr -s ' ' '\\n'".into())
        );
        assert!(resolve_program("missing.py", &mut files).is_err());
        assert!(resolve_program("./nope", &mut files).is_err());
        let data = ShippedFile {
            name: "data.bin".into(),
            bytes: vec![1, 2],
            executable: false,
        };
        assert!(interpreter_for(&data)
            .unwrap_err()
            .to_string()
            .contains("no known interpreter"));
    }
}
