//! What operators do to the cache from the command line: garbage
//! collection (TTL, size caps, orphans), statistics and invalidation. Safe
//! while `serve` runs on the same cache: files are unlinked (never
//! truncated) before their rows go, and rows are only deleted if they are
//! still the ones that were read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cache::db::{self, Entry};
use std::path::Path;

use crate::cache::{Cache, CacheError};

/// Files without a row younger than this are left alone by reconcile.
const ORPHAN_GRACE_SECONDS: u64 = 60;

/// Kinds that are outputs (made from sources) rather than cached inputs.
const INPUT_KIND: &str = "input";

/// When usage is over a size cap, gc deletes down to this share of it.
const LOW_WATER_PERCENT: u64 = 90;

pub struct GcPolicy {
    pub output_ttl_seconds: u64,
    pub input_ttl_seconds: u64,
    /// 0: no cap.
    pub output_max_bytes: u64,
    pub input_max_bytes: u64,
}

#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    /// Deleted (or, in a dry run, to delete): file, kind, bytes, why.
    pub deleted: Vec<GcDeletion>,
    pub deleted_bytes: u64,
    /// Files without a row and rows without a file (or of the wrong size).
    pub orphans_removed: usize,
    pub kept_objects: usize,
    pub kept_bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct GcDeletion {
    pub file: String,
    pub kind: String,
    pub bytes: u64,
    pub reason: &'static str,
}

impl Cache {
    pub fn gc(&self, policy: &GcPolicy, dry_run: bool) -> Result<GcReport, CacheError> {
        self.flush_use()?;
        let now = self.now();
        let entries = self.with_db(|c| db::entries(c))?;
        let mut doomed: Vec<(Entry, &'static str)> = Vec::new();
        let mut kept: Vec<Entry> = Vec::new();
        for e in entries {
            let ttl = if e.kind == INPUT_KIND {
                policy.input_ttl_seconds
            } else {
                policy.output_ttl_seconds
            };
            if e.expired {
                doomed.push((e, "invalidated"));
            } else if now.saturating_sub(e.accessed) > ttl as i64 {
                doomed.push((e, "ttl"));
            } else {
                kept.push(e);
            }
        }
        // Size caps: least recently used first (entries come sorted so).
        for (is_input, cap) in [
            (false, policy.output_max_bytes),
            (true, policy.input_max_bytes),
        ] {
            let of_kind = |e: &Entry| (e.kind == INPUT_KIND) == is_input;
            let mut used: u64 = kept.iter().filter(|e| of_kind(e)).map(|e| e.bytes).sum();
            if cap == 0 || used <= cap {
                continue;
            }
            let target = cap / 100 * LOW_WATER_PERCENT;
            let mut i = 0;
            while i < kept.len() && used > target {
                if of_kind(&kept[i]) {
                    used -= kept[i].bytes;
                    doomed.push((kept.remove(i), "size"));
                } else {
                    i += 1;
                }
            }
        }
        let mut report = GcReport {
            dry_run,
            deleted_bytes: doomed.iter().map(|(e, _)| e.bytes).sum(),
            kept_objects: kept.len(),
            kept_bytes: kept.iter().map(|e| e.bytes).sum(),
            ..GcReport::default()
        };
        if !dry_run {
            self.delete_entries(doomed.iter().map(|(e, _)| e.clone()).collect())?;
            report.orphans_removed = self.reconcile()?;
        }
        report.deleted = doomed
            .into_iter()
            .map(|(e, reason)| GcDeletion {
                file: e.file,
                kind: e.kind,
                bytes: e.bytes,
                reason,
            })
            .collect();
        Ok(report)
    }

    /// Files first, then rows.
    fn delete_entries(&self, entries: Vec<Entry>) -> Result<(), CacheError> {
        for e in &entries {
            match std::fs::remove_file(self.dir.join(&e.file)) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => return Err(CacheError::io(format!("removing {}", e.file), err)),
            }
        }
        for chunk in entries.chunks(500) {
            self.with_db(|c| db::delete_entries(c, chunk))?;
        }
        Ok(())
    }

