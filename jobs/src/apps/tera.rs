//! The sort benchmark's three jobs, on records in the ASCII form of the Sort Benchmark's
//! `gensort -a` (the form `valsort` and Hadoop's TeraValidate read): 100 bytes, a 10-byte
//! key of printable characters, two spaces, the record's number as 32 hexadecimal digits,
//! two spaces, 52 bytes of filler (13 runs of one hexadecimal digit four times), `\r\n`.
//!
//! - [`TeraGen`] (`teragen`, map-only): each input line `FIRST COUNT` makes records
//!   `FIRST..FIRST+COUNT`. A record is a pure function of its number (a counter-based
//!   generator), so any map makes any range, maps run in parallel, and the records' checksum
//!   is known without reading them ([`checksum_of_rows`]).
//! - `terasort`: the [`Sort`](super::Sort) app, sampled ranges, the whole record the key:
//!   records sort by their 10-byte key, ties by the rest (their number).
//! - [`TeraValidate`] (`teravalidate`, one reducer): every map summarises its split (first
//!   and last key, records, checksum, keys out of order); the reducer reads the summaries
//!   in input order (the part files' order) and checks the order across them. Its output:
//!   `records`, `checksum`, `misordered` (0 when sorted), `malformed` (records not 100 bytes),
//!   and the first misordered place, if any.
//!
//! The checksum is Hadoop's: the sum of every record's CRC (here CRC32C of its 100 bytes),
//! so it does not depend on the records' order.

use super::{App, TaskMapper, Values};

/// Bytes of a record, with its `\r\n`.
pub const RECORD_BYTES: usize = 100;
/// Bytes of a record's key.
pub const KEY_BYTES: usize = 10;

/// Record `row` (without its `\n`, which the line writer adds): 99 bytes ending in `\r`.
pub fn record(row: u64, out: &mut [u8; RECORD_BYTES - 1]) {
    let (hi, lo) = (mix(row), mix(row ^ 0x9e37_79b9_7f4a_7c15));
    // The key: 10 characters from ' ' to '~', from the high random word and then the low.
    let mut r = hi;
    for (i, b) in out[..KEY_BYTES].iter_mut().enumerate() {
        if i == 8 {
            r = lo;
        }
        *b = b' ' + (r % 95) as u8;
        r /= 95;
    }
    out[10] = b' ';
    out[11] = b' ';
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let number = u128::from(row);
    for (i, b) in out[12..44].iter_mut().enumerate() {
        *b = HEX[((number >> (4 * (31 - i))) & 0xf) as usize];
    }
    out[44] = b' ';
    out[45] = b' ';
    let mut f = lo >> 16;
    for group in out[46..98].chunks_exact_mut(4) {
        group.fill(HEX[(f & 0xf) as usize]);
        f = f.rotate_right(4);
    }
    out[98] = b'\r';
}

/// The checksum of one record as it lies in a file (its 99 bytes and `\n`).
pub fn record_crc(line: &[u8]) -> u64 {
    u64::from(crc32c::crc32c_append(crc32c::crc32c(line), b"\n"))
}

/// The sum of the CRCs of records `first..first + count`, as [`TeraValidate`] reports it.
pub fn checksum_of_rows(first: u64, count: u64) -> u64 {
    let mut buf = [0u8; RECORD_BYTES - 1];
    (first..first.saturating_add(count)).fold(0u64, |sum, row| {
        record(row, &mut buf);
        sum.wrapping_add(record_crc(&buf))
    })
}

/// SplitMix64's finaliser: a counter-based generator, the same record for the same number.
fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Records the `teragen` app makes per input line at most: 2^40 (100 TiB).
pub const MAX_ROWS_PER_LINE: u64 = 1 << 40;

