//! The projector dashboard's numbers: students per transport (from [`super::presence`]) next to
//! the server's own per-transport counters ([`crate::metrics::Metrics::transport`]), as one JSON
//! snapshot (`GET /live/stats`) or as an SSE stream (`GET /live/stream`) that also carries the
//! flash delay reports as they arrive.
//!
//! Rates are computed per stream from two consecutive snapshots, on the server's monotonic
//! clock, so every dashboard shows requests/s, deliveries/s and bytes/s over its own last second.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::stream::{self, Stream};
use serde::Serialize;
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use super::Live;
use super::experiment::ExperimentView;
use super::flash::{DelayView, FlashRecord};
use crate::metrics::{Metrics, TransportStats};
use wire::Transport;

/// How often a dashboard stream sends a snapshot.
pub const PERIOD: Duration = Duration::from_secs(1);

/// One transport's line on the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct TransportRow {
    /// Which transport.
    pub transport: Transport,
    /// Student tabs following a room over it.
    pub clients: usize,
    /// Student tabs on it that are hidden and paused.
    pub paused: usize,
    /// The server's gauge: open streams/sockets, or polls in flight.
    pub open_connections: i64,
    /// Requests answered since start.
    pub requests: u64,
    /// Messages delivered since start.
    pub deliveries: u64,
    /// Bytes written since start, headers and framing included.
    pub bytes_sent: u64,
    /// Bytes read since start.
    pub bytes_received: u64,
    /// Requests per second over the stream's last period (absent in a one-off snapshot).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_s: Option<f64>,
    /// Deliveries per second, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deliveries_per_s: Option<f64>,
    /// Bytes per second, both directions, likewise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_s: Option<f64>,
}

/// A room and how many student tabs follow it.
#[derive(Debug, Clone, Serialize)]
pub struct RoomRow {
    /// The room's name.
    pub room: String,
    /// Tabs following it.
    pub tabs: usize,
}

/// Everything the dashboard shows except the delay reports.
#[derive(Debug, Clone, Serialize)]
pub struct Snapshot {
    /// The server's time, Unix µs.
    pub now_us: u64,
    /// One row per transport, in [`Transport::ALL`] order.
    pub transports: Vec<TransportRow>,
    /// Rooms with students in them.
    pub rooms: Vec<RoomRow>,
    /// The flashes sent, oldest first.
    pub flashes: Vec<FlashRecord>,
    /// The latest guided experiment, running or finished.
    pub experiment: Option<ExperimentView>,
}

fn snapshot(
    metrics: &Metrics,
    live: &Live,
    previous: Option<(&[TransportStats], Duration)>,
) -> (Snapshot, Vec<TransportStats>) {
    let counters: Vec<TransportStats> = Transport::ALL
        .into_iter()
        .map(|t| metrics.transport(t))
        .collect();
    let transports = counters
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let heads = live.presence.headcount(c.transport);
            let rate = |f: fn(&TransportStats) -> u64| {
                previous.map(|(prev, dt)| {
                    f(c).saturating_sub(f(&prev[i])) as f64 / dt.as_secs_f64().max(1e-3)
                })
            };
            TransportRow {
                transport: c.transport,
                clients: heads.clients,
                paused: heads.paused,
                open_connections: c.open_connections,
                requests: c.requests,
                deliveries: c.deliveries,
                bytes_sent: c.bytes_sent,
                bytes_received: c.bytes_received,
                requests_per_s: rate(|c| c.requests),
                deliveries_per_s: rate(|c| c.deliveries),
                bytes_per_s: rate(|c| c.bytes_sent + c.bytes_received),
            }
        })
        .collect();
    let snapshot = Snapshot {
        now_us: super::now_us(),
        transports,
        rooms: live
            .presence
            .rooms()
            .into_iter()
            .map(|(room, tabs)| RoomRow { room, tabs })
            .collect(),
        flashes: live.flashes.recent(),
        experiment: live.experiments.view(),
    };
    (snapshot, counters)
}

/// `GET /live/stats`: one snapshot, without rates.
pub(super) async fn stats(
    _teacher: super::Teacher,
    State(metrics): State<Arc<Metrics>>,
    State(live): State<Arc<Live>>,
) -> Json<Snapshot> {
    Json(snapshot(&metrics, &live, None).0)
}

/// What one dashboard stream remembers between events.
struct Follower {
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    live: Arc<Live>,
    reports: broadcast::Receiver<DelayView>,
    ticker: tokio::time::Interval,
    previous: Option<(Vec<TransportStats>, Instant)>,
    /// Events to send before waiting again (the backlog of reports on connect).
    queued: Vec<Event>,
}

/// `GET /live/stream`: `event: stats` every second (a [`Snapshot`] with rates), `event: delay`
/// for each flash report (a [`DelayView`]: no tab ids, which would let anyone act as a tab); on connect, `event: delays` with the reports kept.
pub(super) async fn stream(
    _teacher: super::Teacher,
    State(metrics): State<Arc<Metrics>>,
    State(shutdown): State<CancellationToken>,
    State(live): State<Arc<Live>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // Subscribe before copying the backlog, so no report falls between the two.
    let reports = live.flashes.subscribe();
    let backlog = json_event("delays", &live.flashes.reports());
    let mut ticker = tokio::time::interval(PERIOD);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let follower = Follower {
        metrics,
        shutdown,
        live,
        reports,
        ticker,
        previous: None,
        queued: vec![backlog],
    };
    let events = stream::unfold(follower, |mut f| async move {
        if let Some(event) = f.queued.pop() {
            return Some((Ok(event), f));
        }
        let event = tokio::select! {
            biased;
            _ = f.shutdown.cancelled() => return None,
            report = f.reports.recv() => match report {
                Ok(report) => json_event("delay", &report),
                // Skipped some: send the whole backlog again rather than a silent hole.
                Err(broadcast::error::RecvError::Lagged(_)) => json_event("delays", &f.live.flashes.reports()),
                Err(broadcast::error::RecvError::Closed) => return None,
            },
            _ = f.ticker.tick() => {
                let now = Instant::now();
                let previous = f.previous.as_ref().map(|(c, at)| (c.as_slice(), now - *at));
                let (snapshot, counters) = snapshot(&f.metrics, &f.live, previous);
                f.previous = Some((counters, now));
                json_event("stats", &snapshot)
            }
        };
        Some((Ok(event), f))
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn json_event<T: Serialize>(name: &str, value: &T) -> Event {
    Event::default()
        .event(name)
        .json_data(value)
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()))
}
