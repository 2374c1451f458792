//! The request extractors every endpoint shares, so every endpoint refuses bad input the same
//! way: [`JsonBody`] reads a JSON body (413 naming `--max-body`, 400 naming the JSON problem) and
//! [`Target`] checks what a feed request names (room, `since`, `client`, `timeout_ms`).
//!
//! They ask the state only for what they need ([`Config`], [`Feed`]) through axum's `FromRef`,
//! so `api` and `live` both use them without depending on each other or on the state type.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::error::ApiError;
use crate::feed::{Feed, Room, RoomName, valid_client_id};

/// The longest long poll accepted.
pub const MAX_LONG_POLL_TIMEOUT_MS: u64 = 120_000;

/// A JSON request body, read up to `--max-body` and parsed with the type's own rules
/// (`deny_unknown_fields` where it says so). Used instead of axum's `Json`, whose refusals are
/// plain text and do not name the limit.
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    Arc<Config>: FromRef<S>,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let config = Arc::<Config>::from_ref(state);
        let body = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::TooLarge {
                    limit: config.max_body,
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

impl<S> FromRequestParts<S> for Target
where
    S: Send + Sync,
    Arc<Feed>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
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
            room: Arc::<Feed>::from_ref(state).room(&room)?,
            since,
            client: raw.client,
            timeout_ms,
        })
    }
}

/// Parses a non-negative whole number, or says which parameter is not one.
pub fn seq(name: &'static str, text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::param(name, format!("expected a whole number >= 0, got {text:?}")))
}
