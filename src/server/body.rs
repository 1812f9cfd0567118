//! Response bodies: an object's bytes read from its cache file a chunk at a
//! time on the blocking threads (so a response in flight holds two chunks,
//! whatever the object's size), or from memory when they are there (a
//! playlist, an object just made), and the access log line, written once the
//! socket has taken the whole response, or when the connection ends first
//! (`cut`), with the body bytes the socket is known to have taken.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::task::JoinHandle;

use super::io::InFlight;
use crate::cache;

/// Bytes read from a cache file per step. A response holds at most two
/// (one going out, the next being read), whatever its client's speed.
const CHUNK_BYTES: usize = 256 << 10;
/// Longest request target written to the access log.
const LOGGED_TARGET_BYTES: usize = 512;

/// Where a body's bytes come from.
pub enum Source {
    Empty,
    Bytes(Bytes),
    /// A range of a cached object.
    Object {
        body: cache::Body,
        range: Range<u64>,
    },
}

/// What the access log says of one request.
pub struct AccessLog {
    /// The request's span (its id), entered to write the line.
    span: tracing::Span,
    peer: SocketAddr,
    method: http::Method,
    /// The target as asked, copied: a slice of it would keep the
    /// connection's read buffer until the line is written.
    whole: String,
    /// The name of the query parameter that carries a token.
    secret: Option<String>,
    pub status: u16,
    pub cache: &'static str,
    started: Instant,
}

impl AccessLog {
    /// The log of a request for `uri`; the value of the query parameter
    /// `secret` (a signed URL's token: whoever reads the log could replay
    /// it) is logged as `-`. The target is written out only with the line.
    pub fn new(
        span: tracing::Span,
        peer: SocketAddr,
        method: &http::Method,
        uri: &http::Uri,
        secret: Option<&str>,
    ) -> Self {
        AccessLog {
            span,
            peer,
            method: method.clone(),
            whole: match (uri.scheme(), uri.authority(), uri.path_and_query()) {
                // What `to_string` writes, without the formatting.
                (None, None, Some(target)) => target.as_str().to_string(),
                _ => uri.to_string(),
            },
            secret: secret.map(str::to_string),
            status: 0,
            cache: "-",
            started: Instant::now(),
        }
    }

    /// The request target as the log writes it: a token in its query
    /// hidden, quotes and backslashes escaped (so that a line always
    /// parses), at most [`LOGGED_TARGET_BYTES`].
    fn target(&self) -> String {
        let mut whole = std::borrow::Cow::Borrowed(self.whole.as_str());
        if let (Some(name), Some(at)) = (self.secret.as_deref(), whole.find('?')) {
            let query: Vec<String> = whole[at + 1..]
                .split('&')
                .map(|pair| match pair.strip_prefix(name) {
                    Some(value) if value.starts_with('=') => format!("{name}=-"),
                    _ => pair.to_string(),
                })
                .collect();
            whole = format!("{}?{}", &whole[..at], query.join("&")).into();
        }
        let mut target = String::new();
        for c in whole.chars() {
            if target.len() >= LOGGED_TARGET_BYTES {
                target.push_str("...");
                break;
            }
            match c {
                '"' | '\\' => target.extend(['\\', c]),
                c if c.is_control() => target.push_str(&format!("\\x{:02x}", c as u32)),
                c => target.push(c),
            }
        }
        target
    }
}

/// A response body that logs the request once it is done or dropped,
/// and keeps the connection busy until then.
pub struct TrackedBody {
    source: Source,
    /// Next byte of an object range to read, and the read in progress.
    pos: u64,
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// Bytes of body handed to the connection so far, and of all of it.
    sent: u64,
    len: u64,
    /// Bytes of body the socket is known to have taken: all that was
    /// handed before its last flush.
    confirmed: u64,
    flushes_seen: u64,
    failed: bool,
    /// Taken when the body is dropped.
    log: Option<AccessLog>,
    in_flight: InFlight,
}

impl TrackedBody {
    pub fn new(source: Source, log: AccessLog, in_flight: InFlight) -> Self {
        let (pos, len) = match &source {
            Source::Empty => (0, 0),
            Source::Bytes(b) => (0, b.len() as u64),
            Source::Object { range, .. } => (range.start, range.end - range.start),
        };
        let flushes_seen = in_flight.conn().flushes();
        TrackedBody {
            source,
            pos,
            reading: None,
            sent: 0,
            len,
            confirmed: 0,
            flushes_seen,
            failed: false,
            log: Some(log),
            in_flight,
        }
    }

