//! The run's one seed, split into independent streams: each random choice (a sender's publish
//! schedule, a client's poll phase, a connection's network jitter) draws from a generator
//! seeded with [`derive()`]`(seed, stream, index)`, so the same scenario seed makes the same
//! choices, and no choice shifts when another stream draws more or less.

/// Which random choice a generator is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// A sender's publish schedule (index: the sender).
    Schedule = 1,
    /// A client's poll phases (index: the client).
    PollPhase = 2,
    /// A connection's jitter (index: the connection's number in its phase).
    Jitter = 3,
}

/// A generator seed for `stream`'s `index`-th user under the run's `seed` (splitmix64 of the
/// three, so nearby inputs give unrelated seeds).
pub fn derive(seed: u64, stream: Stream, index: u64) -> u64 {
    let mut z = seed
        .wrapping_add((stream as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15))
        .wrapping_add(index.wrapping_mul(0xbf58_476d_1ce4_e5b9));
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_and_indices_get_different_seeds_and_the_same_inputs_the_same() {
        assert_eq!(derive(7, Stream::Jitter, 3), derive(7, Stream::Jitter, 3));
        assert_ne!(derive(7, Stream::Jitter, 3), derive(8, Stream::Jitter, 3));
        assert_ne!(derive(7, Stream::Jitter, 3), derive(7, Stream::Jitter, 4));
        assert_ne!(
            derive(7, Stream::Jitter, 3),
            derive(7, Stream::PollPhase, 3)
        );
    }
}
