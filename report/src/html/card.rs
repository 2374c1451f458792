//! The report card: one column per transport, one row per question a reader asks ("how late?",
//! "how many requests?", "how many bytes?"), each cell holding the measured value, the model's
//! value, and a mark when the two differ by more than noise explains. Also the plain-language
//! explanation of each transport, written from its own numbers.

use crate::analysis::{Comparison, FloorSource, PhaseAnalysis, RunAnalysis};
use crate::format;
use crate::model;
use crate::results::{Results, Run};
use crate::transport::Transport;

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

    fn compared(comparison: Comparison, fmt: fn(f64) -> String, detail: String) -> Self {
        // A dash never stands alone: say why there is no figure.
        let detail = if comparison.measured.is_none() && detail.is_empty() {
            "nothing delivered".into()
        } else {
            detail
        };
        Self {
            measured: comparison.measured.map_or_else(|| "—".into(), fmt),
            detail,
            expected: comparison.expected.map(fmt),
            flagged: comparison.differs,
        }
    }
}

/// Builds the card for one analysed run.
pub fn card(results: &Results, run: &RunAnalysis) -> Card {
    let mut columns = Vec::new();
    let mut cells: Vec<Vec<CardCell>> = (0..11).map(|_| Vec::new()).collect();
    for a in &run.phases {
        let phase = a.phase;
        let measured = &a.measured;
        let verdicts = &a.verdicts;
        columns.push(CardColumn {
            label: a.label(),
            id: a.id().to_string(),
            colour: a.colour(),
            explanation: explanation(results, run.run, a),
        });
        cells[0].push(CardCell::compared(
            verdicts.latency_p50,
            format::ms,
            floor_note(a),
        ));
        cells[1].push(CardCell::compared(
            verdicts.latency_p99,
            format::ms,
            String::new(),
        ));
        let per_client = measured
            .requests_per_s_per_client
            .map_or_else(String::new, |r| format!("{} per client", format::real(r)));
        cells[2].push(CardCell::compared(
            verdicts.requests_per_s,
            format::real,
            per_client,
        ));
        cells[3].push(CardCell::compared(
            verdicts.bytes_per_message,
            format::bytes,
            format!(
                "{} read in all",
                format::bytes(phase.traffic.bytes_down as f64)
            ),
        ));
        // Bytes up: what the clients' own requests cost (headers of every poll, publishes,
        // WebSocket frames), which a browser pays on a metered uplink too.
        cells[4].push(CardCell::plain(
            measured
                .bytes_up_per_message
                .map_or_else(|| "—".into(), format::bytes),
            format!(
                "{} written in all",
                format::bytes(phase.traffic.bytes_up as f64)
            ),
        ));
        let empty_detail = if verdicts.empty_share.expected.is_some() {
            format!(
                "{} of {}",
                format::count(phase.traffic.empty_responses),
                format::count(measured.poll_answers)
            )
        } else {
            "no poll answers".into()
        };
        cells[5].push(CardCell::compared(
            verdicts.empty_share,
            format::share,
            empty_detail,
        ));
        // Two figures, because the server's per-transport gauge counts a short poll's
        // keep-alive connection only while a request is in flight: the TCP connections it held
        // (0 in results older than that field: shown as unknown), and of those, what it was
        // holding open for this transport.
        let tcp = phase.server.tcp_connections_peak;
        let held_open = match a.transport {
            Some(Transport::Sse) => "streams",
            Some(Transport::WebSocket) => "sockets",
            _ => "requests",
        };
        cells[6].push(CardCell::plain(
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
        cells[7].push(CardCell::plain(
            format!("{:.2} s", phase.server.cpu_s),
            format!("{} of one core", format::share(measured.server_core_share)),
        ));
        cells[8].push(CardCell::plain(
            format::mib(phase.server.rss_peak_bytes),
            format!(
                "{} before clients{}",
                format::mib(phase.server.rss_start_bytes),
                measured
                    .server_memory_per_client_bytes
                    .map_or_else(String::new, |b| format!(
                        " · {:.1} KiB more per client",
                        b / 1024.0
                    ))
            ),
        ));
        let i = &phase.integrity;
        cells[9].push(CardCell {
            measured: format!("{} / {} / {}", i.missing, i.duplicates, i.out_of_order),
            // Who received what: the deliveries owed under the chat mode, and any that reached
            // a client the message was not for.
            detail: format!(
                "{} of {} owed delivered{}{}",
                format::count(i.deliveries_received),
                format::count(i.deliveries_expected),
                match results.scenario.chat_mode.as_deref() {
                    None | Some("all") => String::new(),
                    mode => format!(" (each message for {})", format::chat_mode(mode)),
                },
                if i.misdelivered > 0 {
                    format!(
                        "; {} misdelivered to clients a message was not for",
                        format::count(i.misdelivered)
                    )
                } else {
                    String::new()
                }
            ),
            expected: Some("0 / 0 / 0".into()),
            flagged: !verdicts.integrity_ok,
        });
        cells[10].push(loadgen_cell(phase, measured));
    }
    let labels: [(&str, &str); 11] = [
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
            "Bytes up per delivered message",
            "everything the clients wrote (requests, publishes, frames) ÷ messages delivered",
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
        (
            "Server memory (peak)",
            "resident set size; growth over the phase ÷ clients under it",
        ),
        (
            "Missing / duplicated / out of order",
            "integrity: all should be 0 (each client is owed the messages for it)",
        ),
        (
            "Load generator CPU · memory",
            "what simulating the clients cost the loadgen itself: CPU in the measured seconds, peak memory; under it per simulated client (memory as growth over the phase ÷ clients: a lower bound after the first phase, which reuses memory an earlier one freed) and per delivery",
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

/// The loadgen's own cost: CPU in the window and peak memory, and under them what one
/// simulated client cost it (memory as growth over the phase ÷ clients) and CPU per delivery.
fn loadgen_cell(phase: &crate::results::Phase, measured: &crate::analysis::Figures) -> CardCell {
    let l = &phase.loadgen;
    let memory = if l.rss_peak_bytes > 0 {
        format!(" · {}", format::mib(l.rss_peak_bytes))
    } else {
        String::new()
    };
    let mut per_client = Vec::new();
    if let Some(s) = measured.loadgen_cpu_per_client_s {
        per_client.push(format!("{} CPU", format::ms(s * 1e3)));
    }
    if let Some(b) = measured.loadgen_memory_per_client_bytes {
        per_client.push(format!("{:.1} KiB", b / 1024.0));
    }
    let mut detail = if per_client.is_empty() {
        String::new()
    } else {
        format!("{} per client", per_client.join(" and "))
    };
    if let Some(us) = measured.loadgen_cpu_per_delivery_us {
        if !detail.is_empty() {
            detail.push_str(" · ");
        }
        detail.push_str(&format!("{us:.1} µs CPU per delivery"));
    }
    CardCell::plain(format!("{:.2} s{memory}", l.cpu_s), detail)
}

/// Under a latency: the server's time the verdict allows for, and how the report knows. In
/// the model for every transport but short polling, whose model leaves it out and whose band
/// allows it above the model (only when measured: see [`crate::analysis::Verdicts::judge`]).
fn floor_note(a: &PhaseAnalysis) -> String {
    let short_poll = a.transport == Some(Transport::ShortPoll);
    if a.model.is_none() || (short_poll && a.floor.source != FloorSource::Measured) {
        return String::new();
    }
    let source = match a.floor.source {
        FloorSource::Measured => "measured before the phase",
        FloorSource::FastestDelivery => "the run's fastest delivery; not measured",
    };
    let spread = if a.floor.spread_ms > 0.0 {
        format!(" ± {}", format::ms(a.floor.spread_ms))
    } else {
        String::new()
    };
    let what = if short_poll {
        "server time allowed beyond the model"
    } else {
        "server time in the model"
    };
    format!("{what}: {}{spread} ({source})", format::ms(a.floor.ms))
}

/// The transport's explanation for students, written around this run's numbers.
fn explanation(results: &Results, run: &Run, a: &PhaseAnalysis) -> String {
    let phase = a.phase;
    let measured = &a.measured;
    let clients = format::count(phase.clients);
    let req = format::real(measured.requests_per_s);
    let p50 = measured
        .latency_p50_ms
        .map_or_else(|| "—".into(), format::ms);
    let bytes = measured
        .bytes_down_per_message
        .map_or_else(|| "—".into(), format::bytes);
    let lambda = results.scenario.senders as f64 * run.rate_per_sender;
    if phase.integrity.deliveries_received == 0 {
        return idle_explanation(results, run, a);
    }
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
    match a.transport {
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
            model::websocket_frame_header_bytes(a.model_input.message_bytes),
        ),
        None => format!(
            "An unknown transport ({}): the report shows its measurements without a model.",
            phase.transport
        ),
    }
}

/// The explanation when nothing was delivered (an idle room, or a phase that failed): what the
/// transport did while waiting, without figures per message that do not exist.
fn idle_explanation(results: &Results, run: &Run, a: &PhaseAnalysis) -> String {
    let req = format::real(a.measured.requests_per_s);
    let nothing = if a.phase.messages_published == 0 {
        "Nothing was published during the measured seconds"
    } else {
        "Nothing was delivered to these clients"
    };
    match a.transport {
        Some(Transport::ShortPoll) => format!(
            "Every client asks “anything new?” every {} whether or not anything happened. \
             {nothing}, so all {req} requests per second were asked for nothing{}.",
            format::ms(run.short_poll_interval_ms),
            a.measured.empty_share.map_or_else(String::new, |s| format!(
                " ({} of the answers empty)",
                format::share(s)
            ))
        ),
        Some(Transport::LongPoll) => format!(
            "Every client asks once and the server holds the question open until a message \
             arrives or {} pass. {nothing}, so each question waited out its timeout and came \
             back empty: {req} requests per second.",
            format::ms(results.scenario.long_poll_timeout_ms)
        ),
        Some(Transport::Sse) => format!(
            "Every client holds one HTTP response open for the server to write into. {nothing}, \
             so the streams stayed silent apart from a comment line now and then that keeps \
             them open."
        ),
        Some(Transport::WebSocket) => format!(
            "Every client holds one upgraded connection that either side may send on. \
             {nothing}, so the connections stayed silent."
        ),
        None => format!(
            "An unknown transport ({}): the report shows its measurements without a model.",
            a.id()
        ),
    }
}
