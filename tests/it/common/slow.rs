//! A slow word-count job on a 3-node cluster, for the tests that kill nodes while it runs
//! (tests/it/faults.rs, tests/it/soak.rs).

use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use shoal_node::http::jobs_view::JobView;

use super::cluster::*;
use super::*;

/// A mapper slow enough to be caught mid-map: 50 ms per line, one word per output line.
pub const SLOW_MAP: &str =
    "while IFS= read -r l; do sleep 0.05; for w in $l; do echo \"$w\"; done; done";
/// A reducer slow enough to be caught mid-reduce.
pub const SLOW_REDUCE: &str = "sleep 1.5; uniq -c";

pub struct Setup {
    pub dir: tempfile::TempDir,
    pub input: PathBuf,
    pub want: Vec<(String, usize)>,
}

pub fn setup() -> Setup {
    let dir = super::tempdir();
    let (input, all) = small_word_input(dir.path(), 12, 20);
    Setup {
        dir,
        input,
        want: word_counts(&all),
    }
}

pub fn start(dir: &Path) -> (Vec<NodeProc>, String) {
    let nodes = start_cluster(
        &dir.join("nodes"),
        3,
        &["--expect", "3", "--slots", "2", "--node-timeout", "2"],
    );
    let leader = wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    (nodes, leader)
}

/// `shoal submit --wait --output OUT` of the slow job through `node`, in the background.
pub fn submit_slow(s: &Setup, node: &NodeProc, out: &Path) -> Child {
    shoal()
        .args([
            "submit",
            "--node",
            &format!("http://{}", node.http),
            "--input",
        ])
        .arg(&s.input)
        .args(["--map", SLOW_MAP, "--reduce", SLOW_REDUCE, "-R", "3"])
        .arg("--output")
        .arg(out)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// The only job's JSON, as `node` sees it.
pub fn the_job(node: &NodeProc) -> Option<JobView> {
    let jobs = http_get_json(&node.http, "/api/v1/jobs")?;
    let mut jobs: Vec<JobView> = serde_json::from_value(jobs).expect("job views");
    (!jobs.is_empty()).then(|| jobs.swap_remove(0))
}

pub fn check_output(s: &Setup, out: &Path) {
    let got = uniq_counts(&parts(out, 3));
    assert_eq!(got, s.want, "the output differs from the reference");
}

pub fn finish(child: Child) {
    let o = child.wait_with_output().unwrap();
    assert!(o.status.success(), "submit --wait failed: {}", text(&o));
}

pub fn index_of(nodes: &[NodeProc], id: &str) -> usize {
    nodes.iter().position(|n| n.node_id == id).unwrap()
}
