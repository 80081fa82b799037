//! Unpacking a job's archive (`--archive`, [`crate::archive`]) into its job's directory: the
//! node's own work on bytes a user sent, so it is bounded and contained. Every entry lands
//! beneath the destination (no absolute paths, no `..`, no writing through a link); only
//! files, directories and symbolic links are made (no devices, no hard links, no owners, no
//! set-id bits); the whole unpacks to at most [`MAX_UNPACKED_BYTES`] in at most
//! [`MAX_ENTRIES`] entries — a zip's entries counted from its end record before its central
//! directory is read — and never past the free space the node keeps on the destination's
//! disk. What passes none of that is refused with the entry's name.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use crate::archive::{MAX_ENTRIES, MAX_UNPACKED_BYTES};
use crate::compress::Codec;
use crate::error::{Error, Result};

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::InvalidSpec(msg))
}

/// What an unpacking made.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Unpacked {
    /// Entries made (files, directories, links).
    pub entries: u64,
    /// Bytes of the files made.
    pub bytes: u64,
}

/// Unpack archive file `archive` (its format known by its first bytes) into `dest`, which
/// must not exist; `dest` appears only once the whole archive is unpacked, every directory
/// readable and listable by others and every file readable (executable when the archive
/// says so). `what` names the archive in errors. Each entry is refused that would leave
/// less than `keep_free` bytes free on `dest`'s disk (the node's `--min-free-mb`).
pub fn unpack(archive: &Path, dest: &Path, what: &str, keep_free: u64) -> Result<Unpacked> {
    let tmp = dest.with_file_name(format!(
        ".{}.unpacking",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("archive")
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(format!("creating {}", tmp.display()), e))?;
    let mut budget = Budget {
        made: Unpacked::default(),
        dest: tmp.clone(),
        keep_free,
    };
    let result = unpack_into(archive, &tmp, what, &mut budget).and_then(|u| {
        std::fs::rename(&tmp, dest)
            .map_err(|e| io_err(format!("moving {} into place", dest.display()), e))?;
        Ok(u)
    });
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&tmp);
    }
    result
}

fn io_err(what: String, source: io::Error) -> Error {
    Error::io(what, source)
}

fn unpack_into(archive: &Path, dest: &Path, what: &str, budget: &mut Budget) -> Result<Unpacked> {
    let file = File::open(archive).map_err(|e| io_err(format!("opening {what}"), e))?;
    let mut input = BufReader::new(file);
    let head = io::BufRead::fill_buf(&mut input)
        .map_err(|e| io_err(format!("reading {what}"), e))?
        .to_vec();
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        drop(input);
        let mut file = File::open(archive).map_err(|e| io_err(format!("opening {what}"), e))?;
        check_zip_directory(&mut file, what)?;
        unzip(file, dest, what, budget)?;
    } else {
        let plain: Box<dyn Read + Send> = match Codec::of_magic(&head) {
            Some(codec) => codec.decoder(what, input)?,
            None => Box::new(input),
        };
        untar(plain, dest, what, budget)?;
    }
    open_up(dest).map_err(|e| io_err(format!("opening up {what}"), e))?;
    Ok(budget.made)
}

/// What an unpacking may still make: the bounds, and the disk's free space it must leave.
struct Budget {
    made: Unpacked,
    dest: PathBuf,
    keep_free: u64,
}

impl Budget {
    /// Count one more entry of `bytes`, refusing past the bounds, or when writing it would
    /// leave the destination's disk less free than it must keep.
    fn take(&mut self, what: &str, entry: &str, bytes: u64) -> Result<()> {
        let made = &mut self.made;
        made.entries += 1;
        made.bytes = made.bytes.saturating_add(bytes);
        if made.entries > MAX_ENTRIES {
            return bad(format!("{what} holds more than {MAX_ENTRIES} entries"));
        }
        if made.bytes > MAX_UNPACKED_BYTES {
            return bad(format!(
                "{what} unpacks to more than {} GiB (at {entry})",
                MAX_UNPACKED_BYTES >> 30
            ));
        }
        if bytes > 0 && self.keep_free > 0 {
            let free = crate::scratch::free_bytes(&self.dest)
                .map_err(|e| io_err(format!("{what}: reading the free space"), e))?;
            if free.saturating_sub(bytes) < self.keep_free {
                return Err(Error::TaskFailed(format!(
                    "{what} does not fit: its entry {entry} ({bytes} bytes) would leave less than the {} MiB this node keeps free on its disk (--min-free-mb; {} MiB free)",
                    self.keep_free >> 20,
                    free >> 20
                )));
            }
        }
        Ok(())
    }
}

