//! The HTTP API every node serves (JSON under `/api/v1/`). Errors are `{"error": "…"}` with a
//! fitting status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use shoal_jobs::cluster::{self, Applied, JobState};

use crate::cluster::node::with_jobs;
use crate::control::Control;
use crate::http::error::error;
use crate::http::view::cluster_view;

/// The API's routes.
pub fn router(ctl: Arc<Control>) -> Router {
    Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/metrics", get(crate::http::metrics::metrics))
        .route("/", get(dashboard))
        .route(
            "/api/v1/jobs",
            get(jobs)
                .post(crate::http::submit::submit)
                .layer(DefaultBodyLimit::disable()),
        )
        .route("/api/v1/jobs/{id}", get(job).delete(kill))
        .route("/api/v1/jobs/{id}/output", get(output_list))
        .route("/api/v1/jobs/{id}/output/{name}", get(output_part))
        .route("/api/v1/jobs/{id}/logs", get(crate::http::logs::index))
        .route(
            "/api/v1/jobs/{id}/logs/setup/{node}",
            get(crate::http::logs::setup),
        )
        .route(
            "/api/v1/jobs/{id}/logs/{task}/{attempt}",
            get(crate::http::logs::attempt),
        )
        .route(
            "/api/v1/nodes/{node}/drain",
            post(crate::http::nodes::drain),
        )
        .route(
            "/api/v1/nodes/{node}/undrain",
            post(crate::http::nodes::undrain),
        )
        .route(
            "/api/v1/nodes/{node}/remove",
            post(crate::http::nodes::remove),
        )
        .fallback(not_found)
        .with_state(ctl)
}

/// The dashboard: one page, no external assets; it polls the API every second.
async fn dashboard() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        include_str!("dashboard.html"),
    )
        .into_response()
}

async fn cluster(State(ctl): State<Arc<Control>>) -> Response {
    crate::http::view::gather_heartbeats(&ctl).await;
    Json(cluster_view(&ctl)).into_response()
}

/// `?tasks=false`: jobs without their task tables.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    tasks: Option<bool>,
}

async fn jobs(
    State(ctl): State<Arc<Control>>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let with_tasks = q.tasks.unwrap_or(true);
    let list = with_jobs(&ctl.node, |jobs| {
        crate::http::jobs_view::jobs_view(jobs, with_tasks)
    })
    .unwrap_or_default();
    Json(list).into_response()
}

/// `?wait=MS`: answer once the job's progress changes or it ends, or after MS (at most 30 s).
/// `?tasks=false`: without the task table.
#[derive(Debug, serde::Deserialize)]
struct WaitQuery {
    wait: Option<u64>,
    tasks: Option<bool>,
}

/// What a waiting client is told about: state and task counts.
fn progress_key(ctl: &Control, id: &str) -> Option<(JobState, usize, usize, usize, usize)> {
    with_jobs(&ctl.node, |jobs| {
        jobs.jobs.get(id).map(|j| {
            let count =
                |ts: &[shoal_jobs::cluster::Task], s| ts.iter().filter(|t| t.state == s).count();
            use shoal_jobs::cluster::TaskState::{Done, Running};
            (
                j.state,
                count(&j.maps, Done),
                count(&j.maps, Running),
                count(&j.reduces, Done),
                count(&j.reduces, Running),
            )
        })
    })
    .flatten()
}

async fn job(
    State(ctl): State<Arc<Control>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WaitQuery>,
) -> Response {
    if let (Some(ms), Some(h)) = (q.wait, ctl.node.raft.get()) {
        use shoal_raft::WatchReceiver;
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(ms.min(30_000));
        let mut changes = h.raft.metrics();
        let first = progress_key(&ctl, &id);
        while let Some(k) = first {
            if k.0 != JobState::Running {
                break;
            }
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                break;
            }
            if progress_key(&ctl, &id) != first {
                break;
            }
        }
    }
    match with_jobs(&ctl.node, |jobs| {
        jobs.jobs
            .get(&id)
            .map(|j| crate::http::jobs_view::job_view(j, q.tasks.unwrap_or(true)))
    })
    .flatten()
    {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no job {id:?}")),
    }
}

