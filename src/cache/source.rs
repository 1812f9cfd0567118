//! Sources: a path from a URL, resolved under a root without ever leaving
//! it, or an object in a remote store; and the identity that goes into
//! cache keys.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use crate::cache::CacheError;

/// A source file as it is now: a replaced or rewritten file has another
/// identity. Size and mtime alone miss a file rewritten in place within the
/// same clock tick at the same size; the inode and the change time (which
/// no user-space call can set back) catch it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    /// The path in the URL, after the prefix.
    pub rel: String,
    /// Which configured source it is in (see `cache::Sources`).
    pub backend: usize,
    /// The file on disk, symlinks resolved; empty for a remote object.
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
    pub inode: u64,
    pub ctime_ns: i64,
    /// A remote object's ETag, quotes included (possibly empty); `None`
    /// for a file.
    pub etag: Option<String>,
}

impl SourceId {
    /// `rel:size:mtime:inode:ctime` of a file, `rel:size:mtime:etag` of
    /// a remote object, for cache keys.
    pub fn key_part(&self) -> String {
        match &self.etag {
            None => format!(
                "{}:{}:{}:{}:{}",
                self.rel, self.size, self.mtime_ns, self.inode, self.ctime_ns
            ),
            Some(etag) => format!("{}:{}:{}:{etag}", self.rel, self.size, self.mtime_ns),
        }
    }

    /// The identity of a remote object described by `meta`.
    pub fn of_remote(rel: &str, backend: usize, meta: &crate::cache::remote::Meta) -> SourceId {
        SourceId {
            rel: rel.to_string(),
            backend,
            path: PathBuf::new(),
            size: meta.len,
            mtime_ns: meta.last_modified.saturating_mul(1_000_000_000),
            inode: 0,
            ctime_ns: 0,
            etag: Some(meta.etag.clone()),
        }
    }

    pub fn is_remote(&self) -> bool {
        self.etag.is_some()
    }

    /// The identity of `path` now, under the same name.
    pub fn of_file(rel: &str, path: PathBuf, meta: &std::fs::Metadata) -> SourceId {
        SourceId {
            rel: rel.to_string(),
            backend: 0,
            path,
            size: meta.len(),
            mtime_ns: meta.mtime() * 1_000_000_000 + meta.mtime_nsec(),
            inode: meta.ino(),
            ctime_ns: meta.ctime() * 1_000_000_000 + meta.ctime_nsec(),
            etag: None,
        }
    }

    /// Whether the file still has this identity (a remote object's is
    /// checked by `cache::Inputs`).
    pub fn is_current(&self) -> bool {
        self.is_remote()
            || std::fs::metadata(&self.path).is_ok_and(|meta| {
                let mut now = SourceId::of_file(&self.rel, self.path.clone(), &meta);
                now.backend = self.backend;
                now == *self
            })
    }
}

/// Resolves `rel` (already free of `..` and absolute parts) under `root`.
/// Symlinks are followed, but the file they lead to must be under `root`.
pub fn resolve_local(root: &Path, rel: &str) -> Result<SourceId, CacheError> {
    Ok(resolve_local_on(root, rel)?.0)
}

/// As [`resolve_local`], with the device of the filesystem the file is on.
pub fn resolve_local_on(root: &Path, rel: &str) -> Result<(SourceId, u64), CacheError> {
    let not_found = || CacheError::NotFound(rel.to_string());
    let root =
        canonical(root).map_err(|e| CacheError::io(format!("media root {}", root.display()), e))?;
    let path = canonical(&root.join(rel)).map_err(|_| not_found())?;
    if !path.starts_with(&root) {
        tracing::warn!("{rel}: leads outside the media root, to {}", path.display());
        return Err(not_found());
    }
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    Ok((SourceId::of_file(rel, path, &meta), meta.dev()))
}

