//! The chat feed: rooms, each an append-only log with sequence numbers from 1 and a bounded
//! history. This module owns the room table, ordering, retention, addressing (who a message is
//! for) and wake-ups; it knows nothing about HTTP. Every transport reads a room the same way: it
//! keeps a cursor (the last seq it has handled) and asks for what follows, through a
//! [`Follower`] when it holds the client open.
//!
//! One concept per submodule: `entry` (names, the encoded-once [`Entry`], the [`Read`] answer),
//! `log` (the [`RoomLog`] seam and the [`LogStore`] that opens a room's log), `memory` (today's
//! in-memory ring, [`MemoryLog`]), `redis` (logs in Redis streams shared by several nodes,
//! [`RedisLog`]), `follower` (reading and waiting, with the no-missed-wake-up
//! rule). How a publish reaches each transport is told in `docs/ARCHITECTURE.md`.

mod entry;
mod fanout;
mod follower;
mod log;
mod memory;
mod redis;

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use wire::PublishRequest;

pub use self::redis::{BackplaneError, RedisLog, RedisStore};
pub use entry::{
    BadRoomName, Cursor, Draft, Entry, Epoch, Limit, MAX_NAME_LEN, PublishError, Read, Reader,
    RoomName, TooManyRooms, is_hidden, now_us, valid_client_id,
};
pub use fanout::{Attachment, BATCH, Offer, Subscriber};
pub use follower::Follower;

/// Event names only the server publishes: the teacher's `flash`, and `experiment`, which
/// starts the live page's guided experiment. A client's publish with one is refused, so a
/// student cannot fake either.
pub const RESERVED_EVENTS: [&str; 2] = ["flash", "experiment"];
pub use log::{Appended, LogStore, RoomLog};
pub use memory::{Budget, MemoryLog, MemoryStore};

/// Rooms that may exist at once. A room nobody follows and nobody wrote to for
/// [`RoomRules::idle`] expires, so the table is not filled for good by names tried once.
pub const MAX_ROOMS: usize = 10_000;
/// Rooms one client address may have created among those that exist: a tenth of the table, so
/// one address cannot fill it and an existing room (`lobby`) is never refused.
pub const MAX_ROOMS_PER_ADDRESS: usize = MAX_ROOMS / 10;
/// How long a room nobody follows is kept after its last message.
pub const ROOM_IDLE: Duration = Duration::from_secs(10 * 60);

/// The room table's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRules {
    /// Rooms that may exist at once.
    pub max_rooms: usize,
    /// Rooms one address may have created among those that exist.
    pub per_address: usize,
    /// A room nobody follows expires this long after its last message.
    pub idle: Duration,
    /// Count loopback creators against `per_address` too. Off by default, as for connections:
    /// the loadgen's clients all come from 127.0.0.x, and a process on this machine could stop
    /// the server anyway.
    pub limit_loopback: bool,
}

impl Default for RoomRules {
    fn default() -> Self {
        RoomRules {
            max_rooms: MAX_ROOMS,
            per_address: MAX_ROOMS_PER_ADDRESS,
            idle: ROOM_IDLE,
            limit_loopback: false,
        }
    }
}

/// One room: its name, its log, and what expiry needs to know.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    log: Arc<dyn RoomLog>,
    /// Who made it, so their quota is given back when it expires.
    creator: Option<IpAddr>,
    /// Last publish (or creation), for expiry. A std Mutex: set once per publish.
    active: Mutex<Instant>,
    /// The connections the publishing side writes to itself (see `fanout`).
    fanout: fanout::Fanout,
}

impl Room {
    /// A room whose messages live in `log`.
    pub fn new(name: RoomName, log: Arc<dyn RoomLog>) -> Self {
        Room {
            name,
            log,
            creator: None,
            active: Mutex::new(Instant::now()),
            fanout: fanout::Fanout::default(),
        }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// The seq of the newest message (0 when none yet).
    pub fn head(&self) -> u64 {
        self.log.head()
    }

    /// This incarnation of the room's log.
    pub fn epoch(&self) -> Epoch {
        self.log.epoch()
    }

    /// Number of messages currently kept in history.
    pub fn retained(&self) -> usize {
        self.log.retained()
    }

    /// A receiver that is flagged changed on every publish. To follow the room, use a
    /// [`Follower`], which reads and waits in the order that misses no wake-up.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.log.watch()
    }

