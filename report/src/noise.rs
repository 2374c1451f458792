//! How far a measurement may stray from its model before the report says they differ: a band
//! derived from the noise the measurement itself shows (how many things were counted), so a
//! small run is not flagged for scatter that a large one would average out.

/// An allowed difference: an absolute part plus a part relative to the expected value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tolerance {
    /// Allowed absolute difference, in the metric's unit.
    pub abs: f64,
    /// Allowed difference relative to the expected value.
    pub rel: f64,
}

impl Tolerance {
    /// `true` when `measured` is further from `expected` than noise explains.
    pub fn disagrees(&self, measured: f64, expected: f64) -> bool {
        (measured - expected).abs() > self.abs + self.rel * expected.abs()
    }
}

/// The band for a rate from `count` events: a Poisson count of n has a standard deviation of
/// √n, so three of them relative to n, plus what the model leaves out (ramp-up, random poll
/// phases: 15%) and one event per second of rounding.
pub fn count_tolerance(count: u64) -> Tolerance {
    let counted = count.max(1) as f64;
    Tolerance {
        abs: 1.0,
        rel: 0.15 + 3.0 / counted.sqrt(),
    }
}

/// The band for a share `p` observed over `n` trials: three binomial standard deviations,
/// plus 3 points for what the model leaves out.
pub fn share_tolerance(p: f64, n: u64) -> Tolerance {
    let n = n.max(1) as f64;
    Tolerance {
        abs: 0.03 + 3.0 * (p * (1.0 - p) / n).sqrt(),
        rel: 0.2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerance_marks_only_differences_beyond_noise() {
        let t = Tolerance { abs: 5.0, rel: 0.2 };
        assert!(!t.disagrees(110.0, 100.0));
        assert!(!t.disagrees(124.0, 100.0));
        assert!(t.disagrees(126.0, 100.0));
        assert!(t.disagrees(74.0, 100.0));
    }

    #[test]
    fn fewer_counts_allow_more_scatter() {
        assert!(count_tolerance(100).rel > count_tolerance(10_000).rel);
        assert!(share_tolerance(0.5, 10).abs > share_tolerance(0.5, 10_000).abs);
    }
}
