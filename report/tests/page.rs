//! The HTML page: every transport in every chart, nothing loaded from elsewhere, data escaped.

use crate::helpers::{charts, fixture, render, section, transports};

#[test]
fn every_transport_appears_in_every_chart_and_in_the_card() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "every_transport");
    let transports = transports(&results);
    assert_eq!(
        transports.len(),
        4,
        "the fixture covers all four transports"
    );

    let card = section(&html, "card");
    for t in &transports {
        assert!(
            card.contains(&format!("data-transport=\"{t}\"")),
            "card column for {t}"
        );
    }
    // Sections 2–5 hold one chart each, except 5 (three charts).
    for (id, expected_charts) in [
        ("latency", 1),
        ("bytes", 1),
        ("timeline", 1),
        ("over-time", 3),
    ] {
        let svgs = charts(section(&html, id));
        assert_eq!(svgs.len(), expected_charts, "charts in section {id}");
        for svg in svgs {
            for t in &transports {
                assert!(
                    svg.contains(&format!("data-transport=\"{t}\"")),
                    "{t} missing from a chart in section {id}"
                );
            }
            assert!(
                svg.contains("class=\"legend-item\""),
                "a legend in section {id}"
            );
            assert!(
                svg.contains("class=\"axis-title\""),
                "an axis title in section {id}"
            );
        }
    }
    assert!(
        !html.contains("<section id=\"sweep\">"),
        "no sweep section for a single run"
    );
}

#[test]
fn latency_chart_draws_a_measured_curve_and_a_model_per_transport() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "cdf_models");
    let cdf = charts(section(&html, "latency"))[0];
    for t in transports(&results) {
        let lines = cdf.matches(&format!("data-transport=\"{t}\"")).count();
        assert_eq!(lines, 2, "{t}: one measured curve and one model curve");
    }
    assert_eq!(
        cdf.matches("stroke-dasharray=\"9 6\"").count(),
        4,
        "four dashed models"
    );
}

#[test]
fn a_sweep_draws_cost_curves_for_every_transport() {
    let results = fixture("sweep.json");
    assert_eq!(results.runs.len(), 3);
    let (_, html) = render(&results, "sweep");
    let sweep = section(&html, "sweep");
    let svgs = charts(sweep);
    assert_eq!(svgs.len(), 5, "requests/s, bytes/s, CPU, memory, p99");
    for svg in svgs {
        for t in transports(&results) {
            let needle = format!("data-transport=\"{t}\"");
            assert!(svg.contains(&needle), "{t} missing from a sweep chart");
        }
        // One dot per run per transport.
        assert_eq!(svg.matches("<circle").count(), 3 * 4);
        assert!(
            svg.contains("clients.count (clients)"),
            "x axis names the swept key and unit"
        );
    }
}

#[test]
fn the_page_references_nothing_outside_itself() {
    for name in ["results.json", "sweep.json"] {
        let (_, html) = render(
            &fixture(name),
            &format!("offline_{}", name.replace('.', "_")),
        );
        let lower = html.to_lowercase();
        for forbidden in [
            "http://",
            "https://",
            "src=",
            "<script",
            "<link",
            "<img",
            "<iframe",
            "@import",
            "@font-face",
            "xlink:",
        ] {
            assert!(
                !lower.contains(forbidden),
                "{name}: the page contains `{forbidden}`"
            );
        }
        // Links may only point inside the page (the findings link to their sections).
        for (at, _) in lower.match_indices("href=") {
            assert!(
                lower[at..].starts_with("href=\"#"),
                "{name}: a link out of the page at byte {at}"
            );
        }
        // `url(...)` may only point inside the page (the hatch pattern, the arrowhead).
        for (at, _) in lower.match_indices("url(") {
            assert!(
                lower[at..].starts_with("url(#"),
                "{name}: external url( at byte {at}"
            );
        }
    }
}

#[test]
fn text_from_the_results_file_is_escaped() {
    let mut results = fixture("results.json");
    let attack = "<script>alert(1)</script>";
    results.scenario.name = attack.into();
    results.scenario.description = format!("{attack} & \"quotes\"");
    results.scenario.room = attack.into();
    results.environment.cpu_model = attack.into();
    results.warnings.push(attack.into());
    results.runs[0].phases[0].warnings.push(attack.into());
    results.runs[0].phases[1].traces[0].client = attack.into();
    let (_, html) = render(&results, "escaping");
    assert!(
        !html.contains("<script"),
        "a raw <script> tag reached the page"
    );
    assert!(!html.contains(attack));
    // The name is still shown, as text.
    assert!(
        html.matches("alert(1)").count() >= 7,
        "every injected string is shown as text"
    );
    assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
}

