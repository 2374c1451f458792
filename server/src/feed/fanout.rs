//! The room's fan-out: the publishing side writes each message to the sockets of the subscribers
//! that are caught up, itself, as nginx does, instead of waking one task per subscriber to read
//! the log and write. A WebSocket or an SSE stream that has read everything so far *attaches* its
//! connection (a [`Subscriber`]) at its cursor; from then on a shard of the room's fan-out hands
//! it each new message with [`Subscriber::offer`], which writes the frame to the socket without
//! waiting. Whenever that cannot be done at once (the socket's buffer is full, the connection is
//! finishing a write of its own, the room's log skipped ahead or began a new epoch) the fan-out
//! lets go of the subscriber with its cursor ([`Subscriber::detached`]) and the connection's own
//! task carries on from there through its [`Follower`](super::Follower), as every transport did
//! before, and attaches again once it has caught up. So the fast path is an optimisation with
//! one way out, and the log stays the one source of what a client gets: nothing is lost or sent
//! twice at the switch, because a message is written either by the fan-out (its seq after the
//! member's cursor) or by the connection's task (read from the cursor the fan-out handed back),
//! never both.
//!
//! Why shards: one delivery is one write (a syscall of ~10 us on loopback), so a broadcast to a
//! thousand sockets is ~10 ms of one core. The room's subscribers are spread over one shard per
//! runtime worker, each a task following the room, so both cores write at once. A shard runs only
//! while it has members and holds the room only then (an unfollowed room can expire).
//!
//! Why a slab behind a std `Mutex`: joining and leaving are O(1) by key, and the lock is held in
//! slices of [`SLICE`] members while writing, never across an `await`, so a connection joining
//! or leaving waits for at most one slice of writes (well under a millisecond), never a whole
//! broadcast.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use slab::Slab;
use tokio::sync::Notify;

use super::entry::{Cursor, Entry, Epoch, Limit};
use super::{Follower, Room};

/// Members written to per turn of a shard's lock: bounds how long a joining or leaving
/// connection waits for the lock (64 writes of ~10 us).
const SLICE: usize = 64;

/// Messages a shard reads per batch. A shard that falls behind (a burst, a slow machine) hands
/// each member up to this many messages in one [`Subscriber::offer`], which is one vectored write:
/// the busier the room, the fewer writes per delivery.
pub const BATCH: Limit = Limit {
    messages: 32,
    bytes: 256 * 1024,
};

/// A connection the fan-out writes to: a WebSocket or an SSE stream whose socket it shares with
/// the connection's own task.
pub trait Subscriber: Send + Sync {
    /// The client id it follows the room for (`None`: the messages for everyone).
    fn client(&self) -> Option<&str>;

    /// Writes `entries` (oldest first, all addressed to this client) to the socket now, without
    /// waiting: the whole frames of a prefix of them, the last of which may be only partly
    /// written, in which case the subscriber keeps the rest and finishes it itself.
    fn offer(&self, entries: &[Arc<Entry>]) -> Offer;

    /// The fan-out let go of this subscriber: its connection's task reads the room from `cursor`
    /// (the last seq the fan-out wrote or passed over for it) and may attach again later.
    fn detached(&self, cursor: u64);
}

/// What [`Subscriber::offer`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Offer {
    /// Every entry was written whole: the subscriber stays with the fan-out.
    Sent,
    /// Only the first `taken` entries are the subscriber's now (written, the last perhaps in
    /// part, which it finishes itself); the rest were not written. The fan-out lets go.
    Stopped {
        /// How many of the offered entries the subscriber took.
        taken: usize,
    },
}

/// One attached connection.
struct Member {
    subscriber: Arc<dyn Subscriber>,
    /// The last seq written to it or passed over for it.
    cursor: u64,
    /// Tells apart members that reuse a slab key, so a stale [`Attachment`] removes nothing.
    id: u64,
    /// Attached since the shard began its current batch: checked against the shard's position
    /// before the next (see [`ShardState::position`]).
    fresh: bool,
}

