//! The findings the page opens with: a few plain-language sentences computed from the
//! [`Analysis`], each with its numbers and the section that shows them. They are worded for
//! the kind of run they describe: an idle room (nothing published), one transport, a sweep,
//! a run that did not complete. A sentence is only written when its numbers mean something:
//! no ratio of zeros, no "0.00 per message" when nothing was delivered.

use crate::analysis::{Analysis, PhaseAnalysis, RunAnalysis};
use crate::format;
use crate::transport::Transport;

/// One finding: a sentence and the page section (an element id) that shows its numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// The sentence, with its numbers.
    pub text: String,
    /// The id of the section with the chart or table behind it (`card`, `latency`, ...).
    pub section: &'static str,
}

impl Finding {
    fn new(section: &'static str, text: String) -> Self {
        Self { text, section }
    }

    /// The words of the link to the finding's section.
    pub fn link_text(&self) -> &'static str {
        match self.section {
            "card" => "report card",
            "latency" => "latency chart",
            "bytes" => "bytes chart",
            "timeline" => "timeline",
            "sweep" => "sweep charts",
            _ => "validity warnings",
        }
    }
}

/// A phase's name inside a sentence ("short polling", "SSE"; "SSE on nchan" in a run that
/// compared stacks, where a sentence naming only the transport could set one stack's figure
/// against another's without saying so).
pub fn in_sentence(a: &PhaseAnalysis) -> String {
    let transport = match a.transport {
        Some(Transport::ShortPoll) => "short polling",
        Some(Transport::LongPoll) => "long polling",
        Some(Transport::Sse) => "SSE",
        Some(Transport::WebSocket) => "WebSocket",
        None => return a.id().to_string(),
    };
    match &a.phase.stack {
        Some(stack) => format!("{transport} on {stack}"),
        None => transport.to_owned(),
    }
}

/// `text` with its first letter in upper case, to start a sentence.
pub fn capitalized(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map_or_else(String::new, |first| {
        first.to_uppercase().chain(chars).collect()
    })
}

/// "18×" or "1.5×": a ratio as a reader says it.
fn times(ratio: f64) -> String {
    if ratio >= 10.0 {
        format!("{}×", format::count(ratio.round() as u64))
    } else {
        format!("{ratio:.1}×")
    }
}

/// The findings for a results document, most important first.
pub fn findings(analysis: &Analysis) -> Vec<Finding> {
    let results = analysis.results;
    let mut out = Vec::new();
    let Some(run) = analysis.headline() else {
        out.push(Finding::new(
            "about",
            "Nothing was measured: the run stopped before its first transport finished, so \
             there are no figures to compare (see the validity warnings)."
                .into(),
        ));
        return out;
    };
    let planned = results.scenario.transports.len();
    let measured = run.phases.len();
    if !results.complete {
        out.push(Finding::new(
            "about",
            format!(
                "This run did not complete: {measured} of {planned} planned transports were \
                 measured{}. Compare only what is here, and re-run for the rest.",
                if run.phases.iter().any(|a| !a.phase.complete) {
                    ", and at least one of them was cut short"
                } else {
                    ""
                }
            ),
        ));
    }
    let published: u64 = run.phases.iter().map(|a| a.phase.messages_published).sum();
    if published == 0 {
        out.push(Finding::new(
            "card",
            "Nothing was published during the measured seconds (an idle room), so there is no \
             delay or cost per message to show; what remains is what waiting costs."
                .into(),
        ));
    }
    out.extend(saturated(run));
    out.extend(lost(run));
    out.extend(requests(run, published == 0));
    if published > 0 {
        out.extend(empty_polls(run));
        out.extend(bytes(run));
        out.extend(latency(run));
    }
    out.extend(sweep(analysis));
    out
}

/// A saturated load generator makes every latency the machine's, not the transports'.
fn saturated(run: &RunAnalysis) -> Option<Finding> {
    let busy: Vec<&PhaseAnalysis> = run
        .phases
        .iter()
        .filter(|a| a.phase.loadgen.saturated)
        .collect();
    let worst = busy
        .iter()
        .map(|a| a.phase.loadgen.timer_lag_max_ms)
        .fold(0.0, f64::max);
    (!busy.is_empty()).then(|| {
        Finding::new(
            "about",
            format!(
                "The load generator was saturated during {} of {} phases (its timers fired up to \
                 {} late): the machine was too busy, so latencies and rates there describe it, \
                 not the transports. Re-run on a quieter machine or with fewer clients.",
                busy.len(),
                run.phases.len(),
                format::ms(worst)
            ),
        )
    })
}

