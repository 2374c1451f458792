//! The guided experiment: the teacher presses "run the comparison" on the dashboard
//! (`POST /live/experiment`), every student page on the live page runs each transport in turn
//! for a set time in its own browser while the server publishes a flash every few hundred
//! milliseconds, and each page sends what its browser measured for each phase
//! (`POST /live/experiment/report`). The server keeps those figures and the dashboard offers
//! them as a results file (`GET /live/experiment/results.json`, built in [`results`]) that
//! `duplex report` renders like a loadgen run, marked as measured in browsers.
//!
//! The plan travels to the pages as an ordinary message (event `experiment`, reserved for the
//! server like `flash`), so every page learns it over the transport it is on. Phases are
//! placed on the server's clock, which the pages have aligned with `/live/clock`.
//!
//! Bounded against a hostile classroom network: only tabs on the page when the experiment
//! starts take part (their ids are the server's, see [`super::presence`]); a report is taken
//! once per tab and phase, only from the address the tab belongs to, only for flashes of that
//! phase (each once), with every count and size capped; one experiment at a time, and only the
//! latest is kept.

pub mod results;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Live, now_us};
use crate::config::Config;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::feed::{Draft, Feed, RoomName};
use crate::metrics::Metrics;
use wire::Transport;

/// Time from the button to the first phase: the plan reaches every page (a short poll asks
/// every 500 ms) and each switches to the first transport.
pub const LEAD: Duration = Duration::from_millis(1500);
/// Time from a phase's start to its first flash: the page has stopped the previous transport
/// and connected the new one (a WebSocket handshake, an SSE stream's first response).
pub const SETTLE: Duration = Duration::from_millis(700);
/// How long after the last phase reports are still taken.
pub const REPORT_WINDOW: Duration = Duration::from_secs(10);
/// Ceiling on every count a page reports for one phase (requests, messages, ...): a page polling
/// every 100 ms for 60 s makes 600.
pub const MAX_COUNT: u64 = 100_000;
/// Ceiling on the bytes a page reports for one phase, each direction.
pub const MAX_BYTES: u64 = 1 << 30;

/// Body of `POST /live/experiment` (every field optional).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExperimentRequest {
    /// Seconds each transport runs (2 to 60, default 5).
    #[serde(default)]
    pub phase_s: Option<f64>,
    /// Milliseconds between the flashes the server publishes (200 to 5000, default 500).
    #[serde(default)]
    pub flash_every_ms: Option<u64>,
    /// The pages' short-poll interval during the experiment (100 to 5000 ms, default 500).
    #[serde(default)]
    pub short_poll_interval_ms: Option<u64>,
}

/// One phase of the plan: every page runs `transport` from `start_us` to `end_us` (server
/// clock, Unix µs).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PlannedPhase {
    /// The transport the pages run.
    pub transport: Transport,
    /// When the pages switch to it.
    pub start_us: u64,
    /// When the pages stop counting and report.
    pub end_us: u64,
}

/// The plan, as the pages receive it (the body of the `experiment` message) and the teacher's
/// `POST` is answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Plan {
    /// The experiment's number, from 1.
    pub experiment: u64,
    /// In the order run.
    pub phases: Vec<PlannedPhase>,
    /// Milliseconds between flashes.
    pub flash_every_ms: u64,
    /// The pages' short-poll interval.
    pub short_poll_interval_ms: u64,
}

/// A flash a page saw in a phase, and its delay.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashDelay {
    /// The flash's number.
    pub flash: u64,
    /// From the server's send time to the page's receipt, clocks aligned.
    pub delay_ms: f64,
}

