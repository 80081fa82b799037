//! `shoal node --config FILE` and `--print-config`: every flag of `shoal node` can be set
//! in the file and comes back from `--print-config` as written, naming the file; the
//! environment and the command line override the file; a key that is no flag is refused.

use std::path::Path;
use std::process::{Command, Output};

/// `shoal node ARGS` with no `SHOAL_*` variable of the test's own environment.
fn node(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_shoal"));
    c.current_dir(dir).arg("node").args(args);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("SHOAL_") {
            c.env_remove(k);
        }
    }
    c.envs(env.iter().copied());
    c.output().expect("shoal runs")
}

/// A value other than the default for every flag, as `--print-config` writes it.
const EVERY_FLAG: [(&str, &str); 29] = [
    ("data", r#""/srv/shoal""#),
    (
        "listen",
        r#"["/ip4/127.0.0.1/tcp/7171", "/ip4/127.0.0.1/tcp/7172"]"#,
    ),
    ("http", r#""127.0.0.1:7171""#),
    ("http-host", r#"["shoal.lan"]"#),
    ("api-token", r#""/etc/shoal/api.token""#),
    ("peer", r#"["/ip4/127.0.0.1/tcp/7272"]"#),
    ("expect", "5"),
    ("no-mdns", "true"),
    ("local", "true"),
    ("cluster-key", r#""/etc/shoal/cluster.key""#),
    ("insecure", "true"),
    ("ready-file", r#""/run/shoal.ready""#),
    ("heartbeat-ms", "150"),
    ("election-ms", r#""600-800""#),
    ("voters", "3"),
    ("learners", "7"),
    ("slots", "6"),
    ("node-timeout", "7.5"),
    ("voter-grace", "45.5"),
    ("retain-jobs", "20"),
    ("task-user", r#""shoaltask""#),
    ("task-uids", r#""70000-70999""#),
    ("node-reserve-mb", "2048"),
    ("task-memory", "2048"),
    ("task-pids", "512"),
    ("task-cpu-weight", "200"),
    ("min-free-mb", "4096"),
    ("input-root", r#""/srv/input""#),
    ("drain-secs", "12.5"),
];

fn printed(o: &Output) -> String {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn every_flag_round_trips_through_a_config_file_and_the_environment_overrides_it() {
    let dir = tempfile::tempdir().unwrap();
    // The flags `--print-config` knows: the test must set every one of them.
    let defaults = printed(&node(dir.path(), &["--print-config"], &[]));
    let keys: Vec<&str> = defaults
        .lines()
        .map(|l| l.trim_start_matches("# ").split(" = ").next().unwrap())
        .collect();
    let mut covered: Vec<&str> = EVERY_FLAG.iter().map(|(k, _)| *k).collect();
    covered.sort();
    let mut all = keys.clone();
    all.sort();
    assert_eq!(
        all, covered,
        "the test sets every flag `--print-config` shows"
    );

    let file = dir.path().join("shoal.toml");
    let text: String = EVERY_FLAG
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect();
    std::fs::write(&file, text).unwrap();
    let shown = printed(&node(
        dir.path(),
        &["--config", "shoal.toml", "--print-config"],
        &[],
    ));
    for (k, v) in EVERY_FLAG {
        let want = format!("{k} = {v}  # config shoal.toml");
        assert!(shown.lines().any(|l| l == want), "{want}\n{shown}");
    }

    // Command line first, then the environment twin, then the file.
    let shown = printed(&node(
        dir.path(),
        &["--config", "shoal.toml", "--print-config", "--slots", "2"],
        &[("SHOAL_SLOTS", "8"), ("SHOAL_VOTERS", "7")],
    ));
    assert!(shown.contains("slots = 2  # command line"), "{shown}");
    assert!(
        shown.contains("voters = 7  # environment SHOAL_VOTERS"),
        "{shown}"
    );
    // The file named by the environment.
    let shown = printed(&node(
        dir.path(),
        &["--print-config"],
        &[("SHOAL_CONFIG", "shoal.toml")],
    ));
    assert!(shown.contains("expect = 5  # config shoal.toml"), "{shown}");

    // A key that is no flag, a value of the wrong kind, a missing file: exit 2, named.
    for (text, says) in [
        ("slot = 3\n", "`slot` is not a flag"),
        ("no-mdns = \"maybe\"\n", "`no-mdns` is true or false"),
        ("slots = \"many\"\n", "many"),
    ] {
        std::fs::write(&file, text).unwrap();
        let o = node(
            dir.path(),
            &["--config", "shoal.toml", "--print-config"],
            &[],
        );
        assert_eq!(o.status.code(), Some(2), "{text}");
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{text}: {err}");
    }
    let o = node(dir.path(), &["--config", "missing.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing.toml"));
}