    fn poll_object(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        let Source::Object { body, range } = &self.source else {
            unreachable!("an object body")
        };
        if self.reading.is_none() {
            if self.pos >= range.end {
                return Poll::Ready(None);
            }
            // Bytes in memory (a playlist, an object just made, one the
            // cache could not store) go out as they are, without a copy or
            // a thread.
            let whole = match body {
                cache::Body::Bytes(bytes) => Bytes::from_owner(Shared(Arc::clone(bytes))),
                // An object just made: each answer's hold on it lasts as
                // long as its bytes (hyper drops them once the socket took
                // them), and the object is stored after.
                cache::Body::Held(held) => Bytes::from_owner(held.answer()),
                cache::Body::Answered(answer) => Bytes::from_owner(Answered(Arc::clone(answer))),
                cache::Body::File(_) => Bytes::new(),
            };
            if !whole.is_empty() {
                let chunk = whole.slice(self.pos as usize..range.end as usize);
                self.pos = range.end;
                return Poll::Ready(Some(Ok(chunk)));
            }
            // A chunk of a file in the page cache (as a cached object that
            // is asked for often is) is read here, without a thread; what
            // would wait for a disk is read on a blocking thread.
            let want = (range.end - self.pos).min(CHUNK_BYTES as u64) as usize;
            let mut buf = Vec::with_capacity(want);
            while buf.len() < want {
                match body.read_spare(&mut buf, self.pos, true) {
                    Ok(n) if n > 0 => {}
                    _ => break,
                }
            }
            if buf.len() == want {
                self.pos += want as u64;
                return Poll::Ready(Some(Ok(Bytes::from(buf))));
            }
            self.reading = Some(read_chunk(body, buf, self.pos));
        }
        let reading = self.reading.as_mut().expect("a read in progress");
        let result = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(joined) => joined.unwrap_or_else(|e| Err(io::Error::other(e))),
        };
        self.reading = None;
        if let Ok(chunk) = &result {
            self.pos += chunk.len() as u64;
            // The next chunk is read while this one goes out: after one
            // that was not in the page cache, it is not either.
            if self.pos < range.end {
                let want = (range.end - self.pos).min(CHUNK_BYTES as u64) as usize;
                self.reading = Some(read_chunk(body, Vec::with_capacity(want), self.pos));
            }
        }
        Poll::Ready(Some(result))
    }
}

/// Fills `buf` to its capacity with the bytes of `body` from `pos` on (of
/// which it holds the first already), on a blocking thread.
fn read_chunk(body: &cache::Body, mut buf: Vec<u8>, pos: u64) -> JoinHandle<io::Result<Bytes>> {
    let body = body.clone();
    tokio::task::spawn_blocking(move || {
        while buf.len() < buf.capacity() {
            if body.read_spare(&mut buf, pos, false)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        Ok(Bytes::from(buf))
    })
}

/// An object's bytes in memory, shared with the other responses that
/// send it.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The object just made for this answer: its hold on it ends with these
/// bytes.
struct Answered(Arc<cache::Answering>);

impl AsRef<[u8]> for Answered {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

impl Body for TrackedBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let this = &mut *self;
        let flushes = this.in_flight.conn().flushes();
        if flushes != this.flushes_seen {
            this.flushes_seen = flushes;
            this.confirmed = this.sent;
        }
        let next = match &mut this.source {
            Source::Empty => Poll::Ready(None),
            Source::Bytes(bytes) if bytes.is_empty() => Poll::Ready(None),
            Source::Bytes(bytes) => Poll::Ready(Some(Ok(std::mem::take(bytes)))),
            Source::Object { .. } => this.poll_object(cx),
        };
        next.map(|chunk| {
            chunk.map(|result| match result {
                Ok(chunk) => {
                    this.sent += chunk.len() as u64;
                    Ok(Frame::data(chunk))
                }
                Err(e) => {
                    this.failed = true;
                    let target = this
                        .log
                        .as_ref()
                        .map_or_else(String::new, AccessLog::target);
                    tracing::error!("{target}: reading the cache: {e}");
                    Err(e)
                }
            })
        })
    }

    fn is_end_stream(&self) -> bool {
        self.sent >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.sent.min(self.len))
    }
}

impl Drop for TrackedBody {
    fn drop(&mut self) {
        if let Some(reading) = self.reading.take() {
            reading.abort();
        }
        let Some(log) = self.log.take() else { return };
        let mut record = Record::new(log, self.len);
        record.confirmed = self.confirmed;
        if self.sent < self.len || self.failed {
            record.write(true);
        } else {
            self.in_flight.conn().log_when_flushed(record);
        }
    }
}

/// A finished request, waiting for its access log line.
pub struct Record {
    log: AccessLog,
    /// Body bytes the socket is known to have taken.
    confirmed: u64,
    len: u64,
}

impl Record {
    pub fn new(log: AccessLog, len: u64) -> Record {
        Record {
            log,
            confirmed: 0,
            len,
        }
    }

    /// Writes the access log line. `cut`: the connection ended before the
    /// socket took the whole response; the count is what it did take, to
    /// the last flush.
    pub fn write(mut self, cut: bool) {
        if !cut {
            self.confirmed = self.len;
        }
        crate::metrics::metrics().sent(self.confirmed);
        let log = &self.log;
        let _request = log.span.enter();
        tracing::info!(
            target: "access",
            "{} \"{} {}\" {} {}/{} {:.1}ms {}{}",
            log.peer,
            log.method,
            log.target(),
            log.status,
            self.confirmed,
            self.len,
            log.started.elapsed().as_secs_f64() * 1e3,
            log.cache,
            if cut { " cut" } else { "" },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_in_the_query_is_not_logged() {
        let uri: http::Uri = "/i/a.mp4/index_0_av.m3u8?x=1&hdnea=exp=1~acl=/*~hmac=ab&y=2"
            .parse()
            .unwrap();
        let peer = "127.0.0.1:9".parse().unwrap();
        let span = tracing::Span::none();
        let log = AccessLog::new(span.clone(), peer, &http::Method::GET, &uri, Some("hdnea"));
        assert_eq!(log.target(), "/i/a.mp4/index_0_av.m3u8?x=1&hdnea=-&y=2");
        let kept = AccessLog::new(span, peer, &http::Method::GET, &uri, None);
        assert!(kept.target().contains("hmac=ab"));
        // Each form of target as `Uri` writes it.
        for target in ["/a?b=1", "/a?", "*", "http://h:1/a?b", "h:443"] {
            let uri: http::Uri = target.parse().unwrap();
            let log = AccessLog::new(tracing::Span::none(), peer, &http::Method::GET, &uri, None);
            assert_eq!(log.whole, uri.to_string());
        }
    }
}
