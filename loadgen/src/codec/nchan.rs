//! nchan's formats (nginx's pub/sub module, as configured in `peers/nchan/`): message ids,
//! the cursor a poll carries from one answer to the next, the WebSocket frames of the
//! `ws+meta.nchan` subprotocol, and the publisher's answer.
//!
//! - A message id is `<unix seconds>:<tag>`, the tag counting messages within that second.
//!   EventSource sends it as `id:`, a subscriber resumes from it with `Last-Event-ID` (or
//!   `?last_event_id=`).
//! - An interval poll or long poll answer carries one message and its id split over two
//!   headers, `Last-Modified` (the seconds, as an HTTP date) and `Etag` (the tag); the next
//!   request sends them back as `If-Modified-Since` and `If-None-Match`. An interval poll with
//!   nothing newer is answered `304 Not Modified` at once.
//! - With the `ws+meta.nchan` subprotocol each WebSocket text frame is a small header block,
//!   `id: <id>` and `content-type: <type>` lines, a blank line, then the message.
//! - nchan keeps a bounded buffer per channel and evicts silently: a cursor older than the
//!   buffer is answered with the oldest message kept, and nothing says that some were lost.

use std::fmt;
use std::str::FromStr;

use serde::Deserialize;

use super::CodecError;

/// The WebSocket subprotocol that puts message ids into frames.
pub const WS_SUBPROTOCOL: &str = "ws+meta.nchan";

/// A message id, `<seconds>:<tag>`, in the order nchan assigns them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MessageId {
    /// Unix seconds of the publish.
    pub time: u64,
    /// Position among that second's messages.
    pub tag: u64,
}

impl FromStr for MessageId {
    type Err = CodecError;

    fn from_str(s: &str) -> Result<Self, CodecError> {
        let bad = || CodecError::new("an nchan message id <seconds>:<tag>", s);
        let (time, tag) = s.split_once(':').ok_or_else(bad)?;
        Ok(MessageId {
            time: time.parse().map_err(|_| bad())?,
            // A multiplexed subscriber's tag is a list (`[1,2]`); one channel's is a number.
            tag: tag.parse().map_err(|_| bad())?,
        })
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.time, self.tag)
    }
}

/// Where a poll resumes: the last answer's `Last-Modified` and `Etag`, sent back verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PollCursor {
    /// `Last-Modified` of the last message received (sent as `If-Modified-Since`).
    pub last_modified: String,
    /// `Etag` of the last message received (sent as `If-None-Match`).
    pub etag: String,
}

impl PollCursor {
    /// The cursor a `200` poll answer carries; an error when it carries none, since the next
    /// poll would then start over at the oldest message kept.
    pub fn from_answer(
        last_modified: Option<&str>,
        etag: Option<&str>,
    ) -> Result<PollCursor, CodecError> {
        match (last_modified, etag) {
            (Some(lm), Some(etag)) => Ok(PollCursor {
                last_modified: lm.to_owned(),
                etag: etag.trim_matches('"').to_owned(),
            }),
            _ => Err(CodecError::new(
                "an nchan poll answer with Last-Modified and Etag",
                &format!("Last-Modified {last_modified:?}, Etag {etag:?}"),
            )),
        }
    }

    /// The headers the next poll sends.
    pub fn request_headers(&self) -> [(&'static str, &str); 2] {
        [
            ("if-modified-since", &self.last_modified),
            ("if-none-match", &self.etag),
        ]
    }
}

/// One `ws+meta.nchan` frame: the message id and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WsFrame<'a> {
    /// The message's id.
    pub id: MessageId,
    /// The message as published.
    pub data: &'a str,
}

impl<'a> WsFrame<'a> {
    /// Reads a text frame of the `ws+meta.nchan` subprotocol.
    pub fn parse(text: &'a str) -> Result<WsFrame<'a>, CodecError> {
        let bad = || {
            CodecError::new(
                "an nchan ws+meta frame (id: ..., blank line, message)",
                text,
            )
        };
        let (head, data) = text.split_once("\n\n").ok_or_else(bad)?;
        let id = head
            .lines()
            .find_map(|l| l.strip_prefix("id: "))
            .ok_or_else(bad)?;
        Ok(WsFrame {
            id: id.trim().parse()?,
            data,
        })
    }
}

/// The publisher's answer, as nchan writes it for `Accept: application/json`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Published {
    /// Messages the channel keeps now.
    pub messages: u64,
    /// Subscribers it was sent to.
    pub subscribers: u64,
    /// The new message's id.
    pub last_message_id: String,
}

impl Published {
    /// Reads the publisher's JSON answer.
    pub fn parse(body: &str) -> Result<Published, CodecError> {
        serde_json::from_str(body).map_err(|_| {
            CodecError::new(
                "nchan's publisher answer {\"messages\":...,\"last_message_id\":...}",
                body,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_ids_read_and_order_as_nchan_assigns_them() {
        let a: MessageId = "1796157193:0".parse().unwrap();
        let b: MessageId = "1796157193:1".parse().unwrap();
        let c: MessageId = "1796157199:0".parse().unwrap();
        assert!(a < b && b < c);
        assert_eq!(b.to_string(), "1796157193:1");
        assert!("1796157193:[0,1]".parse::<MessageId>().is_err());
        assert!("<html>".parse::<MessageId>().is_err());
    }

    #[test]
    fn a_poll_cursor_goes_back_as_conditional_headers() {
        let c = PollCursor::from_answer(Some("Tue, 01 Dec 2026 20:33:08 GMT"), Some("2")).unwrap();
        assert_eq!(
            c.request_headers(),
            [
                ("if-modified-since", "Tue, 01 Dec 2026 20:33:08 GMT"),
                ("if-none-match", "2")
            ]
        );
        // A quoted Etag is sent back unquoted, as nchan writes it.
        let c = PollCursor::from_answer(Some("x"), Some("\"3\"")).unwrap();
        assert_eq!(c.etag, "3");
        let e = PollCursor::from_answer(None, Some("2")).unwrap_err();
        assert!(e.to_string().contains("Last-Modified and Etag"), "{e}");
    }

    #[test]
    fn reads_a_ws_meta_frame() {
        let f =
            WsFrame::parse("id: 1796157193:1\ncontent-type: text/plain\n\ndx1 0 1 5;\n..").unwrap();
        assert_eq!(
            f.id,
            MessageId {
                time: 1796157193,
                tag: 1
            }
        );
        assert_eq!(f.data, "dx1 0 1 5;\n..");
        assert!(
            WsFrame::parse("dx1 0 1 5;").is_err(),
            "a frame without the meta header"
        );
    }

    #[test]
    fn reads_the_publisher_answer() {
        let p = Published::parse(
            r#"{"messages": 2, "requested": -1, "subscribers": 0, "last_message_id": "1796157188:1" }"#,
        )
        .unwrap();
        assert_eq!((p.messages, p.subscribers), (2, 0));
        assert_eq!(p.last_message_id, "1796157188:1");
        assert!(Published::parse("queued messages: 1").is_err());
    }
}
