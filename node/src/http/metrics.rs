//! `GET /metrics`: the node and the cluster as this node sees them, in Prometheus' text
//! format. Job and task figures come from the replicated job table (the same on every node);
//! shuffle bytes, peers and Raft figures are this node's own; slots are per node, from the
//! heartbeats this node has heard (the leader hears every node's).
//!
//! The invariant: every family has one `# HELP` and one `# TYPE` line before its samples,
//! label values are escaped, and names follow Prometheus' conventions (`_total` counters,
//! `_seconds`, `_bytes`).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use shoal_jobs::cluster::{Cluster, JobState, Task, TaskKind, TaskState};

use crate::cluster::identity::hex;
use crate::control::Control;
use crate::http::jobs_view::shown_state;
use crate::supervisor::Stop;
use crate::sync::ReadWrite;

/// Upper bounds of the task-duration histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 1800.0,
];

/// Run forever: count the leader changes this node sees.
pub async fn count_leader_changes(ctl: Arc<Control>, mut stop: Stop) {
    let Some(h) = stop.or(ctl.node.raft_started()).await else {
        return;
    };
    let mut changes = h.raft.metrics();
    let mut last = None;
    loop {
        let leader = shoal_raft::metrics(&h.raft).current_leader;
        if leader.is_some() && leader != last {
            ctl.node.leader_changes.fetch_add(1, Ordering::Relaxed);
        }
        last = leader.or(last);
        let tick = std::time::Duration::from_secs(1);
        if stop
            .or(crate::cluster::node::next_change(&mut changes, tick))
            .await
            .is_none()
        {
            return;
        }
    }
}

/// A metrics page being written.
struct Page(String);

impl Page {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, value: f64) {
        self.family(name, kind, help);
        self.sample(name, &[], value);
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: f64) {
        self.0.push_str(name);
        if !labels.is_empty() {
            self.0.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.0.push(',');
                }
                let _ = write!(self.0, "{k}=\"{}\"", escape(v));
            }
            self.0.push('}');
        }
        let _ = writeln!(self.0, " {value}");
    }
}

/// A label value as the text format wants it.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn kind_name(k: TaskKind) -> &'static str {
    match k {
        TaskKind::Map => "map",
        TaskKind::Reduce => "reduce",
    }
}

/// Every task of every job in the table.
fn tasks(table: &Cluster) -> impl Iterator<Item = &Task> {
    tasks_of_jobs(table).map(|(_, t)| t)
}

/// Every task of the jobs in the table, with its job's state.
fn tasks_of_jobs(table: &Cluster) -> impl Iterator<Item = (JobState, &Task)> {
    table
        .jobs
        .values()
        .flat_map(|j| j.maps.iter().chain(&j.reduces).map(move |t| (j.state, t)))
}

/// The job table's families.
fn jobs(page: &mut Page, table: &Cluster) {
    page.family("shoal_jobs", "gauge", "Jobs in the job table, by state.");
    for (state, label) in [
        (JobState::Running, "running"),
        (JobState::Succeeded, "succeeded"),
        (JobState::Failed, "failed"),
        (JobState::Killed, "killed"),
    ] {
        let n = table.jobs.values().filter(|j| j.state == state).count();
        page.sample("shoal_jobs", &[("state", label)], n as f64);
    }
    page.family(
        "shoal_tasks",
        "gauge",
        "Tasks of the jobs in the table, by kind and state (cancelled: left pending or running by a job that ended).",
    );
    for kind in [TaskKind::Map, TaskKind::Reduce] {
        for label in ["pending", "running", "done", "failed", "cancelled"] {
            let n = tasks_of_jobs(table)
                .filter(|(job, t)| t.kind == kind && shown_state(*job, t.state) == label)
                .count();
            page.sample(
                "shoal_tasks",
                &[("kind", kind_name(kind)), ("state", label)],
                n as f64,
            );
        }
    }
    attempts(page, table);
    durations(page, table);
    page.family(
        "shoal_job_counter",
        "gauge",
        "Counters of each job's successful attempts, as its JSON shows them.",
    );
    for j in table.jobs.values() {
        for (group, names) in &j.counters.0 {
            for (name, v) in names {
                page.sample(
                    "shoal_job_counter",
                    &[("job", &j.id), ("group", group), ("name", name)],
                    *v as f64,
                );
            }
        }
    }
}

/// Attempts, by kind and outcome.
fn attempts(page: &mut Page, table: &Cluster) {
    page.family(
        "shoal_task_attempts",
        "gauge",
        "Attempts of the jobs in the table, by kind and outcome.",
    );
    for kind in [TaskKind::Map, TaskKind::Reduce] {
        let attempts = || {
            tasks_of_jobs(table)
                .filter(move |(_, t)| t.kind == kind)
                .flat_map(|(job, t)| t.attempts.iter().map(move |a| (job, a)))
                .map(|(job, a)| (shown_state(job, a.state), a))
        };
        for (label, n) in [
            (
                "running",
                attempts().filter(|(s, _)| *s == "running").count(),
            ),
            (
                "cancelled",
                attempts().filter(|(s, _)| *s == "cancelled").count(),
            ),
            (
                "done",
                attempts()
                    .filter(|(_, a)| a.state == TaskState::Done)
                    .count(),
            ),
            (
                "failed",
                attempts()
                    .filter(|(_, a)| a.state == TaskState::Failed && !a.lost)
                    .count(),
            ),
            ("lost", attempts().filter(|(_, a)| a.lost).count()),
            ("backup", attempts().filter(|(_, a)| a.backup).count()),
        ] {
            page.sample(
                "shoal_task_attempts",
                &[("kind", kind_name(kind)), ("outcome", label)],
                n as f64,
            );
        }
    }
}

