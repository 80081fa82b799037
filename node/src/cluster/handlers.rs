//! The node's answers to what peers send: Raft RPCs and control requests (hello, adopt,
//! join, propose, heartbeat). Nothing from a node of another cluster reaches Raft, and what
//! a peer may say depends on whether it is a member (see `admission`).

use std::time::Instant;

use shoal_net::wire::{CtlRequest, CtlResponse, PeerInfo, RaftRequest, RaftResponse, Reason};
use shoal_net::{codec, PeerId, Transport};
use tracing::info;

use crate::cluster::answers;
use crate::cluster::identity::{hex, node_id};
use crate::cluster::members::{is_voter, member_id, standing, Standing};
use crate::cluster::node::{foreign_reason, member_record, Node, CTL_TIMEOUT};
use crate::cluster::rpc::answer_raft;
use crate::cluster::state::Command;
use crate::sync::{Locked, ReadWrite};

impl Node {
    /// Answer an inbound Raft RPC, in the form the asker reads.
    pub async fn on_raft(&self, peer: PeerId, req: RaftRequest) -> RaftResponse {
        let asker = self.peers.protocol(&peer);
        let judged = match self.stranger_turn(peer).await {
            Ok(judged) => judged,
            Err(why) => return RaftResponse::declined(Reason::TooSoon, why).for_protocol(asker),
        };
        self.answer_raft(peer, judged, req)
            .await
            .for_protocol(asker)
    }

    /// Answer an inbound control request, in the form the asker reads (a hello says it).
    pub async fn on_ctl(&self, peer: PeerId, req: CtlRequest) -> CtlResponse {
        let asker = match &req {
            CtlRequest::Hello(h) => Some(h.build.protocol),
            _ => self.peers.protocol(&peer),
        };
        if let Err(why) = self.stranger_turn(peer).await {
            return CtlResponse::declined(Reason::TooSoon, why).for_protocol(asker);
        }
        self.answer_ctl(peer, req).await.for_protocol(asker)
    }

    /// A key holder outside the cluster waits its turn ([`crate::cluster::pace`]); a member,
    /// a plain worker and anyone asking a node that knows no membership yet are answered at
    /// once. The peer's standing, judged once — again after a wait.
    async fn stranger_turn(&self, peer: PeerId) -> Result<Standing, String> {
        let judged = standing(self, &peer);
        if judged != Standing::Stranger {
            return Ok(judged);
        }
        self.pace.wait_turn(peer).await?;
        Ok(standing(self, &peer))
    }

    /// Answer a Raft RPC from `peer`, whose standing is `judged`.
    async fn answer_raft(&self, peer: PeerId, judged: Standing, req: RaftRequest) -> RaftResponse {
        let Some(ours) = self.cluster_id() else {
            return RaftResponse::declined(Reason::NoCluster, "this node has no cluster yet");
        };
        if req.cluster_id != ours {
            self.peers.note_foreign(peer, req.cluster_id, ours);
            return RaftResponse::declined(Reason::Foreign, foreign_reason(ours));
        }
        self.peers.seen(peer);
        if let Some(why) = self.peers.incompatible(&peer) {
            return RaftResponse::declined(Reason::Incompatible, why);
        }
        if judged == Standing::Stranger {
            return RaftResponse::declined(Reason::NotAMember, not_a_member(&peer));
        }
        match self.start_raft().await {
            Ok(h) => answer_raft(&h.raft, &h.inbound, node_id(&peer), &req).await,
            Err(e) => {
                RaftResponse::declined(Reason::NotReady, format!("raft is not running here: {e}"))
            }
        }
    }

