//! One accepted TCP connection, metered: a socket wrapper that counts the bytes read and written
//! (headers and framing included) and holds a connection slot until the socket closes. The slot
//! and the meter travel inside the socket, so an upgraded WebSocket keeps both after hyper hands
//! the socket over.
//!
//! Which endpoint the bytes belong to is only known once a request is routed; the router's
//! middleware tells the [`ConnMeter`] (through a request extension). Bytes read are held back
//! until then, because on a keep-alive connection the next request's head is read while the
//! connection still belongs to the previous endpoint: they are credited when the request is
//! routed ([`ConnMeter::serve`]) and when its handler has finished reading the body
//! ([`ConnMeter::finish`]). Once a connection is a WebSocket, reads are frames and counted as
//! they come. Bytes written go to the endpoint being served (responses are written after their
//! request was routed and before the next one is).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::metrics::{Endpoint, Metrics, TcpSlot};
use crate::wire::Transport;

const UNROUTED: u8 = u8::MAX;

/// Per-connection byte attribution, shared between the socket and the requests it carries.
#[derive(Debug)]
pub struct ConnMeter {
    metrics: Arc<Metrics>,
    endpoint: AtomicU8,
    pending_read: AtomicU64,
    pending_written: AtomicU64,
}

impl ConnMeter {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        ConnMeter {
            metrics,
            endpoint: AtomicU8::new(UNROUTED),
            pending_read: AtomicU64::new(0),
            pending_written: AtomicU64::new(0),
        }
    }

    /// From now on this connection's bytes count for `endpoint`; the bytes read so far (this
    /// request's head) are credited to it.
    pub fn serve(&self, endpoint: Endpoint) {
        if self
            .endpoint
            .swap(endpoint.index() as u8, Ordering::Relaxed)
            == UNROUTED
        {
            self.metrics
                .record_sent(endpoint, self.pending_written.swap(0, Ordering::Relaxed));
        }
        self.metrics
            .record_received(endpoint, self.pending_read.swap(0, Ordering::Relaxed));
    }

    /// The handler has answered: what was read since [`ConnMeter::serve`] (the body) belongs to
    /// the endpoint being served.
    pub fn finish(&self) {
        if let Some(e) = self.current() {
            self.metrics
                .record_received(e, self.pending_read.swap(0, Ordering::Relaxed));
        }
    }

    fn current(&self) -> Option<Endpoint> {
        Endpoint::from_index(self.endpoint.load(Ordering::Relaxed) as usize)
    }

    fn read(&self, n: usize) {
        match self.current() {
            Some(e @ Endpoint::Transport(Transport::WebSocket)) => {
                self.metrics.record_received(e, n as u64)
            }
            _ => {
                self.pending_read.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    fn written(&self, n: usize) {
        match self.current() {
            Some(e) => self.metrics.record_sent(e, n as u64),
            None => {
                self.pending_written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// A TCP stream that reports its traffic to a [`ConnMeter`] and holds a connection slot.
#[derive(Debug)]
pub(crate) struct MeteredStream {
    tcp: TcpStream,
    meter: Arc<ConnMeter>,
    _slot: TcpSlot,
}

impl MeteredStream {
    pub(crate) fn new(tcp: TcpStream, meter: Arc<ConnMeter>, slot: TcpSlot) -> Self {
        MeteredStream {
            tcp,
            meter,
            _slot: slot,
        }
    }
}

impl AsyncRead for MeteredStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.tcp).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.meter.read(n);
        }
        result
    }
}

impl AsyncWrite for MeteredStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.meter.written(n);
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.meter.written(n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
