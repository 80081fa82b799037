//! What a node knows of its peers: their hellos, connections, last signs of life and
//! clusters, and the warnings it has already logged about them.
//!
//! The invariant: the book is bounded whatever identities connect. A peer that is not
//! connected and has not been heard from for [`FORGET_AFTER`] is forgotten; beyond
//! [`MAX_PEERS`] entries, those not connected are forgotten, the longest silent first. The
//! warnings logged once are at most [`MAX_LOGGED`] keys (then they may be logged again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use shoal_net::wire::Hello;
use shoal_net::PeerId;
use tracing::warn;

use crate::sync::Locked;

/// Peers remembered: connected ones (at most the network's 1,024 connections) and those
/// not connected, heard from lately.
pub const MAX_PEERS: usize = 4096;
/// A peer neither connected nor heard from this long is forgotten.
pub const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Keys of warnings logged once, remembered at most.
pub const MAX_LOGGED: usize = 4096;
/// How often, at most, the book looks for peers to forget as they come and go.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// What this node knows about a peer.
#[derive(Debug, Default, Clone)]
pub struct PeerEntry {
    /// Its last hello.
    pub hello: Option<Hello>,
    /// An open connection.
    pub connected: bool,
    /// Last sign of life (ping, message).
    pub last_seen: Option<Instant>,
    /// Its cluster, when it is not ours.
    pub foreign: Option<u64>,
    /// Why it cannot be talked to: a wire protocol of another major (either side may have
    /// found out), naming both versions.
    pub incompatible: Option<String>,
}

/// The peers one node knows.
#[derive(Debug)]
pub struct PeerBook {
    peers: Mutex<BTreeMap<PeerId, PeerEntry>>,
    /// When peers not heard from were last looked for.
    swept: Mutex<Instant>,
    logged: Mutex<HashSet<String>>,
    /// A peer silent this long is not offered work or messages (`--node-timeout`).
    node_timeout: Duration,
}

impl PeerBook {
    /// An empty book; peers silent for `node_timeout` are left out of [`PeerBook::hellos`].
    pub fn new(node_timeout: Duration) -> Self {
        PeerBook {
            peers: Mutex::default(),
            swept: Mutex::new(Instant::now()),
            logged: Mutex::default(),
            node_timeout,
        }
    }

    /// Every peer and what is known of it.
    pub fn all(&self) -> BTreeMap<PeerId, PeerEntry> {
        self.peers.locked().clone()
    }

    /// Log `message` once per `key` (foreign peers, refused handshakes).
    pub fn warn_once(&self, key: String, message: impl FnOnce() -> String) {
        let mut logged = self.logged.locked();
        if logged.len() >= MAX_LOGGED && !logged.contains(&key) {
            logged.clear();
        }
        if logged.insert(key) {
            warn!("{} (logged once)", message());
        }
    }

    fn with_peer<T>(&self, peer: PeerId, f: impl FnOnce(&mut PeerEntry) -> T) -> T {
        let mut peers = self.peers.locked();
        if !peers.contains_key(&peer) {
            self.forget(&mut peers, Instant::now());
        }
        f(peers.entry(peer).or_default())
    }

    /// Forget peers gone for [`FORGET_AFTER`] (at most once per [`SWEEP_EVERY`]) and, with
    /// the book full, those not connected, the longest silent first, until a quarter of it
    /// is free.
    fn forget(&self, peers: &mut BTreeMap<PeerId, PeerEntry>, now: Instant) {
        let full = peers.len() >= MAX_PEERS;
        let mut swept = self.swept.locked();
        if !full && now.saturating_duration_since(*swept) < SWEEP_EVERY {
            return;
        }
        *swept = now;
        let gone = |p: &PeerEntry| {
            !p.connected
                && p.last_seen
                    .is_none_or(|t| now.saturating_duration_since(t) >= FORGET_AFTER)
        };
        peers.retain(|_, p| !gone(p));
        if peers.len() < MAX_PEERS {
            return;
        }
        let mut silent: Vec<(Option<Instant>, PeerId)> = peers
            .iter()
            .filter(|(_, p)| !p.connected)
            .map(|(id, p)| (p.last_seen, *id))
            .collect();
        silent.sort_unstable();
        let over = peers.len().saturating_sub(MAX_PEERS * 3 / 4);
        for (_, id) in silent.into_iter().take(over) {
            peers.remove(&id);
        }
    }

    /// Forget the peers that are gone, as [`PeerBook`] does as peers come, at time `now`.
    pub fn sweep_at(&self, now: Instant) {
        let mut peers = self.peers.locked();
        self.forget(&mut peers, now);
    }

    /// Peers in the book.
    pub fn len(&self) -> usize {
        self.peers.locked().len()
    }

    /// Whether the book is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The peer is alive.
    pub fn seen(&self, peer: PeerId) {
        self.with_peer(peer, |p| p.last_seen = Some(Instant::now()));
    }

