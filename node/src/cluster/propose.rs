//! Proposing commands: through Raft here when this node leads, else forwarded to the leader
//! over `/shoal/ctl/1`, retried through leader changes; each returns once this node has
//! applied the command too.

use std::time::{Duration, Instant};

use shoal_jobs::cluster::Applied as JobsApplied;
use shoal_net::wire::{CtlRequest, CtlResponse, Reason, Refusal};
use shoal_net::{codec, Transport};

use crate::cluster::node::{Node, PROPOSE_TIMEOUT};
use crate::cluster::state::Command;

/// Why a proposal was not applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProposeError {
    /// Raft has not started on this node.
    #[error("raft is not running here yet")]
    NoRaft,
    /// This node has not joined or formed a cluster.
    #[error("this node has no cluster yet")]
    NoCluster,
    /// No leader is known (an election is under way).
    #[error("no leader yet")]
    NoLeader,
    /// Only the leader writes; this is who it is, as far as this node knows.
    #[error("this node is not the leader (the leader is {0})")]
    NotLeader(String),
    /// The membership names the leader without a usable address.
    #[error("the leader's address is unknown")]
    LeaderUnknown,
    /// Raft did not commit it (the leader stepped down, the log is stopping).
    #[error("the proposal failed: {0}")]
    Raft(String),
    /// The leader refused it, with its reason.
    #[error("{0}")]
    Refused(Refusal),
    /// The leader did not answer in time.
    #[error("the leader did not answer: {0}")]
    Unreachable(String),
    /// An answer that is not what a proposal gets.
    #[error("a malformed reply: {0}")]
    Malformed(String),
}

impl ProposeError {
    /// Whether asking again cannot help: the rules refuse it, it does not decode, or the
    /// asker is no member of this cluster. Anything else (no leader yet, a leader change, no
    /// answer) may pass later.
    pub fn is_final(&self) -> bool {
        matches!(
            self,
            ProposeError::Refused(r) if matches!(
                r.reason,
                Reason::Forbidden | Reason::Malformed | Reason::NotAMember | Reason::Foreign
                    | Reason::Incompatible
            )
        )
    }
}

impl Node {
    /// Apply `command` through Raft here; only the leader can. The state's answer and the
    /// log index of the command.
    pub(super) async fn write_local(
        &self,
        command: Vec<u8>,
    ) -> Result<(JobsApplied, u64), ProposeError> {
        let h = self.raft.get().ok_or(ProposeError::NoRaft)?;
        let m = shoal_raft::metrics(&h.raft);
        if m.current_leader != Some(self.id) {
            return Err(ProposeError::NotLeader(
                m.current_leader
                    .map_or("unknown".into(), crate::cluster::identity::hex),
            ));
        }
        let resp = h
            .raft
            .client_write(shoal_raft::Cmd(command))
            .await
            .map_err(|e| ProposeError::Raft(e.to_string()))?;
        let applied = codec::decode(&resp.response().0)
            .map_err(|e| ProposeError::Malformed(e.to_string()))?;
        Ok((applied, resp.log_id().index))
    }

    /// Propose `command` once: here when this node leads, else to the leader over
    /// `/shoal/ctl/1`. Either way it returns once this node has applied the command too, so
    /// what a client reads from this node next includes it.
    pub async fn propose_once(&self, command: &Command) -> Result<JobsApplied, ProposeError> {
        let bytes = codec::encode(command);
        if self.raft.get().is_none() {
            return Err(ProposeError::NoRaft);
        }
        match crate::cluster::members::leader(self) {
            Some(l) if l == self.id => self.write_local(bytes).await.map(|(a, _)| a),
            Some(l) => {
                let cluster_id = self.cluster_id().ok_or(ProposeError::NoCluster)?;
                let to =
                    crate::cluster::members::reach(self, l).ok_or(ProposeError::LeaderUnknown)?;
                let req = CtlRequest::Propose {
                    cluster_id,
                    command: bytes,
                };
                let (applied, index): (JobsApplied, u64) =
                    match self.net.ctl(&to, req, PROPOSE_TIMEOUT).await {
                        Ok(CtlResponse::Applied(b)) => {
                            codec::decode(&b).map_err(|e| ProposeError::Malformed(e.to_string()))?
                        }
                        Ok(CtlResponse::Foreign { cluster_id }) => {
                            return Err(ProposeError::Refused(Refusal::new(
                                Reason::Foreign,
                                crate::cluster::node::foreign_reason(cluster_id),
                            )))
                        }
                        Ok(other) if let Some(r) = other.refusal() => {
                            return Err(ProposeError::Refused(r))
                        }
                        Ok(other) => return Err(ProposeError::Malformed(format!("{other:?}"))),
                        Err(e) => return Err(ProposeError::Unreachable(e.to_string())),
                    };
                // A plain worker applies no log: what it reads next comes with a push.
                if self.is_member() {
                    self.wait_applied(index, PROPOSE_TIMEOUT).await;
                }
                Ok(applied)
            }
            None => Err(ProposeError::NoLeader),
        }
    }

    /// Wait (at most `limit`) until this node has applied log index `index`.
    pub async fn wait_applied(&self, index: u64, limit: Duration) {
        let Some(h) = self.raft.get() else { return };
        let deadline = tokio::time::Instant::now() + limit;
        let mut changes = h.raft.metrics();
        loop {
            let at = shoal_raft::metrics(&h.raft)
                .last_applied
                .map_or(0, |l| l.index);
            if at >= index {
                return;
            }
            use shoal_raft::WatchReceiver;
            if !matches!(
                tokio::time::timeout_at(deadline, changes.changed()).await,
                Ok(Ok(()))
            ) {
                return;
            }
        }
    }

    /// Propose `command`, retrying (leader changes, no leader yet) for up to `patience`.
    pub async fn propose(
        &self,
        command: &Command,
        patience: Duration,
    ) -> Result<JobsApplied, ProposeError> {
        let deadline = Instant::now() + patience;
        let mut backoff = Duration::from_millis(20);
        loop {
            match self.propose_once(command).await {
                Ok(a) => return Ok(a),
                Err(e) if !e.is_final() && Instant::now() + backoff < deadline => {
                    tracing::debug!(error = %e, "proposal not accepted yet; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
                Err(e) => return Err(e),
            }
        }
    }
}
