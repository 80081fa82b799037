//! A three-node cluster and what the distributed-job tests read from a job's JSON
//! (tests/it/jobs.rs, tests/it/jobs_more.rs).

use std::path::Path;

use shoal_node::http::jobs_view::{JobView, TaskView};

use super::cluster::*;
use super::*;

/// A three-node cluster and one of its followers.
pub struct Cluster {
    /// The nodes.
    pub nodes: Vec<NodeProc>,
    /// A follower's index.
    pub follower: usize,
}

pub fn three_nodes(dir: &Path) -> Cluster {
    let nodes = start_cluster(&dir.join("nodes"), 3, &["--expect", "3", "--slots", "2"]);
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let follower = nodes
        .iter()
        .position(|n| n.node_id != leader)
        .expect("a follower");
    Cluster { nodes, follower }
}

impl Cluster {
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].http)
    }

    /// `shoal submit --node FOLLOWER …`; the job id and the command's output.
    pub fn submit(&self, args: &[&str]) -> (String, std::process::Output) {
        let o = run(shoal()
            .args(["submit", "--node", &self.url(self.follower)])
            .args(args));
        let id = String::from_utf8_lossy(&o.stdout)
            .lines()
            .next()
            .unwrap_or("")
            .to_string();
        (id, o)
    }

    /// Job `id` as node `i` shows it. A submission is acknowledged once the leader and
    /// the submitting node applied it: another node may answer 404 for a moment, so a 404
    /// is asked again (up to 10 s); any other answer than 200 fails.
    pub fn job(&self, i: usize, id: &str) -> JobView {
        wait_for(10, &format!("node {i} to know job {id}"), || {
            let (status, v) = http_get(&self.nodes[i].http, &format!("/api/v1/jobs/{id}"))
                .unwrap_or_else(|| panic!("node {i} did not answer"));
            if status == 404 {
                return None;
            }
            assert_eq!(status, 200, "GET job {id}: {v}");
            Some(serde_json::from_value(v).expect("a job view"))
        })
    }
}

pub fn write_script(dir: &Path, name: &str, text: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p.to_string_lossy().into_owned()
}

/// [`write_script`], executable by anyone (tasks run as another user).
pub fn write_program(dir: &Path, name: &str, text: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = write_script(dir, name, text);
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p
}

/// A shell word-count mapper (`word<TAB>1` lines) whose attempts for which the shell test
/// `held` is true wait (60 s at most) until the file `gate` exists: the test decides when
/// they go on.
pub fn gated_word_mapper(dir: &Path, held: &str, gate: &Path) -> String {
    write_program(
        dir,
        "map.sh",
        &format!(
            "#!/bin/sh\n\
             if {held}; then\n\
               i=0; while [ ! -e {gate} ] && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done\n\
             fi\n\
             awk '{{ for (i = 1; i <= NF; i++) print $i \"\\t1\" }}'\n",
            gate = gate.display()
        ),
    )
}

/// A shell reducer summing `word<TAB>n` lines into `count<TAB>word` lines.
pub const SUM_REDUCER_SH: &str =
    "#!/bin/sh\nawk -F'\\t' '{ n[$1] += $2 } END { for (w in n) print n[w] \"\\t\" w }'\n";

/// [`SUM_REDUCER_SH`]'s `count<TAB>word` lines as (word, count), sorted by word.
pub fn summed_counts(text: &str) -> Vec<(String, usize)> {
    let mut got: Vec<(String, usize)> = text
        .lines()
        .map(|l| {
            let (n, w) = l.split_once('\t').unwrap();
            (w.to_owned(), n.parse().unwrap())
        })
        .collect();
    got.sort();
    got
}

/// Node ids of every attempt of the job's tasks of `kind`.
pub fn attempt_nodes(job: &JobView, kind: &str) -> Vec<String> {
    tasks(job)
        .iter()
        .filter(|t| t.kind == kind)
        .flat_map(|t| &t.attempts)
        .map(|a| a.node.clone())
        .collect()
}

/// The job's tasks (asked for with the job: a view without them fails the test).
pub fn tasks(job: &JobView) -> &[TaskView] {
    job.tasks.as_deref().expect("a job view with its tasks")
}

/// Task `id` of the job.
pub fn task<'a>(job: &'a JobView, id: &str) -> &'a TaskView {
    tasks(job)
        .iter()
        .find(|t| t.id == id)
        .unwrap_or_else(|| panic!("no task {id} in {job}"))
}

/// Counter `shoal.name` of the job (0 when it has none; Shoal's own never go below 0).
pub fn shoal_counter(job: &JobView, name: &str) -> u64 {
    u64::try_from(job.counter("shoal", name).unwrap_or(0)).expect("a count of at least 0")
}

pub fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p.to_string_lossy().into_owned());
            }
        }
    }
    out
}

pub fn done_node(task: &TaskView) -> String {
    task.attempts
        .iter()
        .find(|a| a.state == "done")
        .map(|a| a.node.clone())
        .expect("a done attempt")
}
