//! Inputs read where they lie, never uploaded: `--input node:GLOB` (each node's own files
//! matching GLOB under its `--input-root`; each map runs on the node that has its file) and
//! `--input shared:GLOB` (one filesystem mounted at every node's `--input-root`; any node
//! reads any split in place).
//!
//! The invariant: a path read in place resolves — symlinks followed — inside the node's
//! input root. A pattern that is absolute or climbs out with `..` is refused when the job is
//! submitted; a file whose real path lies outside the root is refused when it is listed and
//! again when it is read.

use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::split::{expand_inputs, plan_splits};

/// `--input node:GLOB`.
pub const NODE_PREFIX: &str = "node:";
/// `--input shared:GLOB`.
pub const SHARED_PREFIX: &str = "shared:";

/// Where an in-place input lies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// On each node's own disk (`node:`).
    Node,
    /// On a filesystem every node mounts (`shared:`).
    Shared,
}

/// The place and pattern of an in-place input; `None` for an uploaded or chained one.
pub fn in_place(input: &str) -> Option<(Place, &str)> {
    if let Some(p) = input.strip_prefix(NODE_PREFIX) {
        Some((Place::Node, p))
    } else {
        input
            .strip_prefix(SHARED_PREFIX)
            .map(|p| (Place::Shared, p))
    }
}

/// Check a pattern (or a listed path): relative, without `..`, not empty.
pub fn check_relative(input: &str, pattern: &str) -> Result<()> {
    let p = Path::new(pattern);
    let climbs = p.components().any(|c| {
        matches!(
            c,
            Component::ParentDir | Component::RootDir | Component::Prefix(_)
        )
    });
    if pattern.trim().is_empty() || pattern.contains('\0') || climbs || pattern.starts_with('~') {
        return Err(Error::InvalidSpec(format!(
            "--input {input}: the pattern must be a relative path under the nodes' --input-root, \
             without '..' (it may not escape the root)"
        )));
    }
    Ok(())
}

/// One split of an in-place file, as a node lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalSplit {
    /// The file, relative to the input root.
    pub path: String,
    /// First byte.
    pub offset: u64,
    /// Bytes.
    pub len: u64,
}

/// The files under `root` matching `pattern` (a glob, a file or a directory, relative to
/// `root`), cut into line-aligned splits of about `split_size` (a compressed file whole).
pub fn list(
    root: &Path,
    pattern: &str,
    split_size: u64,
    max_record: u64,
) -> Result<Vec<LocalSplit>> {
    check_relative(pattern, pattern)?;
    let root = real_root(root)?;
    let full = root.join(pattern);
    // What matches here (nothing is fine: this node contributes nothing).
    let matched: Vec<String> = if pattern.contains(['*', '?', '[']) {
        let text = full.to_string_lossy();
        let mut paths: Vec<PathBuf> = glob::glob(&text)
            .map_err(|e| Error::InvalidSpec(format!("{pattern}: bad glob: {e}")))?
            .filter_map(|m| m.ok())
            .collect();
        paths.sort();
        paths
            .into_iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    } else if full.exists() {
        vec![full.to_string_lossy().into_owned()]
    } else {
        Vec::new()
    };
    let files = expand_inputs(&matched)?;
    let mut inside = Vec::with_capacity(files.len());
    for mut f in files {
        let real = inside_root(&root, &f.path)?;
        f.name = real
            .strip_prefix(&root)
            .map_err(|_| escapes(&f.path))?
            .to_string_lossy()
            .into_owned();
        f.path = real;
        inside.push(f);
    }
    Ok(plan_splits(&inside, split_size, max_record)?
        .into_iter()
        .map(|s| LocalSplit {
            path: s.name,
            offset: s.offset,
            len: s.len,
        })
        .collect())
}

/// Where `rel` (a listed path) is under `root`, checked again as it is read.
pub fn resolve(root: &Path, rel: &str) -> Result<PathBuf> {
    check_relative(rel, rel)?;
    let root = real_root(root)?;
    inside_root(&root, &root.join(rel))
}

fn real_root(root: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(root).map_err(|e| Error::Input {
        path: root.to_owned(),
        source: e,
    })
}

fn escapes(path: &Path) -> Error {
    Error::InvalidSpec(format!(
        "{}: lies outside --input-root (a symlink out of it?); refused",
        path.display()
    ))
}

fn inside_root(root: &Path, path: &Path) -> Result<PathBuf> {
    let real = std::fs::canonicalize(path).map_err(|e| Error::Input {
        path: path.to_owned(),
        source: e,
    })?;
    if real.starts_with(root) {
        Ok(real)
    } else {
        Err(escapes(path))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_and_links_stay_inside_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("logs")).unwrap();
        std::fs::write(root.join("logs/a.log"), "one\ntwo\n").unwrap();
        std::fs::write(root.join("logs/b.log"), "three\n").unwrap();
        std::fs::write(dir.path().join("secret"), "key\n").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), root.join("logs/c.log")).unwrap();
        for bad in ["../secret", "/etc/passwd", "logs/../../secret", "", "~/x"] {
            let e = check_relative(bad, bad).unwrap_err().to_string();
            assert!(e.contains("may not escape"), "{bad}: {e}");
        }
        let e = list(&root, "logs/*.log", 1 << 20, 1 << 20).unwrap_err();
        assert!(e.to_string().contains("outside --input-root"), "{e}");
        std::fs::remove_file(root.join("logs/c.log")).unwrap();
        let splits = list(&root, "logs/*.log", 1 << 20, 1 << 20).unwrap();
        let paths: Vec<&str> = splits.iter().map(|s| s.path.as_str()).collect();
        assert_eq!(paths, ["logs/a.log", "logs/b.log"]);
        assert_eq!(splits[0].len, 8);
        assert!(list(&root, "nothing/*.txt", 1 << 20, 1 << 20)
            .unwrap()
            .is_empty());
        assert!(list(&root, "missing.txt", 1 << 20, 1 << 20)
            .unwrap()
            .is_empty());
        assert_eq!(
            resolve(&root, "logs/a.log").unwrap(),
            root.canonicalize().unwrap().join("logs/a.log")
        );
        assert!(resolve(&root, "../secret").is_err());
        assert_eq!(in_place("node:logs/*"), Some((Place::Node, "logs/*")));
        assert_eq!(in_place("shared:x"), Some((Place::Shared, "x")));
        assert_eq!(in_place("logs"), None);
    }
}
