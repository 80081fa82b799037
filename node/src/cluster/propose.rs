//! Proposing commands: through Raft here when this node leads, else forwarded to the leader
//! over `/shoal/ctl/1`, retried through leader changes; each returns once this node has
//! applied the command too.
//!
//! The rule is written once, over what it needs of a node ([`Proposer`]): the daemon's
//! [`Node`] and the simulator's node both propose with it, so `shoal sim` runs this very code
//! over its simulated network and clock.

use std::time::Duration;

use shoal_jobs::cluster::{Applied as JobsApplied, NodeId};
use shoal_jobs::planted::{self, Bug};
use shoal_net::wire::{CtlRequest, CtlResponse, Reason, Refusal};
use shoal_net::{codec, PeerRef, Transport};
use shoal_raft::Raft;
use tokio::time::Instant;

use crate::cluster::node::{Node, PROPOSE_TIMEOUT};
use crate::cluster::state::{ClusterState, Command, MAX_COMMAND_BYTES};

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
                Reason::Forbidden
                    | Reason::Malformed
                    | Reason::NotAMember
                    | Reason::Foreign
                    | Reason::Incompatible
            )
        )
    }
}

/// What proposing needs of a node: the daemon's [`Node`] and the simulator's node alike.
pub trait Proposer: Send + Sync {
    /// The network proposals are forwarded over.
    type Net: Transport;
    /// The replicated state its Raft applies.
    type State: shoal_raft::AppState;
    /// This node's id.
    fn id(&self) -> NodeId;
    /// Its network.
    fn transport(&self) -> &Self::Net;
    /// Its Raft, once started.
    fn raft(&self) -> Option<&Raft<Self::State>>;
    /// Its cluster, once it has one.
    fn cluster(&self) -> Option<u64>;
    /// The leader as this node knows it: Raft's, or on a plain worker the one that pushes it.
    fn leader(&self) -> Option<NodeId>;
    /// How to reach node `id`.
    fn reach(&self, id: NodeId) -> Option<PeerRef>;
    /// Whether it applies the log itself (a member), and so waits to apply what it proposed.
    fn applies_log(&self) -> bool;
    /// Read the job table it holds (applied, or on a plain worker pushed); `None` before it
    /// has one.
    fn with_jobs<R>(&self, f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> R) -> Option<R>;
}

impl Proposer for Node {
    type Net = shoal_net::Client;
    type State = ClusterState;

    fn id(&self) -> NodeId {
        self.id
    }

    fn transport(&self) -> &shoal_net::Client {
        &self.net
    }

    fn raft(&self) -> Option<&Raft<ClusterState>> {
        self.raft.get().map(|h| &h.raft)
    }

    fn cluster(&self) -> Option<u64> {
        self.cluster_id()
    }

    fn leader(&self) -> Option<NodeId> {
        crate::cluster::members::leader(self)
    }

    fn reach(&self, id: NodeId) -> Option<PeerRef> {
        crate::cluster::members::reach(self, id)
    }

    fn applies_log(&self) -> bool {
        self.is_member()
    }

    fn with_jobs<R>(&self, f: impl FnOnce(&shoal_jobs::cluster::Cluster) -> R) -> Option<R> {
        crate::cluster::node::with_jobs(self, f)
    }
}

/// Apply `command` through Raft at `p`; only the leader can. The state's answer and the
/// log index of the command.
pub async fn write_local<P: Proposer>(
    p: &P,
    command: Vec<u8>,
) -> Result<(JobsApplied, u64), ProposeError> {
    if command.len() > MAX_COMMAND_BYTES {
        return Err(ProposeError::Refused(too_large(command.len())));
    }
    let raft = p.raft().ok_or(ProposeError::NoRaft)?;
    let m = shoal_raft::metrics(raft);
    if m.current_leader != Some(p.id()) {
        return Err(ProposeError::NotLeader(
            m.current_leader
                .map_or("unknown".into(), crate::cluster::identity::hex),
        ));
    }
    let resp = raft
        .client_write(shoal_raft::Cmd(command))
        .await
        .map_err(|e| ProposeError::Raft(e.to_string()))?;
    let applied =
        codec::decode(&resp.response().0).map_err(|e| ProposeError::Malformed(e.to_string()))?;
    Ok((applied, resp.log_id().index))
}

