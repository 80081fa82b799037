//! `shoal streaming`: Hadoop Streaming's command line as written after `hadoop jar
//! hadoop-streaming.jar`, run on the cluster (`shoal submit --output`) or, with
//! `--in-process`, in this process (`shoal run`). Each Hadoop option and `-D` property
//! becomes the Shoal flag that does the same (docs/guide.md has the table); what Shoal does
//! not support is refused by name, before anything runs.

use std::process::ExitCode;

use clap::Args;

use crate::cli::http::NodeUrls;

/// `shoal streaming` flags.
#[derive(Debug, Args)]
pub struct StreamingArgs {
    #[command(flatten)]
    nodes: NodeUrls,
    /// Run the job in this process (as `shoal run`), not on the cluster.
    #[arg(long)]
    in_process: bool,
    /// Print the Shoal command the Hadoop command line becomes, and exit.
    #[arg(long)]
    explain: bool,
    /// Hadoop Streaming's options, as written: -input, -output, -mapper, -reducer,
    /// -combiner, -file, -files, -archives, -cmdenv, -numReduceTasks, -partitioner,
    /// -inputformat, -outputformat, and generic -D name=value.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "HADOOP_OPTIONS"
    )]
    hadoop: Vec<String>,
}

/// Hadoop's identity mapper and reducer classes, which are `cat` here.
const IDENTITY: [&str; 4] = [
    "org.apache.hadoop.mapred.lib.IdentityMapper",
    "org.apache.hadoop.mapred.lib.IdentityReducer",
    "org.apache.hadoop.mapreduce.Mapper",
    "org.apache.hadoop.mapreduce.Reducer",
];

/// The key-field partitioner, in either API.
const KEY_PARTITIONER: [&str; 2] = [
    "org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner",
    "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedPartitioner",
];

/// The key-field comparator, in either API.
const KEY_COMPARATOR: [&str; 2] = [
    "org.apache.hadoop.mapred.lib.KeyFieldBasedComparator",
    "org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator",
];

/// The `-D` properties that name a field separator (Shoal has one for the key and its
/// fields).
const SEPARATORS: [&str; 4] = [
    "stream.map.output.field.separator",
    "mapreduce.map.output.key.field.separator",
    "map.output.key.field.separator",
    "stream.reduce.output.field.separator",
];

/// What a Hadoop command line asks for, as it is read.
#[derive(Debug, Default)]
struct Hadoop {
    inputs: Vec<String>,
    output: Option<String>,
    mapper: Option<String>,
    reducer: Option<String>,
    combiner: Option<String>,
    files: Vec<String>,
    archives: Vec<String>,
    env: Vec<String>,
    reducers: Option<String>,
    partitioner: Option<String>,
    /// `-D` properties, in order.
    props: Vec<(String, String)>,
}

/// The value after option `opt`, or an error naming it.
fn value(opt: &str, it: &mut std::slice::Iter<'_, String>) -> Result<String, String> {
    it.next()
        .cloned()
        .ok_or_else(|| format!("{opt} needs a value"))
}

/// Read Hadoop's options (single dash; `--` accepted too) and `-D name=value`.
fn read(args: &[String]) -> Result<Hadoop, String> {
    let mut h = Hadoop::default();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let opt = arg.strip_prefix('-').unwrap_or(arg);
        let opt = opt.strip_prefix('-').unwrap_or(opt);
        if let Some(prop) = opt.strip_prefix('D') {
            let prop = if prop.is_empty() {
                value("-D", &mut it)?
            } else {
                prop.to_string()
            };
            let (k, v) = prop
                .split_once('=')
                .ok_or_else(|| format!("-D {prop}: expected name=value"))?;
            h.props.push((k.trim().to_string(), v.to_string()));
            continue;
        }
        let list = |v: String| -> Vec<String> {
            v.split(',')
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        };
        match opt {
            "input" => h.inputs.extend(list(value(arg, &mut it)?)),
            "output" => h.output = Some(value(arg, &mut it)?),
            "mapper" => h.mapper = Some(value(arg, &mut it)?),
            "reducer" => h.reducer = Some(value(arg, &mut it)?),
            "combiner" => h.combiner = Some(value(arg, &mut it)?),
            "file" => h.files.push(value(arg, &mut it)?),
            "files" => h.files.extend(list(value(arg, &mut it)?)),
            "archives" => h.archives.extend(list(value(arg, &mut it)?)),
            "cmdenv" => h.env.push(value(arg, &mut it)?),
            "numReduceTasks" => h.reducers = Some(value(arg, &mut it)?),
            "partitioner" => h.partitioner = Some(value(arg, &mut it)?),
            "inputformat" => {
                let v = value(arg, &mut it)?;
                if !v.ends_with(".TextInputFormat") {
                    return Err(format!(
                        "-inputformat {v} is not supported: Shoal reads text lines (TextInputFormat), or whole files with `shoal submit --input-format whole-files`"
                    ));
                }
            }
            "outputformat" => {
                let v = value(arg, &mut it)?;
                if !v.ends_with(".TextOutputFormat") {
                    return Err(format!(
                        "-outputformat {v} is not supported: Shoal writes text part files (TextOutputFormat)"
                    ));
                }
            }
            "verbose" | "info" | "debug" => {}
            _ => {
                return Err(format!(
                    "{arg} is not an option shoal streaming supports (see `shoal streaming --help` and docs/guide.md)"
                ))
            }
        }
    }
    Ok(h)
}

