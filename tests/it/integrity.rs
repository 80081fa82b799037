//! Bytes that rot on a disk never reach an output: a map output flipped on its node's disk
//! between the map and the reduce is caught by the reduce (the map runs again), and a part
//! file flipped on the holder `shoal output` reads first is caught and read from the other
//! holder; a straggling reduce whose backup wins leaves the backup's bytes on every holder
//! and nothing of its own. Three real `shoal node` processes on 127.0.0.1, one cluster test
//! at a time.

use std::path::{Path, PathBuf};

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

/// The files under `node`'s store whose names start with `prefix`, in job `id`'s directory
/// (`out/` included).
fn stored(node: &NodeProc, id: &str, prefix: &str) -> Vec<PathBuf> {
    let job = node.data.join("blobs").join(id);
    let mut found = Vec::new();
    for dir in [job.clone(), job.join("out")] {
        for e in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(prefix) {
                found.push(e.path());
            }
        }
    }
    found
}

/// Flip one bit in the middle of the file at `path`, leaving its size.
fn flip_a_bit(path: &Path) {
    let mut bytes = std::fs::read(path).unwrap();
    assert!(!bytes.is_empty(), "{} is empty", path.display());
    let at = bytes.len() / 2;
    bytes[at] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

/// The node ids a part of the output listing names as its holders.
fn holders_of(v: &serde_json::Value) -> Vec<&str> {
    v["holders"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h.as_str().unwrap())
        .collect()
}

#[test]
fn a_rotten_map_output_is_run_again_and_a_rotten_part_copy_is_read_from_another_holder() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    let shared = writable_by_tasks(dir.path());
    let gate = shared.join("gate");
    // The second map's first attempt holds until the test opens the gate, so the first
    // map's output sits on its disk, waiting for the reduce.
    let held = "[ \"$SHOAL_TASK_ID\" = m-00001 ] && [ \"$SHOAL_ATTEMPT\" = 1 ]";
    let map = gated_word_mapper(dir.path(), held, &gate);
    let reduce = write_program(dir.path(), "reduce.sh", SUM_REDUCER_SH);
    let mut all = String::new();
    let inputs: Vec<PathBuf> = (0..2)
        .map(|f| {
            let words: String = (0..4000)
                .map(|i| format!("w{} x{}\n", (i * 7 + f) % 97, i % 13))
                .collect();
            all.push_str(&words);
            let p = dir.path().join(format!("in-{f}.txt"));
            std::fs::write(&p, words).unwrap();
            p
        })
        .collect();
    let (id, out) = c.submit(&[
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "1",
        "--input",
        &inputs[0].to_string_lossy(),
        "--input",
        &inputs[1].to_string_lossy(),
    ]);
    assert!(out.status.success(), "{}", text(&out));

    // The first map finishes; one bit of its output flips on its node's disk.
    let m0_node = wait_for(60, "map m-00000 to finish", || {
        let j = c.job(0, &id);
        let t = task(&j, "m-00000");
        (t.state == "done").then(|| t.attempts[0].node.clone())
    });
    let holder = c.nodes.iter().find(|n| n.node_id == m0_node).unwrap();
    let outputs = stored(holder, &id, "m-00000.a1.out");
    assert_eq!(outputs.len(), 1, "map output files: {outputs:?}");
    flip_a_bit(&outputs[0]);
    std::fs::write(&gate, b"open").unwrap();

    let finished = wait_for(120, "the job to end", || {
        let j = c.job(0, &id);
        (j.state != "running").then_some(j)
    });
    assert_eq!(finished.state, "succeeded", "{finished}");
    let m0 = task(&finished, "m-00000");
    let attempts = &m0.attempts;
    assert!(
        attempts.len() >= 2
            && attempts[0]
                .error
                .as_ref()
                .is_some_and(|e| e.contains("corrupt")),
        "the rotten output's attempt is failed with the reason: {m0}"
    );
    let logs: String = c.nodes.iter().map(|n| n.log_text()).collect();
    assert!(
        logs.contains("is corrupt: checksum"),
        "no node logged the catch"
    );

    let expected = word_counts(&all);
    let fetch = |into: &Path, node: usize| {
        run(shoal()
            .args(["output", &id, "--node", &c.url(node), "--dir"])
            .arg(into))
    };
    let first = dir.path().join("out-1");
    let o = fetch(&first, 0);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(uniq_counts(&parts(&first, 1)), expected);

    // One bit of the part flips on the holder a download tries first (the part's first
    // holder this node can read); `shoal output` is told, and reads the other copy.
    let listing = c.nodes[0]
        .get(&format!("/api/v1/jobs/{id}/output"))
        .unwrap()
        .1;
    let part = &listing["parts"][0];
    assert!(
        part["checksum"]
            .as_str()
            .is_some_and(|s| s.starts_with("crc32c=")),
        "{listing}"
    );
    let holders = holders_of(part);
    assert!(holders.len() >= 2, "a part and a copy at least: {listing}");
    let rotten = c.nodes.iter().find(|n| n.node_id == holders[0]).unwrap();
    let copies = stored(rotten, &id, "part-00000.a");
    assert_eq!(copies.len(), 1, "part files: {copies:?}");
    flip_a_bit(&copies[0]);
    let second = dir.path().join("out-2");
    let o = fetch(&second, 0);
    assert!(o.status.success(), "{}", text(&o));
    // The node stops the rotten copy short, or the client's own check catches it whole.
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(
        stderr.contains("part-00000: ")
            && (stderr.contains("arrived corrupt") || stderr.contains("broke off")),
        "the rotten copy is reported: {stderr}"
    );
    assert_eq!(uniq_counts(&parts(&second, 1)), expected);
    assert!(second.join("_SUCCESS").exists());
}

