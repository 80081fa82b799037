use shoal_jobs::cluster::{Job, NodeId};
use shoal_net::wire::Reason;
use shoal_node::cluster::pushed::*;
use shoal_raft::NodeInfo;
use tokio::time::Instant;

fn job(id: &str, marker: &str) -> PushedJob {
    let spec = shoal_jobs::spec::JobSpec {
        name: marker.into(),
        ..Default::default()
    };
    PushedJob {
        job: Job {
            id: id.into(),
            spec,
            state: shoal_jobs::cluster::JobState::Running,
            submitted_ms: 1,
            finished_ms: None,
            splits: Vec::new(),
            partitioner: shoal_jobs::partition::Partitioner::Hash,
            maps: Vec::new(),
            reduces: Vec::new(),
            counters: Default::default(),
            counters_saturated: Vec::new(),
            error: None,
            setup_nodes: Vec::new(),
        },
        spec_sent: true,
    }
}

fn push(term: u64, seq: u64, base: u64, jobs: Vec<PushedJob>, gone: &[&str]) -> Push {
    let member = |id| (id, NodeInfo::default(), Role::Voter);
    Push {
        term,
        leader: 7,
        seq,
        base,
        index: seq,
        roster: (base == 0).then(|| vec![member(7), member(9)]),
        roster_digest: 1,
        draining: None,
        jobs,
        gone: gone.iter().map(|s| s.to_string()).collect(),
    }
}

fn ids(p: &Pushed) -> Vec<String> {
    p.read(|t| {
        t.map(|t| t.jobs.jobs.keys().cloned().collect())
            .unwrap_or_default()
    })
}

#[test]
fn pushes_apply_in_step_and_only_from_the_leader_they_name() {
    let p = Pushed::default();
    let mut seen = p.changes();
    // Only from the node named as leader.
    let err = p
        .apply(8, push(1, 1, 0, vec![job("j-1", "a")], &[]))
        .unwrap_err();
    assert_eq!(err.reason, Reason::NotAMember);
    assert!(err.why.contains("in the name of"), "{err}");
    // A delta before anything: out of step.
    assert_eq!(
        p.apply(7, push(1, 1, 5, vec![], &[])).unwrap_err().reason,
        Reason::OutOfStep
    );
    p.apply(
        7,
        push(1, 1, 0, vec![job("j-1", "a"), job("j-2", "b")], &[]),
    )
    .unwrap();
    assert!(seen.has_changed().unwrap());
    seen.mark_unchanged();
    assert_eq!(ids(&p), ["j-1", "j-2"]);
    // A delta on the push it names: j-1 goes, j-2 changes without its spec.
    let mut j2 = job("j-2", "");
    j2.spec_sent = false;
    j2.job.state = shoal_jobs::cluster::JobState::Succeeded;
    p.apply(7, push(1, 2, 1, vec![j2], &["j-1"])).unwrap();
    assert_eq!(ids(&p), ["j-2"]);
    p.read(|t| {
        let j = &t.unwrap().jobs.jobs["j-2"];
        assert_eq!(j.spec.name, "b", "the spec it had is kept");
        assert_eq!(j.state, shoal_jobs::cluster::JobState::Succeeded);
    });
    // A delta on another base is refused and changes nothing.
    assert_eq!(
        p.apply(7, push(1, 3, 1, vec![], &["j-2"]))
            .unwrap_err()
            .reason,
        Reason::OutOfStep
    );
    assert_eq!(ids(&p), ["j-2"]);
    // An older term is refused; so is a push from a node outside the roster while the
    // leader is heard from, whatever term it claims — but not once the leader was
    // silent past LEADER_SILENT (a leader the roster did not name yet).
    assert!(p.apply(7, push(0, 9, 0, vec![], &[])).is_err());
    let outsider = |term| {
        let mut q = push(term, 1, 0, vec![], &[]);
        q.leader = 8;
        q
    };
    let err = p.apply(8, outsider(5)).unwrap_err();
    assert_eq!(err.reason, Reason::NotTheLeader);
    assert!(err.why.contains("not in the cluster's roster"), "{err}");
    assert_eq!(ids(&p), ["j-2"]);
    let later = Instant::now() + LEADER_SILENT;
    p.apply_at(8, outsider(5), later).unwrap();
    assert_eq!(p.leader(), Some(8));
    p.apply_at(7, push(6, 1, 0, vec![], &[]), later).unwrap();
    let mut q = push(7, 1, 0, vec![job("j-3", "c")], &[]);
    q.leader = 9;
    p.apply(9, q).unwrap();
    assert_eq!(ids(&p), ["j-3"]);
    assert_eq!(p.leader(), Some(9));
}

