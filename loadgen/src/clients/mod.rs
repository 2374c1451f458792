//! The simulated chat clients: one implementation per transport behind one small interface,
//! [`TransportClient`] (connect, then run one connection until it stops or breaks), so the
//! runner, with its connect retries and reconnect loop, is written once (`runner.rs`). What
//! every client shares lives in [`ClientHandle`]: its identity, its [`Ledger`], its optional
//! trace, and the arithmetic of a delivery (latency against the stamp's scheduled time,
//! integrity, counters), so no transport can count a delivery differently from another.
//!
//! Every client subscribes to the phase's fresh room from `since=0` and, after a failure,
//! reconnects from the last seq it saw, as a real client would.

pub mod batch;
pub mod http;
pub mod long_poll;
pub mod short_poll;
pub mod sse;
pub mod websocket;
pub mod wire_ref;

use std::future::Future;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use report::results::TraceEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use crate::clock;
use crate::conn::Connector;
use crate::ledger::{Arrival, Ledger};
use crate::meter::PhaseMeter;
use crate::stamp::Stamp;
use wire_ref::{MessageRef, StreamItemRef};

/// Most events kept per traced client, so a long phase cannot grow a trace without bound.
const TRACE_LIMIT: usize = 20_000;

/// Why a client's connect or request failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// TCP connect failed.
    #[error("connect failed: {0}")]
    Connect(#[from] std::io::Error),
    /// HTTP protocol or connection error.
    #[error("http: {0}")]
    Http(#[from] hyper::Error),
    /// The server answered with an unexpected status.
    #[error("unexpected status {status}: {body}")]
    Status {
        /// The status.
        status: u16,
        /// The start of the body.
        body: String,
    },
    /// No answer in time.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// WebSocket error.
    #[error("websocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    /// The server sent something that is not the wire API.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The connection ended.
    #[error("connection closed by the server")]
    Closed,
}

/// The phase's measured window, announced to senders when it starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First scheduled publish may be at or after this.
    pub start: Instant,
    /// No publish is scheduled at or after this.
    pub end: Instant,
}

/// One publish a sender is due to make now: its counter and its scheduled time.
#[derive(Debug, Clone, Copy)]
pub struct PublishOrder {
    /// The sender's message counter.
    pub n: u32,
    /// When it was due.
    pub scheduled: Instant,
}

/// What the server answers a WebSocket sender's `send` on the stream: the items of a stream
/// that are not the client's to record, handed back to the transport by
/// [`ClientHandle::on_stream_item`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendReply {
    /// The server accepted the send with `ref` = `reference` and gave it `seq`.
    Ack {
        /// The client's `ref` from the `send`.
        reference: u64,
        /// The sequence number the message got.
        seq: u64,
    },
    /// The server refused a send (the connection stays usable).
    Error {
        /// What was wrong, in words.
        error: String,
        /// The `ref` of the refused `send`, when the server could read it.
        reference: Option<u64>,
    },
}

/// What every client of a phase shares: where to connect, what to measure into.
#[derive(Debug)]
pub struct PhaseCtx {
    /// The transport of this phase.
    pub transport: Transport,
    /// `Host` header value and WebSocket URL authority, e.g. `127.0.0.1:8080`.
    pub authority: String,
    /// This phase's room.
    pub room: String,
    /// Opens counted connections.
    pub connector: Arc<Connector>,
    /// Counters and histograms.
    pub meter: Arc<PhaseMeter>,
    /// Phase start (trace times are ms since this).
    pub start: Instant,
    /// Short-poll timer period.
    pub short_poll_interval: Duration,
    /// Long-poll hold timeout.
    pub long_poll_timeout: Duration,
    /// Bytes per published body.
    pub payload_bytes: usize,
    /// Seqs the server acknowledged to this phase's senders.
    pub published: Mutex<Vec<u64>>,
}

impl PhaseCtx {
    /// A path under this phase's room, e.g. `poll?since=3`.
    pub fn room_path(&self, rest: &str) -> String {
        format!("/api/rooms/{}/{rest}", self.room)
    }

    /// Records a publish the server acknowledged with `seq`.
    pub fn publish_acked(&self, seq: u64) {
        self.meter.published.fetch_add(1, Relaxed);
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(seq);
    }

    /// ms since the phase start.
    pub fn ms(&self, at: Instant) -> f64 {
        at.saturating_duration_since(self.start).as_secs_f64() * 1e3
    }
}

/// One simulated client's own state, owned by its task and returned to the runner at the end.
#[derive(Debug)]
pub struct ClientHandle {
    /// Position among the phase's clients (senders are `0..senders`).
    pub index: usize,
    /// The client id sent as `client=` / `from`.
    pub id: String,
    /// The phase.
    pub phase: Arc<PhaseCtx>,
    /// What it received.
    pub ledger: Ledger,
    /// Its events, when this client is traced.
    pub trace: Option<Vec<TraceEvent>>,
    /// The last seq seen: where to resume.
    pub since: u64,
    /// Publish orders, for a WebSocket sender (which publishes over its own socket).
    pub orders: Option<mpsc::UnboundedReceiver<PublishOrder>>,
}

