//! The store's keys, objects and cleanup.

use std::io::Write;
use std::path::{Path, PathBuf};

use shoal_node::storage::blobs::*;

#[test]
fn keys_cannot_escape_the_store() {
    assert!(valid_key("j-1/split-00001"));
    assert!(valid_key(&map_output_key("j-1", 3, 2)));
    assert!(valid_key(&part_key("j-1", 0, 1)));
    for bad in [
        "", "../x", "a/../b", "/abs", "a//b", ".hidden", "UPPER", "a b",
    ] {
        assert!(!valid_key(bad), "{bad:?} accepted");
    }
}

#[test]
fn an_object_appears_only_when_committed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(dir.path().join("b")).expect("open");
    let mut w = blobs.create("j-1/split-00000").expect("create");
    w.write_all(b"hello\n").expect("write");
    assert!(!blobs.contains("j-1/split-00000"));
    assert_eq!(w.commit().expect("commit"), 6);
    let (_, len) = blobs.open_read("j-1/split-00000").expect("read");
    assert_eq!(len, 6);
    for (p, attempt) in [(0, 1), (0, 2), (1, 1)] {
        let mut w = blobs.create(&part_key("j-1", p, attempt)).expect("create");
        w.write_all(b"x").expect("write");
        w.commit().expect("commit");
    }
    // A part this node does not hold and a losing attempt's go with the scratch.
    assert_eq!(blobs.remove_job_scratch("j-1", &[(0, 2)]), 8);
    assert!(!blobs.contains("j-1/split-00000"));
    assert!(blobs.contains(&part_key("j-1", 0, 2)));
    assert!(!blobs.contains(&part_key("j-1", 0, 1)));
    assert!(!blobs.contains(&part_key("j-1", 1, 1)));
}

#[test]
fn a_restart_sweeps_what_the_old_process_left_half_done() {
    let dir = tempfile::tempdir().expect("tempdir");
    let blobs = Blobs::open(dir.path().join("b")).expect("open");
    let mut w = blobs.create("j-1/split-00000").expect("create");
    w.write_all(b"half").expect("write");
    w.flush().expect("flush");
    std::mem::forget(w); // the process died mid-write
    let dirs = blobs.scratch().attempt("j-1.m-00000.a1").expect("scratch");
    std::fs::write(dirs.work.join("x"), b"12").expect("write");
    let mut w = blobs.create(&part_key("j-1", 0, 1)).expect("create");
    w.write_all(b"done").expect("write");
    w.commit().expect("commit");
    assert_eq!(blobs.sweep(), 6);
    assert!(blobs.contains(&part_key("j-1", 0, 1)));
    let left: Vec<_> = walk(dir.path());
    assert_eq!(left.len(), 1, "only the committed part is left: {left:?}");
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(p).expect("read_dir").flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn an_ended_job_keeps_its_logs_and_the_parts_it_was_told_to_keep() {
    let keep = [(0, 2), (3, 1)];
    assert!(kept_after_job("j-1", "j-1/logs/m-00000.a1", &keep));
    assert!(kept_after_job("j-1", &part_key("j-1", 0, 2), &keep));
    assert!(!kept_after_job("j-1", &part_key("j-1", 0, 1), &keep));
    assert!(!kept_after_job("j-1", &split_key("j-1", 4), &keep));
    assert!(!kept_after_job("j-1", &map_output_key("j-1", 4, 1), &keep));
    // Another job's objects, even one whose id starts the same, are not this job's.
    assert!(kept_after_job("j-1", &split_key("j-10", 4), &keep));
    assert!(kept_after_job("j-1", &part_key("j-2", 0, 1), &[]));
}
