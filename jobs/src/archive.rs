//! Archives shipped with a job (`--archive FILE[#name]`): a `.tar` (plain or compressed by
//! any [`Codec`]) or a `.zip`, known by its SHA-256, stored once per node whatever the number
//! of jobs that use it, unpacked once per job on each node that runs its tasks, and seen by
//! every attempt as `name` in its working directory.
//!
//! Unpacking is the node's own work on bytes a user sent, so it is bounded and contained:
//! every entry lands beneath the destination (no absolute paths, no `..`, no writing through
//! a link), only files, directories and symbolic links are made (no devices, no hard links,
//! no owners, no set-id bits), and the whole unpacks to at most [`MAX_UNPACKED_BYTES`] in at
//! most [`MAX_ENTRIES`] entries. What passes none of that is refused with the entry's name.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::Digest as _;

use crate::compress::Codec;
use crate::error::{Error, Result};

/// Most bytes an archive may hold.
pub const MAX_ARCHIVE_BYTES: u64 = 4 << 30;
/// Most bytes an archive may unpack to.
pub const MAX_UNPACKED_BYTES: u64 = 16 << 30;
/// Most entries an archive may hold.
pub const MAX_ENTRIES: u64 = 1_000_000;

/// An archive of a job, as the spec names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveRef {
    /// The name its unpacked tree has in every attempt's directory.
    pub name: String,
    /// SHA-256 of its bytes, 64 lowercase hex digits: its identity in every node's store.
    pub digest: String,
    /// Its size in bytes.
    pub len: u64,
    /// Nodes (their ids) that hold a copy: filled in by the node that accepted the job.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub holders: Vec<u64>,
}

impl ArchiveRef {
    /// Check what a spec may hold: a plain name, a well-formed digest, a bounded size.
    pub fn validate(&self) -> Result<()> {
        check_name(&self.name)?;
        if self.digest.len() != 64 || !self.digest.bytes().all(|b| b.is_ascii_hexdigit()) {
            return bad(format!(
                "archive {}: its digest must be 64 hex digits (SHA-256)",
                self.name
            ));
        }
        if self.digest.bytes().any(|b| b.is_ascii_uppercase()) {
            return bad(format!(
                "archive {}: its digest must be lowercase",
                self.name
            ));
        }
        if self.len > MAX_ARCHIVE_BYTES {
            return bad(format!(
                "archive {} is {} bytes, over the {} GiB an archive may hold",
                self.name,
                self.len,
                MAX_ARCHIVE_BYTES >> 30
            ));
        }
        Ok(())
    }
}

fn bad<T>(msg: String) -> Result<T> {
    Err(Error::InvalidSpec(msg))
}

/// Extensions of the archives taken, longest first; the default name drops them.
const EXTENSIONS: [&str; 9] = [
    ".tar.gz", ".tar.bz2", ".tar.zst", ".tar.xz", ".tgz", ".tbz2", ".tar", ".zip", ".txz",
];

/// A `--archive` value: the file and the name it has in attempt directories (`#name`, else
/// the file's name without its archive extension: `wheels.tar.gz` is `wheels`).
pub fn parse_arg(arg: &str) -> Result<(PathBuf, String)> {
    let (path, name) = match arg.rsplit_once('#') {
        Some((p, n)) => (p, Some(n.to_owned())),
        None => (arg, None),
    };
    let file = Path::new(path)
        .file_name()
        .and_then(|f| f.to_str())
        .ok_or_else(|| Error::InvalidSpec(format!("--archive {arg}: not a file name")))?;
    let Some(ext) = EXTENSIONS.iter().find(|e| file.ends_with(*e)) else {
        return bad(format!(
            "--archive {arg}: an archive is a .tar, .tar.gz/.tgz, .tar.bz2, .tar.zst, .tar.xz or .zip file"
        ));
    };
    let name = name.unwrap_or_else(|| file[..file.len() - ext.len()].to_owned());
    check_name(&name).map_err(|e| Error::InvalidSpec(format!("--archive {arg}: {e}")))?;
    Ok((PathBuf::from(path), name))
}

/// A name an archive may have in an attempt directory: one plain path component.
pub fn check_name(name: &str) -> Result<()> {
    let plain = !name.is_empty()
        && name != "."
        && name != ".."
        && !name.starts_with('.')
        && name.len() <= 255
        && !name.contains(['/', '\0']);
    if !plain {
        return bad(format!(
            "archive name {name:?} must be a plain file name (no `/`, not starting with `.`)"
        ));
    }
    Ok(())
}

/// A SHA-256 being taken of bytes as they pass.
#[derive(Default)]
pub struct Hasher {
    sha: sha2::Sha256,
    len: u64,
}

impl Hasher {
    /// Take in `bytes`.
    pub fn update(&mut self, bytes: &[u8]) {
        self.sha.update(bytes);
        self.len += bytes.len() as u64;
    }

