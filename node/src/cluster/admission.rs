//! Who may say what. The transport authenticates every peer by its key (its PeerId), and a
//! node id is derived from the PeerId, so no peer can speak under another's id; this is what
//! each may say once it is known:
//!
//! - any holder of the cluster key: `Hello`, `Adopt`, `Release`, and `Join` for itself;
//! - a member (its id and PeerId in the Raft membership): Raft RPCs in its own name, data
//!   requests, heartbeats under its own id, proposals of jobs, kills and lost map outputs,
//!   an operator's drain and undrain of any node (they come through any node's API), its
//!   own drain as it stops, and reports of the attempts assigned to it — nothing else;
//! - the leader alone: assignments, lost nodes, forgetting jobs, the cluster id — which it
//!   proposes itself, so the same commands forwarded by anyone are refused.
//!
//! The invariant: [`may_propose`] is pure — the leader judges a forwarded proposal on its
//! applied job table and the sender's authenticated id, nothing else.

use shoal_jobs::cluster::{Cluster, Command as JobCommand, NodeId, TaskKind};

use shoal_net::wire::{Reason, Refusal};

use crate::cluster::identity::hex;
use crate::cluster::state::Command;

/// Whether member `from` may propose `cmd` to the leader, judged on the leader's `table`;
/// a [`Reason::Forbidden`] refusal naming the rule when not.
pub fn may_propose(cmd: &Command, from: NodeId, table: &Cluster) -> Result<(), Refusal> {
    rules(cmd, from, table).map_err(|why| Refusal::new(Reason::Forbidden, why))
}

fn rules(cmd: &Command, from: NodeId, table: &Cluster) -> Result<(), String> {
    match cmd {
        Command::Init { .. } => Err("only the leader records the cluster id".into()),
        Command::Worker { .. } | Command::DropWorker { .. } => {
            Err("only the leader records plain workers".into())
        }
        Command::Jobs(c) => may_propose_job(c, from, table),
        Command::Batch(cs) => cs.iter().try_for_each(|c| may_propose_job(c, from, table)),
    }
}

fn may_propose_job(cmd: &JobCommand, from: NodeId, table: &Cluster) -> Result<(), String> {
    match cmd {
        JobCommand::SubmitJob { .. }
        | JobCommand::KillJob { .. }
        | JobCommand::MapOutputLost { .. } => Ok(()),
        JobCommand::Assign { .. } | JobCommand::NodeLost { .. } | JobCommand::Forget { .. } => {
            Err(format!(
                "node {} proposed what only the manager decides ({})",
                hex(from),
                name(cmd)
            ))
        }
        JobCommand::SetupRan { node, .. } if *node != from => Err(format!(
            "node {} reported a setup run on node {}",
            hex(from),
            hex(*node)
        )),
        JobCommand::SetupRan { .. } => Ok(()),
        JobCommand::Drain {
            node,
            cause: shoal_jobs::cluster::DrainCause::Stopping,
            ..
        } if *node != from => Err(format!(
            "node {} said node {} is stopping",
            hex(from),
            hex(*node)
        )),
        JobCommand::Drain { .. } | JobCommand::Undrain { .. } => Ok(()),
        // Only a holder copies what it holds to others.
        JobCommand::AddHolders { job, what, .. } => {
            let holders = table.jobs.get(job).and_then(|j| match what {
                shoal_jobs::cluster::Held::Split(i) => {
                    j.splits.get(*i as usize).map(|s| &s.holders)
                }
                shoal_jobs::cluster::Held::Part(i) => {
                    j.reduces.get(*i as usize).map(|t| &t.holders)
                }
            });
            match holders {
                Some(h) if h.contains(&from) => Ok(()),
                _ => Err(format!(
                    "node {} named holders of {what:?} of {job}, which it does not hold",
                    hex(from)
                )),
            }
        }
        JobCommand::TaskFinished {
            job,
            kind,
            index,
            attempt,
            ..
        }
        | JobCommand::TaskFailed {
            job,
            kind,
            index,
            attempt,
            ..
        } => {
            let runs_on = table
                .jobs
                .get(job)
                .and_then(|j| j.task(*kind, *index))
                .and_then(|t| t.attempts.iter().find(|a| a.attempt == *attempt))
                .map(|a| a.node);
            let task = match kind {
                TaskKind::Map => shoal_jobs::task::map_task_id(*index),
                TaskKind::Reduce => shoal_jobs::task::reduce_task_id(*index),
            };
            match runs_on {
                Some(n) if n == from => Ok(()),
                Some(n) => Err(format!(
                    "node {} reported attempt {attempt} of {task} of {job}, which runs on node {}",
                    hex(from),
                    hex(n)
                )),
                None => Err(format!(
                    "node {} reported attempt {attempt} of {task} of {job}, which the leader does not know (yet)",
                    hex(from)
                )),
            }
        }
    }
}

fn name(cmd: &JobCommand) -> &'static str {
    match cmd {
        JobCommand::SubmitJob { .. } => "SubmitJob",
        JobCommand::Assign { .. } => "Assign",
        JobCommand::TaskFinished { .. } => "TaskFinished",
        JobCommand::TaskFailed { .. } => "TaskFailed",
        JobCommand::NodeLost { .. } => "NodeLost",
        JobCommand::MapOutputLost { .. } => "MapOutputLost",
        JobCommand::Forget { .. } => "Forget",
        JobCommand::KillJob { .. } => "KillJob",
        JobCommand::SetupRan { .. } => "SetupRan",
        JobCommand::Drain { .. } => "Drain",
        JobCommand::Undrain { .. } => "Undrain",
        JobCommand::AddHolders { .. } => "AddHolders",
    }
}
