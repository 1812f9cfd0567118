//! What `casterpak serve` did since it started, for its `/metrics`
//! endpoint in the Prometheus text format (0.0.4), and what its cache
//! holds. Counters are atomics bumped where things happen (the server, the
//! cache's housekeeping); the cache's totals are read from its database
//! when scraped.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use crate::cache::Cache;

pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Upper bounds of the packaging-time buckets, seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

#[derive(Default)]
pub struct Metrics {
    /// By (route, status).
    requests: Mutex<BTreeMap<(&'static str, u16), u64>>,
    hits: AtomicU64,
    misses: AtomicU64,
    shared: AtomicU64,
    /// Objects made for a request: counts per bucket (and one past the
    /// last), the sum in microseconds.
    made: [AtomicU64; BUCKETS.len() + 1],
    made_micros: AtomicU64,
    bytes_sent: AtomicU64,
    remote_errors: AtomicU64,
    gc_runs: AtomicU64,
    gc_deleted_objects: AtomicU64,
    gc_deleted_bytes: AtomicU64,
    connections_closed_for_room: AtomicU64,
    accept_failures: AtomicU64,
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static METRICS: OnceLock<Metrics> = OnceLock::new();
    METRICS.get_or_init(Metrics::default)
}

impl Metrics {
    /// A request answered: its route, status and cache outcome (`hit`,
    /// `miss`, `shared`, or `-`).
    pub fn answered(&self, route: &'static str, status: u16, cache: &str) {
        *self
            .requests
            .lock()
            .expect("metrics lock")
            .entry((route, status))
            .or_default() += 1;
        match cache {
            "hit" => &self.hits,
            "miss" => &self.misses,
            "shared" => &self.shared,
            _ => return,
        }
        .fetch_add(1, Ordering::Relaxed);
    }

