//! Where a node keeps data and how data moves between nodes: the object store (input
//! segments, map outputs, parts), `/shoal/data/1` fetch and put, and replication.
//!
//! The store is a service: [`Storage`] owns the objects, the host's links, the disk reserve
//! and the shuffle counters, and is handed out as `Arc<Storage>`. It knows the cluster only
//! through an [`AddressBook`] — who is a member, where a node is — so it depends on no
//! other room of the node (the daemon gives it the membership's book; `shoal bench shuffle`
//! a book of two nodes).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use shoal_jobs::cluster::NodeId;
use shoal_net::{Client, PeerId};

pub mod bench;
pub mod blobs;
/// The store's key names, which the simulator's store uses too.
pub use blobs::{kept_after_job, map_output_key, part_key, split_key};
pub(crate) mod data;
pub mod link;
pub mod replication;
pub(crate) mod serve;
pub mod space;

/// What the store needs to know of the cluster: which cluster it serves, who may exchange
/// data with it, and where the other nodes are.
pub trait AddressBook: Send + Sync + 'static {
    /// The cluster this node belongs to, once it has one.
    fn cluster_id(&self) -> Option<u64>;
    /// Why `peer`, asking in the name of `cluster_id`, may not exchange data with this node;
    /// `None` when it may (a member of this node's cluster, speaking a protocol it reads).
    fn refusal(&self, peer: &PeerId, cluster_id: u64) -> Option<String>;
    /// `peer` was just heard from.
    fn seen(&self, peer: PeerId);
    /// Whether `peer` takes hard links (protocol 1.4 or later).
    fn reads_links(&self, peer: &PeerId) -> bool;
    /// The libp2p identity of node `node`, while it is a member.
    fn peer_of(&self, node: NodeId) -> Option<PeerId>;
    /// The live nodes other than this one that take copies, in id order (a draining node
    /// takes none: it is about to go).
    fn copy_takers(&self) -> Vec<NodeId>;
}

/// Shuffle traffic seen by one node.
#[derive(Debug, Default)]
pub struct ShuffleStats {
    /// Map output received over `/shoal/data/1` from other nodes.
    pub fetched_bytes: AtomicU64,
    /// Map output read from this node's own store.
    pub local_bytes: AtomicU64,
}

/// The store service of one node.
pub struct Storage {
    /// This node's id (for reasons and holder lists).
    pub id: NodeId,
    /// The network, to open data streams.
    pub net: Client,
    /// The cluster as the store sees it.
    pub book: Arc<dyn AddressBook>,
    /// Splits, map outputs and part files stored here.
    pub blobs: blobs::Blobs,
    /// This host, for copies to other nodes on it as hard links.
    pub links: link::HostLinks,
    /// Bytes of map output this node fetched from other nodes, and read from its own store.
    pub shuffle: ShuffleStats,
    /// MiB kept free on the data dir's disk (`--min-free-mb`).
    min_free_mb: u64,
    /// Data streams being answered at once ([`MAX_SERVING`]); more wait for a turn.
    pub(crate) serving: Arc<tokio::sync::Semaphore>,
}

/// Data streams a node answers at once (each holds a few chunks in flight); a stream past
/// them waits its turn, up to the data plane's stall timeout, then is refused as busy.
pub const MAX_SERVING: usize = 128;

impl Storage {
    /// The store of node `id` over `blobs`, keeping `min_free_mb` free.
    pub fn new(
        id: NodeId,
        net: Client,
        book: Arc<dyn AddressBook>,
        blobs: blobs::Blobs,
        min_free_mb: u64,
    ) -> Storage {
        Storage {
            id,
            net,
            book,
            blobs,
            links: link::HostLinks::here(),
            shuffle: ShuffleStats::default(),
            min_free_mb,
            serving: Arc::new(tokio::sync::Semaphore::new(MAX_SERVING)),
        }
    }

    /// `Err` while the data dir's disk has less free space than `--min-free-mb`.
    pub fn disk_ok(&self) -> Result<(), space::DiskFull> {
        space::Reserve::new(self.blobs.root(), self.min_free_mb).check()
    }
}
