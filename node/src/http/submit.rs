//! `POST /api/v1/jobs`: accept a job on any node. The multipart body is a `spec` part first
//! (the job spec as CBOR, `application/cbor`, or JSON), then one `input` part per input file
//! (its filename is the name the mapper sees). This streams each input into line-aligned
//! splits in the node's store, then hands the job to the use case (`control::submit`), which
//! copies the splits to `replication` other nodes and proposes `SubmitJob` (through the
//! leader); it answers `201 {"id"}`. Inputs named `shoal://JOB` are the part files of a
//! finished job: each part one split read where the cluster stores it, or, when the parts
//! do not make splits (`reads_in_place`), read from wherever they live and cut here.
//!
//! Bounds, each a 413 naming it: the spec part (shipped files included) and the whole log
//! entry at most [`MAX_COMMAND_BYTES`], at most [`MAX_INPUT_FILES`] input files, and at most
//! [`cluster::MAX_SPLITS`] splits, checked as the splits are cut.
//!
//! The invariant: nothing is proposed before every split is stored, and a request rejected
//! for bad input leaves nothing behind on this node.

use std::sync::Arc;

use axum::extract::{Multipart, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shoal_jobs::apps::{App, PartitionKind};
use shoal_jobs::cluster::{self, JobState, PartOf, PartRef, SplitInfo};
use shoal_jobs::spec::{InputFormat, JobSpec};

use crate::clock::now_ms;
use crate::cluster::members::peer_of;
use crate::cluster::state::MAX_COMMAND_BYTES;
use crate::control::jobdir::archive_key;
use crate::control::submit::{over_log_bound, Refused, Upload};
use crate::control::Control;
use crate::http::error::error;
use crate::http::splitter::{Splitter, TooManySplits};
use crate::storage::blobs::part_key;

/// Prefix of an input that names a finished job's output.
pub const CHAIN_PREFIX: &str = "shoal://";

/// A new job id: `j-` and hex digits that sort by submission time.
pub fn new_job_id() -> String {
    format!("j-{:011x}{:04x}", now_ms(), rand::random::<u16>())
}

/// A rejected submission: its status and message.
struct Rejected(StatusCode, String);

/// A part's bytes, or `None` once they pass `cap` (without reading the rest). The part is
/// dropped on return, as the next one can only be read after.
async fn read_capped(
    mut part: axum::extract::multipart::Field<'_>,
    cap: usize,
) -> Result<Option<Vec<u8>>, Rejected> {
    let mut bytes = Vec::new();
    while let Some(chunk) = part
        .chunk()
        .await
        .map_err(|e| bad(format!("reading the spec: {e}")))?
    {
        bytes.extend_from_slice(&chunk);
        if bytes.len() > cap {
            return Ok(None);
        }
    }
    Ok(Some(bytes))
}

/// Most input files (multipart parts) one upload may carry.
pub const MAX_INPUT_FILES: usize = 1_000_000;

/// Why the splitter could not take the input: 413 over the split bound, 507 on a full
/// disk, else 500.
fn not_stored(e: std::io::Error) -> Rejected {
    let status = if e.get_ref().is_some_and(|i| i.is::<TooManySplits>()) {
        StatusCode::PAYLOAD_TOO_LARGE
    } else if e.kind() == std::io::ErrorKind::StorageFull {
        StatusCode::INSUFFICIENT_STORAGE
    } else {
        StatusCode::INTERNAL_SERVER_ERROR
    };
    Rejected(status, format!("storing the input: {e}"))
}

/// 507 while this node's disk is under its reserve (`--min-free-mb`).
fn disk_ok(ctl: &Control) -> Result<(), Rejected> {
    ctl.store.disk_ok().map_err(|e| {
        Rejected(
            StatusCode::INSUFFICIENT_STORAGE,
            format!(
                "node {:016x} takes no upload now: {e}; submit to another node",
                ctl.node.id
            ),
        )
    })
}

/// 413: `what` is over [`MAX_COMMAND_BYTES`].
fn too_large(what: &str) -> Rejected {
    Rejected(StatusCode::PAYLOAD_TOO_LARGE, over_log_bound(what))
}

fn bad(msg: impl Into<String>) -> Rejected {
    Rejected(StatusCode::BAD_REQUEST, msg.into())
}

/// The handler.
pub async fn submit(State(ctl): State<Arc<Control>>, mut multipart: Multipart) -> Response {
    if ctl.node.raft.get().is_none() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has not joined a cluster yet",
        );
    }
    let job = new_job_id();
    match accept(&ctl, &job, &mut multipart).await {
        Ok(()) => (StatusCode::CREATED, Json(serde_json::json!({ "id": job }))).into_response(),
        Err(Rejected(status, msg)) => {
            let blobs = ctl.store.blobs.clone();
            let j = job.clone();
            let _ = tokio::task::spawn_blocking(move || blobs.remove_job(&j)).await;
            drain(&mut multipart).await;
            error(status, &msg)
        }
    }
}

