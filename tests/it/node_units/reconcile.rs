//! Golden scripts: a table as the manager changes it, then what node 7 decides at each look.

use shoal_jobs::cluster::{NodeId, TaskKind};
use shoal_jobs::spec::JobSpec;
use shoal_node::control::work::AttemptKey;

use shoal_jobs::cluster::{Applied, Cluster, Command, SplitInfo};
use shoal_jobs::spec::JobKind;
use shoal_node::control::reconcile::*;

const ME: NodeId = 7;

fn apply(c: &mut Cluster, cmd: Command) {
    assert_eq!(
        c.apply(cmd),
        Applied::Changed,
        "the script's command applies"
    );
}

/// Job `id`: two maps, one reduce, submitted at 1.
fn submit(c: &mut Cluster, id: &str) {
    let spec = JobSpec::new(id, vec!["in".into()], JobKind::App("wordcount".into()));
    let split = |index| SplitInfo {
        index,
        name: "in".into(),
        len: 100,
        holders: vec![ME],
        ..Default::default()
    };
    apply(
        c,
        Command::SubmitJob {
            id: id.into(),
            spec: Box::new(spec),
            splits: vec![split(0), split(1)],
            partitioner: shoal_jobs::partition::Partitioner::Hash,
            at_ms: 1,
            counters: Default::default(),
        },
    );
}

fn assign(c: &mut Cluster, job: &str, kind: TaskKind, index: u32, node: NodeId, at_ms: u64) {
    apply(
        c,
        Command::Assign {
            job: job.into(),
            kind,
            index,
            attempt: 1,
            node,
            backup: false,
            at_ms,
        },
    );
}

fn finish(c: &mut Cluster, job: &str, kind: TaskKind, index: u32, holders: Vec<NodeId>) {
    apply(
        c,
        Command::TaskFinished {
            job: job.into(),
            kind,
            index,
            attempt: 1,
            sizes: vec![10],
            checksums: vec![0],
            holders,
            counters: Default::default(),
            at_ms: 30,
        },
    );
}

fn task(k: &AttemptKey) -> String {
    let t = if k.kind == TaskKind::Map { "m" } else { "r" };
    format!("{} {t}{}#{}", k.job, k.index, k.attempt)
}

/// The decisions as lines, in the order the worker acts on them.
fn render(a: &Actions) -> String {
    let mut lines = Vec::new();
    for w in &a.start {
        let from = match &w.inputs {
            Ok(maps) if w.key.kind == TaskKind::Reduce => {
                let maps: Vec<String> = maps
                    .iter()
                    .map(|m| format!("m{}@n{}", m.map, m.node))
                    .collect();
                format!(" <- {}", maps.join(" "))
            }
            Ok(_) => String::new(),
            Err(why) => format!(" (cannot run: {why})"),
        };
        lines.push(format!("start {}{from}", task(&w.key)));
    }
    lines.extend(a.stale.iter().map(|k| format!("report lost {}", task(k))));
    lines.extend(a.stop.iter().map(|k| format!("stop {}", task(k))));
    for (job, keep) in &a.clean {
        let keep: Vec<String> = keep.iter().map(|(p, n)| format!("r{p}#{n}")).collect();
        lines.push(format!("clean {job} keeping [{}]", keep.join(" ")));
    }
    lines.extend(a.forget.iter().map(|j| format!("forget {j}")));
    lines.join("\n")
}

/// Run `look` against a fresh view of what this node started, `running` what it runs.
fn look(c: &Cluster, boot_ms: u64, seen: &mut Seen, running: &[AttemptKey]) -> String {
    render(&reconcile(c, ME, boot_ms, seen, running))
}

fn key(job: &str, kind: TaskKind, index: u32) -> AttemptKey {
    AttemptKey {
        job: job.into(),
        kind,
        index,
        attempt: 1,
    }
}

#[test]
fn an_attempt_starts_once_and_a_reduce_reads_every_map() {
    let mut c = Cluster::default();
    let mut seen = Seen::default();
    submit(&mut c, "j-1");
    assert_eq!(look(&c, 5, &mut seen, &[]), "");
    assign(&mut c, "j-1", TaskKind::Map, 0, ME, 10);
    assign(&mut c, "j-1", TaskKind::Map, 1, 8, 10);
    assert_eq!(look(&c, 5, &mut seen, &[]), "start j-1 m0#1");
    let m0 = key("j-1", TaskKind::Map, 0);
    assert_eq!(look(&c, 5, &mut seen, std::slice::from_ref(&m0)), "");
    finish(&mut c, "j-1", TaskKind::Map, 0, vec![ME]);
    finish(&mut c, "j-1", TaskKind::Map, 1, vec![8]);
    assign(&mut c, "j-1", TaskKind::Reduce, 0, ME, 40);
    assert_eq!(look(&c, 5, &mut seen, &[]), "start j-1 r0#1 <- m0@n7 m1@n8");
}

#[test]
fn attempts_of_before_a_restart_are_reported_lost_never_started() {
    let mut c = Cluster::default();
    submit(&mut c, "j-1");
    assign(&mut c, "j-1", TaskKind::Map, 0, ME, 10);
    assign(&mut c, "j-1", TaskKind::Map, 1, ME, 50);
    // The process started at 20: m0 was assigned to the one before it.
    let mut seen = Seen::default();
    assert_eq!(
        look(&c, 20, &mut seen, &[]),
        "start j-1 m1#1\nreport lost j-1 m0#1"
    );
    assert_eq!(look(&c, 20, &mut seen, &[]), "", "reported once");
}

#[test]
fn a_killed_job_stops_its_attempts_is_cleaned_once_and_forgotten_after() {
    let mut c = Cluster::default();
    let mut seen = Seen::default();
    submit(&mut c, "j-1");
    assign(&mut c, "j-1", TaskKind::Map, 0, ME, 10);
    assert_eq!(look(&c, 5, &mut seen, &[]), "start j-1 m0#1");
    apply(
        &mut c,
        Command::KillJob {
            job: "j-1".into(),
            at_ms: 20,
        },
    );
    let m0 = key("j-1", TaskKind::Map, 0);
    assert_eq!(
        look(&c, 5, &mut seen, std::slice::from_ref(&m0)),
        "stop j-1 m0#1\nclean j-1 keeping []"
    );
    assert_eq!(look(&c, 5, &mut seen, &[]), "", "cleaned once");
    apply(&mut c, Command::Forget { job: "j-1".into() });
    assert_eq!(look(&c, 5, &mut seen, &[]), "forget j-1");
    assert_eq!(look(&c, 5, &mut seen, &[]), "");
}

#[test]
fn an_ended_job_keeps_the_parts_this_node_holds() {
    let mut c = Cluster::default();
    let mut seen = Seen::default();
    submit(&mut c, "j-1");
    assign(&mut c, "j-1", TaskKind::Map, 0, ME, 10);
    assign(&mut c, "j-1", TaskKind::Map, 1, ME, 10);
    finish(&mut c, "j-1", TaskKind::Map, 0, vec![ME]);
    finish(&mut c, "j-1", TaskKind::Map, 1, vec![ME]);
    assign(&mut c, "j-1", TaskKind::Reduce, 0, 8, 40);
    finish(&mut c, "j-1", TaskKind::Reduce, 0, vec![8, ME]);
    assert_eq!(
        look(&c, 5, &mut seen, &[]),
        "clean j-1 keeping [r0#1]",
        "ended before this node looked: nothing to start, its part kept"
    );
}
