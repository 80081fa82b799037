//! Cutting an upload into splits as it arrives (`POST /api/v1/jobs`).

use std::io::Write;

use shoal_jobs::cluster::SplitInfo;

use crate::storage::blobs::{segment_key, BlobWriter, Blobs};

/// The input would be cut into more than [`shoal_jobs::cluster::MAX_SPLITS`] splits (the
/// error inside the `io::Error` the splitter returns).
#[derive(Debug, thiserror::Error)]
#[error(
    "the job has more than {} splits (map tasks), the most one job may have; combine small files into splits with --combine-files, or raise --split-size",
    shoal_jobs::cluster::MAX_SPLITS
)]
pub(crate) struct TooManySplits;

/// Cuts a stream of files into line-aligned splits: a split per file (and more for a file
/// larger than the split size), or, with `combine`, small files packed together up to the
/// split size, each member file ending with a newline. Splits are stored one after another
/// in segments (`JOB/seg-NNNNN`) of about the split size, so 2,000 small files are a few
/// objects to store and copy, not 2,000, while each is still its own map task. A compressed
/// file (`shoal_jobs::compress`) is one split of its own, never cut and never packed.
pub(crate) struct Splitter<'a> {
    blobs: &'a Blobs,
    job: String,
    split_size: u64,
    combine: bool,
    /// Every file whole, in a split of its own (`--input-format whole-files`).
    whole_files: bool,
    name: String,
    /// The segment being written, and its index.
    seg: Option<BlobWriter>,
    seg_index: u32,
    /// Where the split being written started in the segment (None: no split open).
    split_start: Option<u64>,
    /// The current split's files with their bytes in it (combined splits only).
    cur_files: Vec<(String, u64)>,
    file_has_split: bool,
    /// The current file is compressed: kept whole, in a split of its own.
    whole: bool,
    /// Whether the current file so far ends a line (or is empty).
    ends_line: bool,
    pub(crate) files_seen: usize,
    /// The checksum of the open split's bytes so far.
    split_sum: shoal_jobs::checksum::Running,
    /// Bytes taken so far.
    pub(crate) bytes: u64,
    pub(crate) splits: Vec<SplitInfo>,
    /// Closed segments, written out; made durable and visible together at the end.
    written: Vec<crate::storage::blobs::Unsynced>,
}

impl<'a> Splitter<'a> {
    pub(crate) fn new(
        blobs: &'a Blobs,
        job: &str,
        split_size: u64,
        combine: bool,
        whole_files: bool,
    ) -> Self {
        Splitter {
            blobs,
            job: job.to_owned(),
            split_size: split_size.max(1),
            combine,
            whole_files,
            name: String::new(),
            seg: None,
            seg_index: 0,
            split_start: None,
            cur_files: Vec::new(),
            file_has_split: false,
            whole: false,
            ends_line: true,
            files_seen: 0,
            split_sum: Default::default(),
            bytes: 0,
            splits: Vec::new(),
            written: Vec::new(),
        }
    }

    pub(crate) fn start_file(&mut self, name: &str) -> std::io::Result<()> {
        self.whole = self.whole_files || shoal_jobs::compress::Codec::of_name(name).is_some();
        if self.whole {
            // Not packed with the files before it.
            self.close_split()?;
        }
        self.name = name.to_owned();
        self.file_has_split = false;
        self.ends_line = true;
        self.files_seen += 1;
        Ok(())
    }

    /// Open a split (and a segment) if none is open; the segment's writer.
    fn open_split(&mut self) -> std::io::Result<&mut BlobWriter> {
        if self.seg.is_none() {
            let key = segment_key(&self.job, self.seg_index);
            self.seg = Some(self.blobs.create(&key)?);
        }
        let seg = self.seg.as_mut().expect("just opened");
        if self.split_start.is_none() {
            self.split_start = Some(seg.len());
        }
        Ok(seg)
    }

