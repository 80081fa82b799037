//! The HTTP API every node serves (JSON under `/api/v1/`). Errors are `{"error": "…"}` with a
//! fitting status.

use std::sync::Arc;

use axum::extract::State;
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
        .fallback(not_found)
        .with_state(node)
}

async fn cluster(State(node): State<Arc<Node>>) -> Response {
    Json(cluster_view(&node)).into_response()
}

async fn not_found() -> Response {
    error(StatusCode::NOT_FOUND, "no such endpoint")
}

/// A JSON error response.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}
