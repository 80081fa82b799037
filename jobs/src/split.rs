//! Inputs into splits. `--input` paths (files, directories walked recursively in path order,
//! globs) become files, and each file is cut into line-aligned splits of about the split size.
//!
//! The invariant: the splits of a file cover it exactly once, each ends just after a newline
//! (or at the end of the file), so every line belongs to exactly one split. A file no bigger
//! than the split size is one split, and so is a compressed file; an empty file is one
//! empty split.

use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::compress::Codec;
use crate::error::{Error, IoContext, Result};

/// One input file and the name a mapper sees for it (`SHOAL_INPUT_FILE`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputFile {
    /// Where it is.
    pub path: PathBuf,
    /// Its path relative to the `--input` argument it came from (its name for a file).
    pub name: String,
    /// Size in bytes.
    pub len: u64,
}

/// A line-aligned byte range of one input file: the input of one map task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Split {
    /// Index of the split in the job (= its map task's index).
    pub index: u32,
    /// The file.
    pub path: PathBuf,
    /// The name the mapper sees.
    pub name: String,
    /// First byte.
    pub offset: u64,
    /// Length in bytes.
    pub len: u64,
    /// A combined split: the files it holds one after another, each with its bytes
    /// (see `SplitInfo::files`). Empty: the whole split belongs to `name`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<(String, u64)>,
}

/// A split's bytes as its map reads them — a compressed file's decompressed (see
/// [`crate::compress`]) — with `progress` counting the file's bytes consumed.
pub fn open<'s>(
    split: &'s Split,
    progress: Option<&'s AtomicU64>,
) -> Result<Box<dyn BufRead + Send + 's>> {
    open_as(split, progress, split.codec())
}

/// A split's bytes as they are stored, never decompressed (`--input-format whole-files`).
pub fn open_raw<'s>(
    split: &'s Split,
    progress: Option<&'s AtomicU64>,
) -> Result<Box<dyn BufRead + Send + 's>> {
    open_as(split, progress, None)
}

fn open_as<'s>(
    split: &'s Split,
    progress: Option<&'s AtomicU64>,
    codec: Option<Codec>,
) -> Result<Box<dyn BufRead + Send + 's>> {
    let mut f = File::open(&split.path).map_err(|e| Error::Input {
        path: split.path.clone(),
        source: e,
    })?;
    f.seek(SeekFrom::Start(split.offset))
        .ctx(|| format!("reading {}", split.path.display()))?;
    let raw = Counted {
        inner: f.take(split.len),
        read: 0,
        progress,
    };
    // A small split gets a small buffer (thousands of 1 KB splits are common).
    let cap = (split.len + 1).min(256 << 10) as usize;
    match codec {
        None => Ok(Box::new(BufReader::with_capacity(cap, raw))),
        Some(codec) => {
            let decoded = codec.decoder(&split.name, BufReader::with_capacity(cap, raw))?;
            Ok(Box::new(BufReader::with_capacity(256 << 10, decoded)))
        }
    }
}

/// A reader that publishes how many bytes it has read.
struct Counted<'p, R> {
    inner: R,
    read: u64,
    progress: Option<&'p AtomicU64>,
}

impl<R: Read> Read for Counted<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if let Some(p) = self.progress {
            p.store(self.read, Ordering::Relaxed);
        }
        Ok(n)
    }
}

impl Split {
    /// The codec of a split that is one compressed file.
    pub fn codec(&self) -> Option<Codec> {
        if self.files.is_empty() {
            Codec::of_name(&self.name)
        } else {
            None
        }
    }
}

/// Files and directories whose names start with these are not input (Hadoop's rule:
/// `_SUCCESS`, `.crc` files, editors' temp files).
fn hidden(name: &str) -> bool {
    name.starts_with('_') || name.starts_with('.')
}

/// Expand `--input` arguments into files, in argument order, each directory's files sorted
/// by path.
pub fn expand_inputs(inputs: &[String]) -> Result<Vec<InputFile>> {
    let mut files = Vec::new();
    for arg in inputs {
        if arg.contains(['*', '?', '[']) {
            let matches = glob::glob(arg)
                .map_err(|e| Error::InvalidSpec(format!("--input {arg}: bad glob: {e}")))?;
            let mut paths: Vec<PathBuf> = matches.filter_map(|m| m.ok()).collect();
            paths.sort();
            if paths.is_empty() {
                return Err(Error::InvalidSpec(format!(
                    "--input {arg}: the glob matches no file"
                )));
            }
            for p in paths {
                add_path(&p, &mut files)?;
            }
        } else {
            add_path(Path::new(arg), &mut files)?;
        }
    }
    Ok(files)
}

