//! A browser-safe API. Submitting a job runs code on every node, and a browser will send a
//! request to 127.0.0.1 for any page the user visits: a cross-site form post or a `no-cors`
//! fetch needs no preflight, and a page whose DNS name is rebound to 127.0.0.1 can even read
//! the answers. So every request must name this node in `Host` (a loopback name or address,
//! the node's own `--http` address, or a name given with `--http-host`) — else 421, which
//! stops DNS rebinding — and a request that changes something (`POST`, `PUT`, `PATCH`,
//! `DELETE`) is refused with 403 when `Sec-Fetch-Site` or `Origin` says it comes from
//! another site. Requests with neither header (curl, `shoal` itself) are not a browser's
//! and pass; the dashboard, served by the node itself, is same-origin.
//!
//! The invariant: no request that a page of another site can make from a browser reaches a
//! handler that changes state, and none whose `Host` is not this node's reaches any handler.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::http::error::error;

/// Requests the API handles at once; one more is answered 503 at once, so a crowd of
/// clients costs a bounded amount of memory (a response's body, once begun, streams on
/// without a turn).
pub const MAX_IN_PROGRESS: usize = 256;

/// The names this node answers to, and the turns its handlers take.
#[derive(Debug, Clone)]
pub struct HostGuard {
    /// The `--http` address's IP (unspecified: none).
    own: Option<IpAddr>,
    /// `--http-host` names, lowercase.
    names: Vec<String>,
    /// Requests in progress, at most [`MAX_IN_PROGRESS`].
    turns: Arc<tokio::sync::Semaphore>,
}

impl HostGuard {
    /// A guard for a node serving on `http` that also answers to `names`.
    pub fn new(http: std::net::SocketAddr, names: &[String]) -> Self {
        HostGuard {
            own: Some(http.ip()).filter(|ip| !ip.is_unspecified()),
            names: names
                .iter()
                .map(|n| n.trim().to_ascii_lowercase())
                .collect(),
            turns: Arc::new(tokio::sync::Semaphore::new(MAX_IN_PROGRESS)),
        }
    }

    /// Whether `host` (a `Host` header's value, with or without a port) names this node.
    pub fn allows(&self, host: &str) -> bool {
        let name = host_name(host).to_ascii_lowercase();
        if name == "localhost" || self.names.contains(&name) {
            return true;
        }
        match name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            Ok(ip) => ip.is_loopback() || Some(ip) == self.own,
            Err(_) => false,
        }
    }
}

/// The host part of a `Host` value or an origin's authority (`[::1]:7070` → `[::1]`).
fn host_name(authority: &str) -> &str {
    if authority.starts_with('[') {
        return authority.split_inclusive(']').next().unwrap_or(authority);
    }
    match authority.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => authority,
    }
}

/// Whether a state-changing request comes from a page of another site, by the headers a
/// browser sets (and a page cannot).
fn cross_site(req: &Request, host: &str) -> Option<String> {
    let h = req.headers();
    if let Some(site) = h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        if site != "same-origin" && site != "none" {
            return Some(format!("Sec-Fetch-Site: {site}"));
        }
    }
    let origin = h.get(header::ORIGIN)?.to_str().unwrap_or("null");
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    match authority {
        Some(a) if a.eq_ignore_ascii_case(host) => None,
        _ => Some(format!("Origin: {origin}")),
    }
}

/// The middleware: 421 for a foreign `Host`, 403 for a cross-site change; every answer says
/// `X-Content-Type-Options: nosniff`, so a browser never reads a task's log (or any text)
/// as HTML or script.
pub async fn check(guard: Arc<HostGuard>, req: Request, next: Next) -> Response {
    let mut answer = match Arc::clone(&guard.turns).try_acquire_owned() {
        Ok(_turn) => judge(&guard, req, next).await,
        Err(_) => {
            tracing::debug!(path = %req.uri().path(), "an HTTP request over the bound; 503");
            let mut busy = error(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("busy: {MAX_IN_PROGRESS} requests are in progress; try again in a moment"),
            );
            busy.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
            busy
        }
    };
    answer.headers_mut().insert(
        header::X_CONTENT_TYPE_OPTIONS,
        header::HeaderValue::from_static("nosniff"),
    );
    answer
}

/// [`check`] without the header.
async fn judge(guard: &HostGuard, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    if !guard.allows(&host) {
        tracing::warn!(host, path = %req.uri().path(), "refused a request for a foreign Host");
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            &format!("this node does not answer to Host {host:?} (a page's DNS name rebound to this address?); start it with --http-host NAME to serve a name"),
        );
    }
    let changes = matches!(
        *req.method(),
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if changes {
        if let Some(why) = cross_site(&req, &host) {
            tracing::warn!(method = %req.method(), path = %req.uri().path(), why, "refused a change from another site");
            return error(
                StatusCode::FORBIDDEN,
                &format!("refused a change from another site ({why}): a web page cannot submit or kill jobs; use `shoal` or the node's own dashboard"),
            );
        }
    }
    let req = if changes {
        // A body that stalls must not hold its turn: it ends in an error instead.
        req.map(|b| crate::http::limits::idle_bounded(b, crate::http::limits::BODY_IDLE))
    } else {
        req
    };
    next.run(req).await
}
