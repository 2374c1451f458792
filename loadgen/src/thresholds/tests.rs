//! Thresholds as a user writes and reads them: the grammar's errors name the problem, a failing
//! threshold fails the verdict and shows its figure, the integrity rule fails a lossy run unless
//! a threshold on that figure allows it, and `--strict` fails a saturated loadgen.

use std::path::Path;

use report::LatencyHistogram;
use report::results::{Phase, Results, Run};

use super::*;

fn phase(transport: &str) -> Phase {
    let mut latency = LatencyHistogram::new();
    for ms in 1..=100 {
        latency.record_us(ms * 1000);
    }
    let mut p = Phase {
        transport: transport.to_owned(),
        clients: 10,
        clients_connected: 10,
        duration_s: 10.0,
        complete: true,
        messages_published: 10,
        integrity: Default::default(),
        latency,
        request_rtt: LatencyHistogram::new(),
        connect_time: LatencyHistogram::new(),
        traffic: Default::default(),
        server: Default::default(),
        loadgen: Default::default(),
        timeseries: Vec::new(),
        traces: Vec::new(),
        warnings: Vec::new(),
        model_floor_ms: None,
        model_floor_spread_ms: None,
        stack: None,
        reconnects: 0,
        node_killed: None,
        server_processes: Vec::new(),
        latency_by_node: None,
    };
    p.integrity.deliveries_expected = 100;
    p.integrity.deliveries_received = 100;
    p.traffic.requests = 7000;
    p
}

/// The report's fixture as a skeleton (scenario, environment), with these phases as its run.
fn results(phases: Vec<Phase>) -> Results {
    let fixture =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../report/tests/fixtures/results.json");
    let mut r = report::read_results(&fixture).expect("the report's fixture reads");
    r.scenario.sweep = None;
    r.runs = vec![Run {
        sweep_value: None,
        clients: 10,
        rate_per_sender: 1.0,
        short_poll_interval_ms: 500.0,
        rtt_ms: 0.0,
        phases,
    }];
    r
}

fn flag(text: &str) -> Threshold {
    parse(text, Origin::Flag).unwrap()
}

fn table(v: &Verdict) -> String {
    let mut out = Vec::new();
    write_table(v, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

#[test]
fn parses_the_documented_forms() {
    let t = flag("websocket.latency_p99_ms < 50");
    assert_eq!(t.transport, Some(Transport::WebSocket));
    assert_eq!(
        (t.metric.as_str(), t.op, t.bound),
        ("latency_p99_ms", Op::Lt, 50.0)
    );
    let t = flag("*.missing==0");
    assert_eq!((t.transport, t.op, t.bound), (None, Op::Eq, 0.0));
    assert_eq!(flag("short_poll.requests_per_s <= 700").op, Op::Le);
    assert_eq!(t.to_string(), "*.missing == 0");
}

#[test]
fn percentiles_read_with_two_whole_digits() {
    let p = phase("sse");
    let q = |name: &str| flag(&format!("sse.{name} < 1")).figure.read(&p).unwrap();
    // Within the histogram's 3 significant digits.
    let near = |got: f64, want: f64| (got - want).abs() < want * 1e-3;
    assert!(near(q("latency_p50_ms"), 50.0), "{}", q("latency_p50_ms"));
    assert!(near(q("latency_p99_ms"), 99.0), "{}", q("latency_p99_ms"));
    assert!(near(q("latency_max_ms"), 100.0), "{}", q("latency_max_ms"));
    // p999 is 99.9: between the 99th value and the maximum.
    assert!((99.0..=100.1).contains(&q("latency_p999_ms")));
    let quantile = |name: &str| match flag(&format!("sse.{name} < 1")).figure {
        Figure::Quantile(_, q) => q,
        other => panic!("{other:?}"),
    };
    assert!((quantile("latency_p999_ms") - 0.999).abs() < 1e-12);
    assert!((quantile("request_rtt_p9999_ms") - 0.9999).abs() < 1e-12);
    assert!((quantile("connect_time_p5_ms") - 0.05).abs() < 1e-12);
}

#[test]
fn parse_errors_name_the_problem() {
    let e = |text: &str| parse(text, Origin::Flag).unwrap_err().to_string();
    assert!(
        e("websocket.latency_p99_ms 50").starts_with("no comparison in"),
        "{}",
        e("websocket.latency_p99_ms 50")
    );
    assert!(e("pigeon.missing == 0").starts_with("unknown transport `pigeon`"));
    let unknown = e("sse.latncy_p99_ms < 5");
    assert!(
        unknown.starts_with("unknown metric `latncy_p99_ms`; known: latency_pNN_ms"),
        "{unknown}"
    );
    assert!(unknown.contains("requests_per_s"), "{unknown}");
    assert!(e("sse.missing == lots").starts_with("`lots` is not a number"));
    assert!(e("missing == 0").starts_with("no transport before the metric"));
    assert!(
        e("sse.missing = 0").contains("is not a comparison"),
        "{}",
        e("sse.missing = 0")
    );
    assert!(e("sse.latency_p100_ms < 5").contains("p<digits>"));
}

#[test]
fn a_failing_threshold_fails_and_shows_its_figure() {
    let r = results(vec![phase("short_poll"), phase("websocket")]);
    let v = evaluate(
        &r,
        &[
            flag("websocket.latency_p99_ms < 50"),
            flag("short_poll.requests_per_s < 800"),
        ],
        false,
    );
    assert_eq!(v.failures(), 1);
    assert!(!v.passed());
    let fail = v
        .checks
        .iter()
        .find(|c| c.outcome == Outcome::Fail)
        .unwrap();
    assert_eq!(
        (fail.subject.as_str(), fail.rule.as_str()),
        ("websocket", "latency_p99_ms < 50")
    );
    assert!(
        fail.value.is_some_and(|v| (v - 99.0).abs() < 0.1),
        "{:?}",
        fail.value
    );
    let pass = v
        .checks
        .iter()
        .find(|c| c.rule == "requests_per_s < 800")
        .unwrap();
    assert_eq!((pass.value, pass.outcome), (Some(700.0), Outcome::Pass));
    let text = table(&v);
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("websocket")
            && l.contains("99")
            && l.ends_with("--threshold")),
        "{text}"
    );
    // The six passing integrity checks are one line, not six rows.
    assert!(!text.contains("duplicates == 0"), "{text}");
    assert!(text.contains("the other 6 integrity checks"), "{text}");
    assert!(
        text.ends_with(&format!("checks: 1 of {} failed\n", v.checks.len())),
        "{text}"
    );
}

