//! How fast a key holder the cluster does not know may ask. A member's or plain worker's
//! requests are answered as they come (the network layer bounds how many are in flight); a
//! stranger — a node that holds the cluster key but is in no membership or roster: one
//! about to join, or one that floods — gets [`STRANGER_RATE`] requests a second after a
//! burst of [`STRANGER_BURST`]. A request over the rate waits its turn, at most
//! [`MAX_WAIT`]; one that would wait longer, or finds [`MAX_HELD`] strangers' requests
//! waiting already, is refused at once as too soon.
//!
//! The invariant: a stranger that waits for its answers is slowed to the rate, one that does
//! not is refused for the price of a refusal, and strangers together hold at most
//! [`MAX_HELD`] of the node's requests in flight, so they never crowd out the members'.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use shoal_net::PeerId;
use tokio::time::Instant;

/// A stranger's requests a second, after its burst.
pub const STRANGER_RATE: u32 = 20;
/// Requests a stranger may send at once before the rate applies.
pub const STRANGER_BURST: u32 = 40;
/// The longest a stranger's request waits for its turn.
pub const MAX_WAIT: Duration = Duration::from_secs(1);
/// Strangers' requests waiting for their turn, all strangers together.
pub const MAX_HELD: usize = 128;
/// Over this many strangers remembered, those whose turn has come are forgotten; while
/// this many are still paced, a new one is refused.
pub const REMEMBERED: usize = 1024;

/// What a stranger's request gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Turn {
    /// Answered now.
    Now,
    /// Answered after this wait.
    After(Duration),
    /// Refused: it would wait longer than [`MAX_WAIT`].
    TooSoon,
}

/// The strangers' turns: for each, when its next request is due at the rate (the generic
/// cell rate algorithm: one instant per stranger, no timer).
#[derive(Debug)]
pub struct Pacer {
    due: Mutex<HashMap<PeerId, Instant>>,
    held: Arc<tokio::sync::Semaphore>,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            due: Mutex::new(HashMap::new()),
            held: Arc::new(tokio::sync::Semaphore::new(MAX_HELD)),
        }
    }
}

/// The time between two requests at [`STRANGER_RATE`].
fn interval() -> Duration {
    Duration::from_secs(1) / STRANGER_RATE
}

impl Pacer {
    /// The turn of a request from stranger `peer` arriving at `now`; a request that is not
    /// refused takes its place in the stranger's pace.
    pub fn turn(&self, peer: PeerId, now: Instant) -> Turn {
        let Ok(mut due) = self.due.lock() else {
            return Turn::TooSoon;
        };
        if due.len() >= REMEMBERED {
            due.retain(|_, at| *at > now);
            if due.len() >= REMEMBERED && !due.contains_key(&peer) {
                return Turn::TooSoon;
            }
        }
        let next = due.get(&peer).copied().unwrap_or(now).max(now);
        let tolerance = interval() * STRANGER_BURST.saturating_sub(1);
        let wait = next.saturating_duration_since(now + tolerance);
        if wait > MAX_WAIT {
            return Turn::TooSoon;
        }
        due.insert(peer, next + interval());
        if wait.is_zero() {
            Turn::Now
        } else {
            Turn::After(wait)
        }
    }

    /// The strangers whose pace is remembered (at most a bound: a stranger beyond it is
    /// refused until others' turns come).
    pub fn remembered(&self) -> usize {
        self.due.lock().map_or(0, |d| d.len())
    }

    /// Wait for the turn of a request from stranger `peer`: `Err` with the reason when it is
    /// refused instead.
    pub async fn wait_turn(&self, peer: PeerId) -> Result<(), String> {
        match self.turn(peer, Instant::now()) {
            Turn::Now => Ok(()),
            Turn::After(wait) => {
                let Ok(_held) = Arc::clone(&self.held).try_acquire_owned() else {
                    return Err(too_soon());
                };
                tokio::time::sleep(wait).await;
                Ok(())
            }
            Turn::TooSoon => Err(too_soon()),
        }
    }
}

fn too_soon() -> String {
    format!(
        "busy: a node outside the cluster may ask {STRANGER_RATE} times a second \
         (after {STRANGER_BURST} at once); ask again later"
    )
}
