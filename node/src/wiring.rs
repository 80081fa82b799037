//! How the services meet: the membership is the store's address book. The daemon builds the
//! three services in order — membership, then the store over its book, then control over
//! both — and nothing else joins them.

use std::sync::Arc;

use shoal_jobs::cluster::NodeId;
use shoal_net::PeerId;

use crate::cluster::node::Node;
use crate::storage::AddressBook;

/// The membership, as the store sees it.
pub struct Book(pub Arc<Node>);

impl AddressBook for Book {
    fn cluster_id(&self) -> Option<u64> {
        self.0.cluster_id()
    }

    fn refusal(&self, peer: &PeerId, cluster_id: u64) -> Option<String> {
        crate::cluster::members::data_refusal(&self.0, peer, cluster_id)
    }

    fn seen(&self, peer: PeerId) {
        self.0.peers.seen(peer);
    }

    fn reads_links(&self, peer: &PeerId) -> bool {
        // `Link` came with protocol 1.4.
        self.0
            .peers
            .protocol(peer)
            .is_some_and(|p| p.at_least(1, 4))
    }

    fn peer_of(&self, node: NodeId) -> Option<PeerId> {
        crate::cluster::members::peer_of(&self.0, node)
    }

    fn copy_takers(&self) -> Vec<NodeId> {
        let node = &self.0;
        let draining =
            crate::cluster::node::with_jobs(node, |t| t.draining.clone()).unwrap_or_default();
        crate::cluster::members::live_nodes(node)
            .into_iter()
            .map(|n| n.node)
            .filter(|&n| n != node.id && !draining.contains_key(&n))
            .collect()
    }
}
