//! Key fields and secondary sort for streaming jobs: Hadoop Streaming's
//! `stream.map.output.field.separator` + `stream.num.map.output.key.fields`, the
//! `KeyFieldBasedPartitioner` and the `KeyFieldBasedComparator`, as `--separator S`,
//! `--key-fields N`, `--partition-fields A,B` and `--sort-keys 'k1,1 k2,2nr'`.
//!
//! A mapper's output line is cut at the N-th separator: the part before it is the key (the
//! whole line when it has fewer separators). The key's fields (split by the same separator)
//! choose the partition (fields A..B, or the whole key) and the order (the sort specs, or the
//! key's bytes). Records with equal sort keys keep their emit order, map task by map task —
//! the order Hadoop's documentation shows for ties. A reducer (and a combiner) reads each
//! line exactly as the mapper wrote it.
//!
//! How: the order is turned into bytes. Each sort spec's part of the key is encoded so that
//! comparing encodings byte by byte orders them as the spec says (strings escaped and
//! terminated, numbers as sign, magnitude and digits, reversed specs with every bit flipped),
//! and the record's key in the sort buffer is the concatenation. The sort, the spill, the
//! merge and the shuffle stay bytewise and untouched, and a job without these flags pays
//! nothing.
//!
//! The invariant: for every two lines, the encoded keys compare as the specs compare the
//! lines' keys (checked against a direct comparison by a property test).

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// How a streaming job's map output lines are keyed, partitioned and ordered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFields {
    /// Field separator of map output lines (`--separator`, default tab); not empty.
    pub separator: String,
    /// The key is the first N fields (`--key-fields`, default 1).
    pub key_fields: u32,
    /// Partition on key fields A..=B only (`--partition-fields A,B`); `None`: the whole key.
    pub partition_fields: Option<(u32, u32)>,
    /// The order (`--sort-keys`); empty: the key's bytes.
    pub sort_keys: Vec<SortKey>,
}

/// One sort(1)-style key spec over the key's fields: `kSTART[,END][n][r]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SortKey {
    /// First field, from 1.
    pub start: u32,
    /// Last field (inclusive); `None`: to the end of the key.
    pub end: Option<u32>,
    /// Compare as numbers (`n`): an optional `-`, digits, an optional fraction; anything
    /// else (or nothing) is zero, as sort(1) does.
    pub numeric: bool,
    /// Reverse (`r`).
    pub reverse: bool,
}

impl Default for KeyFields {
    fn default() -> Self {
        KeyFields {
            separator: "\t".into(),
            key_fields: 1,
            partition_fields: None,
            sort_keys: Vec::new(),
        }
    }
}

/// Parse `--sort-keys`: specs separated by spaces, each `k1,1`, `-k2,2nr`, `k3` or `3,3n`;
/// flags `n` and `r` after the start or end field.
pub fn parse_sort_keys(text: &str) -> Result<Vec<SortKey>> {
    let bad = |spec: &str, why: &str| {
        Err(Error::InvalidSpec(format!(
            "--sort-keys: {spec:?} {why} (specs look like 'k1,1 k2,2nr': fields START[,END], \
             n numeric, r reverse)"
        )))
    };
    let mut keys = Vec::new();
    for spec in text.split_whitespace() {
        let body = spec.trim_start_matches('-').trim_start_matches('k');
        let (start, end) = match body.split_once(',') {
            Some((s, e)) => (s, Some(e)),
            None => (body, None),
        };
        let mut numeric = false;
        let mut reverse = false;
        let mut field = |part: &str| -> std::result::Result<u32, &'static str> {
            let digits = part.trim_end_matches(|c: char| c.is_ascii_alphabetic());
            for flag in part[digits.len()..].chars() {
                match flag {
                    'n' => numeric = true,
                    'r' => reverse = true,
                    _ => return Err("has a flag other than n and r"),
                }
            }
            if digits.contains('.') {
                return Err("names a character position (only whole fields are supported)");
            }
            match digits.parse::<u32>() {
                Ok(f) if f >= 1 => Ok(f),
                _ => Err("needs a field number from 1"),
            }
        };
        let start = match field(start) {
            Ok(f) => f,
            Err(why) => return bad(spec, why),
        };
        let end = match end.map(&mut field).transpose() {
            Ok(e) => e,
            Err(why) => return bad(spec, why),
        };
        if end.is_some_and(|e| e < start) {
            return bad(spec, "ends before it starts");
        }
        keys.push(SortKey {
            start,
            end,
            numeric,
            reverse,
        });
    }
    if keys.is_empty() {
        return bad(text, "has no key spec");
    }
    Ok(keys)
}

