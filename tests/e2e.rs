//! End to end: `duplex run scenarios/smoke.toml` as a user runs it (the binary starts its own
//! `duplex serve` child), then the files it wrote are checked against what the smoke scenario
//! must show on every transport.

use std::path::PathBuf;
use std::process::Command;

const SUMMARY_HEADER: &str = "transport,clients,duration_s,messages_published,deliveries_expected,deliveries_received,missing,duplicates,out_of_order,latency_p50_ms,latency_p90_ms,latency_p99_ms,latency_max_ms,requests,empty_responses,bytes_up,bytes_down,server_cpu_s,server_rss_peak_mib,errors,bytes_up_per_message,bytes_down_per_message,server_rss_growth_per_client_kib,stack";

fn out_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("duplex-e2e-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[test]
fn smoke_run_delivers_everything_on_every_transport_at_the_expected_cost() {
    let out = out_dir();
    let root = env!("CARGO_MANIFEST_DIR");
    let status = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(root)
        .args(["run", "scenarios/smoke.toml", "--out"])
        .arg(&out)
        .status()
        .expect("duplex runs");
    assert!(status.success(), "duplex run failed: {status}");

    let results = report::read_results(out.join("results.json")).expect("results.json reads back");
    assert!(results.complete, "{:?}", results.warnings);
    let s = &results.scenario;
    assert_eq!(s.name, "smoke");
    assert_eq!(results.runs.len(), 1);
    let phases = &results.runs[0].phases;
    let names: Vec<&str> = phases.iter().map(|p| p.transport.as_str()).collect();
    assert_eq!(names, ["short_poll", "long_poll", "sse", "websocket"]);

    for p in phases {
        let t = &p.transport;
        assert_eq!(p.clients_connected, s.clients, "{t}: {:?}", p.warnings);
        assert!(p.messages_published > 0, "{t}");
        assert_eq!(
            p.integrity.deliveries_expected,
            p.messages_published * s.clients,
            "{t}"
        );
        assert_eq!(p.integrity.missing, 0, "{t}: {:?}", p.warnings);
        assert_eq!(p.integrity.duplicates, 0, "{t}");
        let p50 = p.latency.quantile_ms(0.5).expect("deliveries were timed");
        assert!(p50 > 0.0, "{t}: p50 {p50}");
        assert!(p.latency.0.min() > 0, "{t}: a latency of zero");
        assert!(p.server.cpu_s > 0.0, "{t}: server CPU from /proc");
        assert!(p.server.rss_peak_bytes > 0, "{t}: server RSS from /proc");
        assert!(p.traffic.bytes_down > 0 && p.traffic.bytes_up > 0, "{t}");
    }

    // Short polling: one request per client per interval (publishes are requests too, so they
    // are taken out), and a delivery waits about half an interval for the next poll.
    let short = &phases[0];
    let interval_s = s.short_poll_interval_ms / 1000.0;
    let planned_polls = s.clients as f64 * short.duration_s / interval_s;
    let polls = (short.traffic.requests - short.messages_published) as f64;
    assert!(
        (polls - planned_polls).abs() <= 0.15 * planned_polls,
        "short-poll requests {polls} vs planned {planned_polls}"
    );
    let p50 = short.latency.quantile_ms(0.5).unwrap();
    assert!(
        (0.3 * s.short_poll_interval_ms..=0.7 * s.short_poll_interval_ms).contains(&p50),
        "short-poll p50 {p50} ms for a {} ms interval",
        s.short_poll_interval_ms
    );

    // SSE and WebSocket: one connection per client for the whole phase (SSE senders publish
    // over a pool of at most six keep-alive connections each, opened only when a publish finds
    // none idle; WebSocket senders publish over their socket).
    let sse = &phases[2];
    let opened = sse.traffic.connections_opened;
    assert!(
        (s.clients + s.senders..=s.clients + 6 * s.senders).contains(&opened),
        "sse: {opened} connections for {} clients and {} senders",
        s.clients,
        s.senders
    );
    let ws = &phases[3];
    assert_eq!(ws.traffic.connections_opened, s.clients, "websocket");

    let csv = std::fs::read_to_string(out.join("summary.csv")).expect("summary.csv written");
    let mut lines = csv.lines();
    assert_eq!(lines.next(), Some(SUMMARY_HEADER));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 4, "{csv}");
    for (row, name) in rows.iter().zip(names) {
        assert!(row.starts_with(&format!("{name},{},", s.clients)), "{row}");
    }
    assert!(out.join("index.html").exists());
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn invalid_scenario_fails_before_any_load_naming_file_and_key() {
    let dir = out_dir().with_extension("bad");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("bad.toml");
    std::fs::write(
        &file,
        "name = \"bad\"\ndescription = \"x\"\n[clients]\ncount = 0\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(["run"])
        .arg(&file)
        .args(["--out"])
        .arg(dir.join("out"))
        .output()
        .expect("duplex runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}: clients.count: must be at least 1, got 0",
            file.display()
        )),
        "{stderr}"
    );
    assert!(
        !dir.join("out").exists(),
        "nothing may be written for an invalid scenario"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_failing_threshold_exits_2_with_its_row_and_the_report_written() {
    let out = out_dir().with_extension("threshold");
    let root = env!("CARGO_MANIFEST_DIR");
    let output = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(root)
        .args(["run", "scenarios/smoke.toml", "--transports", "websocket"])
        .args([
            "--duration",
            "1s",
            "--threshold",
            "websocket.latency_p99_ms < 0",
        ])
        .arg("--out")
        .arg(&out)
        .output()
        .expect("duplex runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stdout}\n{stderr}");
    assert!(
        stdout.lines().any(|l| l.starts_with("FAIL")
            && l.contains("websocket")
            && l.contains("latency_p99_ms < 0")
            && l.ends_with("--threshold")),
        "{stdout}"
    );
    assert!(stderr.contains("checks failed (exit status 2)"), "{stderr}");
    // Piped stderr: plain progress lines, no terminal escapes.
    assert!(stderr.contains("websocket done:"), "{stderr}");
    assert!(!stderr.contains('\u{1b}'), "{stderr}");
    assert!(
        out.join("results.json").exists(),
        "the report is written all the same"
    );

    // The check is in results.json: `duplex report` prints the same table again (its news,
    // not an error: exit 0).
    let json = out.join("results.json");
    let report = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .args(["report"])
        .arg(&json)
        .output()
        .expect("duplex report runs");
    let text = String::from_utf8_lossy(&report.stdout);
    assert!(report.status.success(), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("FAIL")
            && l.contains("latency_p99_ms < 0")
            && l.ends_with("--threshold")),
        "{text}"
    );

    // `duplex compare`: the run against itself regresses nothing; against a copy that lost a
    // delivery, the integrity check that passed in BASE fails in NEW (exit 2).
    let compare = |base: &std::path::Path, new: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_duplex"))
            .arg("compare")
            .args([base, new])
            .output()
            .expect("duplex compare runs")
    };
    let same = compare(&json, &json);
    assert!(
        same.status.success(),
        "{}",
        String::from_utf8_lossy(&same.stdout)
    );
    let mut lossy = report::read_results(&json).unwrap();
    lossy.runs[0].phases[0].integrity.missing = 3;
    let lossy_json = out.join("lossy.json");
    report::write_results(&lossy, &lossy_json).unwrap();
    let regressed = compare(&json, &lossy_json);
    let text = String::from_utf8_lossy(&regressed.stdout);
    assert_eq!(regressed.status.code(), Some(2), "{text}");
    assert!(
        text.contains("passed in the base run and FAIL in the new one")
            && text.contains("websocket  missing == 0: 0 -> 3"),
        "{text}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_bad_threshold_flag_is_an_error_naming_it_before_any_load() {
    let output = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "scenarios/smoke.toml",
            "--threshold",
            "sse.latncy_p99_ms < 5",
        ])
        .output()
        .expect("duplex runs");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr
            .starts_with("error: scenarios/smoke.toml: thresholds: unknown metric `latncy_p99_ms`"),
        "{stderr}"
    );
    assert!(
        stderr.trim_end().ends_with("(set by --threshold)"),
        "{stderr}"
    );
}

