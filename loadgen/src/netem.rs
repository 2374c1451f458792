//! The in-process network emulator: a delay proxy wrapped around one client connection.
//!
//! On loopback every transport answers in microseconds, so the push transports look identical and
//! long polling looks free. [`emulate`] puts a round trip, jitter and (optionally) a bandwidth cap
//! between a simulated client and its real socket, without root, `tc netem` or any kernel setup,
//! and without an extra file descriptor: the client talks to an in-memory pipe, and two tasks pump
//! bytes between that pipe and the real socket, holding every chunk for its delay.
//!
//! What it models, per connection and per direction:
//! - **delay**: every chunk is released `rtt / 2` after it arrived, plus a uniform random jitter in
//!   `[0, jitter]` drawn per chunk;
//! - **order**: a chunk is never released before the one ahead of it, as TCP's receiver would
//!   reassemble them; so under bursts a chunk can wait a little longer than its own draw, but its
//!   delay always stays within `[rtt / 2, rtt / 2 + jitter]`;
//! - **bandwidth** (optional): chunks queue for a link that sends `bandwidth` bytes per second,
//!   store-and-forward in segments of at most [`SEGMENT_BYTES`];
//! - **end of stream and errors**: an EOF or a read error travels behind the data sent before it,
//!   with the same delay; the client sees the real error kind (e.g. `ConnectionReset`).
//!
//! What it leaves out: the TCP handshake happens on the real socket before wrapping, so connecting
//! costs nothing here; callers who want it charged sleep [`NetworkConditions::connect_delay`] after
//! connecting. Loss and retransmission are not modelled. Traffic counting is not done here either:
//! the clients count bytes on the real socket beneath this wrapper.
//!
//! Memory stays bounded: each direction holds at most [`QUEUE_LIMIT_BYTES`] in flight (past that it
//! stops reading, which pushes back on the sender as a full TCP window would), the client pipe holds
//! at most [`PIPE_BYTES`] per direction, and an idle connection keeps no read buffer (reads go
//! through a per-thread scratch buffer), which matters at thousands of connections.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::io;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::{CancellationToken, DropGuard};

/// Bytes one direction may hold in flight before it stops reading from its source.
///
/// Like a TCP window this caps throughput at `QUEUE_LIMIT_BYTES / one-way delay` (5 MB/s at
/// 50 ms), far above what chat traffic needs, while keeping a fast sender from growing memory.
pub const QUEUE_LIMIT_BYTES: usize = 256 * 1024;

/// Capacity of the in-memory pipe between the client and the pumps, per direction.
pub const PIPE_BYTES: usize = 64 * 1024;

/// Largest chunk read at once; the unit that is delayed and released together.
const READ_CHUNK_BYTES: usize = 16 * 1024;

/// Chunk size when a bandwidth cap is set: about one Ethernet TCP segment, so pacing is smooth
/// rather than one 16 KiB burst per serialization time.
pub const SEGMENT_BYTES: usize = 1448;

/// How long, after the client dropped its end, the upstream pump may still spend delivering what
/// the client wrote before (e.g. a WebSocket close frame), on top of the one-way delay. It bounds
/// the life of the pump when the server stops reading.
const LINGER: Duration = Duration::from_secs(2);

/// The network between a simulated client and the server, applied to each connection on its own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetworkConditions {
    /// Round-trip time added; each direction gets half of it.
    pub rtt: Duration,
    /// Upper bound of the random extra delay added to each chunk in each direction.
    pub jitter: Duration,
    /// Bandwidth cap in bytes per second, per connection and per direction; `None` is unlimited.
    pub bandwidth: Option<u64>,
}

impl NetworkConditions {
    /// Loopback as it is: no delay, no jitter, no cap.
    pub const IDEAL: Self = Self {
        rtt: Duration::ZERO,
        jitter: Duration::ZERO,
        bandwidth: None,
    };

    /// Conditions with a round trip and jitter and no bandwidth cap.
    pub fn new(rtt: Duration, jitter: Duration) -> Self {
        Self {
            rtt,
            jitter,
            bandwidth: None,
        }
    }

