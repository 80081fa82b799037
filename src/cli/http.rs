//! How the client commands talk to a cluster: the `--node` URLs (and the token), and an
//! HTTP client that tries each node in turn, moving on when one does not answer, with the
//! errors a command turns into its exit code.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use serde_json::Value;

use crate::cli::exit::{EXIT_UNREACHABLE, EXIT_USAGE};

/// Which nodes a client talks to.
#[derive(Debug, Args, Clone)]
pub struct NodeUrls {
    /// A node's HTTP address; repeatable — the next is tried when one does not answer.
    #[arg(
        help_heading = "Reaching the cluster",
        long = "node",
        env = "SHOAL_NODE",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:7070"
    )]
    pub nodes: Vec<String>,
    /// A file holding the nodes' API token (or put the token itself in SHOAL_API_TOKEN).
    #[arg(
        help_heading = "Reaching the cluster",
        long,
        env = "SHOAL_API_TOKEN_FILE"
    )]
    pub api_token: Option<std::path::PathBuf>,
}

impl NodeUrls {
    /// The API token to send, from --api-token or SHOAL_API_TOKEN.
    pub fn token(&self) -> Result<Option<String>, String> {
        if let Some(path) = &self.api_token {
            return shoal_node::http::token::read(path)
                .map(Some)
                .map_err(|e| e.to_string());
        }
        match std::env::var("SHOAL_API_TOKEN") {
            Ok(t) if !t.trim().is_empty() => shoal_node::http::token::parse(t.trim())
                .map(Some)
                .ok_or_else(|| "SHOAL_API_TOKEN is not a usable token".to_string()),
            _ => Ok(None),
        }
    }

    /// Default headers carrying the token, if there is one.
    pub fn headers(&self) -> Result<reqwest::header::HeaderMap, String> {
        let mut h = reqwest::header::HeaderMap::new();
        if let Some(t) = self.token()? {
            let v = reqwest::header::HeaderValue::from_str(&format!("Bearer {t}"))
                .map_err(|e| format!("the API token cannot be sent: {e}"))?;
            h.insert(reqwest::header::AUTHORIZATION, v);
        }
        Ok(h)
    }
}

/// What the client adds when no node it was given could even be connected to.
pub const NONE_LISTENS: &str = "no node is listening there: is one running? Start one with \
`shoal node` (or try `shoal demo`), or name a running node with --node URL or SHOAL_NODE";

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No node answered.
    #[error("could not reach the cluster: {0}")]
    Unreachable(String),
    /// A node answered with an error.
    #[error("{message}")]
    Http {
        /// HTTP status.
        status: u16,
        /// The `error` of the body, or the body.
        message: String,
    },
}

/// An API answer read as `T`: an answer that does not fit is a malformed one.
pub fn view_of<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ClientError> {
    serde_json::from_value(v)
        .map_err(|e| ClientError::Unreachable(format!("a malformed answer: {e}")))
}

/// Report `e` of `shoal CMD` on stderr; its exit code.
pub(crate) fn fail(cmd: &str, e: &ClientError) -> ExitCode {
    eprintln!("shoal {cmd}: {e}");
    e.exit()
}

/// Report bad usage of `shoal CMD` on stderr; exit 2.
pub(crate) fn usage(cmd: &str, msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("shoal {cmd}: {msg}");
    ExitCode::from(EXIT_USAGE)
}

impl ClientError {
    pub fn exit(&self) -> ExitCode {
        match self {
            ClientError::Unreachable(_) => ExitCode::from(EXIT_UNREACHABLE),
            ClientError::Http { status, .. } if (400..500).contains(status) => {
                ExitCode::from(EXIT_USAGE)
            }
            ClientError::Http { .. } => ExitCode::from(EXIT_UNREACHABLE),
        }
    }
}

/// Characters of a whole job id (`j-` and 15 hex digits).
const JOB_ID_LEN: usize = 17;

/// The one id among `ids` that `given` names: the whole id, or a part of one that no other
/// id has at the same end (its first or last digits, with or without `j-`).
pub fn pick_job<'a>(given: &str, ids: impl IntoIterator<Item = &'a str>) -> Result<String, String> {
    let bare = given.strip_prefix("j-").unwrap_or(given);
    if bare.is_empty() {
        return Err("give a job id (`shoal jobs` lists them)".into());
    }
    let ids: Vec<&str> = ids.into_iter().collect();
    if let Some(id) = ids.iter().find(|id| **id == given) {
        return Ok((*id).to_string());
    }
    let matching: Vec<&str> = ids
        .iter()
        .copied()
        .filter(|id| {
            let digits = id.strip_prefix("j-").unwrap_or(id);
            digits.starts_with(bare) || digits.ends_with(bare)
        })
        .collect();
    match matching[..] {
        [one] => Ok(one.to_string()),
        [] => Err(format!(
            "no job's id starts or ends with {given} (`shoal jobs` lists them)"
        )),
        _ => Err(format!(
            "{given} names {} jobs ({}{}); give more of its digits",
            matching.len(),
            matching
                .iter()
                .take(4)
                .copied()
                .collect::<Vec<_>>()
                .join(", "),
            if matching.len() > 4 { ", …" } else { "" }
        )),
    }
}