#[test]
fn the_card_shows_models_and_marks_a_measurement_that_disagrees() {
    let mut results = fixture("results.json");
    let (_, clean) = render(&results, "card_clean");
    let card = section(&clean, "card");
    assert!(
        card.contains("model: 250 ms") || card.contains("model: 2"),
        "model values shown"
    );
    let marks_before = card.matches("⚠ differs").count();

    // WebSocket deliveries that took 300 ms on loopback disagree with "latency = the two network
    // trips", which loopback makes next to nothing.
    let ws = results.runs[0]
        .phases
        .iter_mut()
        .find(|p| p.transport == "websocket")
        .unwrap();
    ws.latency = report::LatencyHistogram::new();
    for _ in 0..100 {
        ws.latency.record_us(300_000);
    }
    let (_, slow) = render(&results, "card_slow");
    let marks_after = section(&slow, "card").matches("⚠ differs").count();
    assert_eq!(
        marks_after,
        marks_before + 2,
        "p50 and p99 of WebSocket marked"
    );
}

#[test]
fn validity_warnings_are_listed_at_the_end() {
    let mut results = fixture("results.json");
    let (_, clean) = render(&results, "warnings_none");
    assert!(section(&clean, "about").contains("None: the load generator kept up"));

    results.complete = false;
    results.runs[0].phases[2].loadgen.saturated = true;
    results.runs[0].phases[3].integrity.missing = 7;
    let (_, html) = render(&results, "warnings_some");
    let about = section(&html, "about");
    assert!(about.contains("did not complete"));
    assert!(about.contains("load generator was saturated"));
    assert!(about.contains("7 expected deliveries never arrived"));
    assert!(about.contains("git commit"), "environment lists the commit");
}

#[test]
fn results_without_runs_still_render_a_page_that_says_so() {
    let mut results = fixture("results.json");
    results.runs.clear();
    results.complete = false;
    let (dir, html) = render(&results, "no_runs");
    assert!(html.contains("did not complete"));
    let summary = std::fs::read_to_string(dir.join("summary.csv")).unwrap();
    assert_eq!(summary.lines().count(), 1, "only the header");
}

#[test]
fn on_an_emulated_network_the_card_explains_and_models_both_trips() {
    let mut results = fixture("results.json");
    results.scenario.network.rtt_ms = 100.0;
    results.runs[0].rtt_ms = 100.0;
    let (_, html) = render(&results, "card_rtt");
    let card = section(&html, "card");
    assert_eq!(
        card.matches("crosses the network twice").count(),
        4,
        "every transport's explanation names the two trips"
    );
    // SSE and WebSocket: the publish's 50 ms in plus the delivery's 50 ms out, p50 and p99.
    assert!(
        card.matches("model: 100 ms").count() >= 4,
        "push models start at one round trip"
    );
}

#[test]
fn the_card_shows_tcp_connections_held_and_what_the_server_held_open() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "card_connections");
    let card = section(&html, "card");
    assert!(card.contains("TCP connections held (peak)"), "{card}");
    for phase in &results.runs[0].phases {
        let s = &phase.server;
        // The fixture's short polls hold far fewer requests open than TCP connections.
        assert!(s.tcp_connections_peak > 0, "{}", phase.transport);
        assert!(
            card.contains(&format!("{} requests held open", s.open_connections_peak))
                || card.contains(&format!("{} streams held open", s.open_connections_peak))
                || card.contains(&format!("{} sockets held open", s.open_connections_peak)),
            "{}: {card}",
            phase.transport
        );
    }
    let short = &results.runs[0].phases[0];
    assert_eq!(short.transport, "short_poll");
    assert!(short.server.open_connections_peak < short.server.tcp_connections_peak);
}

#[test]
fn the_card_shows_bytes_up_and_memory_growth_per_client() {
    let results = fixture("results.json");
    let (_, html) = render(&results, "card_up_and_memory");
    let card = section(&html, "card");
    assert!(card.contains("Bytes up per delivered message"), "{card}");
    for phase in &results.runs[0].phases {
        let up = phase.traffic.bytes_up as f64 / phase.integrity.deliveries_received as f64;
        assert!(
            card.contains(&format!("<span class=\"measured\">{up:.0} B</span>")),
            "{}: {up:.0} B up per message",
            phase.transport
        );
        let s = &phase.server;
        let per_client = (s.rss_peak_bytes - s.rss_start_bytes) as f64 / phase.clients as f64;
        assert!(
            card.contains(&format!("{:.1} KiB more per client", per_client / 1024.0)),
            "{}",
            phase.transport
        );
    }
}
