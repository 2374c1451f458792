//! The live classroom: the student page (`GET /`), the projector dashboard (`GET /dashboard`) and
//! the small API behind them. Students follow a room over the wire API like any other client;
//! this module only serves the page and adds what the wire API has no place for:
//!
//! - `GET /live/clock`: the server's clock, so a page on another laptop can align its own before
//!   timing deliveries.
//! - `POST /live/tab`, `POST /live/presence`: a tab's id, issued by the server, and a heartbeat
//!   from each tab naming its transport, so the dashboard can count clients per transport (a
//!   short-polling client holds no connection the server could count). See [`presence`].
//! - `POST /live/flash`, `POST /live/flash/report`: the teacher's flash and each page's delay.
//!   See [`flash`].
//! - `POST /live/experiment`, `POST /live/experiment/report`, `GET
//!   /live/experiment/results.json`: the guided experiment (every page runs each transport in
//!   turn), the pages' figures, and the results file `duplex report` renders. See
//!   [`experiment`].
//! - `GET /live/join`, `GET /live/join.svg`: where students join, and its QR code. See [`join`].
//! - `GET /live/stats`, `GET /live/stream`: the dashboard's numbers, once or as an SSE stream.
//!   See [`dashboard`].
//!
//! The teacher's controls (`/dashboard`, `/live/join*`, `/live/stats`, `/live/stream`,
//! `POST /live/flash`, `/live/experiment` and its results) need the [`Teacher`] token that `duplex serve` prints in the teacher's URL; a student's page
//! needs nothing but the tab id the server issued it. Dashboards are never sent tab ids (which
//! would let anyone act as a tab), and a tab belongs to the address that asked for it.
//!
//! Traffic counters are the server's own ([`crate::metrics::Metrics::transport`]); this module
//! keeps no second set. The HTML, JS and CSS are compiled into the binary, so `duplex serve` alone
//! is enough in a classroom without internet.

pub mod dashboard;
pub mod experiment;
pub mod flash;
pub mod join;
pub mod presence;

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::header;
use axum::http::request::Parts;
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
const LIVE_CORE_JS: &str = include_str!("../../assets/live-core.js");
const LIVE_TRANSPORTS_JS: &str = include_str!("../../assets/live-transports.js");
const LIVE_EXPERIMENT_JS: &str = include_str!("../../assets/live-experiment.js");
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");
const DASHBOARD_JS: &str = include_str!("../../assets/dashboard.js");
const LIVE_CSS: &str = include_str!("../../assets/live.css");
const FAVICON: &str = include_str!("../../assets/favicon.svg");

/// What the live page remembers between requests: who is connected how, and the flashes.
/// Kept in the server's state (`AppState::live`), one per server.
#[derive(Debug)]
pub struct Live {
    /// Tabs that sent a heartbeat recently.
    pub presence: presence::Presence,
    /// Flashes sent and the delays the pages reported.
    pub flashes: flash::Flashes,
    /// The guided experiment: the latest one, its plan and the pages' figures.
    pub experiments: experiment::Experiments,
    /// What the teacher's URL carries; the dashboard and the flash need it.
    teacher_token: String,
    /// The address the server listens on, set once by [`crate::server::serve`]: the join
    /// addresses shown on the dashboard follow from it (see [`join`]).
    listening: std::sync::OnceLock<std::net::SocketAddr>,
}

impl Default for Live {
    fn default() -> Self {
        Live::new(None)
    }
}

impl Live {
    /// Live state whose teacher token is `token`, or a fresh random one.
    pub fn new(token: Option<String>) -> Self {
        Live {
            presence: presence::Presence::default(),
            flashes: flash::Flashes::default(),
            experiments: experiment::Experiments::default(),
            teacher_token: token.unwrap_or_else(new_token),
            listening: std::sync::OnceLock::new(),
        }
    }

    /// Records the address the server listens on (the first call wins: one listener a state).
    pub fn set_listening(&self, at: std::net::SocketAddr) {
        let _ = self.listening.set(at);
    }

    /// The address the server listens on, once [`Live::set_listening`] was called.
    pub fn listening(&self) -> Option<std::net::SocketAddr> {
        self.listening.get().copied()
    }

    /// The token the teacher's URL carries (`/dashboard?token=...`).
    pub fn teacher_token(&self) -> &str {
        &self.teacher_token
    }
}

/// A fresh random token: 128 bits as hex, from the standard library's per-process random
/// SipHash keys (no RNG dependency for one secret a lesson long).
pub fn new_token() -> String {
    use std::hash::{BuildHasher, Hasher};
    let part = || {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.finish()
    };
    format!("{:016x}{:016x}", part(), part())
}

/// Proof that a request carries the teacher's token: `?token=` (the dashboard's URL and its
/// `EventSource`) or an `X-Duplex-Teacher` header. Anything else is a `403`.
#[derive(Debug)]
pub struct Teacher;

impl<S> FromRequestParts<S> for Teacher
where
    S: Send + Sync,
    Arc<Live>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let live = Arc::<Live>::from_ref(state);
        let from_query = parts.uri.query().and_then(|q| {
            q.split('&')
                .find_map(|pair| pair.strip_prefix("token="))
                .map(str::to_owned)
        });
        let from_header = parts
            .headers
            .get("x-duplex-teacher")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let given = from_header.or(from_query).unwrap_or_default();
        if same_secret(given.as_bytes(), live.teacher_token.as_bytes()) {
            Ok(Teacher)
        } else {
            Err(ApiError::NotTeacher)
        }
    }
}

/// Compares without stopping at the first difference, so timing does not reveal a prefix.
fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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
            get(|_: Teacher| asset("text/html; charset=utf-8", DASHBOARD_HTML)),
        )
        .route(
            "/live/live.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE_JS)),
        )
        .route(
            "/live/live-core.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE_CORE_JS)),
        )
        .route(
            "/live/live-transports.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE_TRANSPORTS_JS)),
        )
        .route(
            "/live/live-experiment.js",
            get(|| asset("text/javascript; charset=utf-8", LIVE_EXPERIMENT_JS)),
        )
        .route(
            "/live/dashboard.js",
            get(|| asset("text/javascript; charset=utf-8", DASHBOARD_JS)),
        )
        .route(
            "/live/live.css",
            get(|| asset("text/css; charset=utf-8", LIVE_CSS)),
        )
        .route("/live/join", get(join::view))
        .route("/live/join.svg", get(join::qr))
        // Both names: the pages link the SVG, and a browser asks for /favicon.ico anyway.
        .route("/favicon.svg", get(|| asset("image/svg+xml", FAVICON)))
        .route("/favicon.ico", get(|| asset("image/svg+xml", FAVICON)))
        .route("/live/clock", get(clock))
        .route("/live/tab", post(presence::issue))
        .route("/live/presence", post(presence::report))
        .route("/live/flash", post(flash::send))
        .route("/live/flash/report", post(flash::report))
        .route("/live/experiment", post(experiment::start))
        .route("/live/experiment/report", post(experiment::report))
        .route(
            "/live/experiment/results.json",
            get(experiment::results_file),
        )
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
