//! `GET .../ws`: one WebSocket per client. Messages go out as text frames holding the feed's
//! shared JSON; the client publishes with `{"type":"send",...}` and gets
//! `{"type":"ack","ref":R,"seq":N}`. The first frame is `{"type":"epoch","epoch":"E"}`, repeated
//! when the room's log begins a new epoch, so the seqs a WebSocket hands out carry their epoch
//! like SSE ids and batch cursors.
//!
//! Who writes: once the connection has caught up with the room it attaches to the room's fan-out
//! (`feed::fanout`), which writes each new message's frame (tungstenite's header before the
//! shared JSON) to the socket itself, with no wake-up of this connection's task. The task reads
//! the client's frames (through tungstenite), answers them, pings, and takes over whenever the
//! fan-out lets go: it finishes a frame the fan-out began, reads the room from the cursor handed
//! back (a client that fell behind the history gets a `gap` frame) and attaches again once
//! caught up. The socket is shared through a [`Link`], which keeps every frame whole whoever
//! writes it. A client that neither reads nor stops sending is throttled by TCP: the task stops
//! reading while an answer waits to be written, and the write-stall limit drops it.
//!
//! Bad frames get an `error` frame and the connection stays usable; a frame over `--max-body`
//! (1009), invalid UTF-8 in a text frame (1007) or another protocol error (1002) closes the
//! connection with a code and a reason. A client quiet for `ws_ping` is pinged; one that sends
//! nothing (not even the pong) for twice that is closed, so a vanished laptop does not hold its
//! socket until TCP gives up.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::State;
use axum::extract::ws::WebSocketUpgrade;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::response::Response;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tokio_tungstenite::tungstenite::protocol::frame::{CloseFrame, FrameHeader};
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message, Utf8Bytes};

use crate::error::ApiError;
use crate::extract::Target;
use crate::feed::{Attachment, Entry, Follower, Limit, Offer, Room, Subscriber};
use crate::held::Holder;
use crate::link::{Framing, HasLink, Link, LinkIo};
use crate::metrics::Metrics;
use crate::state::AppState;
use wire::{ClientFrame, PublishRequest, StreamItem, Transport};

/// Read buffer per socket. tungstenite's default is 128 KiB read + 128 KiB write buffer;
/// measured with `examples/idle_clients.rs` (5,000 idle clients, release build) that is 140 KiB
/// of server RSS per idle WebSocket, against 12 KiB with a 4 KiB buffer. tungstenite zero-fills
/// the whole buffer on each read, so all of it is resident for the socket's life. A chat `send`
/// frame (a body of a few hundred bytes, masked) fits in 512 bytes; a larger one (up to
/// `--max-body`) takes one more read per 512 bytes, on the publishing path only, which is rare
/// beside deliveries. 512 rather than 1 KiB brings an idle WebSocket under 4 KiB (`conn-cost`,
/// docs/ARCHITECTURE.md).
pub const WS_READ_BUFFER: usize = 512;
/// Read from the room per batch of frames when the connection's task sends them itself (bounds
/// what it queues for a client that is far behind).
const CHUNK_LIMIT: Limit = Limit {
    messages: 64,
    bytes: 256 * 1024,
};
/// How long a closing socket may take to send its close frame.
const CLOSE_GRACE: Duration = Duration::from_millis(500);
/// A text frame's header is at most this long (a server's frames are not masked).
const MAX_HEADER: usize = 10;

/// Numbers clients that did not say who they are, so `echo: false` still has someone to leave
/// out.
static ANONYMOUS: AtomicU64 = AtomicU64::new(1);

pub(super) async fn websocket(
    State(state): State<AppState>,
    target: Target,
    holder: Option<Extension<Holder>>,
    upgrade: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|e| ApiError::NotWebSocket(e.body_text()))?;
    let Some(Extension(Holder(handoff))) = holder else {
        // Only a router driven without the server's accept loop (a test) gets here.
        return Err(ApiError::NotWebSocket(
            "this connection cannot be upgraded: it did not come through the server's socket"
                .to_owned(),
        ));
    };
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
    let config = WebSocketConfig::default()
        .read_buffer_size(WS_READ_BUFFER)
        // Each of the task's frames goes out as it is sent (they are few: acks, pings, a
        // catch-up), so tungstenite keeps no buffer of its own to gather them in.
        .write_buffer_size(0)
        // Bounded: tungstenite buffers a pong for every ping it reads while the socket is full,
        // all of them (a client pinging without reading grew the server ~1 GB in the 30 s before
        // the write-stall limit). Over the bound it keeps just the latest pong pending. The
        // task's own frames wait for the last to be flushed, so one frame (a message is at most
        // `--max-body` and its envelope) and a pong always fit.
        .max_write_buffer_size(max.saturating_mul(2).saturating_add(64 * 1024))
        .max_message_size(Some(max))
        .max_frame_size(Some(max));
    Ok(upgrade
        .max_message_size(max)
        .max_frame_size(max)
        .on_upgrade(move |hyper_side| async move {
            // The 101 is out and hyper has let go: serve the bare socket. `hyper_side` reads and
            // writes the now empty handoff and is dropped unused.
            let Some(socket) = handoff.take_upgraded() else {
                return;
            };
            drop((hyper_side, handoff));
            let outlet = Arc::new(Outlet {
                link: Link::new(socket),
                client: client.clone().into_boxed_str(),
                metrics: state.metrics.clone(),
            });
            let session = Session {
                room,
                client,
                peer,
                state,
            };
            // A task of its own, rather than in axum's upgrade task: that task's future keeps
            // room for hyper's upgrade, axum's socket and the handoff for as long as it runs,
            // 1.2 KB per idle connection (`conn-cost`).
            tokio::spawn(run(outlet, config, session, follower));
        }))
}