/// Runs the smoke scenario renamed `name`, with `tables` (TOML) appended, into a fresh folder;
/// returns the results and the folder (the caller removes it).
fn run_smoke_with(name: &str, tables: &str) -> (report::Results, PathBuf) {
    let out = out_dir().with_extension(name);
    let root = env!("CARGO_MANIFEST_DIR");
    let smoke = std::fs::read_to_string(format!("{root}/scenarios/smoke.toml")).unwrap();
    let scenario = out.with_extension("toml");
    let text = smoke.replace("name = \"smoke\"", &format!("name = \"{name}\""));
    std::fs::write(&scenario, format!("{text}\n{tables}")).unwrap();
    let status = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(root)
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .status()
        .expect("duplex runs");
    let _ = std::fs::remove_file(&scenario);
    assert!(status.success(), "duplex run failed: {status}");
    let results = report::read_results(out.join("results.json")).expect("results.json reads back");
    (results, out)
}

#[test]
fn a_run_on_three_nodes_on_redis_delivers_everything_across_nodes_on_every_transport() {
    let (results, out) = run_smoke_with("smoke-cluster", "[cluster]\nnodes = 3\n");
    assert!(results.complete, "{:?}", results.warnings);
    assert_eq!(results.scenario.cluster_nodes, 3);
    for p in &results.runs[0].phases {
        let t = &p.transport;
        assert_eq!(p.clients_connected, results.scenario.clients, "{t}");
        assert!(p.messages_published > 0, "{t}");
        assert_eq!(
            p.integrity.deliveries_expected,
            p.messages_published * results.scenario.clients,
            "{t}"
        );
        assert_eq!(p.integrity.missing, 0, "{t}: {:?}", p.warnings);
        assert_eq!(p.integrity.duplicates, 0, "{t}");
        assert_eq!(p.integrity.out_of_order, 0, "{t}");
        assert!(p.server.cpu_s > 0.0, "{t}: the cluster's CPU from /proc");
        // Every delivery is either on its sender's node or across nodes, and both happen when
        // clients are spread over three nodes in turn.
        let split = p
            .latency_by_node
            .as_ref()
            .expect("a cluster phase splits by node");
        let (same, across) = (split.same_node.0.len(), split.across_nodes.0.len());
        assert!(
            same > 0 && across > 0,
            "{t}: {same} same-node, {across} across"
        );
        assert_eq!(same + across, p.latency.0.len(), "{t}");
        assert_eq!(p.latency.0.len(), p.integrity.deliveries_received, "{t}");
    }
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn a_node_killed_mid_window_sends_its_clients_to_the_others_and_loses_nothing() {
    // The smoke scenario on three nodes, the last killed 2 s into each 4 s window.
    let (results, out) = run_smoke_with(
        "smoke-kill",
        "[cluster]\nnodes = 3\n\n[faults]\nkill_node = \"2s\"\n",
    );
    assert!(results.complete, "{:?}", results.warnings);
    for p in &results.runs[0].phases {
        let t = &p.transport;
        let killed = p.node_killed.as_ref().expect("a node was killed");
        assert!(killed.node.starts_with("node 2 "), "{t}: {killed:?}");
        // About a third of the clients were on the dead node (each connection goes to the next
        // node in turn): every one of them reconnected.
        assert!(p.reconnects > 0, "{t}: no reconnects");
        // The series ends when the clients are stopped; a reconnect after its last tick is only
        // in the total.
        let reconnected: u64 = p.timeseries.iter().map(|s| s.reconnects).sum();
        assert!(reconnected > 0 && reconnected <= p.reconnects, "{t}");
        assert!(p.messages_published > 0, "{t}");
        assert_eq!(p.integrity.missing, 0, "{t}: {:?}", p.warnings);
        assert_eq!(p.integrity.duplicates, 0, "{t}");
        assert_eq!(p.integrity.out_of_order, 0, "{t}");
        // Redis and every node measured on their own; the dead one marked.
        let names: Vec<&str> = p.server_processes.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names.len(), 4, "{t}: {names:?}");
        assert_eq!(names[0], "redis-server", "{t}");
        assert!(p.server_processes[3].killed, "{t}");
        assert!(p.server_processes.iter().all(|c| c.rss_bytes > 0), "{t}");
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    assert!(html.contains("Several nodes: 3 duplex nodes on one Redis"));
    assert!(
        html.contains("receiver on another node"),
        "the same-node/across split"
    );
    assert!(html.contains("Reconnects per second over time"));
    assert!(html.contains("was killed"));
    let _ = std::fs::remove_dir_all(&out);
}
