//! Garbage collection: objects invalidated or past their TTL, then least
//! recently used ones while a size cap is exceeded or free space on the
//! cache's filesystem is below its floor, and orphans (see reconcile.rs).
//!
//! The index is read in batches (keyset pagination), the second pass
//! along the `object_accessed` index, so gc's memory is flat and its time
//! linear in the number of objects. Each batch is removed files first,
//! then rows, before the next is read; a dry run walks the same way and
//! only counts.

use serde::Serialize;

use crate::cache::db::{self, ClassTotals, Cutoffs, Entry};
use crate::cache::{Cache, CacheError};

/// The kind of cached inputs, which have their own TTL and cap.
const INPUT_KIND: &str = "input";

/// When usage is over a size cap, gc deletes down to this share of it.
const LOW_WATER_PERCENT: u64 = 90;

/// When free space is below the floor, gc deletes until it is this much
/// above it, so that the next few misses do not take it straight back
/// under (and every gc round then delete a little).
const FREE_HYSTERESIS_PERCENT: u64 = 10;

pub struct GcPolicy {
    pub output_ttl_seconds: u64,
    pub input_ttl_seconds: u64,
    /// 0: no cap.
    pub output_max_bytes: u64,
    pub input_max_bytes: u64,
    /// Free space to keep on the cache's filesystem (`cache.min_free`);
    /// 0: none.
    pub min_free_bytes: u64,
}

impl GcPolicy {
    /// Whether `free_bytes` (from [`Cache::free_bytes`]) is below the
    /// floor, so that gc should run now rather than at its next interval.
    pub fn short_of_space(&self, free_bytes: u64) -> bool {
        free_bytes < self.min_free_bytes
    }

    fn cutoffs(&self, now: i64) -> Cutoffs {
        let before = |ttl: u64| now.saturating_sub(i64::try_from(ttl).unwrap_or(i64::MAX));
        Cutoffs {
            output: before(self.output_ttl_seconds),
            input: before(self.input_ttl_seconds),
        }
    }
}

/// Why gc deletes an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    Invalidated,
    Ttl,
    /// Least recently used while a size cap was exceeded.
    Size,
    /// Least recently used while free space was below `cache.min_free`.
    FreeSpace,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Invalidated => "invalidated",
            Reason::Ttl => "ttl",
            Reason::Size => "size",
            Reason::FreeSpace => "free_space",
        }
    }
}

/// Objects and their bytes.
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct Tally {
    pub objects: u64,
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, bytes: u64) {
        self.objects += 1;
        self.bytes += bytes;
    }
}

/// What gc deleted (or, in a dry run, would delete), by reason.
#[derive(Debug, Default, Serialize)]
pub struct ByReason {
    pub invalidated: Tally,
    pub ttl: Tally,
    pub size: Tally,
    pub free_space: Tally,
}

/// What a gc run did: counts and bytes, never a list of objects (a dry
/// run hands each one to its caller as it goes instead).
#[derive(Debug, Default, Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub deleted_objects: u64,
    pub deleted_bytes: u64,
    pub by_reason: ByReason,
    /// Temporary files of interrupted runs, files without a row and rows
    /// without a file (or with a file of another size): removed, or in a
    /// dry run, found.
    pub orphans: usize,
    pub kept_objects: u64,
    pub kept_bytes: u64,
    /// Free space on the cache's filesystem when gc started (after
    /// orphans), and the floor it keeps.
    pub free_bytes: u64,
    pub min_free_bytes: u64,
}

/// One object gc deletes, as a dry run lists it.
pub struct GcDeletion<'a> {
    pub file: &'a str,
    pub kind: &'a str,
    pub bytes: u64,
    pub accessed: i64,
    pub reason: Reason,
}

impl Cache {
    /// Runs gc; see the module comment.
    pub fn gc(&self, policy: &GcPolicy, dry_run: bool) -> Result<GcReport, CacheError> {
        self.gc_listing(policy, dry_run, |_| {})
    }