/// Parse `--partition-fields`: `A,B` or `A` (fields A..=B of the key, from 1).
pub fn parse_partition_fields(text: &str) -> Result<(u32, u32)> {
    let body = text.trim().trim_start_matches('-').trim_start_matches('k');
    let (a, b) = body.split_once(',').unwrap_or((body, body));
    match (a.trim().parse::<u32>(), b.trim().parse::<u32>()) {
        (Ok(a), Ok(b)) if a >= 1 && b >= a => Ok((a, b)),
        _ => Err(Error::InvalidSpec(format!(
            "--partition-fields {text:?} must be A,B with 1 <= A <= B (key fields, from 1)"
        ))),
    }
}

impl KeyFields {
    /// Check the values a spec carries (they may come from JSON, not the flags).
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::InvalidSpec(m));
        if self.separator.is_empty() || self.separator.contains('\n') {
            return bad("--separator must be non-empty and must not contain a newline".into());
        }
        if self.separator.len() > 16 {
            return bad("--separator is longer than 16 bytes".into());
        }
        if !(1..=1000).contains(&self.key_fields) {
            return bad(format!(
                "--key-fields must be 1..=1000, got {}",
                self.key_fields
            ));
        }
        if let Some((a, b)) = self.partition_fields {
            if a < 1 || b < a || b > 1000 {
                return bad(format!(
                    "--partition-fields {a},{b} must have 1 <= A <= B <= 1000"
                ));
            }
        }
        if self.sort_keys.len() > 64 {
            return bad("--sort-keys has more than 64 specs".into());
        }
        for k in &self.sort_keys {
            if k.start < 1 || k.start > 1000 || k.end.is_some_and(|e| e < k.start || e > 1000) {
                return bad(format!("--sort-keys field range {k:?} is out of 1..=1000"));
            }
        }
        Ok(())
    }

    /// The key of a map output line: everything before the `key_fields`-th separator.
    pub fn key_of<'l>(&self, line: &'l [u8]) -> &'l [u8] {
        let sep = self.separator.as_bytes();
        let mut seen = 0;
        for at in memchr::memmem::find_iter(line, sep) {
            seen += 1;
            if seen == self.key_fields {
                return &line[..at];
            }
        }
        line
    }

    /// Fields `a..=b` of `key` (from 1), separators between them included; empty when the
    /// key has fewer than `a` fields; `b = None` runs to the key's end.
    fn fields<'k>(&self, key: &'k [u8], a: u32, b: Option<u32>) -> &'k [u8] {
        let sep = self.separator.as_bytes();
        // Byte offsets where field i (from 1) starts and where field i ends.
        let mut start = None;
        let mut field = 1;
        let mut field_start = 0;
        for at in memchr::memmem::find_iter(key, sep) {
            if field == a {
                start = Some(field_start);
            }
            if Some(field) == b {
                return &key[start.unwrap_or(at)..at];
            }
            field += 1;
            field_start = at + sep.len();
        }
        if field == a {
            start = Some(field_start);
        }
        match start {
            Some(s) => &key[s..],
            None => &[],
        }
    }

    /// The bytes of `key` its partition is chosen by.
    pub fn partition_bytes<'k>(&self, key: &'k [u8]) -> &'k [u8] {
        match self.partition_fields {
            Some((a, b)) => self.fields(key, a, Some(b)),
            None => key,
        }
    }

    /// Append to `out` the bytes whose bytewise order is this job's order of keys.
    pub fn encode_sort_key(&self, key: &[u8], out: &mut Vec<u8>) {
        if self.sort_keys.is_empty() {
            out.extend_from_slice(key);
            return;
        }
        for k in &self.sort_keys {
            let part = self.fields(key, k.start, k.end);
            let from = out.len();
            if k.numeric {
                encode_number(part, out);
            } else {
                encode_bytes(part, out);
            }
            if k.reverse {
                for b in &mut out[from..] {
                    *b = !*b;
                }
            }
        }
    }

    /// The specs' comparison of two keys, directly (the reference the encoding is tested
    /// against).
    pub fn compare(&self, a: &[u8], b: &[u8]) -> Ordering {
        if self.sort_keys.is_empty() {
            return a.cmp(b);
        }
        for k in &self.sort_keys {
            let (x, y) = (
                self.fields(a, k.start, k.end),
                self.fields(b, k.start, k.end),
            );
            let o = if k.numeric {
                Number::parse(x).cmp(&Number::parse(y))
            } else {
                x.cmp(y)
            };
            let o = if k.reverse { o.reverse() } else { o };
            if o != Ordering::Equal {
                return o;
            }
        }
        Ordering::Equal
    }
}

