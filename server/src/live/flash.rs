//! The teacher's flash: one button on the dashboard publishes a `flash` event into every room a
//! student follows (or one named room); each page flashes when it arrives and reports how long
//! it took; the dashboard draws those delays by transport.
//!
//! The flash is an ordinary message on the feed (event `flash`, from `teacher`), so it travels
//! exactly like chat does on each transport. Its body carries the server's send time, which the
//! pages compare with their own clock after aligning it against `/live/clock`. Reports are kept
//! in a bounded ring and pushed to open dashboards over a broadcast channel.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use super::{Live, now_us};
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::feed::{Draft, Feed, RoomName};
use wire::Transport;

/// Flashes remembered (the dashboard draws the latest few).
pub const KEPT_FLASHES: usize = 20;
/// Delay reports remembered, all flashes together.
pub const KEPT_REPORTS: usize = 2000;
/// Longest flash text, characters.
pub const MAX_TEXT: usize = 200;
/// Reports above this are refused: no classroom network is that slow, a wrong clock is.
pub const MAX_DELAY_MS: f64 = 600_000.0;

/// Body of `POST /live/flash`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashRequest {
    /// What the students' pages show.
    pub text: String,
    /// Only this room; by default every room a student follows.
    #[serde(default)]
    pub room: Option<String>,
}

/// What a flash message's body holds (JSON inside the message's `body` string).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FlashBody {
    /// The flash's number.
    pub flash: u64,
    /// The teacher's text.
    pub text: String,
    /// When the server published it, Unix µs.
    pub sent_us: u64,
}

/// A flash that was sent, as the dashboard lists it.
#[derive(Debug, Clone, Serialize)]
pub struct FlashRecord {
    /// The flash's number, from 1.
    pub flash: u64,
    /// The teacher's text.
    pub text: String,
    /// When it was published, Unix µs.
    pub sent_us: u64,
    /// The rooms it went to.
    pub rooms: Vec<String>,
}

/// Body of `POST /live/flash/report`: one page saw a flash after `delay_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DelayReport {
    /// Which flash.
    pub flash: u64,
    /// The reporting tab (one report per tab per flash counts).
    pub tab: String,
    /// The student's name.
    pub client: String,
    /// The transport the flash arrived over.
    pub transport: Transport,
    /// From the server's send time to the page's receipt, clocks aligned.
    pub delay_ms: f64,
}

/// A delay report as dashboards see it: the reporting tab's id (which would let anyone act as
/// that tab) is replaced by `dot`, a salted digest of it that only keeps one tab's dots apart
/// from another's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DelayView {
    /// Which flash.
    pub flash: u64,
    /// Stands for the reporting tab, without naming it.
    pub dot: String,
    /// The student's name.
    pub client: String,
    /// The transport the flash arrived over.
    pub transport: Transport,
    /// From the server's send time to the page's receipt, clocks aligned.
    pub delay_ms: f64,
}

/// Flashes and their delay reports.
#[derive(Debug)]
pub struct Flashes {
    next: AtomicU64,
    /// A std Mutex: held to push or copy a few hundred small records, never across an await.
    log: Mutex<Log>,
    /// New reports, for the dashboards' streams; a lagging dashboard skips some and catches up
    /// from [`Flashes::reports`] on reconnect.
    reports_tx: broadcast::Sender<DelayView>,
    /// Keys the `dot` digests, so they cannot be reversed into tab ids by guessing.
    salt: std::collections::hash_map::RandomState,
}

#[derive(Debug, Default)]
struct Log {
    flashes: VecDeque<FlashRecord>,
    reports: VecDeque<DelayReport>,
}

impl Default for Flashes {
    fn default() -> Self {
        Flashes {
            next: AtomicU64::new(1),
            log: Mutex::default(),
            reports_tx: broadcast::channel(256).0,
            salt: std::collections::hash_map::RandomState::new(),
        }
    }
}

impl Flashes {
    /// The flashes sent, oldest first.
    pub fn recent(&self) -> Vec<FlashRecord> {
        self.lock().flashes.iter().cloned().collect()
    }

    /// The delay reports kept, oldest first.
    pub fn reports(&self) -> Vec<DelayView> {
        self.lock().reports.iter().map(|r| self.view(r)).collect()
    }

    fn view(&self, report: &DelayReport) -> DelayView {
        use std::hash::BuildHasher;
        DelayView {
            flash: report.flash,
            dot: format!("{:08x}", self.salt.hash_one(&report.tab) as u32),
            client: report.client.clone(),
            transport: report.transport,
            delay_ms: report.delay_ms,
        }
    }

