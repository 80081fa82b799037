//! The flags that describe a job, shared by `shoal run` and `shoal submit`, and their
//! translation into a [`JobSpec`]. Every check that can fail before anything is queued
//! happens here or in [`JobSpec::validate`].

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Args;
use shoal_jobs::compress::Codec;
use shoal_jobs::keys::{self, KeyFields};
use shoal_jobs::spec::{self, JobKind, JobSpec};

/// Job flags (DESIGN.md's command line).
#[derive(Debug, Args)]
pub struct JobArgs {
    /// Input files, directories (their files, recursively) or globs; repeatable.
    #[arg(help_heading = "Input", long, required = true, num_args = 1..)]
    pub input: Vec<String>,
    /// Mapper: a shell command, or a file to ship and run (by shebang; `.py` runs with python3).
    /// Needs --reduce, unless the job is map-only (-R 0).
    #[arg(
        help_heading = "Program",
        long,
        visible_alias = "mapper",
        conflicts_with = "app"
    )]
    pub map: Option<String>,
    /// Reducer, as --map.
    #[arg(
        help_heading = "Program",
        long,
        visible_alias = "reducer",
        requires = "map",
        conflicts_with = "app"
    )]
    pub reduce: Option<String>,
    /// Optional combiner, run on sorted map output before it is spilled.
    #[arg(
        help_heading = "Program",
        long,
        visible_alias = "combiner",
        requires = "map",
        conflicts_with = "app"
    )]
    pub combine: Option<String>,
    /// A built-in native app: wordcount, grep, invertedindex, sort.
    #[arg(help_heading = "Program", long, required_unless_present = "map")]
    pub app: Option<String>,
    /// Number of reducers R (part files); 0: a map-only job, one part per map, in input
    /// order.
    #[arg(
        help_heading = "Keys, partitions and sorting",
        long,
        short = 'R',
        default_value_t = 1,
        env = "SHOAL_REDUCERS"
    )]
    pub reducers: u32,
    /// Target split size: bytes, or with a unit (64K, 64M, 1G; powers of 1,024).
    #[arg(help_heading = "Input", long, default_value_t = spec::DEFAULT_SPLIT_SIZE, env = "SHOAL_SPLIT_SIZE", value_parser = parse_size)]
    pub split_size: u64,
    /// Pack small input files together into splits of up to --split-size (one map task
    /// for many files). A streaming mapper then reads several files on one stdin:
    /// SHOAL_INPUT_FILE is unset and SHOAL_INPUT_FILES lists them, one per line. On a
    /// cluster only: `shoal run` starts a task per file cheaply and ignores it.
    #[arg(help_heading = "Input", long, env = "SHOAL_COMBINE_FILES")]
    pub combine_files: bool,
    /// Sort buffer per task, MiB.
    #[arg(help_heading = "Keys, partitions and sorting", long, default_value_t = spec::DEFAULT_SORT_MB, env = "SHOAL_SORT_MB")]
    pub sort_mb: u32,
    /// Extra files shipped into every task's working directory; repeatable.
    #[arg(help_heading = "Program", long = "file")]
    pub files: Vec<PathBuf>,
    /// Environment for tasks, K=V; repeatable.
    #[arg(help_heading = "Program", long = "env", value_parser = parse_env)]
    pub env: Vec<(String, String)>,
    /// A name for the job.
    #[arg(help_heading = "Running", long)]
    pub name: Option<String>,
    /// Kill an attempt silent (no input read, no output, no status) this long, seconds.
    #[arg(help_heading = "Running", long, default_value_t = spec::DEFAULT_TASK_TIMEOUT_SECS, env = "SHOAL_TASK_TIMEOUT")]
    pub task_timeout: u64,
    /// Attempts per task before the job fails.
    #[arg(help_heading = "Running", long, default_value_t = spec::DEFAULT_MAX_ATTEMPTS, env = "SHOAL_MAX_ATTEMPTS")]
    pub max_attempts: u32,
    /// Streaming: the field separator of map output lines (default tab; `\t` is a tab).
    /// Like Hadoop's stream.map.output.field.separator.
    #[arg(help_heading = "Keys, partitions and sorting", long, requires = "map")]
    pub separator: Option<String>,
    /// Streaming: the key is a line's first N fields (default 1); the reducer still reads
    /// each line as the mapper wrote it. Hadoop's stream.num.map.output.key.fields.
    #[arg(help_heading = "Keys, partitions and sorting", long, requires = "map")]
    pub key_fields: Option<u32>,
    /// Streaming: partition on key fields A..B only, e.g. `1,2` (Hadoop's
    /// KeyFieldBasedPartitioner -k1,2): lines whose key agrees on them meet in one reducer.
    #[arg(help_heading = "Keys, partitions and sorting", long, requires = "map", allow_hyphen_values = true, value_parser = parse_partition_fields)]
    pub partition_fields: Option<(u32, u32)>,
    /// Streaming: the reducer's input order, as sort(1) key specs over key fields:
    /// e.g. 'k1,1 k2,2nr' (n numeric, r reverse; Hadoop's KeyFieldBasedComparator).
    /// Lines that compare equal keep their map output order.
    #[arg(
        help_heading = "Keys, partitions and sorting",
        long,
        requires = "map",
        allow_hyphen_values = true
    )]
    pub sort_keys: Option<String>,
    /// How input becomes map input: `lines` (line-aligned splits, the default) or
    /// `whole-files` (one map per file, its bytes unchanged on the mapper's stdin).
    #[arg(help_heading = "Input", long, value_enum, default_value = "lines")]
    pub input_format: Format,
    /// Write each part compressed: gzip (part-NNNNN.gz) or zstd (part-NNNNN.zst).
    #[arg(help_heading = "Output", long, value_parser = parse_output_codec)]
    pub compress_output: Option<Codec>,
    /// Longest input line accepted: bytes, or with a unit (64K, 16M).
    #[arg(help_heading = "Input", long, default_value_t = spec::DEFAULT_MAX_RECORD, env = "SHOAL_MAX_RECORD", value_parser = parse_size)]
    pub max_record: u64,
    /// Streaming: an archive (.tar, .tar.gz/.tgz, .tar.bz2, .tar.zst, .tar.xz, .zip)
    /// unpacked once per job on each node and seen by every task as NAME in its working
    /// directory: FILE#NAME, or the file's name without its extension; repeatable.
    #[arg(help_heading = "Program", long = "archive", requires = "map")]
    pub archives: Vec<String>,
    /// Streaming: a shell command run once per job on each node before its first task
    /// there, in the job's directory that every task sees (its archives are there), e.g.
    /// 'python3 -m venv venv && venv/bin/pip install --no-index wheels/*.whl'.
    #[arg(help_heading = "Program", long, requires = "map")]
    pub setup: Option<String>,
    /// The job's owner: a cluster shares its task slots fairly between owners (default
    /// $USER). Declared, not authenticated: anyone holding the cluster key may name any.
    #[arg(help_heading = "Running", long, env = "SHOAL_USER")]
    pub user: Option<String>,
    /// The job's weight against other owners' jobs, -8..=8: each step up doubles its
    /// owner's share of the slots while it waits; within an owner, jobs run in order.
    #[arg(
        help_heading = "Running",
        long,
        default_value_t = 0,
        allow_hyphen_values = true,
        env = "SHOAL_PRIORITY"
    )]
    pub priority: i32,
}