/// `mapreduce.partition.keypartitioner.options` (`-k1,2`, `-k2`) as `--partition-fields`.
fn partition_fields(opts: &str) -> Result<String, String> {
    let spec = opts.trim().strip_prefix("-k").ok_or_else(|| {
        format!("mapreduce.partition.keypartitioner.options={opts}: expected -kSTART[,END]")
    })?;
    let field = |s: &str| -> Result<u32, String> {
        // A field may name a character (`2.3`) in Hadoop; Shoal partitions on whole fields.
        s.parse::<u32>().map_err(|_| {
            format!("mapreduce.partition.keypartitioner.options={opts}: Shoal partitions on whole fields (-kSTART[,END])")
        })
    };
    let (a, b) = match spec.split_once(',') {
        Some((a, b)) => (field(a)?, field(b)?),
        None => (field(spec)?, field(spec)?),
    };
    Ok(format!("{a},{b}"))
}

/// The one field separator of the `-D` properties that name one, or an error when they
/// differ (Shoal has one separator for the key and its fields).
fn separator(props: &[(String, String)]) -> Result<Option<String>, String> {
    let named: Vec<&(String, String)> = props
        .iter()
        .filter(|(k, _)| SEPARATORS.contains(&k.as_str()))
        .collect();
    match named.split_first() {
        None => Ok(None),
        Some((first, rest)) => match rest.iter().find(|(_, v)| *v != first.1) {
            Some(other) => Err(format!(
                "-D {}={} and -D {}={}: Shoal cuts map output into fields with one separator",
                first.0, first.1, other.0, other.1
            )),
            None => Ok(Some(first.1.clone())),
        },
    }
}

/// What the `-D` properties say, read.
#[derive(Debug, Default)]
struct Props {
    reducers: Option<String>,
    key_fields: Option<String>,
    partition: Option<String>,
    sort_keys: Option<String>,
    /// `KeyFieldBasedComparator` was named.
    comparator: bool,
    /// `…compress=true`, and the codec's name of ours.
    compress: bool,
    codec: Option<String>,
    name: Option<String>,
}

/// Read the `-D` properties; an error names one Shoal does not support.
fn properties(props: &[(String, String)]) -> Result<Props, String> {
    let mut p = Props::default();
    for (k, v) in props {
        match k.as_str() {
            "mapreduce.job.reduces" | "mapred.reduce.tasks" => p.reducers = Some(v.clone()),
            "stream.num.map.output.key.fields" => p.key_fields = Some(v.clone()),
            k if SEPARATORS.contains(&k) => {}
            "mapreduce.partition.keypartitioner.options" | "mapred.text.key.partitioner.options" => {
                p.partition = Some(partition_fields(v)?)
            }
            "mapreduce.partition.keycomparator.options" | "mapred.text.key.comparator.options" => {
                p.sort_keys = Some(v.trim().to_string())
            }
            "mapreduce.job.output.key.comparator.class" | "mapred.output.key.comparator.class" => {
                if !KEY_COMPARATOR.contains(&v.as_str()) {
                    return Err(format!(
                        "-D {k}={v}: Shoal sorts keys bytewise, or by key fields with KeyFieldBasedComparator"
                    ));
                }
                p.comparator = true;
            }
            "mapreduce.output.fileoutputformat.compress" | "mapred.output.compress" => {
                p.compress = v.trim().eq_ignore_ascii_case("true")
            }
            "mapreduce.output.fileoutputformat.compress.codec" | "mapred.output.compression.codec" => {
                p.codec = Some(match v.rsplit('.').next().unwrap_or(v) {
                    "GzipCodec" | "DefaultCodec" => "gzip".into(),
                    "ZStandardCodec" => "zstd".into(),
                    other => {
                        return Err(format!(
                            "-D {k}={v}: Shoal compresses output with gzip (GzipCodec) or zstd (ZStandardCodec), not {other}"
                        ))
                    }
                })
            }
            "mapreduce.job.name" | "mapred.job.name" => p.name = Some(v.clone()),
            _ => {
                return Err(format!(
                    "-D {k} is not a property shoal streaming supports (docs/guide.md lists those it does)"
                ))
            }
        }
    }
    if p.sort_keys.is_some() && !p.comparator {
        // Hadoop reads the comparator options only with KeyFieldBasedComparator; so does
        // this front end, rather than sort in a way the same command line would not.
        return Err("-D mapreduce.partition.keycomparator.options needs -D mapreduce.job.output.key.comparator.class=org.apache.hadoop.mapreduce.lib.partition.KeyFieldBasedComparator, as in Hadoop".into());
    }
    Ok(p)
}

