//! Line charts: the latency CDF (with the model drawn dashed over each measured curve), the
//! per-second time series and the sweep's cost curves. One view-model struct, [`LineChart`],
//! drawn by one template (`line_chart.html`); the builders below decide what goes on it.

use crate::analysis::{Analysis, PhaseAnalysis, RunAnalysis};
use crate::model::LatencyModel;
use crate::transport;

use super::axis::{
    self, Axis, LEFT, Mark, PHASE_SECONDS, Plot, Scale, legend_rows, ms_tick_label, px, tick_label,
};

/// A chart of lines over two axes, ready to draw.
pub struct LineChart {
    /// Short description for screen readers and the SVG's `<title>`.
    pub title: String,
    /// The plot frame.
    pub plot: Plot,
    /// The horizontal axis.
    pub x_axis: Axis,
    /// The vertical axis.
    pub y_axis: Axis,
    /// The lines.
    pub series: Vec<Series>,
    /// The legend, above the plot.
    pub legend: Vec<axis::LegendItem>,
}

/// One line.
pub struct Series {
    /// Transport identifier (tests check every transport is drawn).
    pub transport: String,
    /// Stroke colour.
    pub colour: &'static str,
    /// SVG path data.
    pub path: String,
    /// Dashed (a model) or solid (a measurement).
    pub dashed: bool,
    /// Points to mark with dots (sweep curves), empty for plain lines.
    pub markers: Vec<(f64, f64)>,
}

/// Builds a path from points already in SVG coordinates.
pub(super) fn path(points: &[(f64, f64)]) -> String {
    let mut out = String::with_capacity(points.len() * 14);
    for (i, (x, y)) in points.iter().enumerate() {
        out.push_str(if i == 0 { "M" } else { " L" });
        out.push_str(&format!("{} {}", px(*x), px(*y)));
    }
    out
}

/// A legend entry per phase (solid line in its colour, [`transport::Palette`] over the ids
/// given), plus the dashed model's when asked.
pub(super) fn transport_legend<'a>(
    transports: impl IntoIterator<Item = &'a str> + Clone,
    with_model: bool,
) -> Vec<(String, String, Mark)> {
    let palette = transport::Palette::of(transports.clone());
    let mut entries: Vec<_> = transports
        .into_iter()
        .map(|t| {
            (
                palette.colour(t).to_string(),
                transport::label_of(t),
                Mark::Line,
            )
        })
        .collect();
    if with_model {
        entries.push(("#444444".into(), "dashed: model".into(), Mark::Dashed));
    }
    entries
}

