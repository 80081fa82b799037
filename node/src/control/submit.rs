//! Submitting a job, the use case: once the request's spec is checked and its inputs are
//! stored here as splits (`http::submit` parses the request and streams them in), number
//! the splits read in place after them, choose the partitioner (the sort app samples the
//! input), copy the splits and archives to `replication` other nodes, propose `SubmitJob`
//! through the leader, and on a plain worker wait until the leader pushes it back.
//!
//! The invariant: nothing is proposed before every split is stored; a refusal says why, in
//! a kind the caller answers by (`Refused`).

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use shoal_jobs::apps::App;
use shoal_jobs::cluster::{self, NodeId, SplitInfo};
use shoal_jobs::spec::JobSpec;
use shoal_jobs::split::Split;
use tracing::info;

use crate::clock::now_ms;
use crate::cluster::members::peer_of;
use crate::cluster::state::{Command, MAX_COMMAND_BYTES};
use crate::control::jobdir::archive_key;
use crate::control::Control;
use crate::storage::blobs::split_object;
use crate::storage::replication::rotated;

/// Splits copied to other nodes at once.
const PARALLEL_PUSHES: usize = 4;

/// Why a submission was refused, by kind.
#[derive(Debug, thiserror::Error)]
pub enum Refused {
    /// What was sent is wrong (no input, a partitioner that cannot be chosen).
    #[error("{0}")]
    Bad(String),
    /// Over a bound (the job's entry in the log).
    #[error("{0}")]
    TooLarge(String),
    /// The cluster did not take it now (no leader, no quorum): submit again.
    #[error("{0}")]
    Unavailable(String),
    /// This node failed.
    #[error("{0}")]
    Failed(String),
}

/// Why `what` does not fit in one log entry ([`MAX_COMMAND_BYTES`]), and what to do.
pub fn over_log_bound(what: &str) -> String {
    format!(
        "{what} is over {} MiB, the most one job may put in the replicated log; ship big files another way (e.g. as an input, or on every machine)",
        MAX_COMMAND_BYTES >> 20
    )
}

/// A job whose spec was checked and whose uploaded inputs are stored here.
pub struct Upload {
    /// Its spec.
    pub spec: JobSpec,
    /// Its native app, if it is one.
    pub app: Option<Arc<dyn App>>,
    /// The splits stored here.
    pub stored: Vec<SplitInfo>,
    /// The splits read where they lie (other jobs' parts, `node:` and `shared:` inputs),
    /// numbered from 0.
    pub in_place: Vec<SplitInfo>,
    /// When the upload started.
    pub started: std::time::Instant,
}

/// Submit `upload` as job `job`.
pub async fn commit(ctl: &Arc<Control>, job: &str, upload: Upload) -> Result<(), Refused> {
    let Upload {
        mut spec,
        app,
        stored,
        in_place,
        started,
    } = upload;
    if stored.is_empty() && in_place.is_empty() {
        return Err(Refused::Bad("the job has no input".into()));
    }
    // Read in place: numbered after the stored splits, never copied.
    let in_place: Vec<SplitInfo> = in_place
        .into_iter()
        .enumerate()
        .map(|(i, s)| SplitInfo {
            index: (stored.len() + i) as u32,
            ..s
        })
        .collect();

    // The partitioner may sample the input (the sort app's ranges).
    let local: Vec<Split> = stored
        .iter()
        .map(|s| {
            let (key, offset) = split_object(job, s);
            (s, ctl.store.blobs.path(&key).unwrap_or_default(), offset)
        })
        .chain(
            in_place
                .iter()
                .filter_map(|s| Some((s, readable_here(ctl, job, s)?)))
                .map(|(s, (path, offset))| (s, path, offset)),
        )
        .map(|(s, path, offset)| Split {
            index: s.index,
            path,
            name: s.name.clone(),
            offset,
            len: s.len,
            files: s.files.clone(),
        })
        .collect();
    let spec_for_sample = spec.clone();
    let partitioner = tokio::task::spawn_blocking(move || {
        shoal_jobs::local::choose_partitioner(&spec_for_sample, app.as_ref(), &local)
    })
    .await
    .map_err(|e| Refused::Failed(e.to_string()))?
    .map_err(|e| Refused::Bad(e.to_string()))?;

    let bytes: u64 = stored.iter().chain(&in_place).map(|s| s.len).sum();
    let n_splits = stored.len() + in_place.len();
    let mut measured = shoal_jobs::counters::Counters::default();
    measured.add_builtin("submission_upload_ms", started.elapsed().as_millis() as u64);
    let copying = std::time::Instant::now();
    let mut splits = replicate_splits(ctl, job, stored, spec.replication).await;
    replicate_archives(ctl, &mut spec).await;
    measured.add_builtin("submission_copy_ms", copying.elapsed().as_millis() as u64);
    splits.extend(in_place);
    let cmd = Command::Jobs(cluster::Command::SubmitJob {
        id: job.to_owned(),
        spec: Box::new(spec),
        splits,
        partitioner,
        at_ms: now_ms(),
        counters: measured,
    });
    if shoal_net::codec::encode(&cmd).len() > MAX_COMMAND_BYTES {
        return Err(Refused::TooLarge(over_log_bound(
            "the job's entry in the log (spec, shipped files and splits)",
        )));
    }
    ctl.node
        .propose(&cmd, std::time::Duration::from_secs(30))
        .await
        .map_err(|e| Refused::Unavailable(format!("the cluster did not accept the job: {e}")))?;
    // On a plain worker, what a client reads next from this node comes with a push.
    if ctl.node.is_plain_worker()
        && !ctl
            .node
            .pushed
            .wait_for_job(job, std::time::Duration::from_secs(10))
            .await
    {
        tracing::warn!(%job, "the leader has not pushed the job submitted here yet");
    }
    info!(%job, splits = n_splits, bytes, "job accepted");
    Ok(())
}

