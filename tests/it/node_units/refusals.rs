//! Each kind of refusal a node sends, as the asker receives it: typed (`Declined`) for a
//! node whose hello said protocol 1.6, the text alone (`Refused`) for one that has not said,
//! with the very sentences protocol 1.5 compared.

use std::sync::Arc;

use shoal_net::wire::{
    Build, CtlRequest, CtlResponse, Hello, PeerInfo, Protocol, RaftRequest, RaftResponse, Reason,
    PROTOCOL,
};
use shoal_net::{codec, Keypair, PeerId};

use shoal_node::cluster::identity::node_id;
use shoal_node::cluster::node::{Node, Settings};
use shoal_node::cluster::pushed::Push;

const CLUSTER: u64 = 0x0c1a_55e5;

async fn node() -> Arc<Node> {
    let keypair = Keypair::generate_ed25519();
    let peer_id = keypair.public().to_peer_id();
    let (net, _events, event_loop) = shoal_net::start(shoal_net::Config {
        keypair,
        listen: vec!["/ip4/127.0.0.1/tcp/0".parse().expect("a multiaddr")],
        peers: vec![],
        mdns: false,
        psk: None,
    })
    .expect("the network starts");
    tokio::spawn(event_loop.run());
    let settings = Settings {
        expect: 1,
        timing: shoal_raft::Timing::default(),
        voter_cap: 3,
        learner_cap: 4,
        slots: 1,
        replication: 0,
        node_timeout: std::time::Duration::from_secs(5),
        voter_grace: std::time::Duration::from_secs(30),
        retain_jobs: 10,
        sandbox: Default::default(),
        min_free_mb: 0,
        input_root: None,
        build: Build::this(PROTOCOL),
    };
    let info = PeerInfo {
        peer_id: peer_id.to_string(),
        ..PeerInfo::default()
    };
    let store = shoal_raft::Store::in_memory().expect("a store");
    Arc::new(Node::new(node_id(&peer_id), peer_id, info, store, net, settings).expect("a node"))
}

/// A peer of its own key, and the hello it says (with `protocol`, in `cluster`).
fn asker(protocol: Protocol, cluster: Option<u64>) -> (PeerId, Hello) {
    let peer = Keypair::generate_ed25519().public().to_peer_id();
    let hello = Hello {
        node_id: node_id(&peer),
        info: PeerInfo {
            peer_id: peer.to_string(),
            ..PeerInfo::default()
        },
        cluster_id: cluster,
        build: Build::this(protocol),
    };
    (peer, hello)
}

/// An asker of this build that said hello to `node`.
async fn greeted(node: &Node) -> PeerId {
    let (peer, hello) = asker(PROTOCOL, None);
    let answer = node.on_ctl(peer, CtlRequest::Hello(hello)).await;
    assert!(matches!(answer, CtlResponse::Hello(_)), "{answer:?}");
    peer
}

fn declined(answer: &CtlResponse) -> Reason {
    match answer {
        CtlResponse::Declined(r) => r.reason,
        other => panic!("expected a typed refusal, got {other:?}"),
    }
}

fn heartbeat(node_id: u64, cluster_id: u64) -> CtlRequest {
    CtlRequest::Heartbeat(shoal_net::wire::Heartbeat {
        cluster_id,
        node_id,
        slots: 1,
        busy: 0,
        running: vec![],
        disk_bytes: 0,
        disk_low: false,
        build: Build::this(PROTOCOL),
    })
}

/// A joiner asking to join this cluster for itself.
fn join_as(peer: PeerId) -> CtlRequest {
    CtlRequest::Join {
        cluster_id: CLUSTER,
        node_id: node_id(&peer),
        info: PeerInfo {
            peer_id: peer.to_string(),
            ..PeerInfo::default()
        },
    }
}

fn push(leader: u64, base: u64) -> CtlRequest {
    let p = Push {
        term: 1,
        leader,
        seq: base + 1,
        base,
        ..Push::default()
    };
    CtlRequest::Push {
        cluster_id: CLUSTER,
        push: codec::encode(&p),
    }
}