    /// The same conditions with a bandwidth cap, bytes per second per direction.
    pub fn with_bandwidth(self, bytes_per_second: u64) -> Self {
        Self {
            bandwidth: Some(bytes_per_second),
            ..self
        }
    }

    /// True when emulation would change nothing, so callers can skip the proxy entirely.
    pub fn is_ideal(&self) -> bool {
        self.rtt.is_zero() && self.jitter.is_zero() && self.bandwidth.is_none()
    }

    /// The fixed part of the delay each direction adds: half the round trip (the models' `d`).
    pub fn one_way_delay(&self) -> Duration {
        self.rtt / 2
    }

    /// What a TCP handshake would cost on this network (SYN out, SYN-ACK back): one round trip.
    /// The proxy wraps an already connected socket, so callers sleep this long to charge it.
    pub fn connect_delay(&self) -> Duration {
        self.rtt
    }
}

impl From<crate::scenario::Network> for NetworkConditions {
    fn from(network: crate::scenario::Network) -> Self {
        Self {
            rtt: network.rtt,
            jitter: network.jitter,
            bandwidth: network.bandwidth_bytes_per_s,
        }
    }
}

impl From<NetworkConditions> for report::results::NetworkInfo {
    fn from(conditions: NetworkConditions) -> Self {
        Self {
            rtt_ms: conditions.rtt.as_secs_f64() * 1e3,
            jitter_ms: conditions.jitter.as_secs_f64() * 1e3,
            bandwidth_bytes_per_s: conditions.bandwidth.map(|b| b as f64),
        }
    }
}

/// Wraps a connected stream so that everything crossing it in either direction is delayed as
/// `conditions` say. Spawns two tasks on the current tokio runtime; they end by themselves when
/// both sides are done (or shortly after the returned stream is dropped), so nothing leaks.
pub fn emulate<S>(stream: S, conditions: NetworkConditions) -> DelayedStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    emulate_seeded(stream, conditions, rand::rng().random())
}

/// Like [`emulate`], with the jitter of both directions drawn from `seed` (so a run's seed
/// makes its network's random delays reproducible).
pub fn emulate_seeded<S>(stream: S, conditions: NetworkConditions, seed: u64) -> DelayedStream
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client_end, proxy_end) = tokio::io::duplex(PIPE_BYTES);
    let (server_read, server_write) = tokio::io::split(stream);
    let (proxy_read, proxy_write) = tokio::io::split(proxy_end);
    let link = Arc::new(LinkState::default());
    let client_gone = CancellationToken::new();

    // Upstream (client -> server): on client drop, keep delivering what was already written
    // (a close frame, a FIN) for a bounded while, then give up.
    let upstream_stop = {
        let token = client_gone.clone();
        let limit = conditions.one_way_delay() + conditions.jitter + LINGER;
        async move {
            token.cancelled().await;
            tokio::time::sleep(limit).await;
        }
    };
    let upstream_link = Arc::clone(&link);
    tokio::spawn(async move {
        // The client pipe cannot fail; the real socket can, and the client's next write says so.
        let failures = Failures {
            source: None,
            destination: Some(&upstream_link.write_error),
        };
        pump(
            proxy_read,
            server_write,
            Shaper::new(conditions, seed),
            upstream_stop,
            failures,
        )
        .await;
    });

    // Downstream (server -> client): once the client is gone there is no one to deliver to.
    let downstream_stop = client_gone.clone().cancelled_owned();
    let downstream_link = Arc::clone(&link);
    tokio::spawn(async move {
        // A read error on the real socket is what the client should see after the data; a
        // failed write into the pipe only means the client went away.
        let failures = Failures {
            source: Some(&downstream_link.read_error),
            destination: None,
        };
        pump(
            server_read,
            proxy_write,
            Shaper::new(conditions, seed ^ 1),
            downstream_stop,
            failures,
        )
        .await;
    });

    DelayedStream {
        pipe: client_end,
        link,
        _client_gone: client_gone.drop_guard(),
    }
}

