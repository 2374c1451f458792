//! The request extractors every endpoint shares, so every endpoint refuses bad input the same
//! way: [`JsonBody`] reads a JSON body (413 naming `--max-body`, 400 naming the JSON problem) and
//! [`Target`] checks what a feed request names (room, `since`, `client`, `timeout_ms`).
//!
//! They ask the state only for what they need ([`Config`], [`Feed`]) through axum's `FromRef`,
//! so `api` and `live` both use them without depending on each other or on the state type.

use std::net::IpAddr;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{FromRef, FromRequest, FromRequestParts, Path, Query, Request};
use axum::http::header;
use axum::http::request::Parts;
use bytes::BytesMut;
use futures_util::StreamExt;
use serde::Deserialize;
use serde::de::DeserializeOwned;

use crate::config::Config;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::feed::{Cursor, Feed, Room, RoomName, valid_client_id};

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
        // A cross-site page may post text/plain or a form without asking; only JSON is taken.
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
            .unwrap_or_default();
        let essence = content_type.split(';').next().unwrap_or("").trim();
        if !essence.eq_ignore_ascii_case("application/json") {
            return Err(ApiError::NotJson(content_type));
        }
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
        if declared.is_some_and(|n| n > config.max_body as u64) {
            return Err(ApiError::TooLarge {
                limit: config.max_body,
            });
        }
        let body = tokio::time::timeout(
            config.request_timeout,
            read_body(req.into_body(), config.max_body),
        )
        .await
        .map_err(|_| ApiError::BodyTimeout(config.request_timeout.as_millis()))??;
        serde_json::from_slice(&body)
            .map(JsonBody)
            .map_err(|e| ApiError::BadJson(e.to_string()))
    }
}

/// Reads a body into one buffer, copying each chunk as it comes: a body trickled a byte per
/// segment would otherwise be held as thousands of small buffers, each pinning a read buffer of
/// its own. More than `limit` bytes is a 413 naming it.
async fn read_body(body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let mut stream = body.into_data_stream();
    let mut out = BytesMut::new();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| ApiError::Body(e.to_string()))?;
        if out.len() + chunk.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out.freeze())
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
    /// The room asked for; [`Target::find`] and [`Target::open`] look it up.
    pub name: RoomName,
    /// `since`: `None` means "from now on". (SSE's `Last-Event-ID` header, which wins over it,
    /// is SSE's own and read by its handler.)
    pub since: Option<Cursor>,
    /// The subscriber's client id, for addressing.
    pub client: Option<String>,
    /// Long poll's `timeout_ms`, checked against its range.
    pub timeout_ms: Option<u64>,
    /// The client's address, which a room it creates is counted against.
    pub peer: Option<IpAddr>,
    feed: Arc<Feed>,
}

impl Target {
    /// The room if it exists (here, or in the backplane): reading creates nothing.
    pub fn find(&self) -> Option<Arc<Room>> {
        self.feed.find_for(&self.name, self.peer)
    }

    /// The room, created for a subscriber that waits in it (long poll, SSE, WebSocket); it
    /// expires once nobody follows it and it has had no message for a while.
    pub fn open(&self) -> Result<Arc<Room>, ApiError> {
        Ok(self.feed.room(&self.name, self.peer)?)
    }
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
        let name = RoomName::parse(&room)?;
        check_percent_encoding(parts.uri.query().unwrap_or(""))?;
        let Query(raw) = Query::<RawParams>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::BadQuery(e.body_text()))?;
        let since = raw
            .since
            .as_deref()
            .map(|s| cursor("since", s))
            .transpose()?;
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
            name,
            since,
            client: raw.client,
            timeout_ms,
            peer: parts.extensions.get::<Peer>().map(|p| p.0.ip()),
            feed: Arc::<Feed>::from_ref(state),
        })
    }
}

/// Parses a cursor (`N` or `<epoch>-N`), or says which parameter is not one.
pub fn cursor(name: &'static str, text: &str) -> Result<Cursor, ApiError> {
    Cursor::parse(text).ok_or_else(|| {
        ApiError::param(
            name,
            format!("expected a seq (a whole number >= 0) or <epoch>-<seq>, got {text:?}"),
        )
    })
}

/// Refuses a query string whose `%xx` escapes are broken or decode to something that is not
/// UTF-8 (`client=%ff%fe`), which the query parser would otherwise turn into U+FFFD silently.
fn check_percent_encoding(query: &str) -> Result<(), ApiError> {
    for pair in query.split('&') {
        let bytes = pair.as_bytes();
        let mut decoded = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'%' => {
                    let hex = bytes
                        .get(i + 1..i + 3)
                        .and_then(|h| std::str::from_utf8(h).ok())
                        .and_then(|h| u8::from_str_radix(h, 16).ok());
                    let Some(byte) = hex else {
                        return Err(ApiError::BadQuery(format!(
                            "broken percent-encoding in {pair:?}"
                        )));
                    };
                    decoded.push(byte);
                    i += 3;
                }
                b'+' => {
                    decoded.push(b' ');
                    i += 1;
                }
                b => {
                    decoded.push(b);
                    i += 1;
                }
            }
        }
        if std::str::from_utf8(&decoded).is_err() {
            return Err(ApiError::BadQuery(format!(
                "{pair:?} does not decode to UTF-8 text"
            )));
        }
    }
    Ok(())
}

/// Parses a non-negative whole number, or says which parameter is not one.
pub fn seq(name: &'static str, text: &str) -> Result<u64, ApiError> {
    text.parse::<u64>()
        .map_err(|_| ApiError::param(name, format!("expected a whole number >= 0, got {text:?}")))
}
