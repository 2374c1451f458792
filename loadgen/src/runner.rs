//! The one runner: measures one transport for one sweep point (a *phase*), the same way for
//! every transport.
//!
//! A phase, on one monotonic clock starting when its first client begins to connect:
//! 1. **ramp**: clients are started at `connect_rate`; each connects (3 tries) and subscribes to
//!    the phase's fresh room from `since=0`;
//! 2. **warm-up**: the measured window starts once every client has tried to connect *and* the
//!    scenario's warm-up has passed;
//! 3. **window**: senders publish on schedule for `duration`; requests, empty answers and bytes,
//!    server CPU and loadgen CPU/lag are the differences between the window's edges (so the
//!    request count is what `duration` of steady state costs); connections opened and errors
//!    are counted over the whole phase, ramp included, so a failed connect is never hidden;
//! 4. **drain**: up to `drain` more for late deliveries (ends early once everything arrived);
//!    latency and integrity count deliveries from the window and the drain;
//! 5. **stop**: clients are cancelled and joined; their ledgers give integrity.
//!
//! Cancellation (Ctrl-C, or the probe declaring the server gone) cuts the phase short at any
//! step; what was measured is kept and the phase is marked incomplete.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::results::{ClientTrace, LoadgenCost, Phase, Second, ServerCost};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;
use wire::Transport;

use crate::clients::long_poll::LongPollClient;
use crate::clients::short_poll::ShortPollClient;
use crate::clients::sse::SseClient;
use crate::clients::websocket::WebSocketClient;
use crate::clients::{ClientHandle, PhaseCtx, TransportClient, Window, pause};
use crate::conn::Connector;
use crate::ledger::{Ledger, integrity};
use crate::meter::PhaseMeter;
use crate::probe::{Probe, SATURATED_LAG_MS, self_cpu_s};
use crate::publisher::{PublishVia, Schedule, run_sender};
use crate::scenario::Scenario;

/// Connect attempts per client before it is given up.
const CONNECT_TRIES: u32 = 3;
/// Wait between a client's first connect attempts.
const CONNECT_RETRY_AFTER: Duration = Duration::from_millis(500);
/// Wait after a connected client's connection failed, before it reconnects (so a dead server
/// is not hammered in a tight loop).
const RECONNECT_AFTER: Duration = Duration::from_millis(200);
/// Clients traced in full per phase (a sender and a pure receiver).
const TRACED: usize = 2;
/// How long stopped clients may take to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long senders may take to finish their last publish after the window.
const SENDER_GRACE: Duration = Duration::from_secs(5);

/// What a finished client hands back.
#[derive(Debug)]
struct ClientReport {
    connected: bool,
    ledger: Ledger,
    trace: Option<ClientTrace>,
}

/// What one phase needs besides the scenario.
#[derive(Debug, Clone)]
pub struct PhaseSetup {
    /// Opens client connections to the server.
    pub connector: Arc<Connector>,
    /// The server's `host:port`.
    pub authority: String,
    /// The server and loadgen probe.
    pub probe: Arc<Probe>,
    /// Cancelled on Ctrl-C or when the server is gone.
    pub abort: CancellationToken,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// A label for the progress bar (e.g. the sweep value).
    pub label: String,
}

