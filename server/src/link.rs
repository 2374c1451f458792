//! [`Link`]: one accepted socket written by two parties, the connection's own task and the
//! room's fan-out (`feed::fanout`), a whole frame at a time, so neither can cut into the other's
//! frame.
//!
//! The fan-out writes without waiting ([`Link::try_write_frames`]): when the socket is busy
//! with something of the connection's (the rest of a frame waits to go out) or its buffer is
//! full, the fan-out takes nothing, and lets go of the connection. A frame the kernel takes only
//! in part is finished by the connection's task: its rest waits in the link and goes out before
//! anything else. The connection's own writes ([`Link::poll_write`]) are made atomic the same
//! way: what the kernel does not take of a write is kept and reported written, so the caller
//! never holds half a frame the fan-out could write past. At most one frame's rest is kept.
//!
//! The connection's task does all waiting: for the socket to take the kept rest (through the
//! guarded socket, so the write-stall limit holds), for the client's bytes, and for the fan-out to
//! let go ([`Link::detached`]). The lock is a std `Mutex` held for one non-blocking socket call
//! at a time; the fan-out and the connection's task are the only two that take it.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::task::{Context, Poll, ready};

use futures_util::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use wire::metered::Tally;

use crate::held::Socket;

/// Slices per vectored write of the fan-out (Linux takes up to 1,024; 64 is a batch of 21 SSE
/// events or 32 WebSocket frames, kept on the stack).
const IOVECS: usize = 64;

/// No cursor was handed back (see [`Link::detach`]).
const ATTACHED: u64 = u64::MAX;

/// One socket shared by its connection's task and the room's fan-out.
pub(crate) struct Link {
    state: Mutex<Wire>,
    /// The cursor the fan-out handed back when it let go of this connection.
    handed_back: AtomicU64,
    /// The connection's task, woken when the fan-out lets go.
    task: AtomicWaker,
}

struct Wire {
    socket: Socket,
    /// The rest of a frame begun but not finished: written before anything else.
    rest: Vec<u8>,
}

