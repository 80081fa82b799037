//! A node whose data dir fills up mid-job: the job still succeeds on the other nodes with
//! the right output, an upload to that node is refused 507 with the reason, and the node
//! either keeps working (its Raft applies what the others commit) or exits non-zero — never
//! a live node with a dead Raft. Its data dir is a 48 MiB tmpfs (mounting one needs root),
//! filled by the test while every map waits at a gate. Three real `shoal node` processes on
//! 127.0.0.1, one cluster test at a time.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common;
use crate::common::cluster::*;
use crate::common::three::{gated_word_mapper, write_program, SUM_REDUCER_SH};
use crate::common::*;

const TEST: &str = "a_node_whose_disk_fills_mid_job_costs_the_job_nothing";

/// A tmpfs mounted for the test, unmounted (lazily) when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, mib: u64) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).unwrap();
        Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={mib}m,mode=0711"),
                "tmpfs",
            ])
            .arg(at)
            .status()
            .is_ok_and(|s| s.success())
            .then(|| Tmpfs(at.to_owned()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Write into `dir` until its filesystem is full; the bytes written.
fn fill(dir: &Path) -> u64 {
    let mut f = std::fs::File::create(dir.join("filler")).unwrap();
    let block = vec![0x5au8; 1 << 16];
    let mut n = 0u64;
    while let Ok(k) = f.write(&block) {
        if k == 0 {
            break;
        }
        n += k as u64;
    }
    n
}

fn applied(node: &NodeProc) -> Option<u64> {
    node.cluster()?["applied"]["index"].as_u64()
}

#[test]
fn a_node_whose_disk_fills_mid_job_costs_the_job_nothing() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let nodes_dir = dir.path().join("nodes");
    let Some(_tmpfs) = Tmpfs::mount(&nodes_dir.join("n3"), 48) else {
        skip(TEST, "mounting a tmpfs needs root", "SHOAL_REQUIRE_MOUNT");
        return;
    };
    let mut nodes = start_cluster(
        &nodes_dir,
        3,
        &["--expect", "3", "--slots", "2", "--min-free-mb", "8"],
    );
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let shared = writable_by_tasks(dir.path());
    let gate = shared.join("gate");
    // Every map's first attempt waits at the gate: six maps fill the six slots.
    let map = gated_word_mapper(dir.path(), "[ \"$SHOAL_ATTEMPT\" = 1 ]", &gate);
    let reduce = write_program(dir.path(), "reduce.sh", SUM_REDUCER_SH);
    let mut all = String::new();
    let mut inputs = Vec::new();
    for f in 0..6 {
        let words: String = (0..20_000)
            .map(|i| format!("w{} x{}\n", (i * 7 + f) % 211, i % 17))
            .collect();
        all.push_str(&words);
        let p = dir.path().join(format!("in-{f}.txt"));
        std::fs::write(&p, words).unwrap();
        inputs.push(p);
    }
    let url = |i: usize| format!("http://{}", nodes[i].http);
    let mut submit = shoal();
    submit
        .args(["submit", "--node", &url(0), "-R", "2", "--map"])
        .arg(&map)
        .arg("--reduce")
        .arg(&reduce);
    for p in &inputs {
        submit.arg("--input").arg(p);
    }
    let o = run(&mut submit);
    assert!(o.status.success(), "{}", text(&o));
    let id = String::from_utf8_lossy(&o.stdout)
        .lines()
        .next()
        .unwrap()
        .to_string();
    wait_for(60, "six maps running", || {
        let j = job_at(&nodes[0].http, &id)?;
        let running = common::three::tasks(&j)
            .iter()
            .filter(|t| t.kind == "map" && t.state == "running")
            .count();
        (running == 6).then_some(())
    });

    // n3's disk fills up while its maps wait.
    let filled = fill(&nodes[2].data);
    println!("filled n3's data dir with {} MiB", filled >> 20);
    let o = run(shoal()
        .args(["submit", "--node", &url(2), "--app", "wordcount", "--input"])
        .arg(&inputs[0]));
    assert!(!o.status.success(), "an upload to a full node was taken");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("507") || err.contains("disk full"),
        "the refusal names the full disk: {err}"
    );
    assert!(err.contains("--min-free-mb"), "{err}");

    std::fs::write(&gate, b"open").unwrap();
    let out = dir.path().join("out");
    let o = run(shoal().args(["status", &id, "--wait", "--node", &url(0)]));
    assert!(o.status.success(), "the job did not succeed: {}", text(&o));
    let o = run(shoal()
        .args(["output", &id, "--node", &url(0), "--dir"])
        .arg(&out));
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(uniq_counts(&parts(&out, 2)), word_counts(&all));
    let job = job_at(&nodes[0].http, &id).unwrap();
    for t in common::three::tasks(&job) {
        for a in &t.attempts {
            if let Some(e) = &a.error {
                println!("{} attempt {}: {e}", t.id, a.attempt);
            }
        }
    }

    // n3 works on, its Raft applying what the others commit, or it stopped non-zero.
    let leader_applied = applied(&nodes[0]).unwrap();
    let n3 = &mut nodes[2];
    let fate = wait_for(60, "n3 to catch up or stop", || {
        if let Some(status) = n3.child.as_mut()?.try_wait().ok()? {
            return Some(Err(status));
        }
        (applied(n3)? >= leader_applied).then_some(Ok(()))
    });
    match fate {
        Ok(()) => println!("n3 kept working with a full disk"),
        Err(status) => {
            assert!(!status.success(), "n3 exited 0 with a full disk");
            let log = n3.log_text();
            let why = log
                .lines()
                .find(|l| l.contains("Raft stopped"))
                .unwrap_or_else(|| panic!("n3 stopped without saying why: {log}"));
            println!("n3 stopped ({status}): {why}");
        }
    }
}