/// Lost or duplicated messages come first: they are worse than slow ones.
fn lost(run: &RunAnalysis) -> Vec<Finding> {
    run.phases
        .iter()
        .filter(|a| !a.verdicts.integrity_ok)
        .map(|a| {
            let i = &a.phase.integrity;
            Finding::new(
                "card",
                format!(
                    "{} lost {} of {} expected deliveries ({} duplicated, {} out of order): a \
                     lost message is worse than a slow one.",
                    capitalized(&in_sentence(a)),
                    format::count(i.missing),
                    format::count(i.deliveries_expected),
                    format::count(i.duplicates),
                    format::count(i.out_of_order)
                ),
            )
        })
        .collect()
}

/// Requests per second: the busiest transport against the quietest.
fn requests(run: &RunAnalysis, idle: bool) -> Option<Finding> {
    let clients = run.run.clients;
    let by_rate = |a: &&PhaseAnalysis, b: &&PhaseAnalysis| {
        a.measured
            .requests_per_s
            .total_cmp(&b.measured.requests_per_s)
    };
    let most = run.phases.iter().max_by(by_rate)?;
    let least = run.phases.iter().min_by(by_rate)?;
    let rate = |a: &PhaseAnalysis| format::real(a.measured.requests_per_s);
    if run.phases.len() == 1 {
        return Some(Finding::new(
            "card",
            format!(
                "Only {} was measured: {} requests per second for {} clients{}.",
                in_sentence(most),
                rate(most),
                format::count(clients),
                if idle {
                    ", with nothing to deliver"
                } else {
                    ""
                }
            ),
        ));
    }
    let idle_note = if idle { " with nothing to deliver" } else { "" };
    if least.measured.requests_per_s <= 0.0 {
        return Some(Finding::new(
            "card",
            format!(
                "{} sent {} requests per second{idle_note}; {} sent none after connecting.",
                capitalized(&in_sentence(most)),
                rate(most),
                in_sentence(least)
            ),
        ));
    }
    let ratio = most.measured.requests_per_s / least.measured.requests_per_s;
    Some(Finding::new(
        "card",
        format!(
            "{} sent {} the requests of {}{idle_note}: {} against {} requests per second for {} \
             clients each.",
            capitalized(&in_sentence(most)),
            times(ratio),
            in_sentence(least),
            rate(most),
            rate(least),
            format::count(clients)
        ),
    ))
}

/// How many short polls came back empty, and what that means.
fn empty_polls(run: &RunAnalysis) -> Option<Finding> {
    let short = run
        .phases
        .iter()
        .find(|a| a.transport == Some(Transport::ShortPoll))?;
    let share = short.measured.empty_share?;
    let interval = format::ms(run.run.short_poll_interval_ms);
    let meaning = if share >= 0.5 {
        "most questions were asked for nothing"
    } else if share >= 0.1 {
        "a good part of the questions were asked for nothing"
    } else {
        "messages came often enough that nearly every poll found one; long polling pays a \
         request per message in such a busy room too"
    };
    Some(Finding::new(
        "card",
        format!(
            "{} of short polls came back empty ({} of {} polls, one every {interval} per \
             client): {meaning}.",
            format::share(share),
            format::count(short.phase.traffic.empty_responses),
            format::count(short.measured.poll_answers)
        ),
    ))
}

/// Bytes per delivered message: the dearest transport against the cheapest.
fn bytes(run: &RunAnalysis) -> Option<Finding> {
    let priced: Vec<&PhaseAnalysis> = run
        .phases
        .iter()
        .filter(|a| a.measured.bytes_down_per_message.is_some())
        .collect();
    let per = |a: &PhaseAnalysis| a.measured.bytes_down_per_message.unwrap_or(0.0);
    let most = priced.iter().max_by(|a, b| per(a).total_cmp(&per(b)))?;
    let least = priced.iter().min_by(|a, b| per(a).total_cmp(&per(b)))?;
    let up = |a: &PhaseAnalysis| {
        a.measured
            .bytes_up_per_message
            .map_or_else(String::new, |b| format!(", {} up", format::bytes(b)))
    };
    if priced.len() == 1 || per(least) <= 0.0 {
        return Some(Finding::new(
            "bytes",
            format!(
                "Each delivered message cost {} {} read{}.",
                in_sentence(most),
                format::bytes(per(most)),
                up(most)
            ),
        ));
    }
    let ratio = per(most) / per(least);
    let how_much = if ratio < 1.15 {
        "about the bytes of".to_string()
    } else {
        format!("{} the bytes of", times(ratio))
    };
    // Why, when the dearest polls and the cheapest keeps a stream open.
    let why = if most.is_polling() && least.transport.is_some() && !least.is_polling() {
        ": headers on every answer against a few bytes of framing on an open stream"
    } else {
        ""
    };
    Some(Finding::new(
        "bytes",
        format!(
            "Per delivered message, {} read {how_much} {} ({}{} against {}{}){why}.",
            in_sentence(most),
            in_sentence(least),
            format::bytes(per(most)),
            up(most),
            format::bytes(per(least)),
            up(least)
        ),
    ))
}

