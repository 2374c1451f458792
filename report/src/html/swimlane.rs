//! The swimlane timeline: one traced client per transport, stacked, over the same seconds.
//! Requests are bars from send to answer (a long poll's held time shows as a long bar), empty
//! answers are grey, a persistent stream (SSE, WebSocket) is one faint band, deliveries are
//! dots, and an arrow runs from each message's scheduled publish time down to its delivery, so
//! the slant of the arrows *is* the latency.

use crate::analysis::{PhaseAnalysis, RunAnalysis};
use crate::format;
use crate::results::{Phase, Results, TraceEvent};
use crate::transport::{Style, Transport};

use super::axis::{
    self, Axis, LEFT, Mark, PHASE_SECONDS, Plot, RIGHT, Scale, WIDTH, legend_rows, px,
};

/// Longest window shown: more seconds would turn the arrows into a blur on a projector.
const WINDOW_MS: f64 = 6000.0;
/// Shortest window shown, so even a busy room shows a few poll intervals.
const MIN_WINDOW_MS: f64 = 2000.0;
/// About this many messages fit in the window before the arrows crowd each other.
const MESSAGES_SHOWN: f64 = 40.0;

/// The timeline, ready to draw.
pub struct Swimlane {
    /// The plot frame (lanes span it; lane labels sit left of it).
    pub plot: Plot,
    /// The time axis.
    pub x_axis: Axis,
    /// One per transport with a trace.
    pub lanes: Vec<Lane>,
    /// What the marks mean.
    pub legend: Vec<axis::LegendItem>,
    /// The window, in words, for the caption.
    pub window: String,
    /// What each lane shows, in words, with this run's share of empty polls.
    pub reading: String,
}

/// One client's lane.
pub struct Lane {
    /// Transport identifier.
    pub transport: String,
    /// Display name.
    pub label: String,
    /// The traced client's id.
    pub client: String,
    /// Transport colour.
    pub colour: &'static str,
    /// Lane top.
    pub y: f64,
    /// Lane height.
    pub h: f64,
    /// Baseline of the lane label.
    pub label_y: f64,
    /// Requests, streams and connects.
    pub bars: Vec<Bar>,
    /// Deliveries.
    pub dots: Vec<(f64, f64)>,
    /// Publish -> delivery arrows: (x1, y1, x2, y2).
    pub arrows: Vec<(f64, f64, f64, f64)>,
    /// Errors, as x positions.
    pub errors: Vec<f64>,
}

/// A bar in a lane.
pub struct Bar {
    /// Left.
    pub x: f64,
    /// Top.
    pub y: f64,
    /// Width.
    pub w: f64,
    /// Height.
    pub h: f64,
    /// Fill colour.
    pub fill: &'static str,
    /// Fill opacity.
    pub opacity: f64,
    /// Tooltip.
    pub title: String,
}

const EMPTY_GREY: &str = "#9a9a9a";

fn event_time(e: &TraceEvent) -> f64 {
    match e {
        TraceEvent::Connect { start_ms, .. } | TraceEvent::Request { start_ms, .. } => *start_ms,
        TraceEvent::Delivery { at_ms, .. } | TraceEvent::Error { at_ms, .. } => *at_ms,
    }
}

fn event_end(e: &TraceEvent) -> f64 {
    match e {
        TraceEvent::Connect { end_ms, .. } | TraceEvent::Request { end_ms, .. } => *end_ms,
        _ => event_time(e),
    }
}

