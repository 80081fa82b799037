//! Logs after the fact: `GET /api/v1/jobs/{id}/logs` lists a job's attempts (and, for a job
//! with `--archive`/`--setup`, the setups of the nodes that ran them), each with the address
//! of its log; `GET /api/v1/jobs/{id}/logs/{task}/{attempt}` and
//! `GET /api/v1/jobs/{id}/logs/setup/{node}` answer a log's text, read on whichever node
//! kept it — this one, or another over `/shoal/data/1`. Logs live on the node that ran the
//! attempt until the job is forgotten (`--retain-jobs`); a log on a node that is gone is
//! answered 503 naming the ctl.node.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use shoal_jobs::cluster::{Job, NodeId, TaskKind};

use crate::cluster::identity::hex;
use crate::cluster::node::with_jobs;
use crate::control::Control;
use crate::http::error::error;
use crate::storage::blobs::{attempt_log_key, setup_log_key};

/// Most bytes of one log answered: each process of an attempt keeps at most 5 MiB, and an
/// attempt with many combiner runs has more; past this the answer is cut.
const MAX_LOG_ANSWER: usize = 64 << 20;

fn setup_log_url(id: &str, node: NodeId) -> String {
    format!("/api/v1/jobs/{id}/logs/setup/{}", hex(node))
}

fn job_of(ctl: &Control, id: &str) -> Result<Job, (StatusCode, String)> {
    with_jobs(&ctl.node, |t| t.jobs.get(id).cloned())
        .flatten()
        .ok_or_else(|| (StatusCode::NOT_FOUND, format!("no job {id:?}")))
}

/// `GET /api/v1/jobs/{id}/logs`.
pub async fn index(State(ctl): State<Arc<Control>>, Path(id): Path<String>) -> Response {
    let job = match job_of(&ctl, &id) {
        Ok(j) => j,
        Err((status, why)) => return error(status, &why),
    };
    let mut attempts = Vec::new();
    let mut ran_on: Vec<NodeId> = Vec::new();
    for t in job.maps.iter().chain(&job.reduces) {
        for a in &t.attempts {
            if !ran_on.contains(&a.node) {
                ran_on.push(a.node);
            }
            attempts.push(serde_json::json!({
                "task": t.id(),
                "kind": if t.kind == TaskKind::Map { "map" } else { "reduce" },
                "attempt": a.attempt,
                "node": hex(a.node),
                "state": crate::http::jobs_view::shown_state(job.state, a.state),
                "error": a.error,
                "log": crate::http::jobs_view::attempt_log_url(&id, &t.id(), a.attempt),
            }));
        }
    }
    let setups: Vec<_> = if job.spec.archives.is_empty() && job.spec.setup.is_none() {
        Vec::new()
    } else {
        ran_on
            .iter()
            .map(|&n| serde_json::json!({ "node": hex(n), "log": setup_log_url(&id, n) }))
            .collect()
    };
    Json(serde_json::json!({ "id": id, "attempts": attempts, "setups": setups })).into_response()
}

/// `GET /api/v1/jobs/{id}/logs/{task}/{attempt}`.
pub async fn attempt(
    State(ctl): State<Arc<Control>>,
    Path((id, task, attempt)): Path<(String, String, u32)>,
) -> Response {
    let job = match job_of(&ctl, &id) {
        Ok(j) => j,
        Err((status, why)) => return error(status, &why),
    };
    let ran_on = job
        .maps
        .iter()
        .chain(&job.reduces)
        .find(|t| t.id() == task)
        .and_then(|t| t.attempts.iter().find(|a| a.attempt == attempt))
        .map(|a| a.node);
    let Some(from) = ran_on else {
        return error(
            StatusCode::NOT_FOUND,
            &format!("job {id} has no attempt {attempt} of task {task:?}"),
        );
    };
    let what = format!("the log of {task} attempt {attempt} of job {id}");
    answer(&ctl, from, attempt_log_key(&id, &task, attempt), what).await
}

/// `GET /api/v1/jobs/{id}/logs/setup/{node}`.
pub async fn setup(
    State(ctl): State<Arc<Control>>,
    Path((id, on)): Path<(String, String)>,
) -> Response {
    if let Err((status, why)) = job_of(&ctl, &id) {
        return error(status, &why);
    }
    let Some(from) = u64::from_str_radix(&on, 16).ok() else {
        return error(
            StatusCode::BAD_REQUEST,
            &format!("{on:?} is not a node id (16 hex digits)"),
        );
    };
    let what = format!("the setup log of job {id} on node {on}");
    answer(&ctl, from, setup_log_key(&id), what).await
}

/// The first `cap` bytes of the file at `path`.
async fn read_at_most(path: &std::path::Path, cap: usize) -> std::io::Result<Vec<u8>> {
    use tokio::io::AsyncReadExt;
    let mut text = Vec::new();
    tokio::fs::File::open(path)
        .await?
        .take(cap as u64)
        .read_to_end(&mut text)
        .await?;
    Ok(text)
}

/// The text of log `key` kept on node `from` (its first [`MAX_LOG_ANSWER`] bytes).
async fn answer(ctl: &Arc<Control>, from: NodeId, key: String, what: String) -> Response {
    let text = if from == ctl.node.id {
        let Some(path) = ctl.store.blobs.path(&key) else {
            return error(StatusCode::BAD_REQUEST, "a malformed job or task id");
        };
        match read_at_most(&path, MAX_LOG_ANSWER).await {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return error(
                    StatusCode::NOT_FOUND,
                    &format!("{what}: this node kept none (the attempt wrote no log, or the node restarted before it began)"),
                )
            }
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &format!("{what}: {e}")),
        }
    } else {
        let Some(peer) = crate::cluster::members::peer_of(&ctl.node, from) else {
            return error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("{what} is on node {from:016x}, which is not a member now"),
            );
        };
        let mut body = Box::pin(crate::storage::data::fetch_stream(
            Arc::clone(&ctl.store),
            peer,
            key,
        ));
        let mut text = Vec::new();
        while let Some(chunk) = body.next().await {
            match chunk {
                Ok(b) if text.len() + b.len() <= MAX_LOG_ANSWER => text.extend_from_slice(&b),
                Ok(_) => break,
                Err(e) => {
                    return error(
                        StatusCode::SERVICE_UNAVAILABLE,
                        &format!("{what} is on node {from:016x}, which did not give it: {e}"),
                    )
                }
            }
        }
        text
    };
    ([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], text).into_response()
}