/// Body of `POST /live/experiment/report`: what one page measured in one phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhaseFigures {
    /// Which experiment.
    pub experiment: u64,
    /// Which phase, from 0.
    pub phase: usize,
    /// The reporting tab's id (as issued by `POST /live/tab`).
    pub tab: String,
    /// The transport the page ran (must be the phase's).
    pub transport: Transport,
    /// HTTP requests sent (polls, publishes) or connections opened.
    pub requests: u64,
    /// Poll answers with nothing in them.
    pub empty_responses: u64,
    /// Connections the page opened itself (EventSource, WebSocket).
    pub connections_opened: u64,
    /// Failed requests and dropped streams.
    pub errors: u64,
    /// Bytes sent as the page counts them: request lines, the headers the page sets and the
    /// bodies, frames; the browser's own request headers are not visible to a page.
    pub bytes_up: u64,
    /// Bytes received as the page counts them: status lines, response headers, bodies, events,
    /// frames.
    pub bytes_down: u64,
    /// Of `bytes_down`: status lines and response headers.
    pub header_down: u64,
    /// Of `bytes_down`: the delivered messages' JSON.
    pub payload_down: u64,
    /// Response header bytes as Resource Timing reports them (`transferSize -
    /// encodedBodySize`), when the browser exposes real sizes; `None` when it does not
    /// (Chromium reports a fixed 300 bytes for every response).
    #[serde(default)]
    pub resource_timing_header_down: Option<u64>,
    /// The flashes of this phase the page saw, each once.
    pub delays: Vec<FlashDelay>,
}

/// What the server counted at its own sockets for one phase's transport: every byte the
/// browsers really sent and received, request headers included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ServerCount {
    /// Requests answered (WebSocket: upgrades).
    pub requests: u64,
    /// Bytes read from the browsers.
    pub bytes_received: u64,
    /// Bytes written to the browsers.
    pub bytes_sent: u64,
}

/// One experiment, running or finished.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The plan the pages follow.
    pub plan: Plan,
    /// When it was started, Unix µs.
    pub started_us: u64,
    /// Tabs on the page at the start, the only ones whose figures count.
    pub participants: HashSet<String>,
    /// The rooms the plan and the flashes went to.
    pub rooms: Vec<String>,
    /// Per phase: the flashes published in it, with their send times.
    pub flashes: Vec<Vec<(u64, u64)>>,
    /// Per phase: the server's own counts for its transport, once the phase is over.
    pub server: Vec<Option<ServerCount>>,
    /// Accepted figures, by tab and phase.
    pub reports: HashMap<(String, usize), PhaseFigures>,
    /// Every phase has run (reports may still arrive for [`REPORT_WINDOW`]).
    pub finished: bool,
}

/// The dashboard's view of the latest experiment (no tab ids).
#[derive(Debug, Clone, Serialize)]
pub struct ExperimentView {
    /// Its number.
    pub experiment: u64,
    /// Pages taking part.
    pub pages: usize,
    /// The plan's phases, each with how many pages reported it.
    pub phases: Vec<PhaseView>,
    /// Every phase has run.
    pub finished: bool,
}

/// One phase on the dashboard.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseView {
    /// The transport.
    pub transport: Transport,
    /// When it starts and ends, server clock.
    pub start_us: u64,
    /// When it ends.
    pub end_us: u64,
    /// Pages that sent their figures.
    pub reports: usize,
    /// Flashes published in it so far.
    pub flashes: usize,
    /// Requests per reporting page (the pages' own count).
    pub requests_per_page: Option<f64>,
    /// Bytes both ways per reporting page, as the pages count them.
    pub bytes_per_page: Option<f64>,
    /// Median of every delay the pages reported for this phase's flashes.
    pub delay_p50_ms: Option<f64>,
    /// Flash deliveries the pages reported, and how many there would be with none missed.
    pub delivered: u64,
    /// Flashes times reporting pages.
    pub expected: u64,
}

/// The latest experiment. A std Mutex: held to update a few maps, never across an await.
#[derive(Debug, Default)]
pub struct Experiments {
    next: AtomicU64,
    latest: Mutex<Option<Experiment>>,
}