#[test]
fn a_backup_reduce_that_wins_keeps_its_bytes_and_the_losing_attempt_leaves_nothing() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let c = three_nodes(dir.path());
    // Reduce r-00001's first attempt straggles (30 s at most, until it is stopped); every
    // attempt stamps its lines with its number, so the part shows whose bytes it holds.
    let map = write_program(
        dir.path(),
        "map.sh",
        "#!/bin/sh\nawk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'\n",
    );
    let reduce = write_program(
        dir.path(),
        "reduce.sh",
        "#!/bin/sh\n\
         if [ \"$SHOAL_TASK_ID\" = r-00001 ] && [ \"$SHOAL_ATTEMPT\" = 1 ]; then\n\
           i=0; while [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done\n\
         fi\n\
         awk -F'\\t' -v a=\"$SHOAL_ATTEMPT\" '{ n[$1] += $2 } END { for (w in n) print n[w] \"\\t\" w \"\\t\" a }'\n",
    );
    let input = dir.path().join("in.txt");
    let words: String = (0..3000)
        .map(|i| format!("w{} v{}\n", i % 89, i % 7))
        .collect();
    std::fs::write(&input, &words).unwrap();
    let (id, out) = c.submit(&[
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "2",
        "--input",
        &input.to_string_lossy(),
        "--wait",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    let job = c.job(0, &id);
    let r1 = task(&job, "r-00001");
    let attempts = &r1.attempts;
    assert!(
        attempts.len() == 2
            && attempts[1].backup
            && attempts[1].state == "done"
            && attempts[0]
                .error
                .as_ref()
                .is_some_and(|e| e.contains("superseded")),
        "the backup won and the straggler was stopped: {r1}"
    );

    let out_dir = dir.path().join("out");
    let o = run(shoal()
        .args(["output", &id, "--node", &c.url(0), "--dir"])
        .arg(&out_dir));
    assert!(o.status.success(), "{}", text(&o));
    let got = parts(&out_dir, 2);
    assert_eq!(uniq_counts(&got), word_counts(&words));
    for (p, stamp) in [(0, "1"), (1, "2")] {
        assert!(
            lines(&got[p])
                .iter()
                .all(|l| l.ends_with(format!("\t{stamp}").as_bytes())),
            "part {p} holds the accepted attempt's bytes only"
        );
    }
    // Every holder keeps the accepted attempt's part, byte for byte; the loser's is gone.
    for n in &c.nodes {
        let copies = stored(n, &id, "part-00001.a");
        if r1.holders.contains(&n.node_id) {
            assert_eq!(copies.len(), 1, "{}: {copies:?}", n.name);
            assert!(copies[0].ends_with("part-00001.a2"), "{copies:?}");
            assert_eq!(std::fs::read(&copies[0]).unwrap(), got[1]);
        }
    }
    wait_for(30, "the losing attempt's part to be gone", || {
        c.nodes
            .iter()
            .all(|n| stored(n, &id, "part-00001.a1").is_empty())
            .then_some(())
    });
}
