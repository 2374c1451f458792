//! The CSV files beside `index.html`, for readers who want the numbers in a spreadsheet:
//! `summary.csv` (one [`SummaryRow`] per transport), `latency_percentiles.csv` and
//! `timeseries.csv`. When the results hold several sweep runs, every file lists the runs one
//! after another in the order they ran (the `clients` column of `summary.csv` tells them
//! apart when clients are swept). Each writer takes any `io::Write`, so tests write to a Vec.

use std::io;

use serde::{Deserialize, Serialize};

use crate::results::Results;
use crate::summary::{self, SummaryRow, round3};

/// `latency_percentiles.csv`'s header.
pub const LATENCY_PERCENTILES_HEADER: [&str; 3] = ["transport", "percentile", "latency_ms"];
/// `timeseries.csv`'s header.
pub const TIMESERIES_HEADER: [&str; 6] = [
    "transport",
    "second",
    "requests",
    "deliveries",
    "bytes_down",
    "in_flight",
];

/// The percentiles listed in `latency_percentiles.csv` (100 is the maximum).
pub const PERCENTILES: [f64; 11] = [
    1.0, 10.0, 25.0, 50.0, 75.0, 90.0, 95.0, 99.0, 99.9, 99.99, 100.0,
];

/// One line of `latency_percentiles.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PercentileRow {
    /// Transport identifier.
    pub transport: String,
    /// Percentile, 0..=100.
    pub percentile: f64,
    /// Delivery latency at that percentile, ms.
    pub latency_ms: f64,
}

/// One line of `timeseries.csv`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimeseriesRow {
    /// Transport identifier.
    pub transport: String,
    /// Seconds since the phase start.
    pub second: u32,
    /// Requests started in that second.
    pub requests: u64,
    /// Messages delivered in that second.
    pub deliveries: u64,
    /// Bytes read by clients in that second.
    pub bytes_down: u64,
    /// Requests in flight at the end of that second.
    pub in_flight: u64,
}

/// Writes `summary.csv`.
pub fn write_summary<W: io::Write>(results: &Results, out: W) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(summary::HEADER)?;
    for row in summary::rows(results) {
        w.serialize::<SummaryRow>(row)?;
    }
    w.flush()?;
    Ok(())
}

/// Writes `latency_percentiles.csv`; a phase that delivered nothing has no lines.
pub fn write_latency_percentiles<W: io::Write>(
    results: &Results,
    out: W,
) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(LATENCY_PERCENTILES_HEADER)?;
    for phase in results.runs.iter().flat_map(|r| &r.phases) {
        for percentile in PERCENTILES {
            if let Some(ms) = phase.latency.quantile_ms(percentile / 100.0) {
                w.serialize(PercentileRow {
                    transport: phase.transport.clone(),
                    percentile,
                    latency_ms: round3(ms),
                })?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// Writes `timeseries.csv`.
pub fn write_timeseries<W: io::Write>(results: &Results, out: W) -> Result<(), csv::Error> {
    let mut w = csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out);
    w.write_record(TIMESERIES_HEADER)?;
    for phase in results.runs.iter().flat_map(|r| &r.phases) {
        for s in &phase.timeseries {
            w.serialize(TimeseriesRow {
                transport: phase.transport.clone(),
                second: s.second,
                requests: s.requests,
                deliveries: s.deliveries,
                bytes_down: s.bytes_down,
                in_flight: s.in_flight,
            })?;
        }
    }
    w.flush()?;
    Ok(())
}
