use shoal_node::cluster::membership::*;
use std::collections::BTreeSet;

fn set(ids: &[u64]) -> BTreeSet<u64> {
    ids.iter().copied().collect()
}

#[test]
fn a_silent_voter_is_replaced_by_a_live_learner_or_removed_down_to_three() {
    let dead = |ids: &'static [u64]| move |id: u64| ids.contains(&id);
    // A live learner takes the silent voter's place; a dead learner does not.
    let c = replace_silent_voter(&set(&[1, 2, 3]), &[4, 5], dead(&[2, 4]), |id| {
        id != 4 && id != 2
    });
    assert_eq!(
        c,
        Some(VoterChange {
            gone: 2,
            by: Some(5),
            voters: set(&[1, 3, 5])
        })
    );
    // No learner: removed while more than three remain.
    let c = replace_silent_voter(&set(&[1, 2, 3, 4, 5]), &[], dead(&[5]), |_| true);
    assert_eq!(c.map(|c| c.voters), Some(set(&[1, 2, 3, 4])));
    let c = replace_silent_voter(&set(&[1, 2, 3, 4]), &[5], dead(&[4, 5]), |id| id < 4);
    assert_eq!(c.map(|c| c.voters), Some(set(&[1, 2, 3])));
    // Never below three.
    assert_eq!(
        replace_silent_voter(&set(&[1, 2, 3]), &[4], dead(&[3, 4]), |id| id < 3),
        None
    );
    // Nobody silent: nothing to do.
    assert_eq!(
        replace_silent_voter(&set(&[1, 2, 3, 4, 5]), &[6], dead(&[]), |_| true),
        None
    );
}