impl Experiments {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Experiment>> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A copy of the latest experiment, running or finished.
    pub fn latest(&self) -> Option<Experiment> {
        self.lock().clone()
    }

    /// The dashboard's view of the latest experiment.
    pub fn view(&self) -> Option<ExperimentView> {
        let latest = self.lock();
        let e = latest.as_ref()?;
        Some(ExperimentView {
            experiment: e.plan.experiment,
            pages: e.participants.len(),
            phases: e
                .plan
                .phases
                .iter()
                .enumerate()
                .map(|(i, p)| {
                    let figures: Vec<&PhaseFigures> = e
                        .reports
                        .iter()
                        .filter(|((_, phase), _)| *phase == i)
                        .map(|(_, f)| f)
                        .collect();
                    let pages = figures.len();
                    let per_page = |sum: u64| (pages > 0).then(|| sum as f64 / pages as f64);
                    let mut delays: Vec<f64> = figures
                        .iter()
                        .flat_map(|f| f.delays.iter().map(|d| d.delay_ms))
                        .collect();
                    delays.sort_by(f64::total_cmp);
                    PhaseView {
                        transport: p.transport,
                        start_us: p.start_us,
                        end_us: p.end_us,
                        reports: pages,
                        flashes: e.flashes[i].len(),
                        requests_per_page: per_page(figures.iter().map(|f| f.requests).sum()),
                        bytes_per_page: per_page(
                            figures.iter().map(|f| f.bytes_up + f.bytes_down).sum(),
                        ),
                        delay_p50_ms: delays.get(delays.len().saturating_sub(1) / 2).copied(),
                        delivered: delays.len() as u64,
                        expected: (e.flashes[i].len() * pages) as u64,
                    }
                })
                .collect(),
            finished: e.finished,
        })
    }

    /// Takes one page's figures for one phase, or says why not.
    pub fn accept(
        &self,
        figures: PhaseFigures,
        tab_is_here: bool,
        now_us: u64,
    ) -> Result<(), ApiError> {
        let mut latest = self.lock();
        let e = latest
            .as_mut()
            .filter(|e| e.plan.experiment == figures.experiment)
            .ok_or_else(|| {
                ApiError::param(
                    "experiment",
                    format!("experiment {} is not the latest", figures.experiment),
                )
            })?;
        if !tab_is_here || !e.participants.contains(&figures.tab) {
            return Err(ApiError::param(
                "tab",
                "this tab is not taking part in the experiment",
            ));
        }
        let phase = e.plan.phases.get(figures.phase).ok_or_else(|| {
            ApiError::param(
                "phase",
                format!("the experiment has {} phases", e.plan.phases.len()),
            )
        })?;
        if figures.transport != phase.transport {
            return Err(ApiError::param(
                "transport",
                format!("phase {} runs {}", figures.phase, phase.transport),
            ));
        }
        let last_end = e.plan.phases.last().map_or(0, |p| p.end_us);
        if now_us < phase.start_us || now_us > last_end + REPORT_WINDOW.as_micros() as u64 {
            return Err(ApiError::param(
                "phase",
                "reports are taken from the phase's start until 10 s after the last phase",
            ));
        }
        for (name, value, cap) in [
            ("requests", figures.requests, MAX_COUNT),
            ("empty_responses", figures.empty_responses, MAX_COUNT),
            ("connections_opened", figures.connections_opened, MAX_COUNT),
            ("errors", figures.errors, MAX_COUNT),
            ("bytes_up", figures.bytes_up, MAX_BYTES),
            ("bytes_down", figures.bytes_down, MAX_BYTES),
            (
                "resource_timing_header_down",
                figures.resource_timing_header_down.unwrap_or(0),
                MAX_BYTES,
            ),
        ] {
            if value > cap {
                return Err(ApiError::param(name, format!("at most {cap}")));
            }
        }
        if figures.header_down + figures.payload_down > figures.bytes_down {
            return Err(ApiError::param(
                "bytes_down",
                "header_down and payload_down are parts of bytes_down",
            ));
        }
        let flashes = &e.flashes[figures.phase];
        let mut seen = HashSet::new();
        for d in &figures.delays {
            if !flashes.iter().any(|(f, _)| *f == d.flash) || !seen.insert(d.flash) {
                return Err(ApiError::param(
                    "delays",
                    format!(
                        "flash {} is not one of this phase's, or is listed twice",
                        d.flash
                    ),
                ));
            }
            if !(0.0..=super::flash::MAX_DELAY_MS).contains(&d.delay_ms) {
                return Err(ApiError::param(
                    "delays",
                    format!("delay {} ms is out of range", d.delay_ms),
                ));
            }
        }
        let key = (figures.tab.clone(), figures.phase);
        if e.reports.contains_key(&key) {
            return Err(ApiError::Conflict(format!(
                "this tab already sent its figures for phase {}",
                figures.phase
            )));
        }
        e.reports.insert(key, figures);
        Ok(())
    }
}

