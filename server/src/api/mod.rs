//! The wire API: one submodule per way in or out of the feed (publish, short and long poll, SSE,
//! WebSocket) and [`routes`], which [`crate::router::app`] mounts. The checks every feed endpoint
//! shares live in [`crate::extract`], so every transport refuses bad input the same way.

mod poll;
mod publish;
mod sse;
mod ws;

use axum::Router;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::feed::Epoch;
use crate::state::AppState;

pub use crate::extract::MAX_LONG_POLL_TIMEOUT_MS;
pub use poll::DEFAULT_LONG_POLL_TIMEOUT_MS;

/// The wire API's routes: publish and the four transports.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/rooms/{room}/messages", post(publish::publish))
        .route("/api/rooms/{room}/poll", get(poll::short_poll))
        .route("/api/rooms/{room}/longpoll", get(poll::long_poll))
        .route("/api/rooms/{room}/sse", get(sse::sse))
        .route("/api/rooms/{room}/ws", get(ws::websocket))
}

/// `204 No Content`, with the cursor to send next time in `Duplex-Next` (useful after a
/// `since`-less poll, which has no batch to carry `next`) and its epoch in `Duplex-Epoch` (none
/// for a room that does not exist yet: seq 0 is the same place in every epoch).
fn no_content(next: u64, epoch: Option<Epoch>) -> Response {
    let mut response =
        (StatusCode::NO_CONTENT, [("duplex-next", next.to_string())]).into_response();
    if let Some(epoch) = epoch
        && let Ok(value) = HeaderValue::from_str(&epoch.to_string())
    {
        response.headers_mut().insert("duplex-epoch", value);
    }
    response
}
