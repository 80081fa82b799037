//! A process's stderr kept for later (`shoal logs`): the first [`HEAD_BYTES`] written to the
//! log file as they come, the last [`TAIL_BYTES`] held in memory and appended when the
//! process ends, with a line saying how much was left out between them. A chatty program
//! costs at most 5 MiB of disk and 4 MiB of memory per process, whatever it writes.

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Bytes kept from the start of a process's stderr.
pub const HEAD_BYTES: u64 = 1 << 20;
/// Bytes kept from the end of a process's stderr.
pub const TAIL_BYTES: usize = 4 << 20;

/// One process's stderr, being kept.
pub struct Log {
    file: File,
    head: u64,
    tail: VecDeque<u8>,
    skipped: u64,
}

impl Log {
    /// Append to the log file at `path` (made when missing: every process of an attempt —
    /// a mapper and its combiners — writes to the attempt's one log).
    pub fn append(path: &Path) -> io::Result<Log> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        Ok(Log {
            file,
            head: 0,
            tail: VecDeque::new(),
            skipped: 0,
        })
    }

    /// Keep `bytes`, the next of the process's stderr.
    pub fn write(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        if self.head < HEAD_BYTES {
            let n = bytes.len().min((HEAD_BYTES - self.head) as usize);
            self.file.write_all(&bytes[..n])?;
            self.head += n as u64;
            bytes = &bytes[n..];
        }
        if bytes.len() >= TAIL_BYTES {
            self.skipped += (self.tail.len() + bytes.len() - TAIL_BYTES) as u64;
            self.tail.clear();
            bytes = &bytes[bytes.len() - TAIL_BYTES..];
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(TAIL_BYTES);
        if over > 0 {
            self.tail.drain(..over);
            self.skipped += over as u64;
        }
        self.tail.extend(bytes);
        Ok(())
    }

    /// The process has ended: write the tail (after a note of what was left out).
    pub fn finish(mut self) -> io::Result<()> {
        if self.skipped > 0 {
            let note = format!(
                "\n[shoal: {} bytes of stderr left out here; the first {} MiB and the last {} MiB are kept]\n",
                self.skipped,
                HEAD_BYTES >> 20,
                TAIL_BYTES >> 20
            );
            self.file.write_all(note.as_bytes())?;
        }
        let (a, b) = self.tail.as_slices();
        self.file.write_all(a)?;
        self.file.write_all(b)?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_short_log_is_kept_whole_and_a_long_one_by_its_ends() {
        let dir = tempfile::tempdir().expect("tmp");
        let short = dir.path().join("short");
        let mut log = Log::append(&short).expect("open");
        log.write(b"Traceback (most recent call last):\n")
            .expect("write");
        log.write(b"ValueError: x\n").expect("write");
        log.finish().expect("finish");
        assert_eq!(
            std::fs::read_to_string(&short).expect("read"),
            "Traceback (most recent call last):\nValueError: x\n"
        );

        let long = dir.path().join("long");
        let mut log = Log::append(&long).expect("open");
        let total = HEAD_BYTES as usize + TAIL_BYTES + 3_000_000;
        let mut sent = Vec::with_capacity(total);
        let mut i = 0u64;
        while sent.len() < total {
            let line = format!("line {i}\n");
            sent.extend_from_slice(line.as_bytes());
            i += 1;
        }
        for chunk in sent.chunks(70_001) {
            log.write(chunk).expect("write");
        }
        log.finish().expect("finish");
        let kept = std::fs::read(&long).expect("read");
        let head = &sent[..HEAD_BYTES as usize];
        let tail = &sent[sent.len() - TAIL_BYTES..];
        assert!(kept.starts_with(head));
        assert!(kept.ends_with(tail));
        let skipped = sent.len() - HEAD_BYTES as usize - TAIL_BYTES;
        let note = String::from_utf8_lossy(&kept[head.len()..kept.len() - tail.len()]);
        assert!(
            note.contains(&format!("{skipped} bytes of stderr left out")),
            "{note}"
        );
    }
}
