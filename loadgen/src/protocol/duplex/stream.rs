//! The stream items SSE and WebSocket carry on duplex's wire API (a message, a gap, a reset,
//! and for a WebSocket sender an ack or an error), decoded and recorded once so both
//! transports count alike; each transport keeps only its framing.

use std::sync::atomic::Ordering::Relaxed;

use tokio::time::Instant;

use super::wire_ref::StreamItemRef;
use crate::clients::{ClientError, ClientHandle};

/// What the server answers a WebSocket sender's `send` on the stream: the items of a stream
/// that are not the client's to record, handed back to the transport by [`take_stream_item`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendReply {
    /// The server accepted the send with `ref` = `reference` and gave it `seq`.
    Ack {
        /// The client's `ref` from the `send`.
        reference: u64,
        /// The sequence number the message got.
        seq: u64,
    },
    /// The server refused a send (the connection stays usable).
    Error {
        /// What was wrong, in words.
        error: String,
        /// The `ref` of the refused `send`, when the server could read it.
        reference: Option<u64>,
    },
}

/// Takes one stream item (an SSE event's `data:` or a WebSocket text frame) that arrived at
/// `at`: a message is counted as payload (its whole JSON) and recorded, a gap or a reset
/// noted. An `ack` or `error` is handed back, since only a WebSocket sender expects one.
/// `what` names the item in a decoding error (`"SSE data"`, `"frame"`).
pub fn take_stream_item(
    me: &mut ClientHandle,
    json: &str,
    at: Instant,
    what: &str,
) -> Result<Option<SendReply>, ClientError> {
    let item = StreamItemRef::from_json(json)
        .map_err(|e| ClientError::Protocol(format!("bad {what}: {e}")))?;
    match item {
        StreamItemRef::Message(message) => {
            me.phase
                .meter
                .traffic
                .payload_down
                .fetch_add(json.len() as u64, Relaxed);
            me.on_message(message.seq, &message.body, at);
        }
        StreamItemRef::Gap { missed } => me.on_gap(missed),
        StreamItemRef::Reset { head } => me.on_reset(head),
        StreamItemRef::Epoch { .. } => {}
        StreamItemRef::Ack { reference, seq } => {
            return Ok(Some(SendReply::Ack { reference, seq }));
        }
        StreamItemRef::Error { error, reference } => {
            return Ok(Some(SendReply::Error { error, reference }));
        }
    }
    Ok(None)
}
