//! The text form of a record, as streaming programs read and write it (Hadoop Streaming's
//! contract): `key<TAB>value` lines, or `key` alone when the value is empty.

use std::io::{self, Write};

/// `key<TAB>value` → (key, value); no tab: the whole line is the key.
#[inline]
pub fn split_tab(line: &[u8]) -> (&[u8], &[u8]) {
    match memchr::memchr(b'\t', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, b""),
    }
}

/// Write a record as an output or streaming input line: `key<TAB>value`, or `key` alone
/// when the value is empty.
#[inline]
pub fn write_line(w: &mut impl Write, key: &[u8], value: &[u8]) -> io::Result<()> {
    w.write_all(key)?;
    if !value.is_empty() {
        w.write_all(b"\t")?;
        w.write_all(value)?;
    }
    w.write_all(b"\n")
}
