//! The chat feed: rooms, each an append-only log with sequence numbers from 1 and a bounded
//! history ring. This module owns ordering, retention, addressing (who a message is for) and
//! wake-ups; it knows nothing about HTTP. Every transport reads the log the same way: it keeps a
//! cursor (the last seq it has handled) and asks [`Room::read`] for what follows.
//!
//! Why one ring and no per-client queues: a message is encoded to JSON exactly once, when it is
//! published, and every reader shares that [`Entry`] through an `Arc`. A slow reader costs
//! nothing but its cursor; when the ring evicts past the cursor the reader is told exactly how
//! many it missed (a gap), never silently skipped. Memory is bounded by rooms × history.
//!
//! Why a `watch` channel for wake-ups: see [`Follower`], the one place that reads and waits, so
//! the transports that hold a client open (long poll, SSE, WebSocket) cannot get the order wrong.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::ws::Utf8Bytes;
use bytes::Bytes;
use tokio::sync::watch;

use wire::{Message, PublishRequest};

/// The longest room name, client id, or event name accepted.
pub const MAX_NAME_LEN: usize = 64;
/// Rooms are created on first use and kept; past this many a new name is refused, so a client
/// inventing names cannot grow the server's memory without bound (rooms × history is the bound).
pub const MAX_ROOMS: usize = 10_000;

/// A new room was asked for when [`MAX_ROOMS`] exist.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("too many rooms: the limit is {0}")]
pub struct TooManyRooms(pub usize);

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

/// A publish that the feed refuses (before it gets a seq).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublishError {
    /// `event` is empty, too long or holds control characters (it becomes an SSE `event:` line,
    /// so a newline in it would forge SSE fields).
    #[error("bad event name {0:?}: use 1 to 64 printable characters")]
    BadEvent(String),
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

/// Checks a client id (`from`, `to`, `client=`): at most 64 characters, none of them control
/// characters.
pub fn valid_client_id(id: &str) -> bool {
    id.len() <= MAX_NAME_LEN && !id.chars().any(char::is_control)
}

/// The server's wall clock, Unix microseconds: a message's `ts_us`, and the clock the live page
/// aligns with (`/live/clock`).
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
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
}