/// The client's side of an emulated connection: read and write it like the socket it wraps.
///
/// Dropping it closes the connection as closing a socket would: data already written still
/// reaches the server after the delay, followed by an end of stream.
#[derive(Debug)]
pub struct DelayedStream {
    pipe: DuplexStream,
    link: Arc<LinkState>,
    // Declared last so it is dropped after `pipe`: the pumps see the pipe closed, then stop.
    _client_gone: DropGuard,
}

/// Failures of the real socket, handed from the pumps to the client side.
#[derive(Debug, Default)]
struct LinkState {
    /// The real socket failed while reading from the server; replaces the client's EOF.
    read_error: ErrorSlot,
    /// The real socket failed while writing to the server; fails the client's later writes.
    write_error: ErrorSlot,
}

/// The first error seen in one direction. `io::Error` is not `Clone`, so the kind and message are
/// kept and rebuilt for each caller. A std mutex: it is held only to copy in or out, never across
/// an await.
#[derive(Debug, Default)]
struct ErrorSlot(Mutex<Option<(io::ErrorKind, String)>>);

impl ErrorSlot {
    fn record(&self, e: &io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        slot.get_or_insert_with(|| (e.kind(), e.to_string()));
    }

    fn error(&self) -> Option<io::Error> {
        let slot = self.0.lock().unwrap_or_else(|poison| poison.into_inner());
        slot.as_ref()
            .map(|(kind, message)| io::Error::new(*kind, message.clone()))
    }
}

/// Where one pump reports failures of its source and of its destination, if anyone listens.
struct Failures<'a> {
    source: Option<&'a ErrorSlot>,
    destination: Option<&'a ErrorSlot>,
}

impl AsyncRead for DelayedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.pipe).poll_read(cx, buf))?;
        let at_eof = buf.filled().len() == before && buf.remaining() > 0;
        match self.link.read_error.error() {
            Some(e) if at_eof => Poll::Ready(Err(e)),
            _ => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for DelayedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.link.write_error.error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.pipe).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.link.write_error.error() {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.pipe).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.pipe.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.pipe).poll_shutdown(cx)
    }
}

/// Decides when each chunk of one direction is released.
struct Shaper {
    one_way: Duration,
    jitter_ns: u64,
    bytes_per_second: Option<u64>,
    /// When the emulated link finishes sending what it already holds (bandwidth pacing).
    link_free: Instant,
    /// Release time of the previous chunk: no chunk overtakes it.
    last_release: Instant,
    /// Per-pump generator: `Send`, unlike the thread-local one, cheap to draw from, and seeded
    /// (from the run's seed when the connector has one).
    rng: SmallRng,
}

impl Shaper {
    fn new(conditions: NetworkConditions, seed: u64) -> Self {
        let now = Instant::now();
        Self {
            one_way: conditions.one_way_delay(),
            jitter_ns: u64::try_from(conditions.jitter.as_nanos()).unwrap_or(u64::MAX),
            bytes_per_second: conditions.bandwidth.filter(|&b| b > 0),
            link_free: now,
            last_release: now,
            rng: SmallRng::seed_from_u64(seed),
        }
    }

    fn chunk_bytes(&self) -> usize {
        if self.bytes_per_second.is_some() {
            SEGMENT_BYTES
        } else {
            READ_CHUNK_BYTES
        }
    }

    /// The release time of a chunk of `len` bytes that arrived at `arrival`.
    fn release_time(&mut self, arrival: Instant, len: usize) -> Instant {
        let sent = match self.bytes_per_second {
            Some(rate) => {
                let start = arrival.max(self.link_free);
                self.link_free = start + Duration::from_secs_f64(len as f64 / rate as f64);
                self.link_free
            }
            None => arrival,
        };
        let jitter = if self.jitter_ns == 0 {
            Duration::ZERO
        } else {
            Duration::from_nanos(self.rng.random_range(0..=self.jitter_ns))
        };
        let release = (sent + self.one_way + jitter).max(self.last_release);
        self.last_release = release;
        release
    }
}

