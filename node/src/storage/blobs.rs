//! The node's object store: input segments (splits one after another) or single splits,
//! map outputs and part files, as plain files under `DATA/blobs/`. Keys are paths of
//! lowercase names: `JOB/seg-00000`, `JOB/split-00003` (a split fetched alone),
//! `JOB/m-00003.a1.out` (one map attempt's partitions one after another),
//! `JOB/out/part-00000`. Only this node opens these files; every other node asks for them,
//! or byte ranges of them, over `/shoal/data/1`.
//!
//! The invariant: an object is visible under its key only once it is complete (written to a
//! temporary name, synced, renamed), and a key can never name a file outside the store.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use shoal_jobs::scratch::Scratch;

/// Objects of a batch synced one by one; a larger batch is synced with one `syncfs`.
const FSYNC_EACH_UP_TO: usize = 4;

/// The store rooted at one directory.
#[derive(Debug, Clone)]
pub struct Blobs {
    root: PathBuf,
    /// Where attempt and job directories are made: `.scratch` in the store, or elsewhere
    /// when the node's tasks could not cross the way there ([`Blobs::set_scratch`]).
    scratch: Scratch,
}

/// The key of segment `index` of `job`: splits stored one after another.
pub fn segment_key(job: &str, index: u32) -> String {
    format!("{job}/seg-{index:05}")
}

/// The object a split is read from and where in it: another job's part file, its segment,
/// or its own object.
pub fn split_object(job: &str, split: &shoal_jobs::cluster::SplitInfo) -> (String, u64) {
    if let Some(p) = &split.part_of {
        return (part_key(&p.job, p.part, p.attempt), 0);
    }
    match split.segment {
        Some(s) => (segment_key(job, s), split.offset),
        None => (split_key(job, split.index), 0),
    }
}

/// The key of split `index` of `job`.
pub fn split_key(job: &str, index: u32) -> String {
    format!("{job}/split-{index:05}")
}

/// The key of attempt `attempt` of map `index`'s output: one file, its partitions one
/// after another (the job table has their sizes).
pub fn map_output_key(job: &str, index: u32, attempt: u32) -> String {
    format!("{job}/m-{index:05}.a{attempt}.out")
}

/// The key of part file `p` of `job` as attempt `attempt` of its reduce wrote it: every
/// attempt writes under its own key, so a losing attempt never touches the accepted one's
/// bytes; the job table names the accepted attempt.
pub fn part_key(job: &str, p: u32, attempt: u32) -> String {
    format!("{job}/out/{}", part_object(p, attempt))
}

/// The key of the log that keeps the stderr of attempt `attempt` of task `task` (`m-00003`)
/// of `job`: kept, as the rest of the job's `logs`, until the job is forgotten.
pub fn attempt_log_key(job: &str, task: &str, attempt: u32) -> String {
    format!("{job}/logs/{task}.a{attempt}.log")
}

/// The key of the log of the job's `--setup` on this node.
pub fn setup_log_key(job: &str) -> String {
    format!("{job}/logs/setup.log")
}

/// The name of attempt `attempt`'s part `p` in a job's `out` directory.
pub fn part_object(p: u32, attempt: u32) -> String {
    format!("{}.a{attempt}", shoal_jobs::task::part_name(p))
}

/// Whether object `key` stays once `job` has ended on this node, which keeps the part files
/// (reduce, attempt) of `keep`: another job's objects and the job's logs stay, its kept parts
/// stay, and its splits, map outputs and other parts go.
pub fn kept_after_job(job: &str, key: &str, keep: &[(u32, u32)]) -> bool {
    let Some(rest) = key.strip_prefix(job).and_then(|r| r.strip_prefix('/')) else {
        return true;
    };
    if rest.starts_with("logs/") {
        return true;
    }
    rest.strip_prefix("out/")
        .is_some_and(|name| keep.iter().any(|&(p, a)| part_object(p, a) == name))
}

/// Whether `key` is a well-formed key: `/`-separated names of `[a-z0-9._-]`, none empty or
/// starting with a dot.
pub fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 200
        && key.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with('.')
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        })
}

