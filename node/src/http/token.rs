//! The HTTP API's token. Submitting a job runs code on every node, so an API reachable from
//! beyond this machine must not be open: a node whose `--http` is not a loopback address
//! refuses to start without `--api-token FILE`, and with a token every request must carry
//! `Authorization: Bearer TOKEN` or is answered 401 — all but the dashboard's page, which
//! holds no data and asks the user for the token.
//!
//! The invariant: with a token set, no route but `GET /` answers anything but 401 to a
//! request without it, and the comparison takes the same time whatever the guess.

use std::path::Path;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Json;

/// Shortest token accepted.
pub const MIN_LEN: usize = 16;

/// Why a token cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    /// The file could not be read.
    #[error("cannot read the API token file {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// Too short or not one printable word.
    #[error("the API token in {0} must be one word of at least {MIN_LEN} printable characters (e.g. `head -c 24 /dev/urandom | base64 > FILE`)")]
    Malformed(String),
}

/// The token in `path` (surrounding whitespace ignored).
pub fn read(path: &Path) -> Result<String, TokenError> {
    let text = std::fs::read_to_string(path).map_err(|source| TokenError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(text.trim()).ok_or_else(|| TokenError::Malformed(path.display().to_string()))
}

/// `text` as a token, if it is one.
pub fn parse(text: &str) -> Option<String> {
    (text.len() >= MIN_LEN && text.bytes().all(|b| b.is_ascii_graphic())).then(|| text.to_string())
}

/// Whether `given` equals `want`, in time independent of where they differ.
pub fn same(given: &[u8], want: &[u8]) -> bool {
    given.len() == want.len()
        && given
            .iter()
            .zip(want)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Middleware: answer 401 unless the request carries the bearer token — except the
/// dashboard's page itself (`GET /`), which holds no data and asks for the token.
pub async fn require(token: Arc<str>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/" && req.method() == axum::http::Method::GET {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if same(g.as_bytes(), token.as_bytes()) => next.run(req).await,
        _ => (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            Json(serde_json::json!({
                "error": "this node's API needs its token: `Authorization: Bearer TOKEN` (shoal clients: --api-token FILE or SHOAL_API_TOKEN)"
            })),
        )
            .into_response(),
    }
}
