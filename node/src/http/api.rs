//! The HTTP API every node serves (JSON under `/api/v1/`). Errors are `{"error": "…"}` with a
//! fitting status.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use futures::StreamExt;
use shoal_jobs::cluster::{self, Applied, JobState};

use crate::cluster::node::with_jobs;
use crate::cluster::node::Node;
use crate::http::error::error;
use crate::http::view::cluster_view;

/// The API's routes.
pub fn router(node: Arc<Node>) -> Router {
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
        .fallback(not_found)
        .with_state(node)
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

async fn cluster(State(node): State<Arc<Node>>) -> Response {
    Json(cluster_view(&node)).into_response()
}

/// `?tasks=false`: jobs without their task tables.
#[derive(Debug, serde::Deserialize)]
struct ListQuery {
    tasks: Option<bool>,
}

async fn jobs(
    State(node): State<Arc<Node>>,
    axum::extract::Query(q): axum::extract::Query<ListQuery>,
) -> Response {
    let with_tasks = q.tasks.unwrap_or(true);
    let list = with_jobs(&node, |jobs| {
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
fn progress_key(node: &Node, id: &str) -> Option<(JobState, usize, usize, usize, usize)> {
    with_jobs(node, |jobs| {
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
    State(node): State<Arc<Node>>,
    Path(id): Path<String>,
    axum::extract::Query(q): axum::extract::Query<WaitQuery>,
) -> Response {
    if let (Some(ms), Some(h)) = (q.wait, node.raft.get()) {
        use shoal_raft::WatchReceiver;
        let deadline =
            tokio::time::Instant::now() + std::time::Duration::from_millis(ms.min(30_000));
        let mut changes = h.raft.metrics();
        let first = progress_key(&node, &id);
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
            if progress_key(&node, &id) != first {
                break;
            }
        }
    }
    match with_jobs(&node, |jobs| {
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

async fn kill(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    let state = with_jobs(&node, |jobs| jobs.jobs.get(&id).map(|j| j.state)).flatten();
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
    match node.propose(&cmd, std::time::Duration::from_secs(10)).await {
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

/// The part files of a succeeded job: `(partition, size, holders)`.
type Parts = Vec<(u32, u64, Vec<u64>)>;

fn parts_of(node: &Node, id: &str) -> Result<Parts, (StatusCode, String)> {
    let found = with_jobs(node, |jobs| {
        jobs.jobs.get(id).map(|j| {
            (
                j.state,
                j.reduces
                    .iter()
                    .map(|t| {
                        (
                            t.index,
                            t.output_sizes.first().copied().unwrap_or(0),
                            t.holders.clone(),
                        )
                    })
                    .collect::<Parts>(),
            )
        })
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

async fn output_list(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    match parts_of(&node, &id) {
        Ok(parts) => {
            let list: Vec<_> = parts
                .iter()
                .map(|(p, size, holders)| {
                    serde_json::json!({
                        "name": shoal_jobs::task::part_name(*p),
                        "size": size,
                        "holders": holders.iter().map(|&n| crate::cluster::identity::hex(n)).collect::<Vec<_>>(),
                    })
                })
                .collect();
            Json(serde_json::json!({ "id": id, "parts": list })).into_response()
        }
        Err((status, msg)) => error(status, &msg),
    }
}

async fn output_part(
    State(node): State<Arc<Node>>,
    Path((id, name)): Path<(String, String)>,
) -> Response {
    let parts = match parts_of(&node, &id) {
        Ok(p) => p,
        Err((status, msg)) => return error(status, &msg),
    };
    let Some((p, size, holders)) = parts
        .into_iter()
        .find(|(p, _, _)| shoal_jobs::task::part_name(*p) == name)
    else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("job {id} has no part {name:?}"),
        );
    };
    let key = crate::storage::blobs::part_key(&id, p);
    let ok = |body: Body| {
        (
            [
                (header::CONTENT_TYPE, "application/octet-stream".to_string()),
                (header::CONTENT_LENGTH, size.to_string()),
            ],
            body,
        )
            .into_response()
    };
    if let Ok((file, _)) = node.blobs.open_read(&key) {
        let file = tokio::fs::File::from_std(file);
        let stream = futures::stream::unfold(file, |mut f| async move {
            use tokio::io::AsyncReadExt;
            let mut buf = vec![0u8; crate::storage::data::CHUNK];
            match f.read(&mut buf).await {
                Ok(0) => None,
                Ok(n) => {
                    buf.truncate(n);
                    Some((Ok::<_, std::io::Error>(buf), f))
                }
                Err(e) => Some((Err(e), f)),
            }
        });
        return ok(Body::from_stream(stream));
    }
    // Another node holds it: stream it through this one.
    let connected = node.peers.hellos();
    let Some(peer) = holders
        .iter()
        .filter(|&&h| h != node.id)
        .filter(|&&h| connected.iter().any(|c| c.node_id == h))
        .find_map(|&h| crate::cluster::members::peer_of(&node, h))
    else {
        return error(
            StatusCode::SERVICE_UNAVAILABLE,
            &format!("no node holding {name} of job {id} is reachable"),
        );
    };
    let stream = crate::storage::data::fetch_stream(Arc::clone(&node), peer, key)
        .map(|r| r.map_err(std::io::Error::other));
    ok(Body::from_stream(stream))
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}
