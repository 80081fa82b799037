//! How Raft reaches peers. This crate defines [`RaftRpc`] — "send these bytes of this kind to
//! that node, get bytes back" — and adapts it to openraft's network traits; the node
//! implements it over its transport. [`handle_rpc`] is the other end: decode, hand to Raft,
//! encode the answer.
//!
//! The invariant: bytes from the network are decoded with errors, never panics; a request
//! that does not decode is answered with an error and changes nothing.

use std::future::Future;
use std::io::Cursor;
use std::time::Duration;

use openraft::errors::{
    NetworkError, RPCError, RaftError, ReplicationClosed, StreamingError, Unreachable,
};
use openraft::network::v2::RaftNetworkV2;
use openraft::network::{RPCOption, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, SnapshotResponse, TransferLeaderRequest,
    TransferLeaderResponse, VoteRequest, VoteResponse,
};
use openraft::OptionalSend;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::state_machine::AppState;
use crate::store::{from_cbor, to_cbor};
use crate::types::{LogId, NodeId, NodeInfo, SnapshotMeta, TypeConfig, Vote};
use crate::Raft;

/// Which Raft RPC a message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RpcKind {
    /// AppendEntries (also heartbeats).
    Append,
    /// RequestVote.
    Vote,
    /// Pre-vote, so a partitioned node cannot disrupt the cluster when it returns.
    PreVote,
    /// A whole snapshot.
    Snapshot,
    /// Leadership hand-over.
    TransferLeader,
}

/// An RPC that did not get an answer.
#[derive(Debug, thiserror::Error)]
pub enum RpcError {
    /// The peer could not be reached (or did not answer in time).
    #[error("unreachable: {0}")]
    Unreachable(String),
    /// The peer answered with an error.
    #[error("peer refused: {0}")]
    Refused(String),
    /// The sender's role in the membership does not send this kind of RPC (a learner's
    /// vote, an append from a node outside the membership).
    #[error("{0}")]
    NotAllowed(String),
}

/// What the node provides so Raft can reach peers.
pub trait RaftRpc: Clone + Send + Sync + 'static {
    /// Send `body` (a CBOR request of `kind`) to node `target`, answer its CBOR reply.
    fn call(
        &self,
        target: NodeId,
        node: &NodeInfo,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Vec<u8>, RpcError>> + Send;
}

/// openraft's network factory over a [`RaftRpc`].
pub struct Factory<R> {
    rpc: R,
}

impl<R> Factory<R> {
    /// Wrap `rpc`.
    pub fn new(rpc: R) -> Self {
        Factory { rpc }
    }
}

impl<R: RaftRpc> RaftNetworkFactory<TypeConfig> for Factory<R> {
    type Network = Client<R>;

    async fn new_client(&mut self, target: NodeId, node: &NodeInfo) -> Client<R> {
        Client {
            rpc: self.rpc.clone(),
            target,
            node: node.clone(),
        }
    }
}

/// A connection to one peer, as openraft sees it.
pub struct Client<R> {
    rpc: R,
    target: NodeId,
    node: NodeInfo,
}