#[tokio::test]
async fn before_a_cluster_a_node_refuses_as_having_none_or_as_not_a_voter() {
    let node = node().await;
    let peer = greeted(&node).await;
    let a = node.on_ctl(peer, heartbeat(node_id(&peer), CLUSTER)).await;
    assert_eq!(declined(&a), Reason::NoCluster);
    let adopt = CtlRequest::Adopt {
        cluster_id: CLUSTER,
        voters: vec![1, 2],
    };
    assert_eq!(
        declined(&node.on_ctl(peer, adopt.clone()).await),
        Reason::NotAVoter
    );
    // A node that has not said its protocol reads the sentence protocol 1.5 compared.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    assert_eq!(
        node.on_ctl(stranger, adopt).await,
        CtlResponse::Refused("this node is not among the voters".into())
    );
}

#[tokio::test]
async fn a_node_that_knows_another_cluster_objects_to_forming_a_new_one() {
    let node = node().await;
    let (peer, hello) = asker(PROTOCOL, Some(CLUSTER + 1));
    node.peers.set_connected(peer, true);
    node.on_ctl(peer, CtlRequest::Hello(hello)).await;
    let adopt = CtlRequest::Adopt {
        cluster_id: CLUSTER,
        voters: vec![node.id],
    };
    assert_eq!(
        declined(&node.on_ctl(peer, adopt).await),
        Reason::WouldSplit
    );
}

#[tokio::test]
async fn another_protocol_major_is_refused_as_incompatible() {
    let node = node().await;
    let (peer, hello) = asker(Protocol { major: 2, minor: 0 }, None);
    let a = node.on_ctl(peer, CtlRequest::Hello(hello)).await;
    assert_eq!(declined(&a), Reason::Incompatible);
    // And anything it asks next, in text alone: its hello was refused, so this node does
    // not know what it reads.
    let a = node.on_ctl(peer, heartbeat(node_id(&peer), CLUSTER)).await;
    assert!(matches!(a, CtlResponse::Refused(_)), "{a:?}");
}

#[tokio::test]
async fn a_stranger_is_no_member_another_cluster_is_foreign_and_raft_must_be_running() {
    let node = node().await;
    node.set_cluster_id(Some(CLUSTER)).expect("stored");
    let peer = greeted(&node).await;
    let a = node.on_ctl(peer, heartbeat(node_id(&peer), CLUSTER)).await;
    assert_eq!(declined(&a), Reason::NotAMember);
    let raft = RaftRequest {
        cluster_id: CLUSTER + 1,
        payload: vec![],
    };
    match node.on_raft(peer, raft).await {
        RaftResponse::Declined(r) => assert_eq!(r.reason, Reason::Foreign),
        other => panic!("expected a typed refusal, got {other:?}"),
    }
    // A joiner asking for itself, before Raft runs here.
    let join = join_as(peer);
    assert_eq!(declined(&node.on_ctl(peer, join).await), Reason::NotReady);
}

#[tokio::test]
async fn a_plain_worker_says_which_push_it_needs_and_refuses_impostors() {
    let node = node().await;
    node.set_cluster_id(Some(CLUSTER)).expect("stored");
    let leader = greeted(&node).await;
    let me = node_id(&leader);
    let malformed = CtlRequest::Push {
        cluster_id: CLUSTER,
        push: vec![0xff, 0x00],
    };
    assert_eq!(
        declined(&node.on_ctl(leader, malformed).await),
        Reason::Malformed
    );
    assert_eq!(
        declined(&node.on_ctl(leader, push(me + 1, 0)).await),
        Reason::NotAMember
    );
    assert_eq!(
        declined(&node.on_ctl(leader, push(me, 0)).await),
        Reason::RosterWanted
    );
    assert_eq!(
        declined(&node.on_ctl(leader, push(me, 3)).await),
        Reason::OutOfStep
    );
}

/// Make `node` a voter of a two-voter cluster with `other`, which is not running: no
/// election can be won, so no leader is ever known here.
async fn voter_beside(node: &Node, other: PeerId) {
    node.set_cluster_id(Some(CLUSTER)).expect("stored");
    let h = node.start_raft().await.expect("raft starts");
    let record = |peer: PeerId| shoal_raft::NodeInfo {
        peer_id: peer.to_string(),
        ..shoal_raft::NodeInfo::default()
    };
    let members = std::collections::BTreeMap::from([
        (node.id, record(node.peer_id)),
        (node_id(&other), record(other)),
    ]);
    h.raft.initialize(members).await.expect("initialized");
}

