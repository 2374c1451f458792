//! The live page's guided experiment: end to end in four headless Chromium pages and the
//! dashboard (`browser/experiment.mjs`), its results file read and rendered as `duplex report`
//! does (`report::read_results` + `report::write_all`), and its reports' bounds over real
//! sockets (outsiders, repeats, another phase's flashes, oversized figures).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};
use server::Config;

use crate::helpers::*;

const TEACHER: &str = "0123456789abcdef0123456789abcdef";
/// Seconds per transport in the browser run: long enough for six short polls at 500 ms, short
/// enough that the whole plan takes under 15 s.
const PHASE_S: u64 = 3;
/// The browser run: four pages, the plan, the checks (about 40 s on a loaded 2-core machine).
const DEADLINE: Duration = Duration::from_secs(300);

fn workspace_tmp() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_browsers_run_the_comparison_and_its_results_render_as_a_report() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: (cd server/tests/browser && npm ci)"
    );
    let _turn = CHROMIUM.lock().await;
    let t = start(Config {
        teacher_token: Some(TEACHER.into()),
        ..Config::default()
    })
    .await;
    let out = workspace_tmp();
    std::fs::create_dir_all(&out).unwrap();
    let results_file = out.join("classroom-results.json");
    let _ = std::fs::remove_file(&results_file);
    let run = tokio::process::Command::new("node")
        .arg("experiment.mjs")
        .arg(t.server.url())
        .arg(&out)
        .arg(TEACHER)
        .arg(&results_file)
        .arg(PHASE_S.to_string())
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let done = tokio::time::timeout(DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("the experiment's browser run took longer than {DEADLINE:?}"))
        .expect("node runs");
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&done.stdout),
        String::from_utf8_lossy(&done.stderr)
    );
    println!("{log}");
    assert!(done.status.success(), "browser run failed:\n{log}");

    // The file the dashboard offered, read as `duplex report` reads it.
    let results = report::read_results(&results_file).expect("a results document");
    let browsers = results
        .measured_in_browsers
        .as_ref()
        .expect("marked as measured in browsers");
    assert_eq!((browsers.pages, browsers.pages_reporting), (4, 4));
    // The server's own count at its sockets, per transport, beside the pages' figures.
    assert_eq!(browsers.notes.len(), 4, "{:?}", browsers.notes);
    let phases = &results.runs[0].phases;
    let ids: Vec<&str> = phases.iter().map(|p| p.transport.as_str()).collect();
    assert_eq!(ids, ["short_poll", "long_poll", "sse", "websocket"]);
    for p in phases {
        assert_eq!(p.clients_connected, 4, "{}: pages reporting", p.transport);
        assert!(p.messages_published >= 2, "{}: flashes", p.transport);
        let i = &p.integrity;
        // Most flashes arrive over the phase's own transport before it ends (a flash still on
        // its way at the switch arrives over the next one and counts as missing here).
        assert!(
            i.deliveries_received * 2 >= i.deliveries_expected,
            "{}: {} of {} flash deliveries",
            p.transport,
            i.deliveries_received,
            i.deliveries_expected
        );
        assert!(
            p.traffic.bytes_down > 0 && p.traffic.bytes_up > 0,
            "{}",
            p.transport
        );
        assert!(p.warnings.is_empty(), "{}: {:?}", p.transport, p.warnings);
    }
    // Short polling asks about phase / interval times per page; a long poll once per flash
    // (each answer ends the request) and once more; SSE and WebSocket connect once.
    let per_page = |i: usize| phases[i].traffic.requests as f64 / 4.0;
    let polls = PHASE_S as f64 * 1000.0 / 500.0;
    assert!(
        (polls * 0.6..=polls * 1.3).contains(&per_page(0)),
        "short poll: {} requests per page, expected about {polls}",
        per_page(0)
    );
    let flashes = phases[1].messages_published as f64;
    assert!(
        (1.0..=flashes + 2.0).contains(&per_page(1)),
        "long poll: {} requests per page for {flashes} flashes",
        per_page(1)
    );
    for p in &phases[2..] {
        let n = p.traffic.requests as f64 / 4.0;
        assert!(
            (1.0..=2.0).contains(&n),
            "{}: {n} requests per page",
            p.transport
        );
    }
    // A flash waits for the next poll (about half the 500 ms interval); SSE pushes it at once.
    let p50 = |i: usize| phases[i].latency.quantile_ms(0.5).expect("delays");
    assert!(
        p50(0) > p50(2),
        "short poll median {} ms, SSE {} ms",
        p50(0),
        p50(2)
    );

    let rendered = out.join("classroom-report");
    let _ = std::fs::remove_dir_all(&rendered);
    let written = report::write_all(&results, &rendered).expect("the report renders");
    assert!(!written.is_empty());
    let html = std::fs::read_to_string(rendered.join("index.html")).expect("index.html");
    assert!(
        html.contains("Measured in browsers: 4 of 4 student pages"),
        "the report does not say it was measured in browsers"
    );
    for shot in [
        "dashboard-experiment-running.png",
        "dashboard-experiment-done.png",
    ] {
        assert!(out.join(shot).is_file(), "no screenshot {shot}");
    }
    t.server.shutdown().await.expect("server stops");
}