/// A chunk in flight.
struct Held {
    release: Instant,
    bytes: Bytes,
}

/// Moves bytes from `from` to `to`, holding each chunk until the shaper releases it, until the
/// source ends and its end is delivered behind the data, the destination fails, or `stop`
/// completes. Failures are recorded as they happen; the client side surfaces a source failure
/// only at its end of stream, so recording early cannot overtake the data.
async fn pump<R, W>(
    mut from: R,
    mut to: W,
    mut shaper: Shaper,
    stop: impl Future<Output = ()>,
    failures: Failures<'_>,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let mut stop = pin!(stop);
    let mut queue: VecDeque<Held> = VecDeque::new();
    let mut queued_bytes = 0usize;
    // Set when the source ends (EOF or error): when that end reaches the destination.
    let mut end_release: Option<Instant> = None;
    let chunk_bytes = shaper.chunk_bytes();

    while end_release.is_none() || !queue.is_empty() {
        let due = queue.front().map(|held| held.release);
        // Biased: stopping wins, then releasing (so a chunk is not late because reads kept
        // coming), then reading.
        tokio::select! {
            biased;
            () = &mut stop => return,
            () = sleep_until(due.unwrap_or_else(Instant::now)), if due.is_some() => {
                // Release everything that is due in one go, in order.
                let now = Instant::now();
                while queue.front().is_some_and(|held| held.release <= now) {
                    let Some(held) = queue.pop_front() else { break };
                    queued_bytes -= held.bytes.len();
                    tokio::select! {
                        biased;
                        () = &mut stop => return,
                        written = to.write_all(&held.bytes) => if let Err(e) = written {
                            if let Some(slot) = failures.destination {
                                slot.record(&e);
                            }
                            return;
                        },
                    }
                }
            }
            read = poll_fn(|cx| poll_read_chunk(&mut from, cx, chunk_bytes)),
                if end_release.is_none() && queued_bytes < QUEUE_LIMIT_BYTES =>
            {
                let arrival = Instant::now();
                match read {
                    Ok(bytes) if bytes.is_empty() => {
                        end_release = Some(shaper.release_time(arrival, 0));
                    }
                    Ok(bytes) => {
                        queued_bytes += bytes.len();
                        let release = shaper.release_time(arrival, bytes.len());
                        queue.push_back(Held { release, bytes });
                    }
                    Err(e) => {
                        if let Some(slot) = failures.source {
                            slot.record(&e);
                        }
                        end_release = Some(shaper.release_time(arrival, 0));
                    }
                }
            }
        }
    }

    // Everything before the end is delivered; the end itself travels with the same delay.
    if let Some(end_release) = end_release {
        tokio::select! {
            biased;
            () = &mut stop => return,
            () = sleep_until(end_release) => {}
        }
    }
    if let Err(e) = to.shutdown().await {
        // The other side already went away; a failed shutdown then says nothing new.
        tracing::trace!(error = %e, "netem: shutdown after end of stream failed");
    }
}

thread_local! {
    /// Scratch space for reads: a read borrows it only for one synchronous poll and copies what
    /// it got into an exact-size `Bytes`, so thousands of idle connections hold no buffers.
    static SCRATCH: RefCell<Box<[u8]>> = RefCell::new(vec![0; READ_CHUNK_BYTES].into_boxed_slice());
}

/// Reads one chunk of at most `limit` bytes; an empty `Bytes` means end of stream. Cancel safe:
/// if it returns `Pending`, nothing was read.
fn poll_read_chunk<R: AsyncRead + Unpin>(
    from: &mut R,
    cx: &mut Context<'_>,
    limit: usize,
) -> Poll<io::Result<Bytes>> {
    let limit = limit.min(READ_CHUNK_BYTES);
    SCRATCH.with(|scratch| match scratch.try_borrow_mut() {
        Ok(mut scratch) => read_into(from, cx, &mut scratch[..limit]),
        // Only reachable if a reader re-enters this function from inside its own poll; stay
        // correct with a one-off buffer rather than panic.
        Err(_) => read_into(from, cx, &mut vec![0; limit]),
    })
}

