//! Map-side sorting and the k-way merge.
//!
//! A map task's records go into a memory-bounded buffer: [`SortBuffer`] (records in an arena,
//! sorted by (partition, key) with a stable sort so equal keys keep their emit order) or, when
//! a native app has a combiner, [`HashBuffer`] (one entry per key whose values are combined as
//! they arrive). Past the budget a buffer is spilled as one sorted run holding a section per
//! partition. At the end each partition's sections are merged into one sorted file.
//!
//! The invariant: every record emitted comes out exactly once (or combined), runs are sorted
//! by key bytes, and ties are broken by run order — which is (map task, position) order.

use std::cmp::Ordering;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use rustc_hash::FxHashMap;

use crate::error::{IoContext, Result};
use crate::record::{RecordReader, RecordWriter};

/// A sorted run on disk: one file, one section per partition.
#[derive(Debug)]
pub struct Run {
    /// The run file.
    pub path: PathBuf,
    /// `(offset, length)` of each partition's section.
    pub sections: Vec<(u64, u64)>,
}

impl Run {
    /// A reader over partition `p`'s section.
    pub fn section(&self, p: usize) -> Result<impl Read + Send + use<>> {
        let (off, len) = self.sections[p];
        open_range(&self.path, off, len)
    }
}

/// A reader over `len` bytes of the file at `path` from `offset`.
pub fn open_range(path: &Path, offset: u64, len: u64) -> Result<std::io::Take<File>> {
    let mut f = File::open(path).ctx(|| format!("opening {}", path.display()))?;
    f.seek(SeekFrom::Start(offset))
        .ctx(|| format!("seeking in {}", path.display()))?;
    Ok(f.take(len))
}

/// Write records, already sorted by (partition, key), as a run with one section per partition.
pub fn write_run<'a>(
    path: &Path,
    partitions: u32,
    sorted: impl Iterator<Item = (u32, &'a [u8], &'a [u8])>,
) -> Result<(Run, u64)> {
    let file =
        crate::scratch::replace(path, 0o600).ctx(|| format!("creating run {}", path.display()))?;
    let mut w = RecordWriter::new(file);
    let mut sections = vec![(0u64, 0u64); partitions as usize];
    let mut current = 0u32;
    let mut start = 0u64;
    for (p, k, v) in sorted {
        while current < p {
            sections[current as usize] = (start, w.bytes() - start);
            current += 1;
            start = w.bytes();
        }
        w.write(k, v)
            .ctx(|| format!("writing run {}", path.display()))?;
    }
    while current < partitions {
        sections[current as usize] = (start, w.bytes() - start);
        current += 1;
        start = w.bytes();
    }
    let records = w.records();
    let f = w
        .finish()
        .ctx(|| format!("writing run {}", path.display()))?;
    drop(f);
    Ok((
        Run {
            path: path.to_owned(),
            sections,
        },
        records,
    ))
}

/// Records in one arena plus a compact index, sorted on demand. Each record in the arena is
/// its key's and value's lengths (LEB128 varints) then their bytes; the index holds one
/// `u128` per record: partition (28 bits), the key's first 8 bytes (64), the key's length
/// up to 8 or 9 for longer (4) and the record's arena offset (32). Sixteen bytes a record,
/// sorted as plain integers: keys of at most 8 bytes are then in order (a shorter key whose
/// padding equals a longer one's bytes comes first, as bytes compare), equal ones in emit
/// order, without reading the arena.
#[derive(Default)]
pub struct SortBuffer {
    arena: Vec<u8>,
    index: Vec<u128>,
}

/// The first 8 key bytes, big-endian, zero-padded: comparing prefixes orders keys as bytes do
/// whenever the prefixes differ.
#[inline]
fn key_prefix(key: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    let n = key.len().min(8);
    b[..n].copy_from_slice(&key[..n]);
    u64::from_be_bytes(b)
}

#[inline]
fn push_varint(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// A varint at `at` in `bytes` and where what follows it starts (the arena holds only what
/// [`push_varint`] wrote).
#[inline]
fn read_varint(bytes: &[u8], mut at: usize) -> (usize, usize) {
    let (mut n, mut shift) = (0usize, 0);
    loop {
        let b = bytes[at];
        at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return (n, at);
        }
        shift += 7;
    }
}

/// Index bits above the offset: partition, prefix and length class.
#[inline]
fn entry_head(e: u128) -> u128 {
    e >> 32
}

#[inline]
fn entry_part(e: u128) -> u32 {
    (e >> 100) as u32
}

/// The length class of a key longer than 8 bytes.
const LONG_KEY: u128 = 9;

#[inline]
fn entry_off(e: u128) -> usize {
    e as u32 as usize
}

