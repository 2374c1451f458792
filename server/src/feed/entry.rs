//! What a room's log holds and hands out: names and their rules, the [`Draft`] a publish turns
//! into, the encoded-once [`Entry`], and the [`Read`] answer to "what follows this cursor". Shared
//! by every [`RoomLog`](super::RoomLog) implementation, so each one encodes and routes the same way.

use std::sync::{Arc, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio_tungstenite::tungstenite::Utf8Bytes;

use wire::{Message, PublishRequest};

/// The longest room name, client id, or event name accepted.
pub const MAX_NAME_LEN: usize = 64;

/// A validated room name: `[A-Za-z0-9_-]{1,64}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RoomName(String);

/// A room name that breaks the `[A-Za-z0-9_-]{1,64}` rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bad room name {0:?}: use 1 to 64 characters from A-Z a-z 0-9 _ -")]
pub struct BadRoomName(pub String);

impl RoomName {
    /// Checks `name` against the rule.
    pub fn parse(name: &str) -> Result<Self, BadRoomName> {
        let ok = !name.is_empty()
            && name.len() <= MAX_NAME_LEN
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(RoomName(name.to_owned()))
        } else {
            Err(BadRoomName(name.to_owned()))
        }
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A new room was asked for and could not be created.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TooManyRooms {
    /// The room table is full of rooms in use.
    #[error("too many rooms: the limit is {0}")]
    Total(usize),
    /// The address asking has created its share of the rooms that exist.
    #[error("too many rooms created from this address: the limit is {0}")]
    PerAddress(usize),
}

/// A publish that the feed refuses (before it gets a seq).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// `event` is empty, too long or holds control characters (it becomes an SSE `event:` line,
    /// so a newline in it would forge SSE fields).
    #[error("bad event name {0:?}: use 1 to 64 printable characters")]
    BadEvent(String),
    /// `event` names one the server keeps for itself (the teacher's `flash`).
    #[error("the event name {0:?} is reserved for the server")]
    ReservedEvent(String),
    /// The log's store (the Redis backplane) did not take the message; it has no seq.
    #[error("the backplane did not take the message: {0}")]
    Unavailable(String),
    /// The room does not exist and no more can be created.
    #[error(transparent)]
    TooManyRooms(#[from] TooManyRooms),
    /// `from` or `to` is too long or holds control characters.
    #[error("bad client id in {field:?}: {value:?} (at most 64 printable characters)")]
    BadClient {
        /// Which field: `from` or `to`.
        field: &'static str,
        /// The value sent.
        value: String,
    },
}

/// Checks a client id (`from`, `to`, `client=`): at most 64 characters, none of them control or
/// format characters.
pub fn valid_client_id(id: &str) -> bool {
    id.len() <= MAX_NAME_LEN && !id.chars().any(is_hidden)
}

/// Control characters and the invisible format characters (Unicode category Cf: bidi overrides
/// and isolates such as U+202E, zero-width joiners and spaces, the BOM, soft hyphen, tags), which
/// let a name look like another (`alice` and `ecila` shown reversed) or forge a line.
pub fn is_hidden(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFB}'
            | '\u{110BD}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0001}' | '\u{E0020}'..='\u{E007F}')
}

/// Which incarnation of a room's log a seq belongs to. A log gets a new epoch when it starts
/// empty (each server start, a room created again after it expired; with a shared store, each
/// loss of the store), so a cursor from an older incarnation is recognised even once the new log
/// has grown past its seq. Written as lowercase hex in cursors (`<epoch>-<seq>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Epoch(pub u64);

impl std::fmt::Display for Epoch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:x}", self.0)
    }
}

/// A position a client sends back: `since=N` (read as the room's current epoch) or
/// `since=<epoch>-N`, as the server hands it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cursor {
    /// The epoch the seq belongs to; `None` for a bare seq.
    pub epoch: Option<Epoch>,
    /// The last seq the client handled.
    pub seq: u64,
}

impl Cursor {
    /// Parses `N` or `<hex epoch>-N`; `None` when it is neither.
    pub fn parse(text: &str) -> Option<Cursor> {
        let (epoch, seq) = match text.split_once('-') {
            Some((epoch, seq)) => {
                let ok = !epoch.is_empty()
                    && epoch.len() <= 16
                    && epoch.bytes().all(|b| b.is_ascii_hexdigit());
                if !ok {
                    return None;
                }
                (Some(Epoch(u64::from_str_radix(epoch, 16).ok()?)), seq)
            }
            None => (None, text),
        };
        if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(Cursor {
            epoch,
            seq: seq.parse().ok()?,
        })
    }
}

