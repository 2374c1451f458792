//! The one runner: measures one transport for one sweep point (a *phase*), the same way for
//! every transport and every target protocol.
//!
//! A phase begins with [`floor::measure_floor`] (step 0: the server's service time on this
//! machine, measured with one idle subscriber before the phase's clients connect). Then, on
//! one monotonic clock starting when its first client begins to connect, come five steps, each
//! a function that returns what the next needs:
//! 1. `ramp`: clients are started at `connect_rate`; each connects (3 tries) and subscribes to
//!    the phase's fresh room from `since=0`; senders are started beside the first clients;
//! 2. `warm_up`: the measured window starts once every client has tried to connect *and* the
//!    scenario's warm-up has passed;
//! 3. `measure_window`: senders publish on schedule for `duration`; requests, empty answers
//!    and bytes, server CPU and loadgen CPU/lag are the differences between the window's edges
//!    (so the request count is what `duration` of steady state costs); connections opened and
//!    errors are counted over the whole phase, ramp included, so a failed connect is never
//!    hidden;
//! 4. `drain`: up to `drain` more for late deliveries (ends early once everything arrived);
//!    latency and integrity count deliveries from the window and the drain;
//! 5. `stop`: clients are cancelled and joined; their ledgers give integrity.
//!
//! Then [`warnings::phase_warnings`] judges the phase from what the steps returned.
//! Cancellation (Ctrl-C, or the probe declaring the server gone) cuts the phase short at any
//! step; what was measured is kept and the phase is marked incomplete.

pub mod cluster;
pub mod floor;
mod progress;
pub mod warnings;

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use report::results::{
    ClientTrace, LoadgenCost, NodeKilled, NodeLatency, Phase, ProcessCost, ServerCost, Traffic,
};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;
use wire::Transport;

use crate::clients::life::{CONNECT_TRIES, ClientReport};
use crate::clients::{ClientHandle, PhaseCtx, Window, pause};
use crate::conn::Connector;
use crate::ledger::integrity;
use crate::meter::PhaseMeter;
use crate::probe::{Probe, ServerReading, self_cpu_s, self_rss_bytes};
use crate::protocol::TargetProtocol;
use crate::publisher::{PublishVia, Schedule, run_sender};
use crate::scenario::Scenario;
use cluster::ClusterWatch;
pub use progress::ProgressMode;
use progress::{progress_bar, tick_seconds};
use warnings::{LoadgenLoad, PhaseFacts, phase_warnings};

/// Clients traced in full per phase (a sender and a pure receiver).
const TRACED: usize = 2;
/// How long stopped clients may take to finish before they are aborted.
const STOP_GRACE: Duration = Duration::from_secs(10);
/// How long senders may take to finish their last publish after the window.
const SENDER_GRACE: Duration = Duration::from_secs(5);

/// What one phase needs besides the scenario.
#[derive(Debug, Clone)]
pub struct PhaseSetup {
    /// Opens client connections to the server.
    pub connector: Arc<Connector>,
    /// The server's `host:port`.
    pub authority: String,
    /// The protocol the server speaks (`protocol::duplex::Duplex` for duplex itself).
    pub protocol: Arc<dyn TargetProtocol>,
    /// The server and loadgen probe.
    pub probe: Arc<Probe>,
    /// Cancelled on Ctrl-C or when the server is gone.
    pub abort: CancellationToken,
    /// How to show progress on stderr.
    pub progress: ProgressMode,
    /// A label for the progress bar (e.g. the sweep value).
    pub label: String,
    /// The cluster's processes and its fault, when the lab started a cluster.
    pub cluster: Option<ClusterWatch>,
}

/// Step 1's result: every client and sender started.
struct Ramped {
    clients: JoinSet<ClientReport>,
    senders: JoinSet<()>,
    /// Clients started (fewer than planned when cut short).
    started: u64,
    /// Announces the measured window to the senders.
    window_tx: watch::Sender<Option<Window>>,
    /// Stops clients and senders.
    stop: CancellationToken,
}