/// What the connection's task needs besides the socket.
struct Session {
    room: Arc<Room>,
    client: String,
    peer: Option<std::net::IpAddr>,
    state: AppState,
}

/// The connection as the room's fan-out sees it: the shared socket and whom it is for.
struct Outlet {
    link: Link,
    client: Box<str>,
    metrics: Arc<Metrics>,
}

impl HasLink for Outlet {
    fn link(&self) -> &Link {
        &self.link
    }
}

impl Subscriber for Outlet {
    fn client(&self) -> Option<&str> {
        Some(&self.client)
    }

    /// Each entry as a text frame ([`TextFrame`]), in one vectored write per batch.
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
        self.link
            .offer(&TextFrame, entries, &self.metrics, Transport::WebSocket)
    }

    fn detached(&self, cursor: u64) {
        self.link.detach(cursor);
    }
}

/// A message as a text frame: tungstenite's frame header, made per frame, then the entry's
/// shared JSON.
struct TextFrame;

impl Framing<2> for TextFrame {
    /// The header and its length.
    type Scratch = ([u8; MAX_HEADER], usize);

    fn prepare(&self, entry: &Entry, (head, len): &mut Self::Scratch) {
        let header = FrameHeader {
            opcode: OpCode::Data(Data::Text),
            ..FrameHeader::default()
        };
        let payload = entry.text.len() as u64;
        *len = header.len(payload);
        header
            .format(payload, &mut &mut head[..])
            .expect("a text frame's header fits in 10 bytes");
    }

    fn slices<'a>(&self, entry: &'a Entry, (head, len): &'a Self::Scratch) -> [&'a [u8]; 2] {
        [&head[..*len], entry.text.as_bytes()]
    }
}

type Ws = WebSocketStream<LinkIo<Outlet>>;

/// Why the connection's task stopped serving.
enum End {
    /// The server is shutting down.
    Shutdown,
    /// The client closed (or its socket ended): complete the closing handshake.
    ClientClosed,
    /// Close with this code and reason.
    Close(CloseCode, String),
    /// The socket failed: nothing more can be written.
    Broken,
}