#[derive(Default)]
struct ShardState {
    members: Slab<Member>,
    /// Keys of the fresh members.
    joining: Vec<usize>,
    /// The last seq this shard has taken on to hand out (set as a batch starts): every message
    /// up to here has been or is being offered to every member that was not fresh. A member
    /// joining with a cursor behind it missed some, and is let go at once to read them itself
    /// (waiting for the next batch would hold them back until the room's next publish).
    position: u64,
    /// Whether the shard's task runs.
    running: bool,
}

#[derive(Default)]
struct Shard {
    state: Mutex<ShardState>,
    /// Woken when the last member leaves, so an idle shard's task ends (and lets go of the room).
    emptied: Notify,
}

impl Shard {
    fn lock(&self) -> MutexGuard<'_, ShardState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A room's fan-out: its shards.
pub struct Fanout {
    shards: Box<[Shard]>,
    /// Where the next member goes (round robin).
    next: AtomicUsize,
    /// Member ids.
    ids: AtomicU64,
}

impl std::fmt::Debug for Fanout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fanout")
            .field("shards", &self.shards.len())
            .finish()
    }
}

impl Default for Fanout {
    fn default() -> Self {
        // One shard per core the runtime may use (tokio's multi-thread default).
        Fanout::with_shards(std::thread::available_parallelism().map_or(1, |n| n.get()))
    }
}

impl Fanout {
    fn with_shards(shards: usize) -> Self {
        Fanout {
            shards: (0..shards.max(1)).map(|_| Shard::default()).collect(),
            next: AtomicUsize::new(0),
            ids: AtomicU64::new(1),
        }
    }
}

/// A connection's membership of a room's fan-out; dropping it leaves (a no-op once the fan-out
/// has let go of it).
#[must_use = "dropping the attachment detaches at once"]
pub struct Attachment {
    room: Arc<Room>,
    shard: usize,
    key: usize,
    id: u64,
}

impl Drop for Attachment {
    fn drop(&mut self) {
        let shard = &self.room.fanout.shards[self.shard];
        let mut state = shard.lock();
        if state.members.get(self.key).is_some_and(|m| m.id == self.id) {
            let member = state.members.remove(self.key);
            if member.fresh {
                state.joining.retain(|&k| k != self.key);
            }
            if state.members.is_empty() {
                shard.emptied.notify_one();
            }
        }
    }
}

impl Room {
    /// Hands `subscriber`, which has handled everything up to `cursor` of `epoch`, to the room's
    /// fan-out: from now on it is offered every message after `cursor` until the fan-out lets go
    /// of it ([`Subscriber::detached`]) or the attachment is dropped. A cursor of an epoch the
    /// log has left is let go at once: its seq means nothing in the new one, and the
    /// connection's next read tells the client of the reset.
    pub fn attach(
        self: &Arc<Self>,
        subscriber: Arc<dyn Subscriber>,
        epoch: Epoch,
        cursor: u64,
    ) -> Attachment {
        let fanout = &self.fanout;
        let index = fanout.next.fetch_add(1, Ordering::Relaxed) % fanout.shards.len();
        let id = fanout.ids.fetch_add(1, Ordering::Relaxed);
        let mut state = fanout.shards[index].lock();
        if epoch != self.epoch() || (state.running && cursor < state.position) {
            // The shard has handed out (or is handing out) messages after `cursor` without
            // this member: it reads them itself. The attachment holds no member (ids start at 1).
            subscriber.detached(cursor);
            return Attachment {
                room: self.clone(),
                shard: index,
                key: usize::MAX,
                id: 0,
            };
        }
        let key = state.members.insert(Member {
            subscriber,
            cursor,
            id,
            fresh: true,
        });
        state.joining.push(key);
        if !state.running {
            // The shard starts where its first member is: nothing before was its to hand out.
            state.running = true;
            state.position = cursor;
            tokio::spawn(run_shard(self.clone(), index, epoch, cursor));
        }
        Attachment {
            room: self.clone(),
            shard: index,
            key,
            id,
        }
    }

    /// Connections attached to the room's fan-out now.
    pub fn attached(&self) -> usize {
        self.fanout
            .shards
            .iter()
            .map(|s| s.lock().members.len())
            .sum()
    }
}

/// Lets go of `member` (removed from the table by the caller).
fn let_go(member: Member) {
    member.subscriber.detached(member.cursor);
}

