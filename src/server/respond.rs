//! One request in, one response out: the limits a request must keep, the
//! statuses the origin's errors map to, and the headers a CDN origin needs
//! (RFC 9110: ranges, validators, CORS). Nothing of a request body is ever
//! read or allocated: a request that declares one is refused.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use tokio::sync::Semaphore;
use tracing::Instrument;

use super::body::{AccessLog, Record, Source, TrackedBody};
use super::io::ConnState;
use super::semantics::{not_modified, parse_range, RangeRequest};
use crate::cache::State;
use crate::dates::http_date;
use crate::metrics::metrics;
use crate::origin::{
    Answer, Origin, OriginError, JSON_KEY_TYPE, KEY_TYPE, MPD_TYPE, PLAYLIST_TYPE,
};
use crate::packager::url::percent_decoded;
use sha2::Digest;

/// Longest request target we answer; longer gets 414 (nginx's default
/// `large_client_header_buffers` is 8 KiB a line too).
pub const MAX_TARGET_BYTES: usize = 8 << 10;
/// Most bytes of header fields a request may send; more gets 431.
pub const MAX_HEADER_BYTES: usize = 32 << 10;
/// Most header fields a request may send (hyper answers 431 past it).
pub const MAX_HEADER_FIELDS: usize = 100;
/// Largest body a key's license request may declare (it is not read).
const MAX_LICENSE_REQUEST_BYTES: u64 = 4096;

/// What every request handler shares.
pub struct Shared {
    pub origin: Arc<Origin>,
    /// Slots for work on blocking threads (packaging, cache lookups):
    /// `server.workers`.
    pub work: Arc<Semaphore>,
    /// Makes segments ahead of players (`server.prefetch`).
    pub prefetch: Option<super::prefetch::Prefetcher>,
    /// The open connections, for `/metrics`.
    pub connections: Arc<super::listener::Connections>,
    /// Checks signed URLs, when `tokens.key` is set.
    pub tokens: Option<crate::tokens::Signer>,
    /// Tells the viewer's country (pre-rolls).
    pub geo: super::geo::Geo,
}

/// What a response is before it becomes one.
struct Reply {
    status: StatusCode,
    headers: HeaderMap,
    source: Source,
    /// Value of Content-Length (for HEAD, of the body GET would get).
    len: u64,
    cache: &'static str,
}

impl Reply {
    fn new(status: u16, headers: HeaderMap) -> Reply {
        Reply {
            status: StatusCode::from_u16(status).expect("a valid status"),
            headers,
            source: Source::Empty,
            len: 0,
            cache: "-",
        }
    }
}

pub async fn handle(
    request: Request<hyper::body::Incoming>,
    shared: Arc<Shared>,
    conn: Arc<ConnState>,
    peer: SocketAddr,
    side: super::Side,
) -> Result<Response<TrackedBody>, Infallible> {
    let in_flight = conn.start_request();
    let id = request_id(request.headers());
    // Every log line of the request names it.
    let span = tracing::info_span!("request", id = %id);
    // Logged as 499 if the client goes away before the answer is ready.
    let config = shared.origin.config();
    let secret = shared.tokens.as_ref().map(|_| config.tokens.param.as_str());
    let log = AccessLog::new(span.clone(), peer, request.method(), request.uri(), secret);
    let mut unanswered = Unanswered(Some(log));
    // The body, if any, is dropped unread: hyper then closes the
    // connection rather than read it.
    let (parts, _) = request.into_parts();
    let mut reply = match refusal(&shared, &parts) {
        Some(reply) => reply,
        None => {
            route(&shared, &parts, &span, side, peer)
                .instrument(span.clone())
                .await
        }
    };
    put(
        &mut reply.headers,
        HeaderName::from_static("x-request-id"),
        &id,
    );
    if parts.method == Method::HEAD {
        reply.source = Source::Empty;
    }
    metrics().answered(
        route_of(parts.uri.path()),
        reply.status.as_u16(),
        reply.cache,
    );
    let mut log = unanswered.0.take().expect("answered once");
    log.status = reply.status.as_u16();
    log.cache = reply.cache;
    let len = reply.len;
    let status = reply.status;
    let mut response = Response::new(TrackedBody::new(reply.source, log, in_flight));
    *response.status_mut() = status;
    *response.headers_mut() = reply.headers;
    // Always a length, never a chunked body (RFC 9110 8.6; none on 204).
    if status != StatusCode::NO_CONTENT {
        response
            .headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    }
    Ok(response)
}