impl SortBuffer {
    /// Bytes held, index included: what counts against the memory budget.
    pub fn bytes(&self) -> usize {
        self.arena.len() + self.index.len() * std::mem::size_of::<u128>()
    }

    /// Records held.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// Add a record of partition `part`.
    #[inline]
    pub fn push(&mut self, part: u32, key: &[u8], value: &[u8]) {
        let off = self.arena.len() as u32;
        push_varint(&mut self.arena, key.len());
        push_varint(&mut self.arena, value.len());
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        let class = (key.len() as u128).min(LONG_KEY);
        self.index.push(
            (u128::from(part) << 100)
                | (u128::from(key_prefix(key)) << 36)
                | (class << 32)
                | u128::from(off),
        );
    }

    /// Record `e`'s key and value.
    #[inline]
    fn record(&self, e: u128) -> (&[u8], &[u8]) {
        let (klen, at) = read_varint(&self.arena, entry_off(e));
        let (vlen, at) = read_varint(&self.arena, at);
        (
            &self.arena[at..at + klen],
            &self.arena[at + klen..at + klen + vlen],
        )
    }

    /// Sort by (partition, key), equal keys in emit order. The arena offset grows with every
    /// push, so it is the emit order: sorting the index as integers orders everything but
    /// keys longer than 8 bytes that share their first 8, and those runs are then sorted by
    /// (full key, offset). No stable sort's scratch memory needed.
    pub fn sort(&mut self) {
        self.index.sort_unstable();
        let mut start = 0;
        while start < self.index.len() {
            let head = entry_head(self.index[start]);
            let mut end = start + 1;
            while end < self.index.len() && entry_head(self.index[end]) == head {
                end += 1;
            }
            if head & 0xf == LONG_KEY && end - start > 1 {
                let mut index = std::mem::take(&mut self.index);
                index[start..end].sort_unstable_by(|&a, &b| {
                    self.record(a)
                        .0
                        .cmp(self.record(b).0)
                        .then(entry_off(a).cmp(&entry_off(b)))
                });
                self.index = index;
            }
            start = end;
        }
    }

    /// The records in index order (sorted after [`SortBuffer::sort`]).
    pub fn iter(&self) -> impl Iterator<Item = (u32, &[u8], &[u8])> {
        self.index.iter().map(|&e| {
            let (k, v) = self.record(e);
            (entry_part(e), k, v)
        })
    }

    /// Empty the buffer, keeping its allocations for the next round.
    pub fn clear(&mut self) {
        self.arena.clear();
        self.index.clear();
    }
}

/// A native combiner: fold the values of one key into fewer values.
pub type CombineFn<'a> =
    dyn Fn(&[u8], &mut dyn crate::apps::Values, &mut dyn FnMut(&[u8])) + Sync + 'a;

/// Bytes kept inside the table entry when short: a lookup then touches the entry alone, not
/// also a separate allocation for the key and another for the values (cache misses are what
/// a skewed input with a long tail of keys costs).
pub type InlineBytes = smallvec::SmallVec<[u8; 16]>;

struct Pending {
    part: u32,
    count: u32,
    /// Values, each as a varint length + bytes.
    values: InlineBytes,
}

/// A key's partition and the sum of its values so far, in a summing buffer: half the size
/// of a [`Pending`], so more of the table stays in the CPU's caches.
struct Summed {
    part: u32,
    sum: u64,
}

/// Values stored varint-length-prefixed in a byte vector.
pub struct PackedValues<'a> {
    rest: &'a [u8],
}

impl<'a> PackedValues<'a> {
    /// Iterate over packed values.
    pub fn new(bytes: &'a [u8]) -> Self {
        PackedValues { rest: bytes }
    }
}

impl<'a> Iterator for PackedValues<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        // Each value: its length as a LEB128 varint, then its bytes.
        let mut n = 0usize;
        let mut shift = 0;
        let mut i = 0;
        loop {
            let b = *self.rest.get(i)?;
            n |= usize::from(b & 0x7f) << shift;
            i += 1;
            if b & 0x80 == 0 {
                break;
            }
            shift += 7;
        }
        let v = self.rest.get(i..i + n)?;
        self.rest = &self.rest[i + n..];
        Some(v)
    }
}

impl crate::apps::Values for PackedValues<'_> {
    fn next_value(&mut self) -> Option<&[u8]> {
        self.next()
    }
}

/// Append a value as a varint length and its bytes (byte by byte when short: the common
/// values of a combiner are a few digits, and a library copy call costs more than they do).
#[inline]
fn pack(out: &mut InlineBytes, v: &[u8]) {
    let mut n = v.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    if v.len() <= 8 {
        for &b in v {
            out.push(b);
        }
    } else {
        out.extend_from_slice(v);
    }
}