    /// Where a client's cursor points in this log: its seq when it names this epoch (or none),
    /// otherwise past every log's head, so the read answers a reset. A seq of 0 is the same
    /// place in every epoch (nothing seen yet), so it is kept as is.
    pub fn position(&self, cursor: Cursor) -> u64 {
        match cursor.epoch {
            Some(epoch) if epoch != self.epoch() && cursor.seq > 0 => u64::MAX,
            _ => cursor.seq,
        }
    }

    /// Where `cursor` points, as [`Room::position`], once the log has confirmed a seq ahead of
    /// its head (see [`RoomLog::confirm`]): what a client's first read from its cursor starts
    /// from.
    pub async fn locate(&self, cursor: Cursor) -> u64 {
        let seq = self.position(cursor);
        if seq != u64::MAX && seq > self.head() {
            self.log.confirm(seq).await;
        }
        seq
    }

    /// Checks the request ([`RESERVED_EVENTS`] are the server's), appends it with the next seq and
    /// wakes every waiting reader.
    pub async fn publish(&self, req: PublishRequest) -> Result<Arc<Entry>, PublishError> {
        let draft = Draft::check(req)?;
        if RESERVED_EVENTS.contains(&draft.event.as_str()) {
            return Err(PublishError::ReservedEvent(draft.event));
        }
        self.append(draft).await
    }

    /// Appends a checked draft: the server's own messages (the teacher's flash) come this way.
    pub async fn append(&self, draft: Draft) -> Result<Arc<Entry>, PublishError> {
        *self.active.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        self.log.append(draft).await
    }

    /// What follows `since` as `reader` sees it: see [`RoomLog::read`].
    pub fn read(&self, since: u64, reader: Reader<'_>, limit: Limit) -> Read {
        self.log.read(since, reader, limit)
    }

    fn idle_for(&self) -> Duration {
        self.active
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .elapsed()
    }
}

/// The room table and who created what.
#[derive(Debug, Default)]
struct Table {
    rooms: HashMap<String, Arc<Room>>,
    created_by: HashMap<IpAddr, usize>,
}

/// Every room, created on first use, plus the count of messages published.
#[derive(Debug)]
pub struct Feed {
    store: Box<dyn LogStore>,
    rules: RoomRules,
    /// A std Mutex: looked up once per request or connection, held for a map lookup (and, when
    /// the table is full, one pass to expire idle rooms).
    table: Mutex<Table>,
    published: AtomicU64,
}

impl Feed {
    /// An empty feed whose rooms keep `history` messages each, in memory, with no byte budget
    /// and the default room rules.
    pub fn new(history: usize) -> Self {
        Feed::with_store(
            Box::new(MemoryStore::new(history, usize::MAX)),
            RoomRules::default(),
        )
    }

