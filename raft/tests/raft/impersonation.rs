//! A Raft RPC that speaks in another node's name — a vote for a candidate that is not its
//! sender — is refused before Raft sees it; the same request from that node is answered. A
//! node outside the membership sends none at all.

use std::time::Duration;

use crate::common::Counter;
use openraft::raft::VoteRequest;
use shoal_raft::types::Vote;
use shoal_raft::{
    handle_rpc, Inbound, NodeId, NodeInfo, RaftRpc, RpcError, RpcKind, Store, Timing, TypeConfig,
};

/// A network that reaches no one: this node only answers.
#[derive(Clone)]
struct Nowhere;

impl RaftRpc for Nowhere {
    async fn call(
        &self,
        _target: NodeId,
        _node: &NodeInfo,
        _kind: RpcKind,
        _body: Vec<u8>,
        _timeout: Duration,
    ) -> Result<Vec<u8>, RpcError> {
        Err(RpcError::Unreachable("nowhere".into()))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_in_another_node_s_name_is_refused() {
    let store = Store::in_memory().unwrap();
    let (raft, _) = shoal_raft::start::<Counter, _>(1, &store, Timing::default(), Nowhere, 7)
        .await
        .unwrap();
    let voters: std::collections::BTreeMap<NodeId, NodeInfo> =
        (1..=3).map(|id| (id, NodeInfo::default())).collect();
    raft.initialize(voters).await.unwrap();
    let inbound = Inbound::default();
    let request = VoteRequest::<TypeConfig>::new(Vote::new(5, 2), None);
    let mut body = Vec::new();
    ciborium::into_writer(&request, &mut body).unwrap();
    for kind in [RpcKind::Vote, RpcKind::PreVote] {
        match handle_rpc(&raft, &inbound, 3, kind, &body).await {
            Err(RpcError::Refused(why)) => assert!(
                why.contains("in the name of node 0000000000000002"),
                "{why}"
            ),
            other => panic!("node 3 voted as node 2: {other:?}"),
        }
        assert!(
            handle_rpc(&raft, &inbound, 2, kind, &body).await.is_ok(),
            "node 2's own request reaches Raft"
        );
    }
    raft.shutdown().await.unwrap();
}

/// A node outside the membership (a plain worker, a key holder) sends no Raft RPC of any kind:
/// refused by its role before its body is even decoded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_outside_the_membership_may_send_no_raft_rpc() {
    let store = Store::in_memory().unwrap();
    let (raft, _) = shoal_raft::start::<Counter, _>(1, &store, Timing::default(), Nowhere, 7)
        .await
        .unwrap();
    let inbound = Inbound::default();
    // Before this node holds a membership, it hands leadership to nobody.
    assert!(matches!(
        handle_rpc(&raft, &inbound, 4, RpcKind::TransferLeader, b"").await,
        Err(RpcError::NotAllowed(_))
    ));
    let voters: std::collections::BTreeMap<NodeId, NodeInfo> =
        (1..=3).map(|id| (id, NodeInfo::default())).collect();
    raft.initialize(voters).await.unwrap();
    raft.wait(Some(Duration::from_secs(10)))
        .voter_ids([1, 2, 3], "the membership")
        .await
        .unwrap();
    for kind in [
        RpcKind::Append,
        RpcKind::Vote,
        RpcKind::PreVote,
        RpcKind::Snapshot,
        RpcKind::TransferLeader,
    ] {
        // The body is garbage: the role is judged first.
        match handle_rpc(&raft, &inbound, 4, kind, b"not cbor").await {
            Err(RpcError::NotAllowed(why)) => assert!(
                why.contains("is not in the Raft membership"),
                "{kind:?}: {why}"
            ),
            other => panic!("node 4 sent a {kind:?}: {other:?}"),
        }
    }
    raft.shutdown().await.unwrap();
}
