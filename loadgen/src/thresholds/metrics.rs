//! What a threshold can check: every figure of one phase by name ([`METRICS`], the list the
//! README's metric table is checked against) and the histograms read at a quantile
//! ([`HISTOGRAMS`]).

use report::results::Phase;

/// A figure of one phase that a threshold can check.
#[derive(Debug, Clone, Copy)]
pub struct Metric {
    /// Its name as written (`missing`, `latency_p99_ms`).
    pub name: &'static str,
    /// What it is, for the README.
    pub doc: &'static str,
    /// Reads it from a phase; `None` when the phase has no such figure (nothing delivered).
    pub value: fn(&Phase) -> Option<f64>,
}

impl PartialEq for Metric {
    /// Names are unique in [`METRICS`]; function pointers are not comparable.
    fn eq(&self, other: &Metric) -> bool {
        self.name == other.name
    }
}

/// The histogram metrics: `<prefix>p<digits>_ms` and `<prefix>max_ms` for each prefix.
pub(super) const HISTOGRAMS: [(&str, &str); 3] = [
    ("latency_", "delivery latency"),
    ("request_rtt_", "request round trip"),
    ("connect_time_", "connect time"),
];

fn per_s(count: u64, p: &Phase) -> Option<f64> {
    (p.duration_s > 0.0).then(|| count as f64 / p.duration_s)
}

/// Every counter-like metric, in the README's order.
pub const METRICS: [Metric; 21] = [
    Metric {
        name: "missing",
        doc: "deliveries expected but never received",
        value: |p| Some(p.integrity.missing as f64),
    },
    Metric {
        name: "duplicates",
        doc: "extra copies received",
        value: |p| Some(p.integrity.duplicates as f64),
    },
    Metric {
        name: "out_of_order",
        doc: "deliveries with a lower seq than one the client already had",
        value: |p| Some(p.integrity.out_of_order as f64),
    },
    Metric {
        name: "misdelivered",
        doc: "deliveries to a client the message was not for (`chat.mode`)",
        value: |p| Some(p.integrity.misdelivered as f64),
    },
    Metric {
        name: "deliveries_expected",
        doc: "deliveries that should have happened",
        value: |p| Some(p.integrity.deliveries_expected as f64),
    },
    Metric {
        name: "deliveries_received",
        doc: "distinct expected deliveries that arrived",
        value: |p| Some(p.integrity.deliveries_received as f64),
    },
    Metric {
        name: "gaps_reported",
        doc: "messages the server said were lost (gap items)",
        value: |p| Some(p.integrity.gaps_reported as f64),
    },
    Metric {
        name: "messages_published",
        doc: "messages published in the measured window",
        value: |p| Some(p.messages_published as f64),
    },
    Metric {
        name: "clients_connected",
        doc: "clients that connected and subscribed",
        value: |p| Some(p.clients_connected as f64),
    },
    Metric {
        name: "requests",
        doc: "HTTP requests (or WebSocket frames) sent in the window",
        value: |p| Some(p.traffic.requests as f64),
    },
    Metric {
        name: "requests_per_s",
        doc: "`requests` per measured second",
        value: |p| per_s(p.traffic.requests, p),
    },
    Metric {
        name: "empty_responses",
        doc: "poll answers with nothing in them (204)",
        value: |p| Some(p.traffic.empty_responses as f64),
    },
    Metric {
        name: "errors",
        doc: "failed connects, requests and protocol errors",
        value: |p| Some(p.traffic.errors as f64),
    },
    Metric {
        name: "connections_opened",
        doc: "TCP connections opened",
        value: |p| Some(p.traffic.connections_opened as f64),
    },
    Metric {
        name: "bytes_up_per_s",
        doc: "bytes the clients wrote per measured second",
        value: |p| per_s(p.traffic.bytes_up, p),
    },
    Metric {
        name: "bytes_down_per_s",
        doc: "bytes the clients read per measured second",
        value: |p| per_s(p.traffic.bytes_down, p),
    },
    Metric {
        name: "bytes_down_per_delivery",
        doc: "bytes read per delivered message",
        value: |p| {
            (p.integrity.deliveries_received > 0)
                .then(|| p.traffic.bytes_down as f64 / p.integrity.deliveries_received as f64)
        },
    },
    Metric {
        name: "server_cpu_s",
        doc: "server CPU seconds in the window",
        value: |p| Some(p.server.cpu_s),
    },
    Metric {
        name: "server_rss_peak_mib",
        doc: "server's peak resident memory, MiB",
        value: |p| Some(p.server.rss_peak_bytes as f64 / (1024.0 * 1024.0)),
    },
    Metric {
        name: "loadgen_cpu_s",
        doc: "the loadgen's own CPU seconds in the window",
        value: |p| Some(p.loadgen.cpu_s),
    },
    Metric {
        name: "loadgen_saturated",
        doc: "1 when the loadgen was too busy for its figures to be trusted, else 0",
        value: |p| Some(if p.loadgen.saturated { 1.0 } else { 0.0 }),
    },
];