/// The owner a job gets when `--user` is not given: `$USER`, else `$LOGNAME`, else
/// `anonymous`.
pub fn default_user() -> String {
    ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "anonymous".to_owned())
}

/// A size: bytes (`65536`), or a number with a unit — K, M, G or T, powers of 1,024, with or
/// without a trailing `B` or `iB`, any case (`64M`, `64MiB`, `1g`, `1.5G`).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (number, shift) = match body.char_indices().last() {
        Some((i, c @ ('k' | 'm' | 'g' | 't'))) => {
            (&body[..i], 10 * (1 + "kmgt".find(c).unwrap_or(0) as u32))
        }
        _ => (body, 0),
    };
    let bad = || format!("{s:?} is not a size: bytes, or a number with K, M, G or T (64M, 1G)");
    if let Ok(n) = number.trim().parse::<u64>() {
        return n.checked_mul(1u64 << shift).ok_or_else(bad);
    }
    let f: f64 = number.trim().parse().map_err(|_| bad())?;
    let bytes = f * (1u64 << shift) as f64;
    if !(0.0..=u64::MAX as f64).contains(&bytes) || shift == 0 {
        return Err(bad());
    }
    Ok(bytes.round() as u64)
}

fn parse_env(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_owned(), v.to_owned())),
        _ => Err(format!("{s:?} is not K=V")),
    }
}

/// `--input-format`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Format {
    /// Line-aligned splits of about --split-size.
    Lines,
    /// Each file whole, unchanged, on one mapper's stdin.
    WholeFiles,
}

fn parse_output_codec(s: &str) -> Result<Codec, String> {
    shoal_jobs::compress::parse_output_codec(s).map_err(|e| e.to_string())
}

fn parse_partition_fields(s: &str) -> Result<(u32, u32), String> {
    shoal_jobs::keys::parse_partition_fields(s).map_err(|e| e.to_string())
}