/// A mapper, reducer or combiner (`what`) as Shoal runs it: Hadoop's identity classes are
/// `cat`, other Java classes are refused.
fn program(what: &str, cmd: &str) -> Result<String, String> {
    if IDENTITY.contains(&cmd) {
        return Ok("cat".into());
    }
    if cmd.starts_with("org.apache.") || cmd == "aggregate" {
        return Err(format!(
            "-{what} {cmd}: Java classes do not run here; give an executable or a shell command"
        ));
    }
    Ok(cmd.to_string())
}

/// `-D …keypartitioner.options` as Shoal's partition fields, given `-partitioner`.
fn partitioner(given: Option<&str>, partition: Option<String>) -> Result<Option<String>, String> {
    match given {
        None if partition.is_some() => Err("-D mapreduce.partition.keypartitioner.options needs -partitioner org.apache.hadoop.mapred.lib.KeyFieldBasedPartitioner, as in Hadoop".into()),
        None => Ok(None),
        Some(p) if KEY_PARTITIONER.contains(&p) => Ok(partition),
        Some(p) if p.ends_with(".HashPartitioner") => Ok(None),
        Some(p) => Err(format!(
            "-partitioner {p} is not supported: Shoal partitions by a hash of the key, or of key fields with KeyFieldBasedPartitioner"
        )),
    }
}

/// The Shoal job flags (common to `shoal run` and `shoal submit`) that a Hadoop Streaming
/// command line `args` means, `--output` included; an error naming what is not supported.
pub fn translate(args: &[String]) -> Result<Vec<String>, String> {
    let h = read(args)?;
    let p = properties(&h.props)?;
    let mut out: Vec<String> = Vec::new();
    let mut flag = |f: &str, v: &str| {
        out.push(f.to_string());
        out.push(v.to_string());
    };
    if h.inputs.is_empty() {
        return Err("-input is required".into());
    }
    for i in &h.inputs {
        flag("--input", i);
    }
    flag(
        "--output",
        h.output.as_deref().ok_or("-output is required")?,
    );
    let mapper = h.mapper.as_deref().ok_or("-mapper is required")?;
    flag("--map", &program("mapper", mapper)?);
    if let Some(name) = &p.name {
        flag("--name", name);
    }
    let reducers = p.reducers.clone().or(h.reducers.clone());
    if h.reducer.as_deref() == Some("NONE") || reducers.as_deref() == Some("0") {
        flag("--reducers", "0");
    } else {
        flag(
            "--reduce",
            &program("reducer", h.reducer.as_deref().unwrap_or("cat"))?,
        );
        flag("--reducers", reducers.as_deref().unwrap_or("1"));
    }
    if let Some(c) = &h.combiner {
        flag("--combine", &program("combiner", c)?);
    }
    if let Some(sep) = separator(&h.props)? {
        flag("--separator", &sep);
    }
    if let Some(n) = &p.key_fields {
        flag("--key-fields", n);
    }
    if let Some(fields) = partitioner(h.partitioner.as_deref(), p.partition)? {
        flag("--partition-fields", &fields);
    }
    if let Some(s) = &p.sort_keys {
        flag("--sort-keys", s);
    }
    if p.compress {
        flag("--compress-output", p.codec.as_deref().unwrap_or("gzip"));
    }
    for f in &h.files {
        if f.contains('#') {
            return Err(format!(
                "-files {f}: a file is seen under its own name here; rename it instead of #name"
            ));
        }
        flag("--file", f);
    }
    for a in &h.archives {
        flag("--archive", a);
    }
    for e in &h.env {
        flag("--env", e);
    }
    Ok(out)
}

/// Quote `word` for a shell, when it needs it.
fn quoted(word: &str) -> String {
    let plain = !word.is_empty()
        && !word.starts_with('#')
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,+@%#".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

/// `shoal streaming`: the command line of ours it runs (`shoal submit …` or `shoal run
/// …`), having said so; `Ok(None)` when `--explain` printed it instead; `Err` with the exit
/// code when the Hadoop command line is refused.
pub fn plan(args: StreamingArgs) -> Result<Option<Vec<String>>, ExitCode> {
    let flags = translate(&args.hadoop).map_err(|e| crate::cli::http::usage("streaming", e))?;
    let mut argv: Vec<String> = vec!["shoal".into()];
    if args.in_process {
        argv.push("run".into());
    } else {
        argv.push("submit".into());
        for n in &args.nodes.nodes {
            argv.extend(["--node".into(), n.clone()]);
        }
        if let Some(t) = &args.nodes.api_token {
            argv.extend(["--api-token".into(), t.display().to_string()]);
        }
    }
    argv.extend(flags);
    let shown: Vec<String> = argv.iter().map(|w| quoted(w)).collect();
    if args.explain {
        println!("{}", shown.join(" "));
        return Ok(None);
    }
    eprintln!("shoal streaming: runs as {}", shown.join(" "));
    Ok(Some(argv))
}
