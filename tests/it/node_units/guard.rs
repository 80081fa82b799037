use shoal_node::http::guard::*;

#[test]
fn loopback_names_the_own_address_and_given_names_pass_others_do_not() {
    let g = HostGuard::new("10.0.0.5:7070".parse().unwrap(), &["Shoal.lan".into()]);
    for ok in [
        "127.0.0.1:7070",
        "localhost:7070",
        "LOCALHOST",
        "[::1]:7070",
        "10.0.0.5:7070",
        "shoal.lan:7070",
        "127.9.9.9",
    ] {
        assert!(g.allows(ok), "{ok}");
    }
    for bad in [
        "evil.example:7070",
        "10.0.0.6:7070",
        "",
        "shoal.lan.evil:7070",
        "[::2]:1",
    ] {
        assert!(!g.allows(bad), "{bad}");
    }
    let any = HostGuard::new("0.0.0.0:7070".parse().unwrap(), &[]);
    assert!(!any.allows("0.0.0.0:7070") && any.allows("127.0.0.1:7070"));
}
