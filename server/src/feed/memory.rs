//! [`MemoryLog`]: a room's log as a ring of encoded-once entries in this process's memory, with a
//! `watch` channel carrying the head. The [`RoomLog`] every `duplex serve` uses today.
//!
//! Why one ring and no per-client queues: a message is encoded to JSON exactly once, when it is
//! published, and every reader shares that [`Entry`] through an `Arc`. A slow reader costs
//! nothing but its cursor; when the ring evicts past the cursor the reader is told exactly how
//! many it missed (a gap), never silently skipped. Memory is bounded by rooms × history.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::entry::{Draft, Entry, Read, RoomName};
use super::log::{Appended, LogStore, RoomLog};

/// The ring behind a room's lock.
#[derive(Debug)]
struct Ring {
    entries: VecDeque<Arc<Entry>>,
    head: u64,
}

/// One room's log in memory: the last `history` messages and the head signal readers wait on.
#[derive(Debug)]
pub struct MemoryLog {
    name: RoomName,
    history: usize,
    /// A std Mutex, not tokio's: it is held for a push or a slice copy, never across an await.
    ring: Mutex<Ring>,
    head: watch::Sender<u64>,
}

impl MemoryLog {
    /// An empty log for `name` keeping the last `history` messages (at least one).
    pub fn new(name: RoomName, history: usize) -> Self {
        MemoryLog {
            name,
            history: history.max(1),
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
        let entry = {
            let mut ring = self.lock();
            let seq = ring.head + 1;
            let entry = Arc::new(draft.into_entry(&self.name, seq));
            ring.entries.push_back(entry.clone());
            while ring.entries.len() > self.history {
                ring.entries.pop_front();
            }
            ring.head = seq;
            entry
        };
        // Outside the lock: waking thousands of readers should not hold up the next publish.
        self.head.send_replace(entry.seq);
        entry
    }
}

/// Makes a [`MemoryLog`] per room, each keeping `history` messages.
#[derive(Debug, Clone, Copy)]
pub struct MemoryStore {
    /// Messages kept per room.
    pub history: usize,
}

impl LogStore for MemoryStore {
    fn open(&self, room: &RoomName) -> Box<dyn RoomLog> {
        Box::new(MemoryLog::new(room.clone(), self.history))
    }
}

impl RoomLog for MemoryLog {
    fn append(&self, draft: Draft) -> Appended<'_> {
        let entry = self.push(draft);
        Box::pin(std::future::ready(Ok(entry)))
    }

    fn read(&self, since: u64, client: Option<&str>, limit: usize) -> Read {
        let ring = self.lock();
        if since > ring.head {
            return Read {
                next: ring.head,
                reset: true,
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
            ..Read::default()
        };
        let start = (cursor + 1 - first) as usize;
        for entry in ring.entries.range(start..) {
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

    fn head(&self) -> u64 {
        self.lock().head
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

    fn log(history: usize) -> MemoryLog {
        MemoryLog::new(RoomName::parse("r").unwrap(), history)
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
        let read = r.read(1, None, 100);
        let seqs: Vec<u64> = read.entries.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, [2, 3]);
        assert_eq!((read.next, read.missed, read.reset), (3, 0, false));
        assert!(!r.read(3, None, 100).has_news());
    }

    #[test]
    fn eviction_is_reported_as_missed_with_exact_count() {
        let r = log(3);
        for _ in 0..10 {
            push(&r, req("a", "x"));
        }
        let read = r.read(2, None, 100);
        // Kept: 8, 9, 10; lost after 2: 3..=7.
        assert_eq!(read.missed, 5);
        assert_eq!(read.entries.first().unwrap().seq, 8);
        assert_eq!(r.read(0, None, 100).missed, 7);
    }

    #[test]
    fn since_ahead_of_log_is_a_reset_to_head() {
        let r = log(3);
        push(&r, req("a", "x"));
        let read = r.read(50, None, 100);
        assert!(read.reset && read.entries.is_empty());
        assert_eq!(read.next, 1);
    }

    #[test]
    fn limit_stops_cursor_before_the_rest() {
        let r = log(10);
        for _ in 0..5 {
            push(&r, req("a", "x"));
        }
        let read = r.read(0, None, 2);
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
            r.read(0, c, 100).entries.iter().map(|e| e.seq).collect()
        };
        assert_eq!(seqs(Some("alice")), [1]);
        assert_eq!(seqs(Some("bob")), [1, 2, 3]);
        assert_eq!(seqs(Some("carol")), [1, 2]);
        assert_eq!(seqs(None), [1, 2]);
        // Skipped messages still move the cursor.
        assert_eq!(r.read(0, Some("alice"), 100).next, 3);
    }
}
