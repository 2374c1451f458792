//! The chat feed: rooms, each an append-only log with sequence numbers from 1 and a bounded
//! history. This module owns the room table, ordering, retention, addressing (who a message is
//! for) and wake-ups; it knows nothing about HTTP. Every transport reads a room the same way: it
//! keeps a cursor (the last seq it has handled) and asks for what follows, through a
//! [`Follower`] when it holds the client open.
//!
//! One concept per submodule: `entry` (names, the encoded-once [`Entry`], the [`Read`] answer),
//! `log` (the [`RoomLog`] seam and the [`LogStore`] that opens a room's log), `memory` (today's
//! in-memory ring, [`MemoryLog`]), `follower` (reading and waiting, with the no-missed-wake-up
//! rule). How a publish reaches each transport is told in `docs/ARCHITECTURE.md`.

mod entry;
mod follower;
mod log;
mod memory;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use wire::PublishRequest;

pub use entry::{
    BadRoomName, Draft, Entry, MAX_NAME_LEN, PublishError, Read, RoomName, TooManyRooms, now_us,
    valid_client_id,
};
pub use follower::Follower;
pub use log::{Appended, LogStore, RoomLog};
pub use memory::{MemoryLog, MemoryStore};

/// Rooms are created on first use and kept; past this many a new name is refused, so a client
/// inventing names cannot grow the server's memory without bound (rooms × history is the bound).
pub const MAX_ROOMS: usize = 10_000;

/// One room: its name and its log.
#[derive(Debug)]
pub struct Room {
    name: RoomName,
    log: Box<dyn RoomLog>,
}

impl Room {
    /// A room whose messages live in `log`.
    pub fn new(name: RoomName, log: Box<dyn RoomLog>) -> Self {
        Room { name, log }
    }

    /// The room's name.
    pub fn name(&self) -> &RoomName {
        &self.name
    }

    /// The seq of the newest message (0 when none yet).
    pub fn head(&self) -> u64 {
        self.log.head()
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

    /// Checks the request, appends it with the next seq and wakes every waiting reader.
    pub async fn publish(&self, req: PublishRequest) -> Result<Arc<Entry>, PublishError> {
        let draft = Draft::check(req)?;
        self.log.append(draft).await
    }

    /// What follows `since` for `client`: see [`RoomLog::read`].
    pub fn read(&self, since: u64, client: Option<&str>, limit: usize) -> Read {
        self.log.read(since, client, limit)
    }
}

/// Every room, created on first use, plus the count of messages published.
#[derive(Debug)]
pub struct Feed {
    store: Box<dyn LogStore>,
    /// A std Mutex: looked up once per request or connection, held for a map lookup only.
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    published: AtomicU64,
}

impl Feed {
    /// An empty feed whose rooms keep `history` messages each, in memory.
    pub fn new(history: usize) -> Self {
        Feed::with_store(Box::new(MemoryStore { history }))
    }

    /// An empty feed whose rooms' logs come from `store`.
    pub fn with_store(store: Box<dyn LogStore>) -> Self {
        Feed {
            store,
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
        let room = Arc::new(Room::new(name.clone(), self.store.open(name)));
        rooms.insert(name.as_str().to_owned(), room.clone());
        Ok(room)
    }

    /// Publishes into `room` (created if needed) and counts it.
    pub async fn publish(
        &self,
        room: &RoomName,
        req: PublishRequest,
    ) -> Result<Arc<Entry>, PublishError> {
        let entry = self.room(room)?.publish(req).await?;
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
        Room::new(name.clone(), Box::new(MemoryLog::new(name, history)))
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
    fn rooms_past_the_limit_are_refused_but_existing_ones_still_work() {
        let feed = Feed::new(1);
        for i in 0..MAX_ROOMS {
            feed.room(&RoomName::parse(&format!("r{i}")).unwrap())
                .unwrap();
        }
        let extra = RoomName::parse("one-too-many").unwrap();
        assert_eq!(feed.room(&extra).unwrap_err(), TooManyRooms(MAX_ROOMS));
        assert!(
            feed.publish(&extra, req("a", "b"))
                .now_or_never()
                .unwrap()
                .is_err()
        );
        let old = RoomName::parse("r7").unwrap();
        let entry = feed.publish(&old, req("a", "b")).now_or_never().unwrap();
        assert_eq!(entry.unwrap().seq, 1);
    }
}
