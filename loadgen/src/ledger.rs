//! Per-client delivery accounting and the phase's integrity sums.
//!
//! Each phase uses a fresh room and every client subscribes from the start of its log
//! (`since=0`), so a client is owed exactly the messages the server acknowledged to the senders
//! during the phase that were for it (`chat.mode`, see [`crate::recipients`]). Each client keeps a [`Ledger`] of the seqs it saw (a bitset: 5,000 clients
//! × 30,000 messages is 19 MB); [`integrity`] compares the ledgers with the acknowledged seqs.
//! A client that never connected is owed nothing (it is counted as an error and a warning
//! instead), but a client that connected and later failed still owes every message.
//!
//! Order. A server that numbers its log (duplex) is out of order when a client gets a seq below
//! one it already has. A server that numbers nothing (nchan, Socket.IO, a generic endpoint) has
//! only the order in which it stored the publishes, and the loadgen knows it only in part: a
//! sender's messages are judged by their counter (two senders' messages have no order of their
//! own), and of two HTTP publishes whose requests were in flight at the same time (a sender's
//! pool has several connections) the server may have stored either first. So each client notes
//! the pairs it saw inverted ([`Ledger::inversions`]) and [`integrity`] judges them together
//! (`judge_order`, the one place the rule lives): an inversion of publishes that did not
//! overlap is the server's disorder; one of overlapping publishes is the order the server
//! chose, which every client must then see alike (the order most clients saw is taken as the
//! server's, and a client that saw the other counts as out of order).

use std::collections::HashMap;

use report::results::Integrity;

use crate::recipients::{Addressed, ChatMode};

/// Most later messages of one sender a late arrival is compared with, one by one; past them,
/// the sender's latest one stands for the rest (publishes that far apart never overlap).
const INVERSIONS_PER_ARRIVAL: u64 = 64;

/// What one client received.
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    seen: Vec<u64>,
    max_seq: u64,
    /// Per sender, 1 + the highest message counter seen (0: none), for positions from stamps.
    last_of_sender: Vec<u64>,
    /// Extra copies received.
    pub duplicates: u64,
    /// Arrivals with a seq below one already received (for positions from stamps: the same
    /// sender's; [`integrity`] then forgives those the server was free to order either way).
    pub out_of_order: u64,
    /// For positions from stamps: each arrival that came after a later message of its sender,
    /// as `(late, already seen)` position pairs, a late arrival's pairs side by side.
    pub inversions: Vec<(u64, u64)>,
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
                let last = self.last_of_sender[sender];
                if n + 1 < last {
                    self.out_of_order += 1;
                    self.note_inversions(seq, n, last - 1, senders);
                }
                self.last_of_sender[sender] = last.max(n + 1);
            }
        }
        self.max_seq = self.max_seq.max(seq);
        Arrival::First
    }

    /// Notes the pairs `(seq, later)` for the messages of `seq`'s sender already seen, whose
    /// counters lie in `n + 1 ..= latest` (`seq` is counter `n`'s position, `senders` apart).
    fn note_inversions(&mut self, seq: u64, n: u64, latest: u64, senders: u64) {
        let position = |k: u64| seq + (k - n) * senders;
        let compared = latest.min(n + INVERSIONS_PER_ARRIVAL);
        for k in n + 1..=compared {
            if self.has(position(k)) {
                self.inversions.push((seq, position(k)));
            }
        }
        if latest > compared {
            self.inversions.push((seq, position(latest)));
        }
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
    let ledgers: Vec<(usize, &Ledger)> = ledgers.into_iter().collect();
    let mut total = Integrity::default();
    for &(client, ledger) in &ledgers {
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
        total.gaps_reported += ledger.gaps_reported;
        total.resets += ledger.resets;
    }
    total.out_of_order = judge_order(ledgers.iter().map(|&(_, l)| l), published);
    total
}