async fn kill(State(ctl): State<Arc<Control>>, Path(id): Path<String>) -> Response {
    let state = with_jobs(&ctl.node, |jobs| jobs.jobs.get(&id).map(|j| j.state)).flatten();
    match state {
        None => return error(StatusCode::NOT_FOUND, &format!("no job {id:?}")),
        Some(JobState::Running) => {}
        Some(s) => {
            return error(
                StatusCode::CONFLICT,
                &format!("job {id} has already ended ({})", state_name(s)),
            )
        }
    }
    let cmd = crate::cluster::state::Command::Jobs(cluster::Command::KillJob {
        job: id.clone(),
        at_ms: crate::clock::now_ms(),
    });
    match ctl
        .node
        .propose(&cmd, std::time::Duration::from_secs(10))
        .await
    {
        Ok(Applied::Changed) => {
            Json(serde_json::json!({ "id": id, "state": "killed" })).into_response()
        }
        Ok(Applied::Ignored(why)) => error(StatusCode::CONFLICT, &why),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

fn state_name(s: JobState) -> &'static str {
    match s {
        JobState::Running => "running",
        JobState::Succeeded => "succeeded",
        JobState::Failed => "failed",
        JobState::Killed => "killed",
    }
}

/// The part files of a succeeded job.
fn parts_of(ctl: &Control, id: &str) -> Result<Vec<cluster::PartRef>, (StatusCode, String)> {
    let found = with_jobs(&ctl.node, |jobs| {
        jobs.jobs.get(id).map(|j| (j.state, j.parts()))
    })
    .flatten();
    match found {
        None => Err((StatusCode::NOT_FOUND, format!("no job {id:?}"))),
        Some((JobState::Succeeded, parts)) => Ok(parts),
        Some((s, _)) => Err((
            StatusCode::CONFLICT,
            format!("job {id} has no output: it is {}", state_name(s)),
        )),
    }
}

/// The header that carries a part's checksum: `crc32c=` and eight hex digits.
pub const CHECKSUM_HEADER: &str = "x-shoal-checksum";

async fn output_list(State(ctl): State<Arc<Control>>, Path(id): Path<String>) -> Response {
    match parts_of(&ctl, &id) {
        Ok(parts) => {
            let list: Vec<_> = parts
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "name": p.name,
                        "size": p.size,
                        "checksum": p.checksum.map(|c| format!("crc32c={c:08x}")),
                        "holders": p.holders.iter().map(|&n| crate::cluster::identity::hex(n)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(serde_json::json!({ "id": id, "parts": list })).into_response()
        }
        Err((status, msg)) => error(status, &msg),
    }
}

/// `?try=N`: the client's Nth try at a part; each try starts at another holder.
#[derive(Debug, Default, serde::Deserialize)]
struct Try {
    #[serde(default, rename = "try")]
    n: usize,
}

async fn output_part(
    State(ctl): State<Arc<Control>>,
    Path((id, name)): Path<(String, String)>,
    Query(tried): Query<Try>,
) -> Response {
    let parts = match parts_of(&ctl, &id) {
        Ok(p) => p,
        Err((status, msg)) => return error(status, &msg),
    };
    let Some(part) = parts.into_iter().find(|p| p.name == name) else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("job {id} has no part {name:?}"),
        );
    };
    let key = crate::storage::blobs::part_key(&id, part.index, part.attempt);
    // The holders this node can read from: itself when it has a copy, and the connected.
    let connected = ctl.node.peers.hellos();
    let mut sources: Vec<u64> = part
        .holders
        .iter()
        .copied()
        .filter(|&h| {
            if h == ctl.node.id {
                ctl.store.blobs.contains(&key)
            } else {
                connected.iter().any(|c| c.node_id == h)
            }
        })
        .collect();
    if sources.is_empty() {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no node holding {name} of job {id} is reachable"),
        );
    }
    let first = tried.n % sources.len();
    sources.rotate_left(first);
    let from = sources[0];
    let body: futures::stream::BoxStream<'static, std::io::Result<Vec<u8>>> = if from == ctl.node.id
    {
        match ctl.store.blobs.open_read(&key) {
            Ok((file, _)) => file_stream(file).boxed(),
            Err(e) => {
                return error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &format!("reading {name} of job {id}: {e}"),
                )
            }
        }
    } else {
        let Some(peer) = crate::cluster::members::peer_of(&ctl.node, from) else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("node {from:016x} holding {name} of job {id} is not a member"),
            );
        };
        crate::storage::data::fetch_stream(Arc::clone(&ctl.store), peer, key)
            .map(|r| r.map_err(std::io::Error::other))
            .boxed()
    };
    let what = format!("{name} of job {id} (the copy on node {from:016x})");
    let body = checked(body, part.size, part.checksum, what);
    let mut headers = vec![
        (header::CONTENT_TYPE, "application/octet-stream".to_string()),
        (header::CONTENT_LENGTH, part.size.to_string()),
    ];
    if let Some(c) = part.checksum {
        headers.push((
            header::HeaderName::from_static(CHECKSUM_HEADER),
            format!("crc32c={c:08x}"),
        ));
    }
    let mut resp = Body::from_stream(body).into_response();
    for (name, value) in headers {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            resp.headers_mut().insert(name, v);
        }
    }
    resp
}

/// A file's bytes in chunks.
fn file_stream(file: std::fs::File) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    let file = tokio::fs::File::from_std(file);
    futures::stream::unfold(file, |mut f| async move {
        use tokio::io::AsyncReadExt;
        let mut buf = vec![0u8; crate::storage::data::CHUNK];
        match f.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(buf), f))
            }
            Err(e) => Some((Err(e), f)),
        }
    })
}

/// `body`, checked as it passes against the size and checksum the job table recorded: a copy
/// that differs ends in an error instead of its last bytes being taken as the part (the
/// client then tries another holder).
fn checked(
    body: futures::stream::BoxStream<'static, std::io::Result<Vec<u8>>>,
    size: u64,
    want: Option<u32>,
    what: String,
) -> impl futures::Stream<Item = std::io::Result<Vec<u8>>> {
    let state = (body, shoal_jobs::checksum::Running::default(), 0u64, false);
    futures::stream::unfold(state, move |(mut body, mut sum, mut n, done)| {
        let what = what.clone();
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(b)) => {
                    sum.update(&b);
                    n += b.len() as u64;
                    Some((Ok(b), (body, sum, n, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, sum, n, true))),
                None if n == size && want.is_none_or(|w| w == sum.value()) => None,
                None => {
                    let why = format!(
                        "{what} is corrupt: {n} bytes with checksum {:08x}, {size} bytes with {} recorded",
                        sum.value(),
                        want.map_or("none".into(), |w| format!("{w:08x}"))
                    );
                    tracing::warn!(error = %why, "a corrupt part copy was not served");
                    Some((Err(std::io::Error::other(why)), (body, sum, n, true)))
                }
            }
        }
    })
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}
