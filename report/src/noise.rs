//! How far a measurement may stray from its model before the report says they differ: a band
//! derived from the noise the measurement itself shows (how many things were counted), so a
//! small run is not flagged for scatter that a large one would average out, and a latency is
//! judged against the spread its own histogram shows rather than a fixed allowance.

use crate::histogram::LatencyHistogram;
use crate::model::LatencyModel;

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

/// The band around a latency model's quantile `q` (0..1) within which the measured quantile
/// agrees with it, ms: the sum of
/// - sampling noise: the values a 3-sigma interval of ranks around `q` spans in the measured
///   histogram (a quantile of `n` samples is the `qn`-th of them, give or take
///   3·√(q(1−q)n)); `n` is the independent samples among the deliveries (the caller knows
///   which: see [`crate::analysis::Verdicts::judge`]);
/// - the spread the model does not explain, measured among the deliveries the model says did
///   not wait (the fastest 1 − q_wait of them, which the model puts all at one instant): from
///   the fastest delivery up to quantile `q` (or up to the last that did not wait). For SSE
///   and WebSocket nothing waits, so their whole spread is noise; short polling's every
///   message waits, so none of its spread excuses a wrong interval;
/// - the emulated network's jitter, which the model leaves out.
///
/// `None` when nothing was measured. See [`latency_disagrees`] for how the band is used.
pub fn latency_band_ms(
    measured: &LatencyHistogram,
    q: f64,
    model: &LatencyModel,
    independent: u64,
    jitter_ms: f64,
) -> Option<f64> {
    let at = |p: f64| measured.quantile_ms(p.clamp(0.0, 1.0));
    let (value, fastest) = (at(q)?, at(0.0)?);
    let sampling = quantile_sampling_ms(measured, q, independent)?;
    let no_wait = (1.0 - model.wait_share).clamp(0.0, 1.0);
    let unexplained = at(q.min(no_wait))? - fastest;
    // HdrHistogram keeps 3 significant digits: values within 0.1% are one bucket.
    let resolution = value * 1e-3;
    Some(sampling + unexplained + jitter_ms + resolution)
}

/// Half the width of the values a 3-sigma interval of ranks around quantile `q` spans in
/// `measured`, ms, with `independent` samples at most (see [`latency_band_ms`]): how far the
/// quantile of another run like this one could fall from this one's by sampling alone.
/// `None` when the histogram is empty.
pub fn quantile_sampling_ms(measured: &LatencyHistogram, q: f64, independent: u64) -> Option<f64> {
    let n = measured.0.len().min(independent.max(1));
    let at = |p: f64| measured.quantile_ms(p.clamp(0.0, 1.0));
    let delta = 3.0 * (q * (1.0 - q) / n as f64).sqrt() + 1.0 / n as f64;
    Some((at(q + delta)? - at(q - delta)?) / 2.0)
}

/// What the floor measurement ([`crate::results::Phase::model_floor_ms`]) adds to a latency
/// band, ms.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct FloorAllowance {
    /// How much the floor's own samples scattered: a delivery's service time is known no
    /// better than that, in either direction.
    pub spread_ms: f64,
    /// How much later than the model a delivery may be, never earlier: the floor itself. It is
    /// measured on an idle server, and a server busy with a phase's clients serves a little
    /// slower, never faster (for short polling, whose model leaves the floor out, it is the
    /// service time every delivery pays).
    pub above_ms: f64,
}

/// `true` when a measured latency quantile lies outside the model's `band`
/// ([`latency_band_ms`]) widened by the floor measurement's spread on both sides and by the
/// floor above the model ([`FloorAllowance`]). Below the model there is no allowance beyond
/// the noise and the spread, so a floor set too high is still caught; above it, a model that
/// forgot more than the server's own time (a wrong interval, a missing trip) is still caught.
pub fn latency_disagrees(
    measured_ms: f64,
    expected_ms: f64,
    band: f64,
    floor: FloorAllowance,
) -> bool {
    let excess = measured_ms - expected_ms;
    let both_ways = band + floor.spread_ms;
    excess > both_ways + floor.above_ms || -excess > both_ways
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(values_us: impl IntoIterator<Item = u64>) -> LatencyHistogram {
        let mut h = LatencyHistogram::new();
        for v in values_us {
            h.record_us(v);
        }
        h
    }

    fn push_model(delay_ms: f64) -> LatencyModel {
        LatencyModel {
            delay_ms,
            wait_share: 0.0,
            wait_max_ms: 0.0,
        }
    }

    #[test]
    fn a_push_latency_near_its_floor_agrees_and_one_far_from_it_does_not() {
        // 1,000 deliveries between 0.3 and 0.8 ms, as on loopback.
        let h = histogram((0..1000).map(|i| 300 + i / 2));
        let p50 = h.quantile_ms(0.5).unwrap();
        let right = push_model(0.35);
        let band = latency_band_ms(&h, 0.5, &right, 1000, 0.0).unwrap();
        assert!((p50 - 0.35).abs() <= band, "p50 {p50} band {band}");
        let floor = FloorAllowance {
            spread_ms: 0.05,
            above_ms: 0.35,
        };
        assert!(!latency_disagrees(p50, 0.35, band, floor));
        // A model 5 ms off (a floor set too high, a wrong rtt) is far outside the spread.
        let wrong = push_model(5.35);
        let band = latency_band_ms(&h, 0.5, &wrong, 1000, 0.0).unwrap();
        assert!((p50 - 5.35).abs() > band, "band {band}");
        let high = FloorAllowance {
            spread_ms: 0.05,
            above_ms: 5.35,
        };
        assert!(latency_disagrees(p50, 5.35, band, high));
        // Measured far above a tiny floor: a slow server, or a model that forgot something.
        assert!(latency_disagrees(p50 + 5.0, 0.35, band, floor));
    }

    #[test]
    fn a_short_poll_model_with_the_wrong_interval_is_outside_the_band() {
        // Waits spread evenly over a 500 ms interval, 2,000 deliveries.
        let h = histogram((0..2000).map(|i| 1 + i * 250));
        let p50 = h.quantile_ms(0.5).unwrap();
        let model = |t_ms: f64| LatencyModel {
            delay_ms: 0.0,
            wait_share: 1.0,
            wait_max_ms: t_ms,
        };
        let right = latency_band_ms(&h, 0.5, &model(500.0), 2000, 0.0).unwrap();
        assert!((p50 - 250.0).abs() <= right, "band {right}");
        let wrong = latency_band_ms(&h, 0.5, &model(400.0), 2000, 0.0).unwrap();
        assert!((p50 - 200.0).abs() > wrong, "band {wrong}");
        // Fewer independent samples widen the band.
        let few = latency_band_ms(&h, 0.5, &model(500.0), 20, 0.0).unwrap();
        assert!(few > right);
    }

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
