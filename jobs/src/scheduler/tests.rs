//! Golden scripts of the scheduler: a table and the nodes, then what `plan` proposes.
use super::*;
use crate::cluster::{Applied, SplitInfo};
use crate::counters::Counters;
use crate::partition::Partitioner;
use crate::spec::{JobKind, JobSpec};

/// Commands as readable lines, the expected outputs below are written in.
fn render(cmds: &[Command]) -> String {
    cmds.iter()
        .map(|c| match c {
            Command::Assign {
                job,
                kind,
                index,
                attempt,
                node,
                backup,
                ..
            } => {
                let t = if *kind == TaskKind::Map { "m" } else { "r" };
                let verb = if *backup { "backup" } else { "assign" };
                format!("{verb} {job} {t}{index}#{attempt} -> n{node}")
            }
            other => format!("{other:?}"),
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn submit(c: &mut Cluster, id: &str, holders: &[&[NodeId]], reducers: u32, max_attempts: u32) {
    let mut spec = JobSpec::new(id, vec!["in".into()], JobKind::App("wordcount".into()));
    spec.reducers = reducers;
    spec.max_attempts = max_attempts;
    submit_spec(c, spec, holders, 0);
}

/// Submit `spec` (its name is the job id) with one 100-byte split per entry of
/// `holders`, at `at_ms`.
pub(super) fn submit_spec(c: &mut Cluster, spec: JobSpec, holders: &[&[NodeId]], at_ms: u64) {
    let splits = holders
        .iter()
        .enumerate()
        .map(|(i, h)| SplitInfo {
            index: i as u32,
            name: "in".into(),
            len: 100,
            holders: h.to_vec(),
            files: Vec::new(),
            ..Default::default()
        })
        .collect();
    let cmd = Command::SubmitJob {
        id: spec.name.clone(),
        spec: Box::new(spec),
        splits,
        partitioner: Partitioner::Hash,
        at_ms,
        counters: Default::default(),
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
}

fn apply_all(c: &mut Cluster, cmds: Vec<Command>) {
    for cmd in cmds {
        assert_eq!(c.apply(cmd), Applied::Changed);
    }
}

fn finish(c: &mut Cluster, job: &str, kind: TaskKind, index: u32, attempt: u32) -> Applied {
    // One size per partition for a map, one for a reduce.
    let n = match kind {
        TaskKind::Map => c.jobs[job].spec.reducers as usize,
        TaskKind::Reduce => 1,
    };
    let cmd = Command::TaskFinished {
        job: job.into(),
        kind,
        index,
        attempt,
        sizes: vec![1; n],
        checksums: Vec::new(),
        holders: vec![],
        counters: Counters::default(),
        at_ms: 5,
    };
    c.apply(cmd)
}

fn nodes(spec: &[(NodeId, u32)]) -> Vec<NodeSlots> {
    spec.iter()
        .map(|&(node, slots)| NodeSlots { node, slots })
        .collect()
}

#[test]
fn short_tasks_queue_ahead_and_long_ones_never_do() {
    for (finish_at, per_slot) in [(5, 4), (QUEUE_AHEAD_MS / 2, 2), (QUEUE_AHEAD_MS + 10, 1)] {
        let mut c = Cluster::default();
        let one: &[NodeId] = &[1];
        submit(&mut c, "j-1", &[one; 12], 1, 4);
        let ns = nodes(&[(1, 1), (2, 1)]);
        // Two rounds of one map per node, each finishing `finish_at` ms after its start.
        for round in 0..2u64 {
            let now = round * (finish_at + 1);
            let p = plan(&c, &ns, now);
            assert_eq!(
                p.len(),
                2,
                "one attempt per slot while nothing is known: {}",
                render(&p)
            );
            let started: Vec<(u32, u32)> = p
                .iter()
                .filter_map(|cmd| match cmd {
                    Command::Assign { index, attempt, .. } => Some((*index, *attempt)),
                    _ => None,
                })
                .collect();
            apply_all(&mut c, p);
            for (index, attempt) in started {
                let cmd = Command::TaskFinished {
                    job: "j-1".into(),
                    kind: TaskKind::Map,
                    index,
                    attempt,
                    sizes: vec![1],
                    checksums: Vec::new(),
                    holders: vec![],
                    counters: Counters::default(),
                    at_ms: now + finish_at,
                };
                assert_eq!(c.apply(cmd), Applied::Changed);
            }
        }
        // Four maps done: short ones let each node hold more than its slots.
        let p = plan(&c, &ns, 10 * finish_at);
        assert_eq!(
            p.len(),
            2 * per_slot,
            "finishing after {finish_at} ms: {}",
            render(&p)
        );
    }
}

#[test]
fn maps_go_to_split_holders_within_slots_and_reduces_wait_for_every_map() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[2], &[3], &[1, 2], &[3]], 2, 4);
    let ns = nodes(&[(1, 1), (2, 1), (3, 1)]);
    let p = plan(&c, &ns, 1);
    assert_eq!(
        render(&p),
        "assign j-1 m0#1 -> n2\nassign j-1 m1#1 -> n3\nassign j-1 m2#1 -> n1"
    );
    apply_all(&mut c, p);
    assert_eq!(render(&plan(&c, &ns, 2)), "", "every slot is busy");
    assert_eq!(finish(&mut c, "j-1", TaskKind::Map, 1, 1), Applied::Changed);
    let p = plan(&c, &ns, 3);
    assert_eq!(
        render(&p),
        "assign j-1 m3#1 -> n3",
        "the freed holder of split 3 takes it"
    );
    apply_all(&mut c, p);
    for i in [0, 2, 3] {
        finish(&mut c, "j-1", TaskKind::Map, i, 1);
    }
    let p = plan(&c, &ns, 4);
    assert_eq!(render(&p), "assign j-1 r0#1 -> n1\nassign j-1 r1#1 -> n2");
    apply_all(&mut c, p);
    finish(&mut c, "j-1", TaskKind::Reduce, 0, 1);
    assert_eq!(c.jobs["j-1"].state, JobState::Running);
    finish(&mut c, "j-1", TaskKind::Reduce, 1, 1);
    assert_eq!(c.jobs["j-1"].state, JobState::Succeeded);
}

#[test]
fn a_failed_attempt_is_retried_elsewhere_and_stale_reports_are_ignored() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[1]], 1, 2);
    let ns = nodes(&[(1, 2), (2, 2)]);
    let p = plan(&c, &ns, 1);
    apply_all(&mut c, p);
    let fail = |attempt| Command::TaskFailed {
        job: "j-1".into(),
        kind: TaskKind::Map,
        index: 0,
        attempt,
        error: "mapper exited with status 1".into(),
        exit: Some("exit 1".into()),
        stderr_tail: None,
        lost: false,
        at_ms: 2,
    };
    assert_eq!(c.apply(fail(1)), Applied::Changed);
    assert!(
        matches!(c.apply(fail(1)), Applied::Ignored(_)),
        "a duplicate report changes nothing"
    );
    let p = plan(&c, &ns, 3);
    assert_eq!(
        render(&p),
        "assign j-1 m0#2 -> n2",
        "the retry avoids the node where it failed"
    );
    apply_all(&mut c, p);
    assert!(
        matches!(
            finish(&mut c, "j-1", TaskKind::Map, 0, 1),
            Applied::Ignored(_)
        ),
        "attempt 1 is superseded"
    );
    assert_eq!(c.jobs["j-1"].maps[0].state, TaskState::Running);
    // Out of attempts: the job fails, naming the task, the attempts and the last error.
    assert_eq!(c.apply(fail(2)), Applied::Changed);
    let j = &c.jobs["j-1"];
    assert_eq!(j.state, JobState::Failed);
    assert_eq!(
        j.error.as_deref(),
        Some("task m-00000 failed 2 of 2 attempts; the last: mapper exited with status 1")
    );
    assert_eq!(
        render(&plan(&c, &ns, 4)),
        "",
        "nothing runs for a failed job"
    );
}