#[test]
fn while_the_leader_is_heard_only_a_voter_of_a_slightly_later_term_takes_over() {
    let p = Pushed::default();
    let mut first = push(3, 1, 0, vec![job("j-1", "a")], &[]);
    first.roster = Some(vec![
        (7, NodeInfo::default(), Role::Voter),
        (9, NodeInfo::default(), Role::Voter),
        (11, NodeInfo::default(), Role::Learner),
        (12, NodeInfo::default(), Role::Worker),
    ]);
    p.apply(7, first).unwrap();
    let from = |leader: NodeId, term: u64| Push {
        leader,
        ..push(term, 1, 0, vec![job("j-evil", "x")], &[])
    };
    let refused = |leader: NodeId, term: u64, says: &str| {
        let err = p.apply(leader, from(leader, term)).unwrap_err();
        assert_eq!(err.reason, Reason::NotTheLeader, "{err}");
        assert!(err.why.contains(says), "{err}");
    };
    // A voter with a made-up term: refused, and the real leader goes on.
    refused(9, 1 << 40, "no election gets that far");
    refused(9, 3, "which node 0000000000000007 leads");
    // A learner or a plain worker holding the key is never elected.
    refused(11, 4, "is a learner");
    refused(12, 4, "is a worker");
    assert_eq!(ids(&p), ["j-1"]);
    p.apply(7, push(3, 2, 1, vec![], &[])).unwrap();
    // A voter elected in a later term takes over.
    p.apply(9, from(9, 3 + MAX_TERM_STEP)).unwrap();
    assert_eq!(p.leader(), Some(9));
    assert_eq!(ids(&p), ["j-evil"]);
    // Once its leader is silent, a worker takes whatever roster voter leads now.
    let later = Instant::now() + LEADER_SILENT;
    p.apply_at(7, from(7, 1 << 40), later).unwrap();
    assert_eq!(p.leader(), Some(7));
}

#[test]
fn a_first_push_without_the_roster_applies_only_onto_the_roster_it_names() {
    let p = Pushed::default();
    let bare = |term, digest| Push {
        roster: None,
        roster_digest: digest,
        ..push(term, 1, 0, vec![job("j-1", "a")], &[])
    };
    // A worker that holds nothing wants the roster.
    assert_eq!(
        p.apply(7, bare(1, 1)).unwrap_err().reason,
        Reason::RosterWanted
    );
    assert_eq!(p.leader(), None);
    p.apply(7, push(1, 1, 0, vec![], &[])).unwrap();
    // A new term's first push naming the roster held keeps it and takes the jobs.
    p.apply(7, bare(2, 1)).unwrap();
    assert_eq!(ids(&p), ["j-1"]);
    p.read(|t| {
        let t = t.unwrap();
        assert_eq!(t.roster.keys().copied().collect::<Vec<_>>(), [7, 9]);
        assert_eq!((t.term, t.roster_digest), (2, 1));
    });
    // Naming another roster is refused and changes nothing.
    assert_eq!(
        p.apply(7, bare(3, 2)).unwrap_err().reason,
        Reason::RosterWanted
    );
    p.read(|t| assert_eq!(t.unwrap().term, 2));
}
