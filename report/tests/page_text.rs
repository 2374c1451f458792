//! The page's words and numbering match the run: the timeline's caption gives the real share
//! of empty polls, sections are numbered without gaps, a warning is listed once, the legend's
//! "request" swatch is in the transports' colours, and a sweep's scenario facts describe the
//! run the card shows.

use crate::helpers::{fixture, render, section};

fn headings(html: &str) -> Vec<String> {
    html.split("<h2>")
        .skip(1)
        .map(|h| h[..h.find("</h2>").unwrap()].to_string())
        .collect()
}

/// The numbers in front of the numbered headings, in page order.
fn numbers(html: &str) -> Vec<usize> {
    headings(html)
        .iter()
        .filter_map(|h| h.split_once(". ").and_then(|(n, _)| n.parse().ok()))
        .collect()
}

#[test]
fn sections_are_numbered_without_gaps_whatever_the_run_leaves_out() {
    let mut results = fixture("results.json");
    let (_, html) = render(&results, "numbers_full");
    assert_eq!(
        numbers(&html),
        (1..=8).collect::<Vec<_>>(),
        "{:?}",
        headings(&html)
    );
    // Without traces there is no timeline: the numbers close up.
    for phase in &mut results.runs[0].phases {
        phase.traces.clear();
    }
    let (_, html) = render(&results, "numbers_no_timeline");
    assert!(!html.contains("id=\"timeline\""));
    assert_eq!(
        numbers(&html),
        (1..=7).collect::<Vec<_>>(),
        "{:?}",
        headings(&html)
    );
    let (_, html) = render(&fixture("sweep.json"), "numbers_sweep");
    assert_eq!(
        numbers(&html),
        (1..=9).collect::<Vec<_>>(),
        "{:?}",
        headings(&html)
    );
    assert!(
        html.contains("Sections 1–5 show the last run"),
        "the note names the right sections"
    );
    assert!(html.contains("section 7 and sweep.csv compare all of them"));
}

#[test]
fn the_timeline_caption_gives_this_runs_share_of_empty_polls() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "caption_share");
    let timeline = section(&html, "timeline");
    assert!(!timeline.contains("most of them grey"), "{timeline}");
    assert!(
        timeline.contains("(40% of this run&#39;s polls did)"),
        "{timeline}"
    );
    assert!(
        timeline.contains("SSE and WebSocket keep one stream open"),
        "{timeline}"
    );
}

#[test]
fn the_request_swatch_shows_the_transports_colours_not_grey() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "legend_palette");
    let timeline = section(&html, "timeline");
    let item = timeline
        .split("<g class=\"legend-item\">")
        .find(|i| i.contains("request (in its transport"))
        .expect("a request legend item");
    for colour in ["#D55E00", "#CC79A7", "#0072B2", "#009E73"] {
        assert!(item.contains(colour), "{colour} missing: {item}");
    }
    assert!(!item.contains("#555555"), "{item}");
}

#[test]
fn each_warning_is_listed_once() {
    let mut results = fixture("results.json");
    let phase = &mut results.runs[0].phases[3];
    phase.loadgen.saturated = true;
    phase.integrity.missing = 7;
    // What the loadgen writes for the same facts.
    phase.warnings = vec![
        "7 deliveries missing".into(),
        "loadgen saturated: its timers fired late (p99 9.0 ms, max 20.0 ms; its CPU 1.0 s in 10.0 s), so the machine or the loadgen was too busy and latencies include that delay".into(),
        "some publishes were still unanswered when the window closed".into(),
    ];
    let (_, html) = render(&results, "warnings_once");
    let about = section(&html, "about");
    let items = about.matches("<li>").count();
    assert_eq!(
        items, 3,
        "saturated, missing, unanswered publishes: {about}"
    );
    assert_eq!(about.matches("saturated").count(), 1, "{about}");
    assert!(
        about.contains("still unanswered"),
        "a warning the report does not derive stays"
    );
    assert!(html.contains("This run has 3 validity warning(s)"));
}

#[test]
fn a_sweeps_scenario_facts_describe_the_run_the_card_shows() {
    let mut results = fixture("sweep.json");
    // The scenario's own value is the file's (the sweep replaces it run by run).
    results.scenario.clients = 10;
    let last = results.runs.last().unwrap();
    let (_, html) = render(&results, "sweep_facts");
    let about = section(&html, "about");
    assert!(
        about.contains(&format!(
            "Clients per transport in the run shown</dt><dd>{} ",
            last.clients
        )),
        "{about}"
    );
}

#[test]
fn the_header_states_what_this_run_did_whatever_the_description_says() {
    let mut results = fixture("results.json");
    // As after `duplex run --clients 7 --duration 3s`: the description still quotes the file.
    results.scenario.clients = 7;
    results.runs[0].clients = 7;
    results.scenario.duration_s = 3.0;
    let (_, html) = render(&results, "this_run");
    assert!(
        html.contains(
            "This run: 7 clients per transport, 2 of them sending 1 msg/s each, 3 s measured \
             per transport, on loopback."
        ),
        "{}",
        &html[..3000]
    );
}

#[test]
fn the_crossover_chart_draws_every_model_its_measured_points_and_lambda_one_over_t() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "crossover");
    let chart = crate::helpers::charts(section(&html, "crossover"))[0];
    for t in ["short_poll", "long_poll", "sse", "websocket"] {
        let line = chart
            .lines()
            .find(|l| l.contains(&format!("data-transport=\"{t}\"")))
            .unwrap_or_else(|| panic!("no {t} curve"));
        assert!(
            line.contains("stroke-dasharray"),
            "{t}: the model is dashed"
        );
    }
    // One dot per transport of the one run, and the marker line at λ = 1/T = 2 msg/s.
    assert_eq!(
        chart.matches("<circle").count(),
        4 + 1,
        "4 dots and the legend's dot"
    );
    assert!(chart.contains("data-transport=\"crossing\""));
}
