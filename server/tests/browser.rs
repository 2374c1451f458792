//! The live classroom page: its small API over HTTP (presence, flash, delay reports, the
//! dashboard's stats and stream), and the pages themselves in a real headless Chromium.
//!
//! The browser test starts a real server on `127.0.0.1:0` and runs `node live.mjs <url> <dir>`
//! from `server/tests/browser/` (playwright-core driving Debian's `/usr/bin/chromium`); every
//! check it makes is listed in that file. It needs `npm ci` in that folder once; without it the
//! test fails and says so: it never skips. Screenshots of `/` and `/dashboard` are written to
//! `target/screenshots/` at the workspace root.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};
use server::{Config, SpawnedServer};
use wire::Transport;

/// The whole browser run: four transport pairs, XSS, seven tabs, dashboard and flash, broadcast
/// modes, the QR code (about 3 minutes on a loaded 2-core machine; 240 s once ran out).
const BROWSER_DEADLINE: Duration = Duration::from_secs(480);
const PROMPT: Duration = Duration::from_secs(5);

/// The teacher's token in these tests; every request below carries it, as the dashboard does
/// (the student page's requests do not need it; `hardening.rs` checks it is required).
const TEACHER: &str = "0123456789abcdef0123456789abcdef";

async fn start() -> (SpawnedServer, reqwest::Client) {
    let server = server::spawn(Config {
        teacher_token: Some(TEACHER.to_owned()),
        ..Config::default()
    })
    .await
    .expect("server starts");
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-duplex-teacher", TEACHER.parse().unwrap());
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .build()
        .unwrap();
    (server, http)
}

async fn post(
    http: &reqwest::Client,
    server: &SpawnedServer,
    path: &str,
    body: Value,
) -> reqwest::Response {
    http.post(format!("{}{path}", server.url()))
        .json(&body)
        .send()
        .await
        .expect("request is answered")
}

async fn get_json(http: &reqwest::Client, server: &SpawnedServer, path: &str) -> Value {
    http.get(format!("{}{path}", server.url()))
        .send()
        .await
        .expect("request is answered")
        .json()
        .await
        .expect("JSON answer")
}

/// A tab id issued by the server, as the page asks for one before its first heartbeat.
async fn new_tab(http: &reqwest::Client, server: &SpawnedServer) -> String {
    let res = http
        .post(format!("{}/live/tab", server.url()))
        .send()
        .await
        .expect("request is answered");
    assert_eq!(res.status(), 201);
    let issued: Value = res.json().await.expect("JSON answer");
    issued["tab"].as_str().expect("a tab id").to_owned()
}

fn heartbeat(tab: &str, room: &str, transport: Transport, state: &str) -> Value {
    json!({"tab": tab, "client": format!("student-{tab}"), "room": room, "transport": transport, "state": state})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_page_passes_its_checks_in_headless_chromium() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
    assert!(
        dir.join("node_modules/playwright-core").is_dir(),
        "playwright-core is not installed, so the live page cannot be tested in a browser.\n\
         Install it once with: (cd server/tests/browser && npm ci)"
    );
    let chromium = std::env::var_os("CHROMIUM")
        .map_or_else(|| PathBuf::from("/usr/bin/chromium"), PathBuf::from);
    assert!(
        chromium.exists(),
        "no Chromium at {} (install Debian's: apt-get install chromium, or set CHROMIUM=/path)",
        chromium.display()
    );
    let screenshots = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/screenshots");
    let _turn = crate::helpers::CHROMIUM.lock().await;
    let (server, _) = start().await;

    let run = tokio::process::Command::new("node")
        .arg("live.mjs")
        .arg(server.url())
        .arg(&screenshots)
        .arg(TEACHER)
        .env("CHROMIUM", &chromium)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(BROWSER_DEADLINE, run)
        .await
        .unwrap_or_else(|_| panic!("browser checks took longer than {BROWSER_DEADLINE:?}"))
        .expect("node runs (is Node.js installed?)");
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // Shown with --nocapture, and in the failure message below.
    println!("{report}");
    assert!(
        out.status.success(),
        "browser checks failed ({}):\n{report}",
        out.status
    );
    assert!(report.contains("all browser checks passed"), "{report}");
    for shot in ["live.png", "dashboard.png"] {
        assert!(
            screenshots.join(shot).is_file(),
            "no screenshot {shot} in {}",
            screenshots.display()
        );
    }
    server.shutdown().await.expect("server stops");
}