/// One shard's task: follows the room from `from` and offers each batch to its members, until
/// it has none.
async fn run_shard(room: Arc<Room>, index: usize, epoch: Epoch, from: u64) {
    let shard = &room.fanout.shards[index];
    // The first member's epoch, not the room's now: were the log to begin a new one since, the
    // shard's first read is a reset, which lets every member go.
    let since = Cursor {
        epoch: Some(epoch),
        seq: from,
    };
    let mut follower = Follower::for_fanout(room.clone(), since, BATCH);
    let epoch = follower.epoch();
    loop {
        let read = tokio::select! {
            read = follower.next() => read,
            () = shard.emptied.notified() => {
                let mut state = shard.lock();
                if state.members.is_empty() {
                    state.running = false;
                    return;
                }
                continue;
            }
        };
        // Start the batch: settle who joined since the last one.
        {
            let mut state = shard.lock();
            let state = &mut *state;
            let broken = read.reset || read.missed > 0 || follower.epoch() != epoch;
            if broken {
                // The log skipped ahead or began anew: every member reads for itself (a gap or
                // a reset is news its own task reports), and the shard stops.
                for member in state.members.drain() {
                    let_go(member);
                }
                state.joining.clear();
                state.running = false;
                return;
            }
            for key in std::mem::take(&mut state.joining) {
                let member = &mut state.members[key];
                member.fresh = false;
                if member.cursor < state.position {
                    let_go(state.members.remove(key));
                }
            }
            if state.members.is_empty() {
                state.running = false;
                return;
            }
            state.position = read.next;
        }
        let end = read.next;
        // Write the batch, a slice of members per turn of the lock.
        let mut start = 0;
        loop {
            let mut state = shard.lock();
            let capacity = state.members.capacity();
            if start >= capacity {
                // Every member may have been let go while writing (their attachments then
                // remove nothing and wake no one): with none left the shard ends now, not at the
                // next publish, which a room nobody follows may never get (it could not expire).
                if state.members.is_empty() {
                    state.running = false;
                    return;
                }
                break;
            }
            let stop = (start + SLICE).min(capacity);
            for key in start..stop {
                let Some(member) = state.members.get_mut(key) else {
                    continue;
                };
                if member.fresh {
                    continue;
                }
                if !hand(member, &read.entries, end) {
                    let_go(state.members.remove(key));
                }
            }
            start = stop;
        }
    }
}

