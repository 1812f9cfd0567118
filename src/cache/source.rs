//! Local sources: a path from a URL, resolved under the media root without
//! ever leaving it, and the identity that goes into cache keys.

use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use crate::cache::CacheError;

/// A source file as it is now: a replaced file has another identity.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SourceId {
    /// Path relative to the media root, as in the URL.
    pub rel: String,
    /// The file on disk, symlinks resolved.
    pub path: PathBuf,
    pub size: u64,
    pub mtime_ns: i64,
}

impl SourceId {
    /// `rel:size:mtime`, for cache keys.
    pub fn key_part(&self) -> String {
        format!("{}:{}:{}", self.rel, self.size, self.mtime_ns)
    }
}

/// Resolves `rel` (already free of `..` and absolute parts) under `root`.
/// Symlinks are followed, but the file they lead to must be under `root`.
pub fn resolve_local(root: &Path, rel: &str) -> Result<SourceId, CacheError> {
    let not_found = || CacheError::NotFound(rel.to_string());
    let root = root
        .canonicalize()
        .map_err(|e| CacheError::Io(format!("media root {}: {e}", root.display())))?;
    let path = root.join(rel).canonicalize().map_err(|_| not_found())?;
    if !path.starts_with(&root) {
        tracing::warn!("{rel}: leads outside the media root, to {}", path.display());
        return Err(not_found());
    }
    let meta = std::fs::metadata(&path).map_err(|_| not_found())?;
    if !meta.is_file() {
        return Err(not_found());
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_nanos() as i64);
    Ok(SourceId {
        rel: rel.to_string(),
        path,
        size: meta.len(),
        mtime_ns,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