/// Step 3's result: what the window's edges measured.
struct Measured {
    /// The window ran its whole length.
    complete: bool,
    /// Its length, seconds (shorter when cut short).
    duration_s: f64,
    /// When it ended.
    end: Instant,
    /// Traffic within the window.
    traffic: Traffic,
    server_before: Option<ServerReading>,
    server_after: Option<ServerReading>,
    load: LoadgenLoad,
    rss_peak: u64,
    /// The loadgen's own peak RSS in the window.
    loadgen_rss_peak: u64,
    open_connections_peak: u64,
    tcp_connections_peak: u64,
    /// Each cluster process's cost (empty without a cluster).
    processes: Vec<ProcessCost>,
    /// The node the fault killed, and when.
    node_killed: Option<(String, Instant)>,
    /// Why the fault could not be injected.
    fault_failed: Option<String>,
}

/// Step 5's result.
struct Stopped {
    reports: Vec<ClientReport>,
    /// Clients that had to be aborted.
    not_stopped: usize,
}

/// Measures `transport` for the (resolved) scenario `s`, in room `room`.
pub async fn run_phase(
    s: &Scenario,
    transport: Transport,
    room: String,
    setup: &PhaseSetup,
) -> Phase {
    // Before any client connects (the field's meaning; with a fresh server per phase, what an
    // empty server holds), and before the floor is measured on it.
    let server_at_start = setup.probe.server_reading_now().await;
    // The loadgen's own memory before this phase's clients exist, for what each one costs it.
    let loadgen_rss_start = self_rss_bytes();
    let floor = floor::measure_floor(s, transport, &room, setup).await;
    let start = Instant::now();
    let meter = Arc::new(PhaseMeter::default());
    let phase = Arc::new(PhaseCtx {
        transport,
        authority: setup.authority.clone(),
        room,
        protocol: Arc::clone(&setup.protocol),
        connector: Arc::clone(&setup.connector),
        meter: Arc::clone(&meter),
        start,
        short_poll_interval: s.short_poll_interval,
        long_poll_timeout: s.long_poll_timeout,
        payload_bytes: s.payload_bytes,
        seed: s.seed,
        profile: s.client_profile,
        senders: s.senders as usize,
        clients: s.clients as usize,
        mode: s.chat_mode,
        published: Default::default(),
        sender_nodes: (0..s.senders).map(|_| Default::default()).collect(),
    });
    let bar = progress_bar(setup, transport, s.warmup + s.duration + s.drain);
    let ticker_stop = CancellationToken::new();
    let ticker = tokio::spawn(tick_seconds(
        Arc::clone(&meter),
        start,
        bar.clone(),
        s.clients,
        ticker_stop.clone(),
    ));

    let mut ramped = ramp(s, &phase, &setup.abort).await;
    let connected = warm_up(s, &meter, ramped.started, start, &setup.abort).await;
    let mut measured = measure_window(s, &meter, setup, &ramped.window_tx).await;
    let senders_unanswered = !finish_senders(&mut ramped.senders).await;
    drain(s, &meter, measured.end, setup).await;
    let stopped = stop(ramped.clients, &ramped.stop).await;
    ticker_stop.cancel();
    let timeseries = ticker.await.unwrap_or_default();
    // Connections and errors are a cost of the whole phase (most connects happen in the ramp,
    // and a failed connect must not hide outside the window).
    measured.traffic.connections_opened = meter.traffic.connections_opened.load(Relaxed);
    measured.traffic.errors = meter.traffic.errors.load(Relaxed);

    // Results.
    let mut published = phase
        .published
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    published.sort_unstable();
    let mut reports = stopped.reports;
    let integrity = integrity(
        reports
            .iter()
            .filter(|r| r.connected)
            .map(|r| (r.index, &r.ledger)),
        &published,
        s.chat_mode,
        s.clients as usize,
    );
    let mut traces: Vec<ClientTrace> = reports.iter_mut().filter_map(|r| r.trace.take()).collect();
    traces.sort_by(|a, b| a.client.cmp(&b.client));

    let m = &measured;
    let server = ServerCost {
        cpu_s: match (m.server_before, m.server_after) {
            (Some(a), Some(b)) => (b.cpu_s - a.cpu_s).max(0.0),
            _ => 0.0,
        },
        rss_peak_bytes: m.rss_peak,
        rss_start_bytes: server_at_start.map_or(0, |r| r.rss_bytes),
        open_connections_peak: m.open_connections_peak,
        tcp_connections_peak: m.tcp_connections_peak,
    };
    let warnings = phase_warnings(&PhaseFacts {
        senders_unanswered,
        clients_not_stopped: stopped.not_stopped,
        server_readable: m.server_before.is_some() && m.server_after.is_some(),
        clients: s.clients,
        connected,
        errors: m.traffic.errors,
        missing: integrity.missing,
        complete: m.complete,
        load: m.load,
    });
    let mut warnings = warnings;
    if let Some(why) = &m.fault_failed {
        warnings.push(format!("the fault was not injected: {why}"));
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
        duration_s: m.duration_s,
        complete: m.complete,
        messages_published: published.len() as u64,
        integrity,
        latency,
        request_rtt: meter.request_rtt.merged(),
        connect_time: meter.connect_time.merged(),
        traffic: m.traffic,
        server,
        loadgen: LoadgenCost {
            cpu_s: m.load.cpu_s,
            rss_start_bytes: loadgen_rss_start,
            rss_peak_bytes: m.loadgen_rss_peak,
            timer_lag_p99_ms: m.load.lag_p99_ms,
            timer_lag_max_ms: m.load.lag_max_ms,
            saturated: m.load.saturated(),
        },
        timeseries,
        traces,
        warnings,
        model_floor_ms: floor.as_ref().and_then(floor::FloorReading::median_ms),
        model_floor_spread_ms: floor.as_ref().and_then(floor::FloorReading::spread_ms),
        stack: None,
        reconnects: meter.reconnects.load(Relaxed),
        node_killed: m.node_killed.as_ref().map(|(node, at)| NodeKilled {
            node: node.clone(),
            at_s: (*at - start).as_secs_f64(),
        }),
        server_processes: m.processes.clone(),
        latency_by_node: (setup.connector.nodes() > 1).then(|| NodeLatency {
            same_node: meter.latency_same_node.merged(),
            across_nodes: meter.latency_across_nodes.merged(),
        }),
    }
}

