//! Golden tests of [`Cluster::apply`], one per command: a script of commands, then the table
//! rendered as text (or the reason a command was ignored) against what it must be.

use super::*;

fn spec(reducers: u32, max_attempts: u32) -> JobSpec {
    let mut spec = JobSpec::new(
        "j",
        vec!["in".into()],
        crate::spec::JobKind::App("wordcount".into()),
    );
    spec.reducers = reducers;
    spec.max_attempts = max_attempts;
    spec
}

/// A table with job `j`: `maps` splits held by node 1, `reducers` reduces, `max` attempts.
fn table(maps: u32, reducers: u32, max: u32) -> Cluster {
    let mut c = Cluster::default();
    let splits = (0..maps)
        .map(|i| SplitInfo {
            index: i,
            name: "in".into(),
            len: 10,
            holders: vec![1],
            ..Default::default()
        })
        .collect();
    let cmd = Command::SubmitJob {
        id: "j".into(),
        spec: Box::new(spec(reducers, max)),
        splits,
        partitioner: Partitioner::Hash,
        at_ms: 1,
        counters: Default::default(),
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
    c
}

fn assign(kind: TaskKind, index: u32, attempt: u32, node: NodeId, backup: bool) -> Command {
    Command::Assign {
        job: "j".into(),
        kind,
        index,
        attempt,
        node,
        backup,
        at_ms: 2,
    }
}

fn finished(kind: TaskKind, index: u32, attempt: u32, holders: Vec<NodeId>) -> Command {
    Command::TaskFinished {
        job: "j".into(),
        kind,
        index,
        attempt,
        sizes: vec![7],
        checksums: vec![0x5eed],
        holders,
        counters: Counters::default(),
        at_ms: 3,
    }
}

fn failed(kind: TaskKind, index: u32, attempt: u32, lost: bool) -> Command {
    Command::TaskFailed {
        job: "j".into(),
        kind,
        index,
        attempt,
        error: "boom".into(),
        exit: Some("exit status 1".into()),
        stderr_tail: None,
        lost,
        at_ms: 4,
    }
}

/// Apply every command; each line of the answer is `ok` or `ignored: WHY`.
fn run(c: &mut Cluster, cmds: Vec<Command>) -> String {
    cmds.into_iter()
        .map(|cmd| match c.apply(cmd) {
            Applied::Changed => "ok".to_string(),
            Applied::Ignored(why) => format!("ignored: {why}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The table as text: each job's state, then each task's state, holders and attempts.
fn render(c: &Cluster) -> String {
    let mut out = Vec::new();
    for j in c.jobs.values() {
        out.push(format!("{} {:?} {:?}", j.id, j.state, j.error));
        for t in j.maps.iter().chain(&j.reduces) {
            let attempts: Vec<String> = t
                .attempts
                .iter()
                .map(|a| {
                    let flags = format!(
                        "{}{}",
                        if a.lost { " lost" } else { "" },
                        if a.backup { " backup" } else { "" }
                    );
                    format!("#{}@n{} {:?}{flags}", a.attempt, a.node, a.state)
                })
                .collect();
            out.push(format!(
                "  {} {:?} holders={:?} [{}]",
                t.id(),
                t.state,
                t.holders,
                attempts.join(", ")
            ));
        }
    }
    out.join("\n")
}

const MAP: TaskKind = TaskKind::Map;
const REDUCE: TaskKind = TaskKind::Reduce;

#[test]
fn submit_job_makes_pending_tasks_and_a_second_submit_is_ignored() {
    let mut c = table(2, 1, 3);
    let again = Command::SubmitJob {
        id: "j".into(),
        spec: Box::new(spec(1, 3)),
        splits: Vec::new(),
        partitioner: Partitioner::Hash,
        at_ms: 9,
        counters: Default::default(),
    };
    assert_eq!(run(&mut c, vec![again]), "ignored: job j exists");
    assert_eq!(
        render(&c),
        "j Running None
  m-00000 Pending holders=[] []
  m-00001 Pending holders=[] []
  r-00000 Pending holders=[] []"
    );
}

#[test]
fn submit_job_counts_the_uploaded_and_copied_bytes_and_takes_only_the_submission_timings() {
    let mut c = Cluster::default();
    let split = |index: u32, len: u64, holders: Vec<NodeId>, in_place: bool| SplitInfo {
        index,
        name: "in".into(),
        len,
        holders,
        in_place: in_place.then(|| InPlace {
            node: None,
            path: "in".into(),
            offset: 0,
        }),
        ..Default::default()
    };
    let mut measured = crate::counters::Counters::default();
    measured.add_builtin("submission_upload_ms", 1200);
    measured.add_builtin("submission_copy_ms", 3400);
    // A submitter may not write any other counter into the job.
    measured.add_builtin("map_output_records", 99);
    measured.add("user", "planted", 7);
    let cmd = Command::SubmitJob {
        id: "j".into(),
        spec: Box::new(spec(1, 3)),
        // Uploaded: 10 bytes on three nodes, 20 on two, 5 on one; 1,000 read in place.
        splits: vec![
            split(0, 10, vec![1, 2, 3], false),
            split(1, 20, vec![1, 2], false),
            split(2, 5, vec![1], false),
            split(3, 1000, vec![1, 2, 3], true),
        ],
        partitioner: Partitioner::Hash,
        at_ms: 1,
        counters: measured,
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
    let counters = &c.jobs["j"].counters;
    let shoal: Vec<(&str, i64)> = counters.0["shoal"]
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(
        shoal,
        [
            ("input_copied_bytes", 2 * 10 + 20),
            ("input_uploaded_bytes", 35),
            ("submission_copy_ms", 3400),
            ("submission_upload_ms", 1200),
        ]
    );
    assert!(!counters.0.contains_key("user"));
}

#[test]
fn assign_takes_the_next_attempt_only_and_a_backup_only_beside_one_running_attempt() {
    let mut c = table(1, 1, 3);
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 2, 1, false),
            assign(MAP, 0, 1, 1, false),
            assign(MAP, 0, 2, 2, false),
            assign(MAP, 0, 2, 1, true),
            assign(MAP, 0, 2, 2, true),
            assign(MAP, 0, 3, 3, true),
        ],
    );
    assert_eq!(
        log,
        "ignored: m-00000 is not waiting for attempt 2
ok
ignored: m-00000 is not waiting for attempt 2
ignored: m-00000 is not waiting for a backup 2
ok
ignored: m-00000 is not waiting for a backup 3"
    );
    assert_eq!(
        render(&c),
        "j Running None
  m-00000 Running holders=[] [#1@n1 Running, #2@n2 Running backup]
  r-00000 Pending holders=[] []"
    );
}

#[test]
fn task_finished_wins_over_its_twin_and_the_last_task_ends_the_job() {
    let mut c = table(1, 1, 3);
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 1, 1, false),
            assign(MAP, 0, 2, 2, true),
            finished(MAP, 0, 2, vec![2, 3]),
            finished(MAP, 0, 1, vec![1]),
            assign(REDUCE, 0, 1, 3, false),
            finished(REDUCE, 0, 1, vec![]),
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nok\nignored: attempt 1 of m-00000 is not running\nok\nok"
    );
    assert_eq!(
        render(&c),
        "j Succeeded None
  m-00000 Done holders=[2, 3] [#1@n1 Failed lost, #2@n2 Done backup]
  r-00000 Done holders=[3] [#1@n3 Done]"
    );
}

#[test]
fn task_failed_frees_the_task_until_its_counted_attempts_are_used_then_fails_the_job() {
    let mut c = table(1, 1, 2);
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 1, 1, false),
            failed(MAP, 0, 1, true),
            failed(MAP, 0, 1, false),
            assign(MAP, 0, 2, 2, false),
            failed(MAP, 0, 2, false),
            assign(MAP, 0, 3, 3, false),
            failed(MAP, 0, 3, false),
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nignored: attempt 1 of m-00000 is not running\nok\nok\nok\nok"
    );
    assert_eq!(
        render(&c),
        "j Failed Some(\"task m-00000 failed 2 of 2 attempts; the last: boom\")
  m-00000 Failed holders=[] [#1@n1 Failed lost, #2@n2 Failed, #3@n3 Failed]
  r-00000 Pending holders=[] []"
    );
}

#[test]
fn node_lost_ends_its_attempts_and_reruns_the_maps_only_it_held() {
    let mut c = table(2, 1, 3);
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 1, 1, false),
            finished(MAP, 0, 1, vec![1]),
            assign(MAP, 1, 1, 2, false),
            finished(MAP, 1, 1, vec![2, 1]),
            assign(REDUCE, 0, 1, 1, false),
            Command::NodeLost { node: 1, at_ms: 5 },
            Command::NodeLost { node: 9, at_ms: 5 },
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nok\nok\nok\nok\nignored: node 0000000000000009 had nothing running or needed"
    );
    assert_eq!(
        render(&c),
        "j Running None
  m-00000 Pending holders=[] [#1@n1 Failed lost]
  m-00001 Done holders=[2, 1] [#1@n2 Done]
  r-00000 Pending holders=[] [#1@n1 Failed lost]"
    );
}

#[test]
fn map_output_lost_reruns_that_map_output_only() {
    let mut c = table(1, 1, 3);
    let lost = |attempt| Command::MapOutputLost {
        job: "j".into(),
        index: 0,
        attempt,
        reason: Some("its copy is corrupt".into()),
        at_ms: 6,
    };
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 1, 1, false),
            finished(MAP, 0, 1, vec![1]),
            lost(2),
            lost(1),
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nignored: attempt 2 of map 0 is not its output\nok"
    );
    assert_eq!(
        render(&c),
        "j Running None
  m-00000 Pending holders=[] [#1@n1 Failed lost]
  r-00000 Pending holders=[] []"
    );
}

#[test]
fn forget_removes_an_ended_job_only() {
    let mut c = table(1, 1, 3);
    let forget = || Command::Forget { job: "j".into() };
    let kill = Command::KillJob {
        job: "j".into(),
        at_ms: 7,
    };
    let log = run(&mut c, vec![forget(), kill, forget(), forget()]);
    assert_eq!(
        log,
        "ignored: job j is still running\nok\nok\nignored: no job j"
    );
    assert_eq!(render(&c), "");
}

/// `SubmitJob` of job `id` whose one split is part 0 (attempt 1) of job `of`.
fn reading_parts_of(id: &str, of: &str) -> Command {
    Command::SubmitJob {
        id: id.into(),
        spec: Box::new(spec(1, 3)),
        splits: vec![SplitInfo {
            name: "part-00000".into(),
            len: 10,
            holders: vec![2],
            part_of: Some(PartOf {
                job: of.into(),
                part: 0,
                attempt: 1,
            }),
            ..Default::default()
        }],
        partitioner: Partitioner::Hash,
        at_ms: 5,
        counters: Default::default(),
    }
}

#[test]
fn a_job_whose_parts_a_running_job_reads_is_not_forgotten_until_that_job_ends() {
    let mut c = table(1, 1, 3);
    let log = run(
        &mut c,
        vec![
            Command::KillJob {
                job: "j".into(),
                at_ms: 4,
            },
            reading_parts_of("k", "j"),
            reading_parts_of("bad", "../j"),
            reading_parts_of("self", "self"),
            Command::Forget { job: "j".into() },
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nignored: job bad is invalid: split 0 is a part of job ../j\n\
         ignored: job self is invalid: split 0 is a part of job self\n\
         ignored: a running job reads job j's part files"
    );
    assert_eq!(c.read_in_place().into_iter().collect::<Vec<_>>(), ["j"]);
    // Another job's part is not an upload, and not the reader's to keep copied.
    assert_eq!(c.jobs["k"].counters.get("shoal", "input_uploaded_bytes"), 0);
    let kill_k = Command::KillJob {
        job: "k".into(),
        at_ms: 6,
    };
    let log = run(&mut c, vec![kill_k, Command::Forget { job: "j".into() }]);
    assert_eq!(log, "ok\nok");
    assert!(c.read_in_place().is_empty());
    assert!(!c.jobs.contains_key("j"));
}

#[test]
fn kill_job_stops_its_running_attempts_and_ends_it_once() {
    let mut c = table(2, 1, 3);
    let kill = || Command::KillJob {
        job: "j".into(),
        at_ms: 7,
    };
    let log = run(
        &mut c,
        vec![
            assign(MAP, 0, 1, 1, false),
            kill(),
            kill(),
            finished(MAP, 0, 1, vec![1]),
        ],
    );
    assert_eq!(
        log,
        "ok\nok\nignored: no such running job\nignored: no such running job"
    );
    assert_eq!(
        render(&c),
        "j Killed Some(\"killed by a user\")
  m-00000 Running holders=[] [#1@n1 Failed]
  m-00001 Pending holders=[] []
  r-00000 Pending holders=[] []"
    );
}

#[test]
fn a_setup_is_counted_once_per_node_that_ran_an_attempt() {
    let mut c = table(2, 1, 4);
    let ran = |node: NodeId| Command::SetupRan {
        job: "j".into(),
        node,
    };
    // A job without --setup counts none.
    assert!(matches!(c.apply(ran(1)), Applied::Ignored(_)));
    c.jobs.get_mut("j").expect("j").spec.setup = Some("true".into());
    assert_eq!(
        c.apply(assign(TaskKind::Map, 0, 1, 1, false)),
        Applied::Changed
    );
    assert_eq!(
        c.apply(assign(TaskKind::Map, 1, 1, 2, false)),
        Applied::Changed
    );
    assert_eq!(c.apply(ran(1)), Applied::Changed);
    assert_eq!(c.apply(ran(2)), Applied::Changed);
    // Again on node 1 (a restart ran it again), or on a node of no attempt: not counted.
    assert!(matches!(c.apply(ran(1)), Applied::Ignored(_)));
    assert!(matches!(c.apply(ran(9)), Applied::Ignored(_)));
    let j = &c.jobs["j"];
    assert_eq!(j.setup_nodes, vec![1, 2]);
    assert_eq!(j.counters.get("shoal", "setup_runs"), 2);
}

#[test]
fn extreme_reports_saturate_and_are_bounded_alike_on_every_replica() {
    let mut c = table(3, 1, 4);
    // What a lying or broken member could report: i64's bounds twice, a counter name far
    // past the bound, more counters than a set holds, a million holders, a 1 MB error.
    let mut extreme = Counters::default();
    extreme
        .0
        .entry("app".into())
        .or_default()
        .insert("big".into(), i64::MAX);
    extreme
        .0
        .entry("app".into())
        .or_default()
        .insert("n".repeat(1 << 20), 1);
    for i in 0..1000 {
        extreme
            .0
            .entry("many".into())
            .or_default()
            .insert(format!("c{i:04}"), i64::MIN);
    }
    for m in 0..2 {
        assert_eq!(
            c.apply(assign(TaskKind::Map, m, 1, 1, false)),
            Applied::Changed
        );
        let mut done = finished(TaskKind::Map, m, 1, vec![u64::MAX; 1_000_000]);
        if let Command::TaskFinished { counters, .. } = &mut done {
            *counters = extreme.clone();
        }
        assert_eq!(c.apply(done), Applied::Changed);
    }
    assert_eq!(
        c.apply(assign(TaskKind::Map, 2, 1, 1, false)),
        Applied::Changed
    );
    let mut fail = failed(TaskKind::Map, 2, 1, false);
    if let Command::TaskFailed {
        error, stderr_tail, ..
    } = &mut fail
    {
        *error = "e".repeat(1 << 20);
        *stderr_tail = Some("t".repeat(1 << 20));
    }
    assert_eq!(c.apply(fail), Applied::Changed);
    let j = &c.jobs["j"];
    assert_eq!(j.counters.get("app", "big"), i64::MAX);
    assert!(j.counters_saturated.contains(&"app.big".to_string()));
    assert!(j.counters_saturated.contains(&"many.c0000".to_string()));
    assert_eq!(j.counters.get("many", "c0000"), i64::MIN);
    assert!(j.counters.len() <= crate::counters::MAX_COUNTERS);
    assert!(j
        .counters
        .0
        .values()
        .flat_map(|g| g.keys())
        .all(|n| n.len() <= 64));
    assert_eq!(j.maps[0].holders, vec![u64::MAX]);
    let a = &j.maps[2].attempts[0];
    assert_eq!(a.error.as_ref().map(String::len), Some(MAX_ERROR_CHARS));
    assert_eq!(
        a.stderr_tail.as_ref().map(String::len),
        Some(MAX_ERROR_CHARS)
    );
    // The lost maps' counters are taken back without wrapping (i64::MIN's negation
    // saturates): a saturated counter is a bound, not a sum, from then on.
    assert_eq!(
        c.apply(Command::NodeLost {
            node: u64::MAX,
            at_ms: u64::MAX
        }),
        Applied::Changed
    );
    let j = &c.jobs["j"];
    assert_eq!(j.counters.get("app", "big"), -i64::MAX);
    assert!(j.counters_saturated.contains(&"app.big".to_string()));
    assert!(j.maps[..2].iter().all(|t| t.state == TaskState::Pending));
}
