//! The guided experiment as a results document, the same `results.json` the loadgen writes
//! (`report::Results`), so `duplex report` renders it like any run. What differs is said in
//! the document itself: `measured_in_browsers` (the report shows it at the top), with a note per
//! transport of what the server counted at its own sockets during that phase.
//!
//! Per transport, the pages' figures are summed; the delays of every flash every page saw go
//! into the phase's latency histogram; a flash a page did not see counts as missing. What a
//! page cannot measure (CPU, the loadgen's own cost, per-second series, traces) is left empty.

use std::net::SocketAddr;
use std::time::{Duration, UNIX_EPOCH};

use report::LatencyHistogram;
use report::results::{
    BrowserRun, Environment, Integrity, NetworkInfo, Phase, Results, Run, SCHEMA_VERSION,
    ScenarioInfo, ServerCost, Traffic, rfc3339,
};

use super::{Experiment, PhaseFigures};

/// What the pages measure and what they estimate, for the report's banner.
const METHOD: &str = "Requests, empty answers, bytes received and every flash's delay were \
    counted by each page in its own browser (delays against the server's clock, aligned over \
    /live/clock). Bytes sent over HTTP are estimates: a page sees its request line, the headers \
    it sets and the body, not the headers the browser adds (User-Agent, Accept, cookies), and \
    the WebSocket handshake is estimated from the headers a browser sends. Resource Timing \
    gives real response body sizes, but Chromium reports a fixed 300 bytes for headers, so no \
    header size comes from it. The notes below give the server's own count at its sockets, \
    per transport, which includes every real header.";

/// The latest experiment as a results document; `listening` names the server in it.
pub fn results(e: &Experiment, listening: Option<SocketAddr>) -> Results {
    let phase_s = e
        .plan
        .phases
        .first()
        .map_or(0.0, |p| (p.end_us - p.start_us) as f64 / 1e6);
    let pages = e.participants.len() as u64;
    let reporting = e
        .reports
        .keys()
        .map(|(tab, _)| tab)
        .collect::<std::collections::HashSet<_>>()
        .len() as u64;
    let phases: Vec<Phase> = e
        .plan
        .phases
        .iter()
        .enumerate()
        .map(|(i, planned)| {
            let figures: Vec<&PhaseFigures> = e
                .reports
                .iter()
                .filter(|((_, phase), _)| *phase == i)
                .map(|(_, f)| f)
                .collect();
            phase(e, i, planned.transport.as_str(), phase_s, &figures)
        })
        .collect();
    let last_end = e.plan.phases.last().map_or(e.started_us, |p| p.end_us);
    let notes = e
        .plan
        .phases
        .iter()
        .zip(&e.server)
        .filter_map(|(p, count)| {
            count.map(|c| {
                format!(
                    "{}: the server counted {} requests, {} bytes received and {} bytes sent at \
                     its sockets during this phase (every real header included; the pages \
                     counted {} requests, {} bytes sent and {} received)",
                    p.transport,
                    c.requests,
                    c.bytes_received,
                    c.bytes_sent,
                    page_sum(e, p.transport, |f| f.requests),
                    page_sum(e, p.transport, |f| f.bytes_up),
                    page_sum(e, p.transport, |f| f.bytes_down),
                )
            })
        })
        .collect();
    Results {
        schema_version: SCHEMA_VERSION,
        scenario: ScenarioInfo {
            name: "classroom".into(),
            description: format!(
                "The live page's guided experiment: every student's browser ran each transport \
                 in turn for {} s while the server published a flash every {} ms.",
                report::format::real(phase_s),
                e.plan.flash_every_ms
            ),
            transports: e
                .plan
                .phases
                .iter()
                .map(|p| p.transport.as_str().to_owned())
                .collect(),
            duration_s: phase_s,
            warmup_s: 0.0,
            drain_s: 0.0,
            clients: pages,
            connect_rate: 0.0,
            room: e.rooms.join(", "),
            senders: 1,
            rate_per_sender: 1000.0 / e.plan.flash_every_ms as f64,
            payload_bytes: 0,
            chat_mode: None,
            short_poll_interval_ms: e.plan.short_poll_interval_ms as f64,
            long_poll_timeout_ms: 25_000.0,
            network: NetworkInfo::default(),
            sweep: None,
            seed: None,
            cluster_nodes: 1,
        },
        environment: Environment {
            duplex_version: env!("CARGO_PKG_VERSION").into(),
            git_commit: None,
            os: "students' browsers".into(),
            cpu_model: "students' laptops".into(),
            target: listening.map_or_else(
                || "duplex serve (live classroom)".into(),
                |at| format!("duplex serve at {at} (live classroom)"),
            ),
            ..Environment::default()
        },
        started_at: rfc3339(UNIX_EPOCH + Duration::from_micros(e.started_us)),
        wall_time_s: (last_end.saturating_sub(e.started_us)) as f64 / 1e6,
        complete: e.finished && reporting == pages,
        warnings: Vec::new(),
        runs: vec![Run {
            sweep_value: None,
            clients: pages,
            rate_per_sender: 1000.0 / e.plan.flash_every_ms as f64,
            short_poll_interval_ms: e.plan.short_poll_interval_ms as f64,
            rtt_ms: 0.0,
            phases,
        }],
        measured_in_browsers: Some(BrowserRun {
            pages,
            pages_reporting: reporting,
            method: METHOD.into(),
            notes,
        }),
        checks: Vec::new(),
    }
}

