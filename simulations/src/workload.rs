//! The workload: word-count jobs (Shoal's native `wordcount` app) over seeded text, the
//! reference answer, and the client that submits jobs to a node.
//!
//! The reference is counted from the whole text directly, not through the app, so a task
//! that loses or doubles input shows as a wrong part file.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shoal_jobs::cluster::{self, Applied as JobsApplied, SplitInfo};
use shoal_jobs::partition::Partitioner;
use shoal_jobs::spec::{JobKind, JobSpec};
use shoal_node::cluster::state::Command;

use crate::compute::line;
use crate::node::{split_key, SimNode, World};
use crate::rng::Rng;
use crate::world::{lock, Acked};

/// Reduce partitions per job.
pub const REDUCERS: u32 = 3;
/// Words the text is drawn from.
const WORDS: &[&str] = &[
    "shoal", "raft", "map", "reduce", "split", "leader", "term", "vote", "log", "node", "task",
    "job", "key", "value", "sort", "merge", "spill", "part", "seed", "fault", "crash", "heal",
    "loss", "lease", "quorum", "commit", "apply", "snapshot", "peer", "fish", "école", "ñu",
];

/// A job to submit: its native app and its splits' text.
#[derive(Debug, Clone)]
pub struct JobInput {
    /// `wordcount` or `invertedindex`.
    pub app: &'static str,
    /// One text per split.
    pub splits: Vec<Vec<u8>>,
    /// Its owner and priority: the scheduler shares slots between owners.
    pub owner: (&'static str, i32),
}

/// The owners jobs are submitted as, in turn: two at priority 0, one at 1.
const OWNERS: [(&str, i32); 3] = [("ann", 0), ("ben", 0), ("cy", 1)];

/// The name a split's input file has (the inverted index lists these).
pub fn split_name(i: usize) -> String {
    format!("input-{i}")
}

/// Seeded input for one job: `wordcount` or `invertedindex` over 3–8 splits of 10–40 lines
/// of 1–12 words.
pub fn job_input(rng: &mut Rng) -> JobInput {
    let app = if rng.chance(0.5) {
        "wordcount"
    } else {
        "invertedindex"
    };
    let n = rng.between(3, 8);
    let splits = (0..n)
        .map(|_| {
            let mut text = Vec::new();
            for _ in 0..rng.between(10, 40) {
                let words: Vec<&str> = (0..rng.between(1, 12))
                    .map(|_| WORDS[rng.below(WORDS.len() as u64) as usize])
                    .collect();
                text.extend_from_slice(words.join(" ").as_bytes());
                text.push(b'\n');
            }
            text
        })
        .collect();
    JobInput {
        app,
        splits,
        owner: OWNERS[0],
    }
}

fn counts_to_lines(counts: &BTreeMap<Vec<u8>, u64>) -> Vec<u8> {
    let mut out = Vec::new();
    for (word, n) in counts {
        out.extend_from_slice(word);
        out.push(b'\t');
        out.extend_from_slice(n.to_string().as_bytes());
        out.push(b'\n');
    }
    out
}

/// The reference: every part file the job must produce — for `wordcount` each word's
/// count, for `invertedindex` the sorted names of the splits holding each word, joined by
/// commas — counted from the whole input, not through the app.
pub fn expected(input: &JobInput, partitioner: &Partitioner, r: u32) -> Vec<Vec<u8>> {
    let mut counts = vec![BTreeMap::<Vec<u8>, u64>::new(); r as usize];
    let mut docs = vec![BTreeMap::<Vec<u8>, std::collections::BTreeSet<String>>::new(); r as usize];
    for (i, text) in input.splits.iter().enumerate() {
        for word in String::from_utf8_lossy(text).split_whitespace() {
            let p = partitioner.partition(word.as_bytes(), r) as usize;
            *counts[p].entry(word.as_bytes().to_vec()).or_insert(0) += 1;
            docs[p]
                .entry(word.as_bytes().to_vec())
                .or_default()
                .insert(split_name(i));
        }
    }
    if input.app == "wordcount" {
        return counts.iter().map(counts_to_lines).collect();
    }
    docs.iter()
        .map(|words| {
            let mut out = Vec::new();
            for (word, names) in words {
                let names: Vec<&str> = names.iter().map(String::as_str).collect();
                line(&mut out, word, names.join(",").as_bytes());
            }
            out
        })
        .collect()
}

/// Submit job `id` through `node`, as `shoal submit` does: store the splits here and on
/// two more nodes, then propose the job. The job's log index once committed.
pub async fn submit(
    node: Arc<SimNode>,
    id: String,
    input: JobInput,
    at_ms: u64,
) -> Result<u64, String> {
    let mut splits = Vec::new();
    for (i, text) in input.splits.iter().enumerate() {
        let holders = node
            .store_replicated(&split_key(&id, i as u32), Arc::new(text.clone()), 2)
            .await;
        splits.push(SplitInfo {
            index: i as u32,
            name: split_name(i),
            len: text.len() as u64,
            holders,
            files: Vec::new(),
            checksum: Some(shoal_jobs::checksum::of(text)),
            ..Default::default()
        });
    }
    let mut spec = JobSpec::new(
        id.clone(),
        vec!["sim".into()],
        JobKind::App(input.app.into()),
    );
    spec.reducers = REDUCERS;
    spec.max_attempts = 4;
    (spec.user, spec.priority) = (input.owner.0.to_owned(), input.owner.1);
    let cmd = Command::Jobs(cluster::Command::SubmitJob {
        id,
        spec: Box::new(spec),
        splits,
        partitioner: Partitioner::Hash,
        at_ms,
        counters: Default::default(),
    });
    match shoal_node::cluster::propose::propose(&*node, &cmd, Duration::from_secs(20))
        .await
        .map_err(|e| e.to_string())?
    {
        (JobsApplied::Changed, index) => Ok(index),
        (JobsApplied::Ignored(why), _) => Err(why),
    }
}

/// The client: submit `jobs` jobs at seeded times in the first `window`, each to a random
/// node that is up, trying another node (and a new id) when a submission is not
/// acknowledged. Acknowledged jobs are recorded with their reference answers.
pub async fn client(world: Arc<World>, jobs: usize, window: Duration) {
    let mut at: Vec<u64> = (0..jobs)
        .map(|_| world.rng(|r| r.below(window.as_millis() as u64 + 1)))
        .collect();
    at.sort_unstable();
    let mut handles = Vec::new();
    for (j, ms) in at.into_iter().enumerate() {
        let mut input = world.rng(job_input);
        input.owner = OWNERS[j % OWNERS.len()];
        let w = Arc::clone(&world);
        tokio::time::sleep_until(world.start + Duration::from_millis(ms)).await;
        handles.push(tokio::spawn(async move {
            for tryno in 0..20 {
                let n = w.machines.len() as u64;
                let pick = w.rng(|r| r.below(n)) as usize;
                let Some(node) = w.live(pick) else {
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                };
                let id = format!("j-{:06x}-{j:02}-{tryno:02}", w.seed & 0xff_ffff);
                let (tx, rx) = tokio::sync::oneshot::channel();
                let (input2, id2) = (input.clone(), id.clone());
                let node2 = Arc::clone(&node);
                let at_ms = w.now_ms();
                lock(&w.expected)
                    .insert(id.clone(), expected(&input, &Partitioner::Hash, REDUCERS));
                node.spawn(async move {
                    let _ = tx.send(submit(node2, id2, input2, at_ms).await);
                });
                drop(node);
                match rx.await {
                    Ok(Ok(index)) => {
                        w.trace(format!("client: {id} acknowledged at index {index}"));
                        lock(&w.acked).insert(id, Acked { index });
                        return;
                    }
                    Ok(Err(e)) => w.trace(format!("client: {id} refused: {e}")),
                    Err(_) => w.trace(format!("client: {id}: the node crashed")),
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    for h in handles {
        let _ = h.await;
    }
}