async fn run(outlet: Arc<Outlet>, config: WebSocketConfig, s: Session, mut follower: Follower) {
    let _open = s.state.metrics.open(Transport::WebSocket);
    let io = LinkIo(outlet.clone());
    let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
    // Made once and kept registered (a `cancelled()` made per `select!` would be registered
    // with the token and dropped again on every wake-up); the check at the top of the loop (an
    // atomic load) keeps shutdown ahead of any further send.
    let shutdown = s.state.shutdown.cancelled();
    tokio::pin!(shutdown);
    let every = s.state.config.ws_ping;
    let mut ping = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    ping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heard = tokio::time::Instant::now();
    // The epoch the client was last told; the first frame tells it.
    let mut told = follower.epoch();
    let hello = item_frame(&StreamItem::Epoch {
        epoch: told.to_string(),
    });
    if ws.send(hello).await.is_err() {
        return;
    }
    let mut attached: Option<Attachment> = None;
    let end = loop {
        if s.state.shutdown.is_cancelled() {
            break End::Shutdown;
        }
        if attached.is_none() {
            // The fan-out is not writing: finish a frame it began, then send what it did not.
            let drained = tokio::select! {
                biased;
                drained = std::future::poll_fn(|cx| outlet.link.poll_drain(cx)) => drained,
                _ = &mut shutdown => break End::Shutdown,
            };
            if drained.is_err() {
                break End::Broken;
            }
            let read = follower.read();
            if read.has_news() {
                if follower.epoch() != told {
                    told = follower.epoch();
                    if ws
                        .feed(item_frame(&StreamItem::Epoch {
                            epoch: told.to_string(),
                        }))
                        .await
                        .is_err()
                    {
                        break End::Broken;
                    }
                }
                let sent = tokio::select! {
                    biased;
                    sent = send_read(&mut ws, &read) => sent,
                    _ = &mut shutdown => break End::Shutdown,
                };
                if sent.is_err() {
                    break End::Broken;
                }
                s.state
                    .metrics
                    .record_deliveries(Transport::WebSocket, read.entries.len() as u64);
                // Look again before attaching: a client far behind is sent CHUNK_LIMIT at a time.
                continue;
            }
            // Caught up: from here the room's fan-out writes this client's messages.
            attached = Some(
                s.room
                    .attach(outlet.clone(), follower.epoch(), follower.cursor()),
            );
        }
        tokio::select! {
            biased;
            cursor = std::future::poll_fn(|cx| outlet.link.poll_detached(cx)) => {
                attached = None;
                follower.seek(cursor);
            }
            frame = ws.next() => {
                heard = tokio::time::Instant::now();
                let reply = match frame {
                    // Boxed: a publish's future (a backplane's round trip) lives on the heap
                    // only while it runs, instead of in every idle socket's task.
                    Some(Ok(Message::Text(text))) => Box::pin(handle_text(&text, &s)).await,
                    Some(Ok(Message::Binary(_))) => StreamItem::Error {
                        error: "binary frames are not accepted: send JSON in a text frame"
                            .to_owned(),
                        reference: None,
                    },
                    // tungstenite answers pings by itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                    Some(Ok(Message::Close(_))) | None => break End::ClientClosed,
                    Some(Err(e)) => {
                        tracing::debug!(client = %s.client, error = %e, "websocket read failed");
                        match close_reason(&e, s.state.config.max_body) {
                            Some((code, reason)) => break End::Close(code, reason),
                            None => break End::Broken,
                        }
                    }
                };
                let sent = tokio::select! {
                    biased;
                    sent = ws.send(item_frame(&reply)) => sent,
                    _ = &mut shutdown => break End::Shutdown,
                };
                if sent.is_err() {
                    break End::Broken;
                }
            }
            _ = &mut shutdown => break End::Shutdown,
            _ = ping.tick() => {
                let quiet = heard.elapsed();
                if quiet >= every * 2 {
                    // Pinged a period ago and nothing came back: the peer is gone.
                    break End::Close(CloseCode::Away, "no answer to ping".to_owned());
                }
                if quiet >= every {
                    let sent = tokio::select! {
                        biased;
                        _ = &mut shutdown => break End::Shutdown,
                        sent = ws.send(Message::Ping(Bytes::new())) => sent,
                    };
                    if sent.is_err() {
                        break End::Broken;
                    }
                }
            }
        }
    };
    // The fan-out stops writing before the close frame goes out.
    drop(attached);
    let closing = async {
        match end {
            // Say so, briefly; a client that does not read is simply dropped.
            End::Shutdown => {
                close(&mut ws, CloseCode::Away, "server shutting down".to_owned()).await
            }
            End::Close(code, reason) => close(&mut ws, code, reason).await,
            // Answers the client's close frame: tungstenite queued the reply when it read it,
            // and a flush writes it (`close` would not: tungstenite refuses to send anything
            // after the peer's close, `SendAfterClosing`, and the reply never went out).
            End::ClientClosed => {
                let _ = ws.flush().await;
            }
            End::Broken => return,
        }
        // The link may keep the rest of that last frame (tungstenite ends the connection once
        // its reply is handed over, without a flush of its own): it goes out before the socket
        // is dropped.
        let _ = std::future::poll_fn(|cx| outlet.link.poll_drain(cx)).await;
    };
    let _ = tokio::time::timeout(CLOSE_GRACE, closing).await;
}

/// Sends a read's notes (reset, gap) and then each entry as a text frame sharing its JSON, in
/// one flush.
async fn send_read(ws: &mut Ws, read: &crate::feed::Read) -> Result<(), tungstenite::Error> {
    if read.reset {
        ws.feed(item_frame(&StreamItem::Reset { head: read.next }))
            .await?;
    }
    if read.missed > 0 {
        ws.feed(item_frame(&StreamItem::Gap {
            missed: read.missed,
        }))
        .await?;
    }
    for entry in &read.entries {
        ws.feed(Message::Text(entry.text.clone())).await?;
    }
    ws.flush().await
}

async fn close(ws: &mut Ws, code: CloseCode, reason: String) {
    let frame = Message::Close(Some(CloseFrame {
        code,
        reason: Utf8Bytes::from(reason),
    }));
    let _ = ws.send(frame).await;
}

fn item_frame(item: &StreamItem) -> Message {
    Message::Text(Utf8Bytes::from(
        serde_json::to_string(item).expect("a StreamItem always serializes"),
    ))
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

/// The close code and reason for a read error (`None`: the socket itself failed).
fn close_reason(error: &tungstenite::Error, max_body: usize) -> Option<(CloseCode, String)> {
    use tungstenite::Error;
    match error {
        // RFC 6455 7.4.1: 1007 for data inconsistent with the message type.
        Error::Utf8(_) => Some((
            CloseCode::Invalid,
            format!("invalid UTF-8 in a text frame: {error}"),
        )),
        Error::Capacity(_) => Some((
            CloseCode::Size,
            format!("frame larger than the limit of {max_body} bytes"),
        )),
        Error::Io(_) | Error::ConnectionClosed | Error::AlreadyClosed => None,
        _ => Some((CloseCode::Protocol, format!("protocol error: {error}"))),
    }
}
