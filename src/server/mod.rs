//! The HTTP origin that `casterpak serve` runs.
//!
//! HTTP/1.1 by hyper on a small tokio runtime: a few threads carry every
//! connection, however many there are, and each request's work (a cache
//! lookup, or packaging on a miss) runs on a bounded pool of blocking
//! threads (`server.workers`). The front door keeps the limits of a server
//! facing the internet: request line and header sizes, a header deadline,
//! idle and send timeouts ([`io`]), a connection cap that closes idle
//! connections first, and an accept loop that survives running out of
//! descriptors ([`listener`]). The origin behind it ([`crate::origin`])
//! answers from the cache or packages on a miss.

mod body;
mod geo;
mod io;
mod listener;
mod prefetch;
mod respond;
mod semantics;

pub use semantics::{parse_range, RangeRequest};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Semaphore;

use crate::origin::Origin;
use io::{Guarded, Timeouts};
use listener::{Connections, Registered};
use respond::Shared;

/// Last-access times and counters reach SQLite this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

/// Connections open at once on `server.admin_listen`, at most (probes and
/// scrapers).
const ADMIN_CONNECTIONS: usize = 64;

/// What a listener answers: the media URLs, `/healthz` and `/metrics`, or
/// both (`server.admin_listen` unset).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Media,
    Admin,
    Both,
}

/// Threads that carry the connections (the blocking pool does the work).
const MAX_ASYNC_THREADS: usize = 4;

/// Blocking threads beyond `server.workers`: they read cache files for
/// responses going out, so that those never wait for packaging.
const READER_THREADS: usize = 16;

/// Request header buffer: the request line and header fields together.
const MAX_HEAD_BYTES: usize = respond::MAX_TARGET_BYTES + respond::MAX_HEADER_BYTES;

/// glibc gives each thread that allocates its own heap arena (up to 8 per
/// core). A cold segment allocates a few megabytes; in a fresh arena every
/// page of that is a first-touch fault, which measured 5.8 ms per 6 s
/// 1080p segment against 1.7 ms with the workers sharing warm arenas. For
/// the same reason, buffers of a segment's size (up to 32 MB) come from
/// the heap rather than from mmap, and the heap keeps up to 32 MB free at
/// its top: each mmap or trimmed page would be faulted in again on the next
/// segment (a 4 MB segment answered from memory measured 8-10 ms against
/// 2.5 ms with warm pages).
fn share_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets allocator parameters; called before the
    // worker threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 32 << 20);
    }
}

