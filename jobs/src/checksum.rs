//! Checksums of stored objects: CRC32C (the Castagnoli polynomial, computed with the CPU's
//! CRC instruction where it has one) of a split, of each partition of a map output, of a part.
//!
//! The invariant: a checksum is taken of the bytes as they were written, by the node that
//! wrote them, and recorded in the job table with the object's size; every reader of a copy
//! — a map reading its split, a reduce reading a map's partition, a replica receiving a part,
//! `shoal output` — compares before it uses the bytes, and treats a mismatch like a lost copy.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

/// Bytes read at a time when checksumming a file.
const READ_BYTES: usize = 1 << 20;

/// The checksum of `bytes`.
pub fn of(bytes: &[u8]) -> u32 {
    crc32c::crc32c(bytes)
}

/// A checksum being computed over bytes that arrive in pieces.
#[derive(Debug, Default, Clone, Copy)]
pub struct Running(u32);

impl Running {
    /// Add the next bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        self.0 = crc32c::crc32c_append(self.0, bytes);
    }

    /// The checksum of everything added.
    pub fn value(&self) -> u32 {
        self.0
    }
}

/// The checksum of `len` bytes of `file` from `offset`; an error if the file ends before.
pub fn of_range(file: &mut File, offset: u64, len: u64) -> io::Result<u32> {
    file.seek(SeekFrom::Start(offset))?;
    let mut buf = vec![0u8; READ_BYTES.min(len as usize).max(1)];
    let mut sum = Running::default();
    let mut left = len;
    while left > 0 {
        let want = (left as usize).min(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{left} of {len} bytes missing"),
            ));
        }
        sum.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(sum.value())
}

/// The checksums of consecutive sections of the file at `path` with sizes `sizes` (a map
/// output's partitions).
pub fn of_sections(path: &Path, sizes: &[u64]) -> io::Result<Vec<u32>> {
    let mut file = File::open(path)?;
    let mut offset = 0;
    let mut sums = Vec::with_capacity(sizes.len());
    for &len in sizes {
        sums.push(of_range(&mut file, offset, len)?);
        offset += len;
    }
    Ok(sums)
}

/// Why a copy is not what the job table says it is.
#[derive(Debug, thiserror::Error)]
pub enum Mismatch {
    /// It could not be read whole.
    #[error("{what} could not be read: {source}")]
    Unreadable {
        /// What was read.
        what: String,
        /// Why.
        source: io::Error,
    },
    /// Its bytes differ from the ones written.
    #[error("{what} is corrupt: checksum {got:08x}, {want:08x} recorded")]
    Corrupt {
        /// What was read.
        what: String,
        /// The checksum of the bytes read.
        got: u32,
        /// The recorded checksum.
        want: u32,
    },
}

/// Check `len` bytes of the file at `path` from `offset` against `want` (`None`: nothing
/// recorded, as for a job the table holds from before checksums, and nothing to check).
pub fn verify(
    path: &Path,
    offset: u64,
    len: u64,
    want: Option<u32>,
    what: impl Fn() -> String,
) -> Result<(), Mismatch> {
    let Some(want) = want else {
        return Ok(());
    };
    let got = File::open(path)
        .and_then(|mut f| of_range(&mut f, offset, len))
        .map_err(|source| Mismatch::Unreadable {
            what: what(),
            source,
        })?;
    if got == want {
        Ok(())
    } else {
        Err(Mismatch::Corrupt {
            what: what(),
            got,
            want,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sections_match_their_bytes_and_a_flipped_bit_or_a_cut_is_caught() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        let (a, b) = (b"alpha\t1\n".repeat(1000), b"beta\t2\n".to_vec());
        let mut f = File::create(&path).unwrap();
        f.write_all(&a).unwrap();
        f.write_all(&b).unwrap();
        drop(f);
        let sums = of_sections(&path, &[a.len() as u64, b.len() as u64]).unwrap();
        assert_eq!(sums, vec![of(&a), of(&b)]);
        let at = a.len() as u64;
        verify(&path, at, b.len() as u64, Some(sums[1]), || "b".into()).unwrap();

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[at as usize + 2] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();
        let err = verify(&path, at, b.len() as u64, Some(sums[1]), || "b".into()).unwrap_err();
        assert!(
            err.to_string().starts_with("b is corrupt: checksum"),
            "{err}"
        );
        verify(&path, 0, at, Some(sums[0]), || "a".into()).unwrap();

        bytes.truncate(at as usize + 3);
        std::fs::write(&path, &bytes).unwrap();
        let err = verify(&path, at, b.len() as u64, Some(sums[1]), || "b".into()).unwrap_err();
        assert!(matches!(err, Mismatch::Unreadable { .. }), "{err}");
    }

    #[test]
    fn a_running_checksum_equals_the_whole() {
        let bytes: Vec<u8> = (0..10_000u32).map(|i| (i * 7) as u8).collect();
        let mut r = Running::default();
        for piece in bytes.chunks(333) {
            r.update(piece);
        }
        assert_eq!(r.value(), of(&bytes));
    }
}
