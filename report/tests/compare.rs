//! `duplex compare`'s library side: a run compared with itself differs nowhere; a slower,
//! busier run is marked worse beyond the noise; the page is offline and escaped.

use report::LatencyHistogram;
use report::compare::{compare, render_page, write_table};

use crate::helpers::fixture;

#[test]
fn a_run_compared_with_itself_has_no_difference_beyond_noise() {
    let results = fixture("results.json");
    let c = compare(&results, &results);
    assert_eq!(
        c.differences.len(),
        4 * 9,
        "nine figures for each of four transports"
    );
    assert!(c.regressions().is_empty());
    assert!(c.setup.is_empty());
    for d in &c.differences {
        assert!(matches!(d.verdict(), "same" | "?"), "{d:?}");
        if d.base.is_some_and(|b| b != 0.0) {
            assert_eq!(d.ratio(), Some(1.0), "{d:?}");
        }
    }
}

#[test]
fn a_slower_and_busier_run_is_marked_worse_and_noise_decides_the_rest() {
    let base = fixture("results.json");
    let mut new = base.clone();
    let phases = &mut new.runs[0].phases;
    // WebSocket deliveries 300 ms late; short polling twice the requests.
    let ws = phases
        .iter_mut()
        .find(|p| p.transport == "websocket")
        .unwrap();
    ws.latency = LatencyHistogram::new();
    for _ in 0..500 {
        ws.latency.record_us(300_000);
    }
    let short = phases
        .iter_mut()
        .find(|p| p.transport == "short_poll")
        .unwrap();
    short.traffic.requests *= 2;
    // One more request for SSE is within its counting noise.
    let sse = phases.iter_mut().find(|p| p.transport == "sse").unwrap();
    sse.traffic.requests += 1;
    let c = compare(&base, &new);
    let find = |t: &str, f: &str| {
        c.differences
            .iter()
            .find(|d| d.transport == t && d.figure == f)
            .unwrap()
    };
    assert_eq!(find("websocket", "latency p50 (ms)").verdict(), "worse");
    assert_eq!(find("short_poll", "requests / s").verdict(), "worse");
    assert_eq!(find("short_poll", "requests / s").ratio_text(), "2.00×");
    assert_eq!(find("sse", "requests / s").verdict(), "same");
    assert_eq!(
        find("sse", "server CPU (s)").verdict(),
        "?",
        "a single reading"
    );
    let worse: Vec<String> = c
        .regressions()
        .iter()
        .map(|d| format!("{} {}", d.transport, d.figure))
        .collect();
    assert!(
        worse.contains(&"websocket latency p99 (ms)".to_string()),
        "{worse:?}"
    );

    let mut out = Vec::new();
    write_table(&c, &mut out).unwrap();
    let table = String::from_utf8(out).unwrap();
    assert!(table.contains("got worse beyond the noise"), "{table}");
    assert!(
        table.lines().any(|l| l.starts_with("short_poll")
            && l.contains("requests / s")
            && l.ends_with("worse")),
        "{table}"
    );
}

#[test]
fn the_compare_page_is_offline_and_escaped() {
    let mut base = fixture("results.json");
    base.scenario.name = "<script>alert(1)</script>".into();
    let page = render_page(&compare(&base, &fixture("results.json")));
    assert!(!page.contains("<script"), "{page}");
    assert!(page.contains("&lt;script&gt;"));
    for forbidden in ["http://", "https://", "src=", "href=", "<link"] {
        assert!(!page.contains(forbidden), "{forbidden}");
    }
    assert_eq!(page.matches("<tr class=").count(), 36);
}

#[test]
fn runs_set_up_differently_say_how() {
    let c = compare(&fixture("results.json"), &fixture("sweep.json"));
    assert_eq!(c.setup, ["clients per transport: 20 in base, 40 in new"]);
}