fn read_into<R: AsyncRead + Unpin>(
    from: &mut R,
    cx: &mut Context<'_>,
    scratch: &mut [u8],
) -> Poll<io::Result<Bytes>> {
    let mut buf = ReadBuf::new(scratch);
    ready!(Pin::new(from).poll_read(cx, &mut buf))?;
    Poll::Ready(Ok(Bytes::copy_from_slice(buf.filled())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shaper(conditions: NetworkConditions) -> Shaper {
        Shaper::new(conditions, 0)
    }

    #[test]
    fn release_is_one_way_delay_after_arrival_without_jitter() {
        let mut s = shaper(NetworkConditions::new(
            Duration::from_millis(100),
            Duration::ZERO,
        ));
        let t0 = Instant::now();
        assert_eq!(s.release_time(t0, 10), t0 + Duration::from_millis(50));
    }

    #[test]
    fn the_same_seed_draws_the_same_jitter() {
        let conditions =
            NetworkConditions::new(Duration::from_millis(40), Duration::from_millis(30));
        let t0 = Instant::now();
        // Chunks 100 ms apart, so no release waits for the one before and each shows its draw.
        let delays = |seed| {
            let mut s = Shaper::new(conditions, seed);
            (0..50u64)
                .map(|i| {
                    let arrival = t0 + Duration::from_millis(i * 100);
                    s.release_time(arrival, 1) - arrival
                })
                .collect::<Vec<_>>()
        };
        assert_eq!(delays(42), delays(42));
        assert_ne!(delays(42), delays(43));
    }

    #[test]
    fn jittered_releases_stay_within_bounds_and_never_go_backwards() {
        let conditions =
            NetworkConditions::new(Duration::from_millis(40), Duration::from_millis(30));
        let mut s = shaper(conditions);
        let t0 = Instant::now();
        let mut previous = t0;
        for i in 0..2_000u64 {
            let arrival = t0 + Duration::from_micros(i * 100);
            let release = s.release_time(arrival, 1);
            assert!(release >= previous, "chunk {i} overtook the one before it");
            let delay = release - arrival;
            assert!(
                delay >= Duration::from_millis(20),
                "chunk {i} early: {delay:?}"
            );
            assert!(
                delay <= Duration::from_millis(50),
                "chunk {i} late: {delay:?}"
            );
            previous = release;
        }
        // Chunks 0.1 ms apart mostly wait for the one ahead of them, so their delays bunch up
        // near the largest recent jitter. Chunks further apart than the jitter are independent:
        // 200 draws from 0..30 ms span at least 10 ms unless the jitter does nothing (the
        // chance of a smaller span by luck is about 1e-30).
        let mut s = shaper(conditions);
        let sparse: Vec<Duration> = (0..200u64)
            .map(|i| {
                let arrival = t0 + Duration::from_millis(i * 100);
                s.release_time(arrival, 1) - arrival
            })
            .collect();
        let spread = *sparse.iter().max().unwrap() - *sparse.iter().min().unwrap();
        assert!(
            spread >= Duration::from_millis(10),
            "jitter had no effect: {spread:?}"
        );
    }

    #[test]
    fn bandwidth_paces_chunks_back_to_back() {
        let conditions = NetworkConditions::IDEAL.with_bandwidth(1_000);
        let mut s = shaper(conditions);
        let t0 = Instant::now();
        // Two 500-byte chunks arriving together leave the 1 kB/s link after 0.5 s and 1 s.
        assert_eq!(s.release_time(t0, 500), t0 + Duration::from_millis(500));
        assert_eq!(s.release_time(t0, 500), t0 + Duration::from_secs(1));
    }

    #[test]
    fn ideal_conditions_are_recognised() {
        assert!(NetworkConditions::IDEAL.is_ideal());
        assert!(NetworkConditions::default().is_ideal());
        assert!(!NetworkConditions::new(Duration::from_millis(1), Duration::ZERO).is_ideal());
        assert!(!NetworkConditions::IDEAL.with_bandwidth(1).is_ideal());
    }
}