/// Picks the common window: from the warm-up's end (or the latest first non-connect event,
/// whichever is later) for about [`MESSAGES_SHOWN`] messages (2 to 6 s), within every trace's
/// span.
fn window(results: &Results, phases: &[&Phase]) -> (f64, f64) {
    let lambda = results.scenario.senders as f64 * results.scenario.rate_per_sender;
    let length = if lambda > 0.0 {
        (MESSAGES_SHOWN / lambda * 1000.0).clamp(MIN_WINDOW_MS, WINDOW_MS)
    } else {
        WINDOW_MS
    };
    let mut start = results.scenario.warmup_s * 1000.0;
    let mut end = f64::INFINITY;
    for p in phases {
        let events = &p.traces[0].events;
        let first = events
            .iter()
            .filter(|e| !matches!(e, TraceEvent::Connect { .. }))
            .map(event_time)
            .fold(f64::INFINITY, f64::min);
        let last = events.iter().map(event_end).fold(0.0, f64::max);
        if first.is_finite() {
            start = start.max(first);
        }
        end = end.min(last);
    }
    let start = (start / 1000.0).floor() * 1000.0;
    let end = if end.is_finite() && end > start + 1000.0 {
        end.min(start + length)
    } else {
        start + length
    };
    (start, end)
}

/// Builds the timeline for one run; `None` when no phase has a trace.
pub fn swimlane(results: &Results, run: &RunAnalysis) -> Option<Swimlane> {
    let traced: Vec<&PhaseAnalysis> = run
        .phases
        .iter()
        .filter(|a| !a.phase.traces.is_empty())
        .collect();
    if traced.is_empty() {
        return None;
    }
    let phases: Vec<&Phase> = traced.iter().map(|a| a.phase).collect();
    let (w0, w1) = window(results, &phases);
    let lane_colours: Vec<&str> = traced.iter().map(|a| a.colour()).collect();
    let entries = vec![
        (
            lane_colours.join(","),
            "request (in its transport's colour)".into(),
            Mark::Palette,
        ),
        (EMPTY_GREY.into(), "empty answer".into(), Mark::Box),
        (
            "#d6d6d6".into(),
            "open stream (pale band)".into(),
            Mark::Box,
        ),
        ("#222222".into(), "delivery".into(), Mark::Dot),
        ("#333333".into(), "publish → delivery".into(), Mark::Arrow),
    ];
    let (legend, legend_bottom) = legend_rows(entries, LEFT + 110.0, 34.0);
    let x0 = LEFT + 110.0;
    let x1 = WIDTH - RIGHT;
    let lane_h = 110.0;
    let y0 = legend_bottom + 4.0;
    let xs = Scale::linear(w0 / 1000.0, w1 / 1000.0, x0, x1);
    let at = |ms: f64| xs.map(ms / 1000.0);
    let inside = |ms: f64| ms >= w0 && ms <= w1;

    let lanes = traced
        .iter()
        .enumerate()
        .map(|(i, pa)| {
            let trace = &pa.phase.traces[0];
            let y = px(y0 + i as f64 * lane_h);
            // Layout inside a lane, top to bottom: arrows start at the publish time, end on a
            // row of delivery dots, and the request bars run below the dots (a 1 ms short poll
            // is a sliver a dot would hide).
            let bar_y = y + 64.0;
            let bar_h = 26.0;
            let mid = bar_y + bar_h / 2.0;
            let dot_y = bar_y - 10.0;
            let streaming = pa.transport.is_some() && !pa.is_polling();
            let colour = pa.colour();
            let mut bars = Vec::new();
            let mut dots = Vec::new();
            let mut arrows = Vec::new();
            let mut errors = Vec::new();
            for e in &trace.events {
                match e {
                    TraceEvent::Connect { start_ms, end_ms } => {
                        if streaming && *end_ms < w1 {
                            // The stream stays open from the handshake on.
                            let (a, b) = (at(end_ms.max(w0)), at(w1));
                            bars.push(Bar {
                                x: a,
                                y: px(bar_y + 6.0),
                                w: px(b - a),
                                h: bar_h - 12.0,
                                fill: colour,
                                opacity: 0.35,
                                title: format!("{} open from {}", pa.label(), format::ms(*end_ms)),
                            });
                        }
                        if *end_ms >= w0 && *start_ms <= w1 {
                            let (a, b) = (at(start_ms.max(w0)), at(end_ms.min(w1)));
                            bars.push(Bar {
                                x: a,
                                y: px(bar_y),
                                w: px((b - a).max(2.0)),
                                h: bar_h,
                                fill: "#000000",
                                opacity: 1.0,
                                title: format!("connecting, {}", format::ms(end_ms - start_ms)),
                            });
                        }
                    }
                    TraceEvent::Request {
                        start_ms,
                        end_ms,
                        status,
                        messages,
                        bytes_down,
                    } => {
                        if *end_ms < w0 || *start_ms > w1 {
                            continue;
                        }
                        let (a, b) = (at(start_ms.max(w0)), at(end_ms.min(w1)));
                        let empty = *messages == 0;
                        bars.push(Bar {
                            x: a,
                            y: px(bar_y),
                            // At least a few units wide: a short poll answered in 1 ms must show.
                            w: px((b - a).max(5.0)),
                            h: bar_h,
                            fill: if *status >= 400 {
                                "#000000"
                            } else if empty {
                                EMPTY_GREY
                            } else {
                                colour
                            },
                            opacity: 1.0,
                            title: format!(
                                "HTTP {status} after {}: {messages} message(s), {}",
                                format::ms(end_ms - start_ms),
                                format::bytes(*bytes_down as f64)
                            ),
                        });
                    }
                    TraceEvent::Delivery {
                        at_ms,
                        published_ms,
                        ..
                    } => {
                        if !inside(*at_ms) {
                            continue;
                        }
                        let x = at(*at_ms);
                        dots.push((x, px(dot_y)));
                        if *published_ms >= w0 {
                            arrows.push((at(*published_ms), px(y + 10.0), x, px(dot_y - 7.0)));
                        }
                    }
                    TraceEvent::Error { at_ms, .. } => {
                        if inside(*at_ms) {
                            errors.push(at(*at_ms));
                        }
                    }
                }
            }
            Lane {
                transport: pa.id().to_string(),
                label: pa.short_label(),
                client: trace.client.clone(),
                colour,
                y,
                h: lane_h,
                label_y: px(mid + 6.0),
                bars,
                dots,
                arrows,
                errors,
            }
        })
        .collect();
    let y1 = px(y0 + phases.len() as f64 * lane_h);
    Some(Swimlane {
        plot: Plot {
            height: px(y1 + 70.0),
            x0,
            x1,
            y0: px(y0),
            y1,
        },
        x_axis: Axis::new(&xs, |v| format!("{v:.0}"), PHASE_SECONDS),
        lanes,
        legend,
        window: format!(
            "{:.0} s to {:.0} s after each phase started",
            w0 / 1000.0,
            w1 / 1000.0
        ),
        reading: reading(&traced),
    })
}