/// A request's id: the client's `X-Request-Id` (a load balancer's, to
/// follow a request across tiers) when it is 1 to 64 letters, digits, `-`,
/// `_` or `.`; else one of ours, unique in this process and across
/// restarts.
fn request_id(headers: &HeaderMap) -> String {
    if let Some(theirs) = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
    {
        return theirs.to_string();
    }
    static PROCESS: std::sync::OnceLock<u32> = std::sync::OnceLock::new();
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let process = PROCESS.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish() as u32
    });
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // As `format!("{process:08x}-{n:x}")`, without the formatting
    // machinery: every request has one.
    let mut id = String::with_capacity(8 + 1 + 16);
    push_hex(&mut id, u64::from(*process), 8);
    id.push('-');
    push_hex(&mut id, n, 1);
    id
}

/// Appends `n` in lowercase hex, at least `width` digits.
fn push_hex(out: &mut String, n: u64, width: u32) {
    let digits = (64 - n.leading_zeros()).div_ceil(4).max(width);
    for shift in (0..digits).rev() {
        let nibble = ((n >> (shift * 4)) & 0xf) as u32;
        out.push(char::from_digit(nibble, 16).expect("a hex digit"));
    }
}

/// The access log of a request whose answer is not ready yet.
struct Unanswered(Option<AccessLog>);

impl Drop for Unanswered {
    fn drop(&mut self) {
        if let Some(mut log) = self.0.take() {
            // nginx's "client closed request".
            log.status = 499;
            Record::new(log, 0).write(true);
        }
    }
}

/// A request we do not answer as asked: a body, an over-long target or
/// header, a method other than GET, HEAD and OPTIONS (and POST for a
/// key's license request).
fn refusal(shared: &Shared, parts: &http::request::Parts) -> Option<Reply> {
    let config = &shared.origin.config().server;
    let declared = parts.headers.get(header::CONTENT_LENGTH);
    // A ClearKey license request (W3C EME: a POST of a small JSON naming
    // the key ids) is answered without its body being read: the URL names
    // the key.
    let license = parts.method == Method::POST
        && parts.uri.path().ends_with(".key")
        && !parts.headers.contains_key(header::TRANSFER_ENCODING)
        && declared
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
            .is_some_and(|len| len <= MAX_LICENSE_REQUEST_BYTES);
    let has_body = !license
        && (parts.headers.contains_key(header::TRANSFER_ENCODING)
            || declared.is_some_and(|v| v.as_bytes() != b"0"));
    // The whole target, an absolute-form one's scheme and host included.
    let uri = &parts.uri;
    let target_len = uri.scheme_str().map_or(0, |s| s.len() + 3)
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(0, |p| p.as_str().len());
    let header_bytes: usize = parts
        .headers
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    let (status, message) = if has_body {
        (413, "a request body is not accepted")
    } else if target_len > MAX_TARGET_BYTES {
        (414, "the request target is too long")
    } else if header_bytes > MAX_HEADER_BYTES {
        (431, "the request header is too large")
    } else if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) && !license {
        let mut reply = text(config, 405, "method not allowed");
        reply.headers.insert(
            header::ALLOW,
            HeaderValue::from_static("GET, HEAD, OPTIONS"),
        );
        return Some(reply);
    } else {
        return None;
    };
    let mut reply = text(config, status, message);
    reply
        .headers
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    Some(reply)
}

