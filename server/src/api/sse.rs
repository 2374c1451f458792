//! `GET .../sse`: one long-lived `text/event-stream` response per client. The stream is written
//! off hyper, on the bare socket (`crate::held`), so an idle stream does not keep hyper's
//! buffers. Once it has caught up with the room it attaches to the room's fan-out
//! (`feed::fanout`), which writes each new message's chunk (its size line, the entry's shared
//! event bytes, CRLF) to the socket itself, through the [`Link`] the stream's task shares with
//! it; whenever the fan-out lets go, the task reads the room from the cursor handed back, so a
//! slow client only falls behind (the next chunk is made when the socket has taken the last) and
//! gets an `event: gap` when history moved past it. A request hyper keeps (`HEAD`, HTTP/1.0) is
//! served as a body stream that reads the room whenever the head moves. Events are written by
//! hand rather than with axum's `Sse` type so the message JSON is the feed's shared bytes, never
//! re-encoded.
//!
//! Format (README.md's wire API section; `docs/ARCHITECTURE.md` shows where it fits):
//! `id: <epoch>-<seq>` / `event: <event>` / `data: <message json>`; a gap or a reset is `event: gap|reset` with the
//! [`StreamItem`] JSON as data and, as its `id:`, the cursor after it (so an `EventSource`
//! reconnect resumes from there); `: ping` every 15 s.

use std::convert::Infallible;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::extract::{Target, cursor};
use crate::feed::{Attachment, Cursor, Entry, Epoch, Follower, Limit, Offer, Read, Subscriber};
use crate::held::{Hold, Opening, Socket, chunk_size};
use crate::link::{Framing, Link};
use crate::metrics::{Metrics, OpenGuard};
use crate::state::AppState;
use wire::{StreamItem, Transport};

/// A comment line this often keeps proxies and idle timers from closing a quiet stream.
const PING_EVERY: Duration = Duration::from_secs(15);
/// Read per chunk: bounds the chunk size (and the lock hold) for a client far behind.
const CHUNK_LIMIT: Limit = Limit {
    messages: 64,
    bytes: 256 * 1024,
};

pub(super) async fn sse(
    State(state): State<AppState>,
    target: Target,
    headers: HeaderMap,
    hold: Option<Hold>,
) -> Result<Response, ApiError> {
    // EventSource resends the original URL (with its `since`) on reconnect and adds the header,
    // so the header is the newer position.
    let since = last_event_id(&headers)?.or(target.since);
    // The position is fixed here, before the headers go out: once a client has the `200`, every
    // later publish is in its stream.
    let room = target.open()?;
    let stream = SseStream {
        follower: Follower::start(room, since, target.client, CHUNK_LIMIT).await,
        ping: ping_interval(),
        shutdown: state.shutdown.clone(),
        metrics: state.metrics.clone(),
        _open: state.metrics.open(Transport::Sse),
    };
    let head = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Tell a reverse proxy (nginx) not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok(match hold {
        // Off hyper, on the bare socket: hyper's buffers are not kept for the stream's life.
        Some(hold) => hold.stream(
            (StatusCode::OK, head).into_response(),
            Box::new(|socket, opening| Box::pin(stream.serve(socket, opening))),
        ),
        None => {
            let events = futures_util::stream::unfold(stream, |mut s| async move {
                let chunk = s.next_chunk().await?;
                Some((chunk, s))
            });
            (
                StatusCode::OK,
                head,
                Body::from_stream(events.map(Ok::<_, Infallible>)),
            )
                .into_response()
        }
    })
}

/// The `Last-Event-ID` header, checked like `since`: an `EventSource` reconnecting sends the
/// `id:` of the last event it saw (`<epoch>-<seq>`; a bare seq is read as the current epoch).
fn last_event_id(headers: &HeaderMap) -> Result<Option<Cursor>, ApiError> {
    let Some(id) = headers.get("last-event-id") else {
        return Ok(None);
    };
    let id = id
        .to_str()
        .map_err(|_| ApiError::param("Last-Event-ID", "not text"))?;
    cursor("Last-Event-ID", id.trim()).map(Some)
}