    /// Bytes of the open split so far.
    fn split_len(&self) -> u64 {
        match (&self.seg, self.split_start) {
            (Some(w), Some(start)) => w.len() - start,
            _ => 0,
        }
    }

    /// Append `b` (part of the current file) to the open split.
    fn append(&mut self, b: &[u8]) -> std::io::Result<()> {
        if b.is_empty() {
            return Ok(());
        }
        self.open_split()?.write_all(b)?;
        self.split_sum.update(b);
        self.bytes += b.len() as u64;
        self.ends_line = b.last() == Some(&b'\n');
        if self.combine && !self.whole {
            match self.cur_files.last_mut() {
                Some((name, n)) if *name == self.name => *n += b.len() as u64,
                _ => self.cur_files.push((self.name.clone(), b.len() as u64)),
            }
        }
        Ok(())
    }

    pub(crate) fn write(&mut self, mut b: &[u8]) -> std::io::Result<()> {
        if self.whole {
            return self.append(b);
        }
        while !b.is_empty() {
            let room = self.split_size.saturating_sub(self.split_len()) as usize;
            if b.len() <= room {
                return self.append(b);
            }
            // Past the size: the split ends just after the first newline from here on.
            match b[room..].iter().position(|&c| c == b'\n') {
                Some(i) => {
                    let cut = room + i + 1;
                    self.append(&b[..cut])?;
                    self.close_split()?;
                    b = &b[cut..];
                }
                None => return self.append(b),
            }
        }
        Ok(())
    }

    fn close_split(&mut self) -> std::io::Result<()> {
        let Some(start) = self.split_start.take() else {
            return Ok(());
        };
        // Refused as the splits are cut, not once the whole upload is stored.
        if self.splits.len() >= shoal_jobs::cluster::MAX_SPLITS {
            return Err(std::io::Error::other(TooManySplits));
        }
        let index = self.splits.len() as u32;
        let files = std::mem::take(&mut self.cur_files);
        let len = self.seg.as_ref().map_or(0, |w| w.len()) - start;
        self.splits.push(SplitInfo {
            index,
            name: files
                .first()
                .map_or_else(|| self.name.clone(), |f| f.0.clone()),
            len,
            holders: Vec::new(),
            files,
            segment: Some(self.seg_index),
            offset: start,
            checksum: Some(std::mem::take(&mut self.split_sum).value()),
            in_place: None,
            part_of: None,
        });
        self.file_has_split = true;
        if self
            .seg
            .as_ref()
            .is_some_and(|w| w.len() >= self.split_size)
        {
            self.close_segment()?;
        }
        Ok(())
    }

    fn close_segment(&mut self) -> std::io::Result<()> {
        if let Some(w) = self.seg.take() {
            self.written.push(w.finish_unsynced()?);
            self.seg_index += 1;
        }
        Ok(())
    }

    /// The file ended: close its last split (an empty file is one empty split); combined,
    /// end its last line and go on filling the split.
    pub(crate) fn end_file(&mut self) -> std::io::Result<()> {
        if self.combine && !self.whole {
            if !self.ends_line {
                self.append(b"\n")?;
            }
            return Ok(());
        }
        if self.split_start.is_none() && !self.file_has_split {
            self.open_split()?;
        }
        self.close_split()
    }

    pub(crate) async fn finish(mut self) -> std::io::Result<Vec<SplitInfo>> {
        if self.combine {
            // Only empty files: one empty split, as without combining.
            if self.split_start.is_none() && self.splits.is_empty() && self.files_seen > 0 {
                self.open_split()?;
            }
            self.close_split()?;
        }
        self.close_segment()?;
        // One sync for the whole upload, off the runtime.
        let (blobs, written) = (self.blobs.clone(), std::mem::take(&mut self.written));
        tokio::task::spawn_blocking(move || blobs.commit_all(written))
            .await
            .map_err(std::io::Error::other)??;
        Ok(std::mem::take(&mut self.splits))
    }
}
