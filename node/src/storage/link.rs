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

#[cfg(test)]
mod tests {
    use std::io::Write;

    use crate::storage::blobs::Blobs;

    fn stored(blobs: &Blobs, key: &str, bytes: &[u8]) -> std::path::PathBuf {
        let mut w = blobs.create(key).unwrap();
        w.write_all(bytes).unwrap();
        w.commit().unwrap();
        blobs.path(key).unwrap()
    }

    fn crc(bytes: &[u8]) -> u32 {
        let mut sum = shoal_jobs::checksum::Running::default();
        sum.update(bytes);
        sum.value()
    }

    #[test]
    fn a_link_is_taken_only_for_that_object_of_a_store_of_this_user_with_its_size_and_checksum() {
        let dir = tempfile::tempdir().unwrap();
        let a = Blobs::open(dir.path().join("a/blobs")).unwrap();
        let b = Blobs::open(dir.path().join("b/blobs")).unwrap();
        let bytes = b"the quick brown fox\n";
        let from = stored(&a, "j-1/seg-00000", bytes);
        let key = "j-1/seg-00000";
        let len = bytes.len() as u64;

        // Another size, another checksum: refused, and nothing is left behind.
        assert!(b.link_from(key, &from, len + 1, crc(bytes)).is_err());
        let wrong = b.link_from(key, &from, len, crc(b"other")).unwrap_err();
        // It says what was asked, never what the file holds.
        let said = wrong.to_string();
        assert!(said.contains(&format!("{:08x}", crc(b"other"))), "{said}");
        assert!(!said.contains(&format!("{:08x}", crc(bytes))), "{said}");
        // A file that is not that object of a store: refused before it is linked.
        let secret = dir.path().join("secret");
        std::fs::write(&secret, bytes).unwrap();
        assert!(b.link_from(key, &secret, len, crc(bytes)).is_err());
        let other_key = stored(&a, "j-1/seg-00001", bytes);
        assert!(b.link_from(key, &other_key, len, crc(bytes)).is_err());
        assert!(b
            .link_from(
                key,
                std::path::Path::new("a/blobs/j-1/seg-00000"),
                len,
                crc(bytes)
            )
            .is_err());
        // A symbolic link named as the object: the link is not followed.
        let sneaky = Blobs::open(dir.path().join("c/blobs")).unwrap();
        std::fs::create_dir_all(dir.path().join("c/blobs/j-1")).unwrap();
        std::os::unix::fs::symlink(&secret, dir.path().join("c/blobs").join(key)).unwrap();
        assert!(b
            .link_from(key, &sneaky.path(key).unwrap(), len, crc(bytes))
            .is_err());
        // Another user's file named as the object: that user could write it after the
        // checksum. Only root can give a file away; elsewhere this case says so and is not
        // run.
        let foreign = Blobs::open(dir.path().join("d/blobs")).unwrap();
        let theirs = stored(&foreign, key, bytes);
        // SAFETY: geteuid has no preconditions; chown takes a NUL-terminated path.
        if unsafe { libc::geteuid() } == 0 {
            let c = std::ffi::CString::new(theirs.as_os_str().as_encoded_bytes()).unwrap();
            assert_eq!(unsafe { libc::chown(c.as_ptr(), 65534, 65534) }, 0);
            let refused = b.link_from(key, &theirs, len, crc(bytes)).unwrap_err();
            assert!(refused.to_string().contains("not owned"), "{refused}");
        } else {
            eprintln!("not root: the case of another user's file is not run");
        }
        assert!(!b.contains(key));
        assert_eq!(
            std::fs::read_dir(dir.path().join("b/blobs/j-1"))
                .unwrap()
                .count(),
            0,
            "a refused link leaves no file"
        );

        // The object itself: taken, and it outlives the sender's copy.
        b.link_from(key, &from, len, crc(bytes))
            .unwrap()
            .commit()
            .unwrap();
        a.remove_job("j-1");
        assert!(!from.exists());
        assert_eq!(std::fs::read(b.path(key).unwrap()).unwrap(), bytes);
    }
}
