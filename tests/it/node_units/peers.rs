//! The peer book stays bounded whatever identities connect, and forgets peers that are gone.

use std::time::{Duration, Instant};

use shoal_net::PeerId;
use shoal_node::cluster::peers::{PeerBook, FORGET_AFTER, MAX_PEERS};

#[test]
fn identities_that_come_and_go_are_forgotten_and_connected_peers_kept() {
    let book = PeerBook::new(Duration::from_secs(10));
    let member = PeerId::random();
    book.set_connected(member, true);
    // Twice the book's bound of key holders, each connecting once and going away.
    for _ in 0..2 * MAX_PEERS {
        let p = PeerId::random();
        book.set_connected(p, true);
        book.seen(p);
        book.set_connected(p, false);
        assert!(book.len() <= MAX_PEERS, "{} peers remembered", book.len());
    }
    assert!(book.all().get(&member).is_some_and(|p| p.connected));
    // Once they have been gone long enough, only the connected one is left.
    book.sweep_at(Instant::now() + FORGET_AFTER);
    assert_eq!(book.len(), 1);
    assert!(book.all().contains_key(&member));
}

#[test]
fn a_peer_heard_lately_is_kept_until_it_has_been_gone_long_enough() {
    let book = PeerBook::new(Duration::from_secs(10));
    let p = PeerId::random();
    book.set_connected(p, true);
    book.set_connected(p, false);
    book.sweep_at(Instant::now() + FORGET_AFTER / 2);
    assert_eq!(book.len(), 1, "forgotten too soon");
    book.sweep_at(Instant::now() + FORGET_AFTER);
    assert_eq!(book.len(), 0, "kept after it was gone");
}