/// A tab id issued by the server and on the page in `room`.
async fn tab_in(t: &TestServer, room: &str) -> String {
    let issued: Value = t
        .http
        .post(t.url("/live/tab"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let tab = issued["tab"].as_str().unwrap().to_owned();
    let beat =
        json!({"tab": tab, "client": "s", "room": room, "transport": "sse", "state": "active"});
    let res = t
        .http
        .post(t.url("/live/presence"))
        .json(&beat)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 204);
    tab
}

#[tokio::test]
async fn experiment_reports_come_once_per_tab_and_phase_from_participants_only() {
    let t = start(Config {
        teacher_token: Some(TEACHER.into()),
        ..Config::default()
    })
    .await;
    let teacher = |req: reqwest::RequestBuilder| req.header("x-duplex-teacher", TEACHER);
    let nobody = teacher(t.http.post(t.url("/live/experiment")))
        .json(&json!({"phase_s": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(nobody.status(), 400, "an experiment without students");
    let student = tab_in(&t, "lab").await;
    // The teacher's, like the flash.
    let res = t
        .http
        .post(t.url("/live/experiment"))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let bad = teacher(t.http.post(t.url("/live/experiment")))
        .json(&json!({"phase_s": 0.5}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let plan: Value = teacher(t.http.post(t.url("/live/experiment")))
        .json(&json!({"phase_s": 2, "flash_every_ms": 200}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let again = teacher(t.http.post(t.url("/live/experiment")))
        .json(&json!({"phase_s": 2}))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 409, "a second experiment while one runs");
    // The plan reached the room as the server's own `experiment` message.
    let batch: Value = t
        .http
        .get(t.url("/api/rooms/lab/poll?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(batch["messages"][0]["event"], "experiment", "{batch}");
    // Wait out the first phase, so its flashes are known.
    let end_us = plan["phases"][0]["end_us"].as_u64().unwrap();
    let now_us = server::feed::now_us();
    tokio::time::sleep(Duration::from_micros(end_us.saturating_sub(now_us))).await;
    let flashes = t.server.state.live.experiments.latest().unwrap().flashes[0].clone();
    assert!(!flashes.is_empty(), "the first phase published flashes");
    let figures = |tab: &str, flash: u64| {
        json!({"experiment": plan["experiment"], "phase": 0, "tab": tab, "transport": "short_poll",
               "requests": 4, "empty_responses": 3, "connections_opened": 0, "errors": 0,
               "bytes_up": 900, "bytes_down": 1500, "header_down": 600, "payload_down": 300,
               "delays": [{"flash": flash, "delay_ms": 120.0}]})
    };
    let post = |body: Value| {
        let req = t.http.post(t.url("/live/experiment/report")).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    };
    let (first, _) = flashes[0];
    // Someone who was not on the page at the start, even with a real tab id, is refused.
    let late = tab_in(&t, "lab").await;
    assert_eq!(
        post(figures(&late, first)).await,
        400,
        "a tab that joined late"
    );
    assert_eq!(post(figures("made-up", first)).await, 400, "a made-up tab");
    // Another phase's transport, a flash that is not this phase's, oversized figures.
    let mut wrong = figures(&student, first);
    wrong["transport"] = json!("sse");
    assert_eq!(post(wrong).await, 400, "the wrong transport");
    assert_eq!(
        post(figures(&student, 999_999)).await,
        400,
        "a foreign flash"
    );
    let mut huge = figures(&student, first);
    huge["requests"] = json!(u64::MAX / 2);
    assert_eq!(post(huge).await, 400, "an oversized count");
    assert_eq!(post(figures(&student, first)).await, 204);
    assert_eq!(
        post(figures(&student, first)).await,
        409,
        "the same phase twice"
    );
    let view = t.server.state.live.experiments.view().unwrap();
    assert_eq!(view.phases[0].reports, 1);
    assert_eq!(view.phases[0].requests_per_page, Some(4.0));
}
