//! The simulator itself: a quiet run finishes every job with the reference output, a seed
//! replays exactly, and every invariant fires on the bug planted for it.

use shoal_sim::{run, Config, Fault, Outcome, Plant};

fn quiet(seed: u64) -> Config {
    Config {
        seed,
        faults: Default::default(),
        steps: 20,
        ..Config::default()
    }
}

#[test]
fn without_faults_every_job_succeeds_with_the_reference_output() {
    let o = run(&quiet(5));
    assert!(o.ok(), "{}", o.report());
    assert_eq!(o.acked, 4, "{}", o.summary());
    assert_eq!(o.succeeded, 4, "{}", o.summary());
    assert_eq!(o.stats.dropped, 0, "{}", o.summary());
}

#[test]
fn a_seed_replays_its_trace_and_another_seed_differs() {
    let faulty = |seed| Config {
        seed,
        steps: 30,
        ..Config::default()
    };
    let a = run(&faulty(11));
    let b = run(&faulty(11));
    let c = run(&faulty(12));
    assert!(a.ok() && c.ok(), "{}\n{}", a.report(), c.report());
    assert!(a.stats.messages > 100, "{}", a.summary());
    assert_eq!((a.trace_hash, a.trace_lines), (b.trace_hash, b.trace_lines));
    assert_eq!(a.trace_tail, b.trace_tail);
    assert_ne!(a.trace_hash, c.trace_hash);
}

/// Past five voters and four learners, nodes are plain workers: not Raft members, their
/// assignments pushed by the leader. With every fault, they run tasks, every invariant
/// holds and every job succeeds.
#[test]
fn plain_workers_run_tasks_through_every_fault() {
    let mut on_workers = 0;
    for seed in 1..=4 {
        let o = run(&Config {
            seed,
            nodes: 16,
            ..Config::default()
        });
        // Every invariant held: every acknowledged job ended (succeeded, or failed only for
        // input on killed disks), its output the reference's.
        assert!(o.ok(), "{}", o.report());
        assert_eq!(o.acked, 4, "{}", o.summary());
        on_workers += o.on_workers;
    }
    assert!(
        on_workers > 0,
        "no attempt ran on a plain worker in 4 seeds"
    );
}

/// Sweep seeds from 1 until `plant` breaks its invariant; the violating run.
fn caught(plant: Plant, base: Config, max_seeds: u64) -> Outcome {
    for seed in 1..=max_seeds {
        let o = run(&Config {
            seed,
            plant: vec![plant],
            ..base.clone()
        });
        if o.violations.iter().any(|v| v.invariant == plant.breaks()) {
            return o;
        }
    }
    panic!(
        "{} planted: {} never fired in {max_seeds} seeds",
        plant.name(),
        plant.breaks()
    );
}

/// The sweep finds a seed that breaks the invariant, and that seed fails the same way
/// again, with a report that says how to reproduce it.
fn check_caught(name: &str, base: Config, max_seeds: u64) {
    let plant: Plant = name.parse().expect("a known bug");
    let o = caught(plant, base, max_seeds);
    let again = run(&o.config);
    assert_eq!(again.trace_hash, o.trace_hash, "a failing seed must replay");
    assert_eq!(again.violations, o.violations);
    let report = o.report();
    assert!(
        report.contains(&format!("invariant {} violated", plant.breaks())),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "reproduce with: shoal sim --seed {} --nodes",
            o.config.seed
        )) && report.contains(&format!("--plant {name}")),
        "{report}"
    );
    println!("{name}: {}", o.summary());
}

#[test]
fn one_leader_per_term_catches_votes_counted_from_silence() {
    check_caught("silence-is-consent", Config::default(), 40);
}

#[test]
fn logs_agree_catches_commands_applied_out_of_order() {
    check_caught("apply-out-of-order", Config::default(), 40);
}

#[test]
fn acknowledged_jobs_kept_catches_an_ignored_snapshot() {
    check_caught("snapshot-ignored", Config::default(), 40);
}

#[test]
fn outputs_match_catches_a_reduce_over_part_of_the_map_outputs() {
    check_caught("partial-reduce-input", Config::default(), 300);
}

#[test]
fn one_accepted_finish_catches_a_finish_from_a_stopped_attempt() {
    check_caught("finish-any-attempt", Config::default(), 200);
}