/// Values of one key combined as they arrive (for native apps with a combiner): memory grows
/// with distinct keys, not with records.
#[derive(Default)]
pub struct HashBuffer {
    map: FxHashMap<InlineBytes, Pending>,
    bytes: usize,
    /// Values are decimal integers the combiner sums ([`crate::apps::App::combiner_sums`]):
    /// each key keeps a number here, not its values in `map`.
    sums: Option<FxHashMap<InlineBytes, Summed>>,
}

/// Values per key gathered before the combiner folds them.
const COMBINE_EVERY: u32 = 64;
/// Rough bytes of bookkeeping per distinct key (its table slot with the table's slack).
const ENTRY_OVERHEAD: usize = 96;
/// The same for a summing buffer's key.
const SUMMED_OVERHEAD: usize = 64;

impl HashBuffer {
    /// Bytes held, estimated with per-entry overhead.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty() && self.sums.as_ref().is_none_or(|m| m.is_empty())
    }

    /// A buffer whose combiner sums decimal integers: it adds each value to its key's number
    /// as it comes (a value that does not parse adds zero, as [`crate::apps::sum_values`]).
    pub fn summing() -> HashBuffer {
        HashBuffer {
            sums: Some(FxHashMap::default()),
            ..HashBuffer::default()
        }
    }

    /// Add a record; every 64 values of a key are folded by `combine`. `part` gives the
    /// key's partition, asked only for a key not yet held.
    #[inline]
    pub fn push(
        &mut self,
        part: impl FnOnce() -> u32,
        key: &[u8],
        value: &[u8],
        combine: &CombineFn<'_>,
    ) {
        if let Some(sums) = &mut self.sums {
            let n = crate::apps::parse_u64(value);
            match sums.get_mut(key) {
                Some(s) => s.sum = s.sum.saturating_add(n),
                None => {
                    self.bytes += SUMMED_OVERHEAD + key.len();
                    let part = part();
                    sums.insert(InlineBytes::from_slice(key), Summed { part, sum: n });
                }
            }
            return;
        }
        let p = match self.map.get_mut(key) {
            Some(p) => p,
            None => {
                self.bytes += ENTRY_OVERHEAD + key.len();
                self.map
                    .entry(InlineBytes::from_slice(key))
                    .or_insert(Pending {
                        part: part(),
                        count: 0,
                        values: InlineBytes::new(),
                    })
            }
        };
        let before = p.values.capacity();
        pack(&mut p.values, value);
        p.count += 1;
        if p.count >= COMBINE_EVERY {
            fold(key, p, combine);
        }
        self.bytes = self.bytes + p.values.capacity() - before;
    }

    /// Fold every key's values, then hand the records out sorted by (partition, key).
    pub fn drain_sorted(
        &mut self,
        combine: &CombineFn<'_>,
    ) -> Vec<(u32, InlineBytes, InlineBytes)> {
        let mut out: Vec<(u32, InlineBytes, InlineBytes)> = self
            .map
            .drain()
            .map(|(k, mut p)| {
                if p.count > 1 {
                    fold(&k, &mut p, combine);
                }
                (p.part, k, p.values)
            })
            .collect();
        if let Some(sums) = &mut self.sums {
            out.extend(sums.drain().map(|(k, s)| {
                let mut v = InlineBytes::new();
                pack(&mut v, s.sum.to_string().as_bytes());
                (s.part, k, v)
            }));
        }
        self.bytes = 0;
        out.sort_unstable_by(|a, b| a.0.cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
        out
    }
}

fn fold(key: &[u8], p: &mut Pending, combine: &CombineFn<'_>) {
    // Fold into a small scratch buffer, then back into the entry's own allocation: the hot
    // keys of a skewed input fold thousands of times and must not reallocate each time.
    let mut folded = std::mem::take(&mut p.values);
    let mut out = InlineBytes::new();
    let mut count = 0;
    combine(key, &mut PackedValues::new(&folded), &mut |v| {
        pack(&mut out, v);
        count += 1;
    });
    folded.clear();
    folded.extend_from_slice(&out);
    p.values = folded;
    p.count = count;
}

/// K-way merge of sorted record sources; ties go to the lower source index.
pub struct Merger<R: Read> {
    sources: Vec<RecordReader<R>>,
    /// Min-heap of source indices by (current key, index).
    heap: Vec<usize>,
    /// The source whose record was last handed out, to advance on the next call.
    last: Option<usize>,
}

