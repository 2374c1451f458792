//! The report card: one column per transport, one row per question a reader asks ("how late?",
//! "how many requests?", "how many bytes?"), each cell holding the measured value, the model's
//! value, and a mark when the two differ by more than noise explains. Also the plain-language
//! explanation of each transport, written from its own numbers.

use crate::model::{self, Tolerance};
use crate::results::{Phase, Results, Run};
use crate::transport::{self, Transport};

use super::format;

/// The card, ready for the template.
pub struct Card {
    /// One per phase, in the order run.
    pub columns: Vec<CardColumn>,
    /// The rows, top to bottom.
    pub rows: Vec<CardRow>,
}

/// A transport's column header and explanation.
pub struct CardColumn {
    /// Display name.
    pub label: String,
    /// Identifier.
    pub id: String,
    /// Its colour.
    pub colour: &'static str,
    /// What the transport does, with this run's numbers.
    pub explanation: String,
}

/// One metric across transports.
pub struct CardRow {
    /// What is measured, with its unit.
    pub metric: &'static str,
    /// How to read it, in a few words.
    pub hint: &'static str,
    /// One per column.
    pub cells: Vec<CardCell>,
}

/// One metric of one transport.
pub struct CardCell {
    /// The measured value, formatted.
    pub measured: String,
    /// A second line under the measured value (e.g. per client), if any.
    pub detail: String,
    /// The model's value, formatted, when a model exists.
    pub expected: Option<String>,
    /// `true` when measured and expected differ beyond noise.
    pub flagged: bool,
}

impl CardCell {
    fn plain(measured: String, detail: String) -> Self {
        Self {
            measured,
            detail,
            expected: None,
            flagged: false,
        }
    }

    fn compared(
        measured: Option<f64>,
        expected: Option<f64>,
        tolerance: Tolerance,
        fmt: fn(f64) -> String,
        detail: String,
    ) -> Self {
        let flagged = match (measured, expected) {
            (Some(m), Some(e)) => tolerance.disagrees(m, e),
            _ => false,
        };
        Self {
            measured: measured.map_or_else(|| "—".into(), fmt),
            detail,
            expected: expected.map(fmt),
            flagged,
        }
    }
}

/// Measured figures of a phase that the card's cells and its explanations share.
pub struct Measured {
    /// Requests per second, all clients.
    pub requests_per_s: f64,
    /// Poll answers (requests that were not publishes), for the empty share.
    pub poll_answers: u64,
    /// Share of poll answers that were empty.
    pub empty_share: Option<f64>,
    /// Bytes read per delivered message.
    pub bytes_per_message: Option<f64>,
}

impl Measured {
    /// Derives the figures from a phase.
    pub fn of(phase: &Phase) -> Self {
        let t = &phase.traffic;
        let duration = phase.duration_s.max(1e-9);
        // `requests` counts publishes too; an empty answer can only be a poll's.
        let poll_answers = t.requests.saturating_sub(phase.messages_published);
        let polling = phase
            .transport
            .parse::<Transport>()
            .ok()
            .is_some_and(Transport::is_polling);
        let delivered = phase.integrity.deliveries_received;
        Self {
            requests_per_s: t.requests as f64 / duration,
            poll_answers,
            empty_share: (polling && poll_answers > 0)
                .then(|| t.empty_responses as f64 / poll_answers as f64),
            bytes_per_message: (delivered > 0).then(|| t.bytes_down as f64 / delivered as f64),
        }
    }
}

