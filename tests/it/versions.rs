//! Versions on the wire: every hello and heartbeat names the build and its wire protocol; a
//! node of another protocol major is refused, with both versions named where its operator
//! looks (its log and `shoal status`) and in the cluster's logs; one of another minor joins,
//! and `shoal status` and `/api/v1/cluster` flag the mixed cluster. Real
//! `shoal node` processes on 127.0.0.1; the other protocol is a test-only override.

use crate::common;
use crate::common::cluster::*;
use crate::common::*;

#[test]
fn a_node_of_another_protocol_major_is_refused_naming_both_versions() {
    let _serial = one_at_a_time();
    let dir = common::tempdir();
    let nodes = start_cluster(&dir.path().join("nodes"), 3, &["--expect", "3"]);
    wait_agreed(&nodes.iter().collect::<Vec<_>>(), 3, 60);
    let ours = format!(
        "protocol {} (shoal {})",
        shoal_net::wire::PROTOCOL,
        env!("CARGO_PKG_VERSION")
    );
    let major = shoal_net::wire::PROTOCOL.major + 1;
    let theirs = format!("protocol {major}.0 (shoal {})", env!("CARGO_PKG_VERSION"));

    // Another major: refused by every member it greets, and it says why.
    let mut args = vec!["--test-protocol".to_string(), format!("{major}.0")];
    for n in &nodes {
        args.extend(["--peer".to_string(), n.peer_addr()]);
    }
    let odd = NodeProc::start(&dir.path().join("nodes"), "odd", &args);
    let status = wait_for(60, "the refused node to say why in shoal status", || {
        let o = run(shoal().args(["status", "--node", &odd.http]));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        out.contains("refused").then_some(out)
    });
    assert!(
        status.contains(&ours) && status.contains(&theirs),
        "shoal status on the refused node names both versions: {status}"
    );
    assert!(
        odd.log_text().contains(&ours),
        "its log names the cluster's version: {}",
        odd.log_text()
    );
    wait_for(30, "a member to log the refusal", || {
        nodes
            .iter()
            .any(|n| {
                let log = n.log_text();
                log.contains(&theirs) && log.contains(&ours)
            })
            .then_some(())
    });
    let view = nodes[0].cluster().unwrap();
    assert_eq!(
        view["nodes"].as_array().unwrap().len(),
        3,
        "it did not join: {view}"
    );
    assert!(odd.is_running(), "a refused node keeps running");
    assert_eq!(view["mixed_versions"], false, "{view}");
    for n in view["nodes"].as_array().unwrap() {
        assert_eq!(n["version"], env!("CARGO_PKG_VERSION"), "{n}");
        assert_eq!(n["protocol"], shoal_net::wire::PROTOCOL.to_string(), "{n}");
    }

    // Another minor of the same major joins, and the cluster shows it is mixed.
    let minor = format!("{}.99", shoal_net::wire::PROTOCOL.major);
    let mut args = vec!["--test-protocol".to_string(), minor.clone()];
    args.extend(["--peer".to_string(), nodes[0].peer_addr()]);
    let newer = NodeProc::start(&dir.path().join("nodes"), "newer", &args);
    let view = wait_for(
        60,
        "the other minor to join, and the cluster to show it",
        || {
            let v = nodes[0].cluster()?;
            let joined = v["nodes"]
                .as_array()?
                .iter()
                .any(|n| n["id"] == newer.node_id.as_str() && n["protocol"] == minor.as_str());
            (joined && v["mixed_versions"] == true).then_some(v)
        },
    );
    assert_eq!(view["nodes"].as_array().unwrap().len(), 4, "{view}");
    let o = run(shoal().args(["status", "--node", &nodes[1].http]));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("mixed versions") && out.contains(&format!("/{minor}")),
        "shoal status flags the mixed cluster: {out}"
    );
}
