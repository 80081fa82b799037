//! Forming a cluster from identical nodes, and joining one.
//!
//! A node without a cluster first greets every peer it can reach. If one belongs to a
//! cluster, it adopts that cluster's id and asks to join (the leader adds it as a learner).
//! Otherwise it waits until it sees `--expect N` nodes without a cluster (itself included);
//! the one with the smallest node id among the N smallest picks a random cluster id, asks
//! the others to adopt it, and initializes Raft with the N as voters. If any refuses, it
//! releases the others and tries again.
//!
//! Nodes that start together do not all see each other at once: a node may see N fresh
//! nodes and be the smallest of them while a smaller one is still being discovered, and two
//! groups could each form a cluster (they would refuse each other for good). So the
//! smallest waits until its view of fresh nodes has not changed for [`SETTLE`], then shows
//! its plan to every fresh node it sees, voters too, before any adopts it: an `Adopt` whose
//! voters leave the receiver out, which it cannot adopt, only object to. Any that knows a
//! cluster already formed, or a fresh node smaller than every voter, objects, and the
//! smallest defers — before anyone adopted anything. A seed that every node was given as
//! `--peer` sees them all, so nodes started together around it form one cluster.
//!
//! The invariant: a node initializes Raft only with an empty Raft store, after every initial
//! voter has durably adopted the cluster id — so no node ever initializes twice, and no two
//! clusters share a node.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use shoal_net::wire::{CtlRequest, CtlResponse, Hello, Reason};
use shoal_net::{PeerRef, Transport};
use shoal_raft::NodeInfo;
use tracing::{info, warn};

use crate::cluster::node::{member_record, Node, CTL_TIMEOUT};
use crate::supervisor::Stop;
use crate::sync::Locked;

/// How long an adopted initial voter waits for the bootstrapper before asking to join.
const ADOPTED_PATIENCE: Duration = Duration::from_secs(10);

/// How long the fresh nodes a would-be bootstrapper sees must stay the same before it forms
/// a cluster of them.
pub const SETTLE: Duration = Duration::from_secs(2);

/// How long a node waits for fresh nodes, seeing none new, before it says why and what to
/// try.
const HINT_AFTER: Duration = Duration::from_secs(5);

/// Why a node may wait for peers for good, and what to try.
pub const WAITING_HINT: &str = ". Nodes find each other by mDNS on one LAN only, not on loopback or across subnets: on one machine start every node with `shoal node --local`; elsewhere give each node `--peer ADDRESS` of one that runs; for fewer nodes, `--expect N`";

/// Run until this node is a member of a cluster.
pub async fn run(node: Arc<Node>, mut stop: Stop) {
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut last_join = None::<Instant>;
    let mut rounds = 0u64;
    // The fresh node ids seen, and since when unchanged.
    let mut view: (Vec<u64>, Instant) = (Vec::new(), Instant::now());
    loop {
        if stop.or(tick.tick()).await.is_none() {
            return;
        }
        rounds += 1;
        for peer in node.peers.unknown_peers() {
            node.greet(peer).await;
        }
        // Once a second, ask again those that had no cluster when they said hello: a cluster
        // formed among them without this node (it was not chosen as an initial voter) is
        // how it learns whom to join — and, once it knows the cluster, more nodes to ask
        // to join through than the one it learnt it from.
        if rounds.is_multiple_of(5) {
            for peer in node.peers.clusterless_peers() {
                node.greet(peer).await;
            }
        }
        if node.is_member() || node.is_plain_worker() {
            set_status(&node, String::new());
            return;
        }
        if let Some(cluster) = node.cluster_id() {
            // Adopted, bootstrapped or joining: make sure Raft runs, then ask to join unless
            // the bootstrapper is about to make us a voter.
            if let Err(e) = node.start_raft().await {
                warn!(error = %e, "cannot start raft");
                continue;
            }
            let adopted = node
                .adopted
                .locked()
                .is_some_and(|t| t.elapsed() < ADOPTED_PATIENCE);
            if !adopted && last_join.is_none_or(|t: Instant| t.elapsed() > Duration::from_secs(2)) {
                last_join = Some(Instant::now());
                ask_to_join(&node, cluster).await;
            }
            continue;
        }
        let hellos = node.peers.hellos();
        if let Some(h) = hellos.iter().find(|h| h.cluster_id.is_some()) {
            let cluster = h.cluster_id.expect("checked");
            info!(cluster = format!("{cluster:016x}"), via = %h.info.peer_id, "found an existing cluster; joining it");
            if let Err(e) = node.set_cluster_id(Some(cluster)) {
                warn!(error = %e, "cannot record the cluster id");
            }
            continue;
        }
        let expect = node.settings.expect.max(1);
        let mut fresh: Vec<&Hello> = hellos.iter().filter(|h| h.cluster_id.is_none()).collect();
        fresh.sort_by_key(|h| h.node_id);
        // Every fresh node this node sees, as membership records, in id order.
        let everyone: Vec<(u64, NodeInfo)> = fresh
            .iter()
            .map(|h| (h.node_id, member_record(h.info.clone())))
            .collect();
        let ids: Vec<u64> = everyone.iter().map(|(id, _)| *id).collect();
        if ids != view.0 {
            view = (ids, Instant::now());
        }
        let seen = fresh.len() + 1;
        if seen < expect {
            set_status(&node, waiting(&node, seen, expect, view.1.elapsed()));
            continue;
        }
        let mut chosen: Vec<(u64, NodeInfo)> = everyone
            .iter()
            .cloned()
            .chain(std::iter::once((node.id, node.node_info())))
            .collect();
        chosen.sort_by_key(|(id, _)| *id);
        chosen.truncate(expect);
        if chosen[0].0 != node.id {
            set_status(&node, format!("seen {seen} of {expect} nodes; waiting for node {:016x} to bootstrap the cluster", chosen[0].0));
            continue;
        }
        if view.1.elapsed() < SETTLE && expect > 1 {
            set_status(
                &node,
                format!("seen {seen} of {expect} nodes; waiting for no new node for {SETTLE:?}"),
            );
            continue;
        }
        if let Err(e) = bootstrap(&node, &chosen, &everyone).await {
            warn!(error = %e, "bootstrap attempt failed; retrying once the view settles again");
            view.1 = Instant::now();
        }
    }
}

