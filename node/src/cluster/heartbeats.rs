//! Heartbeats as a node keeps them: its own, every node's when it leads, and the leader's
//! copies it is sent back.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;

use shoal_net::wire::{HeardHeartbeat, Heartbeat};

use crate::sync::Locked;

/// The last heartbeat of each node, and when it came.
pub type Heartbeats = BTreeMap<u64, (Instant, Heartbeat)>;

/// The heartbeats one node knows.
#[derive(Debug)]
pub struct HeartbeatBook {
    /// This node's id (the leader's copy of our own heartbeat is never taken).
    own: u64,
    heard: Mutex<Heartbeats>,
    /// When this node last asked the leader for everyone's heartbeats.
    asked: Mutex<Option<Instant>>,
    /// When this node, leading, last answered each member's `Heard`.
    answered: Mutex<BTreeMap<u64, Instant>>,
}

/// How often a member's `Heard` is answered at most: a learner asks at most once a
/// second ([`HeartbeatBook::time_to_ask`]), so only a peer that ignores that is refused.
pub const HEARD_EVERY: Duration = Duration::from_millis(500);

impl HeartbeatBook {
    /// An empty book for node `own`.
    pub fn new(own: u64) -> Self {
        HeartbeatBook {
            own,
            heard: Mutex::default(),
            asked: Mutex::default(),
            answered: Mutex::default(),
        }
    }

    /// The heartbeats, for reading.
    pub fn locked(&self) -> MutexGuard<'_, Heartbeats> {
        self.heard.locked()
    }

    /// Every node's last heartbeat this node knows, with how long ago it came.
    pub fn heard(&self) -> Vec<HeardHeartbeat> {
        self.locked()
            .values()
            .map(|(at, hb)| HeardHeartbeat {
                ms_ago: at.elapsed().as_millis() as u64,
                heartbeat: hb.clone(),
            })
            .collect()
    }

    /// Take the leader's copies of other nodes' heartbeats (newer than ours only).
    pub fn merge(&self, list: Vec<HeardHeartbeat>) {
        let mut heard = self.locked();
        let now = Instant::now();
        for h in list {
            if h.heartbeat.node_id == self.own {
                continue;
            }
            let at = now
                .checked_sub(Duration::from_millis(h.ms_ago))
                .unwrap_or(now);
            let newer = heard
                .get(&h.heartbeat.node_id)
                .is_none_or(|(old, _)| *old < at);
            if newer {
                heard.insert(h.heartbeat.node_id, (at, h.heartbeat));
            }
        }
    }

    /// Keep only the heartbeats of nodes `keep` names (the members).
    pub fn retain(&self, keep: impl Fn(u64) -> bool) {
        self.locked().retain(|&id, _| keep(id));
        self.answered.locked().retain(|&id, _| keep(id));
    }

    /// Every heartbeat this node knows, for member `from`'s `Heard` — or, when `from` was
    /// answered within [`HEARD_EVERY`], why not: each answer costs the leader every node's
    /// heartbeat, and a key holder asking in a loop must not make it pay that without end.
    pub fn heard_for(&self, from: u64) -> Result<Vec<HeardHeartbeat>, String> {
        {
            let mut answered = self.answered.locked();
            if let Some(at) = answered.get(&from).filter(|at| at.elapsed() < HEARD_EVERY) {
                return Err(format!(
                    "asked again {} ms after the last answer; at most once per {} ms",
                    at.elapsed().as_millis(),
                    HEARD_EVERY.as_millis()
                ));
            }
            answered.insert(from, Instant::now());
        }
        Ok(self.heard())
    }

    /// Whether it is time to ask the leader again: not within `every` of the last time
    /// (which this call then becomes). Bounds what a polling dashboard costs the leader.
    pub fn time_to_ask(&self, every: Duration) -> bool {
        let mut asked = self.asked.locked();
        if asked.is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        *asked = Some(Instant::now());
        true
    }

    /// Record a heartbeat (this node's own, or one sent to it as leader).
    pub fn record(&self, hb: Heartbeat) {
        self.locked().insert(hb.node_id, (Instant::now(), hb));
    }
}

/// The start of node `n`'s current lease: its last heartbeat, but never before this node
/// became leader (a new manager starts every lease fresh).
pub fn last_heard<I: Ord + Copy>(heard: Option<I>, leader_since: I) -> I {
    heard.map_or(leader_since, |at| at.max(leader_since))
}