impl ClientHandle {
    /// A client that has seen nothing yet.
    pub fn new(index: usize, phase: Arc<PhaseCtx>, traced: bool) -> Self {
        Self {
            index,
            id: format!("c{index}"),
            phase,
            ledger: Ledger::default(),
            trace: traced.then(Vec::new),
            since: 0,
            orders: None,
        }
    }

    /// Accounts for one delivered message that arrived at `at`.
    pub fn on_message(&mut self, message: &MessageRef<'_>, at: Instant) {
        let meter = &self.phase.meter;
        meter.deliveries.fetch_add(1, Relaxed);
        self.since = self.since.max(message.seq);
        let arrival = self.ledger.record(message.seq);
        let stamp = Stamp::parse(&message.body);
        if let (Arrival::First, Some(stamp)) = (arrival, stamp) {
            meter.distinct_deliveries.fetch_add(1, Relaxed);
            let latency_ns = clock::ns_at(at.into_std()).saturating_sub(stamp.scheduled_ns);
            meter.latency.record_us(self.index, latency_ns / 1_000);
        }
        if self.trace.is_some() {
            let published_ms = stamp
                .map(|s| self.phase.ms(clock::instant_at(s.scheduled_ns).into()))
                .unwrap_or(f64::NAN);
            let at_ms = self.phase.ms(at);
            self.trace_event(TraceEvent::Delivery {
                at_ms,
                published_ms,
                seq: message.seq,
            });
        }
    }

    /// Takes one stream item (an SSE event's `data:` or a WebSocket text frame) that arrived at
    /// `at`: a message is counted as payload (its whole JSON) and recorded, a gap or a reset
    /// noted. Written once so SSE and WebSocket decode and record alike; each transport keeps
    /// only its framing. An `ack` or `error` is handed back, since only a WebSocket sender
    /// expects one. `what` names the item in a decoding error (`"SSE data"`, `"frame"`).
    pub fn on_stream_item(
        &mut self,
        json: &str,
        at: Instant,
        what: &str,
    ) -> Result<Option<SendReply>, ClientError> {
        let item: StreamItemRef<'_> = serde_json::from_str(json)
            .map_err(|e| ClientError::Protocol(format!("bad {what}: {e}")))?;
        match item {
            StreamItemRef::Message(message) => {
                self.phase
                    .meter
                    .payload_down
                    .fetch_add(json.len() as u64, Relaxed);
                self.on_message(&message, at);
            }
            StreamItemRef::Gap { missed } => self.on_gap(missed),
            StreamItemRef::Reset { head } => self.on_reset(head),
            StreamItemRef::Ack { reference, seq } => {
                return Ok(Some(SendReply::Ack { reference, seq }));
            }
            StreamItemRef::Error { error, reference } => {
                return Ok(Some(SendReply::Error { error, reference }));
            }
        }
        Ok(None)
    }

    /// The server said `missed` messages were lost.
    pub fn on_gap(&mut self, missed: u64) {
        self.ledger.gaps_reported += missed;
    }

    /// The server said our position was ahead of its log; continue from `head`.
    pub fn on_reset(&mut self, head: u64) {
        self.ledger.resets += 1;
        self.since = head;
    }

    /// Counts and traces a failure.
    pub fn on_error(&mut self, error: &ClientError) {
        self.phase.meter.error();
        tracing::debug!(client = %self.id, transport = %self.phase.transport, %error, "client error");
        if self.trace.is_some() {
            let at_ms = self.phase.ms(Instant::now());
            self.trace_event(TraceEvent::Error {
                at_ms,
                message: error.to_string(),
            });
        }
    }

    /// Appends to the trace, when traced.
    pub fn trace_event(&mut self, event: TraceEvent) {
        if let Some(trace) = self.trace.as_mut().filter(|t| t.len() < TRACE_LIMIT) {
            trace.push(event);
        }
    }

    /// Records (and traces) a connect that began at `start` and is ready now.
    pub fn connected(&mut self, start: Instant) {
        let end = Instant::now();
        self.phase
            .meter
            .connect_time
            .record_us(self.index, (end - start).as_micros() as u64);
        if self.trace.is_some() {
            let (start_ms, end_ms) = (self.phase.ms(start), self.phase.ms(end));
            self.trace_event(TraceEvent::Connect { start_ms, end_ms });
        }
    }
}

/// One transport's client on one connection: connect (and subscribe), then follow the room on
/// that connection until told to stop or until it breaks. Reconnecting is the runner's job, so
/// every transport retries the same way.
pub trait TransportClient: Sized + Send {
    /// Opens the client's connection from `me.since`; for SSE and WebSocket this includes the
    /// subscription handshake. Records the connect time with [`ClientHandle::connected`].
    fn connect(me: &mut ClientHandle) -> impl Future<Output = Result<Self, ClientError>> + Send;

    /// Receives (and, for a WebSocket sender, publishes) until `stop` is cancelled (`Ok`) or
    /// the connection fails (`Err`, after which the runner reconnects).
    fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// Sleeps `d` unless `stop` comes first; `false` when stopped.
pub async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}