/// Bytes, escaped so that the encoding is prefix-free and orders as the bytes do: 0x00 is
/// written 0x00 0xFF and the end 0x00 0x00.
fn encode_bytes(part: &[u8], out: &mut Vec<u8>) {
    for &b in part {
        out.push(b);
        if b == 0 {
            out.push(0xFF);
        }
    }
    out.extend_from_slice(&[0, 0]);
}

/// A decimal number as sort -n reads it: sign, integer digits without leading zeros,
/// fraction digits without trailing zeros.
#[derive(Debug, PartialEq, Eq)]
struct Number<'a> {
    negative: bool,
    int: &'a [u8],
    frac: &'a [u8],
}

impl<'a> Number<'a> {
    fn parse(s: &'a [u8]) -> Self {
        let s = s.trim_ascii_start();
        let (negative, s) = match s.first() {
            Some(b'-') => (true, &s[1..]),
            _ => (false, s),
        };
        let int_len = s.iter().take_while(|b| b.is_ascii_digit()).count();
        let mut int = &s[..int_len];
        while int.first() == Some(&b'0') {
            int = &int[1..];
        }
        let mut frac: &[u8] = &[];
        if s.get(int_len) == Some(&b'.') {
            let rest = &s[int_len + 1..];
            let n = rest.iter().take_while(|b| b.is_ascii_digit()).count();
            frac = &rest[..n];
            while frac.last() == Some(&b'0') {
                frac = &frac[..frac.len() - 1];
            }
        }
        let zero = int.is_empty() && frac.is_empty();
        Number {
            negative: negative && !zero,
            int,
            frac,
        }
    }

    fn magnitude(&self) -> Ordering {
        if self.int.is_empty() && self.frac.is_empty() {
            Ordering::Equal
        } else if self.negative {
            Ordering::Less
        } else {
            Ordering::Greater
        }
    }
}

impl Ord for Number<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        let sign = self.magnitude().cmp(&other.magnitude());
        if sign != Ordering::Equal || self.magnitude() == Ordering::Equal {
            return sign;
        }
        let abs = self
            .int
            .len()
            .cmp(&other.int.len())
            .then_with(|| self.int.cmp(other.int))
            .then_with(|| self.frac.cmp(other.frac));
        if self.negative {
            abs.reverse()
        } else {
            abs
        }
    }
}

