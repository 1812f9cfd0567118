//! The clock the cache reads, injected so that TTL and eviction tests run
//! without sleeping.

use std::time::{SystemTime, UNIX_EPOCH};

pub trait Clock: Send + Sync {
    /// Seconds since the Unix epoch.
    fn now(&self) -> i64;
}

pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> i64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64)
    }
}

/// A clock that says what it is told (the hidden `--now` flag, for tests).
pub struct FixedClock(pub i64);

impl Clock for FixedClock {
    fn now(&self) -> i64 {
        self.0
    }
}

/// The clock at `now` (Unix seconds) when given, else the system's.
pub fn clock_at(now: Option<i64>) -> std::sync::Arc<dyn Clock> {
    match now {
        Some(t) => std::sync::Arc::new(FixedClock(t)),
        None => std::sync::Arc::new(SystemClock),
    }
}