    /// An empty feed whose rooms' logs come from `store`.
    pub fn with_store(store: Box<dyn LogStore>, rules: RoomRules) -> Self {
        Feed {
            store,
            rules,
            table: Mutex::new(Table::default()),
            published: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The room called `name` if it exists; reading a room creates nothing.
    pub fn find(&self, name: &RoomName) -> Option<Arc<Room>> {
        self.lock().rooms.get(name.as_str()).cloned()
    }

    /// The room called `name` for a reader at `reader`: as [`Feed::find`], except that with a
    /// shared store (a backplane) a room this node has not opened yet may exist there, so it is
    /// opened (on behalf of `reader`) and read like any other.
    pub fn find_for(&self, name: &RoomName, reader: Option<IpAddr>) -> Option<Arc<Room>> {
        match self.find(name) {
            Some(room) => Some(room),
            None if self.store.is_shared() => self.room(name, reader).ok(),
            None => None,
        }
    }

    /// The room called `name`, created empty (on behalf of `creator`) if it does not exist yet.
    /// An existing room is always returned; a new one is refused when `creator` has made its
    /// share of the rooms, or when the table is full of rooms still in use.
    pub fn room(
        &self,
        name: &RoomName,
        creator: Option<IpAddr>,
    ) -> Result<Arc<Room>, TooManyRooms> {
        let mut table = self.lock();
        if let Some(room) = table.rooms.get(name.as_str()) {
            return Ok(room.clone());
        }
        let creator = creator.filter(|ip| self.rules.limit_loopback || !ip.is_loopback());
        let quota_used =
            |t: &Table| creator.map_or(0, |ip| t.created_by.get(&ip).copied().unwrap_or(0));
        if quota_used(&table) >= self.rules.per_address || table.rooms.len() >= self.rules.max_rooms
        {
            self.expire(&mut table);
        }
        if quota_used(&table) >= self.rules.per_address {
            return Err(TooManyRooms::PerAddress(self.rules.per_address));
        }
        if table.rooms.len() >= self.rules.max_rooms {
            return Err(TooManyRooms::Total(self.rules.max_rooms));
        }
        let room = Arc::new(Room {
            creator,
            ..Room::new(name.clone(), self.store.open(name))
        });
        table.rooms.insert(name.as_str().to_owned(), room.clone());
        if let Some(ip) = creator {
            *table.created_by.entry(ip).or_default() += 1;
        }
        Ok(room)
    }

    /// Drops the rooms nobody follows (only the table holds them) whose last message is older
    /// than the idle time. Called when the table or a quota is full, and periodically.
    pub fn expire_idle(&self) -> usize {
        self.expire(&mut self.lock())
    }

    fn expire(&self, table: &mut Table) -> usize {
        let idle = self.rules.idle;
        let expired: Vec<String> = table
            .rooms
            .iter()
            .filter(|(_, room)| Arc::strong_count(room) == 1 && room.idle_for() >= idle)
            .map(|(name, _)| name.clone())
            .collect();
        for name in &expired {
            if let Some(room) = table.rooms.remove(name)
                && let Some(ip) = room.creator
                && let Some(n) = table.created_by.get_mut(&ip)
            {
                *n -= 1;
                if *n == 0 {
                    table.created_by.remove(&ip);
                }
            }
        }
        expired.len()
    }

    /// Publishes into `room` (created on behalf of `creator` if needed) and counts it.
    pub async fn publish(
        &self,
        room: &RoomName,
        creator: Option<IpAddr>,
        req: PublishRequest,
    ) -> Result<Arc<Entry>, PublishError> {
        let entry = self.room(room, creator)?.publish(req).await?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }

    /// Appends the server's own message (a flash) into `room`, created if needed, and counts it.
    pub async fn publish_draft(
        &self,
        room: &RoomName,
        draft: Draft,
    ) -> Result<Arc<Entry>, PublishError> {
        let entry = self.room(room, None)?.append(draft).await?;
        self.published.fetch_add(1, Ordering::Relaxed);
        Ok(entry)
    }

    /// Messages published since start, all rooms.
    pub fn published_total(&self) -> u64 {
        self.published.load(Ordering::Relaxed)
    }

    /// Number of rooms that exist.
    pub fn room_count(&self) -> usize {
        self.lock().rooms.len()
    }

    /// Bytes of history kept, all rooms, when the store knows.
    pub fn bytes_kept(&self) -> Option<usize> {
        self.store.bytes_kept()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use futures_util::FutureExt;

    pub(crate) fn req(from: &str, body: &str) -> PublishRequest {
        PublishRequest {
            from: from.into(),
            body: body.into(),
            event: None,
            to: None,
            echo: None,
        }
    }

    pub(crate) fn room(history: usize) -> Room {
        let name = RoomName::parse("r").unwrap();
        Room::new(
            name.clone(),
            MemoryStore::new(history, usize::MAX).open_memory(&name),
        )
    }

    fn name(n: &str) -> RoomName {
        RoomName::parse(n).unwrap()
    }

    /// Publishes through the seam; the memory log answers at once.
    pub(crate) fn publish(room: &Room, req: PublishRequest) -> Arc<Entry> {
        room.publish(req)
            .now_or_never()
            .expect("the memory log appends at once")
            .unwrap()
    }

    #[test]
    fn a_refused_publish_takes_no_seq() {
        let r = room(10);
        let err = r
            .publish(PublishRequest {
                event: Some("chat\ndata: x".into()),
                ..req("a", "b")
            })
            .now_or_never()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, PublishError::BadEvent(_)));
        assert_eq!(r.head(), 0);
        assert_eq!(publish(&r, req("a", "b")).seq, 1);
    }

    #[test]
    fn flash_is_reserved_for_the_server() {
        let r = room(10);
        let err = r
            .publish(PublishRequest {
                event: Some("flash".into()),
                ..req("a", "b")
            })
            .now_or_never()
            .unwrap()
            .unwrap_err();
        assert!(matches!(err, PublishError::ReservedEvent(_)));
    }

    #[test]
    fn a_cursor_from_another_epoch_is_a_reset_unless_it_is_zero() {
        let r = room(10);
        let here = r.epoch();
        let other = Epoch(here.0 ^ 1);
        let at = |epoch, seq| r.position(Cursor { epoch, seq });
        assert_eq!(at(Some(here), 5), 5);
        assert_eq!(at(None, 5), 5);
        assert_eq!(at(Some(other), 5), u64::MAX);
        assert_eq!(at(Some(other), 0), 0);
    }

    #[test]
    fn reading_creates_nothing_and_idle_rooms_expire() {
        let feed = Feed::with_store(
            Box::new(MemoryStore::new(10, usize::MAX)),
            RoomRules {
                max_rooms: 3,
                per_address: 3,
                idle: Duration::ZERO,
                limit_loopback: false,
            },
        );
        assert!(feed.find(&name("nope")).is_none());
        assert_eq!(feed.room_count(), 0);
        let held = feed.room(&name("held"), None).unwrap();
        for n in ["a", "b"] {
            feed.room(&name(n), None).unwrap();
        }
        // Full, but "a" and "b" are idle and unheld: they make way; "held" stays.
        feed.room(&name("c"), None).unwrap();
        assert!(feed.find(&name("held")).is_some());
        assert_eq!(feed.room_count(), 2);
        drop(held);
        assert_eq!(feed.expire_idle(), 2);
    }

    #[test]
    fn one_address_cannot_fill_the_table_and_existing_rooms_are_never_refused() {
        let feed = Feed::with_store(
            Box::new(MemoryStore::new(10, usize::MAX)),
            RoomRules {
                max_rooms: 4,
                per_address: 2,
                idle: Duration::from_secs(3600),
                limit_loopback: false,
            },
        );
        let mallory = Some(IpAddr::from([10, 0, 0, 66]));
        let alice = Some(IpAddr::from([10, 0, 0, 1]));
        feed.room(&name("m1"), mallory).unwrap();
        feed.room(&name("m2"), mallory).unwrap();
        assert_eq!(
            feed.room(&name("m3"), mallory).unwrap_err(),
            TooManyRooms::PerAddress(2)
        );
        feed.room(&name("lobby"), alice).unwrap();
        feed.room(&name("m1"), mallory).unwrap();
        feed.room(&name("lobby"), mallory).unwrap();
        // This machine (the loadgen on 127.0.0.x) has no share, only the table's limit.
        let local = Some(IpAddr::from([127, 0, 0, 2]));
        feed.room(&name("l1"), local).unwrap();
        assert_eq!(
            feed.room(&name("l2"), local).unwrap_err(),
            TooManyRooms::Total(4),
            "a loopback creator is refused only when the table is full"
        );
    }

    #[test]
    fn rooms_past_the_limit_are_refused_but_existing_ones_still_work() {
        let feed = Feed::new(1);
        for i in 0..MAX_ROOMS {
            // Each from its own address, and just created: nothing is idle enough to expire.
            let ip = IpAddr::from((i as u32 + 1).to_be_bytes());
            feed.room(&RoomName::parse(&format!("r{i}")).unwrap(), Some(ip))
                .unwrap();
        }
        let extra = RoomName::parse("one-too-many").unwrap();
        assert_eq!(
            feed.room(&extra, None).unwrap_err(),
            TooManyRooms::Total(MAX_ROOMS)
        );
        assert!(
            feed.publish(&extra, None, req("a", "b"))
                .now_or_never()
                .unwrap()
                .is_err()
        );
        let old = RoomName::parse("r7").unwrap();
        let entry = feed
            .publish(&old, None, req("a", "b"))
            .now_or_never()
            .unwrap();
        assert_eq!(entry.unwrap().seq, 1);
    }
}