impl<R: Read> Merger<R> {
    /// Prime every source and build the heap.
    pub fn new(inputs: Vec<R>) -> Result<Self> {
        let mut sources = Vec::with_capacity(inputs.len());
        let mut heap = Vec::with_capacity(inputs.len());
        for (i, r) in inputs.into_iter().enumerate() {
            let mut rr = RecordReader::new(r);
            if rr.next_record()? {
                heap.push(i);
            }
            sources.push(rr);
        }
        let mut m = Merger {
            sources,
            heap,
            last: None,
        };
        for i in (0..m.heap.len() / 2).rev() {
            m.sift_down(i);
        }
        Ok(m)
    }

    #[inline]
    fn less(&self, a: usize, b: usize) -> bool {
        match self.sources[a].key().cmp(self.sources[b].key()) {
            Ordering::Less => true,
            Ordering::Greater => false,
            Ordering::Equal => a < b,
        }
    }

    fn sift_down(&mut self, mut i: usize) {
        let n = self.heap.len();
        loop {
            let l = 2 * i + 1;
            if l >= n {
                return;
            }
            let r = l + 1;
            let c = if r < n && self.less(self.heap[r], self.heap[l]) {
                r
            } else {
                l
            };
            if self.less(self.heap[c], self.heap[i]) {
                self.heap.swap(c, i);
                i = c;
            } else {
                return;
            }
        }
    }

    fn advance_last(&mut self) -> Result<()> {
        if let Some(src) = self.last.take() {
            debug_assert_eq!(self.heap.first(), Some(&src));
            if self.sources[src].next_record()? {
                self.sift_down(0);
            } else {
                let last = self.heap.pop().expect("heap holds the source just read");
                if !self.heap.is_empty() {
                    self.heap[0] = last;
                    self.sift_down(0);
                }
            }
        }
        Ok(())
    }

    /// The next record in merged order.
    pub fn next_record(&mut self) -> Result<Option<(&[u8], &[u8])>> {
        self.advance_last()?;
        match self.heap.first() {
            None => Ok(None),
            Some(&src) => {
                self.last = Some(src);
                let s = &self.sources[src];
                Ok(Some((s.key(), s.value())))
            }
        }
    }

    /// The key the next call to [`Merger::next_record`] will return, without consuming it.
    pub fn peek_key(&mut self) -> Result<Option<&[u8]>> {
        self.advance_last()?;
        Ok(self.heap.first().map(|&s| self.sources[s].key()))
    }
}

/// The values of one key, read from a [`Merger`]; I/O errors are kept for the caller.
pub struct GroupValues<'m, R: Read> {
    merger: &'m mut Merger<R>,
    key: &'m [u8],
    /// The first I/O error met while iterating.
    pub error: Option<crate::error::Error>,
    /// Values handed out.
    pub count: u64,
}

impl<'m, R: Read> GroupValues<'m, R> {
    /// Values of `key`; the merger's next record must have this key.
    pub fn new(merger: &'m mut Merger<R>, key: &'m [u8]) -> Self {
        GroupValues {
            merger,
            key,
            error: None,
            count: 0,
        }
    }

    /// Skip what the consumer left unread of this key.
    pub fn drain(&mut self) {
        while crate::apps::Values::next_value(self).is_some() {}
    }
}

impl<R: Read> crate::apps::Values for GroupValues<'_, R> {
    fn next_value(&mut self) -> Option<&[u8]> {
        if self.error.is_some() {
            return None;
        }
        match self.merger.peek_key() {
            Ok(Some(k)) if k == self.key => {}
            Ok(_) => return None,
            Err(e) => {
                self.error = Some(e);
                return None;
            }
        }
        self.count += 1;
        match self.merger.next_record() {
            Ok(Some((_, v))) => Some(v),
            Ok(None) => None,
            Err(e) => {
                self.error = Some(e);
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The buffer's order is a stable sort by (partition, key bytes): short keys that
        /// differ only by trailing zero bytes, long keys sharing their first 8 bytes, and
        /// equal keys in emit order.
        #[test]
        fn the_buffer_sorts_as_a_stable_sort_by_partition_and_key(
            records in proptest::collection::vec(
                (0u32..3, proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..12)),
                0..300,
            )
        ) {
            let mut buf = SortBuffer::default();
            for (i, (part, key)) in records.iter().enumerate() {
                buf.push(*part, key, i.to_string().as_bytes());
            }
            buf.sort();
            let got: Vec<(u32, Vec<u8>, Vec<u8>)> =
                buf.iter().map(|(p, k, v)| (p, k.to_vec(), v.to_vec())).collect();
            let mut want: Vec<(u32, Vec<u8>, Vec<u8>)> = records
                .iter()
                .enumerate()
                .map(|(i, (p, k))| (*p, k.clone(), i.to_string().into_bytes()))
                .collect();
            want.sort_by(|a, b| (a.0, &a.1).cmp(&(b.0, &b.1)));
            prop_assert_eq!(got, want);
        }
    }
}
