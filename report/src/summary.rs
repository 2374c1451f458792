//! The one definition of a summary row: one line per transport with the figures a reader
//! compares first. `summary.csv` is these rows (for the headline run), `sweep.csv` these rows
//! led by the swept value (for every run); the loadgen's terminal table prints the same rows, so
//! none of them can disagree about what a column means.

use serde::{Deserialize, Serialize};

use crate::analysis::Figures;
use crate::results::Phase;

/// The `summary.csv` header, in column order (a documented contract: columns are only ever
/// appended, never renamed or reordered).
pub const HEADER: [&str; 24] = [
    "transport",
    "clients",
    "duration_s",
    "messages_published",
    "deliveries_expected",
    "deliveries_received",
    "missing",
    "duplicates",
    "out_of_order",
    "latency_p50_ms",
    "latency_p90_ms",
    "latency_p99_ms",
    "latency_max_ms",
    "requests",
    "empty_responses",
    "bytes_up",
    "bytes_down",
    "server_cpu_s",
    "server_rss_peak_mib",
    "errors",
    "bytes_up_per_message",
    "bytes_down_per_message",
    "server_rss_growth_per_client_kib",
    "stack",
];

/// One transport's headline figures. Field order is [`HEADER`]'s order (the CSV writer
/// serializes fields in declaration order).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// Transport identifier.
    pub transport: String,
    /// Clients that were meant to run.
    pub clients: u64,
    /// Measured seconds.
    pub duration_s: f64,
    /// Messages the senders published.
    pub messages_published: u64,
    /// Deliveries that should have happened.
    pub deliveries_expected: u64,
    /// Distinct expected messages that arrived.
    pub deliveries_received: u64,
    /// Expected but never arrived.
    pub missing: u64,
    /// Extra copies received.
    pub duplicates: u64,
    /// Arrived after a later message.
    pub out_of_order: u64,
    /// Median delivery latency, ms (empty when nothing was delivered).
    pub latency_p50_ms: Option<f64>,
    /// 90th percentile delivery latency, ms.
    pub latency_p90_ms: Option<f64>,
    /// 99th percentile delivery latency, ms.
    pub latency_p99_ms: Option<f64>,
    /// Largest delivery latency, ms.
    pub latency_max_ms: Option<f64>,
    /// Requests sent (polls, publishes; WebSocket frames sent).
    pub requests: u64,
    /// Poll answers with nothing in them.
    pub empty_responses: u64,
    /// Bytes the clients wrote.
    pub bytes_up: u64,
    /// Bytes the clients read.
    pub bytes_down: u64,
    /// Server CPU seconds during the phase.
    pub server_cpu_s: f64,
    /// Server peak resident memory, MiB.
    pub server_rss_peak_mib: f64,
    /// Failed requests, connects and protocol errors.
    pub errors: u64,
    /// Bytes the clients wrote per delivered message (empty when nothing was delivered).
    pub bytes_up_per_message: Option<f64>,
    /// Bytes the clients read per delivered message.
    pub bytes_down_per_message: Option<f64>,
    /// Server memory growth over the phase (peak − start) per client, KiB.
    pub server_rss_growth_per_client_kib: Option<f64>,
    /// The stack measured, when the run compared several (empty otherwise). Last, as new
    /// columns are only ever appended.
    pub stack: Option<String>,
}

impl SummaryRow {
    /// The row for one measured phase (its latencies from [`Figures`]).
    pub fn from_phase(phase: &Phase) -> Self {
        let figures = Figures::of(phase);
        let ms = |v: Option<f64>| v.map(round3);
        let i = &phase.integrity;
        let t = &phase.traffic;
        Self {
            transport: phase.transport.clone(),
            clients: phase.clients,
            duration_s: round3(phase.duration_s),
            messages_published: phase.messages_published,
            deliveries_expected: i.deliveries_expected,
            deliveries_received: i.deliveries_received,
            missing: i.missing,
            duplicates: i.duplicates,
            out_of_order: i.out_of_order,
            latency_p50_ms: ms(figures.latency_p50_ms),
            latency_p90_ms: ms(figures.latency_p90_ms),
            latency_p99_ms: ms(figures.latency_p99_ms),
            latency_max_ms: ms(figures.latency_max_ms),
            requests: t.requests,
            empty_responses: t.empty_responses,
            bytes_up: t.bytes_up,
            bytes_down: t.bytes_down,
            server_cpu_s: round3(phase.server.cpu_s),
            server_rss_peak_mib: round3(phase.server.rss_peak_bytes as f64 / MIB),
            errors: t.errors,
            bytes_up_per_message: figures.bytes_up_per_message.map(round3),
            bytes_down_per_message: figures.bytes_down_per_message.map(round3),
            server_rss_growth_per_client_kib: figures
                .server_memory_per_client_bytes
                .map(|b| round3(b / 1024.0)),
            stack: phase.stack.clone(),
        }
    }

    /// The row's cells as text, in [`HEADER`] order (empty for a missing latency), for
    /// printing a table without going through CSV.
    pub fn cells(&self) -> [String; 24] {
        let opt = |v: Option<f64>| v.map(|v| v.to_string()).unwrap_or_default();
        [
            self.transport.clone(),
            self.clients.to_string(),
            self.duration_s.to_string(),
            self.messages_published.to_string(),
            self.deliveries_expected.to_string(),
            self.deliveries_received.to_string(),
            self.missing.to_string(),
            self.duplicates.to_string(),
            self.out_of_order.to_string(),
            opt(self.latency_p50_ms),
            opt(self.latency_p90_ms),
            opt(self.latency_p99_ms),
            opt(self.latency_max_ms),
            self.requests.to_string(),
            self.empty_responses.to_string(),
            self.bytes_up.to_string(),
            self.bytes_down.to_string(),
            self.server_cpu_s.to_string(),
            self.server_rss_peak_mib.to_string(),
            self.errors.to_string(),
            opt(self.bytes_up_per_message),
            opt(self.bytes_down_per_message),
            opt(self.server_rss_growth_per_client_kib),
            self.stack.clone().unwrap_or_default(),
        ]
    }
}

const MIB: f64 = 1024.0 * 1024.0;

/// Rounds to three decimals, so files hold `12.345` rather than `12.345000000000001`.
pub(crate) fn round3(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
