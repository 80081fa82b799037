//! The record format of intermediate data (spilled runs, map output, shuffled batches):
//! `u32 key length, u32 value length` (little-endian), then the key and value bytes.
//! The invariant: a run file's records are sorted by key bytes, ties in write order.

use std::io::{self, BufReader, BufWriter, Read, Write};

use crate::error::{Error, Result};

/// Largest key + value accepted when reading intermediate data (guards corrupt lengths).
pub const MAX_RECORD_BYTES: u64 = 1 << 30;

/// Writes records to any `Write`.
pub struct RecordWriter<W: Write> {
    out: BufWriter<W>,
    records: u64,
    bytes: u64,
}

impl<W: Write> RecordWriter<W> {
    /// A writer with a 256 KiB buffer.
    pub fn new(w: W) -> Self {
        RecordWriter {
            out: BufWriter::with_capacity(256 << 10, w),
            records: 0,
            bytes: 0,
        }
    }

    /// Append one record.
    #[inline]
    pub fn write(&mut self, key: &[u8], value: &[u8]) -> io::Result<()> {
        let mut head = [0u8; 8];
        head[..4].copy_from_slice(&(key.len() as u32).to_le_bytes());
        head[4..].copy_from_slice(&(value.len() as u32).to_le_bytes());
        self.out.write_all(&head)?;
        self.out.write_all(key)?;
        self.out.write_all(value)?;
        self.records += 1;
        self.bytes += 8 + key.len() as u64 + value.len() as u64;
        Ok(())
    }

    /// Records written so far.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flush and hand back the inner writer.
    pub fn finish(self) -> io::Result<W> {
        self.out.into_inner().map_err(|e| e.into_error())
    }
}

/// Reads records from any `Read`, reusing its buffers.
pub struct RecordReader<R: Read> {
    input: BufReader<R>,
    key: Vec<u8>,
    value: Vec<u8>,
}

impl<R: Read> RecordReader<R> {
    /// A reader with a 256 KiB buffer.
    pub fn new(r: R) -> Self {
        RecordReader {
            input: BufReader::with_capacity(256 << 10, r),
            key: Vec::new(),
            value: Vec::new(),
        }
    }

    /// Read the next record; false at a clean end of input.
    pub fn next_record(&mut self) -> Result<bool> {
        let mut head = [0u8; 8];
        match read_full_or_eof(&mut self.input, &mut head)? {
            0 => return Ok(false),
            8 => {}
            n => {
                return Err(Error::Corrupt(format!(
                    "record header cut short after {n} bytes"
                )))
            }
        }
        let klen = u32::from_le_bytes(head[..4].try_into().expect("4 bytes")) as usize;
        let vlen = u32::from_le_bytes(head[4..].try_into().expect("4 bytes")) as usize;
        if (klen + vlen) as u64 > MAX_RECORD_BYTES {
            return Err(Error::Corrupt(format!(
                "record of {} bytes exceeds the limit",
                klen + vlen
            )));
        }
        self.key.resize(klen, 0);
        self.value.resize(vlen, 0);
        let cut = |e: io::Error| Error::Corrupt(format!("record body cut short: {e}"));
        self.input.read_exact(&mut self.key).map_err(cut)?;
        self.input.read_exact(&mut self.value).map_err(cut)?;
        Ok(true)
    }

    /// Key of the current record.
    pub fn key(&self) -> &[u8] {
        &self.key
    }

    /// Value of the current record.
    pub fn value(&self) -> &[u8] {
        &self.value
    }
}

fn read_full_or_eof(r: &mut impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Error::io("reading intermediate data", e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn records_round_trip(recs in proptest::collection::vec((any::<Vec<u8>>(), any::<Vec<u8>>()), 0..50)) {
            let mut w = RecordWriter::new(Vec::new());
            for (k, v) in &recs { w.write(k, v).unwrap(); }
            let bytes = w.finish().unwrap();
            let mut r = RecordReader::new(bytes.as_slice());
            let mut back = vec![];
            while r.next_record().unwrap() { back.push((r.key().to_vec(), r.value().to_vec())); }
            prop_assert_eq!(back, recs);
        }

        #[test]
        fn garbage_is_an_error_never_a_panic(bytes in any::<Vec<u8>>()) {
            let mut r = RecordReader::new(bytes.as_slice());
            for _ in 0..100 {
                match r.next_record() { Ok(true) => continue, _ => break }
            }
        }
    }
}