#[test]
fn lost_messages_fail_unless_a_threshold_allows_them() {
    let mut lossy = phase("short_poll");
    lossy.integrity.missing = 90;
    let r = results(vec![lossy, phase("sse")]);
    let v = evaluate(&r, &[], false);
    assert_eq!(v.failures(), 1);
    let fail = v
        .checks
        .iter()
        .find(|c| c.outcome == Outcome::Fail)
        .unwrap();
    assert_eq!(
        (fail.rule.as_str(), fail.origin, fail.value),
        ("missing == 0", Origin::Integrity, Some(90.0))
    );

    // A threshold on the same figure says how much is allowed and replaces the rule there.
    let v = evaluate(&r, &[flag("short_poll.missing <= 100")], false);
    assert!(v.passed(), "{}", table(&v));
    assert_eq!(
        v.checks
            .iter()
            .filter(|c| c.rule.starts_with("missing"))
            .count(),
        2
    );
}

#[test]
fn a_clean_run_prints_one_line() {
    let v = evaluate(&results(vec![phase("sse")]), &[], false);
    assert!(v.passed());
    assert_eq!(
        table(&v),
        "checks: 3 passed (nothing missing, duplicated or out of order)\n"
    );
}

#[test]
fn strict_fails_a_saturated_loadgen() {
    let mut busy = phase("websocket");
    busy.loadgen.saturated = true;
    let r = results(vec![busy]);
    assert!(evaluate(&r, &[], false).passed());
    let v = evaluate(&r, &[], true);
    assert_eq!(v.failures(), 1);
    assert_eq!(
        v.checks
            .iter()
            .find(|c| c.outcome == Outcome::Fail)
            .unwrap()
            .origin,
        Origin::Strict
    );
}

#[test]
fn a_threshold_on_a_transport_that_did_not_run_is_shown_skipped() {
    let v = evaluate(
        &results(vec![phase("sse")]),
        &[flag("websocket.latency_p99_ms < 50")],
        false,
    );
    assert!(v.passed());
    assert!(
        table(&v)
            .lines()
            .any(|l| l.starts_with("skip") && l.contains("websocket")),
        "{}",
        table(&v)
    );
}

