//! The findings the page opens with, worded for each kind of run: a normal one, an idle room,
//! one transport, a sweep, a run that did not complete. Each fixture is made from a checked-in
//! one, changed the way such a run would differ.

use report::findings::{Finding, findings};
use report::{Analysis, LatencyHistogram, Results};

use crate::helpers::{fixture, render, section};

fn texts(results: &Results) -> Vec<Finding> {
    findings(&Analysis::of(results))
}

fn joined(found: &[Finding]) -> String {
    found
        .iter()
        .map(|f| f.text.as_str())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Nothing published: no deliveries, every poll empty, long polls waiting out their timeout.
fn idle() -> Results {
    let mut results = fixture("results.json");
    for phase in &mut results.runs[0].phases {
        phase.messages_published = 0;
        phase.integrity = Default::default();
        phase.latency = LatencyHistogram::new();
        let t = &mut phase.traffic;
        t.payload_down = 0;
        match phase.transport.as_str() {
            "short_poll" => t.empty_responses = t.requests,
            "long_poll" => {
                // One request per 25 s timeout per client, all empty.
                t.requests = phase.clients;
                t.empty_responses = phase.clients;
            }
            _ => t.requests = 0,
        }
        for trace in &mut phase.traces {
            trace
                .events
                .retain(|e| !matches!(e, report::results::TraceEvent::Delivery { .. }));
        }
    }
    results
}

#[test]
fn a_normal_run_compares_requests_bytes_empty_polls_and_latency_with_numbers() {
    let results = fixture("results.json");
    let found = texts(&results);
    let text = joined(&found);
    assert!(
        text.contains("Short polling sent 23× the requests of SSE"),
        "{text}"
    );
    assert!(
        text.contains("45.9 against 2.00 requests per second"),
        "{text}"
    );
    assert!(
        text.contains("40% of short polls came back empty (174 of 440"),
        "{text}"
    );
    assert!(text.contains("read 1.6× the bytes of WebSocket"), "{text}");
    assert!(
        text.contains("median 244 ms, about half the 500 ms interval"),
        "{text}"
    );
    let sections: Vec<&str> = found.iter().map(|f| f.section).collect();
    assert_eq!(sections, ["card", "card", "bytes", "latency"]);
    // On the page: first, and each with a link to its section.
    let (_, html) = render(&results, "findings_normal");
    let findings = section(&html, "findings");
    assert!(html.find("id=\"findings\"") < html.find("id=\"card\""));
    assert_eq!(
        findings.matches("<li>").count(),
        5,
        "four findings and the pick"
    );
    for id in ["card", "bytes", "latency", "recommendation"] {
        assert!(findings.contains(&format!("href=\"#{id}\"")), "{id}");
    }
}

#[test]
fn an_idle_run_says_nothing_was_published_and_shows_no_meaningless_numbers() {
    let results = idle();
    let text = joined(&texts(&results));
    assert!(text.contains("Nothing was published"), "{text}");
    assert!(text.contains("with nothing to deliver"), "{text}");
    assert!(text.contains("SSE sent none after connecting"), "{text}");
    for meaningless in ["per delivered message", "median", "0.00", "—", "NaN", "inf"] {
        assert!(!text.contains(meaningless), "{meaningless}: {text}");
    }
    let (_, html) = render(&results, "findings_idle");
    let card = section(&html, "card");
    assert!(
        !card.contains("0.00 requests per second for 0.00 messages per second"),
        "{card}"
    );
    assert!(
        card.contains("each question waited out its timeout"),
        "{card}"
    );
    assert!(
        card.contains("asked for nothing (100% of the answers empty)"),
        "{card}"
    );
}

#[test]
fn a_one_transport_run_describes_that_transport_without_comparing() {
    let mut results = fixture("results.json");
    results.runs[0]
        .phases
        .retain(|p| p.transport == "websocket");
    results.scenario.transports = vec!["websocket".into()];
    let text = joined(&texts(&results));
    assert!(
        text.contains("Only WebSocket was measured: 2.50 requests per second for 20 clients"),
        "{text}"
    );
    assert!(
        text.contains("Each delivered message cost WebSocket 209 B read, 20 B up"),
        "{text}"
    );
    assert!(
        text.contains("Messages arrived in 0.49 ms (median)"),
        "{text}"
    );
    assert!(!text.contains('×'), "no ratio with one transport: {text}");
    assert!(!text.contains("short poll"), "{text}");
}

#[test]
fn a_sweep_says_how_the_requests_went_from_the_first_run_to_the_last() {
    let results = fixture("sweep.json");
    let found = texts(&results);
    let sweep = found
        .iter()
        .find(|f| f.section == "sweep")
        .expect("a sweep finding");
    assert!(
        sweep
            .text
            .starts_with("As clients.count went from 10 clients to 40 clients"),
        "{}",
        sweep.text
    );
    assert!(
        sweep.text.contains("short polling 23.5 → 90.7"),
        "{}",
        sweep.text
    );
    // The other findings describe the run the card shows, the last one (40 clients).
    assert!(
        joined(&found).contains("for 40 clients each"),
        "{}",
        joined(&found)
    );
}

#[test]
fn an_incomplete_run_says_so_first() {
    let mut results = fixture("results.json");
    results.complete = false;
    results.runs[0].phases.truncate(2);
    results.runs[0].phases[1].complete = false;
    results.runs[0].phases[1].integrity.missing = 12;
    let found = texts(&results);
    assert_eq!(found[0].section, "about");
    assert!(
        found[0].text.starts_with("This run did not complete: 2 of 4 planned transports were measured, and at least one of them was cut short."),
        "{}",
        found[0].text
    );
    assert!(
        found[1]
            .text
            .starts_with("Long polling lost 12 of 300 expected deliveries"),
        "{}",
        found[1].text
    );

    results.runs.clear();
    let found = texts(&results);
    assert_eq!(found.len(), 1);
    assert!(
        found[0].text.starts_with("Nothing was measured"),
        "{}",
        found[0].text
    );
}

#[test]
fn the_recommendation_follows_whether_clients_send_and_quotes_the_run() {
    let results = fixture("results.json");
    let pick = report::recommend::recommend(&Analysis::of(&results)).expect("a recommendation");
    assert_eq!(pick.transport, report::Transport::WebSocket);
    let why = pick.reasons.join("\n");
    assert!(why.contains("2 of 20 clients publish"), "{why}");
    assert!(
        why.contains("WebSocket made 2.50 requests per second and read 209 B"),
        "{why}"
    );
    assert!(
        why.contains("1.00 messages per 500 ms poll interval"),
        "{why}"
    );
    let caveats = pick.caveats.join("\n");
    assert!(caveats.contains("Upgrade"), "{caveats}");
    assert!(caveats.contains("proxy_buffering"), "{caveats}");

    // A feed nobody writes to from the page: SSE, with the six-connection caveat.
    let mut listen_only = results.clone();
    listen_only.scenario.senders = 0;
    let pick = report::recommend::recommend(&Analysis::of(&listen_only)).unwrap();
    assert_eq!(pick.transport, report::Transport::Sse);
    assert!(pick.caveats.join("\n").contains("six connections per host"));

    let (_, html) = render(&results, "recommendation");
    let section = section(&html, "recommendation");
    assert!(
        section.contains("Which transport for this scenario?"),
        "{section}"
    );
}

#[test]
fn a_saturated_run_says_whose_latency_it_is_and_does_not_explain_it_away() {
    let mut results = fixture("results.json");
    for phase in &mut results.runs[0].phases {
        phase.loadgen.saturated = true;
        phase.loadgen.timer_lag_max_ms = 3400.0;
        // Deliveries seconds late, as on an overloaded machine.
        phase.latency = LatencyHistogram::new();
        for i in 0..400 {
            phase.latency.record_us(6_000_000 + i * 1000);
        }
    }
    let found = texts(&results);
    let text = joined(&found);
    assert!(found[0].text.starts_with("The load generator was saturated during 4 of 4 phases (its timers fired up to 3.40 s late)"), "{text}");
    assert!(
        text.contains("took a median 6.20 s where the model expects 250 ms (half the 500 ms"),
        "{text}"
    );
    assert!(
        text.contains("on a machine too busy to measure them"),
        "{text}"
    );
    assert!(!text.contains("about half"), "{text}");
}