/// Read what is left of a refused upload, discarding it, for at most [`DRAIN`]: a client
/// still sending when the answer comes and the connection closes may see the reset before
/// the answer, and report a broken connection instead of why the job was refused.
async fn drain(mp: &mut Multipart) {
    let _ = tokio::time::timeout(DRAIN, async {
        while let Ok(Some(mut field)) = mp.next_field().await {
            while let Ok(Some(_)) = field.chunk().await {}
        }
    })
    .await;
}

/// How long a refused upload is read on, at most, before the answer.
const DRAIN: std::time::Duration = std::time::Duration::from_secs(30);

async fn accept(ctl: &Arc<Control>, job: &str, mp: &mut Multipart) -> Result<(), Rejected> {
    let started = std::time::Instant::now();
    let first = mp
        .next_field()
        .await
        .map_err(|e| bad(format!("a malformed multipart body: {e}")))?
        .ok_or_else(|| bad("the body has no `spec` part"))?;
    if first.name() != Some("spec") {
        return Err(bad("the first part must be `spec`"));
    }
    let cbor = first.content_type() == Some("application/cbor");
    // The spec (shipped files included) goes into the replicated log whole: bounded here,
    // before it is all read.
    let bytes = read_capped(first, MAX_COMMAND_BYTES)
        .await?
        .ok_or_else(|| too_large("the job's spec (its shipped files included)"))?;
    let spec: JobSpec = if cbor {
        shoal_net::codec::decode(&bytes).map_err(|e| bad(format!("a malformed spec: {e}")))?
    } else {
        serde_json::from_slice(&bytes).map_err(|e| bad(format!("a malformed spec: {e}")))?
    };
    spec.validate().map_err(|e| bad(e.to_string()))?;
    let app = match &spec.kind {
        shoal_jobs::spec::JobKind::App(name) => {
            Some(shoal_jobs::apps::by_name(name, &spec.env).map_err(|e| bad(e.to_string()))?)
        }
        _ => None,
    };
    let (chained_in_place, chained): (Vec<Chained>, Vec<Chained>) = chained_inputs(ctl, &spec)?
        .into_iter()
        .partition(|c| reads_in_place(ctl, &spec, app.as_ref(), c));
    // Other jobs' parts read where they are stored, then the `node:` and `shared:` inputs.
    let mut in_place: Vec<SplitInfo> = chained_in_place.iter().flat_map(Chained::splits).collect();
    in_place.extend(
        crate::http::inplace::in_place_splits(ctl, &spec)
            .await
            .map_err(|(status, why)| Rejected(status, why))?,
    );
    let uploads = spec
        .inputs
        .iter()
        .any(|i| shoal_jobs::inplace::in_place(i).is_none());
    if uploads {
        disk_ok(ctl)?;
    }

    let whole_files = spec.input_format == InputFormat::WholeFiles;
    let mut splitter = Splitter::new(
        &ctl.store.blobs,
        job,
        spec.split_size,
        spec.combine_files,
        whole_files,
    );
    let archives_got = receive_parts(ctl, &spec, mp, &mut splitter).await?;
    for c in &chained {
        for part in &c.parts {
            splitter.start_file(&part.name).map_err(not_stored)?;
            read_part(ctl, &c.source, part, &mut splitter).await?;
            splitter.end_file().map_err(not_stored)?;
        }
    }
    if let Some(a) = spec
        .archives
        .iter()
        .find(|a| !archives_got.contains(&a.name))
    {
        return Err(bad(format!("archive {} was not sent with the job", a.name)));
    }
    let stored = splitter.finish().await.map_err(not_stored)?;
    if stored.len() + in_place.len() > cluster::MAX_SPLITS {
        return Err(not_stored(std::io::Error::other(TooManySplits)));
    }
    let upload = Upload {
        spec,
        app,
        stored,
        in_place,
        started,
    };
    crate::control::submit::commit(ctl, job, upload)
        .await
        .map_err(|refused| {
            let status = match &refused {
                Refused::Bad(_) => StatusCode::BAD_REQUEST,
                Refused::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
                Refused::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
                Refused::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
            };
            Rejected(status, refused.to_string())
        })
}

