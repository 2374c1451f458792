//! The CSV files beside `index.html`, for readers who want the numbers in a spreadsheet. Each
//! writer takes any `io::Write`, so tests write to a Vec.
//!
//! | file | columns | rows |
//! |---|---|---|
//! | `summary.csv` | [`summary::HEADER`] | one per transport |
//! | `latency_percentiles.csv` | `transport,percentile,latency_ms,stack` | per transport, one per [`PERCENTILES`] (none when nothing was delivered) |
//! | `timeseries.csv` | `transport,second,requests,deliveries,bytes_down,in_flight,stack` | per transport, one per second of its phase (each phase starts at second 0) |
//! | `sweep.csv` (only when the scenario sweeps a key) | the swept key (e.g. `clients.count`), then [`summary::HEADER`] | one per (run, transport), in the order run |
//!
//! The first three describe **one run**, the one the page's sections 1–5 show
//! ([`crate::headline_run`]: the last, which for a sweep is usually the largest), so their
//! rows never mix runs that nothing in the row could tell apart. `sweep.csv` holds every run,
//! each row led by the swept key's value. Columns are a documented contract: only ever
//! appended, never renamed or reordered.

use std::io;

use serde::{Deserialize, Serialize};

use crate::headline_run;
use crate::results::{Phase, Results};
use crate::summary::{self, SummaryRow, round3};

/// `latency_percentiles.csv`'s header.
pub const LATENCY_PERCENTILES_HEADER: [&str; 4] =
    ["transport", "percentile", "latency_ms", "stack"];
/// `timeseries.csv`'s header.
pub const TIMESERIES_HEADER: [&str; 7] = [
    "transport",
    "second",
    "requests",
    "deliveries",
    "bytes_down",
    "in_flight",
    "stack",
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
    /// The stack, when the run compared several.
    pub stack: Option<String>,
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
    /// The stack, when the run compared several.
    pub stack: Option<String>,
}

/// The phases of the run the per-run files describe (none when the results hold no run).
fn headline_phases(results: &Results) -> &[Phase] {
    headline_run(results).map_or(&[], |run| &run.phases)
}

fn writer<W: io::Write>(out: W) -> csv::Writer<W> {
    // Headers are written by hand from the documented constants, so an empty file still has one.
    csv::WriterBuilder::new()
        .has_headers(false)
        .from_writer(out)
}

/// Writes `summary.csv`: one row per transport of the headline run.
pub fn write_summary<W: io::Write>(results: &Results, out: W) -> Result<(), csv::Error> {
    let mut w = writer(out);
    w.write_record(summary::HEADER)?;
    for phase in headline_phases(results) {
        w.serialize(SummaryRow::from_phase(phase))?;
    }
    w.flush()?;
    Ok(())
}

/// Writes `latency_percentiles.csv` for the headline run; a phase that delivered nothing has
/// no lines.
pub fn write_latency_percentiles<W: io::Write>(
    results: &Results,
    out: W,
) -> Result<(), csv::Error> {
    let mut w = writer(out);
    w.write_record(LATENCY_PERCENTILES_HEADER)?;
    for phase in headline_phases(results) {
        for percentile in PERCENTILES {
            if let Some(ms) = phase.latency.quantile_ms(percentile / 100.0) {
                w.serialize(PercentileRow {
                    transport: phase.transport.clone(),
                    percentile,
                    latency_ms: round3(ms),
                    stack: phase.stack.clone(),
                })?;
            }
        }
    }
    w.flush()?;
    Ok(())
}

/// Writes `timeseries.csv` for the headline run.
pub fn write_timeseries<W: io::Write>(results: &Results, out: W) -> Result<(), csv::Error> {
    let mut w = writer(out);
    w.write_record(TIMESERIES_HEADER)?;
    for phase in headline_phases(results) {
        for s in &phase.timeseries {
            w.serialize(TimeseriesRow {
                transport: phase.transport.clone(),
                second: s.second,
                requests: s.requests,
                deliveries: s.deliveries,
                bytes_down: s.bytes_down,
                in_flight: s.in_flight,
                stack: phase.stack.clone(),
            })?;
        }
    }
    w.flush()?;
    Ok(())
}

/// `sweep.csv`'s header: the swept key (e.g. `clients.count`), then [`summary::HEADER`].
pub fn sweep_header(key: &str) -> Vec<&str> {
    std::iter::once(key).chain(summary::HEADER).collect()
}

/// Writes `sweep.csv`: one row per (run, transport), in the order run, each led by the swept
/// key's value. [`crate::write_all`] writes it only for a sweep; without one, the first column
/// is named `sweep_value` and left empty.
pub fn write_sweep<W: io::Write>(results: &Results, out: W) -> Result<(), csv::Error> {
    let key = results
        .scenario
        .sweep
        .as_ref()
        .map_or("sweep_value", |s| s.key.as_str());
    let mut w = writer(out);
    w.write_record(sweep_header(key))?;
    for run in &results.runs {
        for phase in &run.phases {
            w.serialize((run.sweep_value, SummaryRow::from_phase(phase)))?;
        }
    }
    w.flush()?;
    Ok(())
}
