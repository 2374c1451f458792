//! `GET .../sse`: one long-lived `text/event-stream` response per client. The body is a stream
//! that reads the room from its cursor whenever the head moves, so a slow client only falls
//! behind (the next chunk is made when the socket has taken the last) and gets an `event: gap`
//! when history moved past it. The stream is written off hyper, on the bare socket
//! (`crate::held`), so an idle stream does not keep hyper's buffers. Events are written by hand rather than with axum's `Sse` type so the
//! message JSON is the feed's shared bytes, copied once into the chunk, never re-encoded.
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
use crate::feed::{Cursor, Entry, Epoch, Follower, Limit, Read};
use crate::held::Hold;
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
    let events = futures_util::stream::unfold(stream, |mut s| async move {
        let chunk = s.next_chunk().await?;
        Some((chunk, s))
    });
    let head = [
        (header::CONTENT_TYPE, "text/event-stream"),
        (header::CACHE_CONTROL, "no-cache"),
        // Tell a reverse proxy (nginx) not to buffer the stream.
        (header::HeaderName::from_static("x-accel-buffering"), "no"),
    ];
    Ok(match hold {
        // Off hyper, on the bare socket: hyper's buffers are not kept for the stream's life.
        Some(hold) => hold.stream((StatusCode::OK, head).into_response(), events),
        None => (
            StatusCode::OK,
            head,
            Body::from_stream(events.map(Ok::<_, Infallible>)),
        )
            .into_response(),
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
