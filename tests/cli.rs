//! The command line's contract: help lists the commands, exit codes follow DESIGN.md.

use std::process::Command;

fn shoal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
}

#[test]
fn help_lists_every_command() {
    let out = shoal().arg("--help").output().expect("shoal runs");
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    for cmd in [
        "node", "submit", "status", "jobs", "output", "kill", "run", "demo", "sim", "bench",
    ] {
        assert!(
            help.contains(cmd),
            "`shoal --help` does not mention {cmd}:\n{help}"
        );
    }
}

#[test]
fn unknown_command_is_a_usage_error() {
    let out = shoal().arg("frobnicate").output().expect("shoal runs");
    assert_eq!(out.status.code(), Some(2));
}
