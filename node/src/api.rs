//! The HTTP API every node serves (JSON under `/api/v1/`). Errors are `{"error": "…"}` with a
//! fitting status.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};

use crate::node::Node;
use crate::view::cluster_view;

/// The API's routes.
pub fn router(node: Arc<Node>) -> Router {
    Router::new()
        .route("/api/v1/cluster", get(cluster))
        .route("/api/v1/jobs", get(jobs))
        .route("/api/v1/jobs/{id}", get(job))
        .fallback(not_found)
        .with_state(node)
}

async fn cluster(State(node): State<Arc<Node>>) -> Response {
    Json(cluster_view(&node)).into_response()
}

/// The applied job table; empty before this node has Raft.
fn with_jobs<T>(node: &Node, f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> T) -> Option<T> {
    let h = node.raft.get()?;
    let applied = h.applied.read().unwrap_or_else(|p| p.into_inner());
    Some(f(&applied.state.jobs))
}

async fn jobs(State(node): State<Arc<Node>>) -> Response {
    let list = with_jobs(&node, crate::jobs_view::jobs_view).unwrap_or_default();
    Json(list).into_response()
}

async fn job(State(node): State<Arc<Node>>, Path(id): Path<String>) -> Response {
    match with_jobs(&node, |jobs| {
        jobs.jobs.get(&id).map(crate::jobs_view::job_view)
    })
    .flatten()
    {
        Some(view) => Json(view).into_response(),
        None => error(StatusCode::NOT_FOUND, &format!("no job {id:?}")),
    }
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// A JSON error response.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
