//! Reconciling the disk with the index: what interrupted runs leave
//! behind (see the lifecycle in mod.rs). Run by `serve` at start-up, in
//! the background, and by every gc.
//!
//! Streams both ways, so that its memory does not grow with the cache:
//! rows are read in batches and each file of theirs is looked at; files are
//! listed a directory at a time and each name is looked up in the
//! `object_file` index. Safe while `serve` stores objects: a file without
//! a row is left alone until it is old enough not to be another process's
//! object between rename and insert, a row is only deleted if it is still
//! the row that was read, and a missing file is never "removed" again (the
//! path may have been filled by a new object since).

use std::path::Path;
use std::time::Instant;

use crate::cache::db::{self, Entry};
use crate::cache::{Cache, CacheError};

/// Files without a row younger than this are left alone.
const ORPHAN_GRACE_SECONDS: u64 = 60;

impl Cache {
    /// Removes what interrupted runs left: temporary files, rows whose file
    /// is missing or of the wrong size, files without a row. Returns the
    /// number of files and rows removed.
    pub fn reconcile(&self) -> Result<usize, CacheError> {
        self.reconcile_orphans(false)
    }

    /// [`Cache::reconcile`], or with `dry_run` only the count of what it
    /// would remove.
    pub(super) fn reconcile_orphans(&self, dry_run: bool) -> Result<usize, CacheError> {
        let started = Instant::now();
        let temporary = self.temporary_leftovers(dry_run)?;
        let (rows, without_files) = self.rows_without_files(dry_run)?;
        let (files, without_rows) = self.files_without_rows(dry_run)?;
        tracing::debug!(
            "reconciled {rows} rows and {files} files in {:.2} s: {temporary} temporary \
             files, {without_files} rows without their file, {without_rows} files without \
             a row{}",
            started.elapsed().as_secs_f64(),
            if dry_run { " (dry run)" } else { "" }
        );
        Ok(temporary + without_files + without_rows)
    }

    fn temporary_leftovers(&self, dry_run: bool) -> Result<usize, CacheError> {
        let tmp = self.dir.join("tmp");
        let listing = std::fs::read_dir(&tmp)
            .map_err(|e| CacheError::io(format!("listing {}", tmp.display()), e))?;
        let mut removed = 0;
        for entry in listing {
            let Ok(entry) = entry else { continue };
            if is_older_than(&entry.path(), ORPHAN_GRACE_SECONDS)
                && !maker_is_running(&entry.file_name().to_string_lossy())
                && (dry_run || std::fs::remove_file(entry.path()).is_ok())
            {
                removed += 1;
            }
        }
        Ok(removed)
    }

    /// Rows whose file is missing or of another size. Returns the rows
    /// read and those removed.
    fn rows_without_files(&self, dry_run: bool) -> Result<(usize, usize), CacheError> {
        let (mut read, mut removed) = (0, 0);
        let mut after = String::new();
        loop {
            let batch = self.with_db(|c| db::rows_after(c, &after, i64::MAX))?;
            let Some(last) = batch.last() else { break };
            after.clone_from(&last.key);
            read += batch.len();
            let (mut missing, mut wrong_size): (Vec<Entry>, Vec<Entry>) = (vec![], vec![]);
            for e in batch {
                match std::fs::metadata(self.dir.join(&e.file)) {
                    Ok(m) if m.len() == e.bytes => {}
                    Ok(_) => wrong_size.push(e),
                    Err(err) if err.kind() == std::io::ErrorKind::NotFound => missing.push(e),
                    // Cannot tell (permissions, I/O): leave it to a lookup.
                    Err(_) => {}
                }
            }
            removed += missing.len() + wrong_size.len();
            if !dry_run {
                self.with_db(|c| db::delete_entries(c, &missing))?;
                self.delete_entries(&wrong_size)?;
            }
        }
        Ok((read, removed))
    }

    /// Files under `objects/` that no row names. Returns the files listed
    /// and those removed.
    fn files_without_rows(&self, dry_run: bool) -> Result<(usize, usize), CacheError> {
        let (mut listed, mut removed) = (0, 0);
        let mut batch = Vec::with_capacity(db::BATCH);
        let walk = walkdir::WalkDir::new(self.dir.join("objects"))
            .min_depth(2)
            .max_depth(2);
        for entry in walk {
            let Ok(entry) = entry else { continue };
            if !entry.file_type().is_file() {
                continue;
            }
            let rel = entry
                .path()
                .strip_prefix(&self.dir)
                .expect("under the cache dir");
            batch.push(rel.to_string_lossy().into_owned());
            if batch.len() == db::BATCH {
                listed += batch.len();
                removed += self.remove_unknown(&mut batch, dry_run)?;
                batch.clear();
            }
        }
        listed += batch.len();
        removed += self.remove_unknown(&mut batch, dry_run)?;
        Ok((listed, removed))
    }

    /// Removes those of `files` (relative to the cache directory) that no
    /// row names and that are older than the grace period.
    fn remove_unknown(&self, files: &mut [String], dry_run: bool) -> Result<usize, CacheError> {
        // In order, the lookups walk the index forwards.
        files.sort_unstable();
        let unknown = self.with_db(|c| db::files_without_rows(c, files))?;
        let mut removed = 0;
        for file in unknown {
            let path = self.dir.join(file);
            if is_older_than(&path, ORPHAN_GRACE_SECONDS)
                && (dry_run || std::fs::remove_file(&path).is_ok())
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

/// Whether the process that is making the temporary file `name`
/// (`<hash>.<pid>.<n>`, see `store.rs`) is still running: a make may take
/// longer than the grace time (a large moov on a slow mount).
fn maker_is_running(name: &str) -> bool {
    let pid = name.split('.').nth(1).and_then(|p| p.parse::<u32>().ok());
    pid.is_some_and(is_running)
}

/// Whether process `pid` exists.
pub(super) fn is_running(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks that the process exists.
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn is_older_than(path: &Path, seconds: u64) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() >= seconds)
}
