//! `GET .../ws`: one WebSocket per client. Messages go out as text frames holding the feed's
//! shared JSON (no copy: the frame payload is the stored `Utf8Bytes`); the client publishes with
//! `{"type":"send",...}` and gets `{"type":"ack","ref":R,"seq":N}`. The first frame is
//! `{"type":"epoch","epoch":"E"}`, repeated when the room's log begins a new epoch, so the seqs
//! a WebSocket hands out carry their epoch like SSE ids and batch cursors.
//!
//! The socket is split, as in axum's chat example: a writer reads the room from its cursor and
//! sends, a reader parses the client's frames and hands acks and errors to the writer through a
//! small bounded channel. When the writer is stuck on a slow client, the reader stops reading
//! once that channel is full, so a client that neither reads nor stops sending is throttled by
//! TCP rather than buffered in memory. A client that falls behind the history gets a `gap` frame.
//!
//! Bad frames get an `error` frame and the connection stays usable; a frame over `--max-body`
//! (1009), invalid UTF-8 in a text frame (1007) or another protocol error (1002) closes the
//! connection with a code and a reason. A client quiet for `ws_ping` is pinged; one that sends
//! nothing (not even the pong) for twice that is closed, so a vanished laptop does not hold its
//! socket until TCP gives up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, Wake, Waker};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade, close_code};
use axum::response::Response;
use bytes::Bytes;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::task::AtomicWaker;
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;

use crate::error::ApiError;
use crate::extract::Target;
use crate::feed::{Entry, Follower, Limit, Room};
use crate::state::AppState;
use wire::{ClientFrame, PublishRequest, StreamItem, Transport};

/// Initial read buffer per socket. tungstenite's default is 128 KiB read + 128 KiB write
/// buffer; measured with `examples/idle_clients.rs` (5,000 idle clients, release build) that is
/// 140 KiB of server RSS per idle WebSocket, against 12 KiB with a 4 KiB buffer. tungstenite
/// zero-fills the whole buffer on each read, so all of it is resident for the socket's life:
/// 1 KiB holds a chat `send` frame (the buffer grows for a larger frame, up to `--max-body`)
/// and saves 3 KiB per idle connection against 4 KiB (`conn-cost`, docs/ARCHITECTURE.md).
pub const WS_READ_BUFFER: usize = 1024;
/// Frames are gathered up to this many bytes before a write, so a burst goes out in few
/// syscalls; the buffer is only allocated once something is sent.
pub const WS_WRITE_BUFFER: usize = 8 * 1024;
/// Read from the room per batch of frames (bounds the write buffer for a client that is far
/// behind).
const CHUNK_LIMIT: Limit = Limit {
    messages: 64,
    bytes: 256 * 1024,
};
/// Acks and errors waiting for the writer; when full the reader stops reading the socket.
/// tokio's channel allocates its first block of 32 slots when it is made, so a slot is a
/// `Box<Reply>` (8 bytes) rather than a `Reply` (113 bytes): 3.6 KiB less per idle socket.
const REPLY_QUEUE: usize = 8;
/// How long a closing socket may take to send its close frame.
const CLOSE_GRACE: Duration = Duration::from_millis(500);

/// Numbers clients that did not say who they are, so `echo: false` still has someone to leave
/// out.
static ANONYMOUS: AtomicU64 = AtomicU64::new(1);

pub(super) async fn websocket(
    State(state): State<AppState>,
    target: Target,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::NotWebSocket(e.body_text()))?;
    if state.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let room = target.open()?;
    let peer = target.peer;
    let client = target
        .client
        .unwrap_or_else(|| format!("anonymous-{}", ANONYMOUS.fetch_add(1, Ordering::Relaxed)));
    // Fixed before the 101 goes out: every publish after the handshake reaches this client.
    let follower = Follower::start(
        room.clone(),
        target.since,
        Some(client.clone()),
        CHUNK_LIMIT,
    )
    .await;
    let max = state.config.max_body;
    let session = Session {
        heard: AtomicU64::new(0),
        started: tokio::time::Instant::now(),
        room,
        client,
        peer,
        state,
    };
    Ok(upgrade
        .read_buffer_size(WS_READ_BUFFER)
        .write_buffer_size(WS_WRITE_BUFFER)
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |socket| run(socket, session, follower)))
}

/// What both halves of one connection need.
struct Session {
    /// When the client last sent a frame (ms since `started`): a quiet client is pinged, one
    /// that answers nothing is closed.
    heard: AtomicU64,
    started: tokio::time::Instant,
    room: Arc<Room>,
    client: String,
    peer: Option<std::net::IpAddr>,
    state: AppState,
}

/// What the reader asks the writer to send.
enum Reply {
    Item(StreamItem),
    Close(u16, String),
}

