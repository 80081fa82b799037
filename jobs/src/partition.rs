//! Which reduce partition a key goes to. The invariant: the answer depends only on the key
//! bytes and the partitioner (never on the platform, the process or a random seed), so every
//! node of a cluster and every re-run of a task agree.

use serde::{Deserialize, Serialize};

/// The stable key hash: 64-bit FNV-1a over the key bytes. Documented and frozen — changing
/// it would send keys of a running job to different reducers on different nodes.
#[inline]
pub fn stable_hash(key: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in key {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// How keys are assigned to R partitions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Partitioner {
    /// `stable_hash(key) mod R`.
    Hash,
    /// Total order: partition i holds keys in `[bounds[i-1], bounds[i])` (bytewise), so part
    /// files concatenated in order are globally sorted. `bounds.len() == R - 1`.
    Range(Vec<serde_bytes::ByteBuf>),
}

impl Partitioner {
    /// The partition of `key` among `r` partitions.
    #[inline]
    pub fn partition(&self, key: &[u8], r: u32) -> u32 {
        match self {
            Partitioner::Hash => {
                if r == 1 {
                    0
                } else {
                    (stable_hash(key) % u64::from(r)) as u32
                }
            }
            Partitioner::Range(bounds) => bounds.partition_point(|b| b.as_slice() <= key) as u32,
        }
    }

    /// Range bounds for `r` partitions from a sample of keys: the keys at the r-1 evenly
    /// spaced quantiles of the sorted sample.
    pub fn sampled_ranges(mut sample: Vec<Vec<u8>>, r: u32) -> Partitioner {
        sample.sort_unstable();
        let mut bounds = Vec::with_capacity(r.saturating_sub(1) as usize);
        if !sample.is_empty() {
            for i in 1..r as usize {
                let at = i * sample.len() / r as usize;
                bounds.push(serde_bytes::ByteBuf::from(
                    sample[at.min(sample.len() - 1)].clone(),
                ));
            }
        }
        bounds.dedup();
        Partitioner::Range(bounds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stable_hash_is_frozen() {
        // Published FNV-1a 64 test vectors: the hash must never change.
        assert_eq!(stable_hash(b""), 0xcbf29ce484222325);
        assert_eq!(stable_hash(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(stable_hash(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn range_partitions_preserve_order() {
        let sample: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| format!("{i:05}").into_bytes())
            .collect();
        let p = Partitioner::sampled_ranges(sample, 4);
        let keys: Vec<Vec<u8>> = (0..1000u32)
            .map(|i| format!("{:05}", i * 7 % 1000).into_bytes())
            .collect();
        for a in &keys {
            for b in keys.iter().take(50) {
                if a < b {
                    assert!(p.partition(a, 4) <= p.partition(b, 4));
                }
            }
        }
        assert_eq!(p.partition(b"", 4), 0);
        assert_eq!(p.partition(b"\xff", 4), 3);
    }
}