/// Most bytes of a zip's central directory read: [`MAX_ENTRIES`] entries of names of about
/// 80 bytes.
pub const MAX_ZIP_DIRECTORY_BYTES: u64 = 128 << 20;

/// Refuse a zip whose end record counts more than [`MAX_ENTRIES`] entries, or a central
/// directory larger than [`MAX_ZIP_DIRECTORY_BYTES`], before the zip reader takes the whole
/// directory into memory. The count is what the reader then reads, whatever the directory
/// holds. A zip without an end record is left to the reader to refuse.
fn check_zip_directory(file: &mut File, what: &str) -> Result<()> {
    use io::{Seek, SeekFrom};
    let rerr = |e| io_err(format!("reading {what}"), e);
    let len = file.metadata().map_err(rerr)?.len();
    // The end record is 22 bytes and a comment of up to 64 KiB.
    let tail_len = len.min(22 + 65_535);
    let mut tail = vec![0u8; tail_len as usize];
    file.seek(SeekFrom::Start(len - tail_len)).map_err(rerr)?;
    file.read_exact(&mut tail).map_err(rerr)?;
    let Some(at) = (0..tail.len().saturating_sub(21))
        .rev()
        .find(|&i| tail[i..].starts_with(b"PK\x05\x06"))
    else {
        return Ok(());
    };
    let u16_at = |b: &[u8], i: usize| u64::from(u16::from_le_bytes([b[i], b[i + 1]]));
    let u32_at =
        |b: &[u8], i: usize| u64::from(u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]));
    let mut entries = u16_at(&tail, at + 10);
    let mut size = u32_at(&tail, at + 12);
    // Zip64: the locator, 20 bytes before the end record, names the zip64 end record.
    if (entries == 0xffff || size == 0xffff_ffff)
        && at >= 20
        && tail[at - 20..].starts_with(b"PK\x06\x07")
    {
        let record = u32_at(&tail, at - 12) | (u32_at(&tail, at - 8) << 32);
        let mut z = [0u8; 56];
        file.seek(SeekFrom::Start(record)).map_err(rerr)?;
        file.read_exact(&mut z).map_err(rerr)?;
        if z.starts_with(b"PK\x06\x06") {
            let u64_at = |i: usize| u32_at(&z, i) | (u32_at(&z, i + 4) << 32);
            (entries, size) = (u64_at(32), u64_at(40));
        }
    }
    if entries > MAX_ENTRIES {
        return bad(format!(
            "{what} holds {entries} entries, more than the {MAX_ENTRIES} an archive may hold"
        ));
    }
    if size > MAX_ZIP_DIRECTORY_BYTES {
        return bad(format!(
            "{what}'s central directory is {size} bytes, more than {} MiB",
            MAX_ZIP_DIRECTORY_BYTES >> 20
        ));
    }
    Ok(())
}

/// The relative path of an entry, if it stays beneath the destination.
fn enclosed(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            _ => return None,
        }
    }
    (!out.as_os_str().is_empty()).then_some(out)
}