async fn run(socket: WebSocket, session: Session, follower: Follower) {
    let _open = session.state.metrics.open(Transport::WebSocket);
    let (sink, stream) = socket.split();
    let (replies_tx, replies_rx) = mpsc::channel::<Box<Reply>>(REPLY_QUEUE);
    let writer = write_loop(sink, replies_rx, follower, &session);
    let reader = read_loop(stream, replies_tx, &session);
    tokio::pin!(writer, reader);
    match first_done(writer.as_mut(), reader.as_mut()).await {
        // The writer ends on shutdown, a send error, or a close the reader asked for.
        Half::Writer => {}
        // The reader ends when the client closes or breaks the protocol; dropping its end of the
        // reply channel lets the writer send what is queued (a close reason) and stop.
        Half::Reader => {
            let _ = tokio::time::timeout(CLOSE_GRACE, writer).await;
        }
    }
}

/// Which half of a connection finished first.
enum Half {
    Writer,
    Reader,
}

/// Which halves were woken since they were last polled, and the task to wake for them.
struct Woken {
    halves: [AtomicBool; 2],
    task: AtomicWaker,
}

/// The waker one half is polled with: marks that half woken, then wakes the task.
struct HalfWaker {
    woken: Arc<Woken>,
    half: usize,
}

impl Wake for HalfWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.halves[self.half].store(true, Ordering::Release);
        self.woken.task.wake();
    }
}

/// Runs both halves in the connection's one task until one ends, polling each only when its own
/// waker fired. `select!` polls every branch on every wake-up, so each publish (a wake of the
/// writer) also ran the reader through the split lock, tungstenite (which zero-fills its read
/// buffer first) and the socket's readiness check, only to find nothing to read: 8% of the
/// server's CPU in the 1,000-subscriber fan-out (`perf record`, docs/ARCHITECTURE.md). Three
/// small allocations (about 120 bytes per connection) instead of a second task.
async fn first_done(
    mut writer: Pin<&mut impl Future<Output = ()>>,
    mut reader: Pin<&mut impl Future<Output = ()>>,
) -> Half {
    // Both start woken: each is polled once to register what it waits on.
    let woken = Arc::new(Woken {
        halves: [AtomicBool::new(true), AtomicBool::new(true)],
        task: AtomicWaker::new(),
    });
    let waker = |half| {
        Waker::from(Arc::new(HalfWaker {
            woken: woken.clone(),
            half,
        }))
    };
    let (for_writer, for_reader) = (waker(0), waker(1));
    std::future::poll_fn(|cx| {
        // Register before taking a flag, so a wake-up between the two is not lost.
        woken.task.register(cx.waker());
        if woken.halves[0].swap(false, Ordering::AcqRel)
            && writer
                .as_mut()
                .poll(&mut Context::from_waker(&for_writer))
                .is_ready()
        {
            return Poll::Ready(Half::Writer);
        }
        if woken.halves[1].swap(false, Ordering::AcqRel)
            && reader
                .as_mut()
                .poll(&mut Context::from_waker(&for_reader))
                .is_ready()
        {
            return Poll::Ready(Half::Reader);
        }
        Poll::Pending
    })
    .await
}

async fn write_loop(
    mut sink: SplitSink<WebSocket, Message>,
    mut replies: mpsc::Receiver<Box<Reply>>,
    mut follower: Follower,
    s: &Session,
) {
    // Made once and kept registered, and polled after the branch that is ready in the usual
    // case: a `cancelled()` made in each `select!` was registered with the token and dropped
    // again on every delivery, two locks on a waiter list every connection shares. The check at
    // the top of the loop (an atomic load) keeps shutdown ahead of any further send.
    let shutdown = s.state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let every = s.state.config.ws_ping;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The epoch the client was last told; the first frame tells it.
    let mut told = follower.epoch();
    let hello = item_frame(&StreamItem::Epoch {
        epoch: told.to_string(),
    });
    if sink.send(hello).await.is_err() {
        return;
    }
    loop {
        if s.state.shutdown.is_cancelled() {
            break;
        }
        // Read, then wait with `changed()` rather than `next()`: news goes out before queued
        // replies, but while waiting a reply (an ack) is taken before a publish.
        let read = follower.read();
        if read.has_news() {
            // Only a reset, a gap or a new epoch needs a list (a `Vec` allocates on its first
            // push): the usual delivery is the shared message frames alone.
            let mut notes = Vec::new();
            if follower.epoch() != told {
                told = follower.epoch();
                notes.push(item_frame(&StreamItem::Epoch {
                    epoch: told.to_string(),
                }));
            }
            if read.reset {
                notes.push(item_frame(&StreamItem::Reset { head: read.next }));
            }
            if read.missed > 0 {
                notes.push(item_frame(&StreamItem::Gap {
                    missed: read.missed,
                }));
            }
            let sent = tokio::select! {
                biased;
                sent = send_all(&mut sink, notes, &read.entries) => sent,
                _ = &mut shutdown => break,
            };
            if sent.is_err() {
                return;
            }
            s.state
                .metrics
                .record_deliveries(Transport::WebSocket, read.entries.len() as u64);
            // Look again before waiting: a client far behind is sent CHUNK_LIMIT at a time.
            continue;
        }
        tokio::select! {
            biased;
            reply = replies.recv() => match reply.map(|r| *r) {
                Some(Reply::Item(item)) => {
                    let sent = tokio::select! {
                        biased;
                        sent = sink.send(item_frame(&item)) => sent,
                        _ = &mut shutdown => break,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
                Some(Reply::Close(code, reason)) => {
                    close(&mut sink, code, reason).await;
                    return;
                }
                None => {
                    // The reader is done (the client closed): complete the closing handshake.
                    let _ = tokio::time::timeout(CLOSE_GRACE, sink.close()).await;
                    return;
                }
            },
            () = follower.changed() => {}
            _ = &mut shutdown => break,
            _ = ping.tick() => {
                let heard = Duration::from_millis(s.heard.load(Ordering::Relaxed));
                let quiet = s.started.elapsed().saturating_sub(heard);
                if quiet >= every * 2 {
                    // Pinged a period ago and nothing came back: the peer is gone.
                    close(&mut sink, close_code::AWAY, "no answer to ping".to_owned()).await;
                    return;
                }
                if quiet >= every {
                    let sent = tokio::select! {
                        biased;
                        _ = &mut shutdown => break,
                        sent = sink.send(Message::Ping(Bytes::new())) => sent,
                    };
                    if sent.is_err() {
                        return;
                    }
                }
            }
        }
    }
    // Shutting down: say so, briefly; a client that does not read is simply dropped.
    close(
        &mut sink,
        close_code::AWAY,
        "server shutting down".to_owned(),
    )
    .await;
}

/// Sends `notes` (epoch, reset, gap), then each entry as a text frame sharing its JSON, in one
/// flush.
async fn send_all(
    sink: &mut SplitSink<WebSocket, Message>,
    notes: Vec<Message>,
    entries: &[Arc<Entry>],
) -> Result<(), axum::Error> {
    for frame in notes {
        sink.feed(frame).await?;
    }
    for entry in entries {
        sink.feed(Message::Text(entry.text.clone())).await?;
    }
    sink.flush().await
}

async fn close(sink: &mut SplitSink<WebSocket, Message>, code: u16, reason: String) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }));
    let _ = tokio::time::timeout(CLOSE_GRACE, sink.send(frame)).await;
}

