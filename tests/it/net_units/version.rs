//! Which builds may talk: protocol majors and minors.

use shoal_net::version::*;

#[test]
fn majors_must_match_and_the_refusal_names_both_versions() {
    let ours = Build::this(PROTOCOL);
    let minor = Build::this(Protocol {
        major: PROTOCOL.major,
        minor: PROTOCOL.minor + 5,
    });
    assert_eq!(ours.incompatible(&minor), None, "another minor may join");
    assert_eq!(
        ours.incompatible(&Build::default()),
        None,
        "1.0: before versions"
    );
    let theirs = Build {
        version: "9.9.9".into(),
        protocol: Protocol {
            major: PROTOCOL.major + 1,
            minor: 0,
        },
    };
    let why = ours
        .incompatible(&theirs)
        .expect("another major is refused");
    assert!(
        why.contains(&format!("protocol {}.0 (shoal 9.9.9)", PROTOCOL.major + 1)),
        "{why}"
    );
    assert!(
        why.contains(&format!("protocol {PROTOCOL} (shoal {VERSION})")),
        "{why}"
    );
    assert_eq!(
        "2.7".parse::<Protocol>(),
        Ok(Protocol { major: 2, minor: 7 })
    );
    assert!("2".parse::<Protocol>().is_err() && "a.b".parse::<Protocol>().is_err());
}

#[test]
fn a_feature_of_a_minor_is_read_by_that_minor_and_later_ones_of_its_major() {
    let p = |major, minor| Protocol { major, minor };
    assert!(p(1, 6).at_least(1, 6) && p(1, 9).at_least(1, 6));
    assert!(!p(1, 5).at_least(1, 6));
    assert!(
        !p(2, 0).at_least(1, 6),
        "another major reads nothing of 1.x"
    );
    assert!(!Protocol::default().at_least(1, 1));
}
