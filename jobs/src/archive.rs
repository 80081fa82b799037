//! Archives shipped with a job (`--archive FILE[#name]`): a `.tar` (plain or compressed by
//! any [`Codec`](crate::compress::Codec)) or a `.zip`, known by its SHA-256, stored once per node whatever the number
//! of jobs that use it, unpacked once per job on each node that runs its tasks, and seen by
//! every attempt as `name` in its working directory.
//!
//! Unpacking, bounded and contained, is the `unpack` module's.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::error::{Error, Result};

/// Most bytes an archive may hold.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Most bytes an archive may unpack to.
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// An archive of a job, as the spec names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    /// The name its unpacked tree has in every attempt's directory.
    pub name: String,
    /// SHA-256 of its bytes, 64 lowercase hex digits: its identity in every node's store.
    pub digest: String,
    /// Its size in bytes.
    pub len: u64,
    /// Nodes (their ids) that hold a copy: filled in by the node that accepted the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<u64>,
}

impl ArchiveRef {
    /// Check what a spec may hold: a plain name, a well-formed digest, a bounded size.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        if self.digest.len() != 64 || !self.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "archive {}: its digest must be 64 hex digits (SHA-256)",
                self.name
            ));
        }
        if self.digest.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad(format!(
                "archive {}: its digest must be lowercase",
                self.name
            ));
        }
        if self.len > MAX_ARCHIVE_BYTES {
            return bad(format!(
                "archive {} is {} bytes, over the {} GiB an archive may hold",
                self.name,
                self.len,
                MAX_ARCHIVE_BYTES >> 30
            ));
        }
        Ok(())
    }
}

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::InvalidSpec(msg))
}

/// Extensions of the archives taken, longest first; the default name drops them.
const EXTENSIONS: [&str; 9] = [
    ".tar.gz", ".tar.bz2", ".tar.zst", ".tar.xz", ".tgz", ".tbz2", ".tar", ".zip", ".txz",
];

/// A `--archive` value: the file and the name it has in attempt directories (`#name`, else
/// the file's name without its archive extension: `wheels.tar.gz` is `wheels`).
pub fn parse_arg(arg: &str) -> Result<(PathBuf, String)> {
    let (path, name) = match arg.rsplit_once('#') {
        Some((p, n)) => (p, Some(n.to_owned())),
        None => (arg, None),
    };
    let file = Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| Error::InvalidSpec(format!("--archive {arg}: not a file name")))?;
    let Some(ext) = EXTENSIONS.iter().find(|e| file.ends_with(*e)) else {
        return bad(format!(
            "--archive {arg}: an archive is a .tar, .tar.gz/.tgz, .tar.bz2, .tar.zst, .tar.xz or .zip file"
        ));
    };
    let name = name.unwrap_or_else(|| file[..file.len() - ext.len()].to_owned());
    check_name(&name).map_err(|e| Error::InvalidSpec(format!("--archive {arg}: {e}")))?;
    Ok((PathBuf::from(path), name))
}

/// A name an archive may have in an attempt directory: one plain path component.
pub fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.len() <= 255
        && !name.contains(['/', '\0']);
    if !plain {
        return bad(format!(
            "archive name {name:?} must be a plain file name (no `/`, not starting with `.`)"
        ));
    }
    Ok(())
}

/// A SHA-256 being taken of bytes as they pass.
#[derive(Default)]
pub struct Hasher {
    sha: sha2::Sha256,
    len: u64,
}

impl Hasher {
    /// Take in `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest (lowercase hex) and the byte count.
    pub fn finish(self) -> (String, u64) {
        let digest = self.sha.finalize();
        (
            digest.iter().map(|b| format!("{b:02x}")).collect(),
            self.len,
        )
    }
}

/// The SHA-256 (lowercase hex) and size of a file.
pub fn digest_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(h.finish()),
            n => h.update(&buf[..n]),
        }
    }
}

/// The reference of a local archive file named `name` (its digest taken).
pub fn describe(path: &Path, name: String) -> Result<ArchiveRef> {
    let (digest, len) = digest_file(path).map_err(|source| Error::Input {
        path: path.to_owned(),
        source,
    })?;
    let r = ArchiveRef {
        name,
        digest,
        len,
        holders: Vec::new(),
    };
    r.validate()?;
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_the_file_or_after_the_hash() {
        let (p, n) = parse_arg("deps/wheels.tar.gz").expect("parse");
        assert_eq!(
            (p, n.as_str()),
            (PathBuf::from("deps/wheels.tar.gz"), "wheels")
        );
        assert_eq!(parse_arg("a.zip#lib").expect("parse").1, "lib");
        assert_eq!(parse_arg("x.tgz").expect("parse").1, "x");
        assert!(parse_arg("notes.txt").is_err());
        assert!(parse_arg("a.zip#../x").is_err());
        assert!(parse_arg("a.zip#.hidden").is_err());
        assert!(parse_arg("a.zip#").is_err());
    }

    #[test]
    fn digests_are_sha256() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let (d, n) = h.finish();
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
    }
}