async fn route(
    shared: &Arc<Shared>,
    parts: &http::request::Parts,
    span: &tracing::Span,
    side: super::Side,
    peer: SocketAddr,
) -> Reply {
    let config = &shared.origin.config().server;
    if parts.method == Method::OPTIONS {
        return preflight(config);
    }
    let path = parts.uri.path().to_string();
    let admin = side != super::Side::Media;
    match path.as_str() {
        HEALTH_PATH if admin => return health(shared).await,
        METRICS_PATH if admin => return metrics_reply(shared).await,
        _ if side == super::Side::Admin => {
            return text(config, 404, "only /healthz and /metrics here")
        }
        _ => {}
    }
    let Admission { carried, grant } = match admitted(shared, parts, &path, peer) {
        Ok(admission) => admission,
        Err(refusal) => {
            let mut reply = text(config, 403, &refusal.to_string());
            put(&mut reply.headers, header::CACHE_CONTROL, "no-store");
            return reply;
        }
    };
    // With each answer, what a player asks for next (hinted): known once
    // the source is in memory, as it is when the answer is ready.
    let hint = |ahead: &[String]| ahead.iter().take(1).cloned().collect::<Vec<_>>();
    // What the origin is asked for: the path with its query string (a
    // master's `b=` filters it).
    let target = parts
        .uri
        .path_and_query()
        .map_or_else(|| path.clone(), |p| p.as_str().to_string());
    let target =
        unsigned_preroll_off_dropped(target, &shared.origin.config().preroll, grant.as_ref());
    // The viewer's country, for pre-rolls.
    let super::geo::Located { viewer, by_address } = shared.geo.locate(peer.ip(), &parts.headers);
    // A playlist kept in memory is answered here, on the event loop: no
    // worker slot, no hop to a thread and back.
    if let Some((answer, ahead)) = shared
        .origin
        .answer_at_once(&target, &viewer, config.prefetch)
    {
        let next = hint(&ahead);
        if let (true, Some(prefetch)) = (parts.method == Method::GET, &shared.prefetch) {
            prefetch.ask(&path, ahead);
        }
        let tokens = (carried.as_deref(), shared.tokens.is_some());
        let mut reply = answered(config, answer, &next, &parts.headers, tokens);
        chosen_by(&mut reply, shared.origin.varies_by(&target), by_address);
        return reply;
    }
    let varies_by = shared.origin.varies_by(&target).map(str::to_string);
    let origin = Arc::clone(&shared.origin);
    // A request waits for a slot no longer than for another request's
    // object: then it is told to come back.
    let slot = tokio::time::timeout(
        config.wait_timeout.as_std(),
        Arc::clone(&shared.work).acquire_owned(),
    )
    .await;
    let answer = match slot {
        Ok(Ok(permit)) => {
            let started = std::time::Instant::now();
            // The answer comes back as soon as it can start: a segment made
            // for this request is sent once it is whole, while the work
            // goes on (holding its slot) on the blocking thread: storing
            // it, once this answer is done with it.
            let (sender, answered) = tokio::sync::oneshot::channel();
            let sender = std::sync::Mutex::new(Some(sender));
            let send = move |answer: Result<(Answer, Vec<String>), OriginError>| {
                if let Some(sender) = sender.lock().expect("answer lock").take() {
                    let _ = sender.send(answer);
                }
            };
            let count = config.prefetch;
            let shared = Arc::clone(shared);
            let get = parts.method == Method::GET;
            let span = span.clone();
            let work = tokio::task::spawn_blocking(move || {
                let _permit = permit;
                let _request = span.enter();
                let answer = origin.answer_for(
                    &target,
                    &viewer,
                    Some(&|early| send(Ok((early, hint(&origin.ahead(&path, count)))))),
                );
                let ahead = match &answer {
                    Ok(_) => origin.ahead(&path, count),
                    Err(_) => Vec::new(),
                };
                let made = answer.is_ok();
                send(answer.map(|answer| (answer, hint(&ahead))));
                if let (true, true, Some(prefetch)) = (made, get, &shared.prefetch) {
                    prefetch.ask(&path, ahead);
                }
            });
            match answered.await {
                Ok(answer) => {
                    if let Ok((made, _)) = &answer {
                        if made.object.state == State::Miss {
                            metrics().made(started.elapsed());
                        }
                    }
                    answer
                }
                Err(_) => Err(OriginError::Internal(format!(
                    "internal error ({})",
                    match work.await {
                        Err(e) if e.is_panic() => "panic",
                        _ => "cancelled",
                    }
                ))),
            }
        }
        Ok(Err(_)) => Err(OriginError::Internal("shutting down".into())),
        Err(_) => Err(OriginError::Unavailable {
            reason: format!(
                "all {} workers busy for {:?}",
                config.workers,
                config.wait_timeout.as_std()
            ),
            retry_after_seconds: crate::origin::RETRY_AFTER_SECONDS,
        }),
    };
    match answer {
        Ok((answer, next)) => {
            let tokens = (carried.as_deref(), shared.tokens.is_some());
            // A playlist chosen by the viewer's country may start with a
            // pre-roll: what comes next is not the content's first segment.
            let next = if varies_by.is_some() {
                Vec::new()
            } else {
                next
            };
            let mut reply = answered(config, answer, &next, &parts.headers, tokens);
            chosen_by(&mut reply, varies_by.as_deref(), by_address);
            reply
        }
        Err(e) => error(config, &e),
    }
}

