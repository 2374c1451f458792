//! [`MemoryLog`]: a room's log as a ring of encoded-once entries in this process's memory, with a
//! `watch` channel carrying the head; [`MemoryStore`] opens one per room, all drawing on one
//! [`Budget`]. The [`RoomLog`] every `duplex serve` uses today.
//!
//! Why one ring and no per-client queues: a message is encoded to JSON exactly once, when it is
//! published, and every reader shares that [`Entry`] through an `Arc`. A slow reader costs
//! nothing but its cursor; when the ring evicts past the cursor the reader is told exactly how
//! many it missed (a gap), never silently skipped.
//!
//! Memory is bounded twice: each room keeps at most `--history` messages, and all rooms together
//! at most `--memory-budget` bytes of entries. Past the budget the globally oldest entries go
//! first (whichever rooms they are in), down to a low-water mark 1/16 below the budget so that the
//! scan over rooms is paid once per sixteenth of the budget, not once per publish.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;

use super::entry::{Draft, Entry, Epoch, Limit, Read, Reader, RoomName};
use super::log::{Appended, LogStore, RoomLog};

/// What an entry costs besides its JSON: the `Arc`, the struct, the routing strings' headers and
/// the ring slot (an estimate; what matters is that it is never zero for a tiny message).
const ENTRY_OVERHEAD: usize = 160;

/// One kept entry with its place in the global age order and what it is charged.
#[derive(Debug)]
struct Kept {
    entry: Arc<Entry>,
    order: u64,
    bytes: usize,
}

/// The ring behind a room's lock.
#[derive(Debug)]
struct Ring {
    entries: VecDeque<Kept>,
    head: u64,
}

/// The bytes every room's history may take together, and the rooms drawing on them.
#[derive(Debug)]
pub struct Budget {
    limit: usize,
    used: AtomicUsize,
    /// Global age order of appends: which room holds the oldest entry.
    order: AtomicU64,
    /// Every log opened; a std Mutex held for registration and for one eviction pass. Lock
    /// order: this, then a room's ring (a ring's lock is never held while taking this one).
    logs: Mutex<Vec<Weak<MemoryLog>>>,
}