fn ping_interval() -> Interval {
    let mut ping = tokio::time::interval_at(Instant::now() + PING_EVERY, PING_EVERY);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    ping
}

/// One client's stream: its place in the room and its ping timer.
struct SseStream {
    follower: Follower,
    ping: Interval,
    shutdown: CancellationToken,
    metrics: Arc<Metrics>,
    _open: OpenGuard,
}

impl SseStream {
    /// The next bytes to send, or `None` to end the stream (shutdown).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        // Shutdown first; then news, which the follower reads before it waits, so a ping goes
        // out only when there is nothing to send.
        tokio::select! {
            biased;
            _ = self.shutdown.cancelled() => None,
            read = self.follower.next() => {
                self.metrics
                    .record_deliveries(Transport::Sse, read.entries.len() as u64);
                Some(encode_events(&read))
            }
            _ = self.ping.tick() => Some(Bytes::from_static(b": ping\n\n")),
        }
    }
}

impl SseStream {
    /// Serves the stream on the bare socket, after its head: the task writes what the room's
    /// fan-out does not (a catch-up, a gap, pings), attaching to the fan-out whenever it has
    /// caught up, until the server shuts down (the last chunk) or the client goes.
    async fn serve(mut self, socket: Socket, mut opening: Opening) {
        let outlet = Arc::new(Outlet {
            link: Link::new(socket),
            client: self.follower.client().map(Box::from),
            epoch: std::sync::atomic::AtomicU64::new(self.follower.epoch().0),
            metrics: self.metrics.clone(),
        });
        let link = &outlet.link;
        let shutdown = self.shutdown.clone();
        let cancelled = shutdown.cancelled();
        tokio::pin!(cancelled);
        let mut attached: Option<Attachment> = None;
        let served: std::io::Result<()> = async {
            link.write_all(&[opening.head()]).await?;
            opening.sent();
            loop {
                if attached.is_none() {
                    link.write_all(&[]).await?;
                    let read = self.follower.read();
                    if read.has_news() {
                        self.metrics
                            .record_deliveries(Transport::Sse, read.entries.len() as u64);
                        write_chunk(link, &encode_events(&read)).await?;
                        continue;
                    }
                    // Caught up: from here the room's fan-out writes this stream's messages.
                    outlet.epoch.store(
                        self.follower.epoch().0,
                        std::sync::atomic::Ordering::Relaxed,
                    );
                    let room = self.follower.room().clone();
                    attached = Some(room.attach(
                        outlet.clone(),
                        self.follower.epoch(),
                        self.follower.cursor(),
                    ));
                }
                tokio::select! {
                    biased;
                    _ = &mut cancelled => break,
                    cursor = std::future::poll_fn(|cx| link.poll_detached(cx)) => {
                        attached = None;
                        self.follower.seek(cursor);
                    }
                    () = link.client_gone() => return Ok(()),
                    _ = self.ping.tick() => write_chunk(link, b": ping\n\n").await?,
                }
            }
            // Shutting down: the fan-out stops writing, then the last chunk ends the response.
            drop(attached.take());
            link.write_all(&[b"0\r\n\r\n"]).await?;
            std::future::poll_fn(|cx| link.poll_shutdown(cx)).await
        }
        .await;
        if let Err(e) = served {
            tracing::debug!(error = %e, "event stream ended with an error");
        }
    }
}

/// Writes `event` as one chunk (the connection's own write, when the fan-out is not writing).
async fn write_chunk(link: &Link, event: &[u8]) -> std::io::Result<()> {
    let mut size = [0u8; 18];
    link.write_all(&[chunk_size(event.len(), &mut size), event, b"\r\n"])
        .await
}

/// The stream as the room's fan-out sees it: the shared socket, whom it is for, and the epoch
/// its event ids carry.
struct Outlet {
    link: Link,
    client: Option<Box<str>>,
    /// The follower's epoch when the stream last attached (an [`Epoch`]'s number): the fan-out
    /// lets go of every stream when the log begins a new one.
    epoch: std::sync::atomic::AtomicU64,
    metrics: Arc<Metrics>,
}