/// The reply of an answer, naming `next` (what the player asks for after
/// it) to a CDN that fetches ahead. With `carried` (a signed URL's token
/// as `name=value`), a playlist lists its URIs with it. While tokens are
/// on (`tokens_on`) playlists are each viewer's own (private): a shared
/// cache keeping one would hand it, and a token in it, to others, or a
/// token-less one to a viewer whose player needs the token carried. A key
/// is never stored by anyone.
fn answered(
    config: &crate::config::Server,
    answer: Answer,
    next: &[String],
    request: &HeaderMap,
    (carried, tokens_on): (Option<&str>, bool),
) -> Reply {
    let kind = answer.content_type;
    let answer = match carried {
        Some(query) if matches!(kind, PLAYLIST_TYPE | MPD_TYPE) => with_query(answer, query),
        _ => answer,
    };
    let mut reply = object(config, answer, request);
    if let (Some(next), 200 | 206) = (next.first(), reply.status.as_u16()) {
        prefetch_hints(&mut reply.headers, next);
    }
    if matches!(kind, KEY_TYPE | JSON_KEY_TYPE) {
        put(&mut reply.headers, header::CACHE_CONTROL, "no-store");
    } else if tokens_on && matches!(kind, PLAYLIST_TYPE | MPD_TYPE) {
        let private = format!("private, max-age={}", config.max_age);
        put(&mut reply.headers, header::CACHE_CONTROL, &private);
    }
    reply
}

/// `answer`, a playlist or MPD, with `query` added to every URI it lists;
/// its ETag tells the two apart.
fn with_query(answer: Answer, query: &str) -> Answer {
    let Answer {
        object,
        content_type,
        last_modified,
    } = answer;
    let etag = object.etag.clone();
    let state = object.state;
    let text = match object.into_bytes() {
        Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
        Err(e) => {
            tracing::error!("reading a playlist to carry a token on: {e}");
            String::new()
        }
    };
    let text = match content_type {
        MPD_TYPE => crate::packager::cmaf::mpd_with_query(&text, query),
        _ => crate::packager::hls::with_query(&text, query),
    };
    let tag = crate::cache::hex(&sha2::Sha256::digest(query.as_bytes())[..4]);
    let bytes = text.into_bytes();
    Answer {
        object: crate::cache::Object {
            len: bytes.len() as u64,
            body: crate::cache::Body::Bytes(Arc::new(bytes)),
            state,
            etag: format!("{}-{tag}\"", etag.trim_end_matches('"')),
        },
        content_type,
        last_modified,
    }
}

/// What a request's token let it have.
#[derive(Default)]
struct Admission {
    /// What to carry on to a playlist's URIs (`name=value`): the token,
    /// when it came in the query string (a cookie goes along by itself).
    carried: Option<String>,
    /// A good token's grant.
    grant: Option<crate::tokens::Grant>,
}

/// Whether the request may have `path`, by its signed-URL token
/// (`[tokens]`): with `tokens.required`, and for a key whenever tokens are
/// on, only with a good one (from the query string, else the cookie).
fn admitted(
    shared: &Shared,
    parts: &http::request::Parts,
    path: &str,
    peer: SocketAddr,
) -> Result<Admission, crate::tokens::Refusal> {
    let Some(signer) = &shared.tokens else {
        return Ok(Admission::default());
    };
    let config = shared.origin.config();
    let t = &config.tokens;
    let needed = t.required || path.ends_with(".key");
    let in_query = parts.uri.query().and_then(|q| query_value(q, &t.param));
    let token = in_query
        .clone()
        .or_else(|| cookie_value(&parts.headers, t.cookie_name()));
    let Some(token) = token else {
        return if needed {
            Err(crate::tokens::Refusal::Missing)
        } else {
            Ok(Admission::default())
        };
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    match signer.check(&token, path, peer.ip(), now) {
        Ok(grant) => Ok(Admission {
            carried: in_query.map(|token| format!("{}={}", t.param, uri_safe(&token))),
            grant: Some(grant),
        }),
        Err(refusal) if needed => Err(refusal),
        // Not needed: served as if it had none.
        Err(_) => Ok(Admission::default()),
    }
}

/// `target` (a path and query) without the query's `<param>=0` that turns
/// the pre-roll off, unless `grant` signs it (`preroll.param_signed`).
fn unsigned_preroll_off_dropped(
    target: String,
    preroll: &crate::config::Preroll,
    grant: Option<&crate::tokens::Grant>,
) -> String {
    let Some((path, query)) = target.split_once('?') else {
        return target;
    };
    let off = format!("{}=0", preroll.param);
    if !preroll.param_signed || grant.is_some_and(|g| g.signs(&off)) {
        return target;
    }
    let kept: Vec<&str> = query.split('&').filter(|pair| *pair != off).collect();
    if kept.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", kept.join("&"))
    }
}

