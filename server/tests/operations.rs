//! `/healthz`, `/metrics`, and shutdown with clients still connected.

use std::time::Duration;

use futures_util::StreamExt;
use server::wire::Transport;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as WsMessage;

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