/// The durations of successful attempts, as a histogram per kind.
fn durations(page: &mut Page, table: &Cluster) {
    page.family(
        "shoal_task_duration_seconds",
        "histogram",
        "Durations of the successful attempts of the jobs in the table.",
    );
    for kind in [TaskKind::Map, TaskKind::Reduce] {
        let took: Vec<f64> = tasks(table)
            .filter(|t| t.kind == kind)
            .flat_map(|t| t.attempts.iter())
            .filter(|a| a.state == TaskState::Done)
            .map(|a| a.end_ms.unwrap_or(a.start_ms).saturating_sub(a.start_ms) as f64 / 1000.0)
            .collect();
        let k = kind_name(kind);
        for le in BUCKETS {
            let n = took.iter().filter(|&&t| t <= le).count();
            page.sample(
                "shoal_task_duration_seconds_bucket",
                &[("kind", k), ("le", &le.to_string())],
                n as f64,
            );
        }
        page.sample(
            "shoal_task_duration_seconds_bucket",
            &[("kind", k), ("le", "+Inf")],
            took.len() as f64,
        );
        page.sample(
            "shoal_task_duration_seconds_sum",
            &[("kind", k)],
            took.iter().sum(),
        );
        page.sample(
            "shoal_task_duration_seconds_count",
            &[("kind", k)],
            took.len() as f64,
        );
    }
}

/// The whole page.
pub fn render(ctl: &Control) -> String {
    let mut page = Page(String::new());
    if let Some(h) = ctl.node.raft.get() {
        {
            let applied = h.applied.read_now();
            jobs(&mut page, &applied.state.jobs);
        }
        let m = shoal_raft::metrics(&h.raft);
        page.single(
            "shoal_raft_term",
            "gauge",
            "This node's current Raft term.",
            m.current_term as f64,
        );
        page.single(
            "shoal_raft_applied_index",
            "gauge",
            "Index of the last log entry this node applied.",
            m.last_applied.map_or(0, |l| l.index) as f64,
        );
        let leads = m.current_leader == Some(ctl.node.id);
        page.single(
            "shoal_raft_is_leader",
            "gauge",
            "1 on the leader (the manager), else 0.",
            if leads { 1.0 } else { 0.0 },
        );
    }
    page.single(
        "shoal_raft_leader_changes_total",
        "counter",
        "Leaders this node has seen elected since it started.",
        ctl.node.leader_changes.load(Ordering::Relaxed) as f64,
    );
    page.single(
        "shoal_peers_connected",
        "gauge",
        "Peers of this node's cluster it has heard from within --node-timeout.",
        ctl.node.peers.hellos().len() as f64,
    );
    page.single(
        "shoal_shuffle_fetched_bytes_total",
        "counter",
        "Map output this node's reduces fetched from other nodes.",
        ctl.store.shuffle.fetched_bytes.load(Ordering::Relaxed) as f64,
    );
    page.single(
        "shoal_shuffle_local_bytes_total",
        "counter",
        "Map output this node's reduces read from its own store.",
        ctl.store.shuffle.local_bytes.load(Ordering::Relaxed) as f64,
    );
    page.single(
        "shoal_linked_bytes_total",
        "counter",
        "Objects this node sent to, or took from, another node of its host as hard links instead of copying their bytes.",
        ctl.store.links.linked_bytes() as f64,
    );
    let beats: Vec<(u64, shoal_net::wire::Heartbeat)> = {
        let heard = ctl.node.heartbeats.locked();
        heard
            .iter()
            .map(|(id, (_, hb))| (*id, hb.clone()))
            .collect()
    };
    type PerNode = fn(&shoal_net::wire::Heartbeat) -> f64;
    let per_node: [(&str, &str, PerNode); 3] = [
        (
            "shoal_node_slots",
            "Task slots of each node this node has heard from.",
            |hb| f64::from(hb.slots),
        ),
        (
            "shoal_node_slots_busy",
            "Busy task slots of each node, at its last heartbeat.",
            |hb| f64::from(hb.busy),
        ),
        (
            "shoal_node_disk_bytes",
            "Bytes each node's object store holds, at its last heartbeat.",
            |hb| hb.disk_bytes as f64,
        ),
    ];
    for (name, help, value) in per_node {
        page.family(name, "gauge", help);
        for (id, hb) in &beats {
            page.sample(name, &[("node", &hex(*id))], value(hb));
        }
    }
    page.0
}

/// `GET /metrics`.
pub async fn metrics(State(ctl): State<Arc<Control>>) -> Response {
    crate::http::view::gather_heartbeats(&ctl).await;
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        render(&ctl),
    )
        .into_response()
}
