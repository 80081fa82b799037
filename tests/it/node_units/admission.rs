use shoal_jobs::cluster::{Applied, SplitInfo};
use shoal_jobs::cluster::{Cluster, Command as JobCommand, TaskKind};
use shoal_jobs::counters::Counters;
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_net::wire::Reason;
use shoal_node::cluster::admission::*;
use shoal_node::cluster::state::Command;

/// A table with one job whose map 0 runs attempt 1 on node 7.
fn table() -> Cluster {
    let mut c = Cluster::default();
    let spec = JobSpec::new("wc", vec!["in".into()], JobKind::App("wordcount".into()));
    let split = SplitInfo {
        index: 0,
        name: "in".into(),
        len: 10,
        holders: vec![7],
        ..Default::default()
    };
    let submit = JobCommand::SubmitJob {
        id: "j-1".into(),
        spec: Box::new(spec),
        splits: vec![split],
        partitioner: Partitioner::Hash,
        at_ms: 1,
        counters: Default::default(),
    };
    assert_eq!(c.apply(submit), Applied::Changed);
    let assign = JobCommand::Assign {
        job: "j-1".into(),
        kind: TaskKind::Map,
        index: 0,
        attempt: 1,
        node: 7,
        backup: false,
        at_ms: 2,
    };
    assert_eq!(c.apply(assign), Applied::Changed);
    c
}

fn finished(attempt: u32) -> Command {
    Command::Jobs(JobCommand::TaskFinished {
        job: "j-1".into(),
        kind: TaskKind::Map,
        index: 0,
        attempt,
        sizes: vec![1],
        checksums: vec![0],
        holders: vec![],
        counters: Counters::default(),
        at_ms: 3,
    })
}

#[test]
fn a_member_reports_its_own_attempts_only() {
    let t = table();
    assert_eq!(may_propose(&finished(1), 7, &t), Ok(()));
    let refused = may_propose(&finished(1), 8, &t).unwrap_err();
    assert_eq!(refused.reason, Reason::Forbidden);
    let other = refused.why;
    assert!(other.contains("runs on node 0000000000000007"), "{other}");
    let unknown = may_propose(&finished(2), 7, &t).unwrap_err().why;
    assert!(unknown.contains("does not know"), "{unknown}");
    // One foreign report spoils a batch.
    let batch = Command::Batch(vec![
        match finished(1) {
            Command::Jobs(c) => c,
            _ => unreachable!(),
        },
        JobCommand::NodeLost { node: 9, at_ms: 4 },
    ]);
    assert!(may_propose(&batch, 7, &t).is_err());
}

#[test]
fn a_member_reports_its_own_setup_only() {
    let t = table();
    let ran = |node| {
        Command::Jobs(JobCommand::SetupRan {
            job: "j-1".into(),
            node,
        })
    };
    assert_eq!(may_propose(&ran(7), 7, &t), Ok(()));
    let other = may_propose(&ran(7), 8, &t).unwrap_err().why;
    assert!(
        other.contains("reported a setup run on node 0000000000000007"),
        "{other}"
    );
}

#[test]
fn a_key_holder_names_copies_of_what_it_holds_and_stops_only_itself() {
    let t = table();
    let add = |index| {
        Command::Jobs(JobCommand::AddHolders {
            job: "j-1".into(),
            what: shoal_jobs::cluster::Held::Split(index),
            nodes: vec![8],
        })
    };
    // Node 7 holds split 0; node 8 does not, and no node holds a split 1.
    assert_eq!(may_propose(&add(0), 7, &t), Ok(()));
    let liar = may_propose(&add(0), 8, &t).unwrap_err().why;
    assert!(liar.contains("which it does not hold"), "{liar}");
    assert!(may_propose(&add(1), 7, &t).is_err());
    let stopping = |node| {
        Command::Jobs(JobCommand::Drain {
            node,
            cause: shoal_jobs::cluster::DrainCause::Stopping,
            at_ms: 4,
        })
    };
    assert_eq!(may_propose(&stopping(7), 7, &t), Ok(()));
    let other = may_propose(&stopping(7), 8, &t).unwrap_err().why;
    assert!(
        other.contains("said node 0000000000000007 is stopping"),
        "{other}"
    );
}

#[test]
fn only_the_manager_assigns_declares_lost_forgets_or_records_the_cluster_or_workers() {
    let t = table();
    for cmd in [
        JobCommand::NodeLost { node: 9, at_ms: 4 },
        JobCommand::Forget { job: "j-1".into() },
        JobCommand::Assign {
            job: "j-1".into(),
            kind: TaskKind::Map,
            index: 0,
            attempt: 2,
            node: 7,
            backup: true,
            at_ms: 2,
        },
    ] {
        let why = may_propose(&Command::Jobs(cmd), 7, &t).unwrap_err().why;
        assert!(why.contains("only the manager"), "{why}");
    }
    assert!(may_propose(&Command::Init { cluster_id: 1 }, 7, &t).is_err());
    // Nor may a member make itself or another a plain worker, or drop one.
    let worker = Command::Worker {
        node_id: 7,
        info: shoal_raft::NodeInfo::default(),
    };
    for cmd in [worker, Command::DropWorker { node_id: 9 }] {
        let why = may_propose(&cmd, 7, &t).unwrap_err().why;
        assert!(
            why.contains("only the leader records plain workers"),
            "{why}"
        );
    }
    let kill = Command::Jobs(JobCommand::KillJob {
        job: "j-1".into(),
        at_ms: 5,
    });
    assert_eq!(may_propose(&kill, 8, &t), Ok(()));
}
