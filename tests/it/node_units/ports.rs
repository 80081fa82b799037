//! The ports a node takes: `/proc/net/tcp` read right, a listener of another process seen,
//! this process's own not, and `--local`'s pick moving past taken ports.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};

use shoal_node::ports::{
    listeners_on, parse_listener, pick_local, shared_with_another, LOCAL_NODES,
};

#[test]
fn lines_of_proc_net_tcp_are_read_as_listeners_or_skipped() {
    let v4 = "   0: 0100007F:1B9F 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1 0000000000000000 100 0 0 10 0";
    let (at, inode) = parse_listener(v4, false).expect("a listener");
    assert_eq!(at, SocketAddr::from((Ipv4Addr::LOCALHOST, 7071)));
    assert_eq!(inode, 4242);
    let established = v4.replace(" 0A ", " 01 ");
    assert_eq!(parse_listener(&established, false), None, "not listening");
    let v6_any = "   1: 00000000000000000000000000000000:1B9F 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 77 1 0000000000000000 100 0 0 10 0";
    let (at, inode) = parse_listener(v6_any, true).expect("a v6 listener");
    assert!(at.ip().is_unspecified() && at.port() == 7071 && inode == 77);
    for garbage in [
        "",
        "sl local_address",
        "0: zz:1B9F 0 0A",
        "0: 0100007F:zzzz 0 0A",
    ] {
        assert_eq!(parse_listener(garbage, false), None, "{garbage:?}");
    }
}

#[test]
fn a_listener_is_found_on_its_port_and_its_own_process_does_not_count_as_another() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let at = listener.local_addr().unwrap();
    let found = listeners_on(at);
    assert_eq!(found.len(), 1, "the listener on {at}");
    let any = SocketAddr::from((Ipv4Addr::UNSPECIFIED, at.port()));
    assert_eq!(listeners_on(any).len(), 1, "a wildcard overlaps it");
    assert!(!shared_with_another(at), "this process's own listener");
    drop(listener);
    // Another test's process, forked while the socket was open, holds it until it execs;
    // and another test may take the freed port at once, with a socket of another inode.
    crate::common::cluster::wait_for(10, "the closed listener to go", || {
        (!listeners_on(at).contains(&found[0])).then_some(())
    });
}

#[test]
fn local_takes_the_first_free_pair_and_names_the_taken_ones() {
    let base = crate::common::free_ports(LOCAL_NODES * 2);
    let first = pick_local(base).expect("a pair");
    assert_eq!(first.http.local_addr().unwrap().port(), base);
    assert_eq!(first.p2p, base + 1);
    assert!(first.skipped.is_empty());
    assert_eq!(first.peers.len(), usize::from(LOCAL_NODES) - 1);
    assert!(!first.peers.contains(&first.p2p));
    // Held API port: the next node moves on.
    let second = pick_local(base).expect("a second pair");
    assert_eq!(
        (second.http.local_addr().unwrap().port(), second.p2p),
        (base + 2, base + 3)
    );
    assert_eq!(second.skipped, vec![base]);
    // A p2p port someone listens on: that pair is skipped though its API port is free.
    let squatter = TcpListener::bind((Ipv4Addr::LOCALHOST, base + 5)).unwrap();
    let third = pick_local(base).expect("a third pair");
    assert_eq!(third.p2p, base + 7, "past the squatted p2p port");
    assert_eq!(third.skipped, vec![base, base + 2, base + 4]);
    drop((squatter, first, second, third));
}
