//! What every simulated chat client has, whatever protocol its target speaks: one small
//! interface per connection, [`TransportClient`] (connect, then run one connection until it
//! stops or breaks), whose life (connect retries, reconnects) is written once in [`life`]; and
//! [`ClientHandle`], the client's identity, its [`Ledger`], its optional trace and the arithmetic
//! of a delivery (latency against the stamp's scheduled time, integrity, counters), so no
//! transport and no protocol can count a delivery differently from another. The implementations
//! for each transport belong to a target protocol (`crate::protocol`); [`http`] is the counted
//! HTTP/1.1 connection they share.
//!
//! Every client subscribes to the phase's fresh room from the start of its log and, after a
//! failure, reconnects from the last seq it saw, as a real client would.

pub mod http;
pub mod inline;
pub mod life;
pub mod profile;
pub mod ws;

use std::future::Future;
use std::sync::atomic::AtomicUsize;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::SeedableRng;
use rand::rngs::StdRng;
use report::results::TraceEvent;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use crate::clock;
use crate::conn::Connector;
use crate::ledger::{Arrival, Ledger};
use crate::meter::PhaseMeter;
use crate::protocol::TargetProtocol;
use crate::recipients::{Addressed, ChatMode, RequestSpan};
use crate::seed::{Stream, derive};
use crate::stamp::Stamp;

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

/// What every client of a phase shares: where to connect, what to measure into.
#[derive(Debug)]
pub struct PhaseCtx {
    /// The transport of this phase.
    pub transport: Transport,
    /// `Host` header value and WebSocket URL authority, e.g. `127.0.0.1:8080`.
    pub authority: String,
    /// This phase's room.
    pub room: String,
    /// The protocol the target speaks: which client each transport uses, how to publish.
    pub protocol: Arc<dyn TargetProtocol>,
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
    /// The run's seed (`seed` in the scenario), for the clients' random choices.
    pub seed: u64,
    /// The request headers the clients send.
    pub profile: profile::ClientProfile,
    /// Senders in this phase (for [`Stamp::log_position`]).
    pub senders: usize,
    /// Clients in this phase (a direct message's recipient is one of them).
    pub clients: usize,
    /// Who each message is for (`chat.mode`).
    pub mode: ChatMode,
    /// The messages the server acknowledged to this phase's senders.
    pub published: Mutex<Vec<Addressed>>,
    /// Per sender, 1 + the node its publishes go to (0 until its first connection opened): a
    /// delivery looks its stamp's sender up here to tell a same-node delivery from one that
    /// crossed nodes.
    pub sender_nodes: Vec<AtomicUsize>,
}

impl PhaseCtx {
    /// Records a publish the server acknowledged with `seq`: sender `sender`'s `n`-th, sent in
    /// an HTTP request in flight during `request` (`None`: over an ordered stream).
    pub fn publish_acked(&self, seq: u64, sender: usize, n: u32, request: Option<RequestSpan>) {
        self.meter.published.fetch_add(1, Relaxed);
        self.published
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Addressed {
                seq,
                sender,
                n,
                request,
            });
    }

    /// Who sender `sender`'s `n`-th message is for, as a publish says it: `(to, echo)`.
    pub fn addressing(&self, sender: usize, n: u32) -> (Option<String>, Option<bool>) {
        self.mode.addressing(sender, n, self.clients)
    }

    /// Notes that `sender` publishes through node `node` from now on.
    pub fn sender_on_node(&self, sender: usize, node: usize) {
        if let Some(slot) = self.sender_nodes.get(sender) {
            slot.store(node + 1, Relaxed);
        }
    }

    /// The node `sender` publishes through, when known.
    pub fn node_of_sender(&self, sender: usize) -> Option<usize> {
        let slot = self.sender_nodes.get(sender)?.load(Relaxed);
        slot.checked_sub(1)
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
    /// Where to resume on a server whose cursor is not a seq (nchan's message id, or its poll
    /// answer's `Last-Modified` + `Etag`), kept across reconnects like `since`. Nothing else:
    /// what a client needs to connect at all comes in its [`TransportClient::Setup`].
    pub resume: Option<String>,
    /// Its random choices (poll phases), seeded from the run's seed and its index.
    pub rng: StdRng,
    /// The node its receiving connection went to (see [`ClientHandle::on_node`]).
    pub node: Option<usize>,
}

impl ClientHandle {
    /// A client that has seen nothing yet.
    pub fn new(index: usize, phase: Arc<PhaseCtx>, traced: bool) -> Self {
        let phase_seed = phase.seed;
        Self {
            index,
            id: format!("c{index}"),
            phase,
            ledger: Ledger::default(),
            trace: traced.then(Vec::new),
            since: 0,
            orders: None,
            resume: None,
            rng: StdRng::seed_from_u64(derive(phase_seed, Stream::PollPhase, index as u64)),
            node: None,
        }
    }