fn item_frame(item: &StreamItem) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(item).expect("a StreamItem always serializes"),
    ))
}

async fn read_loop(
    mut stream: SplitStream<WebSocket>,
    replies: mpsc::Sender<Box<Reply>>,
    s: &Session,
) {
    while let Some(frame) = stream.next().await {
        s.heard
            .store(s.started.elapsed().as_millis() as u64, Ordering::Relaxed);
        let reply = match frame {
            // Boxed: a publish's future (a backplane's round trip) lives on the heap only while
            // it runs, instead of in every idle socket's task.
            Ok(Message::Text(text)) => Reply::Item(Box::pin(handle_text(&text, s)).await),
            Ok(Message::Binary(_)) => Reply::Item(StreamItem::Error {
                error: "binary frames are not accepted: send JSON in a text frame".to_owned(),
                reference: None,
            }),
            // tungstenite answers pings by itself.
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) => return,
            Err(e) => {
                let (code, reason) = close_reason(&e, s.state.config.max_body);
                tracing::debug!(client = %s.client, error = %e, "websocket read failed");
                let _ = replies.send(Box::new(Reply::Close(code, reason))).await;
                return;
            }
        };
        if replies.send(Box::new(reply)).await.is_err() {
            return;
        }
    }
}

/// Publishes a `send` frame and answers `ack`, or says what is wrong with the frame.
async fn handle_text(text: &str, s: &Session) -> StreamItem {
    let frame = match serde_json::from_str::<ClientFrame>(text) {
        Ok(frame) => frame,
        Err(e) => {
            // Hand the `ref` back when it can be read, so the client knows which send failed.
            let reference = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|v| v.get("ref").and_then(serde_json::Value::as_u64));
            return StreamItem::Error {
                error: format!("bad frame: {e}"),
                reference,
            };
        }
    };
    let ClientFrame::Send {
        body,
        event,
        to,
        echo,
        reference,
    } = frame;
    let request = PublishRequest {
        from: s.client.clone(),
        body,
        event,
        to,
        echo,
    };
    match s.state.feed.publish(s.room.name(), s.peer, request).await {
        Ok(entry) => StreamItem::Ack {
            reference: reference.unwrap_or(0),
            seq: entry.seq,
        },
        Err(e) => StreamItem::Error {
            error: e.to_string(),
            reference,
        },
    }
}

fn close_reason(error: &axum::Error, max_body: usize) -> (u16, String) {
    let text = error.to_string();
    if text.contains("UTF-8") || text.contains("utf-8") || text.contains("Utf8") {
        // RFC 6455 7.4.1: 1007 for data inconsistent with the message type.
        (
            close_code::INVALID,
            format!("invalid UTF-8 in a text frame: {text}"),
        )
    } else if text.contains("Space limit exceeded") || text.contains("too long") {
        (
            close_code::SIZE,
            format!("frame larger than the limit of {max_body} bytes"),
        )
    } else {
        (close_code::PROTOCOL, format!("protocol error: {text}"))
    }
}
