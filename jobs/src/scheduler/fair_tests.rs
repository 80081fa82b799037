//! Golden scripts of fair sharing: owners, priorities, slots freeing up, and what `plan`
//! hands out.
use super::*;
use crate::cluster::Applied;
use crate::counters::Counters;
use crate::spec::{JobKind, JobSpec};

/// Submit `maps` map tasks (one reducer) as `user` with `priority` at `at_ms`.
fn submit(c: &mut Cluster, id: &str, user: &str, priority: i32, maps: u32, at_ms: u64) {
    let mut spec = JobSpec::new(id, vec!["in".into()], JobKind::App("wordcount".into()));
    spec.user = user.into();
    spec.priority = priority;
    super::tests::submit_spec(c, spec, &vec![&[][..]; maps as usize], at_ms);
}

/// Plan at `now`, apply it, and return it as `job:task` words, in order.
fn step(c: &mut Cluster, nodes: &[NodeSlots], now: u64) -> String {
    let cmds = plan(c, nodes, now);
    let words: Vec<String> = cmds
        .iter()
        .map(|cmd| match cmd {
            Command::Assign {
                job, kind, index, ..
            } => {
                let t = if *kind == TaskKind::Map { "m" } else { "r" };
                format!("{job}:{t}{index}")
            }
            other => format!("{other:?}"),
        })
        .collect();
    for cmd in cmds {
        assert_eq!(c.apply(cmd), Applied::Changed);
    }
    words.join(" ")
}

/// Finish the running attempt of `job`'s task (map `m3`, reduce `r0`) at `now`.
fn finish(c: &mut Cluster, job: &str, task: &str, now: u64) {
    let (kind, index) = match task.split_at(1) {
        ("m", i) => (TaskKind::Map, i),
        (_, i) => (TaskKind::Reduce, i),
    };
    let index: u32 = index.parse().expect("task index");
    let j = &c.jobs[job];
    let t = match kind {
        TaskKind::Map => &j.maps[index as usize],
        TaskKind::Reduce => &j.reduces[index as usize],
    };
    let attempt = t
        .running_attempts()
        .next()
        .expect("a running attempt")
        .attempt;
    let cmd = Command::TaskFinished {
        job: job.into(),
        kind,
        index,
        attempt,
        sizes: vec![1],
        checksums: Vec::new(),
        holders: vec![],
        counters: Counters::default(),
        at_ms: now,
    };
    assert_eq!(c.apply(cmd), Applied::Changed);
}

/// How many attempts each job runs now.
fn running(c: &Cluster, job: &str) -> usize {
    let j = &c.jobs[job];
    j.maps
        .iter()
        .chain(&j.reduces)
        .map(|t| t.running_attempts().count())
        .sum()
}

fn slots(n: u32) -> Vec<NodeSlots> {
    vec![NodeSlots { node: 1, slots: n }]
}

#[test]
fn a_short_job_behind_a_long_one_takes_the_first_slots_that_free_up() {
    let mut c = Cluster::default();
    let ns = slots(4);
    // Owner A: a long job of 12 maps fills every slot.
    submit(&mut c, "j-1", "alice", 0, 12, 0);
    assert_eq!(step(&mut c, &ns, 1), "j-1:m0 j-1:m1 j-1:m2 j-1:m3");
    // Owner B: a short job of two maps, queued behind it; nothing running is killed.
    submit(&mut c, "j-2", "bob", 0, 2, 2);
    assert_eq!(step(&mut c, &ns, 3), "");
    // Each slot that frees goes to B until B has its half.
    finish(&mut c, "j-1", "m0", 10);
    assert_eq!(step(&mut c, &ns, 10), "j-2:m0");
    finish(&mut c, "j-1", "m1", 11);
    assert_eq!(step(&mut c, &ns, 11), "j-2:m1");
    finish(&mut c, "j-1", "m2", 12);
    assert_eq!(
        step(&mut c, &ns, 12),
        "j-1:m4",
        "B has nothing pending: A takes it"
    );
    finish(&mut c, "j-2", "m0", 13);
    assert_eq!(
        step(&mut c, &ns, 13),
        "j-1:m5",
        "B's reduce waits for its last map"
    );
    // B's last map ends: its reduce takes the slot, ahead of A's queue.
    finish(&mut c, "j-2", "m1", 14);
    assert_eq!(step(&mut c, &ns, 14), "j-2:r0");
    finish(&mut c, "j-2", "r0", 15);
    assert_eq!(c.jobs["j-2"].state, JobState::Succeeded);
    assert_eq!(step(&mut c, &ns, 15), "j-1:m6");
    let a_done = c.jobs["j-1"]
        .maps
        .iter()
        .filter(|t| t.state == TaskState::Done);
    assert_eq!(
        a_done.count(),
        3,
        "B finished while A had 9 of 12 maps to go"
    );
}