fn untar(input: impl Read, dest: &Path, what: &str, made: &mut Budget) -> Result<()> {
    use tar::EntryType;
    let mut ar = tar::Archive::new(input);
    ar.set_preserve_permissions(false);
    ar.set_preserve_ownerships(false);
    ar.set_unpack_xattrs(false);
    ar.set_overwrite(true);
    let entries = ar
        .entries()
        .map_err(|e| io_err(format!("reading {what}"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| io_err(format!("reading {what}"), e))?;
        let path = entry
            .path()
            .map_err(|e| io_err(format!("reading {what}"), e))?
            .into_owned();
        let shown = path.display().to_string();
        let kind = entry.header().entry_type();
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::Directory => {}
            EntryType::Symlink => {}
            // Metadata entries of the tar format itself (long names, pax headers) are read
            // by the tar reader; no other kind is made.
            EntryType::GNULongName | EntryType::GNULongLink | EntryType::XHeader => continue,
            EntryType::XGlobalHeader => continue,
            other => {
                return bad(format!(
                    "{what}: entry {shown} is a {other:?}; archives may hold files, directories and symbolic links only"
                ))
            }
        }
        if enclosed(&path).is_none() {
            if kind == EntryType::Directory && path.components().all(|c| c == Component::CurDir) {
                continue;
            }
            return bad(format!(
                "{what}: entry {shown} would land outside the archive's directory"
            ));
        }
        made.take(what, &shown, entry.size())?;
        // `unpack_in` refuses what would land outside `dest`, through links too.
        let inside = entry
            .unpack_in(dest)
            .map_err(|e| io_err(format!("{what}: unpacking {shown}"), e))?;
        if !inside {
            return bad(format!(
                "{what}: entry {shown} would land outside the archive's directory"
            ));
        }
    }
    Ok(())
}

fn unzip(file: File, dest: &Path, what: &str, made: &mut Budget) -> Result<()> {
    let zerr = |e: zip::result::ZipError| {
        Error::io(format!("reading {what}"), io::Error::other(e.to_string()))
    };
    let mut ar = zip::ZipArchive::new(BufReader::new(file)).map_err(zerr)?;
    for i in 0..ar.len() {
        let mut f = ar.by_index(i).map_err(zerr)?;
        let shown = f.name().map_err(zerr)?.into_owned();
        let Some(rel) = f.enclosed_name().and_then(|p| enclosed(&p)) else {
            return bad(format!(
                "{what}: entry {shown} would land outside the archive's directory"
            ));
        };
        if f.is_symlink() {
            return bad(format!(
                "{what}: entry {shown} is a symbolic link; a zip archive may hold files and directories only"
            ));
        }
        made.take(what, &shown, f.size())?;
        let target = dest.join(&rel);
        // No entry may write through a link an earlier entry made: zip entries are never
        // links here, so every parent is a real directory of ours.
        if f.is_dir() {
            std::fs::create_dir_all(&target)
                .map_err(|e| io_err(format!("{what}: making {shown}"), e))?;
            continue;
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .map_err(|e| io_err(format!("{what}: making {shown}"), e))?;
        }
        let mut out =
            File::create(&target).map_err(|e| io_err(format!("{what}: making {shown}"), e))?;
        // The declared size bounds what is written, whatever the stream holds.
        let limit = f.size();
        let copied = io::copy(&mut (&mut f).take(limit), &mut out)
            .map_err(|e| io_err(format!("{what}: unpacking {shown}"), e))?;
        out.flush()
            .map_err(|e| io_err(format!("{what}: unpacking {shown}"), e))?;
        if copied != limit {
            return bad(format!(
                "{what}: entry {shown} holds {copied} bytes, not the {limit} it declares"
            ));
        }
        if f.unix_mode().is_some_and(|m| m & 0o111 != 0) {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| io_err(format!("{what}: chmod {shown}"), e))?;
        }
    }
    Ok(())
}

