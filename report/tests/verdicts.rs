//! The card's verdicts: a model with a measured server floor agrees with a loopback run, a
//! deliberately wrong model is still flagged, and a model at 0 ms is not drawn along the
//! latency chart's edge.

use report::Results;

use crate::helpers::{charts, fixture, render, section};

const PUSH_AND_LONG_POLL: [&str; 3] = ["long_poll", "sse", "websocket"];

fn with_floor(mut results: Results, floor_ms: f64) -> Results {
    for phase in &mut results.runs[0].phases {
        phase.model_floor_ms = Some(floor_ms);
    }
    results
}

/// The card cells of row `metric`, one per transport column, in order.
fn card_row(html: &str, metric: &str) -> Vec<String> {
    let card = section(html, "card");
    let row = &card[card
        .find(&format!("<th class=\"metric\">{metric}"))
        .unwrap_or_else(|| panic!("no card row {metric}"))..];
    let row = &row[..row.find("</tr>").expect("row ends")];
    row.split("<td>").skip(1).map(String::from).collect()
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