/// The percent-decoded value of `name` in a query string, if given.
fn query_value(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix('=')?;
        // A bad escape is kept as it came: its signature will not match.
        Some(percent_decoded(value).unwrap_or_else(|| value.to_string()))
    })
}

/// The value of the cookie `name`, if sent (RFC 6265 5.4).
fn cookie_value(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|pair| {
            let value = pair.trim().strip_prefix(name)?.strip_prefix('=')?;
            let value = value.trim_matches('"');
            Some(percent_decoded(value).unwrap_or_else(|| value.to_string()))
        })
}

/// `text` fit for a URI's query and for XML: what a token is made of as
/// it is, anything else percent-encoded.
fn uri_safe(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~=*!/:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Liveness and readiness, off the media URL space: 200 while the cache
/// can be used, 503 saying why while it cannot (a load balancer or a shield
/// cache's probe then sends requests elsewhere). It takes no worker slot:
/// busy workers are no reason to fail a probe.
pub const HEALTH_PATH: &str = "/healthz";

async fn health(shared: &Shared) -> Reply {
    let config = &shared.origin.config().server;
    let origin = Arc::clone(&shared.origin);
    let checked = tokio::task::spawn_blocking(move || origin.cache().check_health()).await;
    let mut reply = match checked {
        Ok(Ok(())) => text(config, 200, "ok"),
        Ok(Err(e)) => text(config, 503, &format!("cache unusable: {e}")),
        Err(_) => text(config, 503, "internal error checking the cache"),
    };
    put(&mut reply.headers, header::CACHE_CONTROL, "no-store");
    reply
}

/// What the server did since it started, and what its cache holds, in
/// the Prometheus text format; off the media URL space, no worker slot.
pub const METRICS_PATH: &str = "/metrics";

async fn metrics_reply(shared: &Arc<Shared>) -> Reply {
    let config = &shared.origin.config().server;
    let shared = Arc::clone(shared);
    let rendered = tokio::task::spawn_blocking(move || {
        metrics().render(shared.connections.open_count(), shared.origin.cache())
    })
    .await;
    let Ok(body) = rendered else {
        return text(config, 500, "internal error rendering the metrics");
    };
    let mut reply = text(config, 200, "");
    put(
        &mut reply.headers,
        header::CONTENT_TYPE,
        crate::metrics::CONTENT_TYPE,
    );
    put(&mut reply.headers, header::CACHE_CONTROL, "no-store");
    let body = Bytes::from(body);
    reply.len = body.len() as u64;
    reply.source = Source::Bytes(body);
    reply
}

/// The route of a request path, for the metrics' `route` label: a small
/// fixed set, whatever the URL.
fn route_of(path: &str) -> &'static str {
    let name = path.rsplit('/').next().unwrap_or("");
    match path {
        HEALTH_PATH => "health",
        METRICS_PATH => "metrics",
        _ if name == "master.m3u8" => "master",
        _ if name.ends_with(".m3u8") => "playlist",
        _ if name.ends_with(".mpd") => "manifest",
        _ if name.ends_with(".ts") => "segment",
        _ if name.ends_with(".m4s") => "fragment",
        _ if name.ends_with(".mp4") => "init",
        _ if name.ends_with(".vtt") => "subtitles",
        _ => "other",
    }
}

/// Names `next`, the object a player asks for after this one, for a CDN
/// that fetches ahead: a `Link` prefetch hint (RFC 8288, HTML's
/// `prefetch` relation) and Akamai's origin assist header.
fn prefetch_hints(headers: &mut HeaderMap, next: &str) {
    put(headers, header::LINK, &format!("<{next}>; rel=prefetch"));
    put(
        headers,
        HeaderName::from_static("cdn-origin-assist-prefetch-path"),
        next,
    );
}

