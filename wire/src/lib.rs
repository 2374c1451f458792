//! duplex's wire protocol, the leaf every other crate stands on: the JSON shapes the server writes
//! and the loadgen reads, the [`Transport`] ids used in files and labels, and (feature `metered`)
//! the byte-counting socket wrapper both sides count traffic with. Server, loadgen and report all
//! depend on this crate and on nothing of each other's for the protocol, so the two ends agree by
//! construction. The wire API itself is described in the README and `docs/ARCHITECTURE.md`.
//!
//! Requests a client sends are parsed with `deny_unknown_fields`: a misspelt key is a 400 naming
//! it, never silently ignored. Items the server sends are tagged with `"type"`. How a transport is
//! drawn (labels, colours) is the report's business, not the protocol's.

#![warn(missing_docs)]

#[cfg(feature = "metered")]
pub mod metered;
#[cfg(feature = "metered")]
pub use metered::{Metered, Tally};

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The four ways a client can follow a room. The snake_case names are the identifiers used
/// everywhere: scenario files, CSV columns, metric labels, JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transport {
    /// `GET .../poll` on a timer; answered at once.
    ShortPoll,
    /// `GET .../longpoll`; held until something newer exists or the timeout passes.
    LongPoll,
    /// `GET .../sse`; one long-lived `text/event-stream` response.
    Sse,
    /// `GET .../ws`; one WebSocket, messages as text frames, publishing with `send`/`ack`.
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Transport {
    /// Every transport, in the order reports show them (most to least chatty).
    pub const ALL: [Transport; 4] = [
        Transport::ShortPoll,
        Transport::LongPoll,
        Transport::Sse,
        Transport::WebSocket,
    ];

    /// Whether clients ask again and again (one HTTP request per answer).
    pub fn is_polling(self) -> bool {
        matches!(self, Transport::ShortPoll | Transport::LongPoll)
    }

    /// The identifier used in files and labels: `short_poll`, `long_poll`, `sse`, `websocket`.
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::ShortPoll => "short_poll",
            Transport::LongPoll => "long_poll",
            Transport::Sse => "sse",
            Transport::WebSocket => "websocket",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A transport identifier that is not one of the four.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown transport {0:?} (expected one of short_poll, long_poll, sse, websocket)")]
pub struct UnknownTransport(pub String);

impl FromStr for Transport {
    type Err = UnknownTransport;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Transport::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| UnknownTransport(s.to_owned()))
    }
}

/// Body of `POST /api/rooms/{room}/messages`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// The sending client's id; with `echo: false` that client is left out of the broadcast.
    pub from: String,
    /// Opaque to the server: relayed byte for byte inside the delivered message.
    pub body: String,
    /// Event name; defaults to `"chat"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// When set, only the subscriber with this client id receives the message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// `false` leaves the sender out (`socket.broadcast.emit`); defaults to `true`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
}

/// Answer to a publish: `201 {"seq":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Published {
    /// The sequence number the room gave the message.
    pub seq: u64,
}

/// A delivered message, with identical bytes on every transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename = "message")]
pub struct Message {
    /// Position in the room's log, from 1.
    pub seq: u64,
    /// The room's name.
    pub room: String,
    /// Event name (`"chat"` unless the publisher said otherwise).
    pub event: String,
    /// The publishing client's id.
    pub from: String,
    /// The body as published.
    pub body: String,
    /// Server receive time, Unix microseconds.
    pub ts_us: u64,
}

/// Answer to a short or long poll that has something to say: `200` with this body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Batch {
    /// The messages newer than `since`, oldest first (only those addressed to this client).
    pub messages: Vec<Message>,
    /// The `since` to send next time: the last seq delivered, or the head when empty.
    pub next: u64,
    /// How many messages after `since` were evicted from history before this answer (a gap).
    pub missed: u64,
    /// `true` when `since` was ahead of the log (the server restarted): delivery continues from
    /// `next`, the current head.
    pub reset: bool,
}

