//! Fair sharing with real processes: a short job from one owner submitted behind a long job
//! from another starts as soon as the long job's first tasks end and finishes long before
//! it; its latency is printed beside its latency on the idle cluster. Three `shoal node`
//! processes on 127.0.0.1 (two slots each).

use shoal_node::http::jobs_view::{AttemptView, JobView};

use crate::common;
use crate::common::cluster::*;
use crate::common::three::*;
use crate::common::*;

/// How long each of the long job's maps sleeps, seconds.
const LONG_TASK_SECS: u64 = 4;

/// Wait until job `id` succeeded; its JSON.
fn succeeded(c: &Cluster, id: &str) -> JobView {
    wait_for(120, "the job to succeed", || {
        let j = c.job(0, id);
        assert!(j.state != "failed" && j.state != "killed", "job {id}: {j}");
        (j.state == "succeeded").then_some(j)
    })
}

/// When the job ended (ms since the epoch): it has.
fn finished(j: &JobView) -> u64 {
    j.finished_ms.expect("an ended job")
}

/// Every attempt of the job.
fn attempts(job: &JobView) -> Vec<&AttemptView> {
    tasks(job).iter().flat_map(|t| &t.attempts).collect()
}

#[test]
fn a_short_job_behind_a_long_one_runs_as_soon_as_a_slot_frees() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let (short_in, short_text) = small_word_input(&dir.path().join("short"), 2, 200);
    let long_in = dir.path().join("long");
    std::fs::create_dir_all(&long_in).unwrap();
    for f in 0..30 {
        std::fs::write(long_in.join(format!("f{f}.txt")), format!("a b f{f}\n")).unwrap();
    }
    let words = write_program(
        dir.path(),
        "words.sh",
        "#!/bin/sh\nawk '{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }'\n",
    );
    let slow = write_program(
        dir.path(),
        "slow.sh",
        &format!(
            "#!/bin/sh\nsleep {LONG_TASK_SECS}\nawk '{{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }}'\n"
        ),
    );
    let sum = write_program(dir.path(), "sum.sh", SUM_REDUCER_SH);
    let c = three_nodes(dir.path());
    let short = |user: Option<&str>| {
        let mut args = vec![
            "--input",
            short_in.to_str().unwrap(),
            "--map",
            &words,
            "--reduce",
            &sum,
        ];
        if let Some(u) = user {
            args.extend(["--user", u]);
        }
        let (id, o) = c.submit(&args);
        assert!(o.status.success(), "{}", text(&o));
        id
    };

    // The short job alone, with the default owner ($USER).
    let id = short(None);
    let idle = succeeded(&c, &id);
    let idle_ms = finished(&idle) - idle.submitted_ms;
    let me = ["USER", "LOGNAME"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|u| !u.is_empty())
        .unwrap_or_else(|| "anonymous".into());
    assert_eq!(idle.user, me, "the default owner is $USER");

    // Alice's long job fills every slot: 30 maps of 4 s on 6 slots, five rounds.
    let (long, o) = c.submit(&[
        "--input",
        long_in.to_str().unwrap(),
        "--map",
        &slow,
        "--reduce",
        &sum,
        "--user",
        "alice",
    ]);
    assert!(o.status.success(), "{}", text(&o));
    wait_for(60, "the long job to fill every slot", || {
        (c.job(0, &long).maps.running == 6).then_some(())
    });
    let id = short(Some("bob"));
    let shared = succeeded(&c, &id);
    let long_job = c.job(0, &long);
    assert_eq!(
        long_job.state, "running",
        "bob's short job finished while alice's long one still ran"
    );
    let submitted = shared.submitted_ms;
    let shared_ms = finished(&shared) - submitted;
    // When the first of alice's attempts running at bob's submission ended.
    let freed = attempts(&long_job)
        .iter()
        .filter(|a| a.start_ms <= submitted)
        .filter_map(|a| a.end_ms)
        .filter(|&e| e >= submitted)
        .min()
        .expect("one of alice's attempts ended");
    let first_start = attempts(&shared).iter().map(|a| a.start_ms).min().unwrap();
    let after_free = finished(&shared) - freed;
    let done_maps = long_job.maps.done;
    println!(
        "short job: {idle_ms} ms on the idle cluster; {shared_ms} ms behind the long job, \
         {after_free} ms after its first slot freed ({:.2}x idle); its first task started \
         {} ms after that slot freed; the long job had {done_maps}/30 maps done",
        after_free as f64 / idle_ms.max(1) as f64,
        first_start.saturating_sub(freed)
    );
    assert!(
        first_start.saturating_sub(freed) < 2_000,
        "bob's first task waited for more than the first free slot"
    );
    assert!(
        after_free < 2 * idle_ms.max(1_000),
        "bob's job took {after_free} ms once a slot freed, against {idle_ms} ms idle"
    );
    // Output of both is right.
    let o = run(shoal().args(["output", &id, "--node", &c.url(0)]));
    assert!(o.status.success(), "{}", text(&o));
    let mut got: Vec<(String, usize)> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| {
            let (n, w) = l.split_once('\t')?;
            Some((w.to_owned(), n.parse().ok()?))
        })
        .collect();
    got.sort();
    assert_eq!(got, word_counts(&short_text));
    let o = run(shoal().args(["jobs", "--node", &c.url(1)]));
    let listed = String::from_utf8_lossy(&o.stdout);
    assert!(
        listed.contains("alice") && listed.contains("bob"),
        "shoal jobs shows owners: {listed}"
    );
    run(shoal().args(["kill", &long, "--node", &c.url(0)]));
}
