//! `casterpak serve`: the HTTP origin. tiny_http parses requests; worker
//! threads share one server and hand each request to the [`Origin`], which
//! answers from the cache or packages on a miss.
//!
//! A stalled client cannot hold a worker for long: every socket inherits a
//! send timeout from the listening socket (`server.send_timeout`), requests
//! pipelined behind a timed-out response are dropped, and there are many
//! workers (`server.workers`).

mod http;

pub use http::http_date;

use std::collections::HashMap;
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::net::{SocketAddr, TcpListener};
use std::panic::AssertUnwindSafe;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use tiny_http::{Header, Method, Request, Response, StatusCode};

use crate::cache::{Body, Clock};
use crate::commands::origin::{Answer, Origin, OriginError};
use crate::config::Config;
use http::RangeRequest;

/// Last-access times and counters reach SQLite this often.
const FLUSH_INTERVAL: Duration = Duration::from_secs(2);

#[derive(clap::Args)]
pub struct Args {
    /// Address and port to listen on (server.listen); port 0 picks a free one.
    #[arg(long, value_name = "ADDR:PORT")]
    listen: Option<String>,
    /// Worker threads (server.workers).
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
}

/// glibc gives each thread that allocates its own heap arena (up to 8 per
/// core). A cold segment allocates a few megabytes; in a fresh arena every
/// page of that is a first-touch fault, which measured 5.8 ms per 6 s
/// 1080p segment against 1.7 ms with the workers sharing warm arenas.
fn share_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the
    // worker threads start.
    unsafe {
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

pub fn run(args: Args, mut config: Config, clock: Arc<dyn Clock>) -> anyhow::Result<ExitCode> {
    share_malloc_arenas();
    if let Some(listen) = args.listen {
        config.server.listen = listen;
    }
    if let Some(workers) = args.workers {
        config.server.workers = workers.max(1);
    }
    let cache = crate::commands::open_cache(&config, clock)?;
    let removed = cache.reconcile().context("reconciling the cache")?;
    if removed > 0 {
        tracing::info!("removed {removed} leftovers of interrupted runs from the cache");
    }
    let listener = TcpListener::bind(&config.server.listen)
        .with_context(|| format!("listening on {}", config.server.listen))?;
    // Accepted sockets inherit these from the listener (Linux): a send
    // timeout for stalled clients, and no Nagle delay, which would hold the
    // body of a small response behind its headers for up to 40 ms.
    let socket = socket2::SockRef::from(&listener);
    socket
        .set_write_timeout(Some(Duration::from_secs(config.server.send_timeout.max(1))))
        .context("setting the send timeout")?;
    socket
        .set_tcp_nodelay(true)
        .context("setting TCP_NODELAY")?;
    let addr = listener.local_addr()?;
    let server =
        tiny_http::Server::from_listener(listener, None).map_err(|e| anyhow::anyhow!("{e}"))?;
    let workers = config.server.workers;
    let root = config.media.root.display().to_string();
    let prefix = config.server.prefix.clone();
    let origin = Arc::new(Origin::new(config, cache));
    let dead = DeadConnections::default();
    super::print(&format!(
        "casterpak serving {root} at http://{addr}{prefix}\n"
    ))?;

    let flusher = Arc::clone(&origin);
    std::thread::spawn(move || loop {
        std::thread::sleep(FLUSH_INTERVAL);
        if let Err(e) = flusher.cache().flush_use() {
            tracing::warn!("recording cache use: {e}");
        }
    });
    let gc_interval = origin.config().cache.gc_interval.0;
    if gc_interval > 0 {
        let collector = Arc::clone(&origin);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_secs(gc_interval));
            let policy = super::gc::policy(collector.config());
            match collector.cache().gc(&policy, false) {
                Ok(r) => tracing::info!(
                    "gc: deleted {} objects ({} bytes)",
                    r.deleted.len(),
                    r.deleted_bytes
                ),
                Err(e) => tracing::warn!("gc: {e}"),
            }
        });
    }
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                match server.recv() {
                    Ok(request) => handle(&origin, &dead, request),
                    Err(e) => {
                        // tiny_http stops accepting after an accept error (say,
                        // out of file descriptors): exit so that a supervisor
                        // restarts us rather than hang with a dead listener.
                        tracing::error!("accepting connections failed, exiting: {e}");
                        std::process::exit(2);
                    }
                }
            });
        }
    });
    Ok(ExitCode::SUCCESS)
}

