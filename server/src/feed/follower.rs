//! [`Follower`]: one client following a room from a cursor, the one place that reads a room's
//! log and waits for it. Long poll, SSE and WebSocket all follow a room this way, so none of
//! them can get the read-then-wait order wrong.

use std::sync::Arc;

use tokio::sync::watch;

use super::Room;
use super::entry::{Cursor, Limit, Read, Reader};

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
    /// Holding the room keeps its log (and the `watch` sender inside it) alive, so `changed()`
    /// cannot fail.
    room: Arc<Room>,
    head: watch::Receiver<u64>,
    cursor: u64,
    /// The epoch `cursor` belongs to. A log in a shared store can begin a new epoch while a
    /// client follows it (the store lost its data); the cursor then means nothing there.
    epoch: super::Epoch,
    client: Option<String>,
    /// Reads every message, whoever it is for: the room's fan-out, which routes each itself.
    everything: bool,
    limit: Limit,
    /// The last read found nothing for this client, so the next one waits for a publish first.
    idle: bool,
}

impl Follower {
    /// Follows `room` for `client` (`None`: messages for everyone) from `since`, or from the
    /// current head when `None` ("from now on"); each read returns at most `limit`. A cursor
    /// from another epoch of the room starts with a reset (see [`Room::position`]).
    pub fn new(
        room: Arc<Room>,
        since: Option<Cursor>,
        client: Option<String>,
        limit: Limit,
    ) -> Self {
        // Subscribe before taking the head, so a publish in between is read, not missed.
        let head = room.subscribe();
        let epoch = room.epoch();
        let cursor = since.map_or_else(|| room.head(), |c| room.position(c));
        Follower {
            room,
            head,
            cursor,
            epoch,
            client,
            everything: false,
            limit,
            idle: false,
        }
    }

    /// Follows `room` from `since` reading every message, whoever it is for: how a shard of the
    /// room's fan-out (`feed::fanout`) follows it.
    pub(super) fn for_fanout(room: Arc<Room>, since: Cursor, limit: Limit) -> Self {
        Follower {
            everything: true,
            ..Follower::new(room, Some(since), None, limit)
        }
    }

    /// [`Follower::new`], once the room's log has confirmed a cursor ahead of its head (see
    /// [`Room::locate`]): how a client's follower starts.
    pub async fn start(
        room: Arc<Room>,
        since: Option<Cursor>,
        client: Option<String>,
        limit: Limit,
    ) -> Self {
        if let Some(cursor) = since {
            room.locate(cursor).await;
        }
        Follower::new(room, since, client, limit)
    }

    /// The room's epoch, which [`Follower::cursor`] belongs to.
    pub fn epoch(&self) -> super::Epoch {
        self.epoch
    }

    /// The room it follows.
    pub fn room(&self) -> &Arc<Room> {
        &self.room
    }

    /// The client it follows the room for (`None`: the messages for everyone).
    pub fn client(&self) -> Option<&str> {
        self.client.as_deref()
    }

    /// The last seq handled: what to resume from (a long poll's `Duplex-Next`).
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Moves the cursor to `seq` (of the same epoch): where the room's fan-out let go of a
    /// connection that it was writing to (see `feed::fanout`); the next read starts there.
    pub fn seek(&mut self, seq: u64) {
        self.cursor = seq;
        self.idle = false;
    }

    /// Reads what follows the cursor now, without waiting, and moves the cursor past it
    /// (messages addressed to others move it too). Marks the head seen first: see the type's
    /// docs.
    pub fn read(&mut self) -> Read {
        self.head.borrow_and_update();
        let client = if self.everything {
            Reader::Fanout
        } else {
            Reader::of(self.client.as_deref())
        };
        let mut read = self.room.read(self.cursor, client, self.limit);
        if let Some(epoch) = read.epoch
            && epoch != self.epoch
        {
            // The log began a new epoch since the cursor was taken. The read's epoch comes with
            // its entries, so this cannot be raced: read again from past every head, which
            // answers a reset at the new head (0 means "nothing seen" in any epoch: kept).
            if self.cursor > 0 {
                read = self.room.read(u64::MAX, client, self.limit);
            }
            self.epoch = epoch;
        }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::tests::{publish, req, room};
    use futures_util::FutureExt;
    use wire::PublishRequest;

    fn limit(messages: usize) -> Limit {
        Limit {
            messages,
            bytes: usize::MAX,
        }
    }

    #[test]
    fn follower_waits_for_a_publish_for_it_and_loses_none_when_its_wait_is_dropped() {
        let r = Arc::new(room(10));
        publish(&r, req("a", "before"));
        // `None`: from now on, so the message already there is not news.
        let mut f = Follower::new(r.clone(), None, Some("bob".into()), limit(10));
        assert!(f.next().now_or_never().is_none());
        // A wait dropped half way (as `select!` does when another branch wins) loses nothing.
        publish(
            &r,
            PublishRequest {
                to: Some("carol".into()),
                ..req("a", "not for bob")
            },
        );
        assert!(f.next().now_or_never().is_none());
        assert_eq!(f.cursor(), 2);
        publish(&r, req("a", "for everyone"));
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
        let r = Arc::new(room(3));
        for _ in 0..5 {
            publish(&r, req("a", "x"));
        }
        let mut f = Follower::new(
            r,
            Some(Cursor {
                epoch: None,
                seq: 0,
            }),
            None,
            limit(2),
        );
        let first = f.next().now_or_never().unwrap();
        assert_eq!((first.missed, first.entries.len(), first.next), (2, 2, 4));
        let second = f.next().now_or_never().unwrap();
        assert_eq!(
            (second.missed, second.entries.len(), second.next),
            (0, 1, 5)
        );
        assert!(f.next().now_or_never().is_none());
    }
}