/// Serves `origin` at `server.listen` until the process ends; calls
/// `listening` with the address (port 0 picks one) and the connection cap
/// once it accepts connections.
pub fn run(
    origin: Arc<Origin>,
    reread: impl Fn() -> anyhow::Result<crate::config::Config> + Send + Sync + 'static,
    listening: impl FnOnce(SocketAddr, usize) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    share_malloc_arenas();
    let config = origin.config();
    let fd_limit = listener::raise_fd_limit();
    let max_connections = match config.server.max_connections {
        0 => listener::default_max_connections(fd_limit, config.server.workers),
        n => n,
    };
    let workers = config.server.workers;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(
            std::thread::available_parallelism().map_or(2, |n| n.get().min(MAX_ASYNC_THREADS)),
        )
        .max_blocking_threads(workers + READER_THREADS)
        // Blocking threads stay once started, so that a low thread limit
        // met later cannot leave the pool with none.
        .thread_keep_alive(Duration::from_secs(24 * 3600))
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let listener = runtime
        .block_on(async { tokio::net::TcpListener::bind(&config.server.listen).await })
        .with_context(|| format!("listening on {}", config.server.listen))?;
    let addr = listener.local_addr()?;
    let admin = match config.server.admin_listen.as_str() {
        "" => None,
        at => Some(
            runtime
                .block_on(async { tokio::net::TcpListener::bind(at).await })
                .with_context(|| format!("listening on {at} (server.admin_listen)"))?,
        ),
    };
    start_background_jobs(&origin);
    runtime.block_on(prestart_blocking_threads(workers + READER_THREADS));
    let signals = {
        let _runtime = runtime.enter();
        StopSignals::install()
    };
    runtime.spawn(reload_on_sighup(Arc::clone(&origin), Arc::new(reread)));
    listening(addr, max_connections)?;
    let server = &origin.config().server;
    let timeouts = Timeouts {
        keepalive: server.keepalive_timeout.as_std(),
        header: server.header_timeout.as_std(),
        send: server.send_timeout.as_std().max(Duration::from_secs(1)),
    };
    let work = Arc::new(Semaphore::new(workers));
    let connections = Connections::new(max_connections);
    let tokens = match config.tokens.key.as_str() {
        "" => None,
        key => Some(crate::tokens::Signer::new(crate::tokens::read_key(
            "tokens.key",
            key,
        )?)),
    };
    if tokens.is_none() && config.protection.method != crate::config::ProtectionMethod::None {
        tracing::warn!(
            "[protection] without tokens.key: keys are answered to anyone who asks for them"
        );
    }
    let geo = geo::Geo::open(&config.preroll)?;
    let shared = Arc::new(Shared {
        geo,
        tokens,
        origin: Arc::clone(&origin),
        prefetch: prefetch::Prefetcher::start(Arc::clone(&origin), Arc::clone(&work)),
        work,
        connections: Arc::clone(&connections),
    });
    let prefetcher = Arc::clone(&shared);
    let draining = Arc::clone(&connections);
    let admin_connections = Connections::new(ADMIN_CONNECTIONS);
    let admin_draining = Arc::clone(&admin_connections);
    let admin_shared = Arc::clone(&shared);
    let media_side = if admin.is_some() {
        Side::Media
    } else {
        Side::Both
    };
    let stopped_by = runtime.block_on(async {
        let admin_loop = async {
            match admin {
                Some(admin) => {
                    listener::accept_loop(
                        admin,
                        admin_connections,
                        move |stream, peer, registered| {
                            let shared = Arc::clone(&admin_shared);
                            serve_connection(
                                stream,
                                peer,
                                registered,
                                shared,
                                timeouts,
                                Side::Admin,
                            )
                        },
                    )
                    .await
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            () = listener::accept_loop(
                listener,
                connections,
                move |stream, peer, registered| {
                    let shared = Arc::clone(&shared);
                    serve_connection(stream, peer, registered, shared, timeouts, media_side)
                },
            ) => None,
            () = admin_loop => None,
            signal = StopSignals::recv(signals) => Some(signal),
        }
    });
    if let Some(signal) = stopped_by {
        tracing::info!("{signal}: no new connections; finishing the answers in flight");
        // Responses going out finish (a player's segment download
        // completes); idle connections close at once.
        runtime.block_on(admin_draining.drain(Duration::from_secs(1)));
        if !runtime.block_on(draining.drain(STOP_DRAIN)) {
            tracing::warn!(
                "{} connections still open after {}s: cut off",
                draining.open_count(),
                STOP_DRAIN.as_secs()
            );
        }
    }
    // What is left of the answers (they may read indexes or record use),
    // then what they left in memory.
    runtime.shutdown_timeout(STOP_GRACE);
    if let Some(prefetch) = &prefetcher.prefetch {
        prefetch.stop();
    }
    if let Err(e) = origin.finish(STOP_STORE_WAIT) {
        tracing::warn!("recording cache use: {e}");
    }
    Ok(())
}

/// How long a stopping server waits for the indexes it read to be stored.
const STOP_STORE_WAIT: Duration = Duration::from_secs(30);

/// Responses going out when the server stops get this long to finish
/// (a 4 MB segment to a client at 2 Mbit/s takes 16 s) ...
const STOP_DRAIN: Duration = Duration::from_secs(30);
/// ... and the work behind them this long after that.
const STOP_GRACE: Duration = Duration::from_secs(2);

/// SIGTERM and SIGINT, handled from before the server says it listens: the
/// server then stops accepting connections and stores what it holds in
/// memory before it exits.
struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    /// Within the runtime; `None` (and a warning) if they cannot be had.
    fn install() -> Option<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(term), Ok(int)) => Some(StopSignals { term, int }),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!(
                    "cannot handle SIGTERM and SIGINT: {e}; they end the process at once"
                );
                None
            }
        }
    }

    async fn recv(signals: Option<StopSignals>) -> &'static str {
        let Some(mut s) = signals else {
            return std::future::pending().await;
        };
        tokio::select! {
            _ = s.term.recv() => "SIGTERM",
            _ = s.int.recv() => "SIGINT",
        }
    }
}