/// Step 1: starts the clients at `connect_rate` (the first `senders` of them with a sender
/// beside them), each through the target protocol's client for the phase's transport.
async fn ramp(s: &Scenario, phase: &Arc<PhaseCtx>, abort: &CancellationToken) -> Ramped {
    let (window_tx, window_rx) = watch::channel(None::<Window>);
    let stop = CancellationToken::new();
    let mut ramped = Ramped {
        clients: JoinSet::new(),
        senders: JoinSet::new(),
        started: 0,
        window_tx,
        stop: stop.clone(),
    };
    let transport = phase.transport;
    let protocol = &phase.protocol;
    let traced = traced_clients(s.clients as usize);
    for i in 0..s.clients as usize {
        let due = phase.start + Duration::from_secs_f64(i as f64 / s.connect_rate);
        tokio::select! {
            biased;
            _ = abort.cancelled() => break,
            _ = sleep_until(due) => {}
        }
        let mut me = ClientHandle::new(i, Arc::clone(phase), traced.contains(&i));
        if i < s.senders as usize {
            let via = if protocol.publishes_on_subscription(transport) {
                let (tx, rx) = mpsc::unbounded_channel();
                me.orders = Some(rx);
                PublishVia::WebSocket(tx)
            } else {
                PublishVia::Http
            };
            let schedule = Schedule {
                sender: i,
                rate: s.rate,
                seed: s.seed,
            };
            ramped.senders.spawn(run_sender(
                Arc::clone(phase),
                schedule,
                window_rx.clone(),
                via,
                stop.clone(),
            ));
        }
        // A child token per client: each client waits on its own token's lock, not on one
        // shared by every client of the phase (cancelling the parent still stops them all).
        ramped
            .clients
            .spawn(protocol.client(transport, me, stop.child_token()));
        ramped.started += 1;
    }
    ramped
}

/// Step 2: waits until every started client tried to connect (bounded by how long its tries
/// can take) and the warm-up has passed; returns how many clients are connected.
async fn warm_up(
    s: &Scenario,
    meter: &PhaseMeter,
    started: u64,
    start: Instant,
    abort: &CancellationToken,
) -> u64 {
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
    meter.clients_connected.load(Relaxed)
}

