//! What operators do to the cache from the command line besides gc:
//! statistics and invalidation. Both read the index in batches or as SQL
//! aggregates, so their memory does not grow with the number of objects.
//! Safe while `serve` runs on the same cache: files are unlinked (never
//! truncated) before their rows go, and rows are only deleted if they are
//! still the ones that were read.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cache::db::{self, Entry, SourceCursor};
use crate::cache::{Cache, CacheError};

/// How many sources `stat` lists.
const TOP_SOURCES: usize = 10;

/// Counter names of what was fetched from a remote backend, before its prefix.
pub const FETCHED_BYTES: &str = "fetched_bytes ";
pub const FETCHED_REQUESTS: &str = "fetched_requests ";

impl Cache {
    /// Removes objects: files first, then the rows that are still the ones
    /// read. Returns how many rows went. A file that cannot be removed
    /// stops the batch, after the rows of the files already removed.
    pub(super) fn delete_entries(&self, entries: &[Entry]) -> Result<usize, CacheError> {
        let mut failure = None;
        let mut unlinked = entries.len();
        for (i, e) in entries.iter().enumerate() {
            match std::fs::remove_file(self.dir.join(&e.file)) {
                Ok(()) => {}
                Err(err) if err.kind() == std::io::ErrorKind::NotFound => {}
                Err(err) => {
                    failure = Some(CacheError::io(format!("removing {}", e.file), err));
                    unlinked = i;
                    break;
                }
            }
        }
        let deleted = self.with_db(|c| db::delete_entries(c, &entries[..unlinked]))?;
        match failure {
            Some(e) => Err(e),
            None => Ok(deleted),
        }
    }

    pub fn stats(&self) -> Result<Stats, CacheError> {
        self.flush_use()?;
        let kinds = self.with_db(|c| db::kind_totals(c))?;
        let counters: BTreeMap<String, u64> =
            self.with_db(|c| db::counters(c))?.into_iter().collect();
        let top = self.with_db(|c| db::top_sources(c, TOP_SOURCES))?;
        let fetched = fetched_of(&counters);
        // Rows of processes that are gone are copies that were cut off.
        let downloads = self
            .with_db(|c| db::downloads(c))?
            .into_iter()
            .filter(|d| super::reconcile::is_running(d.pid))
            .collect();
        Ok(Stats {
            dir: self.dir.display().to_string(),
            objects: kinds.values().map(|k| k.objects).sum(),
            bytes: kinds.values().map(|k| k.bytes).sum(),
            oldest_access: kinds.values().map(|k| k.oldest_access).min(),
            newest_access: kinds.values().map(|k| k.newest_access).max(),
            by_kind: by_kind(kinds),
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
            fetched,
            downloads,
        })
    }

    /// Marks expired (or, `hard`, deletes now) the objects selected: made
    /// from a source matching one of `patterns`, or all when `all` or no
    /// pattern is given; and, if `older_than_seconds` is given, made
    /// longer ago than that. Returns how many were expired (objects
    /// already expired are not counted again) or deleted.
    pub fn invalidate(
        &self,
        patterns: &[String],
        all: bool,
        older_than_seconds: Option<u64>,
        hard: bool,
    ) -> Result<usize, CacheError> {
        let created_before = older_than_seconds.map_or(i64::MAX, |age| {
            self.now()
                .saturating_sub(i64::try_from(age).unwrap_or(i64::MAX))
        });
        let apply = |batch: &[Entry]| {
            if hard {
                self.delete_entries(batch)
            } else {
                self.with_db(|c| db::expire(c, batch))
            }
        };
        let mut count = 0;
        if all || patterns.is_empty() {
            let mut after = String::new();
            loop {
                let batch = self.with_db(|c| db::rows_after(c, &after, created_before))?;
                let Some(last) = batch.last() else { break };
                after.clone_from(&last.key);
                count += apply(&batch)?;
            }
            return Ok(count);
        }
        for pattern in patterns {
            let mut cursor = source_cursor(pattern);
            loop {
                let batch =
                    self.with_db(|c| db::by_source_after(c, &mut cursor, created_before))?;
                if batch.is_empty() {
                    break;
                }
                count += apply(&batch)?;
            }
        }
        Ok(count)
    }
}