/// What a node waiting for fresh nodes says: how many it has seen, any peer refused, and
/// once it has seen none new for [`HINT_AFTER`], why it may wait for good and what to try.
fn waiting(node: &Node, seen: usize, expect: usize, unchanged_for: Duration) -> String {
    let refused = node
        .peers
        .any_incompatible()
        .map(|why| format!("; a peer is refused: {why}"))
        .unwrap_or_default();
    let hint = if unchanged_for >= HINT_AFTER {
        WAITING_HINT
    } else {
        ""
    };
    let more = expect - seen;
    let s = if more == 1 { "" } else { "s" };
    format!("waiting for {more} more node{s}, seen {seen} of {expect}{refused}{hint}")
}

fn set_status(node: &Node, status: String) {
    let mut s = node.status.locked();
    if *s != status {
        if !status.is_empty() {
            info!("{status}");
        }
        *s = status;
    }
}

/// Make `chosen` (this node first) the initial voters of a new cluster, unless one of
/// `fresh` (every other fresh node this node sees) objects.
async fn bootstrap(
    node: &Arc<Node>,
    chosen: &[(u64, NodeInfo)],
    fresh: &[(u64, NodeInfo)],
) -> anyhow::Result<()> {
    let cluster_id = loop {
        let id: u64 = rand::random();
        if id != 0 {
            break id;
        }
    };
    let voters: Vec<u64> = chosen.iter().map(|(id, _)| *id).collect();
    for (id, info) in fresh {
        let to = crate::cluster::rpc::peer_ref(info).map_err(anyhow::Error::msg)?;
        let plan = CtlRequest::Adopt {
            cluster_id,
            voters: voters.iter().copied().filter(|v| v != id).collect(),
        };
        match node.net.ctl(&to, plan, CTL_TIMEOUT).await {
            Ok(a) if a.refusal().is_some_and(|r| r.reason == Reason::NotAVoter) => {}
            // Gone or slow: it knows no more than the others.
            Err(e) => tracing::debug!(peer = %info.peer_id, error = %e, "no answer to the plan"),
            Ok(answer) => anyhow::bail!("{} objects to the new cluster: {answer:?}", info.peer_id),
        }
    }
    let mut adopted = Vec::new();
    for (id, info) in &chosen[1..] {
        let to = crate::cluster::rpc::peer_ref(info).map_err(anyhow::Error::msg)?;
        match node
            .net
            .ctl(
                &to,
                CtlRequest::Adopt {
                    cluster_id,
                    voters: voters.clone(),
                },
                CTL_TIMEOUT,
            )
            .await
        {
            Ok(CtlResponse::Ok) => adopted.push(to),
            answer => {
                release(node, &adopted, cluster_id).await;
                anyhow::bail!("node {id:016x} did not adopt the new cluster: {answer:?}");
            }
        }
    }
    node.set_cluster_id(Some(cluster_id))?;
    let h = node.start_raft().await?;
    let members: BTreeMap<u64, NodeInfo> = chosen.iter().cloned().collect();
    let shown: Vec<String> = voters
        .iter()
        .map(|&v| crate::cluster::identity::hex(v))
        .collect();
    info!(cluster = format!("{cluster_id:016x}"), voters = ?shown, "bootstrapping a new cluster");
    // Whoever wins the first election records the cluster id in the replicated state
    // (see `membership::run`).
    h.raft
        .initialize(members)
        .await
        .map_err(|e| anyhow::anyhow!("raft initialize: {e}"))?;
    Ok(())
}

async fn release(node: &Node, adopted: &[PeerRef], cluster_id: u64) {
    for to in adopted {
        let _ = node
            .net
            .ctl(to, CtlRequest::Release { cluster_id }, CTL_TIMEOUT)
            .await;
    }
}

/// Ask a same-cluster peer to have the leader add us as a learner.
async fn ask_to_join(node: &Node, cluster_id: u64) {
    let members: Vec<Hello> = node
        .peers
        .hellos()
        .into_iter()
        .filter(|h| h.cluster_id == Some(cluster_id))
        .collect();
    for h in members {
        let Ok(to) = h.info.peer_id.parse().map(|peer| PeerRef {
            peer,
            addrs: vec![],
        }) else {
            continue;
        };
        let req = CtlRequest::Join {
            cluster_id,
            node_id: node.id,
            info: node.peer_info(),
        };
        match node.net.ctl(&to, req, CTL_TIMEOUT).await {
            Ok(CtlResponse::Ok) => {
                info!(via = %h.info.peer_id, "asked to join; the leader added this node as a learner");
                return;
            }
            Ok(other) => tracing::debug!(via = %h.info.peer_id, ?other, "join not accepted yet"),
            Err(e) => tracing::debug!(via = %h.info.peer_id, error = %e, "join request failed"),
        }
    }
}
