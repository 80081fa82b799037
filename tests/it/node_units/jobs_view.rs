use shoal_jobs::cluster::TaskKind;
use shoal_jobs::cluster::{Cluster, Command, SplitInfo};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_node::http::jobs_view::*;

#[test]
fn a_job_reads_as_design_md_shows_it() {
    let mut c = Cluster::default();
    let spec = JobSpec::new("wc", vec!["in".into()], JobKind::App("wordcount".into()));
    let splits = vec![SplitInfo {
        index: 0,
        name: "in".into(),
        len: 10,
        holders: vec![1],
        files: Vec::new(),
        ..Default::default()
    }];
    c.apply(Command::SubmitJob {
        id: "j-1".into(),
        spec: Box::new(spec),
        splits,
        partitioner: Partitioner::Hash,
        at_ms: 7,
        counters: Default::default(),
    });
    let v = serde_json::to_value(jobs_view(&c, true)).unwrap();
    assert_eq!(v[0]["state"], "queued");
    assert_eq!(v[0]["phase"], "map");
    assert_eq!(v[0]["maps"]["total"], 1);
    c.apply(Command::Assign {
        job: "j-1".into(),
        kind: TaskKind::Map,
        index: 0,
        attempt: 1,
        node: 1,
        backup: false,
        at_ms: 8,
    });
    let view = job_view(&c.jobs["j-1"], true);
    let v = serde_json::to_value(&view).unwrap();
    // What a client reads back is what the node wrote.
    let read: JobView = serde_json::from_value(v.clone()).unwrap();
    assert_eq!(read, view);
    assert_eq!(read.tasks.as_ref().map(Vec::len), Some(2));
    assert_eq!(v["state"], "running");
    assert_eq!(v["maps"]["running"], 1);
    assert_eq!(v["tasks"][0]["id"], "m-00000");
    assert_eq!(v["tasks"][0]["attempts"][0]["node"], "0000000000000001");
    assert_eq!(v["tasks"][1]["kind"], "reduce");
    // `?tasks=false`: the same job, its counts, no task table.
    let summary = serde_json::to_value(job_view(&c.jobs["j-1"], false)).unwrap();
    assert_eq!(summary["maps"], v["maps"]);
    assert!(summary.get("tasks").is_none(), "{summary}");
    let read: JobView = serde_json::from_value(summary).unwrap();
    assert!(read.tasks.is_none() && read.counters_saturated.is_empty());
}