/// Latency CDF per transport on a log time axis, each with its model dashed in the same
/// colour. The models use the measured header/message sizes (irrelevant to latency) and the
/// run's own rtt.
pub fn latency_cdf(run: &RunAnalysis) -> LineChart {
    let phases: Vec<&PhaseAnalysis> = run.phases.iter().collect();
    let models: Vec<Option<LatencyModel>> =
        phases.iter().map(|a| a.model.map(|e| e.latency)).collect();

    // Domain: from the decade below the fastest delivery to the decade above the slowest,
    // including the models' ends, never below 10 µs.
    let mut lo = f64::INFINITY;
    let mut hi: f64 = 1.0;
    for a in &phases {
        let p = a.phase;
        if let (Some(min), Some(max)) = (p.latency.quantile_ms(0.0), p.latency.quantile_ms(1.0)) {
            lo = lo.min(min);
            hi = hi.max(max);
        }
    }
    for m in models.iter().flatten() {
        if m.delay_ms > 0.0 {
            lo = lo.min(m.delay_ms);
        }
        hi = hi.max(m.delay_ms + m.wait_max_ms);
    }
    if !lo.is_finite() {
        lo = 0.1;
    }
    let lo = axis::decade_below(lo, 0.01);
    let hi = axis::decade_above(hi * 1.01);

    let (legend, legend_bottom) = legend_rows(
        transport_legend(phases.iter().map(|a| a.id()), true),
        LEFT,
        34.0,
    );
    let f = Plot::below_legend(520.0, legend_bottom);
    let xs = Scale::log(lo, hi, f.x0, f.x1);
    let ys = Scale::linear(0.0, 100.0, f.y1, f.y0);

    let mut series = Vec::new();
    for (a, m) in phases.iter().zip(&models) {
        let p = a.phase;
        let colour = a.colour();
        if !p.latency.0.is_empty() {
            // 400 evenly spaced quantiles plus the tail: bounded size, exact where it matters.
            let mut qs: Vec<f64> = (0..=400).map(|i| f64::from(i) / 400.0).collect();
            qs.extend([0.999, 0.9999]);
            qs.sort_by(f64::total_cmp);
            let points: Vec<(f64, f64)> = qs
                .iter()
                .filter_map(|q| {
                    p.latency
                        .quantile_ms(*q)
                        .map(|v| (xs.map(v), ys.map(q * 100.0)))
                })
                .collect();
            series.push(Series {
                transport: transport::phase_id(p.stack.as_deref(), &p.transport),
                colour,
                path: path(&points),
                dashed: false,
                markers: Vec::new(),
            });
        }
        if let Some(m) = m {
            let points = model_points(m, &xs, &ys, lo, hi);
            if points.len() > 1 {
                series.push(Series {
                    transport: transport::phase_id(p.stack.as_deref(), &p.transport),
                    colour,
                    path: path(&points),
                    dashed: true,
                    markers: Vec::new(),
                });
            }
        }
    }
    LineChart {
        title: "Latency CDF per transport, log time axis, model dashed".into(),
        plot: f,
        x_axis: Axis::new(&xs, ms_tick_label, "delivery latency (ms, log scale)"),
        y_axis: Axis::new(&ys, |v| format!("{v:.0}%"), "messages delivered (%)"),
        series,
        legend,
    }
}

/// The model's CDF in SVG coordinates, drawn only where it says something: from where it
/// leaves 0% (or the axis start) to where it reaches 100%, never along the plot's edges. A
/// model without a wait ("every message after d") is one vertical step at d; one that puts
/// every message at 0 ms, which a log axis cannot show, is not drawn at all.
fn model_points(m: &LatencyModel, xs: &Scale, ys: &Scale, lo: f64, hi: f64) -> Vec<(f64, f64)> {
    let start = m.delay_ms;
    let end = m.delay_ms + m.wait_max_ms;
    if end < lo || start > hi {
        return Vec::new();
    }
    if m.wait_share <= 0.0 || m.wait_max_ms <= 0.0 {
        return vec![(xs.map(start), ys.map(0.0)), (xs.map(start), ys.map(100.0))];
    }
    let (from, to) = (start.max(lo), end.min(hi));
    // Log steps between the ends, plus the ends exactly.
    let mut ts: Vec<f64> = (0..=200)
        .map(|i| from * (to / from).powf(f64::from(i) / 200.0))
        .collect();
    ts.push(to);
    ts.sort_by(f64::total_cmp);
    ts.dedup();
    let mut points = Vec::with_capacity(ts.len() + 1);
    if start >= lo {
        // The rise at d, from 0% to the share that does not wait.
        points.push((xs.map(start), ys.map(0.0)));
    }
    points.extend(
        ts.into_iter()
            .map(|t| (xs.map(t), ys.map(m.cdf(t) * 100.0))),
    );
    points
}

/// What a per-second chart plots.
#[derive(Clone, Copy)]
pub enum PerSecond {
    /// Requests started per second.
    Requests,
    /// Messages delivered per second.
    Deliveries,
    /// Requests in flight at the end of each second.
    InFlight,
    /// The slowest delivery of each second, ms: where a spike (a node dying) shows.
    LatencyMax,
    /// Clients reconnecting in each second.
    Reconnects,
}