/// On each SIGHUP: the configuration read again, and what a running server
/// can take of it taken (see [`crate::config::Config::reloaded`]); the
/// keys that need a restart are named. A configuration that does not load
/// changes nothing.
async fn reload_on_sighup(
    origin: Arc<Origin>,
    reread: Arc<dyn Fn() -> anyhow::Result<crate::config::Config> + Send + Sync>,
) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("cannot handle SIGHUP: {e}; it ends the process");
            return;
        }
    };
    while hangups.recv().await.is_some() {
        let (origin, reread) = (Arc::clone(&origin), Arc::clone(&reread));
        let reloaded = tokio::task::spawn_blocking(move || match reread() {
            Err(e) => tracing::error!(
                "SIGHUP: the configuration does not load, the one in use stays: {e:#}"
            ),
            Ok(config) => {
                let (taken, left) = origin.reload(&config);
                let list = |keys: &[String]| match keys {
                    [] => "none".to_string(),
                    keys => keys.join(", "),
                };
                tracing::info!(
                    "SIGHUP: configuration re-read; changed now: {}; changed, need a restart: {}",
                    list(&taken),
                    list(&left)
                );
            }
        });
        let _ = reloaded.await;
    }
}

/// Starts the blocking threads the pool may have, now, while thread limits
/// allow; they then stay (see `thread_keep_alive`). Tasks that overlap make
/// the pool start a thread each; under a low limit fewer start, and the
/// pool queues work on those (it never waits on all of them).
async fn prestart_blocking_threads(count: usize) {
    let started: Vec<_> = (0..count)
        .map(|_| tokio::task::spawn_blocking(|| std::thread::sleep(Duration::from_millis(20))))
        .collect();
    for handle in started {
        let _ = handle.await;
    }
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    registered: Registered,
    shared: Arc<Shared>,
    timeouts: Timeouts,
    side: Side,
) {
    // No Nagle delay: it would hold the body of a small response behind
    // its headers for up to 40 ms.
    let _ = stream.set_nodelay(true);
    let state = Arc::clone(&registered.state);
    let io = TokioIo::new(Guarded::new(stream, Arc::clone(&state), timeouts));
    let service_state = Arc::clone(&state);
    let service = service_fn(move |request| {
        respond::handle(
            request,
            Arc::clone(&shared),
            Arc::clone(&service_state),
            peer,
            side,
        )
    });
    let connection = http1::Builder::new()
        .max_buf_size(MAX_HEAD_BYTES.max(8192) * 2)
        .max_header_size(MAX_HEAD_BYTES)
        .max_headers(respond::MAX_HEADER_FIELDS)
        // Our own deadlines (`io`) tell idle from a header in progress.
        .header_read_timeout(None)
        // A client whose side closes is gone: its request is dropped (and
        // logged with 499) rather than answered into the void.
        .half_close(false)
        .serve_connection(io, service);
    // In a block of its own, so that the socket is closed before the slot
    // is given up.
    {
        tokio::pin!(connection);
        let mut closing = false;
        loop {
            tokio::select! {
                result = &mut connection => {
                    if let Err(e) = result {
                        tracing::debug!("{peer}: {e}");
                    }
                    break;
                }
                () = state.evicted(), if !closing => {
                    if state.unproductive_since().is_some() {
                        tracing::debug!("{peer}: closed to make room");
                        break;
                    }
                    // A response is going out: finish it, then close.
                    closing = true;
                    connection.as_mut().graceful_shutdown();
                }
            }
        }
    }
    drop(registered);
}

/// Flushing use records to SQLite, reconciling the cache once, and gc
/// every `cache.gc_interval` or whenever free space falls below
/// `cache.min_free`. The cache work runs at a lower priority than answers.
fn start_background_jobs(origin: &Arc<Origin>) {
    let flusher = Arc::clone(origin);
    std::thread::spawn(move || loop {
        std::thread::sleep(FLUSH_INTERVAL);
        if let Err(e) = flusher.flush_use() {
            tracing::warn!("recording cache use: {e}");
        }
    });
    let reconciler = Arc::clone(origin);
    std::thread::spawn(move || {
        crate::cache::housekeeping::lower_priority();
        match reconciler.cache().reconcile() {
            Ok(0) => {}
            Ok(removed) => {
                tracing::info!("removed {removed} leftovers of interrupted runs from the cache")
            }
            Err(e) => tracing::warn!("reconciling the cache: {e}"),
        }
    });
    let collector = Arc::clone(origin);
    std::thread::spawn(move || {
        crate::cache::housekeeping::lower_priority();
        let config = collector.config();
        let policy = config.gc_policy();
        collector
            .cache()
            .keep_house(&policy, config.cache.gc_interval.as_std());
    });
}
