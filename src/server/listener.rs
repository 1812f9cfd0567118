//! Accepting connections within limits: at most `max` open at once. When a
//! new client needs room, the connection that has been of no use for the
//! longest (idle, or still sending its header) is closed first, as nginx
//! reuses idle keep-alive connections when it runs out; connections with a
//! request in flight are never closed for it. The accept loop survives
//! running out of file descriptors: it backs off and keeps listening,
//! never going deaf.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::io::ConnState;

/// Waits after an accept that failed for lack of resources, doubling up to
/// the maximum while it goes on failing.
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A resource failure is logged at most this often.
const WARN_INTERVAL: Duration = Duration::from_secs(10);

/// The open connections.
pub struct Connections {
    max: usize,
    open: Mutex<HashMap<u64, Arc<ConnState>>>,
    next_id: AtomicU64,
    /// A connection closed.
    closed: Notify,
}

impl Connections {
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Connections {
            max: max.max(1),
            open: Mutex::default(),
            next_id: AtomicU64::new(0),
            closed: Notify::new(),
        })
    }

    pub fn open_count(&self) -> usize {
        self.open.lock().expect("connections lock").len()
    }

    /// Waits until there is room for one more connection, closing the one
    /// of no use for the longest if that is what it takes. The room must
    /// really be there: a connection asked to close counts until it has.
    async fn room(&self) {
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            if self.open_count() < self.max {
                return;
            }
            self.evict_one();
            // Wait for a connection to end (or, as a fallback, for one to
            // become of no use, when everyone was busy).
            let _ = tokio::time::timeout(Duration::from_millis(100), closed).await;
        }
    }

    /// Asks the connection of no use for the longest to close, unless one
    /// asked is about to; false if none can be asked. One asked that took
    /// a request meanwhile finishes it first, and does not hold up asking
    /// another.
    fn evict_one(&self) -> bool {
        let open = self.open.lock().expect("connections lock");
        if open
            .values()
            .any(|c| c.is_evicted() && c.unproductive_since().is_some())
        {
            return true;
        }
        let victim = open
            .values()
            .filter(|c| !c.is_evicted())
            .filter_map(|c| c.unproductive_since().map(|since| (since, c)))
            .min_by_key(|(since, _)| *since);
        match victim {
            Some((_, c)) => {
                c.evict();
                crate::metrics::metrics().closed_for_room();
                true
            }
            None => false,
        }
    }

    /// When the server stops: asks every connection to close, those
    /// sending a response once it has gone out, and waits at most `limit`
    /// for them to; whether they all did.
    pub async fn drain(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let closed = self.closed.notified();
            tokio::pin!(closed);
            closed.as_mut().enable();
            let open: Vec<Arc<ConnState>> = self
                .open
                .lock()
                .expect("connections lock")
                .values()
                .cloned()
                .collect();
            if open.is_empty() {
                return true;
            }
            // Asked again each time: one idle when asked may have taken a
            // request since, and be free to close only now.
            open.iter().for_each(|c| c.evict());
            let wait = Duration::from_millis(100);
            if tokio::time::timeout_at(deadline.min(tokio::time::Instant::now() + wait), closed)
                .await
                .is_err()
                && tokio::time::Instant::now() >= deadline
            {
                return false;
            }
        }
    }

    fn register(self: &Arc<Self>) -> Registered {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnState::default());
        self.open
            .lock()
            .expect("connections lock")
            .insert(id, Arc::clone(&state));
        Registered {
            connections: Arc::clone(self),
            id,
            state,
        }
    }
}

/// A connection counted among the open ones until dropped.
pub struct Registered {
    connections: Arc<Connections>,
    id: u64,
    pub state: Arc<ConnState>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.connections
            .open
            .lock()
            .expect("connections lock")
            .remove(&self.id);
        self.connections.closed.notify_waiters();
    }
}

/// Accepts connections forever, handing each to `serve` in a task of its
/// own.
pub async fn accept_loop<F, Fut>(listener: TcpListener, connections: Arc<Connections>, serve: F)
where
    F: Fn(TcpStream, std::net::SocketAddr, Registered) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut backoff = BACKOFF_MIN;
    let mut warned: Option<std::time::Instant> = None;
    loop {
        connections.room().await;
        match listener.accept().await {
            Ok((stream, peer)) => {
                backoff = BACKOFF_MIN;
                let registered = connections.register();
                tracing::debug!(
                    "{peer}: accepted, {} of {} connections open",
                    connections.open_count(),
                    connections.max
                );
                tokio::spawn(serve(stream, peer, registered));
            }
            Err(e) if out_of_resources(&e) => {
                crate::metrics::metrics().accept_failed();
                if warned.is_none_or(|t| t.elapsed() >= WARN_INTERVAL) {
                    warned = Some(std::time::Instant::now());
                    tracing::warn!(
                        "accepting a connection: {e}; {} open (logged once every {}s)",
                        connections.open_count(),
                        WARN_INTERVAL.as_secs()
                    );
                }
                connections.evict_one();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            // The client gave up before we accepted it, and the like.
            Err(e) => tracing::debug!("accepting a connection: {e}"),
        }
    }
}

/// Failures that end when connections close or memory frees up.
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// The default cap on connections: what the file descriptor limit allows,
/// two descriptors a connection (its socket, and a cache file while its
/// response goes out), after those that packaging and the cache need; and
/// at most this many, since each may hold up to about 130 kB (a header
/// buffer, or a response chunk) while it waits on its client.
pub const MAX_DEFAULT_CONNECTIONS: u64 = 4_096;

/// The default cap on connections (see [`MAX_DEFAULT_CONNECTIONS`]).
pub fn default_max_connections(fd_limit: u64, workers: usize) -> usize {
    let reserved = 64 + 4 * workers as u64;
    (fd_limit.saturating_sub(reserved) / 2).clamp(16, MAX_DEFAULT_CONNECTIONS) as usize
}

/// Raises the soft file descriptor limit to the hard one, as servers do;
/// returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write `limit`.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_cap_leaves_descriptors_for_the_work() {
        assert_eq!(default_max_connections(1024, 32), (1024 - 192) / 2);
        assert_eq!(default_max_connections(100, 32), 16);
        assert_eq!(default_max_connections(1 << 20, 32), 4_096);
    }
}