impl Budget {
    /// A budget of `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Budget {
            limit: limit.max(1),
            used: AtomicUsize::new(0),
            order: AtomicU64::new(0),
            logs: Mutex::new(Vec::new()),
        }
    }

    /// Bytes of history kept now, all rooms.
    pub fn used(&self) -> usize {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget in bytes.
    pub fn limit(&self) -> usize {
        self.limit
    }

    fn release(&self, bytes: usize) {
        self.used.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Evicts the oldest entries, across rooms, until the low-water mark.
    fn evict(&self) {
        let low = self.limit - self.limit / 16;
        let mut logs = self.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.retain(|log| log.strong_count() > 0);
        let mut oldest: BinaryHeap<Reverse<(u64, usize)>> = logs
            .iter()
            .enumerate()
            .filter_map(|(i, log)| Some(Reverse((log.upgrade()?.front_order()?, i))))
            .collect();
        while self.used() > low {
            let Some(Reverse((_, i))) = oldest.pop() else {
                break;
            };
            let Some(log) = logs[i].upgrade() else {
                continue;
            };
            if let Some(next) = log.evict_front() {
                oldest.push(Reverse((next, i)));
            }
        }
    }
}

/// One room's log in memory: the last `history` messages and the head signal readers wait on.
#[derive(Debug)]
pub struct MemoryLog {
    name: RoomName,
    epoch: Epoch,
    history: usize,
    budget: Arc<Budget>,
    /// A std Mutex, not tokio's: it is held for a push or a slice copy, never across an await.
    ring: Mutex<Ring>,
    head: watch::Sender<u64>,
}

impl MemoryLog {
    /// An empty log for `name` keeping the last `history` messages (at least one), drawing on
    /// `budget`. Use [`MemoryStore::open`] so the budget can evict from it.
    pub fn new(name: RoomName, epoch: Epoch, history: usize, budget: Arc<Budget>) -> Self {
        MemoryLog {
            name,
            epoch,
            history: history.max(1),
            budget,
            ring: Mutex::new(Ring {
                entries: VecDeque::new(),
                head: 0,
            }),
            head: watch::Sender::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Ring> {
        // A panic while holding the lock cannot leave the ring half-written (push then pop), so
        // a poisoned lock is still a consistent ring.
        self.ring.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends at once (nothing to wait for in memory); [`RoomLog::append`] wraps this.
    pub fn push(&self, draft: Draft) -> Arc<Entry> {
        let mut evicted = 0;
        let entry = {
            let mut ring = self.lock();
            let seq = ring.head + 1;
            let entry = Arc::new(draft.into_entry(&self.name, seq));
            let bytes = ENTRY_OVERHEAD
                + entry.text.len()
                + entry.event.len()
                + entry.from.len()
                + entry.to.as_ref().map_or(0, |t| t.len());
            self.budget.used.fetch_add(bytes, Ordering::Relaxed);
            ring.entries.push_back(Kept {
                entry: entry.clone(),
                order: self.budget.order.fetch_add(1, Ordering::Relaxed),
                bytes,
            });
            while ring.entries.len() > self.history {
                evicted += ring.entries.pop_front().map_or(0, |k| k.bytes);
            }
            ring.head = seq;
            entry
        };
        self.budget.release(evicted);
        if self.budget.used() > self.budget.limit {
            self.budget.evict();
        }
        // Outside the lock: waking thousands of readers should not hold up the next publish.
        self.head.send_replace(entry.seq);
        entry
    }

    fn front_order(&self) -> Option<u64> {
        self.lock().entries.front().map(|k| k.order)
    }

    /// Drops the oldest entry (readers behind it get a gap); the next one's age, if any.
    fn evict_front(&self) -> Option<u64> {
        let mut ring = self.lock();
        if let Some(kept) = ring.entries.pop_front() {
            self.budget.release(kept.bytes);
        }
        ring.entries.front().map(|k| k.order)
    }
}

impl Drop for MemoryLog {
    fn drop(&mut self) {
        let ring = self.ring.get_mut().unwrap_or_else(|e| e.into_inner());
        self.budget
            .release(ring.entries.iter().map(|k| k.bytes).sum());
    }
}

/// Opens a [`MemoryLog`] per room, each keeping `history` messages, all within one [`Budget`].
/// Epochs are drawn from a random start per store (per server start), one per log opened.
#[derive(Debug)]
pub struct MemoryStore {
    history: usize,
    budget: Arc<Budget>,
    next_epoch: AtomicU64,
}

impl MemoryStore {
    /// A store whose rooms keep `history` messages each and `budget` bytes together.
    pub fn new(history: usize, budget: usize) -> Self {
        MemoryStore {
            history,
            budget: Arc::new(Budget::new(budget)),
            next_epoch: AtomicU64::new(random_start()),
        }
    }

    /// The budget all rooms draw on.
    pub fn budget(&self) -> &Arc<Budget> {
        &self.budget
    }

    /// Opens a log (as [`LogStore::open`]), keeping the concrete type.
    pub fn open_memory(&self, room: &RoomName) -> Arc<MemoryLog> {
        // Kept to 32 bits so a cursor stays short (`1a2b3c4d-42`); a collision between two
        // starts is a one-in-four-billion chance.
        let epoch = Epoch(self.next_epoch.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff);
        let log = Arc::new(MemoryLog::new(
            room.clone(),
            epoch,
            self.history,
            self.budget.clone(),
        ));
        let mut logs = self.budget.logs.lock().unwrap_or_else(|e| e.into_inner());
        logs.retain(|log| log.strong_count() > 0);
        logs.push(Arc::downgrade(&log));
        log
    }
}

/// A random 32-bit start for epochs, from the standard library's per-process random hash keys
/// (no RNG dependency for one number).
fn random_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    h.finish() & 0xffff_ffff
}

impl LogStore for MemoryStore {
    fn open(&self, room: &RoomName) -> Arc<dyn RoomLog> {
        self.open_memory(room)
    }

    fn bytes_kept(&self) -> Option<usize> {
        Some(self.budget.used())
    }
}

impl RoomLog for MemoryLog {
    fn append(&self, draft: Draft) -> Appended<'_> {
        let entry = self.push(draft);
        Box::pin(std::future::ready(Ok(entry)))
    }

    fn read(&self, since: u64, reader: Reader<'_>, limit: Limit) -> Read {
        let ring = self.lock();
        let epoch = Some(self.epoch);
        if since > ring.head {
            return Read {
                next: ring.head,
                reset: true,
                epoch,
                ..Read::default()
            };
        }
        // Seqs are contiguous in the ring: the oldest kept is head - len + 1.
        let first = ring.head + 1 - ring.entries.len() as u64;
        let missed = (first - 1).saturating_sub(since);
        let cursor = since.max(first - 1);
        let mut read = Read {
            next: ring.head,
            missed,
            epoch,
            ..Read::default()
        };
        let start = (cursor + 1 - first) as usize;
        let mut bytes = 0;
        for kept in ring.entries.range(start..) {
            let entry = &kept.entry;
            let full = read.entries.len() == limit.messages
                || (!read.entries.is_empty() && bytes + entry.text.len() > limit.bytes);
            if full {
                // Stop before this one; the reader comes back for the rest.
                read.next = entry.seq - 1;
                break;
            }
            if entry.visible_to(reader) {
                bytes += entry.text.len();
                read.entries.push(entry.clone());
            }
        }
        read
    }

    fn head(&self) -> u64 {
        self.lock().head
    }

    fn epoch(&self) -> Epoch {
        self.epoch
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    fn retained(&self) -> usize {
        self.lock().entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::PublishRequest;

    fn req(from: &str, body: &str) -> PublishRequest {
        PublishRequest {
            from: from.into(),
            body: body.into(),
            event: None,
            to: None,
            echo: None,
        }
    }

    const ALL: Limit = Limit {
        messages: 100,
        bytes: usize::MAX,
    };

    fn log(history: usize) -> Arc<MemoryLog> {
        MemoryStore::new(history, usize::MAX).open_memory(&RoomName::parse("r").unwrap())
    }

    fn push(log: &MemoryLog, req: PublishRequest) -> Arc<Entry> {
        log.push(Draft::check(req).unwrap())
    }

    #[test]
    fn seqs_start_at_one_and_read_returns_what_follows() {
        let r = log(10);
        for i in 0..3 {
            assert_eq!(push(&r, req("a", &i.to_string())).seq, i + 1);
        }
        let read = r.read(1, Reader::Anyone, ALL);
        let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!((read.next, read.missed, read.reset), (3, 0, false));
        assert!(!r.read(3, Reader::Anyone, ALL).has_news());
    }

    #[test]
    fn eviction_is_reported_as_missed_with_exact_count() {
        let r = log(3);
        for _ in 0..10 {
            push(&r, req("a", "x"));
        }
        let read = r.read(2, Reader::Anyone, ALL);
        // Kept: 8, 9, 10; lost after 2: 3..=7.
        assert_eq!(read.missed, 5);
        assert_eq!(read.entries.first().unwrap().seq, 8);
        assert_eq!(r.read(0, Reader::Anyone, ALL).missed, 7);
    }

    #[test]
    fn since_ahead_of_log_is_a_reset_to_head() {
        let r = log(3);
        push(&r, req("a", "x"));
        let read = r.read(50, Reader::Anyone, ALL);
        assert!(read.reset && read.entries.is_empty());
        assert_eq!(read.next, 1);
    }

    #[test]
    fn limit_stops_cursor_before_the_rest() {
        let r = log(10);
        for _ in 0..5 {
            push(&r, req("a", "x"));
        }
        let read = r.read(
            0,
            Reader::Anyone,
            Limit {
                messages: 2,
                bytes: usize::MAX,
            },
        );
        assert_eq!(read.entries.len(), 2);
        assert_eq!(read.next, 2);
    }

    #[test]
    fn addressing_follows_the_three_broadcast_modes() {
        let r = log(10);
        push(&r, req("alice", "all"));
        push(
            &r,
            PublishRequest {
                echo: Some(false),
                ..req("alice", "others")
            },
        );
        push(
            &r,
            PublishRequest {
                to: Some("bob".into()),
                ..req("alice", "bob only")
            },
        );
        let seqs = |c: Option<&str>| -> Vec<u64> {
            r.read(0, Reader::of(c), ALL)
                .entries
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(seqs(Some("alice")), [1]);
        assert_eq!(seqs(Some("bob")), [1, 2, 3]);
        assert_eq!(seqs(Some("carol")), [1, 2]);
        assert_eq!(seqs(None), [1, 2]);
        // Skipped messages still move the cursor.
        assert_eq!(r.read(0, Reader::Client("alice"), ALL).next, 3);
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;
    use wire::PublishRequest;

    fn draft(body: &str) -> Draft {
        Draft::check(PublishRequest {
            from: "a".into(),
            body: body.into(),
            event: None,
            to: None,
            echo: None,
        })
        .unwrap()
    }

    const ALL: Limit = Limit {
        messages: 10_000,
        bytes: usize::MAX,
    };

    #[test]
    fn the_budget_evicts_the_oldest_entries_across_rooms_and_reports_gaps() {
        let store = MemoryStore::new(10_000, 64 * 1024);
        let old = store.open_memory(&RoomName::parse("old").unwrap());
        let new = store.open_memory(&RoomName::parse("new").unwrap());
        let body = "x".repeat(1000);
        for _ in 0..20 {
            old.push(draft(&body));
        }
        for _ in 0..200 {
            new.push(draft(&body));
        }
        assert!(
            store.budget().used() <= 64 * 1024,
            "{}",
            store.budget().used()
        );
        // The old room's entries were the oldest: all gone, and a reader is told how many.
        let read = old.read(0, Reader::Anyone, ALL);
        assert_eq!((read.missed, read.entries.len()), (20, 0));
        let read = new.read(0, Reader::Anyone, ALL);
        assert!(read.missed > 0 && !read.entries.is_empty());
        assert_eq!(read.missed + read.entries.len() as u64, 200);
        drop(new);
        let kept = old.retained();
        assert_eq!(kept, 0);
        assert_eq!(
            store.budget().used(),
            0,
            "a dropped log gives its bytes back"
        );
    }

    #[test]
    fn a_read_is_bounded_in_bytes_but_always_carries_one_message() {
        let log = MemoryStore::new(100, usize::MAX).open_memory(&RoomName::parse("r").unwrap());
        for _ in 0..10 {
            log.push(draft(&"y".repeat(1000)));
        }
        let read = log.read(
            0,
            Reader::Anyone,
            Limit {
                messages: 100,
                bytes: 3500,
            },
        );
        assert_eq!((read.entries.len(), read.next), (3, 3));
        let one = log.read(
            0,
            Reader::Anyone,
            Limit {
                messages: 100,
                bytes: 10,
            },
        );
        assert_eq!((one.entries.len(), one.next), (1, 1));
    }
}
