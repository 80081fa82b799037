use shoal_node::storage::replication::rotated;

#[test]
fn copies_go_to_distinct_takers_and_spread_with_the_object() {
    let takers = [3, 5, 8];
    assert_eq!(rotated(&takers, 2, 0), vec![3, 5]);
    assert_eq!(rotated(&takers, 2, 2), vec![8, 3]);
    // Never more copies than takers, never one twice.
    assert_eq!(rotated(&takers, 5, 4), vec![5, 8, 3]);
    assert!(rotated(&[], 2, 1).is_empty());
    // Over as many objects as takers, each taker gets the same number of copies.
    let mut per = std::collections::BTreeMap::new();
    for spread in 0..3 {
        for t in rotated(&takers, 2, spread) {
            *per.entry(t).or_insert(0) += 1;
        }
    }
    assert_eq!(per.values().collect::<Vec<_>>(), vec![&2, &2, &2]);
}