/// The caption's description of the lanes shown, true to this run: how many short polls
/// really came back empty, rather than "most of them".
fn reading(traced: &[&PhaseAnalysis]) -> String {
    let mut parts = Vec::new();
    for a in traced {
        match a.transport {
            Some(Transport::ShortPoll) => parts.push(match a.measured.empty_share {
                Some(share) => format!(
                    "short polls are thin bars on a fixed beat, grey when they came back empty \
                     ({} of this run's polls did)",
                    format::share(share)
                ),
                None => "short polls are thin bars on a fixed beat".into(),
            }),
            Some(Transport::LongPoll) => parts.push(
                "long polls are long bars held open until a message arrives (or the timeout)"
                    .into(),
            ),
            _ => {}
        }
    }
    let streams: Vec<&str> = traced
        .iter()
        .filter(|a| a.transport.is_some() && !a.is_polling())
        .map(|a| a.transport.map_or("", |t| t.short_label()))
        .collect();
    if !streams.is_empty() {
        parts.push(format!(
            "{} {} one stream open and {} each message as soon as the server has it",
            streams.join(" and "),
            if streams.len() == 1 { "keeps" } else { "keep" },
            if streams.len() == 1 {
                "receives"
            } else {
                "receive"
            },
        ));
    }
    let text = parts.join("; ");
    crate::findings::capitalized(&text) + "."
}