/// Builds the card for one run.
pub fn card(results: &Results, run: &Run) -> Card {
    let scenario = &results.scenario;
    let jitter = run_jitter(results);
    let mut columns = Vec::new();
    let mut cells: Vec<Vec<CardCell>> = (0..9).map(|_| Vec::new()).collect();
    for phase in &run.phases {
        let expected = model::expected_for_phase(scenario, run, phase);
        let measured = Measured::of(phase);
        columns.push(CardColumn {
            label: transport::label_of(&phase.transport),
            id: phase.transport.clone(),
            colour: transport::colour_of(&phase.transport),
            explanation: explanation(results, run, phase, &measured),
        });
        let latency_tol = |abs_ms: f64| Tolerance {
            abs: abs_ms + jitter,
            rel: 0.25,
        };
        cells[0].push(CardCell::compared(
            phase.latency.quantile_ms(0.5),
            expected.map(|e| e.latency_p50_ms),
            latency_tol(5.0),
            format::ms,
            String::new(),
        ));
        cells[1].push(CardCell::compared(
            phase.latency.quantile_ms(0.99),
            expected.map(|e| e.latency_p99_ms),
            latency_tol(10.0),
            format::ms,
            String::new(),
        ));
        let per_client = if phase.clients > 0 {
            format!(
                "{} per client",
                format::real(measured.requests_per_s / phase.clients as f64)
            )
        } else {
            String::new()
        };
        // Counting noise: a Poisson count of n has a standard deviation of √n.
        let counted = phase.traffic.requests.max(1) as f64;
        cells[2].push(CardCell::compared(
            Some(measured.requests_per_s),
            expected.map(|e| e.requests_per_s),
            Tolerance {
                abs: 1.0,
                rel: 0.15 + 3.0 / counted.sqrt(),
            },
            format::real,
            per_client,
        ));
        cells[3].push(CardCell::compared(
            measured.bytes_per_message,
            expected.and_then(|e| e.bytes_per_message),
            Tolerance {
                abs: 10.0,
                rel: 0.25,
            },
            format::bytes,
            format!(
                "{} read in all",
                format::bytes(phase.traffic.bytes_down as f64)
            ),
        ));
        let empty_expected = expected.and_then(|e| e.empty_share);
        let empty_detail = if empty_expected.is_some() {
            format!(
                "{} of {}",
                format::count(phase.traffic.empty_responses),
                format::count(measured.poll_answers)
            )
        } else {
            "no poll answers".into()
        };
        let n = measured.poll_answers.max(1) as f64;
        let p = empty_expected.unwrap_or(0.0);
        cells[4].push(CardCell::compared(
            measured.empty_share,
            empty_expected,
            Tolerance {
                abs: 0.03 + 3.0 * (p * (1.0 - p) / n).sqrt(),
                rel: 0.2,
            },
            format::share,
            empty_detail,
        ));
        // Two figures, because the server's per-transport gauge counts a short poll's
        // keep-alive connection only while a request is in flight: the TCP connections it held
        // (0 in results older than that field: shown as unknown), and of those, what it was
        // holding open for this transport.
        let tcp = phase.server.tcp_connections_peak;
        let held_open = match phase.transport.parse::<Transport>().ok() {
            Some(Transport::Sse) => "streams",
            Some(Transport::WebSocket) => "sockets",
            _ => "requests",
        };
        cells[5].push(CardCell::plain(
            if tcp > 0 {
                format::count(tcp)
            } else {
                "—".into()
            },
            format!(
                "{} {held_open} held open · {} opened",
                format::count(phase.server.open_connections_peak),
                format::count(phase.traffic.connections_opened)
            ),
        ));
        let core_share = phase.server.cpu_s / phase.duration_s.max(1e-9);
        cells[6].push(CardCell::plain(
            format!("{:.2} s", phase.server.cpu_s),
            format!("{} of one core", format::share(core_share)),
        ));
        cells[7].push(CardCell::plain(
            format::mib(phase.server.rss_peak_bytes),
            format!(
                "{} before clients",
                format::mib(phase.server.rss_start_bytes)
            ),
        ));
        let i = &phase.integrity;
        cells[8].push(CardCell {
            measured: format!("{} / {} / {}", i.missing, i.duplicates, i.out_of_order),
            detail: format!(
                "{} of {} delivered",
                format::count(i.deliveries_received),
                format::count(i.deliveries_expected)
            ),
            expected: Some("0 / 0 / 0".into()),
            flagged: i.missing + i.duplicates + i.out_of_order > 0,
        });
    }
    let labels: [(&str, &str); 9] = [
        (
            "Latency p50",
            "scheduled publish to receipt; half the messages arrived faster",
        ),
        ("Latency p99", "1 in 100 messages took longer"),
        ("Requests / s", "all clients together"),
        (
            "Bytes per delivered message",
            "everything read ÷ messages delivered",
        ),
        (
            "Empty answers",
            "poll answers that carried nothing; the model assumes messages at random times",
        ),
        (
            "TCP connections held (peak)",
            "at once, idle keep-alive ones included; under it: streams or requests the server was holding open, and connections clients opened",
        ),
        ("Server CPU", "during the measured seconds"),
        ("Server memory (peak)", "resident set size"),
        (
            "Missing / duplicated / out of order",
            "integrity: all should be 0",
        ),
    ];
    let rows = labels
        .into_iter()
        .zip(cells)
        .map(|((metric, hint), cells)| CardRow {
            metric,
            hint,
            cells,
        })
        .collect();
    Card { columns, rows }
}

