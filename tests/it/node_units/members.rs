use shoal_jobs::cluster::NodeId;
use shoal_node::cluster::members::*;

fn slots(nodes: Vec<(NodeId, u32, Option<&str>)>) -> Vec<(NodeId, u32)> {
    host_shares(
        nodes
            .into_iter()
            .map(|(id, s, h)| (id, s, h.map(String::from)))
            .collect(),
    )
    .into_iter()
    .map(|n| (n.node, n.slots))
    .collect()
}

#[test]
fn nodes_of_one_host_divide_its_cores_and_others_keep_their_slots() {
    // Three nodes on one two-core host, one alone on a four-core host, one given
    // `--slots 6` on the first host.
    let got = slots(vec![
        (1, 2, Some("a")),
        (2, 2, Some("a")),
        (3, 2, Some("a")),
        (4, 4, Some("b")),
        (5, 6, None),
    ]);
    assert_eq!(got, vec![(1, 1), (2, 1), (3, 1), (4, 4), (5, 6)]);
    // Two of eight cores each; three of eight (rounded up) each.
    assert_eq!(
        slots(vec![
            (1, 8, Some("a")),
            (2, 8, Some("a")),
            (3, 8, Some("a")),
            (4, 8, Some("a"))
        ]),
        vec![(1, 2), (2, 2), (3, 2), (4, 2)]
    );
    assert_eq!(
        slots(vec![
            (1, 8, Some("a")),
            (2, 8, Some("a")),
            (3, 8, Some("a"))
        ]),
        vec![(1, 3), (2, 3), (3, 3)]
    );
    // Thirty nodes on two cores: one each, never none.
    let many = slots((1..=30).map(|id| (id, 2, Some("a"))).collect());
    assert!(many.iter().all(|&(_, s)| s == 1));
}
