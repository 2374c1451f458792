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
//! never holds half a frame the fan-out could write past; a frame given in parts
//! ([`Link::write_all`]) goes out in one vectored write, so the fan-out cannot write between its
//! parts. At most one frame's rest is kept.
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

use crate::feed::{BATCH, Entry, Offer};
use crate::held::Socket;
use crate::metrics::Metrics;
use wire::Transport;

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
    /// socket needs (within the write-stall limit). The parts go out in one vectored write under
    /// one turn of the lock (what the kernel does not take is kept as the rest): written one by
    /// one, the fan-out could write a frame of its own between two parts of this one (an SSE
    /// ping's size line, then a message's chunk, then the ping).
    pub(crate) async fn write_all(&self, parts: &[&[u8]]) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_write_parts(cx, parts)).await?;
        std::future::poll_fn(|cx| self.poll_drain(cx)).await
    }

    /// [`Link::poll_write`] of a frame given in parts (at most [`IOVECS`]).
    fn poll_write_parts(&self, cx: &mut Context<'_>, parts: &[&[u8]]) -> Poll<io::Result<()>> {
        assert!(parts.len() <= IOVECS, "a frame of at most {IOVECS} parts");
        let mut wire = self.lock();
        ready!(Self::poll_rest(&mut wire, cx))?;
        if parts.iter().all(|p| p.is_empty()) {
            return Poll::Ready(Ok(()));
        }
        let mut slices = [IoSlice::new(&[]); IOVECS];
        for (slice, part) in slices.iter_mut().zip(parts) {
            *slice = IoSlice::new(part);
        }
        let n = ready!(Pin::new(&mut wire.socket).poll_write_vectored(cx, &slices[..parts.len()]))?;
        let mut skip = n;
        for part in parts {
            let from = skip.min(part.len());
            wire.rest.extend_from_slice(&part[from..]);
            skip -= from;
        }
        Poll::Ready(Ok(()))
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

/// How a transport frames one entry for the fan-out's write, as `K` slices: some made per frame
/// into a `Scratch` (a WebSocket frame's header, an SSE chunk's size line), the rest the entry's
/// shared bytes. [`Link::offer`] does the rest, the same for every transport.
pub(crate) trait Framing<const K: usize> {
    /// What one frame needs made for it.
    type Scratch: Default;

    /// Makes what `entry`'s frame needs into `scratch`.
    fn prepare(&self, entry: &Entry, scratch: &mut Self::Scratch);

    /// `entry`'s frame, as slices of `scratch` and of the entry.
    fn slices<'a>(&self, entry: &'a Entry, scratch: &'a Self::Scratch) -> [&'a [u8]; K];
}

