use shoal_node::control::work::*;

fn io(kind: std::io::ErrorKind) -> shoal_jobs::Error {
    shoal_jobs::Error::Io {
        what: "writing the map output".into(),
        source: std::io::Error::from(kind),
    }
}

fn ended(exit: shoal_jobs::Ended) -> shoal_jobs::Error {
    shoal_jobs::Error::Program {
        message: "mapper failed".into(),
        exit: Some(exit),
        stderr_tail: String::new(),
    }
}

#[test]
fn a_failure_s_cause_comes_from_its_error_never_from_its_words() {
    use shoal_jobs::Ended;
    let full = Failure::from(io(std::io::ErrorKind::StorageFull));
    assert_eq!(full.cause, Cause::DiskFull);
    let enospc = std::io::Error::from_raw_os_error(libc::ENOSPC);
    assert_eq!(
        Failure::io("storing".into(), &enospc).cause,
        Cause::DiskFull
    );
    // Words that look like a full disk are not one.
    let says = Failure::from("No space left on device (os error 28)".to_string());
    assert_eq!(says.cause, Cause::Other);
    assert_eq!(
        Failure::from(io(std::io::ErrorKind::NotFound)).cause,
        Cause::Other
    );
    for (exit, cause, text) in [
        (Ended::Exit(3), Cause::Exit, "exit 3"),
        (
            Ended::Signal(9, "SIGKILL"),
            Cause::Signal,
            "signal 9 (SIGKILL)",
        ),
        (Ended::Timeout(600), Cause::Timeout, "timeout 600 s"),
        (
            Ended::OutOfMemory("oom".into()),
            Cause::OutOfMemory,
            "killed: oom",
        ),
    ] {
        let f = Failure::from(ended(exit));
        assert_eq!(f.cause, cause);
        assert_eq!(f.exit.as_deref(), Some(text));
    }
    assert_eq!(Failure::lost("gone".into()).cause, Cause::LostInput);
}