#[test]
fn jobs_share_slots_in_submission_order_and_a_killed_job_frees_them() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[1], &[1], &[1]], 1, 4);
    submit(&mut c, "j-2", &[&[1]], 1, 4);
    let ns = nodes(&[(1, 2)]);
    let p = plan(&c, &ns, 1);
    assert_eq!(render(&p), "assign j-1 m0#1 -> n1\nassign j-1 m1#1 -> n1");
    apply_all(&mut c, p);
    assert_eq!(
        c.apply(Command::KillJob {
            job: "j-1".into(),
            at_ms: 2
        }),
        Applied::Changed
    );
    assert_eq!(c.jobs["j-1"].state, JobState::Killed);
    assert_eq!(render(&plan(&c, &ns, 3)), "assign j-2 m0#1 -> n1");
    assert!(
        matches!(
            finish(&mut c, "j-1", TaskKind::Map, 0, 1),
            Applied::Ignored(_)
        ),
        "a killed job takes no reports"
    );
}

#[test]
fn a_lost_node_s_work_runs_again_elsewhere_without_using_up_attempts() {
    let mut c = Cluster::default();
    // One attempt allowed: lost attempts must not count.
    submit(&mut c, "j-1", &[&[1], &[2]], 1, 1);
    let ns = nodes(&[(1, 1), (2, 1), (3, 1)]);
    let p = plan(&c, &ns, 1);
    assert_eq!(render(&p), "assign j-1 m0#1 -> n1\nassign j-1 m1#1 -> n2");
    apply_all(&mut c, p);
    assert_eq!(finish(&mut c, "j-1", TaskKind::Map, 0, 1), Applied::Changed);

    // Node 1 dies: its finished map's output lived only there; node 2 dies running m1.
    for node in [1, 2] {
        assert_eq!(
            c.apply(Command::NodeLost { node, at_ms: 3 }),
            Applied::Changed
        );
    }
    let j = &c.jobs["j-1"];
    assert_eq!(j.state, JobState::Running);
    assert!(j.maps.iter().all(|t| t.state == TaskState::Pending));
    assert!(j.maps.iter().all(|t| t.counted_attempts() == 0));
    assert!(
        matches!(
            c.apply(Command::NodeLost { node: 1, at_ms: 4 }),
            Applied::Ignored(_)
        ),
        "a node already declared lost has nothing left"
    );
    let live = nodes(&[(3, 2)]);
    let p = plan(&c, &live, 5);
    assert_eq!(render(&p), "assign j-1 m0#2 -> n3\nassign j-1 m1#2 -> n3");
    apply_all(&mut c, p);
    assert!(
        matches!(
            finish(&mut c, "j-1", TaskKind::Map, 1, 1),
            Applied::Ignored(_)
        ),
        "the lost attempt's late report is ignored"
    );
    for m in 0..2 {
        assert_eq!(finish(&mut c, "j-1", TaskKind::Map, m, 2), Applied::Changed);
    }
    let p = plan(&c, &live, 6);
    assert_eq!(render(&p), "assign j-1 r0#1 -> n3");
    apply_all(&mut c, p);

    // A reduce cannot fetch map 1's output: map 1 runs again, the reduce's attempt does
    // not count, and the reduce waits for the maps.
    let lost = Command::MapOutputLost {
        job: "j-1".into(),
        index: 1,
        attempt: 2,
        reason: None,
        at_ms: 7,
    };
    assert_eq!(c.apply(lost.clone()), Applied::Changed);
    assert!(
        matches!(c.apply(lost), Applied::Ignored(_)),
        "once is enough"
    );
    let failed = Command::TaskFailed {
        job: "j-1".into(),
        kind: TaskKind::Reduce,
        index: 0,
        attempt: 1,
        error: "fetching the output of map 1 failed".into(),
        exit: None,
        stderr_tail: None,
        lost: true,
        at_ms: 7,
    };
    assert_eq!(c.apply(failed), Applied::Changed);
    assert_eq!(c.jobs["j-1"].state, JobState::Running);
    assert_eq!(render(&plan(&c, &live, 8)), "assign j-1 m1#3 -> n3");
}

