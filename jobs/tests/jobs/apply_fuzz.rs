//! Arbitrary and oversized commands fed to the job table's `apply`: none panics or takes
//! long (a job asking for 4,294,967,295 reducers, a split numbered 4 billion, a report with
//! a million sizes for an unknown attempt, counters at `i64`'s bounds with names of 1 MB,
//! sizes, lengths, times and node ids of `u64::MAX`, a million holders, a 1 MB error), and
//! two replicas that apply the same commands end in the same state — what Raft relies on
//! when every node replays the log.

use proptest::prelude::*;
use shoal_jobs::cluster::{Cluster, Command, DrainCause, Held, PartOf, SplitInfo, TaskKind};
use shoal_jobs::cluster::{MAX_ERROR_CHARS, MAX_HOLDERS};
use shoal_jobs::counters::{Counters, MAX_COUNTERS};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};

fn job_id() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("j-1".to_string()),
        Just("j-2".to_string()),
        Just("../etc".to_string()),
        Just(String::new()),
        "[a-z0-9/.]{0,80}",
    ]
}

fn kind() -> impl Strategy<Value = TaskKind> {
    prop_oneof![Just(TaskKind::Map), Just(TaskKind::Reduce)]
}

fn small_or_huge() -> impl Strategy<Value = u32> {
    prop_oneof![0u32..4, Just(u32::MAX), any::<u32>()]
}

/// A node id, a size or a time: small, `u64::MAX` or anything.
fn wide() -> impl Strategy<Value = u64> {
    prop_oneof![0u64..4, Just(u64::MAX), any::<u64>()]
}

fn nodes() -> impl Strategy<Value = Vec<u64>> {
    prop_oneof![
        prop::collection::vec(0u64..4, 0..3),
        Just(vec![u64::MAX; 1_000_000]),
        prop::collection::vec(any::<u64>(), 200..300),
    ]
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        "[a-z ]{0,20}",
        Just("é".repeat(1 << 19)),
    ]
}

/// What a task or a lying member reports: `i64`'s bounds, names of 1 MB, the engine's own
/// group, more counters than a set holds.
fn counters() -> impl Strategy<Value = Counters> {
    let group = prop_oneof![
        Just("shoal".to_string()),
        Just("app".to_string()),
        Just(String::new()),
        Just("g".repeat(1 << 20)),
    ];
    let name = prop_oneof![
        Just("input_uploaded_bytes".to_string()),
        Just("n".repeat(1 << 20)),
        "[a-z]{1,3}",
    ];
    let amount = prop_oneof![Just(i64::MAX), Just(i64::MIN), Just(-1i64), any::<i64>()];
    prop_oneof![
        Just(Counters::default()),
        prop::collection::vec((group, name, amount), 0..6).prop_map(|cs| {
            let mut c = Counters::default();
            for (g, n, v) in cs {
                c.0.entry(g).or_default().insert(n, v);
            }
            c
        }),
        Just(Counters(
            [(
                "many".to_string(),
                (0..1000).map(|i| (format!("c{i}"), i64::MAX)).collect()
            )]
            .into_iter()
            .collect()
        )),
    ]
}

