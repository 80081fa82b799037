//! `shoal node --config FILE` and `--print-config`. The file is TOML, one key per flag of
//! `shoal node` (its long name: `data = "/var/lib/shoal"`, `slots = 4`, `no-mdns = true`,
//! `peer = ["…", "…"]`). Precedence, highest first: the command line, the flag's
//! environment twin (`SHOAL_…`), the file, the default. The file is applied by adding, to
//! the command line, each of its settings that neither the command line nor the environment
//! gives — so clap parses and checks every value the same way whatever its source.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::parser::ValueSource;

/// The settings a config file supplied: the file and the flags it set.
#[derive(Debug, Default)]
pub struct FromFile {
    /// The file.
    pub file: PathBuf,
    /// Long names of the flags it set.
    pub keys: Vec<String>,
}

/// Flags of `shoal node` a file may not set.
const NOT_IN_FILES: [&str; 4] = ["config", "print-config", "help", "version"];

fn given(args: &[OsString], long: &str) -> bool {
    let flag = format!("--{long}");
    let with = format!("--{long}=");
    args.iter().any(|a| {
        a.to_str()
            .is_some_and(|a| a == flag || a.starts_with(&with))
    })
}

/// The value of `--config` in `args` (or its environment twin).
fn config_path(args: &[OsString]) -> Option<PathBuf> {
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.to_str() {
            Some("--config") => return it.next().map(PathBuf::from),
            Some(s) if s.starts_with("--config=") => return Some(PathBuf::from(&s[9..])),
            _ => {}
        }
    }
    std::env::var_os("SHOAL_CONFIG").map(PathBuf::from)
}

/// `args` (the whole command line) with the settings of `shoal node`'s config file added;
/// `node` is that subcommand's definition. Unchanged for other commands or without a file.
pub fn expand(
    args: Vec<OsString>,
    node: &clap::Command,
) -> Result<(Vec<OsString>, Option<FromFile>), String> {
    if args.get(1).and_then(|a| a.to_str()) != Some("node") {
        return Ok((args, None));
    }
    let Some(file) = config_path(&args[2..]) else {
        return Ok((args, None));
    };
    let shown = file.display().to_string();
    let text = std::fs::read_to_string(&file).map_err(|e| format!("--config {shown}: {e}"))?;
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| format!("--config {shown}: not TOML: {e}"))?;
    let mut out = args;
    let mut keys = Vec::new();
    for (key, item) in doc.iter() {
        let arg = node
            .get_arguments()
            .find(|a| a.get_long() == Some(key) && !NOT_IN_FILES.contains(&key))
            .ok_or_else(|| {
                format!("--config {shown}: `{key}` is not a flag of `shoal node` (keys are their long names, e.g. `data`, `peer`, `no-mdns`)")
            })?;
        let from_env = arg.get_env().is_some_and(|e| std::env::var_os(e).is_some());
        if given(&out[2..], key) || from_env {
            continue;
        }
        let flag = OsString::from(format!("--{key}"));
        let is_switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let values: Vec<String> = match item.as_value() {
            Some(toml_edit::Value::Array(a)) => a.iter().map(scalar).collect::<Result<_, _>>(),
            Some(v) => scalar(v).map(|s| vec![s]),
            None => Err("a table".to_string()),
        }
        .map_err(|e| {
            format!("--config {shown}: `{key}` must be a string, number, boolean or array, not {e}")
        })?;
        if is_switch {
            match values.as_slice() {
                [v] if v == "true" => out.push(flag),
                [v] if v == "false" => {}
                _ => return Err(format!("--config {shown}: `{key}` is true or false")),
            }
        } else {
            for v in values {
                out.push(flag.clone());
                out.push(OsString::from(v));
            }
        }
        keys.push(key.to_owned());
    }
    Ok((out, Some(FromFile { file, keys })))
}

fn scalar(v: &toml_edit::Value) -> Result<String, String> {
    match v {
        toml_edit::Value::String(s) => Ok(s.value().clone()),
        toml_edit::Value::Integer(i) => Ok(i.value().to_string()),
        toml_edit::Value::Float(f) => Ok(f.value().to_string()),
        toml_edit::Value::Boolean(b) => Ok(b.value().to_string()),
        other => Err(other.type_name().to_string()),
    }
}

/// The effective settings of `shoal node` as TOML, each with its source in a comment; unset
/// ones commented out.
pub fn render(node: &clap::Command, m: &clap::ArgMatches, from_file: Option<&FromFile>) -> String {
    let mut out = String::new();
    for arg in node.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if arg.is_hide_set() || NOT_IN_FILES.contains(&long) {
            continue;
        }
        let id = arg.get_id().as_str();
        let values: Vec<String> = m
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let source = match m.value_source(id) {
            Some(ValueSource::CommandLine) => match from_file {
                Some(f) if f.keys.iter().any(|k| k == long) => {
                    format!("config {}", f.file.display())
                }
                _ => "command line".to_string(),
            },
            Some(ValueSource::EnvVariable) => format!(
                "environment {}",
                arg.get_env()
                    .map(|e| e.to_string_lossy())
                    .unwrap_or_default()
            ),
            Some(ValueSource::DefaultValue) => "default".to_string(),
            _ => "unset".to_string(),
        };
        let switch = matches!(arg.get_action(), clap::ArgAction::SetTrue);
        let value = if switch {
            toml_edit::Value::from(values.first().is_some_and(|v| v == "true"))
        } else if values.is_empty() {
            out.push_str(&format!("# {long} = (unset)\n"));
            continue;
        } else if matches!(arg.get_action(), clap::ArgAction::Append) {
            toml_edit::Value::Array(values.iter().map(|v| typed(v)).collect())
        } else {
            typed(&values[0])
        };
        out.push_str(&format!("{long} = {value}  # {source}\n"));
    }
    out
}

/// A number stays a number; anything else is a string.
fn typed(v: &str) -> toml_edit::Value {
    if let Ok(i) = v.parse::<i64>() {
        return toml_edit::Value::from(i);
    }
    match v.parse::<f64>() {
        Ok(f) if f.is_finite() && v.contains('.') => toml_edit::Value::from(f),
        _ => toml_edit::Value::from(v),
    }
}
