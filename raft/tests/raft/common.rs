//! What the raft crate's tests share: a small application state.

use serde::{Deserialize, Serialize};
use shoal_raft::AppState;

/// A counter: each command adds to it.
#[derive(Default, Serialize, Deserialize)]
pub struct Counter(u64);

impl AppState for Counter {
    type Command = u64;
    type Response = u64;
    fn apply(&mut self, add: u64) -> u64 {
        self.0 += add;
        self.0
    }
}