#[test]
fn two_owners_with_equal_demand_converge_to_equal_shares() {
    let mut c = Cluster::default();
    let ns = slots(10);
    submit(&mut c, "j-1", "alice", 0, 100, 0);
    assert_eq!(step(&mut c, &ns, 1).split(' ').count(), 10);
    submit(&mut c, "j-2", "bob", 0, 100, 2);
    // Each round the two oldest running attempts end, whoever owns them (after two
    // seconds: long tasks, which never queue ahead on a node).
    let mut shares = Vec::new();
    for round in 0..8u64 {
        let now = 2_000 * (round + 1);
        let mut oldest: Vec<(u64, &str, u32)> = ["j-1", "j-2"]
            .iter()
            .flat_map(|&j| {
                c.jobs[j]
                    .maps
                    .iter()
                    .flat_map(move |t| t.running_attempts().map(move |a| (a.start_ms, j, t.index)))
            })
            .collect();
        oldest.sort();
        oldest.truncate(2);
        for (_, j, t) in oldest {
            finish(&mut c, j, &format!("m{t}"), now);
        }
        step(&mut c, &ns, now);
        shares.push((running(&c, "j-1"), running(&c, "j-2")));
    }
    assert_eq!(
        shares,
        [
            (8, 2),
            (6, 4),
            (5, 5),
            (5, 5),
            (5, 5),
            (5, 5),
            (5, 5),
            (5, 5)
        ],
        "B's share grows as A's attempts end, then holds"
    );
    // Submitted together, they alternate from the first slot.
    let mut c = Cluster::default();
    submit(&mut c, "j-1", "alice", 0, 10, 0);
    submit(&mut c, "j-2", "bob", 0, 10, 0);
    assert_eq!(step(&mut c, &slots(4), 1), "j-1:m0 j-2:m0 j-1:m1 j-2:m1");
}

#[test]
fn priority_one_gets_twice_the_share_of_priority_zero() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1", "alice", 0, 100, 0);
    submit(&mut c, "j-2", "bob", 1, 100, 0);
    step(&mut c, &slots(9), 1);
    assert_eq!((running(&c, "j-1"), running(&c, "j-2")), (3, 6));
    // And a step down halves it.
    let mut c = Cluster::default();
    submit(&mut c, "j-1", "alice", 0, 100, 0);
    submit(&mut c, "j-2", "bob", -1, 100, 0);
    step(&mut c, &slots(9), 1);
    assert_eq!((running(&c, "j-1"), running(&c, "j-2")), (6, 3));
}

#[test]
fn within_an_owner_jobs_run_in_submission_order_and_owners_do_not_split_by_job() {
    let mut c = Cluster::default();
    // Alice's two jobs are one owner: together they get the share Bob's one job gets.
    submit(&mut c, "j-1", "alice", 0, 2, 0);
    submit(&mut c, "j-2", "alice", 0, 10, 1);
    submit(&mut c, "j-3", "bob", 0, 10, 2);
    assert_eq!(
        step(&mut c, &slots(6), 3),
        "j-1:m0 j-3:m0 j-1:m1 j-3:m1 j-2:m0 j-3:m2"
    );
}