fn ranged<T: PartialOrd + Copy + std::fmt::Display>(
    name: &'static str,
    value: Option<T>,
    default: T,
    (low, high): (T, T),
) -> Result<T, ApiError> {
    let v = value.unwrap_or(default);
    if v < low || v > high {
        return Err(ApiError::param(
            name,
            format!("use {low} to {high}, got {v}"),
        ));
    }
    Ok(v)
}

/// `POST /live/experiment`: plans the phases, records the participants and starts the run.
pub(super) async fn start(
    _teacher: super::Teacher,
    State(feed): State<Arc<Feed>>,
    State(live): State<Arc<Live>>,
    State(metrics): State<Arc<Metrics>>,
    State(shutdown): State<CancellationToken>,
    JsonBody(req): JsonBody<ExperimentRequest>,
) -> Result<(StatusCode, Json<Plan>), ApiError> {
    let phase_s = ranged("phase_s", req.phase_s, 5.0, (2.0, 60.0))?;
    let flash_every_ms = ranged("flash_every_ms", req.flash_every_ms, 500, (200, 5000))?;
    let short_poll_interval_ms = ranged(
        "short_poll_interval_ms",
        req.short_poll_interval_ms,
        500,
        (100, 5000),
    )?;
    let tabs = live.presence.tabs();
    if tabs.is_empty() {
        return Err(ApiError::param(
            "experiment",
            "no student page is on the live page yet",
        ));
    }
    let mut rooms: Vec<String> = tabs.iter().map(|(_, room)| room.clone()).collect();
    rooms.sort();
    rooms.dedup();
    let phase_us = (phase_s * 1e6) as u64;
    let first = now_us() + LEAD.as_micros() as u64;
    let plan = {
        let mut latest = live.experiments.lock();
        if latest.as_ref().is_some_and(|e| !e.finished) {
            return Err(ApiError::Conflict(
                "an experiment is running; wait for it to end".into(),
            ));
        }
        let plan = Plan {
            experiment: live.experiments.next.fetch_add(1, Ordering::Relaxed) + 1,
            phases: Transport::ALL
                .into_iter()
                .enumerate()
                .map(|(i, transport)| PlannedPhase {
                    transport,
                    start_us: first + i as u64 * phase_us,
                    end_us: first + (i as u64 + 1) * phase_us,
                })
                .collect(),
            flash_every_ms,
            short_poll_interval_ms,
        };
        *latest = Some(Experiment {
            plan: plan.clone(),
            started_us: now_us(),
            participants: tabs.into_iter().map(|(tab, _)| tab).collect(),
            rooms: rooms.clone(),
            flashes: vec![Vec::new(); Transport::ALL.len()],
            server: vec![None; Transport::ALL.len()],
            reports: HashMap::new(),
            finished: false,
        });
        plan
    };
    let rooms: Vec<RoomName> = rooms
        .iter()
        .filter_map(|r| RoomName::parse(r).ok())
        .collect();
    let body = serde_json::to_string(&plan).map_err(|e| ApiError::BadJson(e.to_string()))?;
    for room in &rooms {
        let draft = Draft {
            event: "experiment".into(),
            from: "teacher".into(),
            body: body.clone(),
            to: None,
            echo: true,
            ts_us: now_us(),
        };
        feed.publish_draft(room, draft).await?;
    }
    tracing::info!(
        experiment = plan.experiment,
        rooms = rooms.len(),
        "experiment started"
    );
    // Owned by the server's shutdown token: it ends with the server, and otherwise by itself
    // after the last phase (bounded by the plan).
    tokio::spawn(run(feed, live, metrics, shutdown, plan.clone(), rooms));
    Ok((StatusCode::CREATED, Json(plan)))
}