/// Step 3: opens the window (the senders start publishing), waits out `duration` (killing a
/// node on the way when the scenario's fault asks), and reads what happened between its edges.
async fn measure_window(
    s: &Scenario,
    meter: &PhaseMeter,
    setup: &PhaseSetup,
    window_tx: &watch::Sender<Option<Window>>,
) -> Measured {
    let (probe, abort) = (&setup.probe, &setup.abort);
    probe.reset_peaks();
    let mut processes = setup.cluster.as_ref().map(ClusterWatch::start);
    let server_before = probe.server_reading_now().await;
    let self_before = self_cpu_s();
    let traffic_before = meter.snapshot();
    meter.restart_peak_in_flight();
    let window_start = Instant::now();
    let window = Window {
        start: window_start,
        end: window_start + s.duration,
    };
    let mut complete = !abort.is_cancelled();
    let kill = setup
        .cluster
        .as_ref()
        .and_then(|c| Some((c, c.kill.as_ref()?)));
    let mut kill_at = kill.map(|(_, k)| window_start + k.at);
    let (mut node_killed, mut fault_failed) = (None, None);
    if complete {
        let _ = window_tx.send(Some(window));
        loop {
            tokio::select! {
                biased;
                _ = abort.cancelled() => {
                    complete = false;
                    break;
                }
                _ = sleep_until(kill_at.unwrap_or(window.end)), if kill_at.is_some() => {
                    kill_at = None;
                    let (Some((cluster, k)), Some(readings)) = (kill, processes.as_mut()) else {
                        continue;
                    };
                    match cluster.kill(readings) {
                        Ok(node) => {
                            setup.connector.mark_down(k.addr);
                            node_killed = Some((node, Instant::now()));
                        }
                        Err(why) => fault_failed = Some(why),
                    }
                }
                _ = sleep_until(window.end) => break,
            }
        }
    }
    let end = Instant::now().min(window.end).max(window.start);
    let traffic = meter.snapshot().since(&traffic_before);
    let server_after = probe.server_reading_now().await;
    let self_after = self_cpu_s();
    let (lag_p99_ms, lag_max_ms) = probe.lag_ms();
    let duration_s = (end - window.start).as_secs_f64();
    Measured {
        complete,
        duration_s,
        end,
        traffic,
        server_before,
        server_after,
        load: LoadgenLoad {
            lag_p99_ms,
            lag_max_ms,
            cpu_s: (self_after - self_before).max(0.0),
            duration_s,
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()) as f64,
        },
        rss_peak: probe.rss_peak(),
        loadgen_rss_peak: probe.self_rss_peak(),
        open_connections_peak: probe.open_connections_peak(),
        tcp_connections_peak: probe.tcp_connections_peak(),
        processes: match (setup.cluster.as_ref(), processes) {
            (Some(cluster), Some(readings)) => cluster.finish(readings),
            _ => Vec::new(),
        },
        node_killed,
        fault_failed,
    }
}

/// Lets the senders finish their last publish (bounded); `false` when some had to be aborted.
async fn finish_senders(senders: &mut JoinSet<()>) -> bool {
    let finished = tokio::time::timeout(SENDER_GRACE, async {
        while senders.join_next().await.is_some() {}
    })
    .await
    .is_ok();
    if !finished {
        senders.abort_all();
    }
    finished
}

/// Step 4: waits up to `drain` after the window for deliveries still on their way, ending
/// early once every connected client received every publish. After Ctrl-C a short one still
/// lets messages already on their way arrive (so they are not counted as missing); after the
/// server died there is nothing to wait for.
async fn drain(s: &Scenario, meter: &PhaseMeter, window_end: Instant, setup: &PhaseSetup) {
    let drain_end = if setup.abort.is_cancelled() {
        Instant::now() + s.drain.min(Duration::from_secs(1))
    } else {
        window_end + s.drain
    };
    while setup.probe.failure().is_none() && Instant::now() < drain_end {
        let owed = meter.published.load(Relaxed)
            * s.chat_mode
                .owed_per_message(meter.clients_connected.load(Relaxed));
        if meter.distinct_deliveries.load(Relaxed) >= owed {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Step 5: cancels the clients and collects their reports (aborting those that outlast the
/// grace).
async fn stop(mut clients: JoinSet<ClientReport>, stop: &CancellationToken) -> Stopped {
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
    let not_stopped = if joined.is_err() {
        let left = clients.len();
        clients.abort_all();
        left
    } else {
        0
    };
    Stopped {
        reports,
        not_stopped,
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