impl<R: RaftRpc> Client<R> {
    async fn request<Req: Serialize, Resp: DeserializeOwned>(
        &self,
        kind: RpcKind,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<TypeConfig>> {
        let body = to_cbor(req);
        let bytes = self
            .rpc
            .call(self.target, &self.node, kind, body, option.hard_ttl())
            .await
            .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let answer: Result<Resp, RaftError<TypeConfig>> =
            from_cbor(&bytes).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        answer.map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl<R: RaftRpc> RaftNetworkV2<TypeConfig> for Client<R> {
    type SnapshotData = Cursor<Vec<u8>>;

    async fn append_entries(
        &mut self,
        mut rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<TypeConfig>, RPCError<TypeConfig>> {
        // openraft batches by count; the transport's frame is bounded in bytes. Send the
        // longest prefix within MAX_APPEND_BYTES (one entry at least) and report the rest as
        // not sent yet: openraft sends it next.
        let keep = prefix_within(&rpc.entries, MAX_APPEND_BYTES);
        if keep == rpc.entries.len() {
            return self.request(RpcKind::Append, &rpc, &option).await;
        }
        rpc.entries.truncate(keep);
        let sent = rpc.entries.last().map(|e| e.log_id);
        match self.request(RpcKind::Append, &rpc, &option).await? {
            AppendEntriesResponse::Success => Ok(AppendEntriesResponse::PartialSuccess(sent)),
            other => Ok(other),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let vote = rpc.vote;
        let answer = self.request(RpcKind::Vote, &rpc, &option).await;
        planted_grant(answer, vote)
    }

    async fn pre_vote(
        &mut self,
        rpc: VoteRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
        let vote = rpc.vote;
        let answer = self.request(RpcKind::PreVote, &rpc, &option).await;
        planted_grant(answer, vote)
    }

    async fn full_snapshot(
        &mut self,
        vote: Vote,
        snapshot: openraft::alias::SnapshotOf<TypeConfig, Cursor<Vec<u8>>>,
        cancel: impl Future<Output = ReplicationClosed> + OptionalSend + 'static,
        option: RPCOption,
    ) -> Result<SnapshotResponse<TypeConfig>, StreamingError<TypeConfig>> {
        // In pieces within the transport's frame, whatever the state's size; the last
        // piece installs it and carries the answer.
        let data = snapshot.snapshot.into_inner();
        let total = data.len() as u64;
        let send = async {
            let mut offset = 0usize;
            loop {
                let end = (offset + SNAPSHOT_PIECE_BYTES).min(data.len());
                let req = SnapshotRequest {
                    vote,
                    meta: snapshot.meta.clone(),
                    offset: offset as u64,
                    total,
                    data: data[offset..end].to_vec(),
                };
                let answer: SnapshotResponse<TypeConfig> =
                    self.request(RpcKind::Snapshot, &req, &option).await?;
                if end == data.len() {
                    return Ok::<_, RPCError<TypeConfig>>(answer);
                }
                offset = end;
            }
        };
        tokio::select! {
            closed = cancel => Err(StreamingError::Closed(closed)),
            res = send => Ok(res?),
        }
    }

    async fn transfer_leader(
        &mut self,
        req: TransferLeaderRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<TransferLeaderResponse<TypeConfig>, RPCError<TypeConfig>> {
        self.request(RpcKind::TransferLeader, &req, &option).await
    }
}

/// Planted (simulator only): a vote request that got no answer counts as granted.
fn planted_grant(
    answer: Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>>,
    vote: Vote,
) -> Result<VoteResponse<TypeConfig>, RPCError<TypeConfig>> {
    use crate::planted::{active, Bug};
    match answer {
        Err(RPCError::Unreachable(_)) if active(Bug::SilenceIsConsent) => {
            Ok(VoteResponse::new(vote, None, true))
        }
        other => other,
    }
}

/// One piece of a snapshot: `data` is bytes `offset..offset + data.len()` of `total`.
#[derive(Serialize, Deserialize)]
pub struct SnapshotRequest {
    /// The sender's vote (a leader's).
    pub vote: Vote,
    /// Which snapshot.
    pub meta: SnapshotMeta,
    /// Where this piece starts.
    pub offset: u64,
    /// The whole snapshot's size.
    pub total: u64,
    /// The piece.
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
}

/// Bytes of log entries one AppendEntries carries at most (a larger entry goes alone): far
/// below the transport's 64 MiB frame, so no batch of entries makes a message too big to
/// send, whatever the entries hold.
pub const MAX_APPEND_BYTES: usize = 8 << 20;

/// Bytes of a snapshot one message carries.
pub const SNAPSHOT_PIECE_BYTES: usize = 8 << 20;

/// Largest snapshot a node takes (pieces are gathered in memory before it is installed).
pub const MAX_SNAPSHOT_BYTES: u64 = 4 << 30;

/// How many of `entries`, from the first, fit in `max` bytes (at least one).
fn prefix_within(entries: &[openraft::alias::EntryOf<TypeConfig>], max: usize) -> usize {
    let mut total = 0usize;
    entries
        .iter()
        .position(|e| {
            total += match &e.payload {
                openraft::EntryPayload::Normal(cmd) => cmd.0.len() + 64,
                _ => 4096,
            };
            total > max
        })
        .map_or(entries.len(), |i| i.max(1))
}

fn decode<T: DeserializeOwned>(kind: RpcKind, body: &[u8]) -> Result<T, RpcError> {
    from_cbor(body).map_err(|e| RpcError::Refused(format!("malformed {kind:?} request: {e}")))
}

type LeaderIdOf = openraft::alias::LeaderIdOf<TypeConfig>;

/// The order of inbound AppendEntries and snapshots: one at a time, and none older than
/// one already taken from the same leader.
///
/// A request that timed out at the leader may still arrive — after the leader's next one
/// (a retry over another stream, a duplicate, handlers racing). openraft then sees its
/// log I/O go backwards for one leader and its core panics (the simulator found this). A
/// stale request from the leader of the newest append is answered `Success` without
/// reaching Raft: every entry it carries is already in this node's log (the same leader
/// sent a longer prefix, and this node took it).
#[derive(Debug, Default)]
pub struct Inbound {
    newest: tokio::sync::Mutex<Newest>,
    /// The snapshot being received, piece by piece, from one sender.
    partial: tokio::sync::Mutex<Option<Partial>>,
}

/// The last log id taken from the newest leader that sent entries or a snapshot.
#[derive(Debug, Default)]
struct Newest(Option<(LeaderIdOf, LogId)>);

impl Newest {
    /// Whether what `leader` sends, up to `last`, is older than what it already sent.
    fn stale(&self, leader: &LeaderIdOf, last: Option<LogId>) -> bool {
        match (&self.0, last) {
            (Some((l, seen)), Some(last)) => l == leader && last < *seen,
            _ => false,
        }
    }

    /// Raft took what `leader` sent, up to `last`.
    fn took(&mut self, leader: LeaderIdOf, last: Option<LogId>) {
        let Some(last) = last else { return };
        if self
            .0
            .as_ref()
            .is_none_or(|(l, seen)| *l != leader || last > *seen)
        {
            self.0 = Some((leader, last));
        }
    }
}

/// Whether `from` may send an RPC of `kind`, judged on the membership this node holds (its
/// log's, committed or not): only a voter asks for votes or hands leadership over; only a
/// member (a voter, or a learner this node has not yet seen promoted) sends entries or a
/// snapshot. A node that holds no membership yet takes entries, snapshots and votes from
/// any sender the transport let through: it is a learner being added (its first entries
/// come from a leader it cannot know yet) or a voter adopted by a bootstrap (whose
/// bootstrapper asks for its vote before any entry reaches it).
fn may_send<S: AppState>(raft: &Raft<S>, from: NodeId, kind: RpcKind) -> Result<(), RpcError> {
    use openraft::async_runtime::watch::WatchReceiver;
    let metrics = raft.metrics();
    let (known, voter, member) = {
        let m = metrics.borrow_watched();
        let membership = m.membership_config.membership();
        let seen = (
            membership.nodes().next().is_some(),
            membership.voter_ids().any(|v| v == from),
            membership.get_node(&from).is_some(),
        );
        seen
    };
    let allowed = match kind {
        RpcKind::Append | RpcKind::Snapshot => !known || member,
        RpcKind::Vote | RpcKind::PreVote => !known || voter,
        RpcKind::TransferLeader => voter,
    };
    if allowed {
        return Ok(());
    }
    let role = if member {
        "a learner"
    } else if known {
        "not in the Raft membership"
    } else {
        "not known here (this node holds no membership yet)"
    };
    Err(RpcError::NotAllowed(format!(
        "node {from:016x} is {role}: it may not send {kind:?} requests"
    )))
}

/// Answer an inbound Raft RPC: decode, hand to Raft, encode its result.
///
/// `from` is the node the transport authenticated as the sender: a request that speaks for
/// another node (a vote, an append or a snapshot under another leader id, a transfer from
/// another leader) is refused before Raft sees it, and so is one its role does not send
/// (`may_send`) — before its body is decoded.
pub async fn handle_rpc<S: AppState>(
    raft: &Raft<S>,
    inbound: &Inbound,
    from: NodeId,
    kind: RpcKind,
    body: &[u8],
) -> Result<Vec<u8>, RpcError> {
    let speaks_for = |claimed: NodeId| {
        if claimed == from {
            Ok(())
        } else {
            Err(RpcError::Refused(format!(
                "node {from:016x} sent a {kind:?} request in the name of node {claimed:016x}"
            )))
        }
    };
    may_send(raft, from, kind)?;
    Ok(match kind {
        RpcKind::Append => {
            let req: AppendEntriesRequest<TypeConfig> = decode(kind, body)?;
            speaks_for(req.vote.leader_id.voted_for)?;
            let last = req.entries.last().map(|e| e.log_id).or(req.prev_log_id);
            let leader = req.vote.leader_id;
            let mut newest = inbound.newest.lock().await;
            if newest.stale(&leader, last) {
                let done: Result<AppendEntriesResponse<TypeConfig>, RaftError<TypeConfig>> =
                    Ok(AppendEntriesResponse::Success);
                return Ok(to_cbor(&done));
            }
            let res = raft.append_entries(req).await;
            if let Ok(AppendEntriesResponse::Success) = &res {
                newest.took(leader, last);
            }
            to_cbor(&res)
        }
        RpcKind::Vote | RpcKind::PreVote => {
            let req: VoteRequest<TypeConfig> = decode(kind, body)?;
            speaks_for(req.vote.leader_id.voted_for)?;
            if kind == RpcKind::Vote {
                to_cbor(&raft.vote(req).await)
            } else {
                to_cbor(&raft.pre_vote(req).await)
            }
        }
        RpcKind::Snapshot => {
            let req: SnapshotRequest = decode(kind, body)?;
            speaks_for(req.vote.leader_id.voted_for)?;
            let last = req.meta.last_log_id;
            let leader = req.vote.leader_id;
            let mut newest = inbound.newest.lock().await;
            if newest.stale(&leader, last) {
                let done: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
                    Ok(SnapshotResponse::new(req.vote));
                return Ok(to_cbor(&done));
            }
            let Some(data) = gather(raft, inbound, from, &req).await? else {
                // A piece taken; the sender goes on.
                let more: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> =
                    Ok(SnapshotResponse::new(req.vote));
                return Ok(to_cbor(&more));
            };
            let (bytes, index) = (data.len(), req.meta.last_log_id.map(|l| l.index));
            let snap = openraft::Snapshot {
                meta: req.meta,
                snapshot: Cursor::new(data),
            };
            let res: Result<SnapshotResponse<TypeConfig>, RaftError<TypeConfig>> = raft
                .install_full_snapshot(req.vote, snap)
                .await
                .map_err(RaftError::Fatal);
            if res.is_ok() {
                newest.took(leader, last);
                tracing::info!(bytes, ?index, "installed a snapshot from the leader");
            }
            to_cbor(&res)
        }
        RpcKind::TransferLeader => {
            let req: TransferLeaderRequest<TypeConfig> = decode(kind, body)?;
            speaks_for(req.from_leader().leader_id.voted_for)?;
            let res: Result<TransferLeaderResponse<TypeConfig>, RaftError<TypeConfig>> = raft
                .handle_transfer_leader(req)
                .await
                .map_err(RaftError::Fatal);
            to_cbor(&res)
        }
    })
}

/// A snapshot being received piece by piece: from whom, under which vote, which snapshot,
/// and the bytes so far.
#[derive(Debug)]
struct Partial {
    from: NodeId,
    vote: Vote,
    id: String,
    data: Vec<u8>,
}

/// Take one piece of a snapshot from `from`; the whole snapshot once its last piece is in.
/// A piece under a vote not as new as this node's is refused before anything is buffered; a
/// first piece replaces another sender's transfer only under a vote at least as new as that
/// transfer's. A piece out of order (a retry after a timeout, another snapshot) is refused
/// and the gathering starts over: the sender sends the whole snapshot again.
async fn gather<S: AppState>(
    raft: &Raft<S>,
    inbound: &Inbound,
    from: NodeId,
    req: &SnapshotRequest,
) -> Result<Option<Vec<u8>>, RpcError> {
    if req.total > MAX_SNAPSHOT_BYTES {
        return Err(RpcError::Refused(format!(
            "a snapshot of {} bytes is over the {MAX_SNAPSHOT_BYTES}-byte limit",
            req.total
        )));
    }
    let ours = {
        use openraft::async_runtime::watch::WatchReceiver;
        raft.metrics().borrow_watched().vote
    };
    if !req.vote.ge(&ours) {
        return Err(RpcError::Refused(format!(
            "a snapshot piece under vote {}, which is not as new as this node's {ours}",
            req.vote
        )));
    }
    let id = format!("{:?}", req.meta.last_log_id);
    let mut partial = inbound.partial.lock().await;
    if req.offset == 0 {
        if let Some(p) = partial.as_ref().filter(|p| p.from != from) {
            if !req.vote.ge(&p.vote) {
                return Err(RpcError::Refused(format!(
                    "node {:016x} sends a snapshot under a newer vote",
                    p.from
                )));
            }
        }
        *partial = Some(Partial {
            from,
            vote: req.vote,
            id: id.clone(),
            data: Vec::new(),
        });
    }
    let fits = req
        .offset
        .checked_add(req.data.len() as u64)
        .is_some_and(|end| end <= req.total);
    match partial.as_mut() {
        Some(p)
            if p.from == from
                && p.vote == req.vote
                && p.id == id
                && p.data.len() as u64 == req.offset
                && fits =>
        {
            p.data.extend_from_slice(&req.data);
            if (p.data.len() as u64) < req.total {
                return Ok(None);
            }
            Ok(partial.take().map(|p| p.data))
        }
        // Another sender's transfer goes on; this piece is refused.
        Some(p) if p.from != from => Err(RpcError::Refused(format!(
            "snapshot up to {id}: node {:016x} is sending one",
            p.from
        ))),
        _ => {
            *partial = None;
            Err(RpcError::Refused(format!(
                "snapshot up to {id}: a piece at {} out of order",
                req.offset
            )))
        }
    }
}