#[test]
fn nothing_delivered_fails_a_latency_threshold() {
    let mut idle = phase("sse");
    idle.latency = LatencyHistogram::new();
    let v = evaluate(
        &results(vec![idle]),
        &[flag("sse.latency_p99_ms < 50")],
        false,
    );
    assert_eq!(v.failures(), 1);
    assert!(table(&v).contains("none"), "{}", table(&v));
}

#[test]
fn a_misdelivered_message_fails_a_run_whose_mode_leaves_clients_out() {
    let mut stray = phase("websocket");
    stray.integrity.misdelivered = 2;
    stray.stack = Some("socketio".into());
    let mut r = results(vec![stray]);
    r.scenario.chat_mode = Some("others".into());
    let v = evaluate(&r, &[], false);
    let fail = v
        .checks
        .iter()
        .find(|c| c.outcome == Outcome::Fail)
        .unwrap();
    assert_eq!(
        (fail.subject.as_str(), fail.rule.as_str(), fail.value),
        ("socketio/websocket", "misdelivered == 0", Some(2.0))
    );
}

/// `phase(transport)` as `stack`'s.
fn stack_phase(stack: &str, transport: &str) -> Phase {
    Phase {
        stack: Some(stack.to_owned()),
        ..phase(transport)
    }
}

#[test]
fn a_threshold_naming_a_stack_checks_that_stacks_phase_and_one_naming_none_checks_every_stacks() {
    let t = flag("nchan.sse.latency_p99_ms < 50");
    assert_eq!(
        (t.stack.as_deref(), t.transport),
        (Some("nchan"), Some(Transport::Sse))
    );
    assert_eq!(flag("*.sse.missing == 0").stack, None, "`*` is every stack");
    let mut lossy = stack_phase("nchan", "sse");
    lossy.integrity.missing = 4;
    let r = results(vec![
        stack_phase("duplex", "sse"),
        lossy,
        stack_phase("nchan", "websocket"),
    ]);
    // p99 of 1..=100 ms is about 99 ms: below 150 everywhere, not below 50.
    let v = evaluate(
        &r,
        &[
            flag("nchan.sse.latency_p99_ms < 50"),
            flag("sse.latency_p99_ms < 150"),
        ],
        false,
    );
    let of = |subject: &str, rule: &str| {
        v.checks
            .iter()
            .find(|c| c.subject == subject && c.rule.starts_with(rule))
            .map(|c| c.outcome)
    };
    assert_eq!(of("nchan/sse", "latency_p99_ms < 50"), Some(Outcome::Fail));
    assert_eq!(
        of("duplex/sse", "latency_p99_ms < 50"),
        None,
        "duplex's SSE is not nchan's"
    );
    assert_eq!(
        of("duplex/sse", "latency_p99_ms < 150"),
        Some(Outcome::Pass)
    );
    assert_eq!(of("nchan/sse", "latency_p99_ms < 150"), Some(Outcome::Pass));
    assert_eq!(of("nchan/websocket", "latency_p99_ms"), None);
    // A stack's allowance on an integrity figure replaces the rule for that stack only.
    let v = evaluate(&r, &[flag("nchan.*.missing <= 5")], false);
    assert!(v.passed(), "{}", table(&v));
    let mut duplex_lossy = stack_phase("duplex", "sse");
    duplex_lossy.integrity.missing = 1;
    let r2 = results(vec![duplex_lossy, stack_phase("nchan", "sse")]);
    let v = evaluate(&r2, &[flag("nchan.*.missing <= 5")], false);
    assert_eq!(
        v.failures(),
        1,
        "duplex's loss still fails the integrity rule"
    );
    // A stack that did not run is shown as skipped.
    let v = evaluate(&r, &[flag("socketio.websocket.missing == 0")], false);
    let skipped: Vec<&Check> = v
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skipped)
        .collect();
    assert_eq!(skipped.len(), 1);
    assert_eq!(skipped[0].subject, "socketio/websocket");
}

#[test]
fn a_stack_part_that_is_not_a_name_or_too_many_parts_is_refused() {
    let e = parse("a b.sse.missing == 0", Origin::Flag)
        .unwrap_err()
        .to_string();
    assert!(e.contains("`a b` is not a stack name"), "{e}");
    let e = parse("x.nchan.sse.missing == 0", Origin::Flag)
        .unwrap_err()
        .to_string();
    assert!(e.contains("too many parts in `x.nchan.sse.missing`"), "{e}");
}