    /// A connection to the peer opened or closed.
    pub fn set_connected(&self, peer: PeerId, connected: bool) {
        self.with_peer(peer, |p| {
            p.connected = connected;
            if connected {
                p.last_seen = Some(Instant::now());
            }
        });
    }

    /// Remember that `peer` is of another cluster (and say so once).
    pub fn note_foreign(&self, peer: PeerId, theirs: u64, ours: u64) {
        self.with_peer(peer, |p| p.foreign = Some(theirs));
        self.warn_once(format!("foreign {peer}"), || {
            format!("refusing peer {peer}: it belongs to cluster {theirs:016x}, this node to cluster {ours:016x}")
        });
    }

    /// Remember that `peer` speaks an incompatible wire protocol (and say why once): it is
    /// refused everything until a compatible hello of its comes.
    pub fn note_incompatible(&self, peer: PeerId, why: String) {
        self.warn_once(format!("incompatible {peer}"), || {
            format!("refusing peer {peer}: {why}")
        });
        self.with_peer(peer, |p| {
            p.hello = None;
            p.incompatible = Some(why);
        });
    }

    /// Why `peer` is refused, if it speaks an incompatible protocol.
    pub fn incompatible(&self, peer: &PeerId) -> Option<String> {
        self.peers.locked().get(peer)?.incompatible.clone()
    }

    /// The wire protocol `peer`'s hello said it speaks; `None` before its hello.
    pub fn protocol(&self, peer: &PeerId) -> Option<shoal_net::wire::Protocol> {
        let peers = self.peers.locked();
        Some(peers.get(peer)?.hello.as_ref()?.build.protocol)
    }

    /// The first reason a connected peer was found incompatible, for the node's status.
    pub fn any_incompatible(&self) -> Option<String> {
        let peers = self.peers.locked();
        peers
            .values()
            .filter(|p| p.connected)
            .find_map(|p| p.incompatible.clone())
    }

    /// Take `peer`'s hello, unless it names another cluster than `ours`; false (and ignored)
    /// when it names another node than the one `peer`'s key makes it.
    pub fn record_hello(&self, peer: PeerId, h: Hello, ours: Option<u64>) -> bool {
        if h.node_id != crate::cluster::identity::node_id(&peer)
            || h.info.peer_id != peer.to_string()
        {
            tracing::warn!(%peer, claimed = crate::cluster::identity::hex(h.node_id), "ignored a hello that names another node");
            return false;
        }
        if let (Some(ours), Some(theirs)) = (ours, h.cluster_id) {
            if ours != theirs {
                self.note_foreign(peer, theirs, ours);
                return true;
            }
        }
        self.with_peer(peer, |p| {
            p.hello = Some(h);
            p.foreign = None;
            p.incompatible = None;
            p.last_seen = Some(Instant::now());
        });
        true
    }

    /// Hellos of connected, same-cluster-or-none peers seen (a ping, a message) within
    /// `--node-timeout`: a peer behind a cut cable keeps its TCP connection for a while, but
    /// nothing should be sent its way.
    pub fn hellos(&self) -> Vec<Hello> {
        self.reachable(Hello::clone)
    }

    /// What `f` reads of each hello [`PeerBook::hellos`] would give, by node id: one look up
    /// per node after, where a search of every hello would cost the number of nodes.
    pub fn by_node<T>(&self, f: impl Fn(&Hello) -> T) -> HashMap<u64, T> {
        self.reachable(|h| (h.node_id, f(h)))
    }

    fn reachable<T, C: FromIterator<T>>(&self, f: impl Fn(&Hello) -> T) -> C {
        let peers = self.peers.locked();
        let fresh = |p: &PeerEntry| {
            p.last_seen
                .is_some_and(|t| t.elapsed() <= self.node_timeout)
        };
        peers
            .values()
            .filter(|p| p.connected && p.foreign.is_none() && p.incompatible.is_none() && fresh(p))
            .filter_map(|p| p.hello.as_ref().map(&f))
            .collect()
    }

    /// Connected peers with no hello yet.
    pub fn unknown_peers(&self) -> Vec<PeerId> {
        let peers = self.peers.locked();
        peers
            .iter()
            .filter(|(_, p)| p.connected && p.hello.is_none() && p.foreign.is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Connected peers whose hello named no cluster: worth asking again, since a cluster may
    /// have formed among them since (a node not chosen as an initial voter learns so).
    pub fn clusterless_peers(&self) -> Vec<PeerId> {
        let peers = self.peers.locked();
        peers
            .iter()
            .filter(|(_, p)| {
                p.connected
                    && p.foreign.is_none()
                    && p.hello.as_ref().is_some_and(|h| h.cluster_id.is_none())
            })
            .map(|(id, _)| *id)
            .collect()
    }
}
