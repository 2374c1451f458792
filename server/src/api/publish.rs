//! `POST /api/rooms/{room}/messages`: publishing over HTTP. The body is read as bytes (bounded by
//! `--max-body`) and parsed here rather than by axum's `Json`, so every refusal is a JSON
//! `{"error":...}` that names the problem: 413 over the limit, 400 for bad JSON or unknown fields.

use axum::Json;
use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::StatusCode;

use crate::error::ApiError;
use crate::feed::RoomName;
use crate::state::AppState;
use crate::wire::{PublishRequest, Published};

pub(super) async fn publish(
    State(state): State<AppState>,
    room: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let Path(room) = room.map_err(|e| ApiError::param("room", e.body_text()))?;
    let room = RoomName::parse(&room)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::TooLarge {
                limit: state.config.max_body,
            }
        } else {
            ApiError::Body(e.body_text())
        }
    })?;
    let req: PublishRequest =
        serde_json::from_slice(&body).map_err(|e| ApiError::BadJson(e.to_string()))?;
    let entry = state.feed.publish(&room, req)?;
    Ok((StatusCode::CREATED, Json(Published { seq: entry.seq })))
}
