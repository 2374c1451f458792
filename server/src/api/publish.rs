//! `POST /api/rooms/{room}/messages`: publishing over HTTP. The body goes through
//! [`JsonBody`](crate::extract::JsonBody) (bounded by `--max-body`), so every refusal is a JSON
//! `{"error":...}` that names the problem: 413 over the limit, 400 for bad JSON or unknown fields.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::{Extension, Json};

use crate::conn::Peer;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::feed::RoomName;
use crate::state::AppState;
use wire::{PublishRequest, Published};

pub(super) async fn publish(
    State(state): State<AppState>,
    room: Result<Path<String>, PathRejection>,
    peer: Option<Extension<Peer>>,
    JsonBody(req): JsonBody<PublishRequest>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
    let Path(room) = room.map_err(|e| ApiError::param("room", e.body_text()))?;
    let room = RoomName::parse(&room)?;
    let peer = peer.map(|Extension(Peer(addr))| addr.ip());
    let entry = state.feed.publish(&room, peer, req).await?;
    Ok((StatusCode::CREATED, Json(Published { seq: entry.seq })))
}