/// Where latency comes from: the wait for the next poll, or the network and the server.
fn latency(run: &RunAnalysis) -> Option<Finding> {
    let p50 = |a: &PhaseAnalysis| a.measured.latency_p50_ms;
    let delivered: Vec<&PhaseAnalysis> = run.phases.iter().filter(|a| p50(a).is_some()).collect();
    let short = delivered
        .iter()
        .find(|a| a.transport == Some(Transport::ShortPoll));
    let pushes: Vec<&&PhaseAnalysis> = delivered
        .iter()
        .filter(|a| a.transport != Some(Transport::ShortPoll))
        .collect();
    let fastest = pushes
        .iter()
        .filter_map(|a| p50(a))
        .fold(f64::INFINITY, f64::min);
    let slowest = pushes.iter().filter_map(|a| p50(a)).fold(0.0, f64::max);
    // "0.48 ms" or "0.48 ms to 0.56 ms": the push transports' medians.
    let range = if format::ms(fastest) == format::ms(slowest) {
        format::ms(fastest)
    } else {
        format!("{} to {}", format::ms(fastest), format::ms(slowest))
    };
    // The explanation holds only where the model holds: a median the model's band does not
    // cover is stated against the model instead.
    let pushes_agree = pushes.iter().all(|a| !a.verdicts.latency_p50.differs);
    // A floor estimated from the fastest delivery moves up with a saturated machine, so
    // agreement with the model proves nothing there.
    let saturated = run.phases.iter().any(|a| a.phase.loadgen.saturated);
    let trips = if saturated {
        "on a machine too busy to measure them (see the validity warnings)".to_string()
    } else if pushes_agree {
        "the network's two trips (sender to server, server to reader) plus the server's own time"
            .to_string()
    } else {
        "far more than the network and the server explain (see the model in the card)".into()
    };
    let waited = |short: &PhaseAnalysis| -> Option<String> {
        let interval = format::ms(run.run.short_poll_interval_ms);
        let median = format::ms(p50(short)?);
        Some(if short.verdicts.latency_p50.differs {
            format!(
                "A short-polled message took a median {median} where the model expects {} \
                 (half the {interval} interval plus the network's trips)",
                short
                    .verdicts
                    .latency_p50
                    .expected
                    .map_or_else(|| "—".into(), format::ms)
            )
        } else {
            format!(
                "A short-polled message waited for the next poll: median {median}, about half \
                 the {interval} interval"
            )
        })
    };
    let text = match (short, pushes.is_empty()) {
        (Some(short), true) => format!("{}.", waited(short)?),
        (Some(short), false) => format!(
            "{}; the others delivered in {range} (median), {trips}.",
            waited(short)?
        ),
        (None, false) => format!(
            "Messages arrived in {range} (median): {trips}; none of these transports waits for \
             a question."
        ),
        (None, true) => return None,
    };
    Some(Finding::new("latency", text))
}

/// For a sweep: how the costliest and the cheapest transports grew with the swept key.
fn sweep(analysis: &Analysis) -> Option<Finding> {
    let sweep = analysis.results.scenario.sweep.as_ref()?;
    let (first, last) = (analysis.runs.first()?, analysis.runs.last()?);
    if analysis.runs.len() < 2 {
        return None;
    }
    let value = |r: &RunAnalysis| {
        r.run.sweep_value.map_or_else(
            || "—".into(),
            |v| format!("{} {}", format::value(v), sweep.unit),
        )
    };
    let growth: Vec<String> = last
        .phases
        .iter()
        .filter_map(|a| {
            let before = first.phases.iter().find(|b| b.id() == a.id())?;
            Some(format!(
                "{} {} → {}",
                in_sentence(a),
                format::real(before.measured.requests_per_s),
                format::real(a.measured.requests_per_s)
            ))
        })
        .collect();
    (!growth.is_empty()).then(|| {
        Finding::new(
            "sweep",
            format!(
                "As {} went from {} to {}, requests per second went: {}.",
                sweep.key,
                value(first),
                value(last),
                growth.join(", ")
            ),
        )
    })
}