    /// An object made for a request, in `took`.
    pub fn made(&self, took: Duration) {
        let seconds = took.as_secs_f64();
        let bucket = BUCKETS
            .iter()
            .position(|&b| seconds <= b)
            .unwrap_or(BUCKETS.len());
        self.made[bucket].fetch_add(1, Ordering::Relaxed);
        self.made_micros
            .fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn sent(&self, bytes: u64) {
        self.bytes_sent.fetch_add(bytes, Ordering::Relaxed);
    }

    pub fn remote_error(&self) {
        self.remote_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub fn gc_ran(&self, deleted_objects: u64, deleted_bytes: u64) {
        self.gc_runs.fetch_add(1, Ordering::Relaxed);
        self.gc_deleted_objects
            .fetch_add(deleted_objects, Ordering::Relaxed);
        self.gc_deleted_bytes
            .fetch_add(deleted_bytes, Ordering::Relaxed);
    }

    pub fn closed_for_room(&self) {
        self.connections_closed_for_room
            .fetch_add(1, Ordering::Relaxed);
    }

    pub fn accept_failed(&self) {
        self.accept_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// The exposition: these counters, `open_connections`, and the cache's
    /// totals (an error reading them is left out, and said in a comment).
    pub fn render(&self, open_connections: usize, cache: &Cache) -> String {
        let mut out = String::new();
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        family(
            &mut out,
            "casterpak_requests_total",
            "counter",
            "Requests answered, by route and status.",
        );
        for ((route, status), n) in self.requests.lock().expect("metrics lock").iter() {
            let _ = writeln!(
                out,
                "casterpak_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}"
            );
        }
        family(&mut out, "casterpak_cache_requests_total", "counter", "Answers of playlists and segments by where they came from: the cache (hit), made for this request (miss), or made for another request it waited for (shared).");
        for (outcome, c) in [
            ("hit", &self.hits),
            ("miss", &self.misses),
            ("shared", &self.shared),
        ] {
            let _ = writeln!(
                out,
                "casterpak_cache_requests_total{{outcome=\"{outcome}\"}} {}",
                get(c)
            );
        }
        family(
            &mut out,
            "casterpak_packaging_seconds",
            "histogram",
            "Time to make an object for a request (a miss), until it could be answered.",
        );
        let mut cumulative = 0;
        for (i, bound) in BUCKETS.iter().enumerate() {
            cumulative += get(&self.made[i]);
            let _ = writeln!(
                out,
                "casterpak_packaging_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += get(&self.made[BUCKETS.len()]);
        let _ = writeln!(
            out,
            "casterpak_packaging_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            out,
            "casterpak_packaging_seconds_sum {}",
            get(&self.made_micros) as f64 / 1e6
        );
        let _ = writeln!(out, "casterpak_packaging_seconds_count {cumulative}");
        simple(
            &mut out,
            "casterpak_sent_bytes_total",
            "counter",
            "Response body bytes sent.",
            get(&self.bytes_sent),
        );
        simple(
            &mut out,
            "casterpak_remote_errors_total",
            "counter",
            "Requests that failed because a remote store did (502, 504).",
            get(&self.remote_errors),
        );
        simple(
            &mut out,
            "casterpak_gc_runs_total",
            "counter",
            "Garbage collections run by this process (server.gc_interval, or low free space).",
            get(&self.gc_runs),
        );
        simple(
            &mut out,
            "casterpak_gc_deleted_objects_total",
            "counter",
            "Objects deleted by those collections.",
            get(&self.gc_deleted_objects),
        );
        simple(
            &mut out,
            "casterpak_gc_deleted_bytes_total",
            "counter",
            "Bytes freed by those collections.",
            get(&self.gc_deleted_bytes),
        );
        simple(
            &mut out,
            "casterpak_connections_open",
            "gauge",
            "Client connections open.",
            open_connections as u64,
        );
        simple(
            &mut out,
            "casterpak_connections_closed_for_room_total",
            "counter",
            "Idle connections closed to make room for new ones (server.max_connections).",
            get(&self.connections_closed_for_room),
        );
        simple(
            &mut out,
            "casterpak_accept_failures_total",
            "counter",
            "Connections that could not be accepted (out of descriptors or memory).",
            get(&self.accept_failures),
        );
        self.render_cache(&mut out, cache);
        out
    }

    fn render_cache(&self, out: &mut String, cache: &Cache) {
        let (by_kind, fetched) = match cache.totals() {
            Ok(totals) => totals,
            Err(e) => {
                let _ = writeln!(
                    out,
                    "# the cache's totals could not be read: {}",
                    e.to_string().replace('\n', " ")
                );
                return;
            }
        };
        family(
            out,
            "casterpak_cache_objects",
            "gauge",
            "Objects in the cache, by kind.",
        );
        for (kind, k) in &by_kind {
            let _ = writeln!(
                out,
                "casterpak_cache_objects{{kind=\"{}\"}} {}",
                label(kind),
                k.objects
            );
        }
        family(
            out,
            "casterpak_cache_bytes",
            "gauge",
            "Bytes in the cache, by kind.",
        );
        for (kind, k) in &by_kind {
            let _ = writeln!(
                out,
                "casterpak_cache_bytes{{kind=\"{}\"}} {}",
                label(kind),
                k.bytes
            );
        }
        family(
            out,
            "casterpak_remote_fetched_bytes_total",
            "counter",
            "Bytes fetched from each remote store, since the cache was made.",
        );
        for f in &fetched {
            let _ = writeln!(
                out,
                "casterpak_remote_fetched_bytes_total{{backend=\"{}\"}} {}",
                label(&f.backend),
                f.bytes
            );
        }
        family(
            out,
            "casterpak_remote_fetches_total",
            "counter",
            "Requests made to each remote store, since the cache was made.",
        );
        for f in &fetched {
            let _ = writeln!(
                out,
                "casterpak_remote_fetches_total{{backend=\"{}\"}} {}",
                label(&f.backend),
                f.requests
            );
        }
    }
}

fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

fn simple(out: &mut String, name: &str, kind: &str, help: &str, value: u64) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A label value as the format wants it: backslash, quote and newline
/// escaped.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
