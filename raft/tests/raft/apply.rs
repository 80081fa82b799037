//! The replicated state's apply: a command whose apply panics is refused, not fatal.

use serde::{Deserialize, Serialize};
use shoal_raft::state_machine::{apply_caught, AppState};

/// A state whose apply panics on 0 after half its work (as a bug could).
#[derive(Default, Serialize, Deserialize)]
struct Fragile {
    sum: u64,
    seen: u64,
}

impl AppState for Fragile {
    type Command = u64;
    type Response = Option<String>;
    fn apply(&mut self, n: u64) -> Option<String> {
        self.seen += 1;
        assert!(n != 0, "zero");
        self.sum += n;
        None
    }
    fn panicked(why: String) -> Option<String> {
        Some(why)
    }
}

#[test]
fn a_panicking_command_is_answered_as_refused_and_the_next_applies() {
    let mut s = Fragile::default();
    assert_eq!(apply_caught(&mut s, 2, 1), None);
    let why = apply_caught(&mut s, 0, 2).expect("refused");
    assert!(why.contains("panicked: zero"), "{why}");
    assert_eq!(apply_caught(&mut s, 3, 3), None);
    // What it did before the panic stays, alike on every replica.
    assert_eq!((s.sum, s.seen), (5, 3));
}