    async fn answer_ctl(&self, peer: PeerId, req: CtlRequest) -> CtlResponse {
        self.peers.seen(peer);
        if let Some(why) = self.peers.incompatible(&peer) {
            if !matches!(req, CtlRequest::Hello(_)) {
                return CtlResponse::declined(Reason::Incompatible, why);
            }
        }
        match req {
            CtlRequest::Hello(h) => self.on_hello(peer, h),
            CtlRequest::Adopt { cluster_id, voters } => self.on_adopt(cluster_id, &voters),
            CtlRequest::Release { cluster_id } => self.on_release(cluster_id),
            CtlRequest::Join {
                cluster_id,
                node_id,
                info,
            } => {
                // A joiner asks for itself; a member may forward another's request.
                let own = node_id == crate::cluster::identity::node_id(&peer)
                    && info.peer_id == peer.to_string();
                if !own && member_id(self, &peer).is_none() {
                    return CtlResponse::declined(
                        Reason::NotAMember,
                        format!(
                            "peer {peer} asked to join as node {}, which is not its own id",
                            hex(node_id)
                        ),
                    );
                }
                self.on_join(cluster_id, node_id, info).await
            }
            CtlRequest::Heartbeat(hb) => match self.member_asking(hb.cluster_id, &peer) {
                Ok(from) => self.on_heartbeat(peer, from, hb),
                Err(refused) => *refused,
            },
            CtlRequest::Leave { cluster_id } => {
                if self.cluster_id() != Some(cluster_id) {
                    return CtlResponse::declined(Reason::Foreign, "another cluster");
                }
                let Some(from) = member_id(self, &peer) else {
                    return CtlResponse::declined(Reason::NotAMember, not_a_member(&peer));
                };
                match crate::cluster::membership::remove_member(self, from).await {
                    Ok(()) => CtlResponse::Ok,
                    Err(why) => CtlResponse::declined(Reason::Failed, why),
                }
            }
            CtlRequest::Heard { cluster_id } => match self.member_asking(cluster_id, &peer) {
                Ok(from) => match self.heartbeats.heard_for(from) {
                    Ok(all) => CtlResponse::Heartbeats(all),
                    Err(why) => CtlResponse::declined(Reason::TooSoon, why),
                },
                Err(refused) => *refused,
            },
            CtlRequest::ListInputs {
                cluster_id,
                pattern,
                split_size,
                max_record,
            } => {
                if let Err(refused) = self.member_asking(cluster_id, &peer) {
                    return *refused;
                }
                match self.list_inputs(pattern, split_size, max_record).await {
                    Ok(splits) => CtlResponse::InputSplits(splits),
                    Err(why) => CtlResponse::declined(Reason::Failed, why),
                }
            }
            CtlRequest::Push { cluster_id, push } => match self.cluster_id() {
                Some(ours) if ours == cluster_id => {
                    answers::push(self.is_member(), &self.pushed, node_id(&peer), &push)
                }
                Some(ours) => CtlResponse::Foreign { cluster_id: ours },
                None => CtlResponse::declined(Reason::NoCluster, "this node has no cluster yet"),
            },
            CtlRequest::Propose {
                cluster_id,
                command,
            } => match self.member_asking(cluster_id, &peer) {
                Ok(from) => answers::propose(self, from, command).await,
                Err(refused) => *refused,
            },
        }
    }

    /// The member id of `peer`, asking in the name of `cluster_id`; or the answer that
    /// refuses it: another cluster, none here yet, or not a member.
    fn member_asking(&self, cluster_id: u64, peer: &PeerId) -> Result<u64, Box<CtlResponse>> {
        let refused = match self.cluster_id() {
            Some(ours) if ours == cluster_id => match member_id(self, peer) {
                Some(from) => return Ok(from),
                None => CtlResponse::declined(Reason::NotAMember, not_a_member(peer)),
            },
            Some(ours) => CtlResponse::Foreign { cluster_id: ours },
            None => CtlResponse::declined(Reason::NoCluster, "this node has no cluster yet"),
        };
        Err(Box::new(refused))
    }

