//! User code that misbehaves, and input that is not what a mapper expects: each case ends
//! as the streaming contract says, with the error text a user needs, no temp files left in
//! the output, and no zombie or orphaned processes.
//!
//! One test function on purpose: it checks this process's children at the end, so no other
//! test may be running jobs in the same process at the same time.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use shoal_jobs::local::run_local;
use shoal_jobs::spec::{JobKind, JobSpec, Program};
use shoal_jobs::Error;

fn streaming(input: &Path, map: &str, reduce: &str) -> JobSpec {
    let mut s = JobSpec::new(
        "t",
        vec![input.to_string_lossy().into_owned()],
        JobKind::Streaming {
            map: Program::Shell(map.into()),
            reduce: Program::Shell(reduce.into()),
            combine: None,
        },
    );
    s.max_attempts = 2;
    s
}

fn output_files(out: &Path) -> Vec<String> {
    let mut v: Vec<String> = match std::fs::read_dir(out) {
        Ok(d) => d
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => vec![],
    };
    v.sort();
    v
}

fn fails(spec: &JobSpec, out: &Path) -> String {
    let err = run_local(spec, out, 2, &|_| {}).expect_err("the job must fail");
    assert!(
        output_files(out).is_empty(),
        "a failed job left files: {:?}",
        output_files(out)
    );
    match err {
        Error::TaskFailed(m) => m,
        other => other.to_string(),
    }
}

fn succeeds(spec: &JobSpec, out: &Path) -> Vec<u8> {
    run_local(spec, out, 2, &|_| {}).expect("the job succeeds");
    let files = output_files(out);
    assert_eq!(
        files,
        ["_SUCCESS", "part-00000"],
        "only part files and _SUCCESS remain"
    );
    std::fs::read(out.join("part-00000")).unwrap()
}

/// A process is gone when /proc has no entry for it (or only a zombie that is not ours).
fn wait_gone(pid: i32) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
            Err(_) => return,
            Ok(stat)
                if stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')) =>
            {
                return
            }
            Ok(_) => {}
        }
        assert!(Instant::now() < deadline, "process {pid} outlived its task");
        std::thread::park_timeout(Duration::from_millis(20));
    }
}

fn children_of_this_process() -> Vec<String> {
    let me = std::process::id().to_string();
    let mut kids = vec![];
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(stat) = std::fs::read_to_string(e.path().join("stat")) {
            let after = stat.rsplit(')').next().unwrap_or("");
            let fields: Vec<&str> = after.split_whitespace().collect();
            if fields.get(1) == Some(&me.as_str()) {
                kids.push(stat);
            }
        }
    }
    kids
}

#[test]
fn misbehaving_tasks_end_as_the_contract_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let input = d.join("in.txt");
    std::fs::write(&input, "b\tx\na\ty\nno tab here\n").unwrap();
    let mut n = 0;
    let mut out = || -> PathBuf {
        n += 1;
        d.join(format!("out{n}"))
    };

    // Exit 1: the attempt fails, is retried, and the job fails naming task, attempts,
    // status and the stderr tail.
    let m = fails(
        &streaming(&input, "echo broken mapper >&2; exit 1", "cat"),
        &out(),
    );
    for want in [
        "m-00000 failed 2 of 2 attempts",
        "exited with status 1",
        "split 0 of in.txt",
        "broken mapper",
    ] {
        assert!(m.contains(want), "{want:?} missing from: {m}");
    }

    // Killed by a signal.
    let m = fails(&streaming(&input, "kill -9 $$", "cat"), &out());
    assert!(m.contains("killed by signal 9 (SIGKILL)"), "{m}");

    // Hangs past the inactivity timeout; its own child dies with it.
    let pidfile = d.join("sleeper.pid");
    let mut s = streaming(
        &input,
        &format!("sleep 60 & echo $! > {}; wait", pidfile.display()),
        "cat",
    );
    s.task_timeout_secs = 1;
    s.max_attempts = 1;
    let started = Instant::now();
    let m = fails(&s, &out());
    assert!(m.contains("killed after 1 s without reading input"), "{m}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let pid: i32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_gone(pid);

    // A reducer that fails names its partition.
    let m = fails(&streaming(&input, "cat", "exit 7"), &out());
    assert!(
        m.contains("r-00000") && m.contains("partition 0") && m.contains("status 7"),
        "{m}"
    );

    // No tab: the whole line is the key, the value empty; reducer input sorted by key.
    let got = succeeds(&streaming(&input, "cat", "cat"), &out());
    assert_eq!(got, b"a\ty\nb\tx\nno tab here\n");

    // A mapper that floods stderr (8 MiB) and succeeds: memory stays bounded, job succeeds.
    let flood = "head -c 8388608 /dev/zero | tr '\\0' 'e' | fold -w 100 >&2; cat";
    assert_eq!(
        succeeds(&streaming(&input, flood, "cat"), &out()),
        b"a\ty\nb\tx\nno tab here\n"
    );
    // ... and one that floods and fails: the message keeps only a short tail.
    let m = fails(
        &streaming(&input, &format!("{flood} >/dev/null; exit 3"), "cat"),
        &out(),
    );
    assert!(
        m.contains("status 3") && m.len() < 16 << 10,
        "error message of {} bytes",
        m.len()
    );

    // Non-UTF-8 bytes pass through untouched.
    let binary = d.join("latin1.txt");
    std::fs::write(&binary, b"caf\xe9\t\xff\xfe\n\x80key\tv\n").unwrap();
    assert_eq!(
        succeeds(&streaming(&binary, "cat", "cat"), &out()),
        b"caf\xe9\t\xff\xfe\n\x80key\tv\n"
    );

    // Empty input: one empty split, an empty part file.
    let empty = d.join("empty.txt");
    std::fs::write(&empty, b"").unwrap();
    assert_eq!(succeeds(&streaming(&empty, "cat", "cat"), &out()), b"");

    // A 10 MiB line is one record...
    let long = d.join("long.txt");
    let mut text = vec![b'x'; 10 << 20];
    text.extend_from_slice(b"\tv\nshort\n");
    std::fs::write(&long, &text).unwrap();
    let got = succeeds(&streaming(&long, "cat", "cat"), &out());
    assert_eq!(got.len(), text.len());
    // ... unless it is over the maximum record size: the job fails naming file and offset.
    let mut s = streaming(&long, "cat", "cat");
    s.max_record_bytes = 1 << 20;
    let m = fails(&s, &out());
    assert!(
        m.contains("long.txt: line at byte offset 0 is longer than the maximum record size"),
        "{m}"
    );

    // A mapper that exits without reading its input is fine (as `head` does).
    assert_eq!(
        succeeds(&streaming(&input, "head -n 1", "cat"), &out()),
        b"b\tx\n"
    );

    let kids = children_of_this_process();
    assert!(kids.is_empty(), "processes left behind: {kids:?}");
}