/// Take the request's `archive` parts, then its `input` parts into `splitter`: the names of
/// the archives received.
async fn receive_parts(
    ctl: &Arc<Control>,
    spec: &JobSpec,
    mp: &mut Multipart,
    splitter: &mut Splitter<'_>,
) -> Result<Vec<String>, Rejected> {
    let mut next_check = 0u64;
    let mut archives_got: Vec<String> = Vec::new();
    while let Some(mut field) = mp
        .next_field()
        .await
        .map_err(|e| bad(format!("a malformed multipart body: {e}")))?
    {
        if field.name() == Some("archive") && splitter.files_seen == 0 {
            let name = field.file_name().unwrap_or("").to_owned();
            if archives_got.contains(&name) {
                return Err(bad(format!("archive {name:?} was sent twice")));
            }
            archives_got.push(receive_archive(ctl, spec, field).await?);
            continue;
        }
        if field.name() != Some("input") {
            return Err(bad(format!(
                "unexpected part {:?}; parts are `spec`, then `archive`s, then `input`s",
                field.name().unwrap_or("")
            )));
        }
        if splitter.files_seen >= MAX_INPUT_FILES {
            return Err(Rejected(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("more than {MAX_INPUT_FILES} input files in one job"),
            ));
        }
        let name = field.file_name().unwrap_or("input").to_owned();
        splitter.start_file(&name).map_err(not_stored)?;
        while let Some(chunk) = field
            .chunk()
            .await
            .map_err(|e| bad(format!("reading input {name:?}: {e}")))?
        {
            splitter.write(&chunk).map_err(not_stored)?;
            // The reserve, again every 64 MiB taken.
            if splitter.bytes >= next_check {
                disk_ok(ctl)?;
                next_check = splitter.bytes + (64 << 20);
            }
        }
        splitter.end_file().map_err(not_stored)?;
    }
    Ok(archives_got)
}

