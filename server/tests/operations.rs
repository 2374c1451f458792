//! `/healthz`, `/metrics`, and shutdown with clients still connected.

use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wire::Transport;

use crate::helpers::{PROMPT, start_default};

#[tokio::test]
async fn healthz_answers_ok() {
    let t = start_default().await;
    let resp = t.get("/healthz").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.text().await.unwrap(), "ok");
}

#[tokio::test]
async fn metrics_count_publishes_requests_deliveries_and_bytes_per_transport() {
    let t = start_default().await;
    let mut subs = Vec::new();
    for transport in Transport::ALL {
        subs.push(t.subscribe(transport, "m", Some("r"), None).await);
    }
    t.say("m", "w", "counted").await;
    for sub in &mut subs {
        sub.expect(1).await;
    }
    let text = t.get("/metrics").await.text().await.unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from\n{text}"))
    };
    assert_eq!(value("duplex_messages_published_total"), 1.0);
    assert_eq!(
        value("duplex_requests_total{transport=\"publish\",status=\"201\"}"),
        1.0
    );
    assert_eq!(
        value("duplex_requests_total{transport=\"websocket\",status=\"101\"}"),
        1.0
    );
    for t in Transport::ALL {
        assert_eq!(
            value(&format!("duplex_deliveries_total{{transport=\"{t}\"}}")),
            1.0,
            "{t}"
        );
        assert!(
            value(&format!("duplex_bytes_sent_total{{transport=\"{t}\"}}")) > 100.0,
            "{t}"
        );
        assert!(
            value(&format!("duplex_bytes_received_total{{transport=\"{t}\"}}")) > 50.0,
            "{t}"
        );
    }
    assert_eq!(value("duplex_open_connections{transport=\"sse\"}"), 1.0);
    assert_eq!(
        value("duplex_open_connections{transport=\"websocket\"}"),
        1.0
    );
    assert!(value("process_resident_memory_bytes") > 1e6);
    assert!(value("process_cpu_seconds_total") >= 0.0);
}

#[tokio::test]
async fn shutdown_with_open_streams_sockets_and_long_polls_finishes_within_two_seconds() {
    let t = start_default().await;
    let sse = t.get("/api/rooms/s/sse").await;
    assert_eq!(sse.status(), 200);
    let mut ws = t.ws_connect("/api/rooms/s/ws").await;
    let http = t.http.clone();
    let url = t.url("/api/rooms/s/longpoll?timeout_ms=60000");
    let long_poll = tokio::spawn(async move { http.get(url).send().await });
    // Let the long poll get parked on the server.
    let deadline = Instant::now() + PROMPT;
    while t
        .server
        .state
        .metrics
        .transport(Transport::LongPoll)
        .open_connections
        < 1
    {
        assert!(Instant::now() < deadline, "long poll never arrived");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let started = Instant::now();
    t.server.shutdown().await.unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "took {:?}",
        started.elapsed()
    );
    // Each client was told, not left hanging.
    let mut body = sse.bytes_stream();
    while let Some(chunk) = tokio::time::timeout(PROMPT, body.next())
        .await
        .expect("sse ended")
    {
        if chunk.is_err() {
            break;
        }
    }
    let frame = tokio::time::timeout(PROMPT, ws.next())
        .await
        .expect("ws closed");
    if let Some(Ok(WsMessage::Close(Some(close)))) = frame {
        assert_eq!(u16::from(close.code), 1001);
    } else {
        panic!("expected a close frame, got {frame:?}");
    }
    let answer = tokio::time::timeout(PROMPT, long_poll)
        .await
        .expect("long poll answered")
        .unwrap();
    if let Ok(resp) = answer {
        assert_eq!(resp.status(), 503);
    }
}

/// A client held open by a test; dropping it goes away the way a real client does.
enum Held {
    LongPoll(tokio::task::JoinHandle<reqwest::Result<reqwest::Response>>),
    Sse(#[allow(dead_code)] reqwest::Response),
    Ws(#[allow(dead_code)] Box<crate::helpers::Ws>),
}

impl Drop for Held {
    fn drop(&mut self) {
        // A dropped JoinHandle would leave the request running; abort it like a closed tab.
        if let Held::LongPoll(task) = self {
            task.abort();
        }
    }
}

#[tokio::test]
async fn a_client_that_goes_away_gives_its_connection_back_on_every_streaming_transport() {
    let t = start_default().await;
    for transport in [Transport::LongPoll, Transport::Sse, Transport::WebSocket] {
        let fresh = reqwest::Client::new();
        let held = match transport {
            Transport::LongPoll => {
                let url = t.url("/api/rooms/gone/longpoll?timeout_ms=60000");
                Held::LongPoll(tokio::spawn(async move { fresh.get(url).send().await }))
            }
            Transport::Sse => Held::Sse(
                fresh
                    .get(t.url("/api/rooms/gone/sse"))
                    .send()
                    .await
                    .unwrap(),
            ),
            _ => Held::Ws(Box::new(t.ws_connect("/api/rooms/gone/ws").await)),
        };
        let metrics = &t.server.state.metrics;
        let deadline = Instant::now() + PROMPT;
        while metrics.transport(transport).open_connections != 1 {
            assert!(Instant::now() < deadline, "{transport}: never counted open");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(held);
        let deadline = Instant::now() + PROMPT;
        while metrics.transport(transport).open_connections != 0 {
            assert!(
                Instant::now() < deadline,
                "{transport}: connection never released"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
