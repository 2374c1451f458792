//! Borrowed views of the wire API's items a client decodes on every delivery: [`MessageRef`]
//! (a delivered [`Message`]'s seq and body) and [`StreamItemRef`] (a [`StreamItem`] with its
//! message borrowed). Thousands of clients decode every message, and the owned wire types
//! allocate four strings each time; these borrow the body from the received JSON (or decode
//! it into an owned string when it holds JSON escapes) and skip the fields the loadgen never
//! reads. The `wire` crate stays the contract; the tests below decode its own serialization.
//!
//! [`StreamItemRef::from_json`] reads an item in one pass into a flat set of optional fields
//! and then picks the variant by `type`: serde's derive for an internally tagged enum would
//! first buffer every field of the item into an owned tree (allocating for each string) to find
//! the tag, on every delivery of every client.

use std::borrow::Cow;

use serde::Deserialize;
#[cfg(doc)]
use wire::{Message, StreamItem};

/// What the loadgen reads of a delivered [`Message`]: where it is in the log, and the body
/// that carries the stamp. The other fields (room, event, sender, server time) are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct MessageRef<'a> {
    /// Position in the room's log, from 1.
    pub seq: u64,
    /// The body as published: borrowed unless it had to be unescaped.
    #[serde(borrow)]
    pub body: Cow<'a, str>,
}

/// A [`StreamItem`] (an SSE `data:` value or a WebSocket text frame) with its message borrowed,
/// read by [`StreamItemRef::from_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamItemRef<'a> {
    /// A delivered message.
    Message(MessageRef<'a>),
    /// `missed` messages were evicted before they could be delivered.
    Gap {
        /// How many were lost.
        missed: u64,
    },
    /// The client's position was ahead of the log; delivery continues after `head`.
    Reset {
        /// The room's current head seq.
        head: u64,
    },
    /// WebSocket only: the epoch the seqs that follow belong to. The loadgen's cursors stay
    /// bare seqs (read as the current epoch): each phase gets a fresh server, and a log that
    /// begins a new epoch while a client follows it also sends a `reset`, which is counted.
    Epoch {
        /// The log's epoch (hex).
        #[allow(dead_code)]
        epoch: String,
    },
    /// WebSocket only: the server accepted a `send` and gave it `seq`.
    Ack {
        /// The client's `ref` from the `send`.
        reference: u64,
        /// The sequence number the message got.
        seq: u64,
    },
    /// WebSocket only: the last frame was refused.
    Error {
        /// What was wrong, in words.
        error: String,
        /// The `ref` of the refused `send`, when it could be read.
        reference: Option<u64>,
    },
}

/// Every field any stream item has, each optional: what one pass over the JSON finds. Fields
/// of no item the loadgen reads (a message's room, event, sender, server time) are skipped.
#[derive(Deserialize)]
struct Fields<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    seq: Option<u64>,
    #[serde(borrow)]
    body: Option<Text<'a>>,
    missed: Option<u64>,
    head: Option<u64>,
    #[serde(borrow)]
    epoch: Option<Text<'a>>,
    #[serde(rename = "ref")]
    reference: Option<u64>,
    #[serde(borrow)]
    error: Option<Text<'a>>,
}

/// A string field borrowed from the JSON unless it had to be unescaped (serde borrows a `Cow`
/// only as a field of its own, not inside an `Option`).
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