    /// Runs gc and hands `each` every object deleted (or, in a dry run,
    /// that would be), in the order gc takes them.
    pub fn gc_listing(
        &self,
        policy: &GcPolicy,
        dry_run: bool,
        each: impl FnMut(&GcDeletion),
    ) -> Result<GcReport, CacheError> {
        self.flush_use()?;
        // Orphans first, so that the space they held counts as free below.
        let orphans = self.reconcile_orphans(dry_run)?;
        let space = self.space()?;
        let cutoffs = policy.cutoffs(self.now());
        let mut sweep = Sweep::new(self, dry_run, space.block_bytes, each);
        sweep.report.orphans = orphans;
        sweep.report.free_bytes = space.free_bytes;
        sweep.report.min_free_bytes = policy.min_free_bytes;
        sweep.expired_and_past_ttl(cutoffs)?;
        let kept = self.with_db(|c| db::kept_totals(c, cutoffs))?;
        let mut needs = Needs::new(policy, &kept, space.free_bytes + sweep.freed_bytes);
        let walked = sweep.least_recently_used(cutoffs, &mut needs)?;
        let mut report = sweep.report;
        report.kept_objects =
            (kept.output_objects + kept.input_objects).saturating_sub(walked.objects);
        report.kept_bytes = (kept.output_bytes + kept.input_bytes).saturating_sub(walked.bytes);
        Ok(report)
    }
}

/// How much the least-recently-used pass still has to delete.
struct Needs {
    /// Bytes over the low-water mark of each class: outputs, inputs.
    over_cap: [u64; 2],
    /// Bytes on disk to free for the free-space floor.
    free: u64,
}

impl Needs {
    fn new(policy: &GcPolicy, kept: &ClassTotals, free_bytes: u64) -> Needs {
        let over = |used: u64, cap: u64| {
            if cap == 0 || used <= cap {
                0
            } else {
                used - cap / 100 * LOW_WATER_PERCENT
            }
        };
        let floor = policy.min_free_bytes;
        let free = if policy.short_of_space(free_bytes) {
            (floor + floor / 100 * FREE_HYSTERESIS_PERCENT).saturating_sub(free_bytes)
        } else {
            0
        };
        Needs {
            over_cap: [
                over(kept.output_bytes, policy.output_max_bytes),
                over(kept.input_bytes, policy.input_max_bytes),
            ],
            free,
        }
    }

    fn met(&self) -> bool {
        self.over_cap == [0, 0] && self.free == 0
    }

    /// Why `e` goes, if it does; `on_disk` is what removing it frees.
    fn take(&mut self, e: &Entry, on_disk: u64) -> Option<Reason> {
        let class = usize::from(e.kind == INPUT_KIND);
        let reason = if self.over_cap[class] > 0 {
            Reason::Size
        } else if self.free > 0 {
            Reason::FreeSpace
        } else {
            return None;
        };
        self.over_cap[class] = self.over_cap[class].saturating_sub(e.bytes);
        self.free = self.free.saturating_sub(on_disk);
        Some(reason)
    }
}

/// Deletes (or counts) a batch at a time and keeps the report.
struct Sweep<'c, F> {
    cache: &'c Cache,
    dry_run: bool,
    block_bytes: u64,
    each: F,
    report: GcReport,
    /// What the deletions so far free on disk (whole blocks).
    freed_bytes: u64,
    batch: Vec<Entry>,
}

impl<'c, F: FnMut(&GcDeletion)> Sweep<'c, F> {
    fn new(cache: &'c Cache, dry_run: bool, block_bytes: u64, each: F) -> Self {
        Sweep {
            cache,
            dry_run,
            block_bytes,
            each,
            report: GcReport {
                dry_run,
                ..GcReport::default()
            },
            freed_bytes: 0,
            batch: Vec::with_capacity(db::BATCH),
        }
    }

    fn on_disk(&self, bytes: u64) -> u64 {
        bytes.div_ceil(self.block_bytes) * self.block_bytes
    }

    fn delete(&mut self, e: Entry, reason: Reason) {
        (self.each)(&GcDeletion {
            file: &e.file,
            kind: &e.kind,
            bytes: e.bytes,
            accessed: e.accessed,
            reason,
        });
        let r = &mut self.report;
        r.deleted_objects += 1;
        r.deleted_bytes += e.bytes;
        let by = &mut r.by_reason;
        match reason {
            Reason::Invalidated => by.invalidated.add(e.bytes),
            Reason::Ttl => by.ttl.add(e.bytes),
            Reason::Size => by.size.add(e.bytes),
            Reason::FreeSpace => by.free_space.add(e.bytes),
        }
        self.freed_bytes += self.on_disk(e.bytes);
        if !self.dry_run {
            self.batch.push(e);
        }
    }

    fn flush(&mut self) -> Result<(), CacheError> {
        if !self.batch.is_empty() {
            self.cache.delete_entries(&self.batch)?;
            self.batch.clear();
        }
        Ok(())
    }

    /// The first pass, in key order: invalidated objects and those past
    /// their TTL.
    fn expired_and_past_ttl(&mut self, cutoffs: Cutoffs) -> Result<(), CacheError> {
        let mut after = String::new();
        loop {
            let batch = self
                .cache
                .with_db(|c| db::doomed_after(c, &after, cutoffs))?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            after.clone_from(&last.key);
            for e in batch {
                let reason = if e.expired {
                    Reason::Invalidated
                } else {
                    Reason::Ttl
                };
                self.delete(e, reason);
            }
            self.flush()?;
        }
    }