/// The clients' out-of-order arrivals, judged (see the module's doc): a numbered server's
/// count as they came; an inversion of a sender's publishes whose requests overlapped counts
/// only for the clients that saw it the other way round from most, and every other
/// inversion counts once per late arrival.
fn judge_order<'a>(ledgers: impl IntoIterator<Item = &'a Ledger>, published: &[Addressed]) -> u64 {
    let ledgers: Vec<&Ledger> = ledgers.into_iter().collect();
    let span_of: HashMap<u64, _> = published
        .iter()
        .filter_map(|m| Some((m.seq, m.request?)))
        .collect();
    let overlapped = |late: u64, seen: u64| match (span_of.get(&late), span_of.get(&seen)) {
        (Some(a), Some(b)) => a.left_ns < b.answered_ns && b.left_ns < a.answered_ns,
        _ => false,
    };
    // Per overlapping pair, how many clients saw it inverted.
    let mut inverted_by: HashMap<(u64, u64), u64> = HashMap::new();
    for l in &ledgers {
        for &pair in &l.inversions {
            if overlapped(pair.0, pair.1) {
                *inverted_by.entry(pair).or_default() += 1;
            }
        }
    }
    // The server's order of each such pair: the one most clients that received both saw.
    let mut server_inverted: HashMap<(u64, u64), bool> = HashMap::new();
    let mut out_of_order = 0;
    for (&(late, seen), &inverted) in &inverted_by {
        let received_both = ledgers
            .iter()
            .filter(|l| l.has(late) && l.has(seen))
            .count() as u64;
        let chose_inverted = 2 * inverted > received_both;
        server_inverted.insert((late, seen), chose_inverted);
        if chose_inverted {
            // Those that saw the sender's order saw the other one from the server's.
            out_of_order += received_both - inverted;
        }
    }
    for l in &ledgers {
        // Arrivals (not pairs) are counted: a late arrival's pairs are side by side.
        let forgiven = l
            .inversions
            .chunk_by(|a, b| a.0 == b.0)
            .filter(|pairs| {
                pairs
                    .iter()
                    .all(|p| server_inverted.get(p).copied().unwrap_or(false))
            })
            .count() as u64;
        out_of_order += l.out_of_order - forgiven;
    }
    out_of_order
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
                request: None,
            })
            .collect()
    }

    /// One sender's HTTP publishes 1..=4, each in flight 10 ms from `10 * n` ms, except that
    /// publish 2's request took 30 ms: it overlapped publishes 3 and 4.
    fn sent_over_http() -> Vec<Addressed> {
        let ms = 1_000_000;
        let mut published = sent(0, 4);
        for m in &mut published {
            let left_ns = 10 * m.seq * ms;
            let took = if m.seq == 2 { 30 * ms } else { 9 * ms };
            m.request = Some(crate::recipients::RequestSpan {
                left_ns,
                answered_ns: left_ns + took,
            });
        }
        published
    }

    /// A client that received `order` (one sender's positions, as a stamped server's).
    fn received(order: &[u64]) -> Ledger {
        let mut l = Ledger::default();
        for &seq in order {
            l.record_ordered(seq, Some(1));
        }
        l
    }

    #[test]
    fn an_inversion_of_overlapping_publishes_every_client_saw_is_the_servers_order() {
        // The server stored 3 before 2 (their requests overlapped): every client sees 1 3 2 4.
        let clients: Vec<Ledger> = (0..3).map(|_| received(&[1, 3, 2, 4])).collect();
        assert!(clients.iter().all(|l| l.out_of_order == 1));
        let i = integrity(
            clients.iter().enumerate(),
            &sent_over_http(),
            ChatMode::All,
            3,
        );
        assert_eq!((i.out_of_order, i.missing), (0, 0));
        // The same arrivals with no request spans (an ordered stream) are disorder.
        let i = integrity(clients.iter().enumerate(), &sent(0, 4), ChatMode::All, 3);
        assert_eq!(i.out_of_order, 3);
    }

    #[test]
    fn an_inversion_of_publishes_that_did_not_overlap_still_counts() {
        // 4 was sent after 3's answer came: a client that sees 4 before 3 saw disorder, even
        // though every client saw it.
        let clients: Vec<Ledger> = (0..2).map(|_| received(&[1, 2, 4, 3])).collect();
        let i = integrity(
            clients.iter().enumerate(),
            &sent_over_http(),
            ChatMode::All,
            2,
        );
        assert_eq!(i.out_of_order, 2);
    }

    #[test]
    fn a_client_that_saw_overlapping_publishes_the_other_way_from_most_counts() {
        // Most saw the server store 3 before 2; the one that saw 2 before 3 did not get the
        // server's order; and with one of each, the inverted one is out of the sender's order.
        let most = [
            received(&[1, 3, 2, 4]),
            received(&[1, 3, 2, 4]),
            received(&[1, 2, 3, 4]),
        ];
        let i = integrity(most.iter().enumerate(), &sent_over_http(), ChatMode::All, 3);
        assert_eq!(i.out_of_order, 1);
        let split = [received(&[1, 3, 2, 4]), received(&[1, 2, 3, 4])];
        let i = integrity(
            split.iter().enumerate(),
            &sent_over_http(),
            ChatMode::All,
            2,
        );
        assert_eq!(i.out_of_order, 1);
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