/// Offers `member` its share of `entries` (those after its cursor that are for it) and moves its
/// cursor; `end` is the batch's last seq. False when the fan-out lets go of it.
fn hand(member: &mut Member, entries: &[Arc<Entry>], end: u64) -> bool {
    let client = member.subscriber.client();
    let rest = &entries[entries.partition_point(|e| e.seq <= member.cursor)..];
    // Usually every message is for everyone: the share is the batch's own slice, no copy.
    let picked: Vec<Arc<Entry>>;
    let share = if rest.iter().all(|e| e.is_for(client)) {
        rest
    } else {
        picked = rest.iter().filter(|e| e.is_for(client)).cloned().collect();
        &picked
    };
    if share.is_empty() {
        member.cursor = member.cursor.max(end);
        return true;
    }
    match member.subscriber.offer(share) {
        Offer::Sent => {
            member.cursor = member.cursor.max(end);
            true
        }
        Offer::Stopped { taken } => {
            if taken > 0 {
                member.cursor = share[taken - 1].seq;
            }
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::tests::{publish, req, room};
    use std::sync::atomic::AtomicBool;
    use std::time::Duration;
    use wire::PublishRequest;

    /// A subscriber that records what it was written and can be made to refuse.
    #[derive(Default)]
    struct Recorder {
        client: Option<String>,
        got: Mutex<Vec<u64>>,
        /// Refuse the next offer after taking this many entries.
        stall: Mutex<Option<usize>>,
        detached: Mutex<Option<u64>>,
        woken: Notify,
        closed: AtomicBool,
    }

    impl Subscriber for Recorder {
        fn client(&self) -> Option<&str> {
            self.client.as_deref()
        }

        fn offer(&self, entries: &[Arc<Entry>]) -> Offer {
            let stall = self.stall.lock().unwrap().take();
            let taken = stall.unwrap_or(entries.len()).min(entries.len());
            self.got
                .lock()
                .unwrap()
                .extend(entries[..taken].iter().map(|e| e.seq));
            if stall.is_some() {
                Offer::Stopped { taken }
            } else {
                Offer::Sent
            }
        }

        fn detached(&self, cursor: u64) {
            *self.detached.lock().unwrap() = Some(cursor);
            self.closed.store(true, Ordering::Relaxed);
            self.woken.notify_one();
        }
    }

    fn recorder(client: Option<&str>) -> Arc<Recorder> {
        Arc::new(Recorder {
            client: client.map(str::to_owned),
            ..Recorder::default()
        })
    }

    /// Lets the shard tasks run until `done` holds (or fails after 2 s).
    async fn until(mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "timed out");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    /// A room whose fan-out has one shard, so every member meets the same shard.
    fn one_shard_room() -> Arc<Room> {
        let mut r = room(100);
        r.fanout = Fanout::with_shards(1);
        Arc::new(r)
    }

    fn got(r: &Recorder) -> Vec<u64> {
        r.got.lock().unwrap().clone()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn each_message_reaches_each_attached_subscriber_once_in_order() {
        let r = Arc::new(room(100));
        publish(&r, req("a", "before"));
        let subs: Vec<_> = (0..5).map(|_| recorder(Some("bob"))).collect();
        let _held: Vec<_> = subs
            .iter()
            .map(|s| r.attach(s.clone(), r.epoch(), 1))
            .collect();
        for i in 0..20 {
            publish(&r, req("a", &format!("m{i}")));
        }
        until(|| subs.iter().all(|s| got(s).len() == 20)).await;
        for s in &subs {
            assert_eq!(got(s), (2..=21).collect::<Vec<_>>());
            assert!(s.detached.lock().unwrap().is_none());
        }
        assert_eq!(r.attached(), 5);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn messages_go_only_to_whom_they_are_for() {
        let r = Arc::new(room(100));
        let (bob, carol, anon) = (
            recorder(Some("bob")),
            recorder(Some("carol")),
            recorder(None),
        );
        let _b = r.attach(bob.clone(), r.epoch(), 0);
        let _c = r.attach(carol.clone(), r.epoch(), 0);
        let _a = r.attach(anon.clone(), r.epoch(), 0);
        publish(
            &r,
            PublishRequest {
                to: Some("carol".into()),
                ..req("a", "for carol")
            },
        );
        publish(
            &r,
            PublishRequest {
                echo: Some(false),
                ..req("bob", "not back to bob")
            },
        );
        publish(&r, req("a", "everyone"));
        until(|| got(&bob).len() == 1 && got(&carol).len() == 3 && got(&anon).len() == 2).await;
        assert_eq!(got(&bob), vec![3]);
        assert_eq!(got(&carol), vec![1, 2, 3]);
        assert_eq!(got(&anon), vec![2, 3]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_cannot_take_more_is_let_go_at_the_last_seq_it_took() {
        let r = Arc::new(room(100));
        let s = recorder(None);
        let _a = r.attach(s.clone(), r.epoch(), 0);
        publish(&r, req("a", "1"));
        until(|| got(&s) == vec![1]).await;
        // The next offer is taken only in part: one entry of what is offered.
        *s.stall.lock().unwrap() = Some(0);
        publish(&r, req("a", "2"));
        until(|| s.closed.load(Ordering::Relaxed)).await;
        assert_eq!(*s.detached.lock().unwrap(), Some(1), "seq 2 was not taken");
        assert_eq!(r.attached(), 0);
        publish(&r, req("a", "3"));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(got(&s), vec![1], "nothing more once let go");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_joins_behind_the_shard_is_let_go_to_read_for_itself() {
        // One shard, so the late joiner meets the shard that has handed out more.
        let r = one_shard_room();
        let first = recorder(None);
        let _f = r.attach(first.clone(), r.epoch(), 0);
        publish(&r, req("a", "1"));
        publish(&r, req("a", "2"));
        until(|| got(&first).len() == 2).await;
        // Joins at cursor 1 although the fan-out has handed out 2 already (it would have missed
        // seq 2): it is let go at 1 as it joins, and its task reads seq 2 itself.
        let late = recorder(None);
        let _l = r.attach(late.clone(), r.epoch(), 1);
        publish(&r, req("a", "3"));
        until(|| late.closed.load(Ordering::Relaxed) && got(&first).len() == 3).await;
        assert_eq!(*late.detached.lock().unwrap(), Some(1));
        assert!(got(&late).is_empty());
        // Joining ahead of the shard (its task read further than the shard has written) skips
        // what it already has.
        let ahead = recorder(None);
        let _a = r.attach(ahead.clone(), r.epoch(), 3);
        publish(&r, req("a", "4"));
        until(|| got(&ahead) == vec![4]).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_shard_whose_last_member_it_let_go_ends_and_lets_go_of_the_room() {
        let r = Arc::new(room(100));
        let s = recorder(None);
        let a = r.attach(s.clone(), r.epoch(), 0);
        // The only member cannot take the next message: the shard lets go of it while writing.
        *s.stall.lock().unwrap() = Some(0);
        publish(&r, req("a", "1"));
        until(|| s.closed.load(Ordering::Relaxed)).await;
        // Its connection goes (its attachment is already gone from the table). No more is
        // published: the shard's task must still end, or the room could never expire.
        drop(a);
        until(|| Arc::strong_count(&r) == 1).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_subscriber_that_joins_behind_what_the_shard_handed_out_is_let_go_at_once() {
        // One shard, so the late joiner meets the shard that has handed out more.
        let r = one_shard_room();
        let first = recorder(None);
        let _f = r.attach(first.clone(), r.epoch(), 0);
        publish(&r, req("a", "1"));
        until(|| got(&first) == vec![1]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        // A connection that read the room (nothing new, cursor 0) just before seq 1 was
        // published attaches after the shard has handed seq 1 out. Nothing more is published
        // to this quiet room: it must be let go now to read seq 1 itself, not at the next
        // publish, which may never come.
        let late = recorder(None);
        let _l = r.attach(late.clone(), r.epoch(), 0);
        until(|| late.closed.load(Ordering::Relaxed)).await;
        assert_eq!(*late.detached.lock().unwrap(), Some(0));
        assert_eq!(r.attached(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cursor_of_an_epoch_the_log_has_left_is_let_go_at_once() {
        // One shard, so the stale member meets the running shard (a new shard would start
        // from the stale cursor's epoch, whose first read is a reset: let go as well).
        let r = one_shard_room();
        let first = recorder(None);
        let _f = r.attach(first.clone(), r.epoch(), 0);
        for i in 0..3 {
            publish(&r, req("a", &i.to_string()));
        }
        until(|| got(&first).len() == 3).await;
        // A connection whose last read was in another epoch (the log began a new one just after
        // it) attaches at seq 3 of that epoch, level with the shard: the fan-out must not hand it
        // this epoch's seq 4 as if it followed what it has.
        let stale = recorder(None);
        let _s = r.attach(stale.clone(), Epoch(r.epoch().0 ^ 1), 3);
        publish(&r, req("a", "3"));
        until(|| stale.closed.load(Ordering::Relaxed) && got(&first).len() == 4).await;
        assert_eq!(*stale.detached.lock().unwrap(), Some(3));
        assert!(got(&stale).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_gap_in_the_log_lets_every_member_go_and_the_last_to_leave_stops_the_shard() {
        let r = Arc::new(room(3));
        let s = recorder(None);
        let a = r.attach(s.clone(), r.epoch(), 0);
        publish(&r, req("a", "1"));
        until(|| got(&s) == vec![1]).await;
        drop(a);
        // Nobody attached: the shard's task ends and lets go of the room.
        until(|| Arc::strong_count(&r) == 1).await;
        // A shard that starts behind the history (a cursor the log has evicted) sees a gap.
        for i in 0..5 {
            publish(&r, req("a", &i.to_string()));
        }
        let behind = recorder(None);
        let _b = r.attach(behind.clone(), r.epoch(), 1);
        publish(&r, req("a", "x"));
        until(|| behind.closed.load(Ordering::Relaxed)).await;
        assert_eq!(*behind.detached.lock().unwrap(), Some(1));
        until(|| Arc::strong_count(&r) == 2).await;
    }
}
