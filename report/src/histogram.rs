//! Latency histograms as they travel inside `results.json`: HdrHistogram's V2+Deflate encoding,
//! base64'd into a JSON string, so a report can be rebuilt (and percentiles recomputed exactly)
//! from the file alone, as latte does.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hdrhistogram::Histogram;
use hdrhistogram::serialization::{Deserializer, Serializer as _, V2DeflateSerializer};
use serde::{Deserialize, Serialize, Serializer};

/// Lowest value tracked, in µs.
pub const LOWEST_US: u64 = 1;
/// Highest value tracked, in µs (60 s); larger values are clamped to it when recorded.
pub const HIGHEST_US: u64 = 60_000_000;
/// Significant decimal digits kept.
pub const SIGFIG: u8 = 3;

/// A histogram of microseconds (1 µs .. 60 s, 3 significant digits), serialized compactly.
#[derive(Clone, PartialEq)]
pub struct LatencyHistogram(pub Histogram<u64>);

impl LatencyHistogram {
    /// An empty histogram with the project's bounds.
    pub fn new() -> Self {
        Self(Histogram::new_with_bounds(LOWEST_US, HIGHEST_US, SIGFIG).expect("valid bounds"))
    }

    /// Records one value in µs, clamping into the tracked range so nothing is dropped.
    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.clamp(LOWEST_US, HIGHEST_US));
    }

    /// The value at `quantile` (0..=1) in milliseconds, or `None` when empty.
    pub fn quantile_ms(&self, quantile: f64) -> Option<f64> {
        (!self.0.is_empty()).then(|| self.0.value_at_quantile(quantile) as f64 / 1000.0)
    }

    /// Adds every count of `other` into `self`.
    pub fn merge(&mut self, other: &LatencyHistogram) {
        self.0.add(&other.0).expect("same bounds");
    }

    /// Encodes as base64 of HdrHistogram V2+Deflate.
    pub fn to_base64(&self) -> String {
        let mut bytes = Vec::new();
        V2DeflateSerializer::new()
            .serialize(&self.0, &mut bytes)
            .expect("serializing into a Vec cannot fail");
        STANDARD.encode(bytes)
    }

    /// Decodes what [`LatencyHistogram::to_base64`] wrote.
    pub fn from_base64(text: &str) -> Result<Self, String> {
        let bytes = STANDARD
            .decode(text)
            .map_err(|e| format!("bad base64: {e}"))?;
        let h: Histogram<u64> = Deserializer::new()
            .deserialize(&mut bytes.as_slice())
            .map_err(|e| format!("bad HdrHistogram encoding: {e:?}"))?;
        Ok(Self(h))
    }
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for LatencyHistogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LatencyHistogram(n={})", self.0.len())
    }
}

impl Serialize for LatencyHistogram {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_base64())
    }
}

impl<'de> Deserialize<'de> for LatencyHistogram {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::from_base64(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_json() {
        let mut h = LatencyHistogram::new();
        for us in [5, 250, 1_000, 250_000, 90_000_000] {
            h.record_us(us);
        }
        let json = serde_json::to_string(&h).unwrap();
        let back: LatencyHistogram = serde_json::from_str(&json).unwrap();
        assert_eq!(back.0.len(), 5);
        assert_eq!(back.0.max(), h.0.max());
        assert_eq!(back.quantile_ms(0.5), h.quantile_ms(0.5));
    }
}