    fn on_hello(&self, peer: PeerId, h: shoal_net::wire::Hello) -> CtlResponse {
        if let Some(why) = self.settings.build.incompatible(&h.build) {
            self.peers.note_incompatible(peer, why.clone());
            return CtlResponse::declined(Reason::Incompatible, why);
        }
        if let (Some(ours), Some(theirs)) = (self.cluster_id(), h.cluster_id) {
            if ours != theirs {
                self.peers.note_foreign(peer, theirs, ours);
                return CtlResponse::Foreign { cluster_id: ours };
            }
        }
        if !self.peers.record_hello(peer, h, self.cluster_id()) {
            return CtlResponse::declined(
                Reason::NotAMember,
                format!(
                    "peer {peer} is node {}: a hello names its sender",
                    hex(node_id(&peer))
                ),
            );
        }
        CtlResponse::Hello(self.hello())
    }

    fn on_release(&self, cluster_id: u64) -> CtlResponse {
        if self.cluster_id() == Some(cluster_id) && self.raft.get().is_none() {
            info!(
                cluster = format!("{cluster_id:016x}"),
                "bootstrap aborted by its initiator; forgetting the cluster id"
            );
            *self.adopted.locked() = None;
            if let Err(e) = self.set_cluster_id(None) {
                return CtlResponse::declined(Reason::Failed, e.to_string());
            }
        }
        CtlResponse::Ok
    }

    /// Member `from`'s heartbeat, sent by `peer`: in its own name, of a protocol this node
    /// reads.
    fn on_heartbeat(&self, peer: PeerId, from: u64, hb: shoal_net::wire::Heartbeat) -> CtlResponse {
        if hb.node_id != from {
            return CtlResponse::declined(
                Reason::NotAMember,
                format!(
                    "node {} sent a heartbeat in the name of node {}",
                    hex(from),
                    hex(hb.node_id)
                ),
            );
        }
        if let Some(why) = self.settings.build.incompatible(&hb.build) {
            self.peers.note_incompatible(peer, why.clone());
            return CtlResponse::declined(Reason::Incompatible, why);
        }
        answers::heartbeat(&self.heartbeats, hb, is_voter(self, from))
    }
    fn on_adopt(&self, cluster_id: u64, voters: &[u64]) -> CtlResponse {
        match self.cluster_id() {
            Some(c) if c == cluster_id => CtlResponse::Ok,
            Some(c) => CtlResponse::Foreign { cluster_id: c },
            None if let Some(why) = self.adopting_would_split(cluster_id, voters) => {
                CtlResponse::declined(Reason::WouldSplit, why)
            }
            None if !voters.contains(&self.id) => {
                CtlResponse::declined(Reason::NotAVoter, "this node is not among the voters")
            }
            None => match self.store.has_raft_state() {
                Ok(true) => {
                    CtlResponse::declined(Reason::Forbidden, "this node already has Raft state")
                }
                Err(e) => CtlResponse::declined(Reason::Failed, e.to_string()),
                Ok(false) => match self.set_cluster_id(Some(cluster_id)) {
                    Ok(()) => {
                        info!(
                            cluster = format!("{cluster_id:016x}"),
                            "adopted as an initial voter of a new cluster"
                        );
                        *self.adopted.locked() = Some(Instant::now());
                        CtlResponse::Ok
                    }
                    Err(e) => CtlResponse::declined(Reason::Failed, e.to_string()),
                },
            },
        }
    }

    /// Why adopting a new cluster of `voters` (or, for a node not among them, letting it
    /// form) could make a second cluster: this node knows one already formed, or a fresh
    /// node smaller than every voter (the one that should bootstrap) that they left out.
    /// The asker learns of it and defers. (A voter that already adopted `cluster_id` is
    /// this cluster, not another.)
    fn adopting_would_split(&self, cluster_id: u64, voters: &[u64]) -> Option<String> {
        let smallest = voters.iter().copied().min()?;
        let hellos = self.peers.hellos();
        if let Some(c) = hellos
            .iter()
            .filter_map(|h| h.cluster_id)
            .find(|c| *c != cluster_id)
        {
            return Some(format!(
                "this node knows cluster {c:016x} already formed; join it"
            ));
        }
        hellos
            .iter()
            .filter(|h| h.node_id < smallest && !voters.contains(&h.node_id))
            .map(|h| h.node_id)
            .min()
            .map(|n| format!("node {n:016x} is smaller and has no cluster yet; it forms one"))
    }

