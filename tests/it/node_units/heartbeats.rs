use shoal_net::wire::Heartbeat;
use shoal_node::cluster::heartbeats::*;

fn beat(node_id: u64) -> Heartbeat {
    Heartbeat {
        cluster_id: 1,
        node_id,
        slots: 2,
        busy: 0,
        running: Vec::new(),
        disk_bytes: 0,
        disk_low: false,
        build: Default::default(),
    }
}

#[test]
fn a_member_asking_for_everyones_heartbeats_in_a_loop_is_answered_twice_a_second_at_most() {
    let book = HeartbeatBook::new(1);
    book.record(beat(1));
    book.record(beat(2));
    let first = book.heard_for(2).expect("the first ask is answered");
    assert_eq!(first.len(), 2, "every heartbeat the leader knows");
    let again = book.heard_for(2).unwrap_err();
    assert!(again.contains("at most once per 500 ms"), "{again}");
    // Another member is not held up by the first one's asking.
    assert!(book.heard_for(3).is_ok());
    // Once the member is gone, so is what the book kept of its asking.
    book.retain(|id| id != 2);
    assert!(
        book.heard_for(2).is_ok(),
        "a member added again asks afresh"
    );
}