/// The start of a walk of the sources matching a GLOB `pattern`: the part
/// before its first wildcard bounds the walk of the path index, from that
/// prefix to the prefix followed by U+10FFFF (the highest character, so
/// above every path that starts with the prefix but one that continues
/// with that noncharacter).
fn source_cursor(pattern: &str) -> SourceCursor {
    let prefix = &pattern[..pattern.find(['*', '?', '[']).unwrap_or(pattern.len())];
    SourceCursor {
        pattern: pattern.to_string(),
        upper: format!("{prefix}\u{10FFFF}"),
        path: prefix.to_string(),
        key: String::new(),
    }
}

#[derive(Debug, Default, Serialize)]
pub struct KindStats {
    pub objects: u64,
    pub bytes: u64,
    pub expired: u64,
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
    pub objects: u64,
    pub bytes: u64,
    pub by_kind: BTreeMap<String, KindStats>,
    pub oldest_access: Option<i64>,
    pub newest_access: Option<i64>,
    /// Since the cache was created (persisted counters).
    pub hits: u64,
    pub misses: u64,
    pub top_sources: Vec<SourceStats>,
    /// What was fetched from each remote backend, since the cache was created.
    pub fetched: Vec<Fetched>,
    /// Copies into the input cache in progress.
    pub downloads: Vec<db::Download>,
}

#[derive(Debug, Serialize)]
pub struct Fetched {
    /// The backend's prefix.
    pub backend: String,
    pub bytes: u64,
    pub requests: u64,
}

impl Cache {
    /// What a metrics scrape reports of the cache: objects and bytes by
    /// kind, and what was fetched from each remote store (as last
    /// recorded). Lighter than [`Cache::stats`]: no per-source totals.
    pub fn totals(&self) -> Result<(BTreeMap<String, KindStats>, Vec<Fetched>), CacheError> {
        let kinds = self.with_db(|c| db::kind_totals(c))?;
        let counters: BTreeMap<String, u64> =
            self.with_db(|c| db::counters(c))?.into_iter().collect();
        Ok((by_kind(kinds), fetched_of(&counters)))
    }
}

/// What stat and metrics tell of each kind of object.
fn by_kind(kinds: BTreeMap<String, db::KindTotals>) -> BTreeMap<String, KindStats> {
    kinds
        .into_iter()
        .map(|(kind, k)| {
            let stats = KindStats {
                objects: k.objects,
                bytes: k.bytes,
                expired: k.expired,
            };
            (kind, stats)
        })
        .collect()
}

/// The fetched bytes and requests of each remote backend, from the counters.
fn fetched_of(counters: &BTreeMap<String, u64>) -> Vec<Fetched> {
    counters
        .iter()
        .filter_map(|(name, bytes)| {
            let backend = name.strip_prefix(FETCHED_BYTES)?;
            Some(Fetched {
                backend: backend.to_string(),
                bytes: *bytes,
                requests: counters
                    .get(&format!("{FETCHED_REQUESTS}{backend}"))
                    .copied()
                    .unwrap_or(0),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::source_cursor;

    #[test]
    fn a_glob_walks_the_range_of_its_literal_prefix() {
        let c = source_cursor("films/a_*.mp4");
        assert_eq!(c.path, "films/a_");
        assert!(c.upper.as_str() > "films/a_\u{FFFF}zzz");
        assert!(c.upper.as_str() < "films/b");
        let c = source_cursor("films/radio.m4a");
        assert_eq!(c.path, "films/radio.m4a");
        let c = source_cursor("[ab]/*");
        assert_eq!((c.path.as_str(), c.upper.as_str()), ("", "\u{10FFFF}"));
    }
}