impl Link {
    /// A fan-out subscriber's offer (`feed::Subscriber::offer`): `entries` framed by `framing`,
    /// written as [`Link::try_write_frames`] takes them, a batch's worth ([`BATCH`]) per vectored
    /// write, each delivery counted under `transport`.
    pub(crate) fn offer<const K: usize, F: Framing<K>>(
        &self,
        framing: &F,
        entries: &[std::sync::Arc<Entry>],
        metrics: &Metrics,
        transport: Transport,
    ) -> Offer {
        const N: usize = BATCH.messages;
        let mut taken = 0;
        for group in entries.chunks(N) {
            let mut scratch: [F::Scratch; N] = std::array::from_fn(|_| F::Scratch::default());
            for (entry, scratch) in group.iter().zip(&mut scratch) {
                framing.prepare(entry, scratch);
            }
            let frames: [[&[u8]; K]; N] = std::array::from_fn(|i| {
                group
                    .get(i)
                    .map_or([&[][..]; K], |entry| framing.slices(entry, &scratch[i]))
            });
            let (n, whole) = self.try_write_frames(&frames[..group.len()]);
            metrics.record_deliveries(transport, n as u64);
            taken += n;
            if n < group.len() || !whole {
                return Offer::Stopped { taken };
            }
        }
        Offer::Sent
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

#[cfg(test)]
mod tests {
    //! The link's contract over a real loopback pair: a frame is never cut into, a rest the
    //! kernel did not take goes out first, and every byte is counted.

    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    use tokio::io::AsyncReadExt;
    use tokio::net::{TcpListener, TcpSocket, TcpStream};
    use wire::Transport;
    use wire::metered::Metered;

    use crate::conn::{ConnMeter, SocketTally};
    use crate::guard::Guarded;
    use crate::metrics::{Endpoint, Metrics};

    /// A link over an accepted socket (guarded and metered as the server's are, its bytes
    /// counted for SSE) and the client's end, whose receive window is small.
    async fn pair(metrics: &Arc<Metrics>) -> (Link, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpSocket::new_v4().unwrap();
        client.set_recv_buffer_size(4096).unwrap();
        let (peer, accepted) = tokio::join!(
            client.connect(listener.local_addr().unwrap()),
            listener.accept()
        );
        let meter = Arc::new(ConnMeter::new(metrics.clone()));
        meter.serve(Endpoint::Transport(Transport::Sse));
        meter.upgrade();
        let tally = SocketTally::new(meter.clone(), metrics.tcp_slot(), None);
        let socket = Guarded::new(
            Metered::new(accepted.unwrap().0, tally),
            meter,
            metrics.clone(),
            Duration::from_secs(20),
            Duration::from_secs(20),
        );
        (Link::new(socket), peer.unwrap())
    }

    fn read_all(mut peer: TcpStream) -> tokio::task::JoinHandle<Vec<u8>> {
        tokio::spawn(async move {
            let mut got = Vec::new();
            peer.read_to_end(&mut got).await.unwrap();
            got
        })
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_frame_the_kernel_takes_in_part_is_finished_before_anything_else() {
        let metrics = Arc::new(Metrics::default());
        let (link, peer) = pair(&metrics).await;
        // More than any loopback socket buffers while the client reads nothing.
        let body: Vec<u8> = (0..16 << 20).map(|i| (i % 251) as u8).collect();
        let head = b"HEAD".as_slice();
        assert_eq!(
            link.try_write_frames(&[[head, &body]]),
            (1, false),
            "the kernel takes part of a 16 MiB frame: the frame is the subscriber's, in part"
        );
        // The fan-out takes nothing while the rest waits (nor when the socket is full).
        assert_eq!(link.try_write_frames(&[[b"<".as_slice(), b">"]]), (0, true));
        let got = read_all(peer);
        // The connection's own frame goes out after the rest.
        link.write_all(&[b"tail"]).await.unwrap();
        std::future::poll_fn(|cx| link.poll_shutdown(cx))
            .await
            .unwrap();
        let got = got.await.unwrap();
        let mut want = head.to_vec();
        want.extend_from_slice(&body);
        want.extend_from_slice(b"tail");
        assert_eq!(got.len(), want.len());
        assert!(got == want, "the rest went out whole, first");
        assert_eq!(
            metrics.transport(Transport::Sse).bytes_sent,
            want.len() as u64,
            "the fan-out's bytes and the connection's are counted"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_fan_out_never_writes_between_the_parts_of_the_connections_frame() {
        const ROUNDS: usize = 20_000;
        let metrics = Arc::new(Metrics::default());
        let (link, peer) = pair(&metrics).await;
        let link = Arc::new(link);
        let got = read_all(peer);
        // The fan-out, on a thread of its own, writes `<bbbb>` as fast as it can.
        let fanout = {
            let link = link.clone();
            std::thread::spawn(move || {
                let mut frames = 0;
                while frames < ROUNDS {
                    frames += link.try_write_frames(&[[b"<bb".as_slice(), b"bb>"]]).0;
                }
            })
        };
        // The connection writes `[aaaa]` in three parts.
        for _ in 0..ROUNDS {
            link.write_all(&[b"[", b"aaaa", b"]"]).await.unwrap();
        }
        fanout.join().unwrap();
        link.write_all(&[]).await.unwrap();
        std::future::poll_fn(|cx| link.poll_shutdown(cx))
            .await
            .unwrap();
        let got = got.await.unwrap();
        let (mut a, mut b) = (0, 0);
        let mut at = 0;
        while at < got.len() {
            match &got[at..(at + 6).min(got.len())] {
                b"[aaaa]" => a += 1,
                b"<bbbb>" => b += 1,
                other => panic!(
                    "a frame was cut into at byte {at}: {:?}",
                    String::from_utf8_lossy(other)
                ),
            }
            at += 6;
        }
        assert_eq!((a, b), (ROUNDS, ROUNDS));
    }
}