fn add_path(path: &Path, files: &mut Vec<InputFile>) -> Result<()> {
    let meta = std::fs::metadata(path).map_err(|e| Error::Input {
        path: path.to_owned(),
        source: e,
    })?;
    if meta.is_dir() {
        let mut found = Vec::new();
        walk(path, path, &mut found)?;
        found.sort_by(|a, b| a.name.cmp(&b.name));
        files.extend(found);
    } else {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        files.push(InputFile {
            path: path.to_owned(),
            name,
            len: meta.len(),
        });
    }
    Ok(())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<InputFile>) -> Result<()> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::Input {
        path: dir.to_owned(),
        source: e,
    })?;
    for entry in entries {
        let entry = entry.map_err(|e| Error::Input {
            path: dir.to_owned(),
            source: e,
        })?;
        let path = entry.path();
        if hidden(&entry.file_name().to_string_lossy()) {
            continue;
        }
        let meta = std::fs::metadata(&path).map_err(|e| Error::Input {
            path: path.clone(),
            source: e,
        })?;
        if meta.is_dir() {
            walk(root, &path, out)?;
        } else if meta.is_file() {
            let name = path
                .strip_prefix(root)
                .unwrap_or(&path)
                .to_string_lossy()
                .into_owned();
            out.push(InputFile {
                path,
                name,
                len: meta.len(),
            });
        }
    }
    Ok(())
}

/// Cut files into line-aligned splits of about `split_size` bytes.
pub fn plan_splits(files: &[InputFile], split_size: u64, max_record: u64) -> Result<Vec<Split>> {
    let mut splits = Vec::new();
    for f in files {
        let push = |offset: u64, len: u64, splits: &mut Vec<Split>| {
            let index = splits.len() as u32;
            splits.push(Split {
                index,
                path: f.path.clone(),
                name: f.name.clone(),
                offset,
                len,
                files: Vec::new(),
            });
        };
        // A compressed file is one split: its lines cannot be found without reading it.
        // Its first bytes must say what its name says.
        if let Some(codec) = Codec::of_name(&f.name) {
            let file = File::open(&f.path).map_err(|e| Error::Input {
                path: f.path.clone(),
                source: e,
            })?;
            codec.decoder(&f.name, BufReader::with_capacity(64, file))?;
            push(0, f.len, &mut splits);
            continue;
        }
        if f.len <= split_size {
            push(0, f.len, &mut splits);
            continue;
        }
        let mut file = File::open(&f.path).map_err(|e| Error::Input {
            path: f.path.clone(),
            source: e,
        })?;
        let mut start = 0;
        while start < f.len {
            let target = start + split_size;
            let end = if target >= f.len {
                f.len
            } else {
                line_end_from(&mut file, f, target - 1, max_record)?
            };
            push(start, end - start, &mut splits);
            start = end;
        }
    }
    Ok(splits)
}

/// The offset just past the first newline at or after `from` (or the file's end).
fn line_end_from(file: &mut File, f: &InputFile, from: u64, max_record: u64) -> Result<u64> {
    file.seek(SeekFrom::Start(from))
        .ctx(|| format!("reading {}", f.path.display()))?;
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = from;
    loop {
        let n = file
            .read(&mut buf)
            .ctx(|| format!("reading {}", f.path.display()))?;
        if n == 0 {
            return Ok(f.len);
        }
        if let Some(i) = memchr::memchr(b'\n', &buf[..n]) {
            return Ok(pos + i as u64 + 1);
        }
        pos += n as u64;
        if pos - from > max_record {
            return Err(Error::RecordTooLong {
                file: f.name.clone(),
                offset: from,
                max: max_record,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_cover_each_line_once() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.txt");
        let text: String = (0..2000).map(|i| format!("line number {i}\n")).collect();
        std::fs::write(&p, &text).unwrap();
        std::fs::write(dir.path().join("empty"), "").unwrap();
        std::fs::write(dir.path().join("_SUCCESS"), "").unwrap();
        let files = expand_inputs(&[dir.path().to_string_lossy().into_owned()]).unwrap();
        assert_eq!(
            files.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
            ["a.txt", "empty"]
        );
        let splits = plan_splits(&files, 1024, 1 << 20).unwrap();
        assert!(splits.len() > 20);
        let mut joined = Vec::new();
        for s in splits.iter().filter(|s| s.name == "a.txt") {
            let bytes = std::fs::read(&s.path).unwrap();
            let part = &bytes[s.offset as usize..(s.offset + s.len) as usize];
            assert!(part.ends_with(b"\n"));
            joined.extend_from_slice(part);
        }
        assert_eq!(joined, text.as_bytes());
        assert_eq!(
            splits.last().unwrap().len,
            0,
            "the empty file is one empty split"
        );
    }

    #[test]
    fn missing_input_names_the_path() {
        let err = expand_inputs(&["/definitely/not/here".into()]).unwrap_err();
        assert!(err.to_string().contains("/definitely/not/here"));
    }
}