fn object(config: &crate::config::Server, answer: Answer, request: &HeaderMap) -> Reply {
    let Answer {
        object,
        content_type,
        last_modified,
    } = answer;
    let mut headers = common_headers(config);
    put_static(&mut headers, header::CONTENT_TYPE, content_type);
    put(&mut headers, header::ETAG, &object.etag);
    if let Some(value) = remembered(&LAST_MODIFIED, last_modified, || http_date(last_modified)) {
        headers.insert(header::LAST_MODIFIED, value);
    }
    let max_age = config.max_age;
    // (The cast only names the value: it is one to one.)
    if let Some(value) = remembered(&CACHE_CONTROL, max_age as i64, || {
        format!("public, max-age={max_age}")
    }) {
        headers.insert(header::CACHE_CONTROL, value);
    }
    put_static(&mut headers, header::ACCEPT_RANGES, "bytes");
    put_static(
        &mut headers,
        HeaderName::from_static("x-cache"),
        object.state.as_header(),
    );
    let value = |name: header::HeaderName| request.get(name).and_then(|v| v.to_str().ok());
    let len = object.len;
    let cache = object.state.as_str();
    if not_modified(
        value(header::IF_NONE_MATCH),
        value(header::IF_MODIFIED_SINCE),
        &object.etag,
        last_modified,
    ) {
        // Content-Length of a 304 is that of the body a 200 would have.
        let mut reply = Reply::new(304, headers);
        reply.len = len;
        reply.cache = cache;
        return reply;
    }
    let range = match value(header::IF_RANGE) {
        Some(tag) if tag != object.etag => RangeRequest::Whole,
        _ => parse_range(value(header::RANGE), len),
    };
    let (status, range): (u16, Range<u64>) = match range {
        RangeRequest::Whole => (200, 0..len),
        RangeRequest::Partial(r) => {
            let value = format!("bytes {}-{}/{len}", r.start, r.end - 1);
            put(&mut headers, header::CONTENT_RANGE, &value);
            (206, r)
        }
        RangeRequest::Unsatisfiable => {
            put(
                &mut headers,
                header::CONTENT_RANGE,
                &format!("bytes */{len}"),
            );
            // It answers this request's Range, not the URL.
            put(&mut headers, header::CACHE_CONTROL, "no-store");
            let mut reply = Reply::new(416, headers);
            reply.cache = cache;
            return reply;
        }
    };
    Reply {
        status: StatusCode::from_u16(status).expect("valid"),
        headers,
        len: range.end - range.start,
        source: Source::Object {
            body: object.body,
            range,
        },
        cache,
    }
}

/// The status of each kind of origin error, and its headers: client
/// errors may be cached briefly (`server.error_max_age`), so that a CDN
/// does not send every request for a missing file on; ours may not.
fn error(config: &crate::config::Server, e: &OriginError) -> Reply {
    let status = match e {
        OriginError::BadRequest(_) => 400,
        OriginError::NotFound(_) => 404,
        OriginError::Unprocessable(_) => 422,
        OriginError::Unavailable { .. } => 503,
        OriginError::Internal(_) => 500,
        OriginError::BadGateway(_) => 502,
        OriginError::GatewayTimeout(_) => 504,
        OriginError::Forbidden(_) => 403,
    };
    if status == 502 || status == 504 {
        metrics().remote_error();
    }
    match status {
        // Try again later: the store restoring, a copy changing, a wait.
        503 => tracing::warn!("{e}"),
        500.. => tracing::error!("{e}"),
        _ => {}
    }
    let mut reply = text(config, status, &e.to_string());
    if let OriginError::Unavailable {
        retry_after_seconds,
        ..
    } = e
    {
        put(
            &mut reply.headers,
            header::RETRY_AFTER,
            &retry_after_seconds.to_string(),
        );
    }
    reply
}

