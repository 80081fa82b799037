//! The membership's answers to a member's proposal, a leader's push and a heartbeat, written
//! once over what they need of a node: the daemon's `Node` (`cluster::handlers`, after the
//! checks of who is asking) and the simulator's node both answer with these, so `shoal sim`
//! runs this very code.

use shoal_jobs::cluster::NodeId;
use shoal_net::codec;
use shoal_net::wire::{CtlResponse, Heartbeat, Reason, Refusal};
use tracing::{info, warn};

use crate::cluster::admission::may_propose;
use crate::cluster::heartbeats::HeartbeatBook;
use crate::cluster::identity::hex;
use crate::cluster::propose::{too_large, write_local, Proposer};
use crate::cluster::pushed::{Push, Pushed};
use crate::cluster::state::{Command, MAX_COMMAND_BYTES};

/// Member `from`'s proposal of `command` (encoded): judged by the admission rules on the job
/// table `p` holds, then written through its Raft (only a leader can).
pub async fn propose<P: Proposer>(p: &P, from: NodeId, command: Vec<u8>) -> CtlResponse {
    if command.len() > MAX_COMMAND_BYTES {
        let why = too_large(command.len());
        warn!(from = %hex(from), why = %why, "refused a proposal");
        return CtlResponse::Declined(why);
    }
    let judged = codec::decode::<Command>(&command)
        .map_err(|e| Refusal::new(Reason::Malformed, format!("a malformed command: {e}")))
        .and_then(|cmd| {
            p.with_jobs(|table| may_propose(&cmd, from, table))
                .unwrap_or_else(|| {
                    Err(Refusal::new(
                        Reason::NotReady,
                        "raft is not running here yet",
                    ))
                })
        });
    if let Err(why) = judged {
        warn!(from = %hex(from), why = %why, "refused a proposal");
        return CtlResponse::Declined(why);
    }
    match write_local(p, command).await {
        Ok(answer) => CtlResponse::Applied(codec::encode(&answer)),
        Err(why) => CtlResponse::declined(Reason::Failed, why.to_string()),
    }
}

/// A push (encoded) from `from` to this node, which applies it to `pushed` unless it is a
/// Raft `member` (a member reads the log, not pushes).
pub fn push(member: bool, pushed: &Pushed, from: NodeId, push: &[u8]) -> CtlResponse {
    if member {
        return CtlResponse::declined(
            Reason::Forbidden,
            "this node is a member: it reads the Raft log, not pushes",
        );
    }
    let push: Push = match codec::decode(push) {
        Ok(p) => p,
        Err(e) => {
            return CtlResponse::declined(Reason::Malformed, format!("a malformed push: {e}"))
        }
    };
    let first = pushed.leader().is_none();
    match pushed.apply(from, push) {
        Ok(()) => {
            if first {
                info!(leader = %hex(from), "a plain worker: the leader pushes this node its assignments");
            }
            CtlResponse::Ok
        }
        Err(why) => {
            // Out of step and roster wanted are the protocol's own; the others are a
            // node pushing that may not.
            if matches!(why.reason, Reason::NotTheLeader | Reason::NotAMember) {
                warn!(from = %hex(from), why = %why, "refused a push");
            }
            CtlResponse::Declined(why)
        }
    }
}

/// A member's heartbeat, recorded in `book`; answered with every node's heartbeats when
/// `to_all` (the asker is a voter, which shows the cluster), else acknowledged: the others
/// ask (`Heard`) when they show it.
pub fn heartbeat(book: &HeartbeatBook, hb: Heartbeat, to_all: bool) -> CtlResponse {
    book.record(hb);
    CtlResponse::to_heartbeat(to_all, || book.heard())
}