/// The device of `root` when it is on a filesystem of this machine's own
/// disks or memory (ext4, XFS, Btrfs, ZFS, F2FS, bcachefs, tmpfs,
/// overlayfs, squashfs, vfat): one where a `stat` never waits for a
/// network, as it can on NFS, SMB or a FUSE mount of a bucket.
pub fn local_device(root: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    // Each filesystem's magic number, as <linux/magic.h> names it.
    const LOCAL: [u64; 11] = [
        0xEF53,      // EXT4_SUPER_MAGIC (ext2, ext3 too)
        0x5846_5342, // XFS_SUPER_MAGIC
        0x9123_683E, // BTRFS_SUPER_MAGIC
        0x2FC1_2FC1, // ZFS
        0xF2F5_2010, // F2FS_SUPER_MAGIC
        0xCA45_1A4E, // BCACHEFS_SUPER_MAGIC
        0x0102_1994, // TMPFS_MAGIC
        0x8584_58F6, // RAMFS_MAGIC
        0x794C_7630, // OVERLAYFS_SUPER_MAGIC
        0x7371_7368, // SQUASHFS_MAGIC
        0x4D44,      // MSDOS_SUPER_MAGIC (vfat)
    ];
    let path = std::ffi::CString::new(root.as_os_str().as_bytes()).ok()?;
    let mut fs = std::mem::MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `fs` is written by the call
    // before it is read, only when it succeeds.
    if unsafe { libc::statfs(path.as_ptr(), fs.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: statfs succeeded, so it filled `fs`.
    let kind = unsafe { fs.assume_init() }.f_type as u64;
    if !LOCAL.contains(&kind) {
        return None;
    }
    Some(std::fs::metadata(root).ok()?.dev())
}

/// How long where a path leads is remembered, and for how many paths.
/// Resolving symlinks takes a readlink per path component, on every
/// request. What is remembered goes through the same check against the
/// root as a fresh answer; a symlink changed meanwhile serves, for at most
/// this long, the file it led to before.
const CANONICAL_TTL: Duration = Duration::from_secs(1);
const CANONICAL_PATHS: usize = 4096;

type Canonical = HashMap<PathBuf, (PathBuf, Instant)>;
static CANONICAL: LazyLock<Mutex<Canonical>> = LazyLock::new(Mutex::default);

/// `path` with its symlinks resolved, as `Path::canonicalize`, remembered
/// for [`CANONICAL_TTL`].
fn canonical(path: &Path) -> std::io::Result<PathBuf> {
    if let Some((to, at)) = CANONICAL.lock().expect("canonical lock").get(path) {
        if at.elapsed() < CANONICAL_TTL {
            return Ok(to.clone());
        }
    }
    let to = path.canonicalize()?;
    let mut known = CANONICAL.lock().expect("canonical lock");
    if known.len() >= CANONICAL_PATHS {
        known.retain(|_, (_, at)| at.elapsed() < CANONICAL_TTL);
        if known.len() >= CANONICAL_PATHS {
            known.clear();
        }
    }
    known.insert(path.to_path_buf(), (to.clone(), Instant::now()));
    Ok(to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_disks_and_memory_count_as_local_filesystems() {
        // Where the tests run: a disk or tmpfs.
        let here = tempfile::tempdir().unwrap();
        let device = std::fs::metadata(here.path()).unwrap().dev();
        assert_eq!(local_device(here.path()), Some(device));
        // procfs is neither; nor is what is not there.
        assert_eq!(local_device(Path::new("/proc")), None);
        assert_eq!(local_device(&here.path().join("missing")), None);
    }

    #[test]
    fn symlinks_may_not_lead_outside_the_root() {
        let outside = tempfile::tempdir().unwrap();
        let root = tempfile::tempdir().unwrap();
        std::fs::write(outside.path().join("secret.mp4"), b"x").unwrap();
        std::fs::write(root.path().join("ok.mp4"), b"abc").unwrap();
        std::os::unix::fs::symlink(
            outside.path().join("secret.mp4"),
            root.path().join("link.mp4"),
        )
        .unwrap();
        std::os::unix::fs::symlink(root.path().join("ok.mp4"), root.path().join("inside.mp4"))
            .unwrap();
        assert!(matches!(
            resolve_local(root.path(), "link.mp4"),
            Err(CacheError::NotFound(_))
        ));
        assert_eq!(resolve_local(root.path(), "inside.mp4").unwrap().size, 3);
        assert!(matches!(
            resolve_local(root.path(), "missing.mp4"),
            Err(CacheError::NotFound(_))
        ));
    }
}
