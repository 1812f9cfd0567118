//! A client connection's socket with the deadlines an origin facing the
//! internet needs (the ones nginx calls `keepalive_timeout`,
//! `client_header_timeout` and `send_timeout`):
//!
//! - idle between requests: closed after `keepalive`;
//! - from the first byte of a request, its whole header must arrive within
//!   `header` (so a client sending a byte a second fails);
//! - a write that makes no progress for `send` fails, so a client that
//!   stops reading costs its own connection only, and only for so long.
//!
//! While a request is being answered there is no read deadline: the
//! answer may take a while, and the client owes us nothing meanwhile.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
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
    /// Requests being answered (a response whose body is still going out
    /// counts).
    in_flight: AtomicUsize,
    /// When the connection last became idle, or when the request now being
    /// read started.
    phase: Mutex<Phase>,
    /// Set by the connection cap: close as soon as the connection is idle.
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

#[derive(Clone, Copy, Debug)]
enum Phase {
    /// Waiting for a request since then.
    Idle(Instant),
    /// Reading a request's header since then.
    Header(Instant),
}

impl Default for Phase {
    fn default() -> Self {
        Phase::Idle(Instant::now())
    }
}

impl ConnState {
    /// A request's header is complete; it is being answered until the
    /// returned guard is dropped (with the end of its response body).
    pub fn start_request(self: &Arc<Self>) -> InFlight {
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(Arc::clone(self))
    }

    /// Idle: between requests, nothing in flight.
    pub fn is_idle(&self) -> bool {
        self.in_flight.load(Ordering::Acquire) == 0
            && matches!(*self.phase.lock().expect("phase lock"), Phase::Idle(_))
    }

    /// When the connection was last busy (for choosing whom to evict).
    pub fn idle_since(&self) -> Option<Instant> {
        match *self.phase.lock().expect("phase lock") {
            Phase::Idle(since) if self.in_flight.load(Ordering::Acquire) == 0 => Some(since),
            _ => None,
        }
    }

    pub fn evict(&self) {
        self.evict.store(true, Ordering::Release);
        self.evicted.notify_one();
    }

    pub fn is_evicted(&self) -> bool {
        self.evict.load(Ordering::Acquire)
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

    /// Resolves once [`ConnState::evict`] was called.
    pub async fn evicted(&self) {
        self.evicted.notified().await;
    }

    fn bytes_arrived(&self) {
        let mut phase = self.phase.lock().expect("phase lock");
        if let Phase::Idle(_) = *phase {
            *phase = Phase::Header(Instant::now());
        }
    }

    /// The read deadline now: none while a request is answered.
    fn read_deadline(&self, t: &Timeouts) -> Option<Instant> {
        if self.in_flight.load(Ordering::Acquire) > 0 {
            return None;
        }
        Some(match *self.phase.lock().expect("phase lock") {
            Phase::Idle(since) => since + t.keepalive,
            Phase::Header(since) => since + t.header,
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
        let state = &self.0;
        *state.phase.lock().expect("phase lock") = Phase::Idle(Instant::now());
        state.in_flight.fetch_sub(1, Ordering::AcqRel);
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
    write_armed: bool,
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
            write_armed: false,
        }
    }

    fn poll_write_timer(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        if !self.write_armed {
            self.write_armed = true;
            let deadline = Instant::now() + self.timeouts.send;
            self.write_timer.as_mut().reset(deadline);
        }
        match self.write_timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading",
            )),
            Poll::Pending => Poll::Pending,
        }
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
                    this.state.bytes_arrived();
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
                this.write_armed = false;
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
                this.write_armed = false;
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
