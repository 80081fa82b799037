//! Input copies between the nodes of one host as hard links. The nodes of a cluster that
//! runs on one machine (a demo, a test cluster, nodes sharing a machine's filesystem)
//! would otherwise send each other every split and write the same bytes to the same disk
//! again: copying a 1 GiB upload to two other nodes writes 3 GiB to one disk.
//!
//! A sender offers a link first (`DataRequest::Link`: the object's file in its store, its
//! size and checksum, and its host). The receiver takes it only when it runs on the same
//! host (the same boot of the same kernel, in the same network and mount namespaces), the
//! file is named as that object of a store (`…/blobs/KEY`), and the linked file is a
//! regular file of the user the node runs as, of that size and checksum. Otherwise —
//! another host, another filesystem, a node of protocol 1.3 — the sender sends the bytes,
//! as between machines, and offers that peer no link again until it restarts. An offer
//! that only failed on the stream (a peer too busy to answer in time) is not a refusal:
//! the bytes go that time, and the next copy offers a link again.
//!
//! A link is as durable as the sender's object on its disk: it survives the sender's
//! process (a `kill -9`, a removed job), not the disk — which a copy on that same disk
//! would not survive either. Linked copies are one file, so a bit that rots in it rots in
//! every one: a split's maps then fail on its checksum on every holder, and the job fails
//! saying so (its input is the user's, to submit again). Part files, the job's result,
//! are always copied as bytes.

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use shoal_net::PeerId;

use super::blobs::Blobs;

/// This host as links see it, and what links have saved.
#[derive(Debug, Default)]
pub struct HostLinks {
    /// This host's id (its kernel's boot id, network and mount namespaces); `None` where it
    /// cannot be told (then no link is offered or taken).
    pub id: Option<String>,
    /// Peers that refused a link: sent bytes from now on.
    elsewhere: Mutex<HashSet<PeerId>>,
    /// Bytes stored by a link here, as sender and as receiver.
    linked_bytes: AtomicU64,
}

impl HostLinks {
    /// This host's.
    pub fn here() -> HostLinks {
        HostLinks {
            id: host_id(),
            ..HostLinks::default()
        }
    }

    pub(super) fn refused_by(&self, peer: PeerId) {
        if let Ok(mut e) = self.elsewhere.lock() {
            e.insert(peer);
        }
    }

    pub(super) fn may_offer(&self, peer: &PeerId) -> bool {
        self.id.is_some() && self.elsewhere.lock().is_ok_and(|e| !e.contains(peer))
    }

    /// Count `len` bytes stored by a link (sent or taken).
    pub(super) fn linked(&self, len: u64) {
        self.linked_bytes.fetch_add(len, Ordering::Relaxed);
    }

    /// Bytes stored by a link here since this node started, as sender and as receiver.
    pub fn linked_bytes(&self) -> u64 {
        self.linked_bytes.load(Ordering::Relaxed)
    }
}

/// The running kernel's boot id with this process's network and mount namespaces: two
/// processes with the same id see the same files under the same paths, and share the same
/// cores.
pub fn host_id() -> Option<String> {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok()?;
    let ns = |n: &str| std::fs::read_link(format!("/proc/self/ns/{n}")).ok();
    Some(format!(
        "{} {} {}",
        boot.trim(),
        ns("net")?.display(),
        ns("mnt")?.display()
    ))
}

/// Take, into `blobs`, the object offered as a link when this node is on the offering
/// node's host; made durable and visible. A link to what is already stored with the same
/// bytes is taken as done.
pub fn take(
    links: &HostLinks,
    blobs: &Blobs,
    key: &str,
    host: &str,
    path: &str,
    len: u64,
    checksum: u32,
) -> std::io::Result<()> {
    if links.id.as_deref() != Some(host) {
        return Err(std::io::Error::other("not on this node's host"));
    }
    let linked = blobs.link_from(key, Path::new(path), len, checksum)?;
    if let Some(linked) = linked
        .unless_stored()
        .map_err(|e| std::io::Error::new(e.kind(), format!("{key:?}: {e}")))?
    {
        linked.commit()?;
    }
    links.linked(len);
    Ok(())
}