/// Jitter widens every latency tolerance: the model leaves it out.
fn run_jitter(results: &Results) -> f64 {
    results.scenario.network.jitter_ms
}

/// The transport's explanation for students, written around this run's numbers.
fn explanation(results: &Results, run: &Run, phase: &Phase, measured: &Measured) -> String {
    let clients = format::count(phase.clients);
    let req = format::real(measured.requests_per_s);
    let p50 = phase
        .latency
        .quantile_ms(0.5)
        .map_or_else(|| "—".into(), format::ms);
    let bytes = measured
        .bytes_per_message
        .map_or_else(|| "—".into(), format::bytes);
    let lambda = results.scenario.senders as f64 * run.rate_per_sender;
    // The model's fixed part (see `model`): a message crosses the network twice, sender to
    // server and server to reader. Worth a sentence only when the run emulated a network.
    let trips = if run.rtt_ms > 0.0 {
        format!(
            " Every message also crosses the network twice, from its sender to the server and \
             from the server to the reader: {} with this run's round trip.",
            format::ms(run.rtt_ms)
        )
    } else {
        String::new()
    };
    match phase.transport.parse::<Transport>().ok() {
        Some(Transport::ShortPoll) => format!(
            "Every client asks “anything new?” every {} whether or not anything happened. \
             {clients} clients sent {req} requests per second, and {} of the answers were empty. \
             A message waits for the next question, half an interval on average, so the median \
             delay was {p50}.{trips}",
            format::ms(run.short_poll_interval_ms),
            measured
                .empty_share
                .map_or_else(|| "—".into(), format::share),
        ),
        Some(Transport::LongPoll) => format!(
            "Every client asks once and the server holds the question open until a message \
             arrives (or {} pass), then the client asks again. That is about one request per \
             message: {req} requests per second for {} messages per second into each client's \
             feed. A message leaves as soon as the server has it if a question is waiting \
             (median delay here {p50}), but each one still pays for a whole HTTP answer with its \
             headers: {bytes} per message.{trips}",
            format::ms(results.scenario.long_poll_timeout_ms),
            format::real(lambda),
        ),
        Some(Transport::Sse) => format!(
            "Every client opens one HTTP response that never ends, and the server writes each \
             message into it as a few lines of text. No questions and no empty answers: the \
             {req} requests per second were the senders' publishes. Median delay {p50}; \
             {bytes} per message, a few lines of framing around the message itself.{trips}",
        ),
        Some(Transport::WebSocket) => format!(
            "Every client upgrades one connection to WebSocket; afterwards both sides send small \
             frames whenever they like. Each message costs its own bytes plus a frame header of \
             {} bytes: {bytes} per message. Median delay {p50}.{trips}",
            model::websocket_frame_header_bytes(
                model::ModelInput::measured(&results.scenario, run, phase).message_bytes
            ),
        ),
        None => format!(
            "An unknown transport ({}): the report shows its measurements without a model.",
            phase.transport
        ),
    }
}