impl JobArgs {
    /// The key-field flags as the spec carries them; `None` when none was given.
    fn key_fields(&self) -> Result<Option<KeyFields>, shoal_jobs::Error> {
        if self.separator.is_none()
            && self.key_fields.is_none()
            && self.partition_fields.is_none()
            && self.sort_keys.is_none()
        {
            return Ok(None);
        }
        let defaults = KeyFields::default();
        Ok(Some(KeyFields {
            separator: match self.separator.as_deref() {
                Some("\\t") | None => defaults.separator,
                Some(s) => s.to_owned(),
            },
            key_fields: self.key_fields.unwrap_or(defaults.key_fields),
            partition_fields: self.partition_fields,
            sort_keys: match &self.sort_keys {
                Some(text) => keys::parse_sort_keys(text)?,
                None => Vec::new(),
            },
        }))
    }

    /// The local file of each `--archive`, in the spec's order.
    pub fn archive_files(&self) -> Result<Vec<PathBuf>, shoal_jobs::Error> {
        self.archives
            .iter()
            .map(|a| shoal_jobs::archive::parse_arg(a).map(|(path, _)| path))
            .collect()
    }

    /// Warnings about the job's commands: a shell command that names a file of this machine
    /// by a relative path, which no task sees (each runs in a directory of its own, where
    /// only what is shipped lies), unless a file of that name is shipped.
    pub fn warnings(&self) -> Vec<String> {
        let shipped: Vec<String> = self
            .files
            .iter()
            .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        let commands = [
            ("--map", &self.map),
            ("--reduce", &self.reduce),
            ("--combine", &self.combine),
        ];
        let mut said = Vec::new();
        for (flag, cmd) in commands {
            let Some(cmd) = cmd.as_deref().filter(|c| c.contains(char::is_whitespace)) else {
                continue;
            };
            for word in cmd.split_whitespace().skip(1) {
                let path = std::path::Path::new(word);
                let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
                if path.is_relative()
                    && word.contains('/')
                    && path.is_file()
                    && name.as_ref().is_some_and(|n| !shipped.contains(n))
                {
                    let name = name.unwrap_or_default();
                    said.push(format!(
                        "warning: {flag} '{cmd}' names {word}, a file of this machine that no task sees (each runs in a directory of its own): give {flag} {word} to ship it and run it by its shebang, or --file {word} and call it {name}"
                    ));
                }
            }
        }
        said
    }

    /// Build and validate the spec; errors name the flag or file at fault.
    pub fn to_spec(&self) -> Result<JobSpec, shoal_jobs::Error> {
        let mut files = Vec::new();
        for f in &self.files {
            files.push(spec::read_shipped(f)?);
        }
        let kind = match (&self.app, &self.map, &self.reduce) {
            (Some(app), _, _) => JobKind::App(app.clone()),
            // A map-only job (-R 0) runs no reducer: it needs none.
            (None, Some(map), reduce) if reduce.is_some() || self.reducers == 0 => {
                JobKind::Streaming {
                    map: spec::resolve_program(map, &mut files)?,
                    reduce: spec::resolve_program(reduce.as_deref().unwrap_or("cat"), &mut files)?,
                    combine: self
                        .combine
                        .as_deref()
                        .map(|c| spec::resolve_program(c, &mut files))
                        .transpose()?,
                }
            }
            _ => return Err(shoal_jobs::Error::InvalidSpec(
                "give --app NAME, or --map and --reduce (--map alone with -R 0: a map-only job)"
                    .into(),
            )),
        };
        let name = self.name.clone().unwrap_or_else(|| match &kind {
            JobKind::App(a) => a.clone(),
            JobKind::Streaming { map, .. } => shoal_jobs::streaming::display(map).to_owned(),
        });
        let mut spec = JobSpec::new(name, self.input.clone(), kind);
        spec.reducers = self.reducers;
        spec.split_size = self.split_size;
        spec.combine_files = self.combine_files;
        spec.sort_bytes = u64::from(self.sort_mb) << 20;
        spec.files = files;
        spec.env = self.env.iter().cloned().collect::<BTreeMap<_, _>>();
        spec.task_timeout_secs = self.task_timeout;
        spec.max_attempts = self.max_attempts;
        spec.max_record_bytes = self.max_record;
        spec.keys = self.key_fields()?;
        spec.compress_output = self.compress_output;
        spec.input_format = match self.input_format {
            Format::Lines => spec::InputFormat::Lines,
            Format::WholeFiles => spec::InputFormat::WholeFiles,
        };
        for a in &self.archives {
            let (path, name) = shoal_jobs::archive::parse_arg(a)?;
            spec.archives
                .push(shoal_jobs::archive::describe(&path, name)?);
        }
        spec.setup = self.setup.clone();
        spec.user = self.user.clone().unwrap_or_else(default_user);
        spec.priority = self.priority;
        spec.validate()?;
        Ok(spec)
    }
}