#[tokio::test]
async fn pages_and_assets_are_served_from_the_binary() {
    let (server, http) = start().await;
    for (path, content_type, marker) in [
        ("/", "text/html", "duplex"),
        ("/dashboard", "text/html", "dashboard"),
        ("/live/live.js", "text/javascript", "textContent"),
        ("/live/live-core.js", "text/javascript", "textContent"),
        (
            "/live/live-transports.js",
            "text/javascript",
            "startWebSocket",
        ),
        ("/live/dashboard.js", "text/javascript", "EventSource"),
        ("/live/live.css", "text/css", "--websocket"),
        ("/favicon.ico", "image/svg+xml", "<svg"),
        ("/favicon.svg", "image/svg+xml", "<svg"),
        ("/live/join.svg", "image/svg+xml", "<path"),
    ] {
        let res = http
            .get(format!("{}{path}", server.url()))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 200, "{path}");
        let ct = res.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(ct.starts_with(content_type), "{path}: {ct}");
        assert!(res.text().await.unwrap().contains(marker), "{path}");
    }
    let clock = get_json(&http, &server, "/live/clock").await;
    assert!(clock["now_us"].as_u64().unwrap() > 1_700_000_000_000_000);
}

#[tokio::test]
async fn join_view_names_the_server_and_says_loopback_is_out_of_students_reach() {
    let (server, http) = start().await;
    let join = get_json(&http, &server, "/live/join").await;
    assert_eq!(join["shown"], format!("{}/", server.url()), "{join}");
    assert_eq!(join["loopback_only"], true, "{join}");
    assert_eq!(join["urls"], json!([]), "{join}");
    assert!(
        join["fix"].as_str().unwrap().contains("--listen 0.0.0.0:"),
        "{join}"
    );
    // The teacher's, like the rest of the dashboard.
    for path in ["/live/join", "/live/join.svg"] {
        let res = reqwest::get(format!("{}{path}", server.url()))
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{path} without the token");
    }
}

#[test]
fn live_page_colours_each_transport_as_the_report_does() {
    let css = include_str!("../assets/live.css");
    use report::Style;
    for t in Transport::ALL {
        let declaration = format!("--{}: {};", t.as_str(), t.colour());
        assert!(
            css.contains(&declaration),
            "live.css should declare {declaration} (the report's colour for {})",
            t.as_str()
        );
    }
}

#[tokio::test]
async fn heartbeats_count_students_under_each_transport() {
    let (server, http) = start().await;
    let mut first_sse = String::new();
    for (i, t) in Transport::ALL.into_iter().enumerate() {
        // i+1 active tabs and one paused tab per transport.
        for n in 0..=i {
            let tab = new_tab(&http, &server).await;
            if t == Transport::Sse && n == 0 {
                first_sse.clone_from(&tab);
            }
            let res = post(
                &http,
                &server,
                "/live/presence",
                heartbeat(&tab, "lobby", t, "active"),
            )
            .await;
            assert_eq!(res.status(), 204);
        }
        let hidden = new_tab(&http, &server).await;
        post(
            &http,
            &server,
            "/live/presence",
            heartbeat(&hidden, "lobby", t, "paused"),
        )
        .await;
    }
    // A tab that leaves stops counting at once.
    post(
        &http,
        &server,
        "/live/presence",
        heartbeat(&first_sse, "lobby", Transport::Sse, "gone"),
    )
    .await;
    let stats = get_json(&http, &server, "/live/stats").await;
    let rows = stats["transports"].as_array().unwrap();
    for (i, t) in Transport::ALL.into_iter().enumerate() {
        let row = &rows[i];
        assert_eq!(row["transport"], t.as_str());
        let expected = if t == Transport::Sse { i } else { i + 1 };
        assert_eq!(row["clients"], expected, "{t}: {row}");
        assert_eq!(row["paused"], 1, "{t}: {row}");
    }
    assert_eq!(stats["rooms"], json!([{"room": "lobby", "tabs": 13}]));
}

#[tokio::test]
async fn bad_heartbeats_and_flashes_get_a_400_naming_the_problem() {
    let (server, http) = start().await;
    for (path, body, names) in [
        (
            "/live/presence",
            json!({"tab": "a", "client": "b", "room": "lobby", "transport": "sse", "state": "active", "extra": 1}),
            "extra",
        ),
        (
            "/live/presence",
            heartbeat("a", "no spaces", Transport::Sse, "active"),
            "room",
        ),
        (
            "/live/presence",
            json!({"tab": "a", "client": "b", "room": "lobby", "transport": "pigeon", "state": "active"}),
            "pigeon",
        ),
        ("/live/flash", json!({"text": ""}), "text"),
        ("/live/flash", json!({"text": "hi", "room": "a/b"}), "room"),
        (
            "/live/flash/report",
            json!({"flash": 99, "tab": "a", "client": "b", "transport": "sse", "delay_ms": 1.0}),
            "flash",
        ),
    ] {
        let res = post(&http, &server, path, body.clone()).await;
        assert_eq!(res.status(), 400, "{path} {body}");
        let error: Value = res.json().await.unwrap();
        assert!(
            error["error"].as_str().unwrap().contains(names),
            "{path}: {error}"
        );
    }
}

