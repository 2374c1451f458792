//! Short and long polling: `GET .../poll` answers at once, `GET .../longpoll` waits until the
//! room has something newer than `since` for this client or `timeout_ms` passes; the waiting
//! happens off hyper, on the bare socket (`crate::held`). Both answer with
//! a [`Batch`](wire::Batch) whose messages are the feed's shared JSON bytes spliced into
//! the envelope, never re-serialized.

use std::time::Duration;

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::{BufMut, BytesMut};

use super::no_content;
use crate::error::ApiError;
use crate::extract::Target;
use crate::feed::{Follower, Limit, Read, Reader};
use crate::held::Hold;
use crate::metrics::Endpoint;
use crate::state::AppState;
use wire::Transport;

/// At most this much in one batch (1000 messages, 256 KiB of them past the first); the client's
/// next poll fetches the rest. The byte bound is what keeps 100 unread `since=0` polls on a full
/// room from holding 100 copies of its whole history.
pub const BATCH_LIMIT: Limit = Limit {
    messages: 1000,
    bytes: 256 * 1024,
};
/// Long poll's timeout when the client names none.
pub const DEFAULT_LONG_POLL_TIMEOUT_MS: u64 = 30_000;

pub(super) async fn short_poll(State(state): State<AppState>, target: Target) -> Response {
    let _open = state.metrics.open(Transport::ShortPoll);
    // Reading creates nothing: a room that does not exist reads as an empty one.
    let Some(room) = target.find() else {
        let reset = target.since.is_some_and(|c| c.seq > 0);
        return answer(
            &state,
            Transport::ShortPoll,
            Read {
                reset,
                ..Read::default()
            },
        );
    };
    let since = match target.since {
        Some(cursor) => room.locate(cursor).await,
        None => room.head(),
    };
    let read = room.read(since, Reader::of(target.client.as_deref()), BATCH_LIMIT);
    answer(&state, Transport::ShortPoll, read)
}

pub(super) async fn long_poll(
    State(state): State<AppState>,
    target: Target,
    hold: Option<Hold>,
) -> Result<Response, ApiError> {
    let open = state.metrics.open(Transport::LongPoll);
    let timeout = Duration::from_millis(target.timeout_ms.unwrap_or(DEFAULT_LONG_POLL_TIMEOUT_MS));
    let deadline = tokio::time::Instant::now() + timeout;
    let room = target.open()?;
    let mut follower = Follower::start(room, target.since, target.client, BATCH_LIMIT).await;
    // What is already there is answered at once, before shutdown or the deadline are looked at.
    let read = follower.read();
    if read.has_news() {
        return Ok(answer(&state, Transport::LongPoll, read));
    }
    let wait = async move {
        let _open = open;
        let read = tokio::select! {
            biased;
            _ = state.shutdown.cancelled() => return ApiError::ShuttingDown.into_response(),
            _ = tokio::time::sleep_until(deadline) => {
                return no_content(follower.cursor(), Some(follower.epoch()));
            }
            read = follower.next() => read,
        };
        answer(&state, Transport::LongPoll, read)
    };
    Ok(match hold {
        // The wait happens off hyper, on the bare socket: hyper's buffers and the handler's
        // futures are not kept while nothing is said.
        Some(hold) => hold.answer_later(Endpoint::Transport(Transport::LongPoll), wait),
        None => wait.await,
    })
}

/// `200` with the batch, or `204` when there is nothing to say.
fn answer(state: &AppState, transport: Transport, read: Read) -> Response {
    if !read.has_news() {
        return no_content(read.next, read.epoch);
    }
    state
        .metrics
        .record_deliveries(transport, read.entries.len() as u64);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        encode_batch(&read),
    )
        .into_response()
}

/// `{"messages":[...],"next":N,"missed":K,"reset":B,"epoch":"E"}` with each message's stored
/// JSON copied in as is (the shape of [`wire::Batch`], plus the epoch `next` belongs to, which a
/// client sends back as `since=E-N`).
fn encode_batch(read: &Read) -> bytes::Bytes {
    let payload: usize = read.entries.iter().map(|e| e.text.len() + 1).sum();
    let mut out = BytesMut::with_capacity(payload + 80);
    out.put_slice(b"{\"messages\":[");
    for (i, entry) in read.entries.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(entry.text.as_bytes());
    }
    out.put_slice(
        format!(
            "],\"next\":{},\"missed\":{},\"reset\":{}",
            read.next, read.missed, read.reset
        )
        .as_bytes(),
    );
    if let Some(epoch) = read.epoch {
        out.put_slice(format!(",\"epoch\":\"{epoch}\"").as_bytes());
    }
    out.put_u8(b'}');
    out.freeze()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Feed, RoomName};
    use futures_util::FutureExt;
    use wire::{Batch, PublishRequest};

    #[test]
    fn encoded_batch_parses_as_the_wire_batch() {
        let feed = Feed::new(2);
        let room = RoomName::parse("r").unwrap();
        for body in ["a", "b\"quoted\"", "c"] {
            feed.publish(
                &room,
                None,
                PublishRequest {
                    from: "x".into(),
                    body: body.into(),
                    event: None,
                    to: None,
                    echo: None,
                },
            )
            .now_or_never()
            .unwrap()
            .unwrap();
        }
        let read = feed
            .find(&room)
            .unwrap()
            .read(0, Reader::Anyone, BATCH_LIMIT);
        let batch: Batch = serde_json::from_slice(&encode_batch(&read)).unwrap();
        assert_eq!(batch.messages.len(), 2);
        assert_eq!(batch.messages[0].body, "b\"quoted\"");
        assert_eq!((batch.next, batch.missed, batch.reset), (3, 1, false));
    }
}