#[tokio::test]
async fn a_member_is_told_too_soon_no_leader_forbidden_and_failed() {
    let node = node().await;
    let member = greeted(&node).await;
    voter_beside(&node, member).await;
    // Asked for the heartbeats twice at once.
    let heard = CtlRequest::Heard {
        cluster_id: CLUSTER,
    };
    let first = node.on_ctl(member, heard.clone()).await;
    assert!(matches!(first, CtlResponse::Heartbeats(_)), "{first:?}");
    assert_eq!(declined(&node.on_ctl(member, heard).await), Reason::TooSoon);
    // A joiner forwarded to a leader nobody has.
    let (joiner, _) = asker(PROTOCOL, None);
    let join = join_as(joiner);
    assert_eq!(declined(&node.on_ctl(member, join).await), Reason::NoLeader);
    // A member reads the Raft log: a push to it is forbidden; so is what only the manager
    // proposes.
    assert_eq!(
        declined(&node.on_ctl(member, push(node_id(&member), 0)).await),
        Reason::Forbidden
    );
    let lost = shoal_node::cluster::state::Command::Jobs(shoal_jobs::cluster::Command::NodeLost {
        node: node.id,
        at_ms: 1,
    });
    let propose = CtlRequest::Propose {
        cluster_id: CLUSTER,
        command: codec::encode(&lost),
    };
    assert_eq!(
        declined(&node.on_ctl(member, propose).await),
        Reason::Forbidden
    );
    // A command over the log's bound is refused before it is decoded: the append that would
    // carry it could never be sent, and nothing after it would commit.
    let huge = CtlRequest::Propose {
        cluster_id: CLUSTER,
        command: vec![0; shoal_node::cluster::state::MAX_COMMAND_BYTES + 1],
    };
    let answer = node.on_ctl(member, huge).await;
    assert_eq!(declined(&answer), Reason::Malformed);
    assert!(
        answer
            .refusal()
            .is_some_and(|r| r.why.contains("over the log's bound")),
        "{answer:?}"
    );
    // Leaving asks the leader; this node is not it, and says its attempt failed.
    let leave = CtlRequest::Leave {
        cluster_id: CLUSTER,
    };
    assert_eq!(declined(&node.on_ctl(member, leave).await), Reason::Failed);
    // The same refusal, to a node that has not said it reads reasons: the text alone.
    let stranger = Keypair::generate_ed25519().public().to_peer_id();
    let join = join_as(stranger);
    assert_eq!(
        node.on_ctl(stranger, join).await,
        CtlResponse::Refused("no leader yet".into())
    );
}

#[tokio::test]
async fn a_plain_worker_refuses_a_second_leader_while_its_own_is_heard() {
    let node = node().await;
    node.set_cluster_id(Some(CLUSTER)).expect("stored");
    let leader = greeted(&node).await;
    let impostor = greeted(&node).await;
    let me = node_id(&leader);
    let record = |peer: PeerId| shoal_raft::NodeInfo {
        peer_id: peer.to_string(),
        ..shoal_raft::NodeInfo::default()
    };
    let full = Push {
        term: 1,
        leader: me,
        seq: 1,
        base: 0,
        roster: Some(vec![
            (me, record(leader), shoal_node::cluster::pushed::Role::Voter),
            (
                node.id,
                record(node.peer_id),
                shoal_node::cluster::pushed::Role::Worker,
            ),
        ]),
        ..Push::default()
    };
    let to_worker = |p: &Push| CtlRequest::Push {
        cluster_id: CLUSTER,
        push: codec::encode(p),
    };
    let answer = node.on_ctl(leader, to_worker(&full)).await;
    assert_eq!(answer, CtlResponse::Ok);
    let mut other = full.clone();
    other.leader = node_id(&impostor);
    other.term = 1 << 40;
    assert_eq!(
        declined(&node.on_ctl(impostor, to_worker(&other)).await),
        Reason::NotTheLeader
    );
    assert_eq!(node.pushed.leader(), Some(me));
}