/// [`shoal_jobs::checksum::verify`] of bytes `offset..offset + len` of the file at `path`,
/// off the runtime.
pub async fn verified(
    path: PathBuf,
    offset: u64,
    len: u64,
    want: Option<u32>,
    what: String,
) -> Result<(), shoal_jobs::checksum::Mismatch> {
    use shoal_jobs::checksum::{verify, Mismatch};
    let named = what.clone();
    tokio::task::spawn_blocking(move || verify(&path, offset, len, want, || what.clone()))
        .await
        .unwrap_or_else(|e| {
            Err(Mismatch::Unreadable {
                what: named,
                source: io::Error::other(e),
            })
        })
}

impl Blobs {
    /// The store under `root` (created).
    pub fn open(root: PathBuf) -> io::Result<Blobs> {
        std::fs::create_dir_all(&root)?;
        let scratch = Scratch::open(root.join(".scratch"))?;
        Ok(Blobs { root, scratch })
    }

    /// Make attempt and job directories under `scratch` from now on.
    pub fn set_scratch(&mut self, scratch: Scratch) {
        self.scratch = scratch;
    }

    /// Where `key` lives; `None` for a malformed key.
    pub fn path(&self, key: &str) -> Option<PathBuf> {
        valid_key(key).then(|| self.root.join(key))
    }

    /// Open `key` for reading with its size.
    pub fn open_read(&self, key: &str) -> io::Result<(File, u64)> {
        let path = self.path(key).ok_or_else(|| bad_key(key))?;
        let f = File::open(&path)?;
        let len = f.metadata()?.len();
        Ok((f, len))
    }

    /// Whether `key` is stored here.
    pub fn contains(&self, key: &str) -> bool {
        self.path(key).is_some_and(|p| p.is_file())
    }

    /// A writer for `key`; the object appears when [`BlobWriter::commit`] is called.
    pub fn create(&self, key: &str) -> io::Result<BlobWriter> {
        let path = self.path(key).ok_or_else(|| bad_key(key))?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_name(&path);
        let file = File::create(&tmp)?;
        Ok(BlobWriter {
            file: Some(io::BufWriter::with_capacity(256 << 10, file)),
            tmp,
            path,
            len: 0,
        })
    }

    /// Take the file at `from` — the object another node of this host stored under the same
    /// key in its own store — as `key` here by a hard link: no byte is written, and the
    /// object is as durable as the other node's. Taken only when `from` names that key in
    /// a store (`…/blobs/KEY`) and the linked file is a regular file of `len` bytes whose
    /// checksum is `checksum`; visible once committed, like a written object.
    pub fn link_from(
        &self,
        key: &str,
        from: &Path,
        len: u64,
        checksum: u32,
    ) -> io::Result<Unsynced> {
        let path = self.path(key).ok_or_else(|| bad_key(key))?;
        let refused = |why: String| io::Error::new(io::ErrorKind::InvalidInput, why);
        if !from.is_absolute() || !from.ends_with(Path::new("blobs").join(key)) {
            return Err(refused(format!(
                "{} is not object {key:?} of a node's store",
                from.display()
            )));
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let tmp = tmp_name(&path);
        // The link itself, never what a symbolic link points to.
        std::fs::hard_link(from, &tmp)?;
        let linked = Unsynced { tmp, path, len };
        let meta = std::fs::symlink_metadata(&linked.tmp)?;
        if !meta.file_type().is_file() || meta.len() != len {
            return Err(refused(format!(
                "{} is not a file of {len} bytes",
                from.display()
            )));
        }
        // A node's objects belong to the user it runs as. A file of another user (one who
        // could write it after the checksum was taken: a hard link shares the file) is not
        // one, wherever it sits.
        // SAFETY: geteuid has no preconditions and cannot fail.
        if std::os::unix::fs::MetadataExt::uid(&meta) != unsafe { libc::geteuid() } {
            return Err(refused(format!(
                "{} is not owned by the user this node runs as",
                from.display()
            )));
        }
        let sum = shoal_jobs::checksum::of_range(&mut File::open(&linked.tmp)?, 0, len)?;
        if sum != checksum {
            // Not the sum found: a refusal must not tell a peer what a file it names holds.
            return Err(refused(format!(
                "{} does not have checksum {checksum:08x}",
                from.display()
            )));
        }
        Ok(linked)
    }

    /// Make the directory for `key` (for writers that produce files into it).
    pub fn dir(&self, key: &str) -> io::Result<PathBuf> {
        let path = self.path(key).ok_or_else(|| bad_key(key))?;
        std::fs::create_dir_all(&path)?;
        Ok(path)
    }

    /// Remove everything of `job` but its logs and the part files in `keep` (part and
    /// accepted attempt: those the job table says this node holds): splits, map outputs of every attempt,
    /// unfinished writes, and parts a losing or failed attempt left behind. Returns the bytes
    /// freed.
    pub fn remove_job_scratch(&self, job: &str, keep: &[(u32, u32)]) -> u64 {
        let Some(dir) = self.path(job) else { return 0 };
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return 0;
        };
        let mut freed = 0;
        for e in entries.flatten() {
            let p = e.path();
            // Logs stay until the job is forgotten.
            if e.file_name() == "logs" {
                continue;
            }
            if e.file_name() == "out" {
                let Ok(parts) = std::fs::read_dir(&p) else {
                    continue;
                };
                for part in parts.flatten() {
                    let name = part.file_name().to_string_lossy().into_owned();
                    if !kept_after_job(job, &format!("{job}/out/{name}"), keep) {
                        freed += remove(&part.path());
                    }
                }
                continue;
            }
            freed += remove(&p);
        }
        freed
    }