/// Where this node can read split `s` of `job` itself, if it can: its `node:` or `shared:`
/// file, or the object it lies in (another job's part) when this node holds that.
fn readable_here(ctl: &Control, job: &str, s: &SplitInfo) -> Option<(std::path::PathBuf, u64)> {
    if let Some(at) = ctl.node.in_place_split(s) {
        return at.ok();
    }
    let (key, offset) = split_object(job, s);
    let path = ctl.store.blobs.path(&key)?;
    ctl.store.blobs.contains(&key).then_some((path, offset))
}

/// Copy every object holding splits (segments) to `copies` other nodes; the splits with the
/// nodes that hold them.
/// Small segments travel to a node in batches (one stream for up to
/// [`shoal_net::wire::MAX_BATCH_KEYS`] objects or [`crate::storage::data::BATCH_BYTES`]), large ones a
/// stream each, [`PARALLEL_PUSHES`] at a time.
async fn replicate_splits(
    ctl: &Arc<Control>,
    job: &str,
    mut stored: Vec<SplitInfo>,
    copies: u32,
) -> Vec<SplitInfo> {
    // The objects that hold the splits (their segments), each with its size: where its
    // last split ends. The object's place in this list spreads the copies over the nodes.
    let mut objects: BTreeMap<String, u64> = BTreeMap::new();
    for s in &stored {
        let (key, offset) = split_object(job, s);
        let end = objects.entry(key).or_default();
        *end = (*end).max(offset + s.len);
    }
    let mut by_target: Vec<(NodeId, (String, u64))> = Vec::new();
    let takers = ctl.store.book.copy_takers();
    for (spread, (key, &size)) in objects.iter().enumerate() {
        for t in rotated(&takers, copies, spread as u32) {
            by_target.push((t, (key.clone(), size)));
        }
    }
    let batches = crate::storage::data::batches(by_target, |&(_, size)| size);
    let mut pushed: Vec<(NodeId, Vec<String>)> = futures::stream::iter(batches)
        .map(|(target, batch)| {
            let ctl = Arc::clone(ctl);
            let keys: Vec<String> = batch.into_iter().map(|(key, _)| key).collect();
            let items: Option<Vec<(String, std::path::PathBuf)>> = keys
                .iter()
                .map(|key| ctl.store.blobs.path(key).map(|p| (key.clone(), p)))
                .collect();
            async move {
                let Some((peer, items)) = peer_of(&ctl.node, target).zip(items) else {
                    return (target, Vec::new());
                };
                match crate::storage::data::push_or_link_files(&ctl.store, peer, &items).await {
                    Ok(_) => (target, keys),
                    Err(e) => {
                        tracing::warn!(segments = items.len(), error = %e, "copying input to another node failed");
                        (target, Vec::new())
                    }
                }
            }
        })
        .buffer_unordered(PARALLEL_PUSHES)
        .collect()
        .await;
    pushed.sort_by_key(|p| p.0);
    let mut holders: BTreeMap<String, Vec<NodeId>> = BTreeMap::new();
    for (target, keys) in pushed {
        for key in keys {
            holders.entry(key).or_default().push(target);
        }
    }
    for s in stored.iter_mut() {
        let copies = holders.get(&split_object(job, s).0);
        s.holders = std::iter::once(ctl.node.id)
            .chain(copies.into_iter().flatten().copied())
            .collect();
    }
    stored
}

/// Copy each archive to `replication` other nodes, and name its holders in the spec: this
/// node and those that took a copy.
async fn replicate_archives(ctl: &Arc<Control>, spec: &mut JobSpec) {
    let copies = spec.replication;
    let takers = ctl.store.book.copy_takers();
    for (i, a) in spec.archives.iter_mut().enumerate() {
        let key = archive_key(&a.digest);
        let Some(path) = ctl.store.blobs.path(&key) else {
            continue;
        };
        let targets = rotated(&takers, copies, i as u32);
        // This node and those the copies reached.
        a.holders = crate::storage::replication::replicate(&ctl.store, &key, &path, &targets).await;
    }
}