/// How much one read may return: at most `messages` messages and, past the first message,
/// at most `bytes` of message JSON, so no answer (a poll's batch, an SSE chunk, a burst of
/// frames) holds more than that in memory however far behind its client is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Most messages.
    pub messages: usize,
    /// Most bytes of message JSON (the first message always fits).
    pub bytes: usize,
}

/// The server's wall clock, Unix microseconds: a message's `ts_us`, and the clock the live page
/// aligns with (`/live/clock`).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

/// A checked publish, waiting for its seq: what a [`RoomLog`](super::RoomLog) appends.
#[derive(Debug, Clone)]
pub struct Draft {
    /// Event name (checked: 1 to 64 printable characters).
    pub event: String,
    /// The publishing client id.
    pub from: String,
    /// The opaque body.
    pub body: String,
    /// Only this client receives the message, when set.
    pub to: Option<String>,
    /// `false`: everyone but `from`.
    pub echo: bool,
    /// The server's receive time, Unix µs.
    pub ts_us: u64,
}

impl Draft {
    /// Checks a publish request (event name, `from`, `to`) and stamps its receive time.
    pub fn check(req: PublishRequest) -> Result<Self, PublishError> {
        let event = req.event.unwrap_or_else(|| "chat".to_owned());
        if event.is_empty() || event.len() > MAX_NAME_LEN || event.chars().any(is_hidden) {
            return Err(PublishError::BadEvent(event));
        }
        if !valid_client_id(&req.from) {
            return Err(PublishError::BadClient {
                field: "from",
                value: req.from,
            });
        }
        if let Some(to) = &req.to
            && !valid_client_id(to)
        {
            return Err(PublishError::BadClient {
                field: "to",
                value: to.clone(),
            });
        }
        Ok(Draft {
            event,
            from: req.from,
            body: req.body,
            to: req.to,
            echo: req.echo.unwrap_or(true),
            ts_us: now_us(),
        })
    }

    /// The entry this draft becomes at `seq` in `room`: its JSON encoded here, once; every
    /// transport and every client shares these bytes.
    pub fn into_entry(self, room: &RoomName, seq: u64) -> Entry {
        let message = Message {
            seq,
            room: room.as_str().to_owned(),
            event: self.event,
            from: self.from,
            body: self.body,
            ts_us: self.ts_us,
        };
        let json = serde_json::to_string(&message).expect("a Message always serializes");
        Entry {
            seq,
            event: message.event.into_boxed_str(),
            from: message.from.into_boxed_str(),
            to: self.to.map(String::into_boxed_str),
            echo: self.echo,
            text: Utf8Bytes::from(json),
            framed: OnceLock::new(),
        }
    }
}

/// One published message: its JSON encoded once, plus what readers need to route it.
#[derive(Debug)]
pub struct Entry {
    /// Position in the room's log.
    pub seq: u64,
    /// Event name, for SSE's `event:` line.
    pub event: Box<str>,
    /// The publishing client id (left out when `echo` is false).
    pub from: Box<str>,
    /// Only this client receives the message, when set.
    pub to: Option<Box<str>>,
    /// `false`: everyone but `from`.
    pub echo: bool,
    /// The message JSON (`{"type":"message",...}`), validated UTF-8 so a WebSocket text frame
    /// can share it without a copy or a re-check.
    pub text: Utf8Bytes,
    /// The message framed for a stream (an SSE event), made by the first reader that sends it
    /// and shared by every other, with the epoch it was framed for: see [`Entry::framed`].
    framed: OnceLock<(Option<Epoch>, Bytes)>,
}

impl Entry {
    /// This message framed by `frame` for `epoch` (an SSE event carries `<epoch>-<seq>` as its
    /// id), made once and shared: a fan-out to a thousand streams is a thousand reference counts
    /// on one allocation, not a thousand copies. Framed again, uncached, for another epoch (a
    /// backplane's log that began a new one) and for another `frame`: each entry is framed by
    /// one transport only (SSE), so the cache holds that one.
    pub fn framed(&self, epoch: Option<Epoch>, frame: impl Fn(&Entry) -> Bytes) -> Bytes {
        let (framed_for, bytes) = self.framed.get_or_init(|| (epoch, frame(self)));
        if *framed_for == epoch {
            bytes.clone()
        } else {
            frame(self)
        }
    }