    pub fn stats(&self) -> Result<Stats, CacheError> {
        self.flush_use()?;
        let entries = self.with_db(|c| db::entries(c))?;
        let mut by_kind: BTreeMap<String, KindStats> = BTreeMap::new();
        for e in &entries {
            let k = by_kind.entry(e.kind.clone()).or_default();
            k.objects += 1;
            k.bytes += e.bytes;
            k.expired += usize::from(e.expired);
        }
        let counters: BTreeMap<String, u64> =
            self.with_db(|c| db::counters(c))?.into_iter().collect();
        let top = self.with_db(|c| db::top_sources(c, 10))?;
        Ok(Stats {
            dir: self.dir.display().to_string(),
            objects: entries.len(),
            bytes: entries.iter().map(|e| e.bytes).sum(),
            by_kind,
            oldest_access: entries.iter().map(|e| e.accessed).min(),
            newest_access: entries.iter().map(|e| e.accessed).max(),
            hits: counters.get("hits").copied().unwrap_or(0),
            misses: counters.get("misses").copied().unwrap_or(0),
            top_sources: top
                .into_iter()
                .map(|(path, objects, bytes)| SourceStats {
                    path,
                    objects,
                    bytes,
                })
                .collect(),
        })
    }

    /// Marks expired (or, `hard`, deletes now) the objects selected: made
    /// from a source matching one of `patterns`, or all when `all`; and, if
    /// `older_than_seconds` is given, made longer ago than that. Returns
    /// how many.
    pub fn invalidate(
        &self,
        patterns: &[String],
        all: bool,
        older_than_seconds: Option<u64>,
        hard: bool,
    ) -> Result<usize, CacheError> {
        let entries = self.with_db(|c| db::entries(c))?;
        let mut matching = std::collections::HashSet::new();
        if !all {
            for p in patterns {
                matching.extend(self.with_db(|c| db::keys_by_source(c, p))?);
            }
        }
        let now = self.now();
        let selected: Vec<Entry> = entries
            .into_iter()
            .filter(|e| all || patterns.is_empty() || matching.contains(&e.key))
            .filter(|e| {
                older_than_seconds.is_none_or(|age| now.saturating_sub(e.created) > age as i64)
            })
            .collect();
        let count = selected.len();
        if hard {
            self.delete_entries(selected)?;
        } else {
            let keys: Vec<String> = selected.into_iter().map(|e| e.key).collect();
            for chunk in keys.chunks(500) {
                self.with_db(|c| db::expire(c, chunk))?;
            }
        }
        Ok(count)
    }
}

#[derive(Debug, Default, Serialize)]
pub struct KindStats {
    pub objects: usize,
    pub bytes: u64,
    pub expired: usize,
}

#[derive(Debug, Serialize)]
pub struct SourceStats {
    pub path: String,
    pub objects: u64,
    pub bytes: u64,
}

#[derive(Debug, Serialize)]
pub struct Stats {
    pub dir: String,
    pub objects: usize,
    pub bytes: u64,
    pub by_kind: BTreeMap<String, KindStats>,
    pub oldest_access: Option<i64>,
    pub newest_access: Option<i64>,
    /// Since the cache was created (persisted counters).
    pub hits: u64,
    pub misses: u64,
    pub top_sources: Vec<SourceStats>,
}

impl Cache {
    /// Removes what interrupted runs left: temporary files, rows whose file
    /// is missing or of the wrong size, files without a row. Returns the
    /// number of files and rows removed.
    pub fn reconcile(&self) -> Result<usize, CacheError> {
        let mut removed = 0;
        let tmp = self.dir.join("tmp");
        let listing = std::fs::read_dir(&tmp)
            .map_err(|e| CacheError::io(format!("listing {}", tmp.display()), e))?;
        for entry in listing {
            let Ok(entry) = entry else { continue };
            if is_older_than(&entry.path(), ORPHAN_GRACE_SECONDS)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        let rows = self.with_db(|c| db::all_files(c))?;
        let mut known = std::collections::HashSet::with_capacity(rows.len());
        for (key, file, bytes) in rows {
            let len = std::fs::metadata(self.dir.join(&file))
                .map(|m| m.len())
                .ok();
            if len != Some(bytes) {
                let _ = std::fs::remove_file(self.dir.join(&file));
                self.with_db(|c| db::delete(c, &key))?;
                removed += 1;
            } else {
                known.insert(file);
            }
        }
        for entry in walkdir::WalkDir::new(self.dir.join("objects"))
            .min_depth(2)
            .max_depth(2)
        {
            let Ok(entry) = entry else { continue };
            let rel = entry
                .path()
                .strip_prefix(&self.dir)
                .expect("under the cache dir");
            let rel = rel.to_string_lossy();
            if !known.contains(rel.as_ref())
                && is_older_than(entry.path(), ORPHAN_GRACE_SECONDS)
                && std::fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
        Ok(removed)
    }
}

fn is_older_than(path: &Path, seconds: u64) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() >= seconds)
}