/// Items of a stream (an SSE `data:` line or a WebSocket text frame): messages, gaps and
/// resets, plus the acks and errors a WebSocket client receives. SSE uses the `type` as its
/// `event:` name for gap/reset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamItem {
    /// `missed` messages were evicted from history before they could be delivered.
    Gap {
        /// How many were lost.
        missed: u64,
    },
    /// The client's position was ahead of the log; delivery continues after `head`.
    Reset {
        /// The room's current head seq.
        head: u64,
    },
    /// WebSocket only: the epoch the seqs that follow belong to. The first frame on every
    /// socket, and sent again (before a `reset`) when the room's log begins a new epoch, so a
    /// client can resume anywhere with `since=<epoch>-<seq>`, as SSE ids and batches carry it.
    Epoch {
        /// The log's epoch, lowercase hex (the part before `-` in a cursor).
        epoch: String,
    },
    /// WebSocket only: the server accepted a `send` and gave it `seq`.
    Ack {
        /// The client's `ref` from the `send`.
        #[serde(rename = "ref")]
        reference: u64,
        /// The sequence number the message got.
        seq: u64,
    },
    /// WebSocket only: the last frame was refused; the connection stays usable.
    Error {
        /// What was wrong, in words.
        error: String,
        /// The `ref` of the refused `send`, when it could be read.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
    /// A delivered message. `Message` writes its own `"type":"message"`, so this variant is
    /// untagged (serde requires untagged variants last): wrapping a message in a `StreamItem`
    /// must not write the tag twice. Reading tries the tags above first, then this.
    #[serde(untagged)]
    Message(Message),
}

/// A frame a WebSocket client sends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum ClientFrame {
    /// Publish into the connection's room, as the connection's client id.
    Send {
        /// Opaque body.
        body: String,
        /// Event name; defaults to `"chat"`.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        event: Option<String>,
        /// Only this client id receives it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        to: Option<String>,
        /// `false` leaves this connection's client out.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        echo: Option<bool>,
        /// Echoed in the `ack`, so the client can match answers to sends.
        #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
        reference: Option<u64>,
    },
}

/// The body of every 4xx/5xx answer: `{"error":"..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What was wrong, naming the field or parameter.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_serializes_with_type_first() {
        let m = Message {
            seq: 42,
            room: "lobby".into(),
            event: "chat".into(),
            from: "alice".into(),
            body: "hi".into(),
            ts_us: 1,
        };
        assert_eq!(
            serde_json::to_string(&m).unwrap(),
            r#"{"type":"message","seq":42,"room":"lobby","event":"chat","from":"alice","body":"hi","ts_us":1}"#
        );
    }

    #[test]
    fn a_message_as_a_stream_item_has_the_same_bytes_and_reads_back() {
        let m = Message {
            seq: 7,
            room: "lobby".into(),
            event: "chat".into(),
            from: "bob".into(),
            body: "hi".into(),
            ts_us: 1,
        };
        let item = StreamItem::Message(m.clone());
        let json = serde_json::to_string(&item).unwrap();
        assert_eq!(json, serde_json::to_string(&m).unwrap());
        assert_eq!(serde_json::from_str::<StreamItem>(&json).unwrap(), item);
        let gap = serde_json::from_str::<StreamItem>(r#"{"type":"gap","missed":3}"#).unwrap();
        assert_eq!(gap, StreamItem::Gap { missed: 3 });
    }

    #[test]
    fn transport_names_round_trip() {
        for t in Transport::ALL {
            assert_eq!(t.as_str().parse::<Transport>().unwrap(), t);
            assert_eq!(serde_json::to_string(&t).unwrap(), format!("\"{t}\""));
        }
        assert!("polling".parse::<Transport>().is_err());
    }

    #[test]
    fn publish_request_rejects_unknown_fields() {
        let err = serde_json::from_str::<PublishRequest>(r#"{"from":"a","body":"b","bdy":1}"#)
            .unwrap_err();
        assert!(err.to_string().contains("bdy"), "{err}");
    }
}
