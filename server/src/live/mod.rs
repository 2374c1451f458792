//! The live classroom: the student page (`GET /`), the projector dashboard (`GET /dashboard`) and
//! the small API behind them. Students follow a room over the wire API like any other client;
//! this module only serves the page and adds what the wire API has no place for:
//!
//! - `GET /live/clock`: the server's clock, so a page on another laptop can align its own before
//!   timing deliveries.
//! - `POST /live/presence`: a heartbeat from each tab naming its transport, so the dashboard can
//!   count clients per transport (a short-polling client holds no connection the server could
//!   count). See [`presence`].
//! - `POST /live/flash`, `POST /live/flash/report`: the teacher's flash and each page's delay.
//!   See [`flash`].
//! - `GET /live/stats`, `GET /live/stream`: the dashboard's numbers, once or as an SSE stream.
//!   See [`dashboard`].
//!
//! Traffic counters are the server's own ([`crate::metrics::Metrics::transport`]); this module
//! keeps no second set. The HTML, JS and CSS are compiled into the binary, so `duplex serve` alone
//! is enough in a classroom without internet.

pub mod dashboard;
pub mod flash;
pub mod presence;

use std::sync::Arc;

use axum::extract::FromRef;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::error::ApiError;
use crate::feed::{Feed, now_us, valid_client_id};
use crate::metrics::Metrics;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const LIVE_JS: &str = include_str!("../../assets/live.js");
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const LIVE_CSS: &str = include_str!("../../assets/live.css");

/// What the live page remembers between requests: who is connected how, and the flashes.
/// Kept in the server's state (`AppState::live`), one per server.
#[derive(Debug, Default)]
pub struct Live {
    /// Tabs that sent a heartbeat recently.
    pub presence: presence::Presence,
    /// Flashes sent and the delays the pages reported.
    pub flashes: flash::Flashes,
}

/// The live page's routes, merged into [`crate::app`]'s router. Generic over the state, which
/// only has to hand out the parts these handlers use, so this module does not depend on the
/// state type (which holds a [`Live`]).
pub fn routes<S>() -> Router<S>
where
    S: Clone + Send + Sync + 'static,
    Arc<Live>: FromRef<S>,
    Arc<Feed>: FromRef<S>,
    Arc<Metrics>: FromRef<S>,
    Arc<Config>: FromRef<S>,
    CancellationToken: FromRef<S>,
{
    Router::new()
        .route("/", get(|| asset("text/html; charset=utf-8", INDEX_HTML)))
        .route(
            "/dashboard",
            get(|| asset("text/html; charset=utf-8", DASHBOARD_HTML)),
        )
        .route(
            "/live/live.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE_JS)),
        )
        .route(
            "/live/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", DASHBOARD_JS)),
        )
        .route(
            "/live/live.css",
            get(|| asset("text/css; charset=utf-8", LIVE_CSS)),
        )
        .route("/live/clock", get(clock))
        .route("/live/presence", post(presence::report))
        .route("/live/flash", post(flash::send))
        .route("/live/flash/report", post(flash::report))
        .route("/live/stats", get(dashboard::stats))
        .route("/live/stream", get(dashboard::stream))
}

async fn asset(content_type: &'static str, body: &'static str) -> impl IntoResponse {
    // no-cache: a browser revalidates, so a rebuilt server's page is picked up on reload.
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
}

/// Answer of `GET /live/clock`.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Clock {
    /// The server's time, Unix microseconds.
    pub now_us: u64,
}

async fn clock() -> impl IntoResponse {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(Clock { now_us: now_us() }),
    )
}

/// Checks the tab id and student name that heartbeats and delay reports carry: a tab id is 1 to
/// 64 printable characters, a name at most 64 (the wire API's client-id rule).
fn check_tab_and_client(tab: &str, client: &str) -> Result<(), ApiError> {
    if tab.is_empty() || !valid_client_id(tab) {
        return Err(ApiError::param("tab", "use 1 to 64 printable characters"));
    }
    if !valid_client_id(client) {
        return Err(ApiError::param("client", "at most 64 printable characters"));
    }
    Ok(())
}