    /// The message JSON as bytes (shares the allocation).
    pub fn json(&self) -> Bytes {
        Bytes::from(self.text.clone())
    }

    /// Whether `reader` sees this message in a read of the log.
    pub fn visible_to(&self, reader: Reader<'_>) -> bool {
        match reader {
            Reader::Anyone => self.is_for(None),
            Reader::Client(client) => self.is_for(Some(client)),
            Reader::Fanout => true,
        }
    }

    /// Whether the subscriber `client` should receive this message.
    pub fn is_for(&self, client: Option<&str>) -> bool {
        match (&self.to, client) {
            (Some(to), Some(client)) => **to == *client,
            (Some(_), None) => false,
            (None, Some(client)) => self.echo || *self.from != *client,
            (None, None) => true,
        }
    }
}

/// Whose view of a room a read takes: which messages it returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reader<'a> {
    /// A reader that gave no client id: the messages for everyone.
    Anyone,
    /// This client: the messages for everyone (but its own sent with `echo: false`) and those
    /// addressed to it.
    Client(&'a str),
    /// The room's fan-out (`feed::fanout`), which routes each message to its subscribers
    /// itself: every message, whoever it is for.
    Fanout,
}

impl<'a> Reader<'a> {
    /// The reader for a client that may have given its id.
    pub fn of(client: Option<&'a str>) -> Self {
        client.map_or(Reader::Anyone, Reader::Client)
    }
}

/// The answer to [`RoomLog::read`](super::RoomLog::read): what follows a cursor.
#[derive(Debug, Default)]
pub struct Read {
    /// Messages after the cursor addressed to this client, oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// The new cursor: the last seq examined (delivered or skipped as not addressed to the
    /// client), or the head when nothing was newer.
    pub next: u64,
    /// How many seqs after the cursor were already evicted from history.
    pub missed: u64,
    /// The cursor was ahead of the log or from another epoch (the server restarted, the room
    /// was created again); `next` is the head.
    pub reset: bool,
    /// The log's epoch, which `next` belongs to.
    pub epoch: Option<Epoch>,
}

impl Read {
    /// Whether the reader has anything to tell its client.
    pub fn has_news(&self) -> bool {
        !self.entries.is_empty() || self.missed > 0 || self.reset
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_names_follow_the_rule() {
        assert!(RoomName::parse("lobby-1_A").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn cursors_are_a_seq_or_an_epoch_and_a_seq() {
        assert_eq!(
            Cursor::parse("42"),
            Some(Cursor {
                epoch: None,
                seq: 42
            })
        );
        assert_eq!(
            Cursor::parse("1f-7"),
            Some(Cursor {
                epoch: Some(Epoch(0x1f)),
                seq: 7
            })
        );
        for bad in ["", "-1", "x-1", "1f-", "1f-x", "+1", "1 ", "1f-1-2"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn names_with_bidi_or_format_controls_are_refused() {
        assert!(valid_client_id("alice"));
        assert!(valid_client_id("Zoë 李"));
        for bad in ["a\u{202E}b", "\u{200B}", "x\u{FEFF}", "a\u{2066}b", "a\nb"] {
            assert!(!valid_client_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn event_with_newline_is_refused() {
        let err = Draft::check(PublishRequest {
            from: "a".into(),
            body: "b".into(),
            event: Some("chat\ndata: x".into()),
            to: None,
            echo: None,
        })
        .unwrap_err();
        assert!(matches!(err, PublishError::BadEvent(_)));
    }

    #[test]
    fn message_json_is_the_wire_shape() {
        let draft = Draft::check(PublishRequest {
            from: "alice".into(),
            body: "hi".into(),
            event: None,
            to: None,
            echo: None,
        })
        .unwrap();
        let e = draft.into_entry(&RoomName::parse("r").unwrap(), 1);
        let m: Message = serde_json::from_slice(&e.json()).unwrap();
        assert_eq!(
            (m.seq, m.from.as_str(), m.body.as_str()),
            (1, "alice", "hi")
        );
        assert!(
            e.text
                .as_str()
                .starts_with(r#"{"type":"message","seq":1,"room":"r""#)
        );
    }
}
