//! The leader's duties besides Raft's own: record the cluster id in the replicated state once,
//! promote learners to voters up to the voter cap, and keep members' records current (a node
//! may come back on other addresses).
//!
//! The invariant: one membership change at a time, and only on the leader.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use shoal_raft::ChangeMembers;
use shoal_raft::NodeInfo;
use tracing::{info, warn};

use crate::node::Node;
use crate::state::Command;

/// Run forever: every second, on the leader, apply one membership change if one is due.
pub async fn run(node: Arc<Node>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        let Some(h) = node.raft.get() else { continue };
        let metrics = shoal_raft::metrics(&h.raft);
        if metrics.current_leader != Some(node.id) {
            continue;
        }
        // The first leader records the cluster id in the replicated state.
        let recorded = h
            .applied
            .read()
            .map(|a| a.state.cluster_id.is_some())
            .unwrap_or(true);
        if let (false, Some(cluster_id)) = (recorded, node.cluster_id()) {
            let cmd = shoal_raft::Cmd(shoal_net::codec::encode(&Command::Init { cluster_id }));
            if let Err(e) = h.raft.client_write(cmd).await {
                warn!(error = %e, "recording the cluster id failed; will retry");
            }
            continue;
        }
        let m = metrics.membership_config.membership().clone();
        let voters: BTreeSet<u64> = m.voter_ids().collect();
        let learners: Vec<u64> = m.learner_ids().collect();
        let hellos = node.hellos();
        let reachable = |id: u64| id == node.id || hellos.iter().any(|h| h.node_id == id);
        if voters.len() < node.settings.voter_cap {
            if let Some(&l) = learners.iter().find(|&&l| reachable(l)) {
                info!(
                    learner = format!("{l:016x}"),
                    "promoting a learner to voter"
                );
                if let Err(e) = h
                    .raft
                    .change_membership(ChangeMembers::AddVoterIds([l].into()), true)
                    .await
                {
                    warn!(error = %e, "promotion failed");
                }
                continue;
            }
        }
        // Keep members' records current (addresses change when a node restarts).
        let mut updates = BTreeMap::new();
        for hello in &hellos {
            if let Some(cur) = m.get_node(&hello.node_id) {
                let fresh = NodeInfo {
                    peer_id: hello.info.peer_id.clone(),
                    addrs: hello.info.addrs.clone(),
                    http: hello.info.http.clone(),
                };
                if *cur != fresh && !fresh.addrs.is_empty() {
                    updates.insert(hello.node_id, fresh);
                }
            }
        }
        if let Some(cur) = m.get_node(&node.id) {
            let me = node.node_info();
            if *cur != me {
                updates.insert(node.id, me);
            }
        }
        if !updates.is_empty() {
            if let Err(e) = h
                .raft
                .change_membership(ChangeMembers::SetNodes(updates), true)
                .await
            {
                warn!(error = %e, "updating member records failed");
            }
        }
    }
}