/// Measures `transport` for the (resolved) scenario `s`, in room `room`.
pub async fn run_phase(
    s: &Scenario,
    transport: Transport,
    room: String,
    setup: &PhaseSetup,
) -> Phase {
    let start = Instant::now();
    let meter = Arc::new(PhaseMeter::default());
    let phase = Arc::new(PhaseCtx {
        transport,
        authority: setup.authority.clone(),
        room,
        connector: Arc::clone(&setup.connector),
        meter: Arc::clone(&meter),
        start,
        short_poll_interval: s.short_poll_interval,
        long_poll_timeout: s.long_poll_timeout,
        payload_bytes: s.payload_bytes,
        published: Default::default(),
    });
    let abort = &setup.abort;
    let stop = CancellationToken::new();
    let mut warnings = Vec::new();

    let planned = s.warmup + s.duration + s.drain;
    let bar = progress_bar(setup, transport, planned);
    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(tick_seconds(
        Arc::clone(&meter),
        start,
        bar.clone(),
        s.clients,
        ticker_stop.clone(),
    ));

    // 1. Ramp.
    let (window_tx, window_rx) = watch::channel(None::<Window>);
    let mut clients: JoinSet<ClientReport> = JoinSet::new();
    let mut senders: JoinSet<()> = JoinSet::new();
    let traced = traced_clients(s.clients as usize);
    let mut started = 0u64;
    for i in 0..s.clients as usize {
        let due = start + Duration::from_secs_f64(i as f64 / s.connect_rate);
        tokio::select! {
            biased;
            _ = abort.cancelled() => break,
            _ = sleep_until(due) => {}
        }
        let mut me = ClientHandle::new(i, Arc::clone(&phase), traced.contains(&i));
        if i < s.senders as usize {
            let via = if transport == Transport::WebSocket {
                let (tx, rx) = mpsc::unbounded_channel();
                me.orders = Some(rx);
                PublishVia::WebSocket(tx)
            } else {
                PublishVia::Http
            };
            let schedule = Schedule {
                sender: i,
                rate: s.rate,
            };
            senders.spawn(run_sender(
                Arc::clone(&phase),
                schedule,
                window_rx.clone(),
                via,
                stop.clone(),
            ));
        }
        let stop = stop.clone();
        match transport {
            Transport::ShortPoll => clients.spawn(client_task::<ShortPollClient>(me, stop)),
            Transport::LongPoll => clients.spawn(client_task::<LongPollClient>(me, stop)),
            Transport::Sse => clients.spawn(client_task::<SseClient>(me, stop)),
            Transport::WebSocket => clients.spawn(client_task::<WebSocketClient>(me, stop)),
        };
        started += 1;
    }

    // 2. Warm-up: every client tried, and the warm-up passed.
    let tried_by = Instant::now()
        + crate::clients::http::CONNECT_TIMEOUT * CONNECT_TRIES
        + Duration::from_secs(2);
    while meter.clients_attempted.load(Relaxed) < started && Instant::now() < tried_by {
        if !pause(Duration::from_millis(20), abort).await {
            break;
        }
    }
    tokio::select! {
        biased;
        _ = abort.cancelled() => {}
        _ = sleep_until(start + s.warmup) => {}
    }
    let connected = meter.clients_connected.load(Relaxed);

    // 3. Window.
    let probe = &setup.probe;
    probe.reset_peaks();
    let server_before = probe.server_reading_now().await;
    let self_before = self_cpu_s();
    let traffic_before = meter.snapshot();
    meter
        .peak_in_flight
        .store(meter.in_flight.load(Relaxed).max(0) as u64, Relaxed);
    let window_start = Instant::now();
    let window = Window {
        start: window_start,
        end: window_start + s.duration,
    };
    let mut complete = !abort.is_cancelled();
    if complete {
        let _ = window_tx.send(Some(window));
        tokio::select! {
            biased;
            _ = abort.cancelled() => complete = false,
            _ = sleep_until(window.end) => {}
        }
    }
    let window_end = Instant::now().min(window.end).max(window.start);
    let traffic = meter
        .snapshot()
        .since(&traffic_before, meter.peak_in_flight.load(Relaxed));
    let server_after = probe.server_reading_now().await;
    let self_after = self_cpu_s();
    let (lag_p99, lag_max) = probe.lag_ms();
    let rss_peak = probe.rss_peak();
    let open_connections_peak = probe.open_connections_peak();
    let tcp_connections_peak = probe.tcp_connections_peak();
    let duration_s = (window_end - window.start).as_secs_f64();

    // Senders finish their last publish (bounded).
    if tokio::time::timeout(SENDER_GRACE, async {
        while senders.join_next().await.is_some() {}
    })
    .await
    .is_err()
    {
        senders.abort_all();
        warnings.push("some publishes were still unanswered when the window closed".to_owned());
    }

    // 4. Drain. After Ctrl-C a short one still lets messages already on their way arrive (so
    // they are not counted as missing); after the server died there is nothing to wait for.
    let aborted = abort.is_cancelled();
    let drain_end = if aborted {
        Instant::now() + s.drain.min(Duration::from_secs(1))
    } else {
        window_end + s.drain
    };
    while setup.probe.failure().is_none() && Instant::now() < drain_end {
        let owed = meter.published.load(Relaxed) * meter.clients_connected.load(Relaxed);
        if meter.distinct_deliveries.load(Relaxed) >= owed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // 5. Stop.
    stop.cancel();
    let mut reports = Vec::new();
    let joined = tokio::time::timeout(STOP_GRACE, async {
        while let Some(r) = clients.join_next().await {
            if let Ok(r) = r {
                reports.push(r);
            }
        }
    })
    .await;
    if joined.is_err() {
        let left = clients.len();
        clients.abort_all();
        warnings.push(format!(
            "{left} clients did not stop within {STOP_GRACE:?}; their deliveries are not counted"
        ));
    }
    ticker_stop.cancel();
    let timeseries = ticker.await.unwrap_or_default();
    // Connections and errors are a cost of the whole phase (most connects happen in the ramp,
    // and a failed connect must not hide outside the window).
    let mut traffic = traffic;
    traffic.connections_opened = meter.connections_opened.load(Relaxed);
    traffic.errors = meter.errors.load(Relaxed);

    // Results.
    let mut published = phase
        .published
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    published.sort_unstable();
    let integrity = integrity(
        reports.iter().filter(|r| r.connected).map(|r| &r.ledger),
        &published,
    );
    let mut traces: Vec<ClientTrace> = reports.iter_mut().filter_map(|r| r.trace.take()).collect();
    traces.sort_by(|a, b| a.client.cmp(&b.client));

    let loadgen_cpu = (self_after - self_before).max(0.0);
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    let saturated =
        lag_p99 > SATURATED_LAG_MS || (duration_s > 0.0 && loadgen_cpu / duration_s > 0.9 * cpus);
    let server = ServerCost {
        cpu_s: match (server_before, server_after) {
            (Some(a), Some(b)) => (b.cpu_s - a.cpu_s).max(0.0),
            _ => 0.0,
        },
        rss_peak_bytes: rss_peak,
        rss_start_bytes: server_before.map_or(0, |r| r.rss_bytes),
        open_connections_peak,
        tcp_connections_peak,
    };
    if server_before.is_none() || server_after.is_none() {
        warnings.push(
            "server CPU and memory could not be read (no /proc for it and no process_* metrics)"
                .to_owned(),
        );
    }
    if connected < s.clients {
        warnings.push(format!(
            "{} of {} clients never connected",
            s.clients - connected,
            s.clients
        ));
    }
    if traffic.errors > 0 {
        warnings.push(format!(
            "{} errors (failed connects, requests or frames)",
            traffic.errors
        ));
    }
    if integrity.missing > 0 {
        warnings.push(if complete {
            format!("{} deliveries missing", integrity.missing)
        } else {
            format!(
                "{} deliveries missing (the phase was cut short; messages still on their way then count as missing)",
                integrity.missing
            )
        });
    }
    if saturated {
        warnings.push(format!(
            "loadgen saturated: its timers fired late (p99 {lag_p99:.1} ms, max {lag_max:.1} ms; its CPU {loadgen_cpu:.1} s in {duration_s:.1} s), so the machine or the loadgen was too busy and latencies include that delay"
        ));
    }
    if !complete {
        warnings.push("phase cut short".to_owned());
    }
    let latency = meter.latency.merged();
    bar.finish_with_message(format!(
        "done: {connected}/{} connected, {} published, {} missing, p50 {}",
        s.clients,
        published.len(),
        integrity.missing,
        latency
            .quantile_ms(0.5)
            .map_or("-".to_owned(), |v| format!("{v:.1} ms"))
    ));

    Phase {
        transport: transport.to_string(),
        clients: s.clients,
        clients_connected: connected,
        duration_s,
        complete,
        messages_published: published.len() as u64,
        integrity,
        latency,
        request_rtt: meter.request_rtt.merged(),
        connect_time: meter.connect_time.merged(),
        traffic,
        server,
        loadgen: LoadgenCost {
            cpu_s: loadgen_cpu,
            timer_lag_p99_ms: lag_p99,
            timer_lag_max_ms: lag_max,
            saturated,
        },
        timeseries,
        traces,
        warnings,
        // Not measured yet: the report estimates the floor from the run's fastest delivery.
        model_floor_ms: None,
    }
}

/// Which clients are traced: client 0 (a sender, when there are any) and the last client (a
/// pure receiver when there are more clients than senders).
fn traced_clients(clients: usize) -> Vec<usize> {
    let mut t = vec![0, clients.saturating_sub(1)];
    t.dedup();
    t.truncate(TRACED);
    t
}

/// One client's life: connect (a few tries), follow the room until stopped (reconnecting from
/// its last seq after each failure, as a real client would), hand back its ledger.
async fn client_task<C: TransportClient>(
    mut me: ClientHandle,
    stop: CancellationToken,
) -> ClientReport {
    let meter = Arc::clone(&me.phase.meter);
    let mut client = None;
    for attempt in 1..=CONNECT_TRIES {
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = C::connect(&mut me) => r,
        };
        match result {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) => {
                me.on_error(&e);
                if attempt == CONNECT_TRIES || !pause(CONNECT_RETRY_AFTER, &stop).await {
                    break;
                }
            }
        }
    }
    meter.clients_attempted.fetch_add(1, Relaxed);
    let connected = client.is_some();
    if let Some(c) = client {
        meter.clients_connected.fetch_add(1, Relaxed);
        follow(c, &mut me, &stop).await;
    }
    ClientReport {
        connected,
        trace: me.trace.take().map(|events| ClientTrace {
            client: me.id.clone(),
            events,
        }),
        ledger: me.ledger,
    }
}

