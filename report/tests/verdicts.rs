//! The card's verdicts: a model with a measured server floor agrees with a loopback run, a
//! deliberately wrong model is still flagged, and a model at 0 ms is not drawn along the
//! latency chart's edge.

use report::{Analysis, LatencyHistogram, Results};

use crate::helpers::{card_row, charts, fixture, render, section};

const PUSH_AND_LONG_POLL: [&str; 3] = ["long_poll", "sse", "websocket"];

fn with_floor(mut results: Results, floor_ms: f64) -> Results {
    for phase in &mut results.runs[0].phases {
        phase.model_floor_ms = Some(floor_ms);
    }
    results
}

#[test]
fn push_models_start_at_the_server_floor_not_at_zero() {
    let (_, html) = render(&fixture("results.json"), "floor_estimated");
    let p50 = card_row(&html, "Latency p50");
    for cell in &p50[1..] {
        assert!(!cell.contains("model: 0.00 ms"), "{cell}");
        assert!(cell.contains("fastest delivery"), "{cell}");
    }
    let (_, html) = render(&with_floor(fixture("results.json"), 0.3), "floor_measured");
    for cell in &card_row(&html, "Latency p50")[1..] {
        assert!(cell.contains("model: 0.30 ms"), "{cell}");
        assert!(cell.contains("measured"), "{cell}");
    }
}

#[test]
fn a_loopback_run_with_its_floor_measured_has_no_latency_flags() {
    let (_, html) = render(&with_floor(fixture("results.json"), 0.3), "floor_clean");
    for metric in ["Latency p50", "Latency p99"] {
        for cell in card_row(&html, metric) {
            assert!(!cell.contains("⚠ differs"), "{metric}: {cell}");
        }
    }
}

#[test]
fn a_deliberately_wrong_floor_is_flagged_for_every_push_and_long_poll_latency() {
    let results = with_floor(fixture("results.json"), 20.0);
    let (_, html) = render(&results, "floor_wrong");
    let transports: Vec<&str> = results.runs[0]
        .phases
        .iter()
        .map(|p| p.transport.as_str())
        .collect();
    for metric in ["Latency p50", "Latency p99"] {
        for (t, cell) in transports.iter().zip(card_row(&html, metric)) {
            let flagged = cell.contains("⚠ differs");
            assert_eq!(
                flagged,
                PUSH_AND_LONG_POLL.contains(t),
                "{metric} {t}: {cell}"
            );
        }
    }
}

#[test]
fn a_deliberately_wrong_poll_interval_is_flagged() {
    // The clients polled every 500 ms; a model told 300 ms expects far shorter waits.
    let mut results = fixture("results.json");
    results.runs[0].short_poll_interval_ms = 300.0;
    let (_, html) = render(&results, "interval_wrong");
    let p50 = &card_row(&html, "Latency p50")[0];
    assert!(p50.contains("⚠ differs"), "{p50}");
}

#[test]
fn a_model_at_zero_ms_is_not_drawn_along_the_latency_charts_edge() {
    let (_, html) = render(&with_floor(fixture("results.json"), 0.0), "floor_zero");
    let cdf = charts(section(&html, "latency"))[0];
    let dashed: Vec<&str> = cdf
        .lines()
        .filter(|l| l.contains("stroke-dasharray=\"9 6\""))
        .collect();
    // Only short polling's model has anything to draw on a log axis.
    assert_eq!(dashed.len(), 1, "{dashed:?}");
    assert!(dashed[0].contains("data-transport=\"short_poll\""));

    // With a floor, a push model is one vertical step at the floor, not a box.
    let (_, html) = render(&with_floor(fixture("results.json"), 0.3), "floor_step");
    let cdf = charts(section(&html, "latency"))[0];
    let sse = cdf
        .lines()
        .find(|l| l.contains("stroke-dasharray=\"9 6\"") && l.contains("\"sse\""))
        .expect("an SSE model");
    let d = &sse[sse.find("d=\"").unwrap() + 3..];
    let d = &d[..d.find('"').unwrap()];
    let points: Vec<&str> = d
        .split(['M', 'L'])
        .filter(|p| !p.trim().is_empty())
        .collect();
    assert_eq!(points.len(), 2, "{d}");
    let x = |p: &str| p.split_whitespace().next().unwrap().to_string();
    assert_eq!(x(points[0]), x(points[1]), "a vertical step: {d}");
}

