//! [`Window`]: this node's copy of the tail of one room's Redis stream, which `read` serves
//! synchronously. It is filled in seq order (by the node's tail, and by its own appends when they
//! are next in line) and is always contiguous up to its head, so a cursor's gap is counted as in
//! the memory log: the seqs between the cursor and the first one kept.
//!
//! A window also knows how far Redis got: the highest seq Redis is known to have assigned in its
//! epoch (from loads, pushes and [`Window::learn`]), at or above its head. A cursor between the
//! two is a message this node's tail has not brought yet (it trails Redis by a few ms): "nothing
//! yet", and the reader waits. Only a cursor past what Redis assigned is a reset; it cannot be
//! waited for, as waiting would later skip, silently, the seqs up to it.
//!
//! A window knows which epoch it holds. Entries of another epoch never mix into it: a load of
//! another epoch replaces it whole, and readers whose cursor belonged to the old epoch are reset
//! (the [`Follower`](super::super::Follower) notices the change in [`Read::epoch`]).

use std::collections::VecDeque;
use std::sync::Arc;

use super::super::entry::{Entry, Epoch, Limit, Read, Reader};
use super::scripts::Loaded;

/// What a [`Window::push`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Pushed {
    /// The entry is the new head.
    Head,
    /// Already held (a node's own append that its tail reads back).
    Stale,
    /// It belongs to another epoch than the one held: the room must be loaded again.
    OtherEpoch,
}

/// One room's entries on this node.
#[derive(Debug)]
pub(super) struct Window {
    /// `None` until the room was first loaded from Redis.
    epoch: Option<Epoch>,
    entries: VecDeque<Arc<Entry>>,
    head: u64,
    /// The highest seq Redis is known to have assigned in `epoch`: `head` or above.
    assigned: u64,
    history: usize,
}

impl Window {
    /// An empty window, not loaded yet, keeping at most `history` entries.
    pub(super) fn new(history: usize) -> Self {
        Window {
            epoch: None,
            entries: VecDeque::new(),
            head: 0,
            assigned: 0,
            history: history.max(1),
        }
    }

    pub(super) fn epoch(&self) -> Option<Epoch> {
        self.epoch
    }

    pub(super) fn head(&self) -> u64 {
        self.head
    }

    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The highest seq Redis is known to have assigned in this window's epoch.
    pub(super) fn assigned(&self) -> u64 {
        self.assigned
    }

    /// Takes in that Redis had assigned `seq` in `epoch` (read from the room's meta hash), so a
    /// cursor up to it waits for the tail instead of being reset. Another epoch's figure says
    /// nothing about this one and is ignored (the tail reloads the room when it meets it).
    pub(super) fn learn(&mut self, epoch: Epoch, seq: u64) {
        if self.epoch == Some(epoch) {
            self.assigned = self.assigned.max(seq);
        }
    }

    /// Takes in what a load found in Redis: the room's epoch, its head and the entries after what
    /// this window held (all of them when the epoch is not this window's). Returns whether
    /// anything changed (readers must be woken).
    pub(super) fn load(&mut self, loaded: Loaded) -> bool {
        let Loaded {
            epoch,
            head,
            entries,
        } = loaded;
        let before = (self.epoch, self.head);
        if self.epoch != Some(epoch) {
            self.epoch = Some(epoch);
            self.entries.clear();
            self.head = 0;
            self.assigned = 0;
        }
        for (entry_epoch, entry) in entries {
            if entry_epoch == epoch {
                self.push(epoch, entry);
            }
        }
        if head > self.head {
            // The meta says more was assigned than the stream holds (the stream was trimmed or
            // deleted under it): what is missing is counted as a gap, never served as present.
            self.entries.clear();
            self.head = head;
        }
        self.assigned = self.assigned.max(head);
        (self.epoch, self.head) != before
    }

    /// Adds `entry` of `epoch` if it is the next seq. An entry further ahead means the seqs in
    /// between were trimmed from Redis before this node read them: the window starts again at
    /// it, and readers behind are told exactly how many they missed.
    pub(super) fn push(&mut self, epoch: Epoch, entry: Arc<Entry>) -> Pushed {
        if self.epoch != Some(epoch) {
            return Pushed::OtherEpoch;
        }
        if entry.seq <= self.head {
            return Pushed::Stale;
        }
        if entry.seq > self.head + 1 {
            self.entries.clear();
        }
        self.head = entry.seq;
        self.assigned = self.assigned.max(entry.seq);
        self.entries.push_back(entry);
        while self.entries.len() > self.history {
            self.entries.pop_front();
        }
        Pushed::Head
    }