fn submit() -> impl Strategy<Value = Command> {
    (
        job_id(),
        small_or_huge(),
        0usize..6,
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..3),
        (wide(), nodes(), counters(), prop::option::of(job_id())),
    )
        .prop_map(
            |(id, reducers, n, in_order, stray, (len, holders, counters, part_of))| {
                let mut spec =
                    JobSpec::new("fuzz", vec!["in".into()], JobKind::App("wordcount".into()));
                spec.reducers = reducers;
                let mut splits: Vec<SplitInfo> = (0..n as u32)
                    .map(|index| SplitInfo {
                        index,
                        name: "in".into(),
                        len,
                        holders: holders.clone(),
                        // Another job's part, which keeps that job from being forgotten.
                        part_of: part_of.clone().map(|job| PartOf {
                            job,
                            part: index,
                            attempt: 1,
                        }),
                        ..Default::default()
                    })
                    .collect();
                if !in_order {
                    for (s, i) in splits.iter_mut().zip(stray) {
                        s.index = i;
                    }
                }
                Command::SubmitJob {
                    id,
                    spec: Box::new(spec),
                    splits,
                    partitioner: Partitioner::Hash,
                    at_ms: len,
                    counters,
                }
            },
        )
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        submit(),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            wide(),
            any::<bool>(),
            wide(),
        )
            .prop_map(
                |(job, kind, index, attempt, node, backup, at_ms)| Command::Assign {
                    job,
                    kind,
                    index,
                    attempt,
                    node,
                    backup,
                    at_ms,
                }
            ),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            prop_oneof![0usize..3, Just(1_000_000)],
            0usize..4,
            (wide(), nodes(), counters()),
        )
            .prop_map(
                |(job, kind, index, attempt, n, c, (size, holders, counters))| {
                    Command::TaskFinished {
                        job,
                        kind,
                        index,
                        attempt,
                        sizes: vec![size; n],
                        checksums: vec![0xc0ffee; c],
                        holders,
                        counters,
                        at_ms: size,
                    }
                }
            ),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            any::<bool>(),
            (
                text(),
                proptest::option::of(text()),
                proptest::option::of(text()),
                wide()
            ),
        )
            .prop_map(
                |(job, kind, index, attempt, lost, (error, exit, stderr_tail, at_ms))| {
                    Command::TaskFailed {
                        job,
                        kind,
                        index,
                        attempt,
                        error,
                        exit,
                        stderr_tail,
                        lost,
                        at_ms,
                    }
                }
            ),
        (wide(), wide()).prop_map(|(node, at_ms)| Command::NodeLost { node, at_ms }),
        (
            job_id(),
            small_or_huge(),
            small_or_huge(),
            proptest::option::of(prop_oneof![Just(1usize), Just(100_000)])
        )
            .prop_map(|(job, index, attempt, reason)| Command::MapOutputLost {
                job,
                index,
                attempt,
                reason: reason.map(|n| "x".repeat(n)),
                at_ms: 6,
            }),
        job_id().prop_map(|job| Command::Forget { job }),
        job_id().prop_map(|job| Command::KillJob { job, at_ms: 7 }),
        (job_id(), wide()).prop_map(|(job, node)| Command::SetupRan { job, node }),
        (
            wide(),
            prop_oneof![
                Just(DrainCause::Operator),
                Just(DrainCause::Stopping),
                Just(DrainCause::Removing)
            ],
            wide()
        )
            .prop_map(|(node, cause, at_ms)| Command::Drain { node, cause, at_ms }),
        wide().prop_map(|node| Command::Undrain { node }),
        (job_id(), any::<bool>(), small_or_huge(), nodes()).prop_map(|(job, split, i, nodes)| {
            Command::AddHolders {
                job,
                what: if split { Held::Split(i) } else { Held::Part(i) },
                nodes,
            }
        }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_commands_apply_alike_on_two_replicas_without_panicking(
        cmds in prop::collection::vec(command(), 0..40),
    ) {
        let (mut a, mut b) = (Cluster::default(), Cluster::default());
        for cmd in cmds {
            let (x, y) = (a.apply(cmd.clone()), b.apply(cmd));
            prop_assert_eq!(x, y);
        }
        prop_assert_eq!(&a, &b);
        // Nothing oversized got in: no job with more than 100,000 reduce tasks, every job's
        // id one plain path component.
        for (id, job) in &a.jobs {
            prop_assert!(job.reduces.len() <= 100_000);
            prop_assert!(!id.is_empty() && !id.contains('/') && !id.starts_with('.'));
            // Every reported list and text is held within its bound.
            prop_assert!(job.counters.len() <= MAX_COUNTERS);
            prop_assert!(job.counters_saturated.len() <= MAX_COUNTERS);
            for t in job.maps.iter().chain(&job.reduces) {
                prop_assert!(t.holders.len() <= MAX_HOLDERS);
                prop_assert!(t.counters.len() <= MAX_COUNTERS);
                for at in &t.attempts {
                    let long = |s: &Option<String>| s.as_ref().map_or(0, |s| s.chars().count());
                    prop_assert!(long(&at.error) <= MAX_ERROR_CHARS);
                    prop_assert!(long(&at.stderr_tail) <= MAX_ERROR_CHARS);
                }
            }
        }
    }
}