/// The sum of `field` over the pages' figures for `transport`'s phase.
fn page_sum(e: &Experiment, transport: wire::Transport, field: fn(&PhaseFigures) -> u64) -> u64 {
    e.reports
        .values()
        .filter(|f| f.transport == transport)
        .map(field)
        .sum()
}

/// One transport's phase from the pages' figures for it.
fn phase(
    e: &Experiment,
    i: usize,
    transport: &str,
    phase_s: f64,
    figures: &[&PhaseFigures],
) -> Phase {
    let mut latency = LatencyHistogram::new();
    let mut traffic: Traffic = Traffic::default();
    let mut received = 0;
    for f in figures {
        for d in &f.delays {
            latency.record_us((d.delay_ms * 1000.0).round() as u64);
        }
        received += f.delays.len() as u64;
        traffic.requests += f.requests;
        traffic.empty_responses += f.empty_responses;
        traffic.connections_opened += f.connections_opened;
        traffic.errors += f.errors;
        traffic.bytes_up += f.bytes_up;
        traffic.bytes_down += f.bytes_down;
        traffic.header_down += f.header_down;
        traffic.payload_down += f.payload_down;
    }
    traffic.framing_down = traffic
        .bytes_down
        .saturating_sub(traffic.header_down + traffic.payload_down);
    let published = e.flashes[i].len() as u64;
    let expected = published * figures.len() as u64;
    let mut warnings = Vec::new();
    let missing_pages = e.participants.len() - figures.len();
    if missing_pages > 0 {
        warnings.push(format!(
            "{missing_pages} of {} pages sent no figures for this phase",
            e.participants.len()
        ));
    }
    let headers: Vec<u64> = figures
        .iter()
        .filter_map(|f| f.resource_timing_header_down)
        .collect();
    if !headers.is_empty() {
        warnings.push(format!(
            "{} page(s) reported real response header sizes from Resource Timing: {} bytes",
            headers.len(),
            headers.iter().sum::<u64>()
        ));
    }
    Phase {
        transport: transport.to_owned(),
        clients: e.participants.len() as u64,
        clients_connected: figures.len() as u64,
        duration_s: phase_s,
        complete: e.server[i].is_some() && missing_pages == 0,
        messages_published: published,
        integrity: Integrity {
            deliveries_expected: expected,
            deliveries_received: received,
            missing: expected.saturating_sub(received),
            ..Integrity::default()
        },
        latency,
        request_rtt: LatencyHistogram::new(),
        connect_time: LatencyHistogram::new(),
        traffic,
        server: ServerCost::default(),
        loadgen: Default::default(),
        timeseries: Vec::new(),
        traces: Vec::new(),
        warnings,
        model_floor_ms: None,
        model_floor_spread_ms: None,
        stack: None,
        reconnects: 0,
        node_killed: None,
        server_processes: Vec::new(),
        latency_by_node: None,
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{HashMap, HashSet};

    use super::*;
    use crate::live::experiment::{FlashDelay, Plan, PlannedPhase, ServerCount};
    use wire::Transport;

    fn experiment() -> Experiment {
        let phases: Vec<PlannedPhase> = Transport::ALL
            .into_iter()
            .enumerate()
            .map(|(i, transport)| PlannedPhase {
                transport,
                start_us: 1_000_000 + i as u64 * 4_000_000,
                end_us: 5_000_000 + i as u64 * 4_000_000,
            })
            .collect();
        let mut reports = HashMap::new();
        for (i, p) in phases.iter().enumerate() {
            for tab in ["a", "b"] {
                reports.insert(
                    (tab.to_owned(), i),
                    PhaseFigures {
                        experiment: 1,
                        phase: i,
                        tab: tab.into(),
                        transport: p.transport,
                        requests: if p.transport == Transport::ShortPoll {
                            8
                        } else {
                            1
                        },
                        empty_responses: 0,
                        connections_opened: 1,
                        errors: 0,
                        bytes_up: 300,
                        bytes_down: 2000,
                        header_down: 500,
                        payload_down: 800,
                        resource_timing_header_down: None,
                        delays: vec![
                            FlashDelay {
                                flash: 10 * i as u64 + 1,
                                delay_ms: 3.0,
                            },
                            FlashDelay {
                                flash: 10 * i as u64 + 2,
                                delay_ms: 5.0,
                            },
                        ],
                    },
                );
            }
        }
        Experiment {
            plan: Plan {
                experiment: 1,
                phases,
                flash_every_ms: 500,
                short_poll_interval_ms: 500,
            },
            started_us: 1_700_000_000_000_000,
            participants: HashSet::from(["a".to_owned(), "b".to_owned(), "c".to_owned()]),
            rooms: vec!["lobby".into()],
            flashes: (0..4)
                .map(|i| (1..=3).map(|n| (10 * i + n, 0)).collect())
                .collect(),
            server: vec![
                Some(ServerCount {
                    requests: 17,
                    bytes_received: 9000,
                    bytes_sent: 4000
                });
                4
            ],
            reports,
            finished: true,
        }
    }

    #[test]
    fn pages_figures_are_summed_per_transport_and_a_missing_page_is_said() {
        let doc = results(&experiment(), None);
        let b = doc.measured_in_browsers.as_ref().unwrap();
        assert_eq!((b.pages, b.pages_reporting), (3, 2));
        assert!(!doc.complete, "one page never reported");
        let phases = &doc.runs[0].phases;
        assert_eq!(phases.len(), 4);
        let short = &phases[0];
        assert_eq!(short.transport, "short_poll");
        assert_eq!(short.traffic.requests, 16);
        assert_eq!(short.traffic.framing_down, 2 * 700);
        assert_eq!(short.integrity.deliveries_expected, 6);
        assert_eq!(short.integrity.deliveries_received, 4);
        assert_eq!(short.integrity.missing, 2);
        assert_eq!(short.latency.quantile_ms(0.5).map(f64::round), Some(3.0));
        assert!(
            b.notes[0]
                .starts_with("short_poll: the server counted 17 requests, 9000 bytes received"),
            "{:?}",
            b.notes
        );
        assert!(short.warnings.iter().any(|w| w.contains("1 of 3 pages")));
    }

    #[test]
    fn the_document_renders_as_a_report_that_says_it_was_measured_in_browsers() {
        let doc = results(&experiment(), None);
        let text = serde_json::to_string(&doc).unwrap();
        let back: Results = serde_json::from_str(&text).unwrap();
        assert_eq!(back, doc);
        let html = report::render_html(&back).expect("renders");
        assert!(
            html.contains("Measured in browsers: 2 of 3 student pages"),
            "no banner"
        );
    }
}