    /// The second pass, least recently used first, over what the first
    /// keeps, until `needs` are met. Returns what it deleted.
    fn least_recently_used(
        &mut self,
        cutoffs: Cutoffs,
        needs: &mut Needs,
    ) -> Result<Tally, CacheError> {
        let mut walked = Tally::default();
        let mut after = (i64::MIN, String::new());
        while !needs.met() {
            let batch = self
                .cache
                .with_db(|c| db::lru_after(c, (after.0, &after.1), cutoffs))?;
            let Some(last) = batch.last() else { break };
            after = (last.accessed, last.key.clone());
            for e in batch {
                if needs.met() {
                    break;
                }
                if let Some(reason) = needs.take(&e, self.on_disk(e.bytes)) {
                    walked.add(e.bytes);
                    self.delete(e, reason);
                }
            }
            self.flush()?;
        }
        Ok(walked)
    }
}

/// Free space on a filesystem and its block size.
pub(super) struct Space {
    pub free_bytes: u64,
    pub block_bytes: u64,
}

impl Cache {
    /// Free space on the cache's filesystem, in bytes, as an unprivileged
    /// process may use it (statvfs `f_bavail`). Cheap enough to call
    /// every few seconds; compare with [`GcPolicy::short_of_space`].
    pub fn free_bytes(&self) -> Result<u64, CacheError> {
        Ok(self.space()?.free_bytes)
    }

    pub(super) fn space(&self) -> Result<Space, CacheError> {
        let context = || format!("free space of {}", self.dir.display());
        let path = std::ffi::CString::new(self.dir.as_os_str().as_encoded_bytes())
            .map_err(|e| CacheError::io(context(), e.into()))?;
        let mut vfs = std::mem::MaybeUninit::<libc::statvfs>::uninit();
        // SAFETY: `path` is NUL-terminated and `vfs` is written by
        // statvfs before it is read (only when it returns 0).
        let vfs = unsafe {
            if libc::statvfs(path.as_ptr(), vfs.as_mut_ptr()) != 0 {
                return Err(CacheError::io(context(), std::io::Error::last_os_error()));
            }
            vfs.assume_init()
        };
        let block_bytes = (vfs.f_frsize as u64).max(1);
        Ok(Space {
            free_bytes: (vfs.f_bavail as u64).saturating_mul(block_bytes),
            block_bytes,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(output_max_bytes: u64, min_free_bytes: u64) -> GcPolicy {
        GcPolicy {
            output_ttl_seconds: 0,
            input_ttl_seconds: 0,
            output_max_bytes,
            input_max_bytes: 0,
            min_free_bytes,
        }
    }

    fn entry(kind: &str, bytes: u64) -> Entry {
        Entry {
            key: String::new(),
            file: String::new(),
            kind: kind.to_string(),
            bytes,
            created: 0,
            accessed: 0,
            expired: false,
        }
    }

    fn kept(output_bytes: u64) -> ClassTotals {
        ClassTotals {
            output_bytes,
            ..ClassTotals::default()
        }
    }

    #[test]
    fn below_the_floor_gc_frees_up_to_ten_percent_above_it() {
        let mut needs = Needs::new(&policy(0, 1000), &kept(5000), 900);
        assert_eq!(needs.free, 200, "to 1100 from 900");
        assert_eq!(
            needs.take(&entry("segment", 100), 100),
            Some(Reason::FreeSpace)
        );
        assert_eq!(
            needs.take(&entry("input", 100), 100),
            Some(Reason::FreeSpace)
        );
        assert!(needs.met());
        // Above the floor, however little: nothing to do.
        assert!(Needs::new(&policy(0, 1000), &kept(5000), 1000).met());
        assert!(Needs::new(&policy(0, 0), &kept(5000), 0).met(), "no floor");
    }

    #[test]
    fn an_object_over_a_cap_goes_for_size_and_counts_towards_free_space() {
        // 1200 bytes of outputs against a cap of 1000: down to 900.
        let mut needs = Needs::new(&policy(1000, 1000), &kept(1200), 800);
        assert_eq!((needs.over_cap, needs.free), ([300, 0], 300));
        // Inputs are under no cap, but free space is short.
        assert_eq!(
            needs.take(&entry("input", 100), 100),
            Some(Reason::FreeSpace)
        );
        assert_eq!(needs.take(&entry("segment", 300), 4096), Some(Reason::Size));
        assert!(needs.met(), "the segment freed a whole block");
    }
}
