//! The loadgen's stamp inside every published body: `(sender, n, scheduled time)`, padded to the
//! scenario's payload size. Because the server relays bodies unchanged, a receiver can compute
//! delivery latency against the *scheduled* publish time (open model) on the loadgen's own
//! monotonic clock, and tell exactly which message it got, on any server.
//!
//! Format: `dx1 <sender> <n> <scheduled_ns>;` followed by `.` up to the payload size. ASCII only,
//! so it needs no JSON escaping and its byte length is its JSON string length.

use std::fmt::Write as _;

/// Longest stamp (without padding) for any sender, n and time this crate produces; the smallest
/// allowed `chat.payload_bytes`.
pub const MAX_STAMP_LEN: usize = 48;

const PREFIX: &str = "dx1 ";

/// Who published a message, which of theirs it was, and when it was due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The sender's index among the phase's clients.
    pub sender: u32,
    /// The sender's message counter, from 0.
    pub n: u32,
    /// Scheduled publish time, ns since the loadgen's clock epoch (see `clock.rs`).
    pub scheduled_ns: u64,
}

impl Stamp {
    /// The body to publish: the stamp padded with `.` to `payload_bytes` (never shorter than the
    /// stamp itself).
    pub fn encode(&self, payload_bytes: usize) -> String {
        let mut s = String::with_capacity(payload_bytes.max(MAX_STAMP_LEN));
        write!(
            s,
            "{PREFIX}{} {} {};",
            self.sender, self.n, self.scheduled_ns
        )
        .expect("writing to a String cannot fail");
        debug_assert!(s.len() <= MAX_STAMP_LEN);
        while s.len() < payload_bytes {
            s.push('.');
        }
        s
    }

    /// Reads the stamp at the start of `body`; `None` when the body is not one of ours.
    pub fn parse(body: &str) -> Option<Stamp> {
        let rest = body.strip_prefix(PREFIX)?;
        let end = rest.find(';')?;
        let mut parts = rest[..end].split(' ');
        let sender = parts.next()?.parse().ok()?;
        let n = parts.next()?.parse().ok()?;
        let scheduled_ns = parts.next()?.parse().ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Stamp {
            sender,
            n,
            scheduled_ns,
        })
    }
}

impl Stamp {
    /// The message's place in the phase's log for a server that numbers nothing (nchan,
    /// Socket.IO, a generic endpoint): senders take turns, so `n * senders + sender + 1` is
    /// dense from 1 (the ledger's bitset stays small) and both the publisher and every receiver
    /// compute the same number from the stamp alone.
    pub fn log_position(&self, senders: usize) -> u64 {
        u64::from(self.n) * senders.max(1) as u64 + u64::from(self.sender) + 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_positions_are_dense_and_distinct() {
        let mut seen: Vec<u64> = (0..3u32)
            .flat_map(|n| {
                (0..4u32).map(move |sender| {
                    Stamp {
                        sender,
                        n,
                        scheduled_ns: 0,
                    }
                    .log_position(4)
                })
            })
            .collect();
        seen.sort_unstable();
        assert_eq!(seen, (1..=12).collect::<Vec<u64>>());
    }

    #[test]
    fn round_trips_and_pads_to_payload_size() {
        let s = Stamp {
            sender: 12,
            n: 345,
            scheduled_ns: 9_876_543_210,
        };
        let body = s.encode(100);
        assert_eq!(body.len(), 100);
        assert_eq!(Stamp::parse(&body), Some(s));
    }

    #[test]
    fn largest_stamp_fits_the_minimum() {
        let s = Stamp {
            sender: u32::MAX,
            n: u32::MAX,
            scheduled_ns: u64::MAX,
        };
        let body = s.encode(0);
        assert!(body.len() <= MAX_STAMP_LEN, "{}", body.len());
        assert_eq!(Stamp::parse(&body), Some(s));
    }

    #[test]
    fn foreign_bodies_are_not_stamps() {
        assert_eq!(Stamp::parse("hi"), None);
        assert_eq!(Stamp::parse("dx1 1 2;"), None);
        assert_eq!(Stamp::parse("dx1 a b c;"), None);
    }
}