/// Publishes each phase's flashes on schedule and takes the server's own counts at each phase's
/// edges, then marks the experiment finished.
async fn run(
    feed: Arc<Feed>,
    live: Arc<Live>,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    plan: Plan,
    rooms: Vec<RoomName>,
) {
    let until =
        |at_us: u64| tokio::time::sleep(Duration::from_micros(at_us.saturating_sub(now_us())));
    for (i, phase) in plan.phases.iter().enumerate() {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = until(phase.start_us) => {}
        }
        let before = metrics.transport(phase.transport);
        let mut at = phase.start_us + SETTLE.as_micros() as u64;
        // The last flash leaves time for a short-polling page to ask once more before the
        // phase ends, so a flash is timed over the transport of its phase, not the next one.
        let last = phase
            .end_us
            .saturating_sub(plan.short_poll_interval_ms * 1000 + 300_000);
        let mut n = 0;
        while at <= last {
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => return,
                _ = until(at) => {}
            }
            n += 1;
            let text = format!("comparison: {} #{n}", phase.transport);
            match super::flash::publish(&feed, &live, &text, rooms.clone()).await {
                Ok(sent) => {
                    if let Some(e) = live.experiments.lock().as_mut() {
                        e.flashes[i].push((sent.flash, sent.sent_us));
                    }
                }
                Err(e) => tracing::warn!(error = %e, "experiment flash not published"),
            }
            at += plan.flash_every_ms * 1000;
        }
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            _ = until(phase.end_us) => {}
        }
        let after = metrics.transport(phase.transport);
        if let Some(e) = live.experiments.lock().as_mut() {
            e.server[i] = Some(ServerCount {
                requests: after.requests - before.requests,
                bytes_received: after.bytes_received - before.bytes_received,
                bytes_sent: after.bytes_sent - before.bytes_sent,
            });
        }
    }
    if let Some(e) = live.experiments.lock().as_mut() {
        e.finished = true;
    }
    tracing::info!(experiment = plan.experiment, "experiment finished");
}

/// `POST /live/experiment/report`.
pub(super) async fn report(
    State(live): State<Arc<Live>>,
    State(config): State<Arc<Config>>,
    peer: Option<Extension<Peer>>,
    JsonBody(figures): JsonBody<PhaseFigures>,
) -> Result<StatusCode, ApiError> {
    let address: Option<IpAddr> = super::presence::limited_address(peer, &config);
    let here = live.presence.is_present_from(&figures.tab, address);
    live.experiments.accept(figures, here, now_us())?;
    Ok(StatusCode::NO_CONTENT)
}

/// `GET /live/experiment/results.json`: the latest experiment as a results document.
pub(super) async fn results_file(
    _teacher: super::Teacher,
    State(live): State<Arc<Live>>,
) -> Result<impl IntoResponse, ApiError> {
    let experiment = live
        .experiments
        .latest()
        .ok_or_else(|| ApiError::NotFound("no experiment has run yet".into()))?;
    let doc = results::results(&experiment, live.listening());
    let body = serde_json::to_string_pretty(&doc).map_err(|e| ApiError::BadJson(e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/json"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"results.json\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    ))
}