impl Entry {
    /// The message JSON as bytes (shares the allocation).
    pub fn json(&self) -> Bytes {
        Bytes::from(self.text.clone())
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

/// The answer to [`Room::read`]: what follows a cursor.
#[derive(Debug, Default)]
pub struct Read {
    /// Messages after the cursor addressed to this client, oldest first.
    pub entries: Vec<Arc<Entry>>,
    /// The new cursor: the last seq examined (delivered or skipped as not addressed to the
    /// client), or the head when nothing was newer.
    pub next: u64,
    /// How many seqs after the cursor were already evicted from history.
    pub missed: u64,
    /// The cursor was ahead of the log (the server restarted); `next` is the head.
    pub reset: bool,
}

impl Read {
    /// Whether the reader has anything to tell its client.
    pub fn has_news(&self) -> bool {
        !self.entries.is_empty() || self.missed > 0 || self.reset
    }
}

/// The log behind a room's lock.
#[derive(Debug)]
struct Log {
    entries: VecDeque<Arc<Entry>>,
    head: u64,
}

/// One room: its log and the head-seq signal readers wait on.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    history: usize,
    /// A std Mutex, not tokio's: it is held for a push or a slice copy, never across an await.
    log: Mutex<Log>,
    head: watch::Sender<u64>,
}

impl Room {
    fn new(name: RoomName, history: usize) -> Self {
        Room {
            name,
            history: history.max(1),
            log: Mutex::new(Log {
                entries: VecDeque::new(),
                head: 0,
            }),
            head: watch::Sender::new(0),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// The seq of the newest message (0 when none yet).
    pub fn head(&self) -> u64 {
        self.lock().head
    }

    /// Number of messages currently kept in history.
    pub fn retained(&self) -> usize {
        self.lock().entries.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Log> {
        // A panic while holding the lock cannot leave the log half-written (push then pop), so
        // a poisoned lock is still a consistent log.
        self.log.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A receiver that is flagged changed on every publish. To follow the room, use a
    /// [`Follower`], which reads and waits in the order that misses no wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Appends a message, giving it the next seq; evicts the oldest past the history bound and
    /// wakes every waiting reader.
    pub fn publish(&self, req: PublishRequest) -> Result<Arc<Entry>, PublishError> {
        let event = req.event.unwrap_or_else(|| "chat".to_owned());
        if event.is_empty() || event.len() > MAX_NAME_LEN || event.chars().any(char::is_control) {
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
        let ts_us = now_us();
        let entry = {
            let mut log = self.lock();
            let seq = log.head + 1;
            let message = Message {
                seq,
                room: self.name.0.clone(),
                event,
                from: req.from,
                body: req.body,
                ts_us,
            };
            // Encoded once, here; every transport and every client shares these bytes.
            let json = serde_json::to_string(&message).expect("a Message always serializes");
            let entry = Arc::new(Entry {
                seq,
                event: message.event.into_boxed_str(),
                from: message.from.into_boxed_str(),
                to: req.to.map(String::into_boxed_str),
                echo: req.echo.unwrap_or(true),
                text: Utf8Bytes::from(json),
            });
            log.entries.push_back(entry.clone());
            while log.entries.len() > self.history {
                log.entries.pop_front();
            }
            log.head = seq;
            entry
        };
        // Outside the lock: waking thousands of readers should not hold up the next publish.
        self.head.send_replace(entry.seq);
        Ok(entry)
    }

    /// What follows `since` for `client`: at most `limit` messages addressed to it, the number of
    /// seqs evicted before it could see them, or a reset when `since` is ahead of the log.
    pub fn read(&self, since: u64, client: Option<&str>, limit: usize) -> Read {
        let log = self.lock();
        if since > log.head {
            return Read {
                next: log.head,
                reset: true,
                ..Read::default()
            };
        }
        // Seqs are contiguous in the ring: the oldest kept is head - len + 1.
        let first = log.head + 1 - log.entries.len() as u64;
        let missed = (first - 1).saturating_sub(since);
        let cursor = since.max(first - 1);
        let mut read = Read {
            next: log.head,
            missed,
            ..Read::default()
        };
        let start = (cursor + 1 - first) as usize;
        for entry in log.entries.range(start..) {
            if read.entries.len() == limit {
                // Stop before this one; the reader comes back for the rest.
                read.next = entry.seq - 1;
                break;
            }
            if entry.is_for(client) {
                read.entries.push(entry.clone());
            }
        }
        read
    }
}

/// One client following a room from a cursor: reads what follows it and, when nothing does,
/// waits for the next publish. Long poll, SSE and WebSocket all follow the room this way.
///
/// The no-missed-wake-up rule, kept here and nowhere else: [`Follower::read`] marks the head as
/// seen (`borrow_and_update`) *before* it reads the log, so a publish that lands after the read
/// (or during it) leaves the `watch` receiver flagged changed, and the next wait returns at once.
/// Marking after the read would let such a publish be marked seen unread, and the client would
/// sleep on a message that is already there.
///
/// Cancellation: the only await is the `watch` receiver's `changed()`, which is cancel-safe, and
/// the cursor moves only in the synchronous read. So callers may `select!` [`Follower::next`] or
/// [`Follower::changed`] against shutdown, a deadline or a ping timer and drop it when another
/// branch wins; the next call picks up where this one stopped, with nothing lost or repeated.
#[derive(Debug)]
pub struct Follower {
    /// Holding the room keeps its `watch` sender alive, so `changed()` cannot fail.
    room: Arc<Room>,
    head: watch::Receiver<u64>,
    cursor: u64,
    client: Option<String>,
    limit: usize,
    /// The last read found nothing for this client, so the next one waits for a publish first.
    idle: bool,
}

impl Follower {
    /// Follows `room` for `client` (`None`: messages for everyone) from `since`, or from the
    /// current head when `None` ("from now on"); each read returns at most `limit` messages.
    pub fn new(room: Arc<Room>, since: Option<u64>, client: Option<String>, limit: usize) -> Self {
        // Subscribe before taking the head, so a publish in between is read, not missed.
        let head = room.subscribe();
        let cursor = since.unwrap_or_else(|| room.head());
        Follower {
            room,
            head,
            cursor,
            client,
            limit,
            idle: false,
        }
    }

    /// The last seq handled: what to resume from (a long poll's `Duplex-Next`).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Reads what follows the cursor now, without waiting, and moves the cursor past it
    /// (messages addressed to others move it too). Marks the head seen first: see the type's
    /// docs.
    pub fn read(&mut self) -> Read {
        self.head.borrow_and_update();
        let read = self
            .room
            .read(self.cursor, self.client.as_deref(), self.limit);
        self.cursor = read.next;
        self.idle = !read.has_news();
        read
    }

    /// Waits until something was published after the last [`Follower::read`] (at once if it
    /// already was). Cancel-safe.
    pub async fn changed(&mut self) {
        if self.head.changed().await.is_err() {
            // Unreachable: `self.room` owns the sender. Were it gone, nothing could ever be
            // published again, so wait for the caller's shutdown rather than spin.
            std::future::pending::<()>().await;
        }
    }

    /// The next read with something to tell the client (messages, a gap or a reset): at once
    /// when the last read had news (a client far behind gets `limit` at a time), otherwise after
    /// waiting for a publish addressed to it. Cancel-safe.
    pub async fn next(&mut self) -> Read {
        loop {
            if self.idle {
                self.changed().await;
            }
            let read = self.read();
            if read.has_news() {
                return read;
            }
        }
    }
}

/// Every room, created on first use, plus the count of messages published.
#[derive(Debug)]
pub struct Feed {
    history: usize,
    /// A std Mutex: looked up once per request or connection, held for a map lookup only.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    published: AtomicU64,
}

impl Feed {
    /// An empty feed whose rooms keep `history` messages each.
    pub fn new(history: usize) -> Self {
        Feed {
            history,
            rooms: Mutex::new(HashMap::new()),
            published: AtomicU64::new(0),
        }
    }

    /// The room called `name`, created empty if it does not exist yet.
    pub fn room(&self, name: &RoomName) -> Result<Arc<Room>, TooManyRooms> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(room) = rooms.get(name.as_str()) {
            return Ok(room.clone());
        }
        if rooms.len() >= MAX_ROOMS {
            return Err(TooManyRooms(MAX_ROOMS));
        }
        let room = Arc::new(Room::new(name.clone(), self.history));
        rooms.insert(name.0.clone(), room.clone());
        Ok(room)
    }

    /// Publishes into `room` (created if needed) and counts it.
    pub fn publish(
        &self,
        room: &RoomName,
        req: PublishRequest,
    ) -> Result<Arc<Entry>, PublishError> {
        let entry = self.room(room)?.publish(req)?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }

    /// Messages published since start, all rooms.
    pub fn published_total(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Number of rooms that exist.
    pub fn room_count(&self) -> usize {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(from: &str, body: &str) -> PublishRequest {
        PublishRequest {
            from: from.into(),
            body: body.into(),
            event: None,
            to: None,
            echo: None,
        }
    }

    fn room(history: usize) -> Room {
        Room::new(RoomName::parse("r").unwrap(), history)
    }

    #[test]
    fn seqs_start_at_one_and_read_returns_what_follows() {
        let r = room(10);
        for i in 0..3 {
            assert_eq!(r.publish(req("a", &i.to_string())).unwrap().seq, i + 1);
        }
        let read = r.read(1, None, 100);
        let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!((read.next, read.missed, read.reset), (3, 0, false));
        assert!(!r.read(3, None, 100).has_news());
    }

    #[test]
    fn eviction_is_reported_as_missed_with_exact_count() {
        let r = room(3);
        for _ in 0..10 {
            r.publish(req("a", "x")).unwrap();
        }
        let read = r.read(2, None, 100);
        // Kept: 8, 9, 10; lost after 2: 3..=7.
        assert_eq!(read.missed, 5);
        assert_eq!(read.entries.first().unwrap().seq, 8);
        assert_eq!(r.read(0, None, 100).missed, 7);
    }

    #[test]
    fn since_ahead_of_log_is_a_reset_to_head() {
        let r = room(3);
        r.publish(req("a", "x")).unwrap();
        let read = r.read(50, None, 100);
        assert!(read.reset && read.entries.is_empty());
        assert_eq!(read.next, 1);
    }

    #[test]
    fn limit_stops_cursor_before_the_rest() {
        let r = room(10);
        for _ in 0..5 {
            r.publish(req("a", "x")).unwrap();
        }
        let read = r.read(0, None, 2);
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.next, 2);
    }

    #[test]
    fn addressing_follows_the_three_broadcast_modes() {
        let r = room(10);
        r.publish(req("alice", "all")).unwrap();
        r.publish(PublishRequest {
            echo: Some(false),
            ..req("alice", "others")
        })
        .unwrap();
        r.publish(PublishRequest {
            to: Some("bob".into()),
            ..req("alice", "bob only")
        })
        .unwrap();
        let seqs = |c: Option<&str>| -> Vec<u64> {
            r.read(0, c, 100).entries.iter().map(|e| e.seq).collect()
        };
        assert_eq!(seqs(Some("alice")), [1]);
        assert_eq!(seqs(Some("bob")), [1, 2, 3]);
        assert_eq!(seqs(Some("carol")), [1, 2]);
        assert_eq!(seqs(None), [1, 2]);
        // Skipped messages still move the cursor.
        assert_eq!(r.read(0, Some("alice"), 100).next, 3);
    }

    #[test]
    fn message_json_is_the_wire_shape() {
        let r = room(10);
        let e = r.publish(req("alice", "hi")).unwrap();
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

    #[test]
    fn room_names_follow_the_rule() {
        assert!(RoomName::parse("lobby-1_A").is_ok());
        for bad in ["", "a b", "a/b", "é", &"x".repeat(65)] {
            assert!(RoomName::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rooms_past_the_limit_are_refused_but_existing_ones_still_work() {
        let feed = Feed::new(1);
        for i in 0..MAX_ROOMS {
            feed.room(&RoomName::parse(&format!("r{i}")).unwrap())
                .unwrap();
        }
        let extra = RoomName::parse("one-too-many").unwrap();
        assert_eq!(feed.room(&extra).unwrap_err(), TooManyRooms(MAX_ROOMS));
        assert!(feed.publish(&extra, req("a", "b")).is_err());
        let old = RoomName::parse("r7").unwrap();
        assert_eq!(feed.publish(&old, req("a", "b")).unwrap().seq, 1);
    }

    #[test]
    fn follower_waits_for_a_publish_for_it_and_loses_none_when_its_wait_is_dropped() {
        use futures_util::FutureExt;
        let r = Arc::new(room(10));
        r.publish(req("a", "before")).unwrap();
        // `None`: from now on, so the message already there is not news.
        let mut f = Follower::new(r.clone(), None, Some("bob".into()), 10);
        assert!(f.next().now_or_never().is_none());
        // A wait dropped half way (as `select!` does when another branch wins) loses nothing.
        r.publish(PublishRequest {
            to: Some("carol".into()),
            ..req("a", "not for bob")
        })
        .unwrap();
        assert!(f.next().now_or_never().is_none());
        assert_eq!(f.cursor(), 2);
        r.publish(req("a", "for everyone")).unwrap();
        let read = f
            .next()
            .now_or_never()
            .expect("a publish wakes the follower");
        let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq).collect();
        assert_eq!((seqs, f.cursor()), (vec![3], 3));
        assert!(f.next().now_or_never().is_none());
    }

    #[test]
    fn follower_hands_a_far_behind_client_its_backlog_limit_at_a_time() {
        use futures_util::FutureExt;
        let r = Arc::new(room(3));
        for _ in 0..5 {
            r.publish(req("a", "x")).unwrap();
        }
        let mut f = Follower::new(r, Some(0), None, 2);
        let first = f.next().now_or_never().unwrap();
        assert_eq!((first.missed, first.entries.len(), first.next), (2, 2, 4));
        let second = f.next().now_or_never().unwrap();
        assert_eq!(
            (second.missed, second.entries.len(), second.next),
            (0, 1, 5)
        );
        assert!(f.next().now_or_never().is_none());
    }

    #[test]
    fn event_with_newline_is_refused() {
        let r = room(10);
        let err = r
            .publish(PublishRequest {
                event: Some("chat\ndata: x".into()),
                ..req("a", "b")
            })
            .unwrap_err();
        assert!(matches!(err, PublishError::BadEvent(_)));
        assert_eq!(r.head(), 0);
    }
}