/// Store an `archive` part under its digest, checking it is the archive the spec names
/// (size and SHA-256): a part of another size or digest is refused and not kept. Returns
/// its name.
async fn receive_archive(
    ctl: &Control,
    spec: &JobSpec,
    mut field: axum::extract::multipart::Field<'_>,
) -> Result<String, Rejected> {
    let name = field.file_name().unwrap_or("").to_owned();
    let Some(a) = spec.archives.iter().find(|a| a.name == name) else {
        return Err(bad(format!(
            "an archive part named {name:?} that the spec does not name"
        )));
    };
    let key = archive_key(&a.digest);
    let mut w = ctl.store.blobs.create(&key).map_err(not_stored)?;
    let mut hasher = shoal_jobs::archive::Hasher::default();
    let mut len = 0u64;
    let mut next_check = 0u64;
    while let Some(chunk) = field
        .chunk()
        .await
        .map_err(|e| bad(format!("reading archive {name:?}: {e}")))?
    {
        len += chunk.len() as u64;
        if len > a.len {
            return Err(bad(format!(
                "archive {name:?} is longer than the {} bytes the spec says",
                a.len
            )));
        }
        // The reserve, before the first byte and again every 64 MiB taken.
        if len >= next_check {
            disk_ok(ctl)?;
            next_check = len + (64 << 20);
        }
        hasher.update(&chunk);
        std::io::Write::write_all(&mut w, &chunk).map_err(not_stored)?;
    }
    let (digest, got) = hasher.finish();
    if got != a.len || digest != a.digest {
        return Err(bad(format!(
            "archive {name:?} is not the one the spec names ({got} bytes with SHA-256 {digest}; the spec says {} bytes, {})",
            a.len, a.digest
        )));
    }
    tokio::task::spawn_blocking(move || w.commit())
        .await
        .map_err(|e| Rejected(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(not_stored)?;
    Ok(name)
}

/// A `shoal://JOB` input: the job, its part files, and whether they are compressed.
struct Chained {
    source: String,
    parts: Vec<PartRef>,
    compressed: bool,
}

impl Chained {
    /// Its parts as splits read where they are stored, numbered later; empty parts hold no
    /// line and make no split.
    fn splits(&self) -> impl Iterator<Item = SplitInfo> + '_ {
        self.parts.iter().filter(|p| p.size > 0).map(|p| SplitInfo {
            name: p.name.clone(),
            len: p.size,
            holders: p.holders.clone(),
            checksum: p.checksum,
            part_of: Some(PartOf {
                job: self.source.clone(),
                part: p.index,
                attempt: p.attempt,
            }),
            ..SplitInfo::default()
        })
    }
}

/// Whether the job reads `c`'s part files where the cluster stores them, each part one
/// split, rather than having this node read them and cut them into splits of its own: when
/// each part is a split's size (at most twice `--split-size`; any size for whole files),
/// uncompressed, not to be packed together (`--combine-files`), every member reads such
/// splits (protocol 1.7), and, for a job that samples its input to choose its partitioner,
/// this node holds a part to sample.
fn reads_in_place(ctl: &Control, spec: &JobSpec, app: Option<&Arc<dyn App>>, c: &Chained) -> bool {
    let whole = spec.input_format == InputFormat::WholeFiles;
    let sized = |p: &PartRef| whole || p.size <= spec.split_size.saturating_mul(2);
    let samples = spec.partitioner.is_none()
        && spec.reducers > 1
        && app.is_some_and(|a| a.partition_kind() == PartitionKind::SampledRanges);
    let sample_here = || {
        c.parts.iter().any(|p| {
            ctl.store
                .blobs
                .contains(&part_key(&c.source, p.index, p.attempt))
        })
    };
    !spec.combine_files
        && !c.compressed
        && c.parts.iter().all(sized)
        && all_members_speak(ctl, 1, 7)
        && (!samples || sample_here())
}

/// Whether every other member is heard now, speaking protocol `major`.`minor` or later.
fn all_members_speak(ctl: &Control, major: u32, minor: u32) -> bool {
    let spoken = ctl.node.peers.by_node(|h| h.build.protocol);
    crate::cluster::members::member_ids(&ctl.node)
        .into_iter()
        .filter(|&id| id != ctl.node.id)
        .all(|id| spoken.get(&id).is_some_and(|p| p.at_least(major, minor)))
}

/// The `shoal://JOB` inputs: each job's part files.
fn chained_inputs(ctl: &Control, spec: &JobSpec) -> Result<Vec<Chained>, Rejected> {
    let mut out = Vec::new();
    for input in spec.inputs.iter() {
        let Some(source) = input.strip_prefix(CHAIN_PREFIX) else {
            continue;
        };
        let source = source.trim_end_matches('/').to_owned();
        let parts = crate::cluster::node::with_jobs(&ctl.node, |jobs| {
            let j = jobs
                .jobs
                .get(&source)
                .ok_or_else(|| bad(format!("--input {input}: no job {source:?}")))?;
            if j.state != JobState::Succeeded {
                return Err(bad(format!(
                    "--input {input}: job {source} has not succeeded (it is {:?})",
                    j.state
                )));
            }
            Ok((j.parts(), j.spec.compress_output.is_some()))
        })
        .ok_or_else(|| bad("this node has no job table yet"))??;
        out.push(Chained {
            source,
            parts: parts.0,
            compressed: parts.1,
        });
    }
    Ok(out)
}

/// Feed part `part` of job `source` into the splitter, from this node's store (a copy that
/// checks out) or from a holder (checked as it passes: a corrupt copy refuses the job).
async fn read_part(
    ctl: &Arc<Control>,
    source: &str,
    part: &PartRef,
    splitter: &mut Splitter<'_>,
) -> Result<(), Rejected> {
    let key = &part_key(source, part.index, part.attempt);
    let what = format!("part {} of job {source}", part.index);
    let local_ok = match ctl
        .store
        .blobs
        .path(key)
        .filter(|_| ctl.store.blobs.contains(key))
    {
        None => false,
        Some(path) => {
            let verified =
                crate::storage::blobs::verified(path, 0, part.size, part.checksum, what.clone())
                    .await;
            if let Err(e) = &verified {
                tracing::warn!(error = %e, "the local copy of a chained input is unusable");
            }
            verified.is_ok()
        }
    };
    if let Some((mut f, _)) = ctl.store.blobs.open_read(key).ok().filter(|_| local_ok) {
        let mut buf = vec![0u8; crate::storage::data::CHUNK];
        loop {
            let n = std::io::Read::read(&mut f, &mut buf)
                .map_err(|e| bad(format!("reading {key}: {e}")))?;
            if n == 0 {
                return Ok(());
            }
            splitter.write(&buf[..n]).map_err(not_stored)?;
        }
    }
    let mut last = "no node holds it".to_string();
    for &h in part.holders.iter().filter(|&&h| h != ctl.node.id) {
        let Some(peer) = peer_of(&ctl.node, h) else {
            continue;
        };
        let mut written = 0u64;
        let mut sum = shoal_jobs::checksum::Running::default();
        let mut refused = None;
        let got = crate::storage::data::fetch(&ctl.store, peer, key, |b| {
            written += b.len() as u64;
            sum.update(b);
            splitter.write(b).map_err(|e| {
                let why = e.to_string();
                refused = Some(e);
                why
            })
        })
        .await;
        if let Some(e) = refused {
            return Err(not_stored(e));
        }
        match got {
            Ok(_) if written == part.size && part.checksum.is_none_or(|c| c == sum.value()) => {
                return Ok(())
            }
            Ok(_) => {
                return Err(Rejected(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "{what}: the copy on node {h:016x} is corrupt ({written} bytes, checksum {:08x}); submit again to read another",
                        sum.value()
                    ),
                ))
            }
            // Part of the object is in the splits already: another copy cannot resume it.
            Err(e) if written > 0 => {
                return Err(Rejected(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!("{key} broke off while being read: {e}"),
                ))
            }
            Err(e) => last = e.to_string(),
        }
    }
    Err(Rejected(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{key} could not be read: {last}"),
    ))
}