    /// New reports as they arrive.
    pub fn subscribe(&self) -> broadcast::Receiver<DelayView> {
        self.reports_tx.subscribe()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn record(&self, record: FlashRecord) {
        let mut log = self.lock();
        if log.flashes.len() == KEPT_FLASHES {
            log.flashes.pop_front();
        }
        log.flashes.push_back(record);
    }

    /// A report for an unknown flash is refused, naming the flash.
    fn check_known(&self, flash: u64) -> Result<(), ApiError> {
        if self.lock().flashes.iter().any(|f| f.flash == flash) {
            Ok(())
        } else {
            Err(ApiError::param("flash", format!("no recent flash {flash}")))
        }
    }

    /// Keeps a report unless the flash is unknown or the tab already reported it.
    fn accept(&self, report: DelayReport) -> Result<(), ApiError> {
        let mut log = self.lock();
        if !log.flashes.iter().any(|f| f.flash == report.flash) {
            return Err(ApiError::param(
                "flash",
                format!("no recent flash {}", report.flash),
            ));
        }
        if log
            .reports
            .iter()
            .any(|r| r.flash == report.flash && r.tab == report.tab)
        {
            return Ok(());
        }
        if log.reports.len() == KEPT_REPORTS {
            log.reports.pop_front();
        }
        log.reports.push_back(report.clone());
        drop(log);
        // No dashboard open is fine: the report is kept above.
        let _ = self.reports_tx.send(self.view(&report));
        Ok(())
    }
}

/// Answer of `POST /live/flash`.
#[derive(Debug, Clone, Serialize)]
pub struct FlashSent {
    /// The flash's number.
    pub flash: u64,
    /// When it was published, Unix µs.
    pub sent_us: u64,
    /// The rooms it went to (empty: no student is connected).
    pub rooms: Vec<String>,
}

/// `POST /live/flash`.
pub(super) async fn send(
    _teacher: super::Teacher,
    State(feed): State<Arc<Feed>>,
    State(live): State<Arc<Live>>,
    JsonBody(req): JsonBody<FlashRequest>,
) -> Result<(StatusCode, Json<FlashSent>), ApiError> {
    let text = req.text.trim();
    if text.is_empty() || text.chars().count() > MAX_TEXT {
        return Err(ApiError::param(
            "text",
            format!("use 1 to {MAX_TEXT} characters"),
        ));
    }
    let rooms: Vec<RoomName> = match req.room.as_deref().map(str::trim) {
        Some(room) if !room.is_empty() => vec![RoomName::parse(room)?],
        _ => live
            .presence
            .rooms()
            .into_iter()
            .filter_map(|(room, _)| RoomName::parse(&room).ok())
            .collect(),
    };
    let sent = publish(&feed, &live, text, rooms).await?;
    Ok((StatusCode::CREATED, Json(sent)))
}

/// Publishes flash `text` into `rooms` with the next number and records it: the dashboard's
/// button and the guided experiment's flashes (see [`super::experiment`]) both come this way.
pub(super) async fn publish(
    feed: &Feed,
    live: &Live,
    text: &str,
    rooms: Vec<RoomName>,
) -> Result<FlashSent, ApiError> {
    let flash = live.flashes.next.fetch_add(1, Ordering::Relaxed);
    let sent_us = now_us();
    let body = serde_json::to_string(&FlashBody {
        flash,
        text: text.to_owned(),
        sent_us,
    })
    .map_err(|e| ApiError::BadJson(e.to_string()))?;
    // Recorded before it is published: a page on a WebSocket can see the flash and report its
    // delay while the publishes into the other rooms are still under way, and a report for a
    // flash not yet recorded would be refused as unknown (seen under load in the browser test).
    let names: Vec<String> = rooms.iter().map(|r| r.as_str().to_owned()).collect();
    live.flashes.record(FlashRecord {
        flash,
        text: text.to_owned(),
        sent_us,
        rooms: names.clone(),
    });
    for room in &rooms {
        // The server's own message: `flash` is refused to everyone else (Room::publish).
        let draft = Draft {
            event: "flash".into(),
            from: "teacher".into(),
            body: body.clone(),
            to: None,
            echo: true,
            ts_us: now_us(),
        };
        feed.publish_draft(room, draft).await?;
    }
    tracing::info!(flash, rooms = rooms.len(), "flash sent");
    Ok(FlashSent {
        flash,
        sent_us,
        rooms: names,
    })
}

/// `POST /live/flash/report`.
pub(super) async fn report(
    State(live): State<Arc<Live>>,
    JsonBody(report): JsonBody<DelayReport>,
) -> Result<StatusCode, ApiError> {
    super::check_tab_and_client(&report.tab, &report.client)?;
    if !(0.0..=MAX_DELAY_MS).contains(&report.delay_ms) {
        return Err(ApiError::param(
            "delay_ms",
            format!("expected 0 to {MAX_DELAY_MS} ms, got {}", report.delay_ms),
        ));
    }
    // Only a tab on the page reports, so forged reports are bounded by the heartbeats an
    // address may send (see `presence`).
    if !live.presence.is_present(&report.tab) {
        live.flashes.check_known(report.flash)?;
        return Err(ApiError::param(
            "tab",
            "no such tab on the live page: send a heartbeat first",
        ));
    }
    live.flashes.accept(report)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(flash: u64, tab: &str) -> DelayReport {
        DelayReport {
            flash,
            tab: tab.into(),
            client: "alice".into(),
            transport: Transport::Sse,
            delay_ms: 3.5,
        }
    }

    #[test]
    fn reports_for_unknown_flashes_are_refused_and_repeats_ignored() {
        let f = Flashes::default();
        assert!(f.accept(report(1, "t")).is_err());
        f.record(FlashRecord {
            flash: 1,
            text: "hi".into(),
            sent_us: 0,
            rooms: vec![],
        });
        f.accept(report(1, "t")).unwrap();
        f.accept(report(1, "t")).unwrap();
        f.accept(report(1, "u")).unwrap();
        assert_eq!(f.reports().len(), 2);
    }

    #[test]
    fn the_report_ring_is_bounded() {
        let f = Flashes::default();
        f.record(FlashRecord {
            flash: 1,
            text: "hi".into(),
            sent_us: 0,
            rooms: vec![],
        });
        for i in 0..KEPT_REPORTS + 10 {
            f.accept(report(1, &format!("t{i}"))).unwrap();
        }
        assert_eq!(f.reports().len(), KEPT_REPORTS);
        assert_eq!(f.reports()[0], f.view(&report(1, "t10")));
    }
}