impl PerSecond {
    /// Whether the run has anything to draw: the slowest delivery only in results that record
    /// it, reconnects only when some happened.
    pub fn shown(self, run: &RunAnalysis) -> bool {
        let any = |f: fn(&crate::results::Second) -> u64| {
            run.phases
                .iter()
                .flat_map(|a| &a.phase.timeseries)
                .any(|s| f(s) > 0)
        };
        match self {
            PerSecond::LatencyMax => any(|s| s.latency_max_us),
            PerSecond::Reconnects => any(|s| s.reconnects),
            _ => true,
        }
    }
}

/// One per-second chart: a line per transport over the seconds of its phase (phases ran one
/// after another; each starts at 0 here so they can be compared).
pub fn per_second(run: &RunAnalysis, what: PerSecond) -> LineChart {
    let phases: Vec<&crate::results::Phase> = run.phases.iter().map(|a| a.phase).collect();
    let value = |s: &crate::results::Second| match what {
        PerSecond::Requests => s.requests as f64,
        PerSecond::Deliveries => s.deliveries as f64,
        PerSecond::InFlight => s.in_flight as f64,
        PerSecond::LatencyMax => s.latency_max_us as f64 / 1e3,
        PerSecond::Reconnects => s.reconnects as f64,
    };
    let last_second = phases
        .iter()
        .flat_map(|p| p.timeseries.iter().map(|s| s.second))
        .max()
        .unwrap_or(1)
        .max(1);
    let max = phases
        .iter()
        .flat_map(|p| p.timeseries.iter().map(value))
        .fold(0.0, f64::max);
    let ids: Vec<String> = phases
        .iter()
        .map(|p| transport::phase_id(p.stack.as_deref(), &p.transport))
        .collect();
    let (legend, legend_bottom) = legend_rows(
        transport_legend(ids.iter().map(String::as_str), false),
        LEFT,
        34.0,
    );
    let f = Plot::below_legend(360.0, legend_bottom);
    let xs = Scale::linear(0.0, f64::from(last_second), f.x0, f.x1);
    let ys = Scale::linear(0.0, axis::nice_max(max), f.y1, f.y0);
    let series = run
        .phases
        .iter()
        .map(|a| {
            let points: Vec<_> = a
                .phase
                .timeseries
                .iter()
                .map(|s| (xs.map(f64::from(s.second)), ys.map(value(s))))
                .collect();
            Series {
                transport: a.id().to_owned(),
                colour: a.colour(),
                path: path(&points),
                dashed: false,
                markers: Vec::new(),
            }
        })
        .collect();
    let (title, y_label) = match what {
        PerSecond::Requests => ("Requests per second over time", "requests per second"),
        PerSecond::Deliveries => ("Deliveries per second over time", "deliveries per second"),
        PerSecond::InFlight => ("Requests in flight over time", "requests in flight"),
        PerSecond::LatencyMax => (
            "Slowest delivery per second over time",
            "slowest delivery in the second (ms)",
        ),
        PerSecond::Reconnects => ("Reconnects per second over time", "reconnects"),
    };
    LineChart {
        title: title.into(),
        plot: f,
        x_axis: Axis::new(&xs, |v| format!("{v:.0}"), PHASE_SECONDS),
        y_axis: Axis::new(&ys, tick_label, y_label),
        series,
        legend,
    }
}

/// A cost the sweep charts plot against the swept value.
#[derive(Clone, Copy)]
pub enum Cost {
    /// Requests per second, all clients.
    Requests,
    /// Bytes read per second, all clients.
    Bytes,
    /// Server CPU, percent of one core.
    Cpu,
    /// Server peak memory, MiB.
    Memory,
    /// Delivery latency p99, ms (log axis: the transports differ by orders of magnitude).
    P99,
}

impl Cost {
    /// Every cost, in the order the page shows them.
    pub const ALL: [Cost; 5] = [
        Cost::Requests,
        Cost::Bytes,
        Cost::Cpu,
        Cost::Memory,
        Cost::P99,
    ];

