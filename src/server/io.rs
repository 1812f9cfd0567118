//! A client connection's socket with the deadlines an origin facing the
//! internet needs (the ones nginx calls `keepalive_timeout`,
//! `client_header_timeout` and `send_timeout`):
//!
//! - idle between requests: closed after `keepalive`;
//! - from the first byte of a request, its whole header must arrive within
//!   `header` (so a client sending a byte a second fails);
//! - a write that makes no progress for `send` fails, so a client that
//!   stops reading costs its own connection only, and only for so long;
//!   such a connection is reset, so its queued bytes go at once.
//!
//! While a request is being answered there is no read deadline: the
//! answer may take a while, and the client owes us nothing meanwhile.

use std::future::Future;
use std::io;
use std::os::fd::AsRawFd;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    pub keepalive: Duration,
    pub header: Duration,
    pub send: Duration,
}

/// What the connection is doing, shared by its socket and its requests.
#[derive(Default)]
pub struct ConnState {
    activity: Mutex<Activity>,
    /// Set by the connection cap: close at once if nothing is in flight,
    /// else once the response in flight has gone out.
    evict: AtomicBool,
    evicted: tokio::sync::Notify,
    /// Times everything handed to the socket was accepted by it (hyper
    /// flushes only once its own buffer is empty).
    flushes: AtomicU64,
    /// The access log line of a response whose body is all handed to the
    /// connection, written once the socket has taken all of it, or, if the
    /// connection ends first, as cut.
    pending_log: Mutex<Option<super::body::Record>>,
}

struct Activity {
    /// Requests being answered (until the end of their response body).
    in_flight: usize,
    /// When the connection last had nothing in flight.
    idle_since: Instant,
    /// When the first byte of a request header not yet complete arrived
    /// (a pipelined one may arrive while another is answered).
    header_since: Option<Instant>,
}

impl Default for Activity {
    fn default() -> Self {
        Activity {
            in_flight: 0,
            idle_since: Instant::now(),
            header_since: None,
        }
    }
}

impl ConnState {
    fn activity(&self) -> std::sync::MutexGuard<'_, Activity> {
        self.activity.lock().expect("activity lock")
    }

    /// A request's header is complete; it is being answered until the
    /// returned guard is dropped (with the end of its response body).
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.activity().in_flight += 1;
        InFlight(Arc::clone(self))
    }

    /// Since when the connection has been doing nothing of use to anyone
    /// (idle, or reading a header), if it is: nothing in flight and the
    /// last response all taken by the socket. Such a connection may be
    /// closed at once to make room.
    pub fn unproductive_since(&self) -> Option<Instant> {
        let activity = self.activity();
        if activity.in_flight > 0 || self.pending_log.lock().expect("log lock").is_some() {
            return None;
        }
        Some(activity.header_since.unwrap_or(activity.idle_since))
    }

    pub fn evict(&self) {
        self.evict.store(true, Ordering::Release);
        self.evicted.notify_one();
    }

    pub fn is_evicted(&self) -> bool {
        self.evict.load(Ordering::Acquire)
    }

    /// Resolves once [`ConnState::evict`] was called.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    /// How many times the socket took everything handed to it so far.
    pub fn flushes(&self) -> u64 {
        self.flushes.load(Ordering::Acquire)
    }

    /// Holds `record` until the socket has taken the whole response.
    pub fn log_when_flushed(&self, record: super::body::Record) {
        let previous = self.pending_log.lock().expect("log lock").replace(record);
        // Two in a row without a flush between: the first went out before
        // the second was made (responses are sequential).
        if let Some(previous) = previous {
            previous.write(false);
        }
    }

    fn flushed(&self) {
        self.flushes.fetch_add(1, Ordering::AcqRel);
        if let Some(record) = self.pending_log.lock().expect("log lock").take() {
            record.write(false);
        }
    }

    /// Bytes arrived; `partial`: a request header is under way after them.
    fn header_progress(&self, partial: bool) {
        let mut activity = self.activity();
        activity.header_since = match (partial, activity.header_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(Instant::now()),
        };
    }

    /// The read deadline now: none while a request is answered.
    fn read_deadline(&self, t: &Timeouts) -> Option<Instant> {
        let activity = self.activity();
        if activity.in_flight > 0 {
            return None;
        }
        Some(match activity.header_since {
            Some(since) => since + t.header,
            None => activity.idle_since + t.keepalive,
        })
    }
}

impl Drop for ConnState {
    /// The connection is gone: a response not yet all taken by the socket
    /// was cut.
    fn drop(&mut self) {
        if let Some(record) = self.pending_log.get_mut().expect("log lock").take() {
            record.write(true);
        }
    }
}

/// A request in flight; dropping it makes the connection idle again when it
/// was the last one.
pub struct InFlight(Arc<ConnState>);

impl InFlight {
    pub fn conn(&self) -> &ConnState {
        &self.0
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut activity = self.0.activity();
        activity.in_flight -= 1;
        if activity.in_flight == 0 {
            activity.idle_since = Instant::now();
        }
    }
}

/// The socket of one connection, with its deadlines.
pub struct Guarded {
    stream: TcpStream,
    state: Arc<ConnState>,
    timeouts: Timeouts,
    read_timer: Pin<Box<Sleep>>,
    read_armed: Option<Instant>,
    write_timer: Pin<Box<Sleep>>,
    /// While a write waits: the bytes the kernel had yet to send when the
    /// send timer was last armed.
    write_armed: Option<usize>,
    heads: HeadScanner,
}

