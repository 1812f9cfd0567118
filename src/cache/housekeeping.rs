//! gc on a schedule, for a long-running process (`serve`): every
//! `cache.gc_interval`, and whenever free space on the cache's filesystem
//! falls below `cache.min_free`. When gc cannot bring it back (something
//! else is filling the disk), it backs off rather than empty the cache
//! again and again.

use std::time::{Duration, Instant};

use super::{Cache, GcPolicy};

/// How often free space is looked at when there is a floor.
const SPACE_CHECK: Duration = Duration::from_secs(15);
/// Longest wait between gc runs while the floor stays out of reach.
const MAX_BACKOFF: Duration = Duration::from_secs(600);

impl Cache {
    /// Runs gc as `policy` and `interval` (zero: none) say, forever. Does
    /// nothing, and returns, when neither asks for any.
    pub fn keep_house(&self, policy: &GcPolicy, interval: Duration) {
        if interval.is_zero() && policy.min_free_bytes == 0 {
            return;
        }
        let tick = match (interval.is_zero(), policy.min_free_bytes > 0) {
            (true, _) => SPACE_CHECK,
            (false, true) => interval.min(SPACE_CHECK),
            (false, false) => interval,
        };
        let mut last_gc = Instant::now();
        let mut short_wait = Duration::ZERO;
        loop {
            std::thread::sleep(tick);
            let due = !interval.is_zero() && last_gc.elapsed() >= interval;
            let short = self.short_of_space(policy) && last_gc.elapsed() >= short_wait;
            if !(due || short) {
                continue;
            }
            last_gc = Instant::now();
            self.scheduled_gc(policy, short);
            short_wait = if self.short_of_space(policy) {
                tracing::warn!(
                    "free space is still below cache.min_free after gc; next try in {:?}",
                    (short_wait * 2).clamp(SPACE_CHECK, MAX_BACKOFF)
                );
                (short_wait * 2).clamp(SPACE_CHECK, MAX_BACKOFF)
            } else {
                Duration::ZERO
            };
        }
    }

    fn short_of_space(&self, policy: &GcPolicy) -> bool {
        self.free_bytes()
            .is_ok_and(|free| policy.short_of_space(free))
    }

    fn scheduled_gc(&self, policy: &GcPolicy, short: bool) {
        match self.gc(policy, false) {
            Ok(r) => {
                crate::metrics::metrics().gc_ran(r.deleted_objects, r.deleted_bytes);
                tracing::info!(
                    "gc{}: deleted {} objects ({} bytes)",
                    if short {
                        " (free space below cache.min_free)"
                    } else {
                        ""
                    },
                    r.deleted_objects,
                    r.deleted_bytes
                )
            }
            Err(e) => tracing::warn!("gc: {e}"),
        }
    }
}

/// Makes the calling thread yield to the ones answering requests (on
/// Linux, the nice value is the thread's own).
pub fn lower_priority() {
    // SAFETY: gettid and setpriority take and return plain integers.
    unsafe {
        let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
        libc::setpriority(libc::PRIO_PROCESS, tid, 10);
    }
}
