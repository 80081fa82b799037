//! `control::manager::decide`'s retention: the oldest ended job beyond `--retain-jobs` is
//! forgotten, unless a running job reads its parts in place.

use std::time::Duration;

use shoal_jobs::cluster::{Applied, Cluster, Command as Jobs, PartOf, SplitInfo};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_node::cluster::state::Command;
use shoal_node::control::manager::{decide, Outlook};

/// Job `id`, submitted at `at_ms`, its one split another job's part (`part_of`) or uploaded.
fn submit(id: &str, at_ms: u64, part_of: Option<&str>) -> Jobs {
    let kind = JobKind::App("wordcount".into());
    Jobs::SubmitJob {
        id: id.into(),
        spec: Box::new(JobSpec::new(id, vec!["in".into()], kind)),
        splits: vec![SplitInfo {
            name: "in".into(),
            len: 1,
            holders: vec![1],
            part_of: part_of.map(|job| PartOf {
                job: job.into(),
                part: 0,
                attempt: 1,
            }),
            ..SplitInfo::default()
        }],
        partitioner: Partitioner::Hash,
        at_ms,
        counters: Default::default(),
    }
}

fn kill(job: &str, at_ms: u64) -> Jobs {
    Jobs::KillJob {
        job: job.into(),
        at_ms,
    }
}

/// The job the manager forgets next, keeping `keep` ended jobs.
fn forgets(t: &Cluster, keep: usize) -> Option<String> {
    let o = Outlook {
        me: 1,
        members: Vec::new(),
        node_timeout: Duration::from_secs(10),
        retain_jobs: keep,
        now_ms: 100,
    };
    match decide(t, &o, |_| Duration::ZERO) {
        Some(Command::Jobs(Jobs::Forget { job })) => Some(job),
        _ => None,
    }
}

#[test]
fn retention_passes_over_a_job_whose_parts_a_running_job_reads() {
    let mut t = Cluster::default();
    for cmd in [
        submit("a", 1, None),
        submit("b", 2, None),
        kill("a", 3),
        kill("b", 4),
        submit("c", 5, Some("a")),
    ] {
        assert_eq!(t.apply(cmd), Applied::Changed);
    }
    // Two ended, one kept: the oldest, `a`, is read by `c`, so `b` goes.
    assert_eq!(forgets(&t, 1).as_deref(), Some("b"));
    assert_eq!(forgets(&t, 2), None);
    assert_eq!(t.apply(kill("c", 6)), Applied::Changed);
    assert_eq!(forgets(&t, 2).as_deref(), Some("a"));
}
