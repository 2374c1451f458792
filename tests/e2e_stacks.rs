//! End to end, several stacks in one run: `duplex run` of a small `[[stacks]]` scenario (duplex's
//! own child and the real nginx + nchan from `peers/`, which `.ci/run` installs), as a user runs
//! it; the results, the summary CSV and the exit status must show one row per stack x
//! transport, every message delivered once, and the stack named on each row.

use std::process::Command;

const SCENARIO: &str = r#"
name = "stacks-e2e"
description = "duplex and nchan under the same small load."
transports = ["long_poll", "sse", "websocket"]
duration = "2s"
warmup = "500ms"
drain = "1s"
[clients]
count = 12
connect_rate = 1000
[chat]
senders = 3
rate = 4.0
[long_poll]
timeout = "5s"
[[stacks]]
name = "duplex"
[[stacks]]
peer = "nchan"
"#;

#[test]
fn a_stacks_run_measures_every_stack_x_transport_and_names_the_stack_on_every_row() {
    let dir = std::env::temp_dir().join(format!("duplex-e2e-stacks-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let scenario = dir.join("stacks-e2e.toml");
    std::fs::write(&scenario, SCENARIO).unwrap();
    let out = dir.join("out");
    let output = Command::new(env!("CARGO_BIN_EXE_duplex"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .arg("run")
        .arg(&scenario)
        .arg("--out")
        .arg(&out)
        .output()
        .expect("duplex runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "duplex run failed ({}):\n{stdout}\n{stderr}",
        output.status
    );

    let results = report::read_results(out.join("results.json")).expect("results.json reads back");
    assert!(results.complete, "{:?}", results.warnings);
    let phases = &results.runs[0].phases;
    let rows: Vec<String> = phases
        .iter()
        .map(|p| format!("{}/{}", p.stack.as_deref().unwrap_or("?"), p.transport))
        .collect();
    assert_eq!(
        rows,
        [
            "duplex/long_poll",
            "duplex/sse",
            "duplex/websocket",
            "nchan/long_poll",
            "nchan/sse",
            "nchan/websocket"
        ]
    );
    for (p, row) in phases.iter().zip(&rows) {
        let i = &p.integrity;
        assert_eq!(p.clients_connected, 12, "{row}: {:?}", p.warnings);
        assert!(p.messages_published > 0, "{row}");
        assert_eq!(i.deliveries_expected, 12 * p.messages_published, "{row}");
        assert_eq!(
            (i.missing, i.duplicates, i.out_of_order),
            (0, 0, 0),
            "{row}: {:?}",
            p.warnings
        );
        // Sampled from /proc: the process's memory is always there; its CPU over a 2 s phase
        // of 12 clients can be under one clock tick (nchan's SSE read 0 on a quiet machine).
        assert!(
            p.server.rss_peak_bytes > 0 && p.server.cpu_s >= 0.0,
            "{row}: the server's CPU and memory, sampled from /proc: {:?}",
            p.server
        );
    }
    let cpu: f64 = phases.iter().map(|p| p.server.cpu_s).sum();
    assert!(
        cpu > 0.0,
        "the servers' CPU over six phases, sampled from /proc"
    );

    // No field of these rows holds a comma or a quote, so a split reads them.
    let csv = std::fs::read_to_string(out.join("summary.csv")).expect("summary.csv");
    let mut csv_lines = csv.lines();
    let header: Vec<&str> = csv_lines.next().unwrap().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .unwrap_or_else(|| panic!("no {name} column"))
    };
    let (stack, transport, missing) = (column("stack"), column("transport"), column("missing"));
    let lines: Vec<String> = csv_lines
        .map(|line| {
            let r: Vec<&str> = line.split(',').collect();
            assert_eq!(r[missing], "0", "{line}");
            format!("{}/{}", r[stack], r[transport])
        })
        .collect();
    assert_eq!(
        lines, rows,
        "one CSV line per stack x transport, named by its stack"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
