//! A node's identity: an ed25519 keypair kept in its data dir, so its PeerId — and the Raft
//! node id derived from it — are the same across restarts.

use std::path::Path;

use anyhow::Context;
use shoal_net::{Keypair, PeerId};

const KEY_FILE: &str = "identity.key";

/// Load the keypair from `dir`, or create and save a new one.
pub fn load_or_create(dir: &Path) -> anyhow::Result<Keypair> {
    let path = dir.join(KEY_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => Keypair::from_protobuf_encoding(&bytes)
            .with_context(|| format!("{} is not a Shoal identity key (corrupt?)", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = Keypair::generate_ed25519();
            let bytes = key
                .to_protobuf_encoding()
                .context("encoding the new identity key")?;
            let tmp = dir.join(format!("{KEY_FILE}.tmp"));
            let _ = std::fs::remove_file(&tmp);
            // Created 0600: the key is never readable by others, not even for a moment.
            let write = || -> std::io::Result<()> {
                use std::io::Write;
                use std::os::unix::fs::OpenOptionsExt;
                let mut f = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(&tmp)?;
                f.write_all(&bytes)?;
                f.sync_all()
            };
            write().with_context(|| format!("writing {}", tmp.display()))?;
            std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))?;
            Ok(key)
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// The Raft node id of a peer: 64-bit FNV-1a of its PeerId bytes. Stable, and the same
/// on every node, so ids can be computed from a PeerId alone.
pub fn node_id(peer: &PeerId) -> u64 {
    shoal_jobs::partition::stable_hash(&peer.to_bytes())
}

/// A node id as the API and the logs show it: 16 hex digits.
pub fn hex(id: u64) -> String {
    format!("{id:016x}")
}
