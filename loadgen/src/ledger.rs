//! Per-client delivery accounting and the phase's integrity sums.
//!
//! Each phase uses a fresh room and every client subscribes from the start of its log
//! (`since=0`), so a client is owed exactly the messages the server acknowledged to the senders
//! during the phase that were for it (`chat.mode`, see [`crate::recipients`]). Each client keeps a [`Ledger`] of the seqs it saw (a bitset: 5,000 clients
//! × 30,000 messages is 19 MB); [`integrity`] compares the ledgers with the acknowledged seqs.
//! A client that never connected is owed nothing (it is counted as an error and a warning
//! instead), but a client that connected and later failed still owes every message.

use report::results::Integrity;

use crate::recipients::{Addressed, ChatMode};

/// What one client received.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    seen: Vec<u64>,
    max_seq: u64,
    /// Per sender, 1 + the highest message counter seen (0: none), for positions from stamps.
    last_of_sender: Vec<u64>,
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
        self.record_ordered(seq, None)
    }

    /// Records the arrival of `seq`; with `turns = Some(senders)`, `seq` is a position taken
    /// from the stamp ([`Stamp::log_position`](crate::stamp::Stamp::log_position)) of a server
    /// that numbers nothing, so order is judged per sender (its messages by their counter):
    /// two senders' messages have no order of their own, and reading one as out of order would
    /// blame the server for the loadgen's numbering.
    pub fn record_ordered(&mut self, seq: u64, turns: Option<usize>) -> Arrival {
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
        match turns {
            None => {
                if seq < self.max_seq {
                    self.out_of_order += 1;
                }
            }
            Some(senders) => {
                let senders = senders.max(1) as u64;
                let (sender, n) = (((seq - 1) % senders) as usize, (seq - 1) / senders);
                if self.last_of_sender.len() <= sender {
                    self.last_of_sender.resize(sender + 1, 0);
                }
                let last = &mut self.last_of_sender[sender];
                if n + 1 < *last {
                    self.out_of_order += 1;
                }
                *last = (*last).max(n + 1);
            }
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

/// Sums the connected clients' ledgers (each with the client's index) against the
/// acknowledged messages: each client is owed the ones `mode` addresses to it among `clients`;
/// one that arrived at a client it was not for is misdelivered.
pub fn integrity<'a>(
    ledgers: impl IntoIterator<Item = (usize, &'a Ledger)>,
    published: &[Addressed],
    mode: ChatMode,
    clients: usize,
) -> Integrity {
    let mut total = Integrity::default();
    for (client, ledger) in ledgers {
        let (mut owed, mut received) = (0, 0);
        for m in published {
            let has = ledger.has(m.seq);
            if mode.owes(m, client, clients) {
                owed += 1;
                received += u64::from(has);
            } else if has {
                total.misdelivered += 1;
            }
        }
        total.deliveries_expected += owed;
        total.deliveries_received += received;
        total.missing += owed - received;
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
    fn positions_from_stamps_are_in_order_per_sender_not_across_senders() {
        // Two senders: positions 1, 3, 5 are sender 0's; 2, 4, 6 sender 1's.
        let mut l = Ledger::default();
        for seq in [3, 2, 5, 4] {
            l.record_ordered(seq, Some(2));
        }
        assert_eq!(l.out_of_order, 0, "senders interleave freely");
        l.record_ordered(1, Some(2));
        assert_eq!(l.out_of_order, 1, "sender 0's first after its second");
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
        let i = integrity([(0, &a), (1, &b)], &sent(0, 3), ChatMode::All, 2);
        assert_eq!(i.deliveries_expected, 6);
        assert_eq!(i.deliveries_received, 4);
        assert_eq!(i.missing, 2);
        assert_eq!(i.duplicates, 1);
        assert_eq!(i.misdelivered, 0);
    }

    /// `count` messages of `sender`, seqs 1.., counters 0...
    fn sent(sender: usize, count: u64) -> Vec<Addressed> {
        (1..=count)
            .map(|seq| Addressed {
                seq,
                sender,
                n: (seq - 1) as u32,
            })
            .collect()
    }

    #[test]
    fn in_others_mode_the_sender_is_owed_nothing_and_its_echo_is_misdelivered() {
        let (mut sender, mut other) = (Ledger::default(), Ledger::default());
        for s in 1..=3 {
            other.record(s);
        }
        sender.record(2);
        let i = integrity(
            [(0, &sender), (1, &other)],
            &sent(0, 3),
            ChatMode::Others,
            2,
        );
        assert_eq!((i.deliveries_expected, i.deliveries_received), (3, 3));
        assert_eq!((i.missing, i.misdelivered), (0, 1));
    }

    #[test]
    fn in_direct_mode_each_message_is_owed_to_its_one_recipient() {
        // Sender 0 among 3 clients: messages n = 0, 1, 2 go to clients 1, 2, 1.
        let ledgers: Vec<Ledger> = vec![Ledger::default(), Ledger::default(), Ledger::default()];
        let mut ledgers = ledgers;
        ledgers[1].record(1);
        ledgers[2].record(2);
        // Message 3 (for client 1) never came; client 2 got it instead.
        ledgers[2].record(3);
        let i = integrity(ledgers.iter().enumerate(), &sent(0, 3), ChatMode::Direct, 3);
        assert_eq!((i.deliveries_expected, i.deliveries_received), (3, 2));
        assert_eq!((i.missing, i.misdelivered), (1, 1));
    }
}
