//! [`Guarded`]: the time limits on one accepted socket, below hyper, so they hold for every
//! transport and for upgraded WebSockets alike.
//!
//! - **Write stall.** When the kernel's send buffer is full and stays full for `write_timeout`
//!   (the client reads nothing), the next write fails with `TimedOut`: hyper or the WebSocket
//!   drops the connection and everything it was holding. Counted as
//!   `duplex_write_timeouts_total`. A slow reader that does take bytes is never cut off here; SSE
//!   and WebSocket bound what they queue for it, and history eviction tells it about a gap.
//! - **Request head.** Between requests (see `ConnMeter::awaiting_head`) the socket may sit idle
//!   for [`KEEP_ALIVE_IDLE`] and is then closed quietly, as any keep-alive server does; once the
//!   first byte of a head has arrived, the whole head must follow within `request_timeout`, or the
//!   client is sent `408 Request Timeout` (a JSON error) and the connection is closed. This is the
//!   slowloris defence; hyper's own header timer closes without an answer.
//!
//! - **hyper's own answers.** A request hyper cannot parse (a malformed line, a head over its
//!   buffer, a URI too long) is answered by hyper itself, before any handler runs, with an empty
//!   body. Such an answer can only be written while no request is being served, so there the
//!   guard replaces it with the same status and a JSON `{"error":...}` naming the problem, like
//!   every other error the server writes.
//!
//! Why a wrapper rather than timeouts around futures: the stall is only visible at the socket
//! (hyper writes a long response or a stream in many small writes, each of which may wait), and
//! an upgraded WebSocket keeps the wrapper, so one place covers all of them.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::conn::ConnMeter;
use crate::metrics::Metrics;

/// How long a keep-alive connection may wait for its next request (nginx's default is 75 s).
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

