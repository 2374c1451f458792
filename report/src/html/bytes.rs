//! "Where the bytes go": one horizontal stacked bar per transport, bytes read per delivered
//! message split into payload, headers, framing and wasted empty answers, with the model's
//! total marked. Segments use greys and a hatch (not transport colours, which keep meaning
//! "which transport"); each bar's label carries its transport's colour.

use crate::analysis::RunAnalysis;
use crate::format;

use super::axis::{self, Axis, LEFT, Mark, Plot, RIGHT, Scale, WIDTH, legend_rows, px, tick_label};

/// The chart, ready to draw.
pub struct BytesChart {
    /// The plot frame (bars start at its left edge; transport labels sit left of it).
    pub plot: Plot,
    /// The bytes axis.
    pub x_axis: Axis,
    /// One per transport.
    pub bars: Vec<BytesBar>,
    /// Segment legend.
    pub legend: Vec<axis::LegendItem>,
}

/// One transport's bar.
pub struct BytesBar {
    /// Transport identifier.
    pub transport: String,
    /// Display name.
    pub label: String,
    /// Transport colour (for the label swatch).
    pub colour: &'static str,
    /// Bar top.
    pub y: f64,
    /// Bar height.
    pub h: f64,
    /// The segments, left to right.
    pub segments: Vec<Segment>,
    /// Total, formatted, drawn after the bar.
    pub total: String,
    /// Where the total label goes.
    pub total_x: f64,
    /// Where the model's total falls, if there is a model.
    pub model_x: Option<f64>,
}

/// One part of a bar.
pub struct Segment {
    /// Left edge.
    pub x: f64,
    /// Width.
    pub w: f64,
    /// Fill (a grey or the hatch pattern).
    pub fill: &'static str,
    /// What and how much, for the tooltip.
    pub title: String,
}

const PARTS: [(&str, &str); 5] = [
    ("payload (the messages)", "#2b2b2b"),
    ("HTTP headers", "#8a8a8a"),
    ("framing", "#c4c4c4"),
    ("empty answers (wasted)", "url(#hatch)"),
    ("not attributed", "#eeeeee"),
];

/// Builds the chart for one analysed run; phases that delivered nothing get an empty bar.
pub fn bytes_per_message(run: &RunAnalysis) -> BytesChart {
    let mut entries: Vec<(String, String, Mark)> = PARTS[..4]
        .iter()
        .map(|(label, fill)| {
            let mark = if fill.starts_with("url") {
                Mark::Hatched
            } else {
                Mark::Box
            };
            (fill.to_string(), label.to_string(), mark)
        })
        .collect();
    entries.push(("#000000".into(), "model's total".into(), Mark::Dashed));
    let (legend, legend_bottom) = legend_rows(entries, LEFT + 120.0, 34.0);

    // Per-message parts: [payload, headers, framing, empty, unattributed].
    let parts: Vec<Option<[f64; 5]>> = run
        .phases
        .iter()
        .map(|a| a.measured.bytes_split.map(|split| split.parts()))
        .collect();
    let models: Vec<Option<f64>> = run
        .phases
        .iter()
        .map(|a| a.model.and_then(|e| e.bytes_per_message))
        .collect();
    let max = parts
        .iter()
        .flatten()
        .map(|p| p.iter().sum::<f64>())
        .chain(models.iter().flatten().copied())
        .fold(0.0, f64::max);

    let bar_h = 46.0;
    let gap = 26.0;
    let x0 = LEFT + 120.0;
    let x1 = WIDTH - RIGHT - 90.0;
    let y0 = legend_bottom + 8.0;
    let y1 = y0 + run.phases.len() as f64 * (bar_h + gap);
    let xs = Scale::linear(0.0, axis::nice_max(max), x0, x1);

    let bars = run
        .phases
        .iter()
        .zip(parts.iter().zip(&models))
        .enumerate()
        .map(|(i, (a, (part, model)))| {
            let y = y0 + gap / 2.0 + i as f64 * (bar_h + gap);
            let mut segments = Vec::new();
            let mut at = 0.0;
            for (value, (name, fill)) in part.unwrap_or_default().iter().zip(PARTS) {
                if *value > 0.0 {
                    let (a, b) = (xs.map(at), xs.map(at + value));
                    segments.push(Segment {
                        x: a,
                        w: px((b - a).max(0.5)),
                        fill,
                        title: format!("{name}: {} per message", format::bytes(*value)),
                    });
                }
                at += value;
            }
            let total = part.map(|p| p.iter().sum::<f64>());
            BytesBar {
                transport: a.id().to_string(),
                label: a.short_label(),
                colour: a.colour(),
                y: px(y),
                h: bar_h,
                segments,
                total: total.map_or_else(|| "nothing delivered".into(), format::bytes),
                total_x: px(xs
                    .map(total.unwrap_or(0.0))
                    .max(xs.map(model.unwrap_or(0.0)))
                    + 10.0),
                model_x: model.map(|m| xs.map(m)),
            }
        })
        .collect();
    BytesChart {
        plot: Plot {
            height: px(y1 + 80.0),
            x0,
            x1,
            y0,
            y1: px(y1),
        },
        x_axis: Axis::new(
            &xs,
            |v| tick_label(v) + " B",
            "bytes read per delivered message (B)",
        ),
        bars,
        legend,
    }
}
