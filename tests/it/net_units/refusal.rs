//! Refusals as the asker reads them, known or not.

use serde::Serialize;
use shoal_net::codec::{decode, encode};
use shoal_net::refusal::*;
use shoal_net::version::Protocol;

#[test]
fn a_reason_this_build_does_not_know_reads_as_other() {
    #[derive(Serialize)]
    enum Newer {
        SomethingNew,
    }
    let back: Reason = decode(&encode(&Newer::SomethingNew)).expect("decodes");
    assert_eq!(back, Reason::Other);
}

#[test]
fn the_sentences_older_nodes_acted_on_keep_their_reasons_both_ways() {
    for reason in [Reason::NotAVoter, Reason::OutOfStep, Reason::RosterWanted] {
        let text = Refusal::new(reason, "typed").into_text();
        assert_ne!(text, "typed");
        assert_eq!(Refusal::from_text(text).reason, reason);
    }
    let other = Refusal::from_text("out of step, sort of".into());
    assert_eq!(other.reason, Reason::Other);
    assert_eq!(Refusal::new(Reason::Forbidden, "no").into_text(), "no");
}

#[test]
fn only_protocol_1_6_and_later_reads_reasons() {
    let p = |major, minor| Some(Protocol { major, minor });
    assert!(!reads_reasons(None));
    assert!(!reads_reasons(p(1, 5)));
    assert!(reads_reasons(p(1, 6)));
    assert!(reads_reasons(p(2, 0)));
}