/// Finds where request headers end in the bytes a client sends (an empty
/// line, CRLF or bare LF, as HTTP/1.1 parsers accept), so that the header
/// deadline runs from the first byte of each header, however the bytes are
/// split into reads, and whatever hyper has buffered. A request body is
/// never read (it is refused, and the connection closed).
#[derive(Default)]
struct HeadScanner {
    /// The last byte ended a line (a CR after it does not change that).
    at_line_start: bool,
    /// Bytes have come since the last header ended.
    partial: bool,
}

impl HeadScanner {
    /// Scans `bytes`; returns whether a header is under way after them.
    fn scan(&mut self, bytes: &[u8]) -> bool {
        for &b in bytes {
            match b {
                b'\n' if self.at_line_start => self.partial = false,
                b'\n' => {
                    self.at_line_start = true;
                    self.partial = true;
                }
                b'\r' if self.at_line_start => {}
                _ => {
                    self.at_line_start = false;
                    self.partial = true;
                }
            }
        }
        self.partial
    }
}

impl Guarded {
    pub fn new(stream: TcpStream, state: Arc<ConnState>, timeouts: Timeouts) -> Self {
        Guarded {
            stream,
            state,
            timeouts,
            read_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            read_armed: None,
            write_timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            write_armed: None,
            heads: HeadScanner::default(),
        }
    }

    /// A write is waiting for room in the socket. It fails once the client
    /// has taken nothing for `send`: the kernel's queue not shrinking is
    /// what counts, since a socket whose send buffer is large reports room
    /// only once a third of it has drained, which a slow but steady reader
    /// may take longer than `send` to do.
    fn poll_write_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        loop {
            if self.write_armed.is_none() {
                self.write_armed = Some(self.unsent());
                let deadline = Instant::now() + self.timeouts.send;
                self.write_timer.as_mut().reset(deadline);
            }
            if self.write_timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            let before = self.write_armed.take().unwrap_or(0);
            if self.unsent() >= before {
                self.reset_on_close();
                return Poll::Ready(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the client stopped reading",
                ));
            }
        }
    }

    /// Bytes written to the socket that the kernel has yet to send.
    fn unsent(&self) -> usize {
        let mut queued: libc::c_int = 0;
        // SAFETY: TIOCOUTQ writes one int through the pointer it is given.
        let done = unsafe { libc::ioctl(self.stream.as_raw_fd(), libc::TIOCOUTQ, &mut queued) };
        if done == 0 {
            queued.max(0) as usize
        } else {
            usize::MAX
        }
    }

    /// A connection whose client stopped reading is reset, not closed: what
    /// is queued for it is thrown away at once instead of holding kernel
    /// memory until the client goes (nginx's `reset_timedout_connection`).
    fn reset_on_close(&self) {
        let _ = socket2::SockRef::from(&self.stream).set_linger(Some(Duration::ZERO));
    }
}

impl AsyncRead for Guarded {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        match Pin::new(&mut this.stream).poll_read(cx, buf) {
            Poll::Ready(result) => {
                if result.is_ok() && buf.filled().len() > before {
                    let partial = this.heads.scan(&buf.filled()[before..]);
                    this.state.header_progress(partial);
                }
                this.read_armed = None;
                Poll::Ready(result)
            }
            Poll::Pending => {
                let Some(deadline) = this.state.read_deadline(&this.timeouts) else {
                    this.read_armed = None;
                    return Poll::Pending;
                };
                if this.read_armed != Some(deadline) {
                    this.read_armed = Some(deadline);
                    this.read_timer.as_mut().reset(deadline);
                }
                match this.read_timer.as_mut().poll(cx) {
                    // Closed, not reset: a response to a slow reader may
                    // still be in the kernel's queue, on its way.
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        "idle, or the request header took too long",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Guarded {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write(cx, buf) {
            Poll::Ready(result) => {
                this.write_armed = None;
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_write_timer(cx).map(Err),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.stream).poll_write_vectored(cx, bufs) {
            Poll::Ready(result) => {
                this.write_armed = None;
                Poll::Ready(result)
            }
            Poll::Pending => this.poll_write_timer(cx).map(Err),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        if let Poll::Ready(Ok(())) = flushed {
            self.state.flushed();
        }
        flushed
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::HeadScanner;

    #[test]
    fn header_ends_are_found_however_the_bytes_are_split() {
        let request = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n";
        for split in 0..request.len() {
            let mut scanner = HeadScanner::default();
            let (a, b) = request.split_at(split);
            let after_a = scanner.scan(a);
            assert_eq!(after_a, !a.is_empty(), "split at {split}");
            assert!(!scanner.scan(b), "complete after split at {split}");
        }
        let mut scanner = HeadScanner::default();
        assert!(!scanner.scan(b"GET /a HTTP/1.1\nHost: x\n\n"), "bare LF");
        assert!(
            scanner.scan(b"GET /b HTTP/1.1\r\nHo"),
            "the next one under way"
        );
        assert!(!scanner.scan(b"st: x\r\n\r\n"));
        assert!(
            scanner.scan(b"GET /c HTTP/1.1\r\n\r\nGET /d"),
            "a whole one, then part of another, in one read"
        );
    }
}
