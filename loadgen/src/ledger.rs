//! Per-client delivery accounting and the phase's integrity sums.
//!
//! Each phase uses a fresh room and every client subscribes from the start of its log
//! (`since=0`), so a client is owed exactly the messages the server acknowledged to the senders
//! during the phase. Each client keeps a [`Ledger`] of the seqs it saw (a bitset: 5,000 clients
//! × 30,000 messages is 19 MB); [`integrity`] compares the ledgers with the acknowledged seqs.
//! A client that never connected is owed nothing (it is counted as an error and a warning
//! instead), but a client that connected and later failed still owes every message.

use report::results::Integrity;

/// What one client received.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    seen: Vec<u64>,
    max_seq: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Arrivals with a seq below one already received.
    pub out_of_order: u64,
    /// Messages the server said were lost (gap items, `missed`).
    pub gaps_reported: u64,
    /// Reset items received.
    pub resets: u64,
}

/// How an arrival relates to what the client had seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// The first copy.
    First,
    /// Seen before.
    Duplicate,
}

impl Ledger {
    /// Records the arrival of `seq` (seq 0 is not a message and is ignored as a duplicate).
    pub fn record(&mut self, seq: u64) -> Arrival {
        if seq == 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        let (word, bit) = ((seq / 64) as usize, seq % 64);
        if self.seen.len() <= word {
            self.seen.resize(word + 1, 0);
        }
        if self.seen[word] & (1 << bit) != 0 {
            self.duplicates += 1;
            return Arrival::Duplicate;
        }
        self.seen[word] |= 1 << bit;
        if seq < self.max_seq {
            self.out_of_order += 1;
        }
        self.max_seq = self.max_seq.max(seq);
        Arrival::First
    }

    /// Whether `seq` arrived.
    pub fn has(&self, seq: u64) -> bool {
        self.seen
            .get((seq / 64) as usize)
            .is_some_and(|w| w & (1 << (seq % 64)) != 0)
    }
}

/// Sums the connected clients' ledgers against the acknowledged seqs.
pub fn integrity<'a>(
    ledgers: impl IntoIterator<Item = &'a Ledger>,
    published: &[u64],
) -> Integrity {
    let mut total = Integrity::default();
    for ledger in ledgers {
        let received = published.iter().filter(|&&s| ledger.has(s)).count() as u64;
        total.deliveries_expected += published.len() as u64;
        total.deliveries_received += received;
        total.missing += published.len() as u64 - received;
        total.duplicates += ledger.duplicates;
        total.out_of_order += ledger.out_of_order;
        total.gaps_reported += ledger.gaps_reported;
        total.resets += ledger.resets;
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_duplicates_and_out_of_order() {
        let mut l = Ledger::default();
        assert_eq!(l.record(1), Arrival::First);
        assert_eq!(l.record(3), Arrival::First);
        assert_eq!(l.record(2), Arrival::First);
        assert_eq!(l.record(3), Arrival::Duplicate);
        assert_eq!(l.out_of_order, 1);
        assert_eq!(l.duplicates, 1);
        assert!(l.has(2) && !l.has(4) && !l.has(10_000));
    }

    #[test]
    fn integrity_counts_missing_per_client() {
        let mut a = Ledger::default();
        let mut b = Ledger::default();
        for s in 1..=3 {
            a.record(s);
        }
        b.record(2);
        b.record(2);
        let i = integrity([&a, &b], &[1, 2, 3]);
        assert_eq!(i.deliveries_expected, 6);
        assert_eq!(i.deliveries_received, 4);
        assert_eq!(i.missing, 2);
        assert_eq!(i.duplicates, 1);
    }
}
