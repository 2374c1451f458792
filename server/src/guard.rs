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
        }
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Guarded<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.written(result, cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
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