/// An HTTP client over a list of nodes.
pub struct Client {
    bases: Vec<String>,
    /// The node that answered last (tried first next time).
    current: usize,
    http: reqwest::Client,
    rt: tokio::runtime::Runtime,
}

fn base_of(n: &str) -> String {
    let b = if n.starts_with("http://") || n.starts_with("https://") {
        n.to_owned()
    } else {
        format!("http://{n}")
    };
    b.trim_end_matches('/').to_owned()
}

async fn into_result(resp: reqwest::Response) -> Result<reqwest::Response, ClientError> {
    let status = resp.status();
    if status.is_success() {
        return Ok(resp);
    }
    let body = resp.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or(body);
    Err(ClientError::Http {
        status: status.as_u16(),
        message,
    })
}

impl Client {
    /// The whole id of the job `given` names (see [`pick_job`]); a whole id as it is.
    pub fn resolve_job(&mut self, given: &str) -> Result<String, ClientError> {
        if given.len() == JOB_ID_LEN && given.starts_with("j-") {
            return Ok(given.to_string());
        }
        let jobs = self.get_json("/api/v1/jobs", Duration::from_secs(10))?;
        let ids = jobs
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|j| j["id"].as_str())
                    .collect::<Vec<_>>()
            })
            .unwrap_or_default();
        pick_job(given, ids).map_err(|message| ClientError::Http {
            status: 404,
            message,
        })
    }

    /// A client of `nodes`.
    pub fn new(nodes: &NodeUrls) -> Result<Client, ClientError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        let headers = nodes.headers().map_err(|e| ClientError::Http {
            status: 400,
            message: e,
        })?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(3))
            .default_headers(headers)
            .build()
            .map_err(|e| ClientError::Unreachable(e.to_string()))?;
        Ok(Client {
            bases: nodes.nodes.iter().map(|n| base_of(n)).collect(),
            current: 0,
            http,
            rt,
        })
    }

    /// The node answering now.
    pub fn node(&self) -> &str {
        &self.bases[self.current % self.bases.len().max(1)]
    }

    /// Send a request built by `make` to each node in turn, from the current one; a node
    /// that cannot be reached (or times out) passes the request to the next.
    pub fn send<T>(
        &mut self,
        timeout: Duration,
        make: impl Fn(&reqwest::Client, &str) -> reqwest::RequestBuilder,
        read: impl AsyncRead<T>,
    ) -> Result<T, ClientError> {
        let mut errors = Vec::new();
        let mut none_listens = true;
        let n = self.bases.len();
        for i in 0..n {
            let idx = (self.current + i) % n;
            let base = self.bases[idx].clone();
            let req = make(&self.http, &base).timeout(timeout);
            let r = self.rt.block_on(async {
                let resp = req.send().await?;
                Ok::<_, reqwest::Error>(resp)
            });
            match r {
                Ok(resp) => {
                    self.current = idx;
                    return self.rt.block_on(async {
                        let resp = into_result(resp).await?;
                        read.read(resp).await
                    });
                }
                Err(e) => {
                    none_listens &= e.is_connect();
                    errors.push(format!("{base}: {}", error_text(&e)));
                }
            }
        }
        if none_listens {
            errors.push(NONE_LISTENS.to_string());
        }
        Err(ClientError::Unreachable(errors.join("; ")))
    }

    /// GET `path` as JSON.
    pub fn get_json(&mut self, path: &str, timeout: Duration) -> Result<Value, ClientError> {
        self.send(timeout, |c, b| c.get(format!("{b}{path}")), JsonBody)
    }

    /// `GET path` on the nodes in turn, read as `T` (a view type of the node's API).
    pub fn get_view<T: serde::de::DeserializeOwned>(
        &mut self,
        path: &str,
        timeout: Duration,
    ) -> Result<T, ClientError> {
        view_of(self.get_json(path, timeout)?)
    }

    /// Run a future on the client's runtime.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    /// The HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }
}

pub fn error_text(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(x) = src {
        s.push_str(": ");
        s.push_str(&x.to_string());
        src = x.source();
    }
    s
}

/// How a response body is read.
pub trait AsyncRead<T> {
    /// Read it.
    fn read(
        &self,
        resp: reqwest::Response,
    ) -> impl std::future::Future<Output = Result<T, ClientError>>;
}

/// A JSON body.
pub struct JsonBody;

impl AsyncRead<Value> for JsonBody {
    async fn read(&self, resp: reqwest::Response) -> Result<Value, ClientError> {
        resp.json::<Value>()
            .await
            .map_err(|e| ClientError::Unreachable(format!("a malformed answer: {e}")))
    }
}