    /// What follows `since` for `client`, as [`RoomLog::read`](super::super::RoomLog::read)
    /// promises. Before the first load nothing is known: no news, the cursor kept as it is (not a
    /// reset, which would tell a client its position is lost when it is only not loaded yet). A
    /// cursor ahead of the head but not past what Redis assigned is "nothing yet" too (see the
    /// module docs); past it, a reset at the head.
    pub(super) fn read(&self, since: u64, reader: Reader<'_>, limit: Limit) -> Read {
        if self.epoch.is_none() {
            return Read {
                next: since,
                ..Read::default()
            };
        }
        if since > self.head && since <= self.assigned {
            // Redis has it; the tail has not brought it yet.
            return Read {
                next: since,
                epoch: self.epoch,
                ..Read::default()
            };
        }
        if since > self.head {
            return Read {
                next: self.head,
                reset: true,
                epoch: self.epoch,
                ..Read::default()
            };
        }
        let first = self.head + 1 - self.entries.len() as u64;
        let cursor = since.max(first - 1);
        let mut read = Read {
            next: self.head,
            missed: (first - 1).saturating_sub(since),
            epoch: self.epoch,
            ..Read::default()
        };
        let mut bytes = 0;
        for entry in self.entries.range((cursor + 1 - first) as usize..) {
            let full = read.entries.len() == limit.messages
                || (!read.entries.is_empty() && bytes + entry.text.len() > limit.bytes);
            if full {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Draft, RoomName};

    const ALL: Limit = Limit {
        messages: 100,
        bytes: usize::MAX,
    };

    fn entry(seq: u64) -> Arc<Entry> {
        let draft = Draft {
            event: "chat".into(),
            from: "a".into(),
            body: format!("m{seq}"),
            to: None,
            echo: true,
            ts_us: 1,
        };
        Arc::new(draft.into_entry(&RoomName::parse("r").unwrap(), seq))
    }

    fn loaded(epoch: Epoch, head: u64, seqs: impl Iterator<Item = u64>) -> Loaded {
        Loaded {
            epoch,
            head,
            entries: seqs.map(|s| (epoch, entry(s))).collect(),
        }
    }

    fn seqs(read: &Read) -> Vec<u64> {
        read.entries.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn an_unloaded_window_answers_nothing_yet_rather_than_a_reset() {
        let w = Window::new(10);
        let read = w.read(5, Reader::Anyone, ALL);
        assert!(!read.has_news());
        assert_eq!((read.next, read.epoch), (5, None));
    }

    #[test]
    fn a_window_loaded_from_a_trimmed_stream_counts_the_trimmed_seqs_as_missed() {
        let mut w = Window::new(10);
        // The stream kept 4..=6 of 6.
        let e = Epoch(7);
        assert!(w.load(loaded(e, 6, 4..=6)));
        let read = w.read(1, Reader::Anyone, ALL);
        assert_eq!((seqs(&read), read.missed, read.next), (vec![4, 5, 6], 2, 6));
        assert_eq!(w.push(e, entry(6)), Pushed::Stale);
        assert_eq!(w.push(e, entry(7)), Pushed::Head);
        // 8 and 9 were trimmed before this node read them: 10 starts the window again.
        assert_eq!(w.push(e, entry(10)), Pushed::Head);
        let read = w.read(7, Reader::Anyone, ALL);
        assert_eq!((seqs(&read), read.missed), (vec![10], 2));
        assert_eq!(w.push(Epoch(8), entry(11)), Pushed::OtherEpoch);
    }

    #[test]
    fn a_cursor_redis_assigned_but_the_window_lacks_is_nothing_yet_and_past_it_a_reset() {
        let mut w = Window::new(10);
        let e = Epoch(7);
        w.load(loaded(e, 2, 1..=2));
        // Another node's client read seq 4 there; this node's tail has brought 2 so far.
        w.learn(Epoch(6), 9);
        assert!(
            w.read(4, Reader::Anyone, ALL).reset,
            "another epoch's seq says nothing"
        );
        w.learn(e, 4);
        let read = w.read(4, Reader::Anyone, ALL);
        assert!(!read.has_news());
        assert_eq!((read.next, read.epoch), (4, Some(e)));
        let read = w.read(5, Reader::Anyone, ALL);
        assert_eq!((read.reset, read.next), (true, 2));
        // The tail catches up: what follows the cursor is served, nothing before it.
        for seq in 3..=5 {
            w.push(e, entry(seq));
        }
        let read = w.read(4, Reader::Anyone, ALL);
        assert_eq!((seqs(&read), read.missed, read.reset), (vec![5], 0, false));
    }

    #[test]
    fn a_load_of_another_epoch_replaces_the_window() {
        let mut w = Window::new(10);
        w.load(loaded(Epoch(1), 3, 1..=3));
        assert!(w.load(loaded(Epoch(2), 1, 1..=1)));
        let read = w.read(0, Reader::Anyone, ALL);
        assert_eq!((seqs(&read), read.epoch), (vec![1], Some(Epoch(2))));
        // The old epoch's cursor 3 is ahead of the new head: a reset.
        assert!(w.read(3, Reader::Anyone, ALL).reset);
        // Nothing new: nothing changed.
        assert!(!w.load(loaded(Epoch(2), 1, 1..1)));
    }
}