fn finish_at(c: &mut Cluster, kind: TaskKind, index: u32, attempt: u32, at_ms: u64) {
    let cmd = Command::TaskFinished {
        job: "j-1".into(),
        kind,
        index,
        attempt,
        sizes: vec![1],
        checksums: Vec::new(),
        holders: vec![],
        counters: Counters::default(),
        at_ms,
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
}

#[test]
fn a_straggler_gets_one_backup_elsewhere_and_the_first_finisher_wins() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[1], &[2], &[3], &[1]], 1, 1);
    let ns = nodes(&[(1, 1), (2, 1), (3, 1), (4, 1)]);
    let p = plan(&c, &ns, 0);
    assert_eq!(
        render(&p),
        "assign j-1 m0#1 -> n1\nassign j-1 m1#1 -> n2\nassign j-1 m2#1 -> n3\nassign j-1 m3#1 -> n4"
    );
    apply_all(&mut c, p);
    // Maps 0 and 1 take 1 s; maps 2 and 3 are still running.
    finish_at(&mut c, TaskKind::Map, 0, 1, 1_000);
    finish_at(&mut c, TaskKind::Map, 1, 1, 1_000);
    assert_eq!(
        render(&plan(&c, &ns, 6_000)),
        "",
        "6 s is within the margin over a 1 s median"
    );
    let p = plan(&c, &ns, 6_500);
    assert_eq!(
        render(&p),
        "backup j-1 m2#2 -> n1\nbackup j-1 m3#2 -> n2",
        "slowest first, on free nodes, never beside the running attempt"
    );
    apply_all(&mut c, p);
    assert_eq!(
        render(&plan(&c, &ns, 20_000)),
        "",
        "one backup per task at a time"
    );
    // The backup of map 2 wins: the original is stopped and does not count.
    finish_at(&mut c, TaskKind::Map, 2, 2, 7_000);
    let t = &c.jobs["j-1"].maps[2];
    assert_eq!(t.state, TaskState::Done);
    assert_eq!(t.attempts[0].state, TaskState::Failed);
    assert!(t.attempts[0].lost);
    assert_eq!(
        t.attempts[0].error.as_deref(),
        Some("superseded: attempt 2 finished first")
    );
    assert!(
        matches!(
            finish(&mut c, "j-1", TaskKind::Map, 2, 1),
            Applied::Ignored(_)
        ),
        "the loser's report is ignored"
    );
    // Map 3's backup fails; its original carries on, and the job does not fail even
    // though max_attempts is 1.
    let failed = Command::TaskFailed {
        job: "j-1".into(),
        kind: TaskKind::Map,
        index: 3,
        attempt: 2,
        error: "mapper exited with status 1".into(),
        exit: Some("exit 1".into()),
        stderr_tail: None,
        lost: false,
        at_ms: 7_000,
    };
    assert_eq!(c.apply(failed), Applied::Changed);
    let j = &c.jobs["j-1"];
    assert_eq!(j.state, JobState::Running);
    assert_eq!(j.maps[3].state, TaskState::Running);
    finish_at(&mut c, TaskKind::Map, 3, 1, 8_000);
    assert!(c.jobs["j-1"].maps_done());
}