/// A short plain-text answer (an error). Errors about the URL may be kept
/// by a CDN for `error_max_age`; errors about this request's method,
/// headers or body, and ours, may not: kept, they would be served to
/// everyone asking for the URL.
fn text(config: &crate::config::Server, status: u16, message: &str) -> Reply {
    let mut headers = common_headers(config);
    put(
        &mut headers,
        header::CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    put(
        &mut headers,
        HeaderName::from_static("x-content-type-options"),
        "nosniff",
    );
    let cache_control = match status {
        400 | 404 | 422 => format!("public, max-age={}", config.error_max_age),
        _ => "no-store".to_string(),
    };
    put(&mut headers, header::CACHE_CONTROL, &cache_control);
    let body = Bytes::from(format!("{message}\n"));
    let mut reply = Reply::new(status, headers);
    reply.len = body.len() as u64;
    reply.source = Source::Bytes(body);
    reply
}

/// The answer to a CORS preflight (Fetch standard, CORS protocol).
fn preflight(config: &crate::config::Server) -> Reply {
    let mut headers = common_headers(config);
    put(
        &mut headers,
        header::ACCESS_CONTROL_ALLOW_METHODS,
        "GET, HEAD, POST, OPTIONS",
    );
    put(
        &mut headers,
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        "Range, If-None-Match, If-Modified-Since, Content-Type",
    );
    put(&mut headers, header::ACCESS_CONTROL_MAX_AGE, "86400");
    Reply::new(204, headers)
}

/// Header fields an answer has at most, about: room for them from the
/// start, so that the map is not grown field by field.
const ANSWER_FIELDS: usize = 16;

fn common_headers(config: &crate::config::Server) -> HeaderMap {
    let mut headers = HeaderMap::with_capacity(ANSWER_FIELDS);
    if !config.cors_origin.is_empty() {
        put(
            &mut headers,
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            &config.cors_origin,
        );
        put_static(
            &mut headers,
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            "Content-Length, Content-Range, ETag",
        );
    }
    headers
}

type Remembered = std::thread::LocalKey<std::cell::RefCell<Option<(i64, HeaderValue)>>>;

thread_local! {
    /// The last Last-Modified value each thread wrote: the same few
    /// sources are answered again and again.
    static LAST_MODIFIED: std::cell::RefCell<Option<(i64, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
    /// The same for the Cache-Control of an object, by `server.max_age`
    /// (a reload may change it).
    static CACHE_CONTROL: std::cell::RefCell<Option<(i64, HeaderValue)>> =
        const { std::cell::RefCell::new(None) };
}

/// The header value `make` writes for `of`, kept in `slot` for the next
/// answer with the same `of`; `None` if it is not a valid value.
fn remembered(
    slot: &'static Remembered,
    of: i64,
    make: impl FnOnce() -> String,
) -> Option<HeaderValue> {
    slot.with_borrow_mut(|last| match last {
        Some((at, value)) if *at == of => Some(value.clone()),
        _ => {
            let value = HeaderValue::try_from(make()).ok()?;
            *last = Some((of, value.clone()));
            Some(value)
        }
    })
}

/// Names `header` in the reply's `Vary` (RFC 9110 12.5.5): a cache keeps
/// one answer per value of it.
/// An answer chosen by the viewer's country `header` names (`None`: the
/// same for everyone) says so with `Vary`; one whose country came from the
/// client's address (`by_address`) is the viewer's own: `private`, since
/// no header a shared cache could key on tells it.
fn chosen_by(reply: &mut Reply, header: Option<&str>, by_address: bool) {
    let Some(value) = header.and_then(|h| HeaderValue::from_str(h).ok()) else {
        return;
    };
    reply.headers.append(header::VARY, value);
    if by_address {
        let control = reply
            .headers
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.replace("public", "private"));
        if let Some(control) = control {
            put(&mut reply.headers, header::CACHE_CONTROL, &control);
        }
    }
}

/// Sets a header; a value that is not a valid header value (it cannot be,
/// all come from us or the configuration) is left out.
fn put(headers: &mut HeaderMap, name: HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// [`put`] of one of our constants: not copied. (An invalid one would
/// panic, on the first answer that has it.)
fn put_static(headers: &mut HeaderMap, name: HeaderName, value: &'static str) {
    headers.insert(name, HeaderValue::from_static(value));
}

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_hex_as_formatted() {
        let cases = [
            (0u64, 1),
            (0, 8),
            (0xa, 1),
            (0x1234, 8),
            (u64::MAX, 1),
            (1 << 60, 8),
        ];
        for (n, width) in cases {
            let mut out = String::new();
            super::push_hex(&mut out, n, width);
            assert_eq!(out, format!("{n:0width$x}", width = width as usize));
        }
    }
}
