//! The job as an adversary of its cluster: what a task prints and reports is input like any
//! other. Three real `shoal node` processes on 127.0.0.1, one cluster test at a time.

mod common;

use serde_json::Value;

use common::cluster::*;
use common::three::*;
use common::*;

/// A mapper whose counters are built to break the table: the engine's own counter at
/// `i64::MAX`, twice; its own at `i64::MAX`, twice; `-1`; a counter name of 1 MB. Then a
/// plain word count.
const LYING_MAPPER: &str = "#!/bin/sh
max=9223372036854775807
for i in 1 2; do
  echo \"reporter:counter:shoal,input_uploaded_bytes,$max\" >&2
  echo \"reporter:counter:app,big,$max\" >&2
done
echo 'reporter:counter:app,minus,-1' >&2
name=$(head -c 1048576 /dev/zero | tr '\\0' n)
echo \"reporter:counter:app,$name,1\" >&2
exec awk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'
";

#[test]
fn counters_a_mapper_forges_or_overflows_stop_no_node() {
    let _serial = one_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let c = three_nodes(dir.path());
    let work = dir.path().join("work");
    std::fs::create_dir_all(&work).unwrap();
    let map = write_program(&work, "map.sh", LYING_MAPPER);
    let reduce = write_program(&work, "reduce.sh", SUM_REDUCER_SH);
    let (input, text_in) = small_word_input(&work, 3, 400);
    let size: u64 = std::fs::read_dir(&input)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    let (id, o) = c.submit(&[
        "--input",
        input.to_str().unwrap(),
        "--map",
        &map,
        "--reduce",
        &reduce,
        "-R",
        "2",
        "--wait",
    ]);
    assert!(o.status.success(), "the job succeeds: {}", text(&o));
    let job = c.job(c.follower, &id);
    let maps = job["maps"]["total"].as_i64().unwrap();
    assert!(maps >= 3, "one map per file at least: {job}");
    let counters = &job["counters"];
    // The engine's counter is the engine's: what the upload brought, not what a task said.
    assert_eq!(
        counters["shoal"]["input_uploaded_bytes"].as_u64(),
        Some(size),
        "{counters}"
    );
    // Its own counter saturates at i64::MAX, and the job says so.
    assert_eq!(
        counters["app"]["big"].as_i64(),
        Some(i64::MAX),
        "{counters}"
    );
    assert!(
        job["counters_saturated"]
            .as_array()
            .is_some_and(|s| s.contains(&Value::from("app.big"))),
        "the job names the saturated counter: {job}"
    );
    assert_eq!(counters["app"]["minus"].as_i64(), Some(-maps));
    let names: Vec<&String> = counters
        .as_object()
        .unwrap()
        .values()
        .flat_map(|g| g.as_object().unwrap().keys())
        .collect();
    assert!(
        names.iter().all(|n| n.len() <= 64),
        "no counter name past 64 bytes: {}",
        names.len()
    );

    // Every node still runs and applies: one state, and a later job runs.
    for n in &c.nodes {
        assert!(n.is_running(), "node {} still runs", n.node_id);
    }
    let o = run(shoal()
        .args([
            "submit",
            "--node",
            &c.url(0),
            "--app",
            "wordcount",
            "--wait",
            "-R",
            "1",
        ])
        .args(["--input", input.to_str().unwrap(), "--output"])
        .arg(work.join("out")));
    assert!(o.status.success(), "a later job runs: {}", text(&o));
    let got = tab_counts(&parts(&work.join("out"), 1));
    assert_eq!(
        got,
        word_counts(&text_in),
        "the later job's output is right"
    );
    let hashes = wait_for(20, "every node to apply the same state", || {
        let hs: Vec<Value> = c
            .nodes
            .iter()
            .map(|n| n.cluster().map(|v| v["state_hash"].clone()))
            .collect::<Option<_>>()?;
        hs.windows(2).all(|w| w[0] == w[1]).then_some(hs)
    });
    assert_eq!(hashes.len(), 3);
}