#[test]
fn even_tasks_are_never_backed_up() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[1], &[2], &[3], &[4]], 1, 4);
    let ns = nodes(&[(1, 2), (2, 2), (3, 2), (4, 2)]);
    let p = plan(&c, &ns, 0);
    apply_all(&mut c, p);
    finish_at(&mut c, TaskKind::Map, 0, 1, 10_000);
    finish_at(&mut c, TaskKind::Map, 1, 1, 12_000);
    assert_eq!(
        render(&plan(&c, &ns, 25_000)),
        "",
        "2.5x the median: slow, but not a straggler"
    );
    assert_eq!(
        render(&plan(&c, &ns, 40_000)),
        "backup j-1 m2#2 -> n1\nbackup j-1 m3#2 -> n2"
    );
}

#[test]
fn the_table_round_trips_through_cbor() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", &[&[1], &[2]], 2, 4);
    let p = plan(&c, &nodes(&[(1, 1), (2, 1)]), 1);
    apply_all(&mut c, p);
    let mut bytes = Vec::new();
    ciborium::into_writer(&c, &mut bytes).unwrap();
    let back: Cluster = ciborium::from_reader(bytes.as_slice()).unwrap();
    assert_eq!(back, c);
}

/// The choice `Slots::take` made before it kept an ordered set of free nodes: the
/// minimum over every node with a free slot of (tried, not a holder, busy, id).
fn naive_take(
    busy: &mut BTreeMap<NodeId, u32>,
    slots: &BTreeMap<NodeId, u32>,
    holders: &[NodeId],
    tried: &[NodeId],
    not: Option<NodeId>,
) -> Option<NodeId> {
    let node = busy
        .iter()
        .filter(|&(&n, &b)| Some(n) != not && slots.get(&n).copied().unwrap_or(0) > b)
        .min_by_key(|&(&n, &b)| (tried.contains(&n), !holders.contains(&n), b, n))
        .map(|(&n, _)| n)?;
    *busy.entry(node).or_default() += 1;
    Some(node)
}