impl Subscriber for Outlet {
    fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// Each entry as a chunk ([`Chunk`]), in one vectored write per batch.
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
        let epoch = Some(Epoch(self.epoch.load(std::sync::atomic::Ordering::Relaxed)));
        self.link
            .offer(&Chunk { epoch }, entries, &self.metrics, Transport::Sse)
    }

    fn detached(&self, cursor: u64) {
        self.link.detach(cursor);
    }
}

/// A message as a chunk of the stream: its size line, the entry's event bytes that every stream
/// shares ([`Entry::framed`], with ids of `epoch`), CRLF.
struct Chunk {
    epoch: Option<Epoch>,
}

impl Framing<3> for Chunk {
    /// The event, the size line and its length.
    type Scratch = (Bytes, [u8; 18], usize);

    fn prepare(&self, entry: &Entry, (event, size, len): &mut Self::Scratch) {
        let epoch = self.epoch;
        *event = entry.framed(epoch, |e| message_event(e, epoch));
        *len = chunk_size(event.len(), size).len();
    }

    fn slices<'a>(&self, _: &'a Entry, (event, size, len): &'a Self::Scratch) -> [&'a [u8]; 3] {
        [&size[..*len], event, b"\r\n"]
    }
}

/// The events for one read: a reset, a gap, then the messages, in one chunk. The usual read, one
/// message and nothing else, is that message's shared event bytes ([`Entry::framed`]): the
/// delivery is one write of bytes every stream shares, with no copy or formatting per client.
fn encode_events(read: &Read) -> Bytes {
    let epoch = read.epoch;
    if let [entry] = read.entries.as_slice()
        && !read.reset
        && read.missed == 0
    {
        return entry.framed(epoch, |e| message_event(e, epoch));
    }
    let payload: usize = read.entries.iter().map(|e| e.text.len() + 48).sum();
    let mut out = BytesMut::with_capacity(payload + 64);
    if read.reset {
        let reset = StreamItem::Reset { head: read.next };
        item(&mut out, "reset", epoch, read.next, &reset);
    }
    if read.missed > 0 {
        // The gap's id is the seq just before the first message after it, so a reconnect
        // that resumes from it neither repeats nor skips.
        let after_gap = read.entries.first().map_or(read.next, |e| e.seq - 1);
        let gap = StreamItem::Gap {
            missed: read.missed,
        };
        item(&mut out, "gap", epoch, after_gap, &gap);
    }
    for entry in &read.entries {
        out.put_slice(&entry.framed(epoch, |e| message_event(e, epoch)));
    }
    out.freeze()
}

/// One message as an SSE event: `id: <epoch>-<seq>`, `event: <event>`, `data: <json>`.
fn message_event(entry: &Entry, epoch: Option<Epoch>) -> Bytes {
    let mut out = BytesMut::with_capacity(entry.text.len() + 48 + entry.event.len());
    out.put_slice(b"id: ");
    write_id(&mut out, epoch, entry.seq);
    let _ = write!(out, "\nevent: {}\ndata: ", entry.event);
    out.put_slice(entry.text.as_bytes());
    out.put_slice(b"\n\n");
    out.freeze()
}

/// Writes a gap or reset event.
fn item(out: &mut BytesMut, event: &str, epoch: Option<Epoch>, id: u64, item: &StreamItem) {
    let json = serde_json::to_string(item).expect("a StreamItem always serializes");
    out.put_slice(b"id: ");
    write_id(out, epoch, id);
    let _ = write!(out, "\nevent: {event}\ndata: {json}\n\n");
}

/// An event id is a cursor: `<epoch>-<seq>`, so an `EventSource` reconnecting to a restarted
/// server is reset instead of resuming at a seq that now means another message.
fn write_id(out: &mut BytesMut, epoch: Option<Epoch>, seq: u64) {
    match epoch {
        Some(epoch) => {
            let _ = write!(out, "{epoch}-{seq}");
        }
        None => {
            let _ = write!(out, "{seq}");
        }
    }
}