/// Runs `client` until `stop`; after each failure, counts it, waits, and reconnects (until it
/// succeeds or `stop`).
async fn follow<C: TransportClient>(
    mut client: C,
    me: &mut ClientHandle,
    stop: &CancellationToken,
) {
    loop {
        let Err(e) = client.run(me, stop).await else {
            return;
        };
        me.on_error(&e);
        client = loop {
            if !pause(RECONNECT_AFTER, stop).await {
                return;
            }
            let reconnected = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                r = C::connect(me) => r,
            };
            match reconnected {
                Ok(c) => break c,
                Err(e) => me.on_error(&e),
            }
        };
    }
}

/// Samples the meter once a second into the phase's time series, and updates the bar.
async fn tick_seconds(
    meter: Arc<PhaseMeter>,
    start: Instant,
    bar: ProgressBar,
    clients: u64,
    stop: CancellationToken,
) -> Vec<Second> {
    let mut out = Vec::new();
    let mut ticks = interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut requests, mut deliveries, mut bytes) = (0, 0, 0);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return out,
            _ = ticks.tick() => {}
        }
        let r = meter.requests.load(Relaxed);
        let d = meter.deliveries.load(Relaxed);
        let b = meter.bytes_down.load(Relaxed);
        out.push(Second {
            second: out.len() as u32,
            requests: r - requests,
            deliveries: d - deliveries,
            bytes_down: b - bytes,
            in_flight: meter.in_flight.load(Relaxed).max(0) as u64,
        });
        (requests, deliveries, bytes) = (r, d, b);
        bar.set_position(out.len() as u64);
        bar.set_message(format!(
            "{}/{clients} conn · {} req/s · {} dlv/s · {} err",
            meter.clients_connected.load(Relaxed),
            out.last().map_or(0, |s| s.requests),
            out.last().map_or(0, |s| s.deliveries),
            meter.errors.load(Relaxed),
        ));
    }
}

fn progress_bar(setup: &PhaseSetup, transport: Transport, planned: Duration) -> ProgressBar {
    let target = if setup.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(planned.as_secs().max(1)), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos:>3}/{len}s {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}{transport}", setup.label));
    bar
}
