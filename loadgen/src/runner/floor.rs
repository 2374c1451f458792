//! Step 0 of a phase: the model's floor, measured. Before the phase's clients connect, one
//! idle subscriber follows a room of its own on the phase's (fresh) server while one sender
//! publishes a few dozen messages to it, on a Poisson schedule, through exactly the code the
//! phase uses (the target protocol's client and publish, the stamp, the loadgen's clock), but
//! with no emulated network: the models add the network's trips themselves. What a delivery
//! takes then is the server's service time on this machine plus the loadgen's own share (its
//! timer firing after the scheduled instant, its parsing): the part of every latency that no
//! transport's arithmetic explains. The report adds its median to the models
//! ([`report::results::Phase::model_floor_ms`]) and widens the verdict bands by how much the
//! samples scatter ([`report::results::Phase::model_floor_spread_ms`]), so a figure is judged
//! against a floor measured in the same run rather than a fixed allowance.
//!
//! The subscriber uses the phase's transport, except that a short-poll phase measures with a
//! long poll: a short poll's wait for its next poll is the model's business, and what is left
//! (the publish reaching the log, the answer leaving it) is what a held long poll shows.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use report::LatencyHistogram;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::PhaseSetup;
use crate::clients::{ClientHandle, PhaseCtx, Window, pause};
use crate::meter::PhaseMeter;
use crate::publisher::{PublishVia, Schedule, run_sender};
use crate::recipients::ChatMode;
use crate::scenario::Scenario;

/// Publishes per second while measuring. Sparse enough that a long-poll subscriber is almost
/// always waiting when one arrives (its re-request takes well under a millisecond on
/// loopback, so at 25/s about 2% of messages land in the gap), dense enough for a few dozen
/// samples in [`WINDOW`].
const RATE: f64 = 25.0;
/// How long the sender publishes: about 30 samples at [`RATE`].
const WINDOW: Duration = Duration::from_millis(1200);
/// Longest wait for the subscriber to connect, and for the last deliveries after the window.
const WAIT: Duration = Duration::from_secs(3);
/// Fewer samples than this and the floor is not reported (the report falls back to its
/// estimate, and says so).
const MIN_SAMPLES: u64 = 10;

/// What the measurement found.
#[derive(Debug, Clone, PartialEq)]
pub struct FloorReading {
    /// Every delivery's latency: arrival − scheduled publish, µs.
    pub latency: LatencyHistogram,
}

impl FloorReading {
    /// The floor: the median delivery, ms.
    pub fn median_ms(&self) -> Option<f64> {
        self.latency.quantile_ms(0.5)
    }

    /// How much one delivery's service time scatters around the floor, ms: half the range
    /// between the 10th and the 90th percentile of the samples.
    pub fn spread_ms(&self) -> Option<f64> {
        Some((self.latency.quantile_ms(0.9)? - self.latency.quantile_ms(0.1)?) / 2.0)
    }
}

/// The transport the floor is measured with for a phase of `transport`.
pub fn subscriber_transport(transport: Transport) -> Transport {
    match transport {
        Transport::ShortPoll => Transport::LongPoll,
        other => other,
    }
}

/// Measures the floor for a phase of `transport` in room `<room>-floor`; `None` when the
/// subscriber could not connect, the run was aborted, or too few messages arrived.
pub async fn measure_floor(
    s: &Scenario,
    transport: Transport,
    room: &str,
    setup: &PhaseSetup,
) -> Option<FloorReading> {
    let transport = subscriber_transport(transport);
    let meter = Arc::new(PhaseMeter::default());
    let ctx = Arc::new(PhaseCtx {
        transport,
        authority: setup.authority.clone(),
        room: format!("{room}-floor"),
        protocol: Arc::clone(&setup.protocol),
        // Loopback as it is: the models add the emulated network's trips on their own.
        connector: Arc::new(setup.connector.without_network()),
        meter: Arc::clone(&meter),
        start: Instant::now(),
        short_poll_interval: s.short_poll_interval,
        long_poll_timeout: s.long_poll_timeout,
        payload_bytes: s.payload_bytes,
        seed: s.seed,
        profile: s.client_profile,
        senders: 1,
        // One client that hears its own publishes, whatever the phase's chat mode.
        clients: 1,
        mode: ChatMode::All,
        published: Default::default(),
        // The floor is not split by node.
        sender_nodes: Vec::new(),
    });
    let stop = CancellationToken::new();
    // Client 0 is the sender and the subscriber, as a phase's first client is.
    let mut me = ClientHandle::new(0, Arc::clone(&ctx), false);
    let via = if ctx.protocol.publishes_on_subscription(transport) {
        let (tx, rx) = mpsc::unbounded_channel();
        me.orders = Some(rx);
        PublishVia::WebSocket(tx)
    } else {
        PublishVia::Http
    };
    let client = tokio::spawn(ctx.protocol.client(transport, me, stop.clone()));
    let (window_tx, window_rx) = watch::channel(None::<Window>);
    let schedule = Schedule {
        sender: 0,
        rate: RATE,
        seed: s.seed,
    };
    let mut sender = tokio::spawn(run_sender(
        Arc::clone(&ctx),
        schedule,
        window_rx,
        via,
        stop.clone(),
    ));

    let connected = wait_until(WAIT, &setup.abort, || {
        meter.clients_attempted.load(Relaxed) > 0
    })
    .await
        && meter.clients_connected.load(Relaxed) > 0;
    if connected {
        // A moment for the subscription to be in place (a long poll held, a stream open)
        // and the sender's warm connections opened.
        pause(Duration::from_millis(100), &setup.abort).await;
        let start = Instant::now();
        let _ = window_tx.send(Some(Window {
            start,
            end: start + WINDOW,
        }));
        let _ = tokio::time::timeout(WINDOW + WAIT, &mut sender).await;
        wait_until(WAIT, &setup.abort, || {
            meter.distinct_deliveries.load(Relaxed) >= meter.published.load(Relaxed)
        })
        .await;
    }
    stop.cancel();
    sender.abort();
    let _ = tokio::time::timeout(WAIT, client).await;
    let latency = meter.latency.merged();
    (!setup.abort.is_cancelled() && latency.0.len() >= MIN_SAMPLES)
        .then_some(FloorReading { latency })
}

/// Polls `done` every 5 ms until it holds (`true`), `limit` passes or `abort` (`false`).
async fn wait_until(limit: Duration, abort: &CancellationToken, done: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while !done() {
        if Instant::now() >= until || !pause(Duration::from_millis(5), abort).await {
            return false;
        }
    }
    true
}
