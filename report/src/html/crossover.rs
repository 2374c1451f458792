//! The crossover chart: requests per second per client against the message rate into a
//! client's feed (λ), both on log axes. Each transport's model is a dashed curve over a range
//! of rates around this scenario's; each run measured is a dot on it. Short polling asks 1/T
//! times a second whatever happens; long polling asks about once per message, so it overtakes
//! short polling where messages come once per poll interval, at λ = 1/T, which the chart
//! marks. A sweep of the rate puts one dot per run along the curves.

use crate::analysis::Analysis;
use crate::model::{self, ModelInput};

use super::axis::{self, Axis, LEFT, Mark, Plot, Scale, legend_rows, tick_label};
use super::line::{LineChart, Series, path, transport_legend};

/// A model's curve: its transport's id, colour, and (λ, requests per second per client).
type Curve = (String, &'static str, Vec<(f64, f64)>);

/// Points sampled along each model curve.
const SAMPLES: u32 = 120;

/// Builds the chart; `None` when no phase has a model to draw.
pub fn crossover(analysis: &Analysis) -> Option<LineChart> {
    let headline = analysis.headline()?;
    let interval_s = headline.run.short_poll_interval_ms / 1000.0;
    let crossing = (interval_s > 0.0).then(|| 1.0 / interval_s);
    // Measured points: (λ, requests per second per client), every run and transport.
    let measured: Vec<(String, f64, f64)> = analysis
        .runs
        .iter()
        .flat_map(|r| &r.phases)
        .filter(|a| a.model.is_some())
        .filter_map(|a| {
            Some((
                a.id().to_string(),
                a.model_input.lambda_per_s,
                a.measured.requests_per_s_per_client?,
            ))
        })
        .filter(|(_, l, r)| *l > 0.0 && *r > 0.0)
        .collect();
    // The rate axis: a decade either side of this scenario's rates and of 1/T.
    let rates = measured
        .iter()
        .map(|(_, l, _)| *l)
        .chain(crossing)
        .chain(headline.phases.first().map(|a| a.model_input.lambda_per_s))
        .filter(|l| *l > 0.0);
    let (lo, hi) = rates.fold((f64::INFINITY, 0.0f64), |(lo, hi), l| {
        (lo.min(l), hi.max(l))
    });
    if !lo.is_finite() {
        return None;
    }
    let (lo, hi) = (
        axis::decade_below(lo / 10.0, 1e-3),
        axis::decade_above(hi * 10.0),
    );

    let curves: Vec<Curve> = headline
        .phases
        .iter()
        .filter_map(|a| {
            let t = a.transport?;
            let points = (0..=SAMPLES)
                .map(|i| lo * (hi / lo).powf(f64::from(i) / f64::from(SAMPLES)))
                .map(|lambda| {
                    let input = ModelInput {
                        lambda_per_s: lambda,
                        ..a.model_input
                    };
                    (lambda, model::expected(t, &input).requests_per_s_per_client)
                })
                .filter(|(_, r)| *r > 0.0)
                .collect();
            Some((a.id().to_string(), a.colour(), points))
        })
        .collect();
    let values = curves
        .iter()
        .flat_map(|(_, _, p)| p.iter().map(|(_, r)| *r))
        .chain(measured.iter().map(|(_, _, r)| *r));
    let (y_lo, y_hi) = values.fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if !y_lo.is_finite() {
        return None;
    }

    let mut entries = transport_legend(headline.phases.iter().map(|a| a.id()), true);
    entries.push(("#444444".into(), "dots: measured".into(), Mark::Dot));
    let (legend, legend_bottom) = legend_rows(entries, LEFT, 34.0);
    let f = Plot::below_legend(480.0, legend_bottom);
    let xs = Scale::log(lo, hi, f.x0, f.x1);
    // Requests below one per 1,000 s per client are immaterial; below that the axis stops.
    let y_bottom = axis::decade_below(y_lo, 1e-3);
    let ys = Scale::log(y_bottom, axis::decade_above(y_hi * 1.01), f.y1, f.y0);
    let mut series: Vec<Series> = curves
        .into_iter()
        .map(|(id, colour, points)| {
            // Points below the axis' start are left out, not drawn along its edge.
            let at: Vec<(f64, f64)> = points
                .iter()
                .filter(|(_, r)| *r >= y_bottom)
                .map(|(l, r)| (xs.map(*l), ys.map(*r)))
                .collect();
            Series {
                transport: id.clone(),
                colour,
                path: path(&at),
                dashed: true,
                markers: measured
                    .iter()
                    .filter(|(t, _, _)| *t == id)
                    .map(|(_, l, r)| (xs.map(*l), ys.map(*r)))
                    .collect(),
            }
        })
        .collect();
    if let Some(c) = crossing {
        series.push(Series {
            transport: "crossing".into(),
            colour: "#222222",
            path: path(&[(xs.map(c), f.y1), (xs.map(c), f.y0)]),
            dashed: false,
            markers: Vec::new(),
        });
    }
    Some(LineChart {
        title: "Requests per second per client against the message rate, models dashed, \
                measurements as dots"
            .into(),
        plot: f,
        x_axis: Axis::new(
            &xs,
            tick_label,
            "messages per second into each client's feed (λ, log scale)",
        ),
        y_axis: Axis::new(&ys, tick_label, "requests per second per client (log)"),
        series,
        legend,
    })
}
