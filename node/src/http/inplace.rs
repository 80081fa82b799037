//! Submitting inputs read where they lie (`node:GLOB`, `shared:GLOB`): a `shared:` pattern is
//! listed by the node taking the job (every node mounts the same files); a `node:` pattern
//! by every member, each under its own `--input-root`, so each map runs where its file is.
//! Nothing is uploaded or copied.

use std::sync::Arc;
use std::time::Duration;

use axum::http::StatusCode;
use shoal_jobs::cluster::{InPlace, NodeId, SplitInfo};
use shoal_jobs::inplace::{in_place, Place};
use shoal_jobs::JobSpec;
use shoal_net::wire::{CtlRequest, CtlResponse, InputSplit};
use shoal_net::Transport;

use crate::cluster::members::{member_ids, peer_of};
use crate::control::Control;

/// How long a member may take to list its files.
const LIST_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a submission's in-place inputs cannot be used: its status and message.
pub(crate) type Refusal = (StatusCode, String);

/// The in-place splits of `spec`'s `node:` and `shared:` inputs, in input order, then node
/// order (numbered from 0; the caller renumbers them after its other splits).
pub(crate) async fn in_place_splits(
    ctl: &Arc<Control>,
    spec: &JobSpec,
) -> Result<Vec<SplitInfo>, Refusal> {
    let mut out = Vec::new();
    for input in &spec.inputs {
        let Some((place, pattern)) = in_place(input) else {
            continue;
        };
        let from: Vec<NodeId> = match place {
            Place::Shared => vec![ctl.node.id],
            Place::Node => member_ids(&ctl.node),
        };
        let listings = futures::future::join_all(
            from.iter()
                .map(|&id| list_on(ctl, id, pattern, spec.cut_size(), spec.max_record_bytes)),
        )
        .await;
        let before = out.len();
        for (&id, listed) in from.iter().zip(listings) {
            for s in listed? {
                out.push(SplitInfo {
                    index: out.len() as u32,
                    name: s.path.clone(),
                    len: s.len,
                    holders: match place {
                        Place::Node => vec![id],
                        Place::Shared => Vec::new(),
                    },
                    in_place: Some(InPlace {
                        node: (place == Place::Node).then_some(id),
                        path: s.path,
                        offset: s.offset,
                    }),
                    ..Default::default()
                });
            }
        }
        if out.len() == before {
            return Err((
                StatusCode::BAD_REQUEST,
                format!(
                    "--input {input}: no file matches under the --input-root of {}",
                    match place {
                        Place::Shared => "this node (the shared filesystem)",
                        Place::Node => "any node",
                    }
                ),
            ));
        }
        if out.len() > shoal_jobs::cluster::MAX_SPLITS {
            return Err((
                StatusCode::PAYLOAD_TOO_LARGE,
                format!(
                    "--input {input}: more than {} splits (map tasks), the most one job may have; raise --split-size",
                    shoal_jobs::cluster::MAX_SPLITS
                ),
            ));
        }
    }
    Ok(out)
}

/// Member `id`'s listing of `pattern` (this node's own, without the network).
async fn list_on(
    ctl: &Arc<Control>,
    id: NodeId,
    pattern: &str,
    split_size: u64,
    max_record: u64,
) -> Result<Vec<InputSplit>, Refusal> {
    let refused = |why: String| (StatusCode::BAD_REQUEST, why);
    if id == ctl.node.id {
        return ctl
            .node
            .list_inputs(pattern.to_owned(), split_size, max_record)
            .await
            .map_err(refused);
    }
    let unreachable = |why: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "node {id:016x} could not list its node: input ({why}); every member reads its own files — submit again once it is back, or remove it"
            ),
        )
    };
    let peer = peer_of(&ctl.node, id).ok_or_else(|| unreachable("no address".into()))?;
    let cluster_id = ctl
        .node
        .cluster_id()
        .ok_or_else(|| unreachable("this node has no cluster".into()))?;
    let req = CtlRequest::ListInputs {
        cluster_id,
        pattern: pattern.to_owned(),
        split_size,
        max_record,
    };
    let to = shoal_net::PeerRef {
        peer,
        addrs: vec![],
    };
    match ctl.node.net.ctl(&to, req, LIST_TIMEOUT).await {
        Ok(CtlResponse::InputSplits(splits)) => {
            // A member's listing is checked as a user's pattern is: a path that climbs out
            // of its root never reaches the job table.
            if let Some(bad) = splits.iter().find(|s| {
                shoal_jobs::inplace::check_relative(&s.path, &s.path).is_err()
                    || s.offset.checked_add(s.len).is_none()
            }) {
                return Err(refused(format!(
                    "node {id:016x} listed {:?}, which is not a file under its --input-root",
                    bad.path
                )));
            }
            if splits.len() > shoal_jobs::cluster::MAX_SPLITS {
                return Err(refused(format!(
                    "node {id:016x} listed more than {} splits",
                    shoal_jobs::cluster::MAX_SPLITS
                )));
            }
            Ok(splits)
        }
        Ok(CtlResponse::Refused(why)) => Err(refused(why)),
        Ok(other) => Err(unreachable(format!("an unexpected answer: {other:?}"))),
        Err(e) => Err(unreachable(e.to_string())),
    }
}