impl PartialOrd for Number<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// A number, prefix-free and ordered bytewise: a class byte (1 negative, 2 zero, 3 positive),
/// then for a non-zero number the count of integer digits (4 bytes, big-endian) and the
/// digits, ended by 0x00 — everything after the class byte bit-flipped for a negative one.
fn encode_number(part: &[u8], out: &mut Vec<u8>) {
    let n = Number::parse(part);
    match n.magnitude() {
        Ordering::Equal => out.push(2),
        sign => {
            out.push(if sign == Ordering::Less { 1 } else { 3 });
            let from = out.len();
            out.extend_from_slice(&(n.int.len() as u32).to_be_bytes());
            out.extend_from_slice(n.int);
            out.extend_from_slice(n.frac);
            out.push(0);
            if n.negative {
                for b in &mut out[from..] {
                    *b = !*b;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn dotted(keys: &str) -> KeyFields {
        KeyFields {
            separator: ".".into(),
            key_fields: 4,
            partition_fields: None,
            sort_keys: if keys.is_empty() {
                Vec::new()
            } else {
                parse_sort_keys(keys).unwrap()
            },
        }
    }

    fn encoded(k: &KeyFields, key: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        k.encode_sort_key(key, &mut out);
        out
    }

    #[test]
    fn the_key_is_the_first_n_fields() {
        let k = KeyFields {
            key_fields: 2,
            ..dotted("")
        };
        assert_eq!(k.key_of(b"11.12.1.2"), b"11.12");
        assert_eq!(k.key_of(b"11"), b"11");
        assert_eq!(k.key_of(b"11.12"), b"11.12");
        let tab = KeyFields::default();
        assert_eq!(tab.key_of(b"word\t3"), b"word");
        let multi = KeyFields {
            separator: "::".into(),
            ..dotted("")
        };
        assert_eq!(multi.key_of(b"a::b::c::d::e"), b"a::b::c::d");
    }

    #[test]
    fn partition_fields_pick_a_range_of_the_key() {
        let k = KeyFields {
            partition_fields: Some((1, 2)),
            ..dotted("")
        };
        assert_eq!(k.partition_bytes(b"11.12.1.2"), b"11.12");
        assert_eq!(k.partition_bytes(b"11"), b"11");
        let k = KeyFields {
            partition_fields: Some((2, 3)),
            ..dotted("")
        };
        assert_eq!(k.partition_bytes(b"11.12.1.2"), b"12.1");
        assert_eq!(k.partition_bytes(b"11.12"), b"12");
        assert_eq!(k.partition_bytes(b"11"), b"");
    }

    #[test]
    fn sort_key_specs_parse_as_sort_writes_them() {
        let keys = parse_sort_keys("k1,1 -k2,2nr k3 4n").unwrap();
        let want = |start, end, numeric, reverse| SortKey {
            start,
            end,
            numeric,
            reverse,
        };
        assert_eq!(
            keys,
            vec![
                want(1, Some(1), false, false),
                want(2, Some(2), true, true),
                want(3, None, false, false),
                want(4, None, true, false),
            ]
        );
        for bad in ["", "k0,1", "k2,1", "k1.2,1", "k1,1x", "kx"] {
            let e = parse_sort_keys(bad).unwrap_err().to_string();
            assert!(e.contains("--sort-keys"), "{bad}: {e}");
        }
        assert_eq!(parse_partition_fields("1,2").unwrap(), (1, 2));
        assert_eq!(parse_partition_fields("-k1,2").unwrap(), (1, 2));
        assert_eq!(parse_partition_fields("3").unwrap(), (3, 3));
        assert!(parse_partition_fields("2,1").is_err());
        assert!(parse_partition_fields("0").is_err());
    }

    #[test]
    fn numbers_order_as_sort_n() {
        let k = KeyFields {
            separator: "\t".into(),
            key_fields: 1,
            partition_fields: None,
            sort_keys: parse_sort_keys("k1n").unwrap(),
        };
        let sorted = [
            "-10", "-9.5", "-9", "-0.01", "", "0", "-0", "abc", "0.5", "00.50", "1", "1.05", "2",
            "9", "10", "10.5x", "100",
        ];
        for w in sorted.windows(2) {
            let (a, b) = (w[0].as_bytes(), w[1].as_bytes());
            assert_ne!(
                k.compare(a, b),
                Ordering::Greater,
                "{:?} vs {:?}",
                w[0],
                w[1]
            );
            assert_eq!(
                encoded(&k, a).cmp(&encoded(&k, b)),
                k.compare(a, b),
                "{:?} vs {:?}",
                w[0],
                w[1]
            );
        }
        assert_eq!(k.compare(b"0.5", b"00.50"), Ordering::Equal);
        assert_eq!(k.compare(b"", b"-0"), Ordering::Equal);
    }

    fn key_text() -> impl Strategy<Value = Vec<u8>> {
        // Short fields of digits, signs, dots, zero bytes and letters: where encodings
        // would go wrong (prefixes, escapes, signs) is in reach.
        proptest::collection::vec(
            prop_oneof![
                Just(b'.'),
                Just(b'-'),
                Just(0u8),
                Just(0xFF),
                b'0'..=b'9',
                b'a'..=b'c'
            ],
            0..12,
        )
    }

    fn spec_text() -> impl Strategy<Value = String> {
        proptest::collection::vec((1u32..4, 0u32..3, any::<bool>(), any::<bool>()), 1..4).prop_map(
            |specs| {
                specs
                    .into_iter()
                    .map(|(s, len, n, r)| {
                        let mut t = format!("k{s},{}", s + len);
                        if n {
                            t.push('n');
                        }
                        if r {
                            t.push('r');
                        }
                        t
                    })
                    .collect::<Vec<_>>()
                    .join(" ")
            },
        )
    }

    proptest! {
        #[test]
        fn encoded_keys_compare_as_the_specs_do(
            a in key_text(), b in key_text(), specs in spec_text(),
        ) {
            let k = dotted(&specs);
            prop_assert_eq!(encoded(&k, &a).cmp(&encoded(&k, &b)), k.compare(&a, &b));
        }
    }
}