/// The fixture with its short-poll phase replaced by a classroom-sized one: 90,000 deliveries
/// (300 clients × 300 messages) whose waits spread evenly over the 500 ms interval, each
/// `offset_ms` late (the server's and the loadgen's own time), and every phase's floor as
/// measured: `floor` = (median, spread) ms, or `None` for a run that did not measure it.
fn classroom_short_poll(offset_ms: f64, floor: Option<(f64, f64)>) -> Results {
    let mut results = fixture("results.json");
    let short = &mut results.runs[0].phases[0];
    assert_eq!(short.transport, "short_poll");
    short.latency = LatencyHistogram::new();
    let n = 90_000u64;
    for i in 0..n {
        short
            .latency
            .record_us((offset_ms * 1000.0) as u64 + i * 500_000 / n);
    }
    short.integrity.deliveries_expected = n;
    short.integrity.deliveries_received = n;
    for phase in &mut results.runs[0].phases {
        phase.model_floor_ms = floor.map(|f| f.0);
        phase.model_floor_spread_ms = floor.map(|f| f.1);
    }
    results
}

/// Whether (p50, p99) of phase `i` of the first run differ from the model.
fn latency_flags(results: &Results, i: usize) -> (bool, bool) {
    let analysis = Analysis::of(results);
    let v = &analysis.runs[0].phases[i].verdicts;
    (v.latency_p50.differs, v.latency_p99.differs)
}

#[test]
fn a_short_poll_a_few_ms_behind_its_model_agrees_once_the_floor_is_measured() {
    // 300 clients' ranks make a tight band (about 3 ms at p50, 1 ms at p99), so the 3 ms the
    // server and the loadgen take are outside it unless the run measured them.
    let unmeasured = classroom_short_poll(3.0, None);
    assert_eq!(latency_flags(&unmeasured, 0), (true, true));
    let measured = classroom_short_poll(3.0, Some((2.5, 0.6)));
    assert_eq!(latency_flags(&measured, 0), (false, false));
}

#[test]
fn a_short_poll_model_off_by_a_few_percent_of_its_interval_or_by_20_ms_is_still_flagged() {
    let floor = Some((2.5, 0.6));
    // Told 490 ms: p99 expected at 485 ms where 498 ms was measured.
    let mut shorter = classroom_short_poll(3.0, floor);
    shorter.runs[0].short_poll_interval_ms = 490.0;
    assert!(latency_flags(&shorter, 0).1, "a 490 ms interval");
    // Told 520 ms: a median of 260 ms expected, 253 ms measured.
    let mut longer = classroom_short_poll(3.0, floor);
    longer.runs[0].short_poll_interval_ms = 520.0;
    assert_eq!(latency_flags(&longer, 0), (true, true), "a 520 ms interval");
    // A model that adds 20 ms of network trips the run never had.
    let mut trips = classroom_short_poll(3.0, floor);
    trips.runs[0].rtt_ms = 20.0;
    assert_eq!(latency_flags(&trips, 0), (true, true), "20 ms of trips");
}

#[test]
fn a_push_or_long_poll_model_20_ms_off_is_flagged_despite_the_floors_spread() {
    let mut results = classroom_short_poll(3.0, Some((0.3, 0.2)));
    results.runs[0].rtt_ms = 20.0;
    for (i, phase) in results.runs[0].phases.iter().enumerate().skip(1) {
        assert_eq!(
            latency_flags(&results, i),
            (true, true),
            "{}",
            phase.transport
        );
    }
    // The same run told the truth agrees.
    let honest = classroom_short_poll(3.0, Some((0.3, 0.2)));
    for i in 1..honest.runs[0].phases.len() {
        assert_eq!(latency_flags(&honest, i), (false, false));
    }
}