impl<'a> StreamItemRef<'a> {
    /// Reads one item from its JSON; an error names an unknown `type` or a field its type needs.
    pub fn from_json(json: &'a str) -> serde_json::Result<Self> {
        use serde::de::Error as _;
        let f: Fields<'a> = serde_json::from_str(json)?;
        let need = |v: Option<u64>, field: &'static str| {
            v.ok_or_else(|| serde_json::Error::missing_field(field))
        };
        Ok(match &*f.kind {
            "message" => StreamItemRef::Message(MessageRef {
                seq: need(f.seq, "seq")?,
                body: f
                    .body
                    .ok_or_else(|| serde_json::Error::missing_field("body"))?
                    .0,
            }),
            "gap" => StreamItemRef::Gap {
                missed: need(f.missed, "missed")?,
            },
            "reset" => StreamItemRef::Reset {
                head: need(f.head, "head")?,
            },
            "epoch" => StreamItemRef::Epoch {
                epoch: f
                    .epoch
                    .ok_or_else(|| serde_json::Error::missing_field("epoch"))?
                    .0
                    .into_owned(),
            },
            "ack" => StreamItemRef::Ack {
                reference: need(f.reference, "ref")?,
                seq: need(f.seq, "seq")?,
            },
            "error" => StreamItemRef::Error {
                error: f
                    .error
                    .ok_or_else(|| serde_json::Error::missing_field("error"))?
                    .0
                    .into_owned(),
                reference: f.reference,
            },
            other => {
                return Err(serde_json::Error::unknown_variant(
                    other,
                    &["message", "gap", "reset", "epoch", "ack", "error"],
                ));
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{Message, StreamItem};

    fn message(body: &str) -> Message {
        Message {
            seq: 7,
            room: "lobby".into(),
            event: "chat".into(),
            from: "c3".into(),
            body: body.into(),
            ts_us: 1_700_000_000_000_000,
        }
    }

    #[test]
    fn message_body_is_borrowed_when_plain_and_unescaped_otherwise() {
        let plain = serde_json::to_string(&message("dx1 1 2 3;....")).unwrap();
        let got: MessageRef<'_> = serde_json::from_str(&plain).unwrap();
        assert_eq!(got.seq, 7);
        assert!(
            matches!(got.body, Cow::Borrowed("dx1 1 2 3;....")),
            "{got:?}"
        );

        let tricky = "dx1 1 2 3;\"quoted\" \\ é\n\u{1F600}";
        let escaped = serde_json::to_string(&message(tricky)).unwrap();
        assert!(escaped.contains("\\\""), "{escaped}");
        let got: MessageRef<'_> = serde_json::from_str(&escaped).unwrap();
        assert_eq!(got.body, tricky);
    }

    #[test]
    fn every_stream_item_the_server_writes_decodes_to_the_same_meaning() {
        let tricky = "dx1 4 5 6;\"\\\u{e9}";
        // A message is written as the `Message` itself (already tagged `"type":"message"`, as
        // the server's feed does), the other items as `StreamItem`s.
        let json = serde_json::to_string(&message(tricky)).unwrap();
        let got = StreamItemRef::from_json(&json).unwrap();
        let expected = StreamItemRef::Message(MessageRef {
            seq: 7,
            body: tricky.into(),
        });
        assert_eq!(got, expected, "{json}");
        let cases = [
            (
                StreamItem::Gap { missed: 3 },
                StreamItemRef::Gap { missed: 3 },
            ),
            (
                StreamItem::Reset { head: 9 },
                StreamItemRef::Reset { head: 9 },
            ),
            (
                StreamItem::Ack {
                    reference: 2,
                    seq: 11,
                },
                StreamItemRef::Ack {
                    reference: 2,
                    seq: 11,
                },
            ),
            (
                StreamItem::Error {
                    error: "body too long".into(),
                    reference: Some(4),
                },
                StreamItemRef::Error {
                    error: "body too long".into(),
                    reference: Some(4),
                },
            ),
            (
                StreamItem::Error {
                    error: "bad frame".into(),
                    reference: None,
                },
                StreamItemRef::Error {
                    error: "bad frame".into(),
                    reference: None,
                },
            ),
        ];
        for (item, expected) in cases {
            let json = serde_json::to_string(&item).unwrap();
            let got = StreamItemRef::from_json(&json).unwrap();
            assert_eq!(got, expected, "{json}");
        }
    }

    #[test]
    fn an_unknown_type_or_a_missing_field_is_an_error_naming_it() {
        let unknown = StreamItemRef::from_json(r#"{"type":"hello"}"#).unwrap_err();
        assert!(unknown.to_string().contains("hello"), "{unknown}");
        let no_seq = StreamItemRef::from_json(r#"{"type":"message","body":"x"}"#).unwrap_err();
        assert!(no_seq.to_string().contains("seq"), "{no_seq}");
        let no_ref = StreamItemRef::from_json(r#"{"type":"ack","seq":3}"#).unwrap_err();
        assert!(no_ref.to_string().contains("ref"), "{no_ref}");
    }

    #[test]
    fn a_plain_stream_message_body_is_borrowed() {
        let json = serde_json::to_string(&message("dx1 1 2 3;...")).unwrap();
        let got = StreamItemRef::from_json(&json).unwrap();
        assert!(
            matches!(
                got,
                StreamItemRef::Message(MessageRef {
                    body: Cow::Borrowed(_),
                    ..
                })
            ),
            "{got:?}"
        );
    }
}