#[test]
fn every_job_ends_catches_proposing_that_gives_up_after_one_refusal() {
    // The membership's own proposing (cluster::propose), run over the simulated network
    // (seed 7 catches it today; 10 of the first 40 seeds do).
    check_caught("proposal-gives-up", Config::default(), 40);
}

#[test]
fn every_job_ends_catches_a_lost_map_output_never_run_again() {
    let base = Config {
        deadline: 120,
        ..Config::default()
    };
    check_caught("no-rerun", base, 80);
}

/// A bug in the daemon's own worker loop (which the simulator runs): its cleanup after a
/// job ends deletes the job's part files too. Before the simulator ran that loop, no
/// simulation could see it.
#[test]
fn outputs_match_catches_a_worker_loop_that_deletes_the_parts_it_keeps() {
    check_caught("worker-deletes-parts", Config::default(), 40);
}

/// Bytes flip on disks (the `rot` fault): a worker that used a copy without comparing it
/// with the checksum its writer recorded would compute from corrupt input.
#[test]
fn reads_match_checksums_catches_a_worker_that_trusts_corrupt_copies() {
    let base = Config {
        faults: [Fault::Rot].into_iter().collect(),
        ..Config::default()
    };
    check_caught("trust-corrupt-copies", base, 40);
}

/// The scheduling benchmark's table (`shoal sim --bench`).
mod bench_table {
    use shoal_jobs::scheduler::{plan, NodeSlots};

    #[test]
    fn the_big_table_fills_every_free_slot() {
        let t = shoal_sim::bench::big_table(10, 3, 30);
        let slots: Vec<NodeSlots> = (1..=10).map(|n| NodeSlots { node: n, slots: 8 }).collect();
        assert_eq!(plan(&t, &slots, 1).len(), 40);
    }
}

/// The simulator's seeded randomness.
mod seeds {
    use shoal_sim::rng::*;

    #[test]
    fn a_seed_replays_and_seeds_differ() {
        let a: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let b: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(7);
                move |_| r.next_u64()
            })
            .collect();
        let c: Vec<u64> = (0..5)
            .map({
                let mut r = Rng::new(8);
                move |_| r.next_u64()
            })
            .collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut r = Rng::new(1);
        assert!((0..1000).all(|_| r.between(3, 5) >= 3 && r.between(3, 5) <= 5));
        assert!(!(0..1000).any(|_| r.chance(0.0)));
    }
}

/// The simulated tasks' computing, against the reference.
mod tasks {
    use std::sync::Arc;

    use shoal_jobs::partition::Partitioner;
    use shoal_sim::compute::{map_split, reduce};
    use shoal_sim::rng::Rng;
    use shoal_sim::workload::*;

    /// The app run as the simulated tasks run it (every split mapped, every partition
    /// reduced) gives the reference, for both apps; and a lost split shows.
    #[test]
    fn tasks_running_the_app_give_the_reference() {
        let mut rng = Rng::new(3);
        for app in ["wordcount", "invertedindex"] {
            let input = JobInput {
                app,
                ..job_input(&mut rng)
            };
            let a = shoal_jobs::apps::by_name(app, &Default::default()).expect("a built-in app");
            let p = Partitioner::Hash;
            let maps: Vec<Vec<Vec<u8>>> = input
                .splits
                .iter()
                .enumerate()
                .map(|(i, t)| map_split(a.as_ref(), split_name(i).as_bytes(), t, &p, REDUCERS))
                .collect();
            let parts = |skip: Option<usize>| -> Vec<Vec<u8>> {
                (0..REDUCERS as usize)
                    .map(|r| {
                        let inputs: Vec<Arc<Vec<u8>>> = maps
                            .iter()
                            .enumerate()
                            .filter(|(i, _)| Some(*i) != skip)
                            .map(|(_, m)| Arc::new(m[r].clone()))
                            .collect();
                        reduce(a.as_ref(), &inputs)
                    })
                    .collect()
            };
            let want = expected(&input, &p, REDUCERS);
            assert!(
                want.iter().all(|w| !w.is_empty()),
                "{app}: empty partitions"
            );
            assert_eq!(parts(None), want, "{app}");
            assert_ne!(parts(Some(0)), want, "{app}: a missing split must show");
        }
    }
}
