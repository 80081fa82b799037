//! Arbitrary and oversized commands fed to the job table's `apply`: none panics or takes
//! long (a job asking for 4,294,967,295 reducers, a split numbered 4 billion, a report with
//! a million sizes for an unknown attempt), and two replicas that apply the same commands
//! end in the same state — what Raft relies on when every node replays the log.

use proptest::prelude::*;
use shoal_jobs::cluster::{Cluster, Command, SplitInfo, TaskKind};
use shoal_jobs::counters::Counters;
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

fn submit() -> impl Strategy<Value = Command> {
    (
        job_id(),
        small_or_huge(),
        0usize..6,
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..3),
    )
        .prop_map(|(id, reducers, n, in_order, stray)| {
            let mut spec =
                JobSpec::new("fuzz", vec!["in".into()], JobKind::App("wordcount".into()));
            spec.reducers = reducers;
            let mut splits: Vec<SplitInfo> = (0..n as u32)
                .map(|index| SplitInfo {
                    index,
                    name: "in".into(),
                    len: 10,
                    holders: vec![1],
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
                at_ms: 1,
                counters: Default::default(),
            }
        })
}

fn command() -> impl Strategy<Value = Command> {
    prop_oneof![
        submit(),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            0u64..4,
            any::<bool>()
        )
            .prop_map(
                |(job, kind, index, attempt, node, backup)| Command::Assign {
                    job,
                    kind,
                    index,
                    attempt,
                    node,
                    backup,
                    at_ms: 2,
                }
            ),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            prop_oneof![0usize..3, Just(1_000_000)],
            0usize..4,
        )
            .prop_map(|(job, kind, index, attempt, n, c)| Command::TaskFinished {
                job,
                kind,
                index,
                attempt,
                sizes: vec![7; n],
                checksums: vec![0xc0ffee; c],
                holders: vec![],
                counters: Counters::default(),
                at_ms: 3,
            }),
        (
            job_id(),
            kind(),
            small_or_huge(),
            small_or_huge(),
            any::<bool>()
        )
            .prop_map(|(job, kind, index, attempt, lost)| Command::TaskFailed {
                job,
                kind,
                index,
                attempt,
                error: "boom".into(),
                exit: None,
                stderr_tail: None,
                lost,
                at_ms: 4,
            }),
        (0u64..4).prop_map(|node| Command::NodeLost { node, at_ms: 5 }),
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
        (job_id(), prop_oneof![0u64..4, any::<u64>()])
            .prop_map(|(job, node)| Command::SetupRan { job, node }),
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
        }
    }
}