/// `FIRST COUNT` of a control line, or why it is not one.
pub fn parse_rows(line: &[u8]) -> Result<(u64, u64), String> {
    let text = std::str::from_utf8(line)
        .map_err(|_| "not text; a teragen line is `FIRST COUNT`".to_owned())?;
    let mut parts = text.split_whitespace().map(str::parse::<u64>);
    match (parts.next(), parts.next(), parts.next()) {
        (Some(Ok(first)), Some(Ok(count)), None) => {
            if count > MAX_ROWS_PER_LINE || first.checked_add(count).is_none() {
                return Err(format!(
                    "{count} records from {first} is more than teragen makes from one line \
                     (at most {MAX_ROWS_PER_LINE}, numbers below 2^64)"
                ));
            }
            Ok((first, count))
        }
        _ => Err(format!(
            "{:?} is not `FIRST COUNT` (two decimal numbers)",
            text.chars().take(80).collect::<String>()
        )),
    }
}

/// The control lines for `rows` records in `maps` ranges of nearly equal size.
pub fn control_lines(rows: u64, maps: u64) -> Vec<String> {
    let maps = maps.clamp(1, rows.max(1));
    (0..maps)
        .map(|i| {
            let at = |i: u64| (u128::from(rows) * u128::from(i) / u128::from(maps)) as u64;
            let (from, to) = (at(i), at(i + 1));
            format!("{from} {}", to - from)
        })
        .collect()
}

/// `teragen`: map-only; each input line `FIRST COUNT` makes those records.
pub struct TeraGen;

struct GenMapper;

impl TaskMapper for GenMapper {
    fn map(
        &mut self,
        _input: &[u8],
        line: &[u8],
        emit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let (first, count) = parse_rows(line)?;
        let mut buf = [0u8; RECORD_BYTES - 1];
        for row in first..first + count {
            record(row, &mut buf);
            emit(&buf, b"");
        }
        Ok(())
    }
}

impl App for TeraGen {
    fn map(&self, input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        let _ = GenMapper.map(input, line, emit);
    }

    fn reduce(&self, key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        while values.next_value().is_some() {
            emit(key, b"");
        }
    }

    fn task_mapper(&self) -> Option<Box<dyn TaskMapper>> {
        Some(Box::new(GenMapper))
    }
}

/// `teravalidate`: order within and across the input files, records, checksum.
pub struct TeraValidate;

/// The one key every summary goes to, so that one reducer sees them in input order.
const SUMMARY_KEY: &[u8] = b"summary";

/// What one map saw of one input file: the summary it sends to the reducer.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Segment {
    file: String,
    first: Vec<u8>,
    last: Vec<u8>,
    records: u64,
    checksum: u64,
    misordered: u64,
    malformed: u64,
    /// Where the first key out of order is: its record's index in this segment.
    first_misorder: Option<u64>,
}

fn key_of(line: &[u8]) -> &[u8] {
    &line[..line.len().min(KEY_BYTES)]
}

impl Segment {
    fn add(&mut self, line: &[u8]) {
        if self.records == 0 {
            self.first = key_of(line).to_vec();
        } else if key_of(line) < self.last.as_slice() {
            self.misordered += 1;
            self.first_misorder.get_or_insert(self.records);
        }
        self.last.clear();
        self.last.extend_from_slice(key_of(line));
        self.records += 1;
        self.checksum = self.checksum.wrapping_add(record_crc(line));
        if line.len() != RECORD_BYTES - 1 {
            self.malformed += 1;
        }
    }

    /// Fields separated by tabs, the keys in hex (they may hold any byte), the file last.
    fn encode(&self) -> Vec<u8> {
        format!(
            "{}\t{}\t{}\t{:x}\t{}\t{}\t{}\t{}",
            hex(&self.first),
            hex(&self.last),
            self.records,
            self.checksum,
            self.misordered,
            self.malformed,
            self.first_misorder.map_or(-1, |i| i as i128),
            self.file
        )
        .into_bytes()
    }