    async fn on_join(&self, cluster_id: u64, node_id: u64, info: PeerInfo) -> CtlResponse {
        let Some(ours) = self.cluster_id() else {
            return CtlResponse::declined(Reason::NoCluster, "this node has no cluster yet");
        };
        if cluster_id != ours {
            return CtlResponse::Foreign { cluster_id: ours };
        }
        let Some(h) = self.raft.get() else {
            return CtlResponse::declined(Reason::NotReady, "raft is not running here yet");
        };
        let metrics = shoal_raft::metrics(&h.raft);
        match metrics.current_leader {
            Some(leader) if leader == self.id => {
                if self.joins_as_worker(h, &metrics, node_id) {
                    let cmd = Command::Worker {
                        node_id,
                        info: member_record(info),
                    };
                    return match crate::cluster::propose::write_local(self, codec::encode(&cmd))
                        .await
                    {
                        Ok(_) => {
                            // It holds nothing the leader sent before: everything again.
                            self.pushes.reset(node_id);
                            info!(joiner = %hex(node_id), "added a plain worker");
                            CtlResponse::Ok
                        }
                        Err(e) => CtlResponse::declined(
                            Reason::Failed,
                            format!("adding the worker failed: {e}"),
                        ),
                    };
                }
                match h
                    .raft
                    .add_learner(node_id, member_record(info), false)
                    .await
                {
                    Ok(_) => {
                        info!(joiner = node_id, "added a learner");
                        CtlResponse::Ok
                    }
                    Err(e) => CtlResponse::declined(
                        Reason::Failed,
                        format!("adding the learner failed: {e}"),
                    ),
                }
            }
            // A member forwards to Raft's leader; a plain worker (it says hello with the
            // cluster's id, so a joiner may ask it) to the leader that pushes it.
            _ => {
                let Some(leader) = crate::cluster::members::leader(self) else {
                    return CtlResponse::declined(Reason::NoLeader, "no leader yet");
                };
                let Some(to) = crate::cluster::members::reach(self, leader) else {
                    return CtlResponse::declined(
                        Reason::NoLeader,
                        "the leader's address is unknown",
                    );
                };
                let fwd = CtlRequest::Join {
                    cluster_id,
                    node_id,
                    info,
                };
                self.net
                    .ctl(&to, fwd, CTL_TIMEOUT)
                    .await
                    .unwrap_or_else(|e| CtlResponse::declined(Reason::Failed, e.to_string()))
            }
        }
    }
}

impl Node {
    /// Whether joiner `id` is (again) a plain worker: not a member, and a worker already or
    /// beyond `--learners` — and it speaks protocol 1.3, which has pushes.
    fn joins_as_worker(
        &self,
        h: &crate::cluster::node::RaftHandle,
        metrics: &shoal_raft::Metrics,
        id: u64,
    ) -> bool {
        let m = metrics.membership_config.membership();
        if m.get_node(&id).is_some() {
            return false;
        }
        let pushes = self
            .peers
            .by_node(|h| h.build.protocol)
            .get(&id)
            .is_some_and(|p| p.at_least(1, 3));
        let worker = h.applied.read_now().state.workers.contains_key(&id);
        pushes && (worker || m.learner_ids().count() >= self.settings.learner_cap)
    }
}

/// The refusal sent to a key holder that is not a member.
fn not_a_member(peer: &PeerId) -> String {
    format!(
        "peer {peer} (node {}) is not a member of this cluster: join it first",
        hex(node_id(peer))
    )
}