/// Connections whose client stopped reading. tiny_http goes on reading
/// requests pipelined on such a connection, and each response would wait
/// out the send timeout again; they are dropped unanswered instead.
#[derive(Default)]
struct DeadConnections(Mutex<HashMap<SocketAddr, Instant>>);

/// How long a connection stays marked: long enough for the requests it
/// pipelined to be dropped, short because a stalled client that finally
/// closes frees its address for reuse.
const DEAD_FOR: Duration = Duration::from_secs(10);

impl DeadConnections {
    /// Checked on every request: a lookup, no sweep.
    fn contains(&self, addr: Option<&SocketAddr>) -> bool {
        let Some(addr) = addr else { return false };
        let dead = self.0.lock().expect("dead connections lock");
        dead.get(addr)
            .is_some_and(|since| since.elapsed() < DEAD_FOR)
    }

    /// Expired entries are swept here, on the rare stalled write.
    fn insert(&self, addr: Option<&SocketAddr>) {
        if let Some(addr) = addr {
            let mut dead = self.0.lock().expect("dead connections lock");
            dead.retain(|_, since| since.elapsed() < DEAD_FOR);
            dead.insert(*addr, Instant::now());
        }
    }
}

fn handle(origin: &Origin, dead: &DeadConnections, request: Request) {
    let started = Instant::now();
    let peer = request.remote_addr().copied();
    if dead.contains(peer.as_ref()) {
        // Taking the writer and dropping it answers nothing (dropping the
        // request itself would write a 500).
        drop(request.into_writer());
        return;
    }
    let method = request.method().clone();
    let url = request.url().to_string();
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let header = |name: &str| {
        let field = |h: &&Header| h.field.as_str().as_str().eq_ignore_ascii_case(name);
        request
            .headers()
            .iter()
            .find(field)
            .map(|h| h.value.as_str().to_string())
    };
    let (response, cache_state) = match method {
        Method::Get | Method::Head => {
            let answer = std::panic::catch_unwind(AssertUnwindSafe(|| origin.answer(path)))
                .unwrap_or_else(|_| Err(OriginError::Internal("internal error (panic)".into())));
            match answer {
                Ok(answer) => {
                    let state = answer.object.state.as_str();
                    (object_response(origin, answer, &header), state)
                }
                Err(e) => (error_response(origin, &e), "-"),
            }
        }
        Method::Options => (preflight_response(origin), "-"),
        _ => (error_response(origin, &OriginError::MethodNotAllowed), "-"),
    };
    let status = response.status_code().0;
    let bytes = if method == Method::Head {
        0
    } else {
        response.data_length().unwrap_or(0)
    };
    let result = request.respond(response);
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::info!(target: "access", "{method} {url} {status} {bytes} {ms:.1}ms {cache_state}");
    if let Err(e) = result {
        tracing::debug!("{url}: sending the response: {e}");
        if matches!(
            e.kind(),
            // Only a stalled reader: after a reset or a closed pipe, further
            // writes on that socket fail at once, and the address may be
            // reused by a new connection right away.
            ErrorKind::WouldBlock | ErrorKind::TimedOut
        ) {
            dead.insert(peer.as_ref());
        }
    }
}

type Reply = Response<Box<dyn Read + Send>>;

