//! Taking a node out of service and back: `POST /api/v1/nodes/{node}/drain` and
//! `/undrain` (`shoal drain NODE`, `shoal undrain NODE`), from any ctl.node. `{node}` is a member's
//! id, or a prefix of it that names one member.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use shoal_jobs::cluster::{Applied, Command, DrainCause, NodeId};

use crate::cluster::identity::hex;
use crate::cluster::node::with_jobs;
use crate::control::Control;
use crate::http::error::error;

/// The member or plain worker `arg` names: its whole id or a prefix of one's id.
fn member(ctl: &Control, arg: &str) -> Result<NodeId, (StatusCode, String)> {
    if ctl.node.raft.get().is_none() {
        return Err((
            StatusCode::SERVICE_UNAVAILABLE,
            "this node has no cluster yet".into(),
        ));
    }
    let want = arg.to_ascii_lowercase();
    let found: Vec<NodeId> = crate::cluster::members::member_ids(&ctl.node)
        .into_iter()
        .filter(|&id| !want.is_empty() && hex(id).starts_with(&want))
        .collect();
    match found[..] {
        [one] => Ok(one),
        [] => Err((
            StatusCode::NOT_FOUND,
            format!("no member's id starts with {arg:?} (see shoal status)"),
        )),
        _ => Err((
            StatusCode::BAD_REQUEST,
            format!("{arg:?} names {} members; give more of the id", found.len()),
        )),
    }
}

/// Propose `cmd` about node `id`; the answer says where it stands now: `active`, or
/// `draining` while attempts still run there, `drained` once none does.
async fn propose(ctl: &Control, id: NodeId, cmd: Command) -> Response {
    let draining = matches!(cmd, Command::Drain { .. });
    let cmd = crate::cluster::state::Command::Jobs(cmd);
    match ctl
        .node
        .propose(&cmd, std::time::Duration::from_secs(10))
        .await
    {
        // Ignored: it already was so.
        Ok(Applied::Changed | Applied::Ignored(_)) => {
            let (running, needed) = with_jobs(&ctl.node, |t| {
                let others = crate::control::drain::others(ctl, id, t);
                (t.running_on(id), t.needed_on(id, others))
            })
            .unwrap_or((0, 0));
            let state = match (draining, needed) {
                (false, _) => "active",
                (true, 0) => "drained",
                (true, _) => "draining",
            };
            Json(serde_json::json!({ "node": hex(id), "state": state, "running": running }))
                .into_response()
        }
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, &e.to_string()),
    }
}

/// Propose the command `make` builds for the member `arg` names.
async fn about(ctl: &Control, arg: &str, make: impl FnOnce(NodeId) -> Command) -> Response {
    match member(ctl, arg) {
        Ok(id) => propose(ctl, id, make(id)).await,
        Err((status, why)) => error(status, &why),
    }
}

fn drain_for(cause: DrainCause) -> impl FnOnce(NodeId) -> Command {
    move |node| Command::Drain {
        node,
        cause,
        at_ms: crate::clock::now_ms(),
    }
}

/// `POST /api/v1/nodes/{node}/drain`.
pub async fn drain(State(ctl): State<Arc<Control>>, Path(arg): Path<String>) -> Response {
    about(&ctl, &arg, drain_for(DrainCause::Operator)).await
}

/// `POST /api/v1/nodes/{node}/remove`: drain it; once nothing there is needed it leaves
/// the membership (a voter replaced first, never below three voters) and stops.
pub async fn remove(State(ctl): State<Arc<Control>>, Path(arg): Path<String>) -> Response {
    about(&ctl, &arg, drain_for(DrainCause::Removing)).await
}

/// `POST /api/v1/nodes/{node}/undrain`.
pub async fn undrain(State(ctl): State<Arc<Control>>, Path(arg): Path<String>) -> Response {
    about(&ctl, &arg, |id| Command::Undrain { node: id }).await
}