impl Link {
    pub(crate) fn new(socket: Socket) -> Self {
        Link {
            state: Mutex::new(Wire {
                socket,
                rest: Vec::new(),
            }),
            handed_back: AtomicU64::new(ATTACHED),
            task: AtomicWaker::new(),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Wire> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The fan-out's write: as many of `frames` (each given as its `K` slices) as the socket takes
    /// now, without waiting. Returns how many frames were taken and whether the last of them went
    /// out whole; a frame taken in part has its rest kept, for the connection's task to finish.
    /// Takes nothing while the socket is busy with the rest of an earlier frame.
    pub(crate) fn try_write_frames<const K: usize>(&self, frames: &[[&[u8]; K]]) -> (usize, bool) {
        let mut wire = self.lock();
        if !wire.rest.is_empty() {
            return (0, true);
        }
        let per_call = (IOVECS / K).max(1);
        let mut taken = 0;
        for group in frames.chunks(per_call) {
            let mut slices = [IoSlice::new(&[]); IOVECS];
            let mut used = 0;
            for frame in group {
                for part in frame {
                    slices[used] = IoSlice::new(part);
                    used += 1;
                }
            }
            let metered = wire.socket.get_ref();
            let n = match metered.get_ref().try_write_vectored(&slices[..used]) {
                Ok(n) => n,
                // Full (or failing: the connection's task finds out when it writes or reads).
                Err(_) => return (taken, true),
            };
            metered.tally().written(n);
            // Which frames went out whole, and what is left of the one that did not.
            let mut left = n;
            for frame in group {
                let len: usize = frame.iter().map(|p| p.len()).sum();
                if left >= len {
                    left -= len;
                    taken += 1;
                    continue;
                }
                if left > 0 {
                    let mut skip = left;
                    for part in frame {
                        let from = skip.min(part.len());
                        wire.rest.extend_from_slice(&part[from..]);
                        skip -= from;
                    }
                    return (taken + 1, false);
                }
                return (taken, true);
            }
        }
        (taken, true)
    }

    /// Writes the kept rest of a frame, if any (waiting for the socket as a guarded write does).
    fn poll_rest(wire: &mut Wire, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !wire.rest.is_empty() {
            let n = ready!(Pin::new(&mut wire.socket).poll_write(cx, &wire.rest))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            wire.rest.drain(..n);
        }
        // A buffer that held a large frame's rest is not kept for the connection's life.
        if wire.rest.capacity() > 0 {
            wire.rest = Vec::new();
        }
        Poll::Ready(Ok(()))
    }

    /// Finishes a frame the fan-out began (ready at once when there is none).
    pub(crate) fn poll_drain(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Self::poll_rest(&mut self.lock(), cx)
    }

    /// The fan-out let go of this connection at `cursor`; wakes the connection's task.
    pub(crate) fn detach(&self, cursor: u64) {
        self.handed_back.store(cursor, Ordering::Release);
        self.task.wake();
    }

    /// Ready with the cursor once the fan-out has let go (see [`Link::detach`]).
    pub(crate) fn poll_detached(&self, cx: &mut Context<'_>) -> Poll<u64> {
        self.task.register(cx.waker());
        match self.handed_back.swap(ATTACHED, Ordering::AcqRel) {
            ATTACHED => Poll::Pending,
            cursor => Poll::Ready(cursor),
        }
    }

    /// The connection's own write of a frame given in `parts`, whole, waiting as long as the
    /// socket needs (within the write-stall limit).
    pub(crate) async fn write_all(&self, parts: &[&[u8]]) -> io::Result<()> {
        for part in parts {
            std::future::poll_fn(|cx| self.poll_write(cx, part)).await?;
        }
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    /// Ready once the client has closed its side (or the socket failed); what it sends meanwhile
    /// is read and dropped (a stream's client has nothing to say).
    pub(crate) async fn client_gone(&self) {
        std::future::poll_fn(|cx| {
            let mut sink = [0u8; 64];
            loop {
                let mut buf = ReadBuf::new(&mut sink);
                match ready!(self.poll_read(cx, &mut buf)) {
                    Ok(()) if !buf.filled().is_empty() => continue,
                    _ => return Poll::Ready(()),
                }
            }
        })
        .await
    }

    /// The connection's read.
    pub(crate) fn poll_read(
        &self,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.lock().socket).poll_read(cx, buf)
    }

    /// The connection's write, atomic: after the kept rest, `buf` goes out whole or, when the
    /// socket takes part of it, its rest is kept and the whole counted written; `Pending` means
    /// none of it went out.
    pub(crate) fn poll_write(&self, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let mut wire = self.lock();
        ready!(Self::poll_rest(&mut wire, cx))?;
        let n = ready!(Pin::new(&mut wire.socket).poll_write(cx, buf))?;
        if n < buf.len() {
            wire.rest.extend_from_slice(&buf[n..]);
        }
        Poll::Ready(Ok(buf.len()))
    }

    pub(crate) fn poll_flush(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wire = self.lock();
        ready!(Self::poll_rest(&mut wire, cx))?;
        Pin::new(&mut wire.socket).poll_flush(cx)
    }

    pub(crate) fn poll_shutdown(&self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut wire = self.lock();
        ready!(Self::poll_rest(&mut wire, cx))?;
        Pin::new(&mut wire.socket).poll_shutdown(cx)
    }
}

/// A [`Link`] as a byte stream, for a protocol library that reads and writes the connection's
/// own frames (tungstenite, for a WebSocket).
pub(crate) struct LinkIo<T>(pub(crate) std::sync::Arc<T>);

/// What holds a connection's [`Link`].
pub(crate) trait HasLink {
    fn link(&self) -> &Link;
}

impl<T: HasLink> AsyncRead for LinkIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.0.link().poll_read(cx, buf)
    }
}

impl<T: HasLink> AsyncWrite for LinkIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.0.link().poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.link().poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.0.link().poll_shutdown(cx)
    }
}