    /// Remove everything of `job`, its output too. Returns the bytes freed.
    pub fn remove_job(&self, job: &str) -> u64 {
        self.path(job).map_or(0, |dir| remove(&dir))
    }

    /// Bytes stored here (walks the store: call it now and then, off the runtime).
    pub fn used_bytes(&self) -> u64 {
        du(&self.root)
    }

    /// Remove what a previous process of this node left half-done: attempt directories and
    /// objects never committed. Nothing in flight survives a restart. Returns the bytes freed.
    pub fn sweep(&self) -> u64 {
        let mut freed = 0;
        for e in std::fs::read_dir(self.scratch.root())
            .into_iter()
            .flatten()
            .flatten()
        {
            freed += remove(&e.path());
        }
        let mut dirs = vec![self.root.clone()];
        while let Some(d) = dirs.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for e in entries.flatten() {
                let p = e.path();
                let name = e.file_name().to_string_lossy().into_owned();
                if p.is_dir() {
                    dirs.push(p);
                } else if name.starts_with('.') && name.ends_with(".tmp") {
                    freed += remove(&p);
                }
            }
        }
        freed
    }

    /// Jobs that have anything stored here.
    pub fn jobs(&self) -> Vec<String> {
        let Ok(entries) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| valid_key(n))
            .collect()
    }

    /// Make a batch of written objects durable with one `syncfs(2)` of the store's
    /// filesystem — one flush instead of one `fsync` per object, which is what a batch of
    /// thousands of small splits costs otherwise — then visible, each renamed into place.
    /// On an error, the objects not yet renamed are removed.
    pub fn commit_all(&self, objects: Vec<Unsynced>) -> io::Result<()> {
        use std::os::fd::AsRawFd;
        if objects.is_empty() {
            return Ok(());
        }
        // A few objects: an fsync each (a syncfs would also wait for whatever else is being
        // written to the filesystem).
        if objects.len() <= FSYNC_EACH_UP_TO {
            for o in objects {
                o.commit()?;
            }
            return Ok(());
        }
        let root = File::open(&self.root)?;
        // SAFETY: a plain syscall on a descriptor this function owns.
        if unsafe { libc::syncfs(root.as_raw_fd()) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for o in objects {
            o.publish()?;
        }
        Ok(())
    }

    /// Where attempt and job directories are made ([`shoal_jobs::scratch`]).
    pub fn scratch(&self) -> &Scratch {
        &self.scratch
    }

    /// The store's directory.
    pub fn root(&self) -> &Path {
        &self.root
    }
}

/// Remove a file or a directory tree; the bytes it held.
fn remove(p: &Path) -> u64 {
    let n = du(p);
    let _ = if p.is_dir() {
        std::fs::remove_dir_all(p)
    } else {
        std::fs::remove_file(p)
    };
    n
}

