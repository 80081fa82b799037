//! A stranger's pace: a burst at once, then the rate, and a refusal past the longest wait.

use std::time::Duration;

use shoal_net::PeerId;
use shoal_node::cluster::pace::{Pacer, Turn, MAX_WAIT, REMEMBERED, STRANGER_BURST, STRANGER_RATE};
use tokio::time::Instant;

fn stranger() -> PeerId {
    PeerId::random()
}

#[test]
fn a_stranger_has_its_burst_at_once_then_waits_its_turn_then_is_refused() {
    let pacer = Pacer::default();
    let (peer, now) = (stranger(), Instant::now());
    for i in 0..STRANGER_BURST {
        assert_eq!(pacer.turn(peer, now), Turn::Now, "request {i} of the burst");
    }
    let interval = Duration::from_secs(1) / STRANGER_RATE;
    let mut waits = Vec::new();
    loop {
        match pacer.turn(peer, now) {
            Turn::After(wait) => waits.push(wait),
            other => {
                assert_eq!(other, Turn::TooSoon);
                break;
            }
        }
    }
    // One more request each interval, up to the longest wait.
    assert_eq!(waits.len() as u32, STRANGER_RATE);
    assert_eq!(waits[0], interval);
    assert_eq!(*waits.last().unwrap(), MAX_WAIT);
    // A refused request takes no place: once the queue has moved on by one interval, the
    // next one is answered.
    assert_eq!(pacer.turn(peer, now + interval), Turn::After(MAX_WAIT));
    // Another stranger is not slowed by the first; the first, once quiet, has its burst back.
    assert_eq!(pacer.turn(stranger(), now), Turn::Now);
    let later = now + MAX_WAIT + interval * (STRANGER_BURST + 1);
    assert_eq!(pacer.turn(peer, later), Turn::Now);
}

#[test]
fn strangers_remembered_are_bounded_and_forgotten_when_their_turn_has_come() {
    let pacer = Pacer::default();
    let now = Instant::now();
    for _ in 0..REMEMBERED {
        assert_eq!(pacer.turn(stranger(), now), Turn::Now);
    }
    assert_eq!(pacer.remembered(), REMEMBERED);
    // All still paced: a new stranger is refused, and nothing more is remembered.
    assert_eq!(pacer.turn(stranger(), now), Turn::TooSoon);
    assert_eq!(pacer.remembered(), REMEMBERED);
    // A second on, their turns have come: they are forgotten, and the newcomer is answered.
    assert_eq!(
        pacer.turn(stranger(), now + Duration::from_secs(1)),
        Turn::Now
    );
    assert_eq!(pacer.remembered(), 1);
}

#[tokio::test]
async fn a_stranger_past_its_wait_is_refused_as_busy() {
    let pacer = Pacer::default();
    let peer = stranger();
    for _ in 0..STRANGER_BURST + STRANGER_RATE {
        pacer.turn(peer, Instant::now());
    }
    let why = pacer.wait_turn(peer).await.unwrap_err();
    assert!(why.starts_with("busy: "), "{why}");
}