const REQUEST_TIMEOUT_408: &[u8] = b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n\
content-length: 59\r\nconnection: close\r\n\r\n{\"error\":\"request timeout: the request head took too long\"}";

/// The answers hyper writes by itself for a request it cannot parse (`on_error` in hyper's h1
/// server role), each with the JSON error that replaces it.
const HYPER_REJECTIONS: [(&str, &str); 3] = [
    (
        "HTTP/1.1 400 Bad Request\r\n",
        "malformed request: the request line or a header could not be parsed",
    ),
    (
        "HTTP/1.1 414 URI Too Long\r\n",
        "URI too long: the request target is over the server's limit",
    ),
    (
        "HTTP/1.1 431 Request Header Fields Too Large\r\n",
        "request head too large: too many or too long header fields",
    ),
];

/// When `head` is one of hyper's bodiless rejections, the full answer to write instead.
fn json_rejection(head: &[u8]) -> Option<(u16, Vec<u8>)> {
    if !head
        .windows(19)
        .any(|w| w.eq_ignore_ascii_case(b"content-length: 0\r\n"))
    {
        return None;
    }
    let (line, reason) = HYPER_REJECTIONS
        .iter()
        .find(|(line, _)| head.starts_with(line.as_bytes()))?;
    let status = line[9..12].parse().ok()?;
    let body = serde_json::to_string(&wire::ErrorBody {
        error: (*reason).to_owned(),
    })
    .ok()?;
    let answer = format!(
        "{line}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    Some((status, answer.into_bytes()))
}

/// A JSON answer being written in place of one of hyper's (see [`json_rejection`]).
#[derive(Debug)]
struct Replacement {
    answer: Vec<u8>,
    written: usize,
    /// How many of hyper's bytes it stands for: reported to hyper once the answer is out.
    covers: usize,
}

/// The socket under hyper, with the write-stall and request-head limits.
#[derive(Debug)]
pub struct Guarded<S> {
    inner: S,
    meter: Arc<ConnMeter>,
    metrics: Arc<Metrics>,
    write_timeout: Duration,
    request_timeout: Duration,
    /// Armed while a write waits; reset by any write that goes through.
    write_stall: Option<Pin<Box<Sleep>>>,
    /// Armed while waiting for a head: the idle limit, then the head limit once bytes came.
    head: Option<Pin<Box<Sleep>>>,
    head_started: bool,
    /// `ConnMeter::routed` when the timers were armed: once it moves, that head was routed.
    armed_at: u64,
    replacing: Option<Replacement>,
}

impl<S> Guarded<S> {
    /// Guards `inner` for the connection that `meter` follows.
    pub fn new(
        inner: S,
        meter: Arc<ConnMeter>,
        metrics: Arc<Metrics>,
        write_timeout: Duration,
        request_timeout: Duration,
    ) -> Self {
        Guarded {
            inner,
            meter,
            metrics,
            write_timeout,
            request_timeout,
            write_stall: None,
            head: None,
            head_started: false,
            armed_at: 0,
            replacing: None,
        }
    }

    /// Drops the request-head timer (the socket is held by a response off hyper, which reads no
    /// heads); it is armed again by the next read that waits for a head.
    pub(crate) fn disarm_head(&mut self) {
        self.head = None;
        self.head_started = false;
    }

    /// The guarded socket, to look at it without reading (the guard's timers do not see that).
    pub(crate) fn get_ref(&self) -> &S {
        &self.inner
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// After a write returned `Pending`: has the client read nothing for too long?
    fn stalled(&mut self, cx: &mut Context<'_>) -> bool {
        let timeout = self.write_timeout;
        let stall = self
            .write_stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if stall.as_mut().poll(cx).is_ready() {
            self.metrics.record_write_timeout();
            tracing::debug!("client read nothing for the write timeout; dropping it");
            true
        } else {
            false
        }
    }

    fn written<T>(
        &mut self,
        result: Poll<io::Result<T>>,
        cx: &mut Context<'_>,
    ) -> Poll<io::Result<T>> {
        match result {
            Poll::Pending if self.stalled(cx) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "client read nothing for the write timeout",
            ))),
            Poll::Pending => Poll::Pending,
            ready => {
                self.write_stall = None;
                ready
            }
        }
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for Guarded<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let routed = this.meter.routed();
        if routed != this.armed_at {
            // The head being timed was routed: the next one starts from scratch.
            this.head = None;
            this.head_started = false;
            this.armed_at = routed;
        }
        if !this.meter.awaiting_head() {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        }
        let before = buf.filled().len();
        let result = Pin::new(&mut this.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = &result
            && buf.filled().len() > before
            && !this.head_started
        {
            // The head has begun: from now on it has `request_timeout` to complete.
            this.head_started = true;
            this.head = Some(Box::pin(tokio::time::sleep(this.request_timeout)));
        }
        if result.is_ready() {
            return result;
        }
        let idle = this
            .head
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(KEEP_ALIVE_IDLE)));
        ready!(idle.as_mut().poll(cx));
        if this.head_started {
            this.metrics.record_request_timeout();
            // Best effort: the send buffer of a connection that has sent nothing back is empty.
            let _ = Pin::new(&mut this.inner).poll_write(cx, REQUEST_TIMEOUT_408);
            let _ = Pin::new(&mut this.inner).poll_flush(cx);
        }
        // End of stream: hyper closes the connection.
        this.head = Some(Box::pin(tokio::time::sleep_until(Instant::now())));
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> Guarded<S> {
    /// Starts replacing hyper's answer when `bytes` (everything hyper is writing) is one of its
    /// bodiless rejections and no request is being served (so no handler wrote it).
    fn replace_rejection(&mut self, bytes: impl FnOnce() -> Vec<u8>) {
        if self.replacing.is_some() || !self.meter.awaiting_head() {
            return;
        }
        let bytes = bytes();
        if let Some((status, answer)) = json_rejection(&bytes) {
            self.metrics
                .record_request(crate::metrics::Endpoint::Other, status);
            self.replacing = Some(Replacement {
                answer,
                written: 0,
                covers: bytes.len(),
            });
        }
    }

    /// Writes the replacement answer; ready with hyper's length once all of it is out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        while let Some(r) = &mut self.replacing {
            if r.written == r.answer.len() {
                let covers = r.covers;
                self.replacing = None;
                return Poll::Ready(Ok(covers));
            }
            let result = Pin::new(&mut self.inner).poll_write(cx, &r.answer[r.written..]);
            if let Poll::Ready(Ok(n)) = result {
                if n == 0 {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                r.written += n;
                self.write_stall = None;
                continue;
            }
            return self.written(result, cx);
        }
        Poll::Ready(Ok(0))
    }
}

/// Whether hyper's write may be the start of one of its own status lines (cheap pre-check
/// before anything is copied).
fn may_be_rejection(first: &[u8]) -> bool {
    first.starts_with(b"HTTP/1.1 4")
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if may_be_rejection(buf) {
            self.replace_rejection(|| buf.to_vec());
        }
        if self.replacing.is_some() {
            return self.poll_replacement(cx);
        }
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if bufs.first().is_some_and(|b| may_be_rejection(b)) {
            self.replace_rejection(|| bufs.iter().flat_map(|b| b.iter().copied()).collect());
        }
        if self.replacing.is_some() {
            return self.poll_replacement(cx);
        }
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.written(result, cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.written(result, cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