#[tokio::test]
async fn live_posts_refuse_malformed_and_oversized_bodies_with_a_json_error() {
    let (server, http) = start().await;
    let limit = Config::default().max_body;
    let oversized = format!("\"{}\"", "x".repeat(limit + 1));
    for path in ["/live/presence", "/live/flash", "/live/flash/report"] {
        for (body, status, names) in [
            ("{\"tab\":".to_owned(), 400, "JSON".to_owned()),
            (oversized.clone(), 413, limit.to_string()),
        ] {
            let res = http
                .post(format!("{}{path}", server.url()))
                .header("content-type", "application/json")
                .body(body)
                .send()
                .await
                .expect("request is answered");
            assert_eq!(res.status(), status, "{path}");
            let error: Value = res.json().await.expect("a JSON error body");
            assert!(
                error["error"].as_str().unwrap().contains(&names),
                "{path}: {error}"
            );
        }
    }
}

#[tokio::test]
async fn flash_goes_to_every_room_with_a_student_and_nowhere_else() {
    let (server, http) = start().await;
    let (a, b) = (new_tab(&http, &server).await, new_tab(&http, &server).await);
    post(
        &http,
        &server,
        "/live/presence",
        heartbeat(&a, "red", Transport::Sse, "active"),
    )
    .await;
    post(
        &http,
        &server,
        "/live/presence",
        heartbeat(&b, "blue", Transport::ShortPoll, "paused"),
    )
    .await;
    let res = post(&http, &server, "/live/flash", json!({"text": "Look up!"})).await;
    assert_eq!(res.status(), 201);
    let sent: Value = res.json().await.unwrap();
    assert_eq!(sent["rooms"], json!(["blue", "red"]));
    for room in ["red", "blue"] {
        let batch = get_json(&http, &server, &format!("/api/rooms/{room}/poll?since=0")).await;
        let message = &batch["messages"][0];
        assert_eq!(message["event"], "flash", "{room}: {batch}");
        assert_eq!(message["from"], "teacher");
        let body: Value = serde_json::from_str(message["body"].as_str().unwrap()).unwrap();
        assert_eq!(body["flash"], sent["flash"]);
        assert_eq!(body["text"], "Look up!");
        assert_eq!(body["sent_us"], sent["sent_us"]);
    }
    let empty = http
        .get(format!("{}/api/rooms/green/poll?since=0", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(empty.status(), 204, "a room without students got the flash");
    // A named room gets it even with nobody in it.
    let named: Value = post(
        &http,
        &server,
        "/live/flash",
        json!({"text": "x", "room": "green"}),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(named["rooms"], json!(["green"]));
}

#[tokio::test]
async fn dashboard_stream_carries_stats_and_each_delay_report_once() {
    let (server, http) = start().await;
    let a = new_tab(&http, &server).await;
    post(
        &http,
        &server,
        "/live/presence",
        heartbeat(&a, "red", Transport::WebSocket, "active"),
    )
    .await;
    let flash: Value = post(&http, &server, "/live/flash", json!({"text": "now"}))
        .await
        .json()
        .await
        .unwrap();
    let res = http
        .get(format!("{}/live/stream", server.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let mut body = res.bytes_stream();
    let mut seen = String::new();
    read_until(&mut body, &mut seen, |s| {
        s.contains("event: delays\ndata: []")
    })
    .await;
    read_until(&mut body, &mut seen, |s| s.contains("event: stats")).await;
    let report = json!({"flash": flash["flash"], "tab": a, "client": "alice", "transport": "websocket", "delay_ms": 4.5});
    assert_eq!(
        post(&http, &server, "/live/flash/report", report.clone())
            .await
            .status(),
        204
    );
    // The same tab reporting the same flash again is ignored.
    assert_eq!(
        post(&http, &server, "/live/flash/report", report)
            .await
            .status(),
        204
    );
    read_until(&mut body, &mut seen, |s| s.contains("event: delay\n")).await;
    // One more snapshot after the report: a repeated report would have been pushed by then.
    let snapshots = seen.matches("event: stats").count();
    read_until(&mut body, &mut seen, |s| {
        s.matches("event: stats").count() > snapshots
    })
    .await;
    assert_eq!(seen.matches("event: delay\n").count(), 1, "{seen}");
    assert!(
        seen.contains(r#""transport":"websocket","delay_ms":4.5"#),
        "{seen}"
    );
    assert!(
        seen.contains(r#""transport":"websocket","clients":1"#),
        "{seen}"
    );
}

/// Reads the stream into `seen` until `done(seen)`, or fails after [`PROMPT`].
async fn read_until<S, B>(body: &mut S, seen: &mut String, done: impl Fn(&str) -> bool)
where
    S: futures_util::Stream<Item = reqwest::Result<B>> + Unpin,
    B: AsRef<[u8]>,
{
    let read = async {
        while !done(seen) {
            let chunk = body
                .next()
                .await
                .expect("stream stays open")
                .expect("stream chunk");
            seen.push_str(&String::from_utf8_lossy(chunk.as_ref()));
        }
    };
    if tokio::time::timeout(PROMPT, read).await.is_err() {
        panic!("the dashboard stream did not say what was expected; got:\n{seen}");
    }
}