    /// The digest (lowercase hex) and the byte count.
    pub fn finish(self) -> (String, u64) {
        let digest = self.sha.finalize();
        (
            digest.iter().map(|b| format!("{b:02x}")).collect(),
            self.len,
        )
    }
}

/// The SHA-256 (lowercase hex) and size of a file.
pub fn digest_file(path: &Path) -> io::Result<(String, u64)> {
    let mut f = File::open(path)?;
    let mut h = Hasher::default();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        match f.read(&mut buf)? {
            0 => return Ok(h.finish()),
            n => h.update(&buf[..n]),
        }
    }
}

/// The reference of a local archive file named `name` (its digest taken).
pub fn describe(path: &Path, name: String) -> Result<ArchiveRef> {
    let (digest, len) = digest_file(path).map_err(|source| Error::Input {
        path: path.to_owned(),
        source,
    })?;
    let r = ArchiveRef {
        name,
        digest,
        len,
        holders: Vec::new(),
    };
    r.validate()?;
    Ok(r)
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
/// says so). `what` names the archive in errors.
pub fn unpack(archive: &Path, dest: &Path, what: &str) -> Result<Unpacked> {
    let tmp = dest.with_file_name(format!(
        ".{}.unpacking",
        dest.file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("archive")
    ));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp).map_err(|e| io_err(format!("creating {}", tmp.display()), e))?;
    let result = unpack_into(archive, &tmp, what).and_then(|u| {
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

fn unpack_into(archive: &Path, dest: &Path, what: &str) -> Result<Unpacked> {
    let file = File::open(archive).map_err(|e| io_err(format!("opening {what}"), e))?;
    let mut input = BufReader::new(file);
    let head = io::BufRead::fill_buf(&mut input)
        .map_err(|e| io_err(format!("reading {what}"), e))?
        .to_vec();
    let mut made = Unpacked::default();
    if head.starts_with(b"PK\x03\x04") || head.starts_with(b"PK\x05\x06") {
        drop(input);
        let file = File::open(archive).map_err(|e| io_err(format!("opening {what}"), e))?;
        unzip(file, dest, what, &mut made)?;
    } else {
        let plain: Box<dyn Read + Send> = match Codec::of_magic(&head) {
            Some(codec) => codec.decoder(what, input)?,
            None => Box::new(input),
        };
        untar(plain, dest, what, &mut made)?;
    }
    open_up(dest).map_err(|e| io_err(format!("opening up {what}"), e))?;
    Ok(made)
}

impl Unpacked {
    /// Count one more entry of `bytes`, refusing past the bounds.
    fn take(&mut self, what: &str, entry: &str, bytes: u64) -> Result<()> {
        self.entries += 1;
        self.bytes = self.bytes.saturating_add(bytes);
        if self.entries > MAX_ENTRIES {
            return bad(format!("{what} holds more than {MAX_ENTRIES} entries"));
        }
        if self.bytes > MAX_UNPACKED_BYTES {
            return bad(format!(
                "{what} unpacks to more than {} GiB (at {entry})",
                MAX_UNPACKED_BYTES >> 30
            ));
        }
        Ok(())
    }
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

fn untar(input: impl Read, dest: &Path, what: &str, made: &mut Unpacked) -> Result<()> {
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

fn unzip(file: File, dest: &Path, what: &str, made: &mut Unpacked) -> Result<()> {
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
    fn names_come_from_the_file_or_after_the_hash() {
        let (p, n) = parse_arg("deps/wheels.tar.gz").expect("parse");
        assert_eq!(
            (p, n.as_str()),
            (PathBuf::from("deps/wheels.tar.gz"), "wheels")
        );
        assert_eq!(parse_arg("a.zip#lib").expect("parse").1, "lib");
        assert_eq!(parse_arg("x.tgz").expect("parse").1, "x");
        assert!(parse_arg("notes.txt").is_err());
        assert!(parse_arg("a.zip#../x").is_err());
        assert!(parse_arg("a.zip#.hidden").is_err());
        assert!(parse_arg("a.zip#").is_err());
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
        let made = unpack(&file, &dest, "archive a").expect("unpack");
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
            let e = unpack(&file, &dest, "archive bad")
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
        let e = unpack(&file, &dir.path().join("out"), "archive l").expect_err("through a link");
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
        let e = unpack(&file, &dir.path().join("out"), "archive h").expect_err("hard link");
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
        let made = unpack(&file, &dir.path().join("a"), "archive a").expect("unpack");
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
        let e = unpack(&file, &dir.path().join("b"), "archive b").expect_err("climbs");
        assert!(e.to_string().contains("outside"), "{e}");
        assert!(!dir.path().join("m.py").exists());
    }

    #[test]
    fn digests_are_sha256() {
        let mut h = Hasher::default();
        h.update(b"abc");
        let (d, n) = h.finish();
        assert_eq!(
            d,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(n, 3);
    }
}