    fn of(self, a: &PhaseAnalysis) -> Option<f64> {
        let m = &a.measured;
        match self {
            Cost::Requests => Some(m.requests_per_s),
            Cost::Bytes => Some(m.bytes_down_per_s),
            Cost::Cpu => Some(m.server_core_share * 100.0),
            Cost::Memory => Some(a.phase.server.rss_peak_bytes as f64 / (1024.0 * 1024.0)),
            Cost::P99 => m.latency_p99_ms,
        }
    }

    fn labels(self) -> (&'static str, &'static str) {
        match self {
            Cost::Requests => (
                "Requests per second as the sweep grows",
                "requests per second",
            ),
            Cost::Bytes => (
                "Bytes read per second as the sweep grows",
                "bytes per second",
            ),
            Cost::Cpu => (
                "Server CPU as the sweep grows",
                "server CPU (% of one core)",
            ),
            Cost::Memory => (
                "Server peak memory as the sweep grows",
                "server peak memory (MiB)",
            ),
            Cost::P99 => (
                "Latency p99 as the sweep grows",
                "latency p99 (ms, log scale)",
            ),
        }
    }
}

/// One cost curve chart: the swept value along x, one line (with dots) per transport.
pub fn sweep_cost(analysis: &Analysis, cost: Cost) -> Option<LineChart> {
    let sweep = analysis.results.scenario.sweep.as_ref()?;
    let runs = &analysis.runs;
    if runs.len() < 2 {
        return None;
    }
    let x_of = |run: &RunAnalysis| run.run.sweep_value.unwrap_or(run.run.clients as f64);
    let transports: Vec<String> = {
        let mut t: Vec<String> = Vec::new();
        for a in runs.iter().flat_map(|r| &r.phases) {
            if !t.iter().any(|id| id == a.id()) {
                t.push(a.id().to_string());
            }
        }
        t
    };
    let x_max = runs.iter().map(x_of).fold(0.0, f64::max);
    let x_min = runs.iter().map(x_of).fold(f64::INFINITY, f64::min);
    let values: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.phases.iter().filter_map(|p| cost.of(p)))
        .collect();
    let v_max = values.iter().copied().fold(0.0, f64::max);
    let v_min = values.iter().copied().fold(f64::INFINITY, f64::min);

    let (legend, legend_bottom) = legend_rows(
        transport_legend(transports.iter().map(String::as_str), false),
        LEFT,
        34.0,
    );
    let f = Plot::below_legend(380.0, legend_bottom);
    // Start x at zero when the values are counts near it, so growth reads as growth.
    let x_lo = if x_min >= 0.0 && x_min <= x_max / 2.0 {
        0.0
    } else {
        x_min
    };
    let xs = Scale::linear(x_lo, x_max * 1.02, f.x0, f.x1);
    let ys = match cost {
        Cost::P99 => Scale::log(
            axis::decade_below(v_min, 0.01),
            axis::decade_above(v_max * 1.01),
            f.y1,
            f.y0,
        ),
        _ => Scale::linear(0.0, axis::nice_max(v_max), f.y1, f.y0),
    };
    let palette = transport::Palette::of(transports.iter().map(String::as_str));
    let series = transports
        .iter()
        .map(|t| {
            let points: Vec<(f64, f64)> = runs
                .iter()
                .filter_map(|r| {
                    let p = r.phases.iter().find(|a| a.id() == t)?;
                    Some((xs.map(x_of(r)), ys.map(cost.of(p)?)))
                })
                .collect();
            Series {
                transport: t.clone(),
                colour: palette.colour(t),
                path: path(&points),
                dashed: false,
                markers: points,
            }
        })
        .collect();
    let (title, y_label) = cost.labels();
    let y_axis = match cost {
        Cost::P99 => Axis::new(&ys, ms_tick_label, y_label),
        Cost::Bytes => Axis::new(&ys, |v| tick_label(v) + "B", y_label),
        _ => Axis::new(&ys, tick_label, y_label),
    };
    Some(LineChart {
        title: title.into(),
        plot: f,
        x_axis: Axis::new(&xs, tick_label, format!("{} ({})", sweep.key, sweep.unit)),
        y_axis,
        series,
        legend,
    })
}