fn object_response(
    origin: &Origin,
    answer: Answer,
    header: &dyn Fn(&str) -> Option<String>,
) -> Reply {
    let Answer {
        object,
        content_type,
        last_modified,
    } = answer;
    let mut headers = common_headers(origin);
    headers.push(make_header("Content-Type", content_type));
    headers.push(make_header("ETag", &object.etag));
    headers.push(make_header(
        "Last-Modified",
        &http::http_date(last_modified),
    ));
    headers.push(make_header(
        "Cache-Control",
        &format!("public, max-age={}", origin.config().server.max_age),
    ));
    headers.push(make_header("Accept-Ranges", "bytes"));
    headers.push(make_header(
        "X-Cache",
        &object.state.as_str().to_ascii_uppercase(),
    ));
    let len = object.len;
    if http::not_modified(
        header("If-None-Match").as_deref(),
        header("If-Modified-Since").as_deref(),
        &object.etag,
        last_modified,
    ) {
        return reply(304, headers, Box::new(std::io::empty()), len);
    }
    let range = match header("If-Range") {
        Some(tag) if tag != object.etag => RangeRequest::Whole,
        _ => http::parse_range(header("Range").as_deref(), len),
    };
    let (status, range) = match range {
        RangeRequest::Whole => (200, 0..len),
        RangeRequest::Partial(r) => {
            headers.push(make_header(
                "Content-Range",
                &format!("bytes {}-{}/{len}", r.start, r.end - 1),
            ));
            (206, r)
        }
        RangeRequest::Unsatisfiable => {
            headers.push(make_header("Content-Range", &format!("bytes */{len}")));
            return reply(416, headers, Box::new(std::io::empty()), 0);
        }
    };
    let body: Box<dyn Read + Send> = match object.body {
        Body::File(mut file) => match file.seek(SeekFrom::Start(range.start)) {
            Ok(_) => Box::new(file.take(range.end - range.start)),
            Err(e) => {
                return error_response(
                    origin,
                    &OriginError::Internal(format!("reading the cache: {e}")),
                )
            }
        },
        Body::Bytes(bytes) => Box::new(SharedSlice {
            bytes,
            pos: range.start as usize,
            end: range.end as usize,
        }),
    };
    reply(status, headers, body, range.end - range.start)
}

fn error_response(origin: &Origin, e: &OriginError) -> Reply {
    if e.status() >= 500 {
        tracing::error!("{e}");
    }
    let mut headers = common_headers(origin);
    headers.push(make_header("Content-Type", "text/plain; charset=utf-8"));
    headers.push(make_header("Cache-Control", "no-store"));
    if matches!(e, OriginError::MethodNotAllowed) {
        headers.push(make_header("Allow", "GET, HEAD, OPTIONS"));
    }
    let body = format!("{e}\n").into_bytes();
    let len = body.len() as u64;
    reply(
        e.status(),
        headers,
        Box::new(std::io::Cursor::new(body)),
        len,
    )
}

/// The answer to a CORS preflight (Fetch standard, CORS protocol).
fn preflight_response(origin: &Origin) -> Reply {
    let mut headers = common_headers(origin);
    headers.push(make_header(
        "Access-Control-Allow-Methods",
        "GET, HEAD, OPTIONS",
    ));
    headers.push(make_header(
        "Access-Control-Allow-Headers",
        "Range, If-None-Match, If-Modified-Since",
    ));
    headers.push(make_header("Access-Control-Max-Age", "86400"));
    reply(204, headers, Box::new(std::io::empty()), 0)
}

fn common_headers(origin: &Origin) -> Vec<Header> {
    let cors = &origin.config().server.cors_origin;
    if cors.is_empty() {
        return Vec::new();
    }
    vec![
        make_header("Access-Control-Allow-Origin", cors),
        make_header(
            "Access-Control-Expose-Headers",
            "Content-Length, Content-Range, ETag",
        ),
    ]
}

fn reply(status: u16, headers: Vec<Header>, body: Box<dyn Read + Send>, len: u64) -> Reply {
    // A known length, never chunked: tiny_http chunks above 32 KiB otherwise.
    Response::new(StatusCode(status), headers, body, Some(len as usize), None)
        .with_chunked_threshold(usize::MAX)
}

fn make_header(name: &str, value: &str) -> Header {
    Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("valid header")
}

/// A part of bytes that several responses share (waiters of one miss).
struct SharedSlice {
    bytes: Arc<Vec<u8>>,
    pos: usize,
    end: usize,
}

impl Read for SharedSlice {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = buf.len().min(self.end - self.pos);
        buf[..n].copy_from_slice(&self.bytes[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