fn du(p: &Path) -> u64 {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => std::fs::read_dir(p)
            .map(|es| es.flatten().map(|e| du(&e.path())).sum())
            .unwrap_or(0),
        Ok(m) => m.len(),
        Err(_) => 0,
    }
}

fn bad_key(key: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("malformed object key {key:?}"),
    )
}

fn tmp_name(path: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    path.with_file_name(format!(".{name}.{}-{n}.tmp", std::process::id()))
}

/// An object being written; dropped without [`BlobWriter::commit`], it leaves nothing.
pub struct BlobWriter {
    file: Option<io::BufWriter<File>>,
    tmp: PathBuf,
    path: PathBuf,
    len: u64,
}

impl BlobWriter {
    /// Bytes written so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Make the object durable and visible.
    pub fn commit(self) -> io::Result<u64> {
        self.finish_unsynced()?.commit()
    }

    /// Drop what was written.
    pub fn abort(self) {}

    /// Write out what is buffered, without syncing: complete on disk, but neither durable
    /// nor visible until [`Blobs::commit_all`] makes a whole batch both at once. Dropped
    /// uncommitted, it leaves nothing.
    pub fn finish_unsynced(mut self) -> io::Result<Unsynced> {
        let Some(file) = self.file.take() else {
            return Err(io::Error::other("the object was already committed"));
        };
        let unsynced = Unsynced {
            tmp: std::mem::take(&mut self.tmp),
            path: std::mem::take(&mut self.path),
            len: self.len,
        };
        file.into_inner().map_err(|e| e.into_error())?;
        Ok(unsynced)
    }

    fn file(&mut self) -> io::Result<&mut io::BufWriter<File>> {
        self.file
            .as_mut()
            .ok_or_else(|| io::Error::other("the object was already committed"))
    }
}

/// An object written out but not yet synced nor visible (see
/// [`BlobWriter::finish_unsynced`]); dropped uncommitted, its temporary file is removed.
#[derive(Debug)]
pub struct Unsynced {
    tmp: PathBuf,
    path: PathBuf,
    len: u64,
}

impl Unsynced {
    /// Make this one object durable (an `fsync`) and visible; its bytes.
    pub fn commit(self) -> io::Result<u64> {
        File::open(&self.tmp)?.sync_data()?;
        self.publish()
    }

    /// This object, to commit, when none is committed under its key yet; `None` when one
    /// is, with these bytes (a retry whose answer was lost: taken as stored). A committed
    /// object is never overwritten: one with other bytes is an error of kind
    /// `AlreadyExists`.
    pub fn unless_stored(self) -> io::Result<Option<Unsynced>> {
        if !self.path.is_file() {
            return Ok(Some(self));
        }
        if same_bytes(&self.tmp, &self.path)? {
            return Ok(None);
        }
        Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            "already stored with other bytes",
        ))
    }

    /// Rename it into place (its data already durable); its bytes.
    fn publish(mut self) -> io::Result<u64> {
        std::fs::rename(&self.tmp, &self.path)?;
        self.tmp = PathBuf::new();
        Ok(self.len)
    }
}

/// Whether files `a` and `b` hold the same bytes.
fn same_bytes(a: &Path, b: &Path) -> io::Result<bool> {
    use std::io::Read;
    let (mut fa, mut fb) = (File::open(a)?, File::open(b)?);
    if fa.metadata()?.len() != fb.metadata()?.len() {
        return Ok(false);
    }
    let (mut ba, mut bb) = (vec![0u8; 256 << 10], vec![0u8; 256 << 10]);
    loop {
        let n = fa.read(&mut ba)?;
        if n == 0 {
            return Ok(true);
        }
        fb.read_exact(&mut bb[..n])?;
        if ba[..n] != bb[..n] {
            return Ok(false);
        }
    }
}

impl Drop for Unsynced {
    fn drop(&mut self) {
        if !self.tmp.as_os_str().is_empty() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Drop for BlobWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

impl Write for BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file()?.write(buf)?;
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file()?.flush()
    }
}