    /// Its receiving connection opened on node `node`; for a WebSocket sender, which publishes
    /// over that same socket, its publishes go there too.
    pub fn on_node(&mut self, node: usize) {
        self.node = Some(node);
        if self.orders.is_some() {
            self.phase.sender_on_node(self.index, node);
        }
    }

    /// Accounts for one delivered message that arrived at `at`: its position `seq` in the
    /// room's log and its `body` as published (which carries the loadgen's stamp). Every
    /// protocol hands its deliveries in here.
    pub fn on_message(&mut self, seq: u64, body: &str, at: Instant) {
        self.deliver(seq, body, at, None);
    }

    /// [`ClientHandle::on_message`], with order judged per sender when `turns` is
    /// `Some(senders)` (see [`Ledger::record_ordered`]).
    fn deliver(&mut self, seq: u64, body: &str, at: Instant, turns: Option<usize>) {
        let meter = &self.phase.meter;
        meter.deliveries.fetch_add(1, Relaxed);
        self.since = self.since.max(seq);
        let arrival = self.ledger.record_ordered(seq, turns);
        let stamp = Stamp::parse(body);
        if let (Arrival::First, Some(stamp)) = (arrival, stamp) {
            meter.distinct_deliveries.fetch_add(1, Relaxed);
            let latency_ns = clock::ns_at(at.into_std()).saturating_sub(stamp.scheduled_ns);
            let us = latency_ns / 1_000;
            meter.latency.record_us(us);
            if let Some(split) =
                locality(self.node, self.phase.node_of_sender(stamp.sender as usize))
            {
                let by_node = match split {
                    Locality::SameNode => &meter.latency_same_node,
                    Locality::AcrossNodes => &meter.latency_across_nodes,
                };
                by_node.record_us(us);
            }
            // Read first: the maximum rarely moves, and a read shares the counter's cache line
            // with the other worker where a `fetch_max` would take it over on every delivery.
            if us > meter.latency_max_us.load(Relaxed) {
                meter.latency_max_us.fetch_max(us, Relaxed);
            }
        }
        if self.trace.is_some() {
            let published_ms = stamp
                .map(|s| self.phase.ms(clock::instant_at(s.scheduled_ns).into()))
                .unwrap_or(f64::NAN);
            let at_ms = self.phase.ms(at);
            self.trace_event(TraceEvent::Delivery {
                at_ms,
                published_ms,
                seq,
            });
        }
    }

    /// Accounts for a delivered `body` from a server that numbers nothing: its seq is the
    /// stamp's [`Stamp::log_position`], and its bytes count as payload. A body without the
    /// loadgen's stamp is not this chat's message: an error naming what came.
    pub fn on_stamped(&mut self, body: &str, at: Instant) -> Result<(), ClientError> {
        let stamp = Stamp::parse(body).ok_or_else(|| {
            ClientError::Protocol(
                crate::codec::CodecError::new("a message carrying the loadgen's stamp", body)
                    .to_string(),
            )
        })?;
        self.phase
            .meter
            .traffic
            .payload_down
            .fetch_add(body.len() as u64, Relaxed);
        let senders = self.phase.senders;
        self.deliver(stamp.log_position(senders), body, at, Some(senders));
        Ok(())
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
            .record_us((end - start).as_micros() as u64);
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
    /// What the protocol's adapter hands every connect of the client, fixed for its life (a
    /// generic target's subscribe path); `()` for clients that need nothing beyond `me`.
    type Setup: Send + Sync;

    /// Opens the client's connection from `me.since`; for SSE and WebSocket this includes the
    /// subscription handshake. Records the connect time with [`ClientHandle::connected`].
    fn connect(
        me: &mut ClientHandle,
        setup: &Self::Setup,
    ) -> impl Future<Output = Result<Self, ClientError>> + Send;

    /// Receives (and, for a WebSocket sender, publishes) until `stop` is cancelled (`Ok`) or
    /// the connection fails (`Err`, after which the runner reconnects).
    fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> impl Future<Output = Result<(), ClientError>> + Send;
}

/// Where a delivery went relative to its sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Locality {
    /// The receiver was on the node the sender published on.
    SameNode,
    /// The message crossed the backplane to another node.
    AcrossNodes,
}

/// A delivery's locality from the receiver's and the sender's nodes, `None` unless both known.
pub fn locality(receiver: Option<usize>, sender: Option<usize>) -> Option<Locality> {
    match (receiver?, sender?) {
        (r, s) if r == s => Some(Locality::SameNode),
        _ => Some(Locality::AcrossNodes),
    }
}

/// Sleeps `d` unless `stop` comes first; `false` when stopped.
pub async fn pause(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        biased;
        _ = stop.cancelled() => false,
        _ = tokio::time::sleep(d) => true,
    }
}

#[cfg(test)]
mod tests;