    fn decode(v: &[u8]) -> Option<Segment> {
        let text = std::str::from_utf8(v).ok()?;
        let f: Vec<&str> = text.splitn(8, '\t').collect();
        let [first, last, records, checksum, misordered, malformed, at, file] = f[..] else {
            return None;
        };
        Some(Segment {
            first: unhex(first)?,
            last: unhex(last)?,
            records: records.parse().ok()?,
            checksum: u64::from_str_radix(checksum, 16).ok()?,
            misordered: misordered.parse().ok()?,
            malformed: malformed.parse().ok()?,
            first_misorder: match at.parse::<i128>().ok()? {
                -1 => None,
                n => Some(u64::try_from(n).ok()?),
            },
            file: file.to_owned(),
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[derive(Default)]
struct ValidateMapper {
    segments: Vec<Segment>,
}

impl TaskMapper for ValidateMapper {
    fn map(
        &mut self,
        input: &[u8],
        line: &[u8],
        _emit: &mut dyn FnMut(&[u8], &[u8]),
    ) -> Result<(), String> {
        if self
            .segments
            .last()
            .is_none_or(|s| s.file.as_bytes() != input)
        {
            self.segments.push(Segment {
                file: String::from_utf8_lossy(input).into_owned(),
                ..Segment::default()
            });
        }
        if let Some(s) = self.segments.last_mut() {
            s.add(line);
        }
        Ok(())
    }

    fn finish(&mut self, emit: &mut dyn FnMut(&[u8], &[u8])) -> Result<(), String> {
        for s in self.segments.drain(..) {
            emit(SUMMARY_KEY, &s.encode());
        }
        Ok(())
    }
}

impl App for TeraValidate {
    /// One line at a time there is nothing to compare with; [`TaskMapper`] does the work.
    fn map(&self, input: &[u8], line: &[u8], emit: &mut dyn FnMut(&[u8], &[u8])) {
        let mut m = ValidateMapper::default();
        let _ = m.map(input, line, emit);
        let _ = m.finish(emit);
    }

    fn reduce(&self, _key: &[u8], values: &mut dyn Values, emit: &mut dyn FnMut(&[u8], &[u8])) {
        let mut total = Segment::default();
        let (mut files, mut bad_summaries) = (0u64, 0u64);
        let mut first_error: Option<String> = None;
        let mut last_file = String::new();
        while let Some(v) = values.next_value() {
            let Some(s) = Segment::decode(v) else {
                bad_summaries += 1;
                continue;
            };
            if s.records == 0 {
                continue;
            }
            if s.file != last_file {
                files += 1;
                last_file.clone_from(&s.file);
            }
            if total.records > 0 && s.first < total.last {
                total.misordered += 1;
                first_error.get_or_insert_with(|| {
                    format!(
                        "{}: its first key {:?} sorts before the key before it, {:?}",
                        s.file,
                        String::from_utf8_lossy(&s.first),
                        String::from_utf8_lossy(&total.last)
                    )
                });
            }
            if let Some(i) = s.first_misorder {
                first_error.get_or_insert_with(|| {
                    format!(
                        "{}: record {} of a split sorts before the one before it",
                        s.file,
                        i + 1
                    )
                });
            }
            total.records = total.records.saturating_add(s.records);
            total.checksum = total.checksum.wrapping_add(s.checksum);
            total.misordered = total.misordered.saturating_add(s.misordered);
            total.malformed = total.malformed.saturating_add(s.malformed);
            total.last = s.last;
        }
        emit(b"records", total.records.to_string().as_bytes());
        emit(b"checksum", format!("{:x}", total.checksum).as_bytes());
        emit(b"misordered", total.misordered.to_string().as_bytes());
        emit(b"malformed", total.malformed.to_string().as_bytes());
        emit(b"files", files.to_string().as_bytes());
        if bad_summaries > 0 {
            emit(b"unreadable", bad_summaries.to_string().as_bytes());
        }
        if let Some(e) = first_error {
            emit(b"first_misorder", e.as_bytes());
        }
    }

    fn task_mapper(&self) -> Option<Box<dyn TaskMapper>> {
        Some(Box::new(ValidateMapper::default()))
    }
}
