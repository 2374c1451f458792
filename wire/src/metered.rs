//! A byte-counting stream wrapper, shared by the server (each accepted socket) and the loadgen
//! (each client socket). Bytes are counted at the socket, beneath hyper and tungstenite, so
//! headers, chunk framing and WebSocket frame headers are all included: what is counted is what
//! crossed the connection, not what the application asked to send.
//!
//! The wrapper only observes; where the bytes are credited (an endpoint, a phase, a connection)
//! is decided by its [`Tally`], which each side implements for its own counters.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Where a [`Metered`] stream reports the bytes it moved. Called on the I/O path, so an
/// implementation should only bump counters (atomics), never block.
pub trait Tally {
    /// `n` (> 0) bytes were read from the stream.
    fn read(&self, n: usize);
    /// `n` bytes were accepted by the stream's write.
    fn written(&self, n: usize);
}

/// A stream that reports the bytes read from and written to `inner` to its [`Tally`]. The tally
/// travels inside the stream, so an upgraded WebSocket keeps it after hyper hands the socket over
/// (and anything the tally holds, such as the server's connection slot, lives as long as the
/// socket).
#[derive(Debug)]
pub struct Metered<S, T> {
    inner: S,
    tally: T,
}

impl<S, T: Tally> Metered<S, T> {
    /// Wraps `inner`, reporting its traffic to `tally`.
    pub fn new(inner: S, tally: T) -> Self {
        Metered { inner, tally }
    }

    /// The stream being metered (to look at it without reading: bytes seen so are not counted).
    pub fn get_ref(&self) -> &S {
        &self.inner
    }

    /// Where its traffic is reported: for a writer that shares the stream and writes to it
    /// directly (the server's fan-out), which must count what it wrote itself.
    pub fn tally(&self) -> &T {
        &self.tally
    }
}

impl<S: AsyncRead + Unpin, T: Tally + Unpin> AsyncRead for Metered<S, T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.tally.read(n);
        }
        result
    }
}

impl<S: AsyncWrite + Unpin, T: Tally + Unpin> AsyncWrite for Metered<S, T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = result {
            self.tally.written(n);
        }
        result
    }

    // Forwarded so hyper sees the socket's real capability: without it hyper treats the stream as
    // unable to gather and copies each head and body into one buffer before writing.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = result {
            self.tally.written(n);
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
