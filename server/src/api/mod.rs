//! The HTTP surface: the router ([`app`]), the request-counting middleware, and the checks every
//! feed endpoint shares (room name, `since`, `client`, `timeout_ms`), done once
//! in the [`Target`] extractor so every transport refuses bad input the same way. JSON bodies
//! (publish, and the live page's posts) are read by one extractor, [`JsonBody`], so all of them
//! refuse a body the same way: 413 naming `--max-body`, 400 naming the JSON problem. One
//! submodule per way in or out of the feed.

mod poll;
mod publish;
mod sse;
mod ws;

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequest, FromRequestParts, Path, Query, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::conn::ConnMeter;
use crate::error::ApiError;
use crate::feed::{Room, RoomName, valid_client_id};
use crate::metrics::Endpoint;
use crate::state::AppState;

pub use poll::{DEFAULT_LONG_POLL_TIMEOUT_MS, MAX_LONG_POLL_TIMEOUT_MS};

/// The router: the wire API, `/metrics`, `/healthz`, and the live page's routes.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body;
    Router::new()
        .route("/api/rooms/{room}/messages", post(publish::publish))
        .route("/api/rooms/{room}/poll", get(poll::short_poll))
        .route("/api/rooms/{room}/longpoll", get(poll::long_poll))
        .route("/api/rooms/{room}/sse", get(sse::sse))
        .route("/api/rooms/{room}/ws", get(ws::websocket))
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        // LIVE PAGE: `server/src/live/` mounts its routes (`GET /`, its assets and API) on the
        // next line, e.g. `.merge(crate::live::routes())` returning a `Router<AppState>`.
        .merge(crate::live::routes())
        .fallback(not_found)
        // axum's own 405 has an empty body; ours says what was asked, like every refusal.
        .method_not_allowed_fallback(method_not_allowed)
        // Publishing reads at most this much; more is a 413 naming the limit.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every answered request under its endpoint and status, and tells the connection's
/// byte meter which endpoint it is serving now.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = Endpoint::from_path(req.uri().path());
    let meter = req.extensions().get::<Arc<ConnMeter>>().cloned();
    if let Some(meter) = &meter {
        meter.serve(endpoint);
    }
    let response = next.run(req).await;
    if let Some(meter) = &meter {
        meter.finish();
    }
    state
        .metrics
        .record_request(endpoint, response.status().as_u16());
    response
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.feed),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", req.method(), req.uri().path()))
}

/// A JSON request body, read up to `--max-body` and parsed with the type's own rules
/// (`deny_unknown_fields` where it says so). Used instead of axum's `Json`, whose refusals are
/// plain text and do not name the limit.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: state.config.max_body,
                }
            } else {
                ApiError::Body(e.body_text())
            }
        })?;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| ApiError::BadJson(e.to_string()))
    }
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} {}", req.method(), req.uri().path()))
}

/// The query parameters the feed endpoints read, as sent (text), so each can be checked with
/// an error that names it. Unknown parameters are ignored: cache-busters are common in browsers.
#[derive(Debug, Default, Deserialize)]
struct RawParams {
    since: Option<String>,
    client: Option<String>,
    timeout_ms: Option<String>,
}

/// A feed request's room and position, checked.
#[derive(Debug)]
pub struct Target {
    /// The room (created on first use).
    pub room: Arc<Room>,
    /// `since`: `None` means "from now on". (SSE's `Last-Event-ID` header, which wins over it,
    /// is SSE's own and read by its handler.)
    pub since: Option<u64>,
    /// The subscriber's client id, for addressing.
    pub client: Option<String>,
    /// Long poll's `timeout_ms`, checked against its range.
    pub timeout_ms: Option<u64>,
}

impl FromRequestParts<AppState> for Target {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Path(room) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::param("room", e.body_text()))?;
        let room = RoomName::parse(&room)?;
        let Query(raw) = Query::<RawParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadQuery(e.body_text()))?;
        let since = raw.since.as_deref().map(|s| seq("since", s)).transpose()?;
        if let Some(client) = &raw.client
            && !valid_client_id(client)
        {
            return Err(ApiError::param(
                "client",
                format!("{client:?}: at most 64 printable characters"),
            ));
        }
        let timeout_ms = raw
            .timeout_ms
            .as_deref()
            .map(|t| {
                let ms = seq("timeout_ms", t)?;
                if ms > MAX_LONG_POLL_TIMEOUT_MS {
                    Err(ApiError::param(
                        "timeout_ms",
                        format!("{ms} is out of range 0..={MAX_LONG_POLL_TIMEOUT_MS}"),
                    ))
                } else {
                    Ok(ms)
                }
            })
            .transpose()?;
        Ok(Target {
            room: state.feed.room(&room)?,
            since,
            client: raw.client,
            timeout_ms,
        })
    }
}

/// Parses a non-negative whole number, or says which parameter is not one.
fn seq(name: &'static str, text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::param(name, format!("expected a whole number >= 0, got {text:?}")))
}

/// `204 No Content`, with the cursor to send next time in `Duplex-Next` (useful after a
/// `since`-less poll, which has no batch to carry `next`).
fn no_content(next: u64) -> Response {
    (StatusCode::NO_CONTENT, [("duplex-next", next.to_string())]).into_response()
}