/// Why a command of `len` bytes is refused: over [`MAX_COMMAND_BYTES`], it would stall the
/// log (an append carrying it could never be sent).
pub fn too_large(len: usize) -> Refusal {
    Refusal::new(
        Reason::Malformed,
        format!("a command of {len} bytes is over the log's bound of {MAX_COMMAND_BYTES} bytes"),
    )
}

/// Propose `command` once: at `p` when it leads, else to the leader over `/shoal/ctl/1`.
/// Either way it returns once `p` has applied the command too (when it applies the log), so
/// what a client reads from it next includes it. The state's answer and the log index.
pub async fn propose_once<P: Proposer>(
    p: &P,
    command: &Command,
) -> Result<(JobsApplied, u64), ProposeError> {
    let bytes = codec::encode(command);
    if p.raft().is_none() {
        return Err(ProposeError::NoRaft);
    }
    let leader = p.leader().ok_or(ProposeError::NoLeader)?;
    if leader == p.id() {
        return write_local(p, bytes).await;
    }
    let cluster_id = p.cluster().ok_or(ProposeError::NoCluster)?;
    let to = p.reach(leader).ok_or(ProposeError::LeaderUnknown)?;
    let req = CtlRequest::Propose {
        cluster_id,
        command: bytes,
    };
    let (applied, index): (JobsApplied, u64) =
        match p.transport().ctl(&to, req, PROPOSE_TIMEOUT).await {
            Ok(CtlResponse::Applied(b)) => {
                codec::decode(&b).map_err(|e| ProposeError::Malformed(e.to_string()))?
            }
            Ok(CtlResponse::Foreign { cluster_id }) => {
                return Err(ProposeError::Refused(Refusal::new(
                    Reason::Foreign,
                    crate::cluster::node::foreign_reason(cluster_id),
                )))
            }
            Ok(other) => {
                return Err(match other.refusal() {
                    Some(r) => ProposeError::Refused(r),
                    None => ProposeError::Malformed(format!("{other:?}")),
                })
            }
            Err(e) => return Err(ProposeError::Unreachable(e.to_string())),
        };
    // A plain worker applies no log: what it reads next comes with a push.
    if p.applies_log() {
        wait_applied(p, index, PROPOSE_TIMEOUT).await;
    }
    Ok((applied, index))
}

/// Wait (at most `limit`) until `p` has applied log index `index`.
pub async fn wait_applied<P: Proposer>(p: &P, index: u64, limit: Duration) {
    let Some(raft) = p.raft() else { return };
    let deadline = tokio::time::Instant::now() + limit;
    let mut changes = raft.metrics();
    loop {
        let at = shoal_raft::metrics(raft)
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

/// Propose `command` at `p`, retrying what may pass later (no leader yet, a leader change,
/// no answer) for up to `patience`, 20 ms after the first try and twice as long after each
/// other, at most a second. The state's answer and the log index.
pub async fn propose<P: Proposer>(
    p: &P,
    command: &Command,
    patience: Duration,
) -> Result<(JobsApplied, u64), ProposeError> {
    let deadline = Instant::now() + patience;
    let mut backoff = Duration::from_millis(20);
    loop {
        match propose_once(p, command).await {
            Ok(a) => return Ok(a),
            // The bug the simulator is shown to catch: giving up after the first refusal.
            Err(e) if planted::active(Bug::ProposalGivesUp) => return Err(e),
            Err(e) if !e.is_final() && Instant::now() + backoff < deadline => {
                tracing::debug!(error = %e, "proposal not accepted yet; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
            Err(e) => return Err(e),
        }
    }
}

impl Node {
    /// [`propose_once`] at this node: the state's answer.
    pub async fn propose_once(&self, command: &Command) -> Result<JobsApplied, ProposeError> {
        propose_once(self, command).await.map(|(a, _)| a)
    }

    /// [`propose`] at this node: the state's answer.
    pub async fn propose(
        &self,
        command: &Command,
        patience: Duration,
    ) -> Result<JobsApplied, ProposeError> {
        propose(self, command, patience).await.map(|(a, _)| a)
    }
}