proptest::proptest! {
    #[test]
    fn take_chooses_as_the_full_scan_did(
        slot_counts in proptest::collection::vec(0u32..4, 1..12),
        running in proptest::collection::vec(0u64..12, 0..20),
        takes in proptest::collection::vec(
            (proptest::collection::vec(1u64..13, 0..4), proptest::collection::vec(1u64..13, 0..3), proptest::option::of(1u64..13)),
            1..30,
        ),
    ) {
        let live = nodes(&slot_counts.iter().enumerate().map(|(i, &s)| (i as NodeId + 1, s)).collect::<Vec<_>>());
        let n = live.len() as NodeId;
        // One running job whose map i runs on node running[i] (some not live).
        let mut c = Cluster::default();
        let holders: Vec<Vec<NodeId>> = running.iter().map(|_| vec![1]).collect();
        let refs: Vec<&[NodeId]> = holders.iter().map(|h| h.as_slice()).collect();
        if !refs.is_empty() {
            submit(&mut c, "j", &refs, 1, 3);
            for (i, &on) in running.iter().enumerate() {
                c.apply(Command::Assign { job: "j".into(), kind: TaskKind::Map, index: i as u32, attempt: 1, node: on % (n + 2) + 1, backup: false, at_ms: 0 });
            }
        }
        let mut fast = Slots::new(&c, &live);
        let mut busy = fast.busy.clone();
        let slots = fast.slots.clone();
        for (split_holders, tried_on, not) in takes {
            let mut job = Job::clone(c.jobs.values().next().unwrap_or(&empty_job()));
            job.splits = vec![SplitInfo { index: 0, name: "in".into(), len: 1, holders: split_holders.clone(), ..Default::default() }];
            let mut task = Task::new(TaskKind::Map, 0);
            for (k, &t) in tried_on.iter().enumerate() {
                task.attempts.push(crate::cluster::Attempt::start(k as u32 + 1, t, 0, false));
            }
            let want = naive_take(&mut busy, &slots, &split_holders, &tried_on, not);
            let got = fast.take(&job, &task, not);
            proptest::prop_assert_eq!(got, want);
        }
    }
}

fn empty_job() -> Job {
    let mut c = Cluster::default();
    submit(&mut c, "e", &[&[1]], 1, 3);
    c.jobs.remove("e").expect("submitted")
}

#[test]
fn a_pinned_map_waits_for_its_node_and_a_lost_one_fails_the_job() {
    // Splits 0 and 1 lie on node 1's disk (node: input), split 2 on node 2's, split 3
    // anywhere (shared:); node 1 has one slot, node 2 and node 3 one each.
    let mut c = Cluster::default();
    let mut spec = JobSpec::new("j", vec!["node:x".into()], JobKind::App("wordcount".into()));
    spec.reducers = 1;
    let split = |i: u32, node: Option<NodeId>| SplitInfo {
        index: i,
        name: format!("f{i}"),
        len: 100,
        holders: node.into_iter().collect(),
        in_place: Some(crate::cluster::InPlace {
            node,
            path: format!("f{i}"),
            offset: 0,
        }),
        ..Default::default()
    };
    let cmd = Command::SubmitJob {
        id: "j-1".into(),
        spec: Box::new(spec),
        splits: vec![
            split(0, Some(1)),
            split(1, Some(1)),
            split(2, Some(2)),
            split(3, None),
        ],
        partitioner: Partitioner::Hash,
        at_ms: 0,
        counters: Default::default(),
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
    let ns = nodes(&[(1, 1), (2, 1), (3, 1)]);
    let p = plan(&c, &ns, 1);
    // m1 waits for node 1's one slot without holding up m2 and m3.
    assert_eq!(
        render(&p),
        "assign j-1 m0#1 -> n1\nassign j-1 m2#1 -> n2\nassign j-1 m3#1 -> n3"
    );
    apply_all(&mut c, p);
    assert!(plan(&c, &ns, 2).is_empty(), "m1 runs on node 1 only");
    // Node 1 is lost: m0 and m1 can never run; the job fails naming node and file.
    let lost = Command::NodeLost { node: 1, at_ms: 3 };
    assert_eq!(c.apply(lost), Applied::Changed);
    let j = &c.jobs["j-1"];
    assert_eq!(j.state, JobState::Failed);
    let error = j.error.as_deref().unwrap_or_default();
    assert!(
        error.contains("f0") && error.contains("0000000000000001"),
        "{error}"
    );
}
