//! Raft over libp2p: [`NetRpc`] implements the raft crate's RPC trait with `/shoal/raft/1`
//! requests that carry the cluster id; [`answer_raft`] serves inbound ones.
//!
//! The invariant: a Raft message from another cluster, or for a node that has no cluster
//! yet, is refused without touching Raft.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use shoal_net::wire::{RaftRequest, RaftResponse, Reason};
use shoal_net::{codec, Client, Multiaddr, PeerId, PeerRef, Transport};
use shoal_raft::{NodeId, NodeInfo, RaftRpc, RpcError, RpcKind};

/// What a `/shoal/raft/1` request carries: which RPC, and its CBOR body.
#[derive(Serialize, Deserialize)]
pub struct Payload {
    /// Which RPC.
    pub kind: RpcKind,
    /// The RPC's request, CBOR.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
}

/// Where a node listed in the membership can be reached.
pub fn peer_ref(info: &NodeInfo) -> Result<PeerRef, String> {
    let peer: PeerId = info
        .peer_id
        .parse()
        .map_err(|e| format!("bad peer id {:?}: {e}", info.peer_id))?;
    let addrs = info
        .addrs
        .iter()
        .filter_map(|a| a.parse::<Multiaddr>().ok())
        .collect();
    Ok(PeerRef { peer, addrs })
}

/// Raft's RPCs over a [`Transport`]: the libp2p client in a node, the simulated network in
/// the simulator.
#[derive(Clone)]
pub struct NetRpc<T: Transport = Client> {
    /// The transport.
    pub net: T,
    /// This node's cluster id, which every request carries.
    pub cluster: Arc<RwLock<Option<u64>>>,
}

impl<T: Transport> RaftRpc for NetRpc<T> {
    async fn call(
        &self,
        _target: NodeId,
        node: &NodeInfo,
        kind: RpcKind,
        body: Vec<u8>,
        timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        let cluster_id = self
            .cluster
            .read()
            .ok()
            .and_then(|c| *c)
            .ok_or_else(|| RpcError::Unreachable("this node has no cluster id yet".into()))?;
        let to = peer_ref(node).map_err(RpcError::Unreachable)?;
        let req = RaftRequest {
            cluster_id,
            payload: codec::encode(&Payload { kind, body }),
        };
        match self
            .net
            .raft(&to, req, timeout.min(Duration::from_secs(30)))
            .await
        {
            Ok(RaftResponse::Ok(bytes)) => Ok(bytes),
            Ok(RaftResponse::Refused(why)) => Err(RpcError::Refused(why)),
            Ok(RaftResponse::Declined(r)) if r.reason == Reason::Forbidden => {
                Err(RpcError::NotAllowed(r.why))
            }
            Ok(RaftResponse::Declined(r)) => Err(RpcError::Refused(r.why)),
            Err(e) => Err(RpcError::Unreachable(e.to_string())),
        }
    }
}

/// Answer an inbound Raft request from node `from` (as the transport authenticated it)
/// addressed to `raft` (already checked for the cluster id and the sender's membership).
pub async fn answer_raft<S: shoal_raft::AppState>(
    raft: &shoal_raft::Raft<S>,
    inbound: &shoal_raft::Inbound,
    from: NodeId,
    req: &RaftRequest,
) -> RaftResponse {
    let payload: Payload = match codec::decode(&req.payload) {
        Ok(p) => p,
        Err(e) => {
            return RaftResponse::declined(
                Reason::Malformed,
                format!("malformed Raft payload: {e}"),
            )
        }
    };
    match shoal_raft::handle_rpc(raft, inbound, from, payload.kind, &payload.body).await {
        Ok(bytes) => RaftResponse::Ok(bytes),
        Err(RpcError::NotAllowed(why)) => {
            tracing::warn!(from = %crate::cluster::identity::hex(from), %why, "refused a Raft request");
            RaftResponse::declined(Reason::Forbidden, why)
        }
        Err(e) => RaftResponse::declined(Reason::Failed, e.to_string()),
    }
}