/// Give every directory mode 755 and every file 644 (755 when any execute bit is set), so
/// a task user other than the node's reads the tree; no set-id bit survives.
fn open_up(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d)? {
            let e = e?;
            let t = e.file_type()?;
            if t.is_symlink() {
                continue;
            }
            let mode = if t.is_dir() {
                stack.push(e.path());
                0o755
            } else if e.metadata()?.permissions().mode() & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, bytes) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(tar::EntryType::Regular);
            // Written raw: the builder refuses `..` itself, an attacker's tool does not.
            let raw = &mut h.as_old_mut().name;
            raw[..name.len()].copy_from_slice(name.as_bytes());
            h.set_cksum();
            b.append(&h, *bytes).expect("append");
        }
        b.into_inner().expect("finish")
    }

    #[test]
    fn a_gzipped_tar_unpacks_with_modes_others_can_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_size(3);
        h.set_mode(0o4700);
        b.append_data(&mut h, "pkg/run.sh", &b"ok\n"[..])
            .expect("append");
        let tarball = b.into_inner().expect("tar");
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&tarball).expect("gz");
        let file = dir.path().join("a.tar.gz");
        std::fs::write(&file, gz.finish().expect("gz")).expect("write");
        let dest = dir.path().join("out");
        let made = unpack(&file, &dest, "archive a", 0).expect("unpack");
        assert_eq!(made.bytes, 3);
        use std::os::unix::fs::PermissionsExt;
        let m = std::fs::metadata(dest.join("pkg/run.sh")).expect("meta");
        assert_eq!(m.permissions().mode() & 0o7777, 0o755);
        assert_eq!(
            std::fs::read(dest.join("pkg/run.sh")).expect("read"),
            b"ok\n"
        );
    }

    #[test]
    fn entries_that_climb_out_are_refused_and_nothing_is_left() {
        let dir = tempfile::tempdir().expect("tmp");
        for name in ["../evil", "/etc/evil", "a/../../evil"] {
            let file = dir.path().join("bad.tar");
            std::fs::write(&file, tar_with(&[("fine", b"x"), (name, b"y")])).expect("write");
            let dest = dir.path().join("out");
            let e = unpack(&file, &dest, "archive bad", 0)
                .expect_err(name)
                .to_string();
            assert!(e.contains("outside"), "{name}: {e}");
            assert!(!dest.exists());
            assert!(!dir.path().join("evil").exists());
        }
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .expect("ls")
            .flatten()
            .collect();
        assert_eq!(left.len(), 1, "only the archive: {left:?}");
    }

    #[test]
    fn a_link_cannot_be_written_through() {
        let dir = tempfile::tempdir().expect("tmp");
        let outside = dir.path().join("outside");
        std::fs::create_dir(&outside).expect("mkdir");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_size(0);
        b.append_link(&mut h, "link", &outside).expect("link");
        let mut h = tar::Header::new_gnu();
        h.set_size(1);
        b.append_data(&mut h, "link/planted", &b"x"[..])
            .expect("file");
        let file = dir.path().join("l.tar");
        std::fs::write(&file, b.into_inner().expect("tar")).expect("write");
        let e = unpack(&file, &dir.path().join("out"), "archive l", 0).expect_err("through a link");
        assert!(!outside.join("planted").exists(), "{e}");
    }

    #[test]
    fn devices_and_hard_links_are_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut b = tar::Builder::new(Vec::new());
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Link);
        h.set_size(0);
        b.append_link(&mut h, "hard", "/etc/passwd").expect("link");
        let file = dir.path().join("h.tar");
        std::fs::write(&file, b.into_inner().expect("tar")).expect("write");
        let e = unpack(&file, &dir.path().join("out"), "archive h", 0).expect_err("hard link");
        assert!(
            e.to_string()
                .contains("files, directories and symbolic links"),
            "{e}"
        );
    }

    #[test]
    fn a_zip_unpacks_and_one_that_climbs_is_refused() {
        let dir = tempfile::tempdir().expect("tmp");
        let zipped = |name: &str| {
            let mut z = zip::ZipWriter::new(io::Cursor::new(Vec::new()));
            let opts = zip::write::SimpleFileOptions::default()
                .compression_method(zip::CompressionMethod::Deflated)
                .unix_permissions(0o755);
            z.start_file(name, opts).expect("start");
            z.write_all(b"print(1)\n").expect("write");
            z.finish().expect("finish").into_inner()
        };
        let file = dir.path().join("a.zip");
        std::fs::write(&file, zipped("lib/m.py")).expect("write");
        let made = unpack(&file, &dir.path().join("a"), "archive a", 0).expect("unpack");
        assert_eq!(
            made,
            Unpacked {
                entries: 1,
                bytes: 9
            }
        );
        assert_eq!(
            std::fs::read(dir.path().join("a/lib/m.py")).expect("read"),
            b"print(1)\n"
        );
        std::fs::write(&file, zipped("../m.py")).expect("write");
        let e = unpack(&file, &dir.path().join("b"), "archive b", 0).expect_err("climbs");
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(!dir.path().join("m.py").exists());
    }

    /// A real zip of `n` empty entries named `a` to `z` in turn (zip64 end records), streamed
    /// to `path`.
    fn empty_zip(path: &Path, n: u64) {
        let mut w = io::BufWriter::with_capacity(1 << 20, File::create(path).expect("zip"));
        let name = |i: u64| [b'a' + (i % 26) as u8];
        let local = |i: u64| -> Vec<u8> {
            [
                &b"PK\x03\x04"[..],
                &[20, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0; 12],
                &[1, 0, 0, 0],
                &name(i),
            ]
            .concat()
        };
        for i in 0..n {
            w.write_all(&local(i)).expect("write");
        }
        let cd_start = n * 31;
        for i in 0..n {
            let offset = u32::try_from(i * 31).unwrap_or(u32::MAX);
            let central: Vec<u8> = [
                &b"PK\x01\x02"[..],
                &[20, 3, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &[0; 12],
                &[1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                &offset.to_le_bytes(),
                &name(i),
            ]
            .concat();
            w.write_all(&central).expect("write");
        }
        let cd_size = n * 47;
        let z64_at = cd_start + cd_size;
        let mut z64 = b"PK\x06\x06".to_vec();
        z64.extend(44u64.to_le_bytes());
        z64.extend([45, 0, 45, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        z64.extend(n.to_le_bytes());
        z64.extend(n.to_le_bytes());
        z64.extend(cd_size.to_le_bytes());
        z64.extend(cd_start.to_le_bytes());
        let mut locator = b"PK\x06\x07".to_vec();
        locator.extend([0, 0, 0, 0]);
        locator.extend(z64_at.to_le_bytes());
        locator.extend([1, 0, 0, 0]);
        let mut end = b"PK\x05\x06".to_vec();
        end.extend([0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff]);
        end.extend([0xff; 8]);
        end.extend([0, 0]);
        for part in [z64, locator, end] {
            w.write_all(&part).expect("write");
        }
        w.flush().expect("flush");
    }

    /// This process's peak resident memory, MiB.
    fn peak_rss_mb() -> u64 {
        std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .unwrap_or(0)
            >> 10
    }

    #[test]
    fn a_zip_of_ten_million_entries_is_refused_before_its_directory_is_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let file = dir.path().join("many.zip");
        empty_zip(&file, 10_000_000);
        let before = peak_rss_mb();
        let e = unpack(&file, &dir.path().join("many"), "archive many", 0).expect_err("refused");
        let after = peak_rss_mb();
        println!(
            "10,000,000 entries, {} MiB of zip: {e}; peak RSS {before} MiB before, {after} MiB after",
            std::fs::metadata(&file).expect("size").len() >> 20
        );
        assert!(e.to_string().contains("holds 10000000 entries"), "{e}");
        assert!(!dir.path().join("many").exists());
        // Three entries of the same make unpack as they should.
        empty_zip(&file, 3);
        let made = unpack(&file, &dir.path().join("few"), "archive few", 0).expect("unpack");
        assert_eq!(made.entries, 3);
    }

    #[test]
    fn a_tar_past_the_disk_reserve_is_refused_and_leaves_nothing() {
        let dir = tempfile::tempdir().expect("tmp");
        let tarball = tar_with(&[("small.txt", b"ok\n"), ("big.bin", &vec![7u8; 1 << 20])]);
        let file = dir.path().join("big.tar");
        std::fs::write(&file, tarball).expect("write");
        // Keep free all but half a MiB of what is free now: the 1 MiB entry does not fit.
        let free = crate::scratch::free_bytes(dir.path()).expect("statvfs");
        let dest = dir.path().join("big");
        let e = unpack(&file, &dest, "archive big", free - (512 << 10)).expect_err("too big");
        assert!(
            e.to_string().contains("does not fit: its entry big.bin"),
            "{e}"
        );
        assert!(e.to_string().contains("--min-free-mb"), "{e}");
        assert!(!dest.exists());
        assert!(!dir.path().join(".big.unpacking").exists());
        unpack(&file, &dest, "archive big", 0).expect("fits without the reserve");
    }
}
