//! Bad input gets a 4xx (or 503) with `{"error": ...}` naming the problem, and the server goes on
//! serving: every test ends with a normal publish and delivery.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::json;
use server::Config;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use wire::{ErrorBody, StreamItem, Transport};

use crate::helpers::{PROMPT, TestServer, seqs, start, start_default, ws_next_reply, ws_send};

/// Asserts `resp` is `status` with an error body mentioning `needle`.
async fn assert_refused(resp: reqwest::Response, status: u16, needle: &str) {
    assert_eq!(resp.status(), status, "expected {status} for {needle:?}");
    let body: ErrorBody = resp.json().await.expect("a JSON error body");
    assert!(
        body.error.contains(needle),
        "error {:?} should mention {needle:?}",
        body.error
    );
}

/// A publish and its delivery still work.
async fn still_serving(t: &TestServer) {
    let mut sub = t.subscribe(Transport::ShortPoll, "after", None, None).await;
    t.say("after", "w", "still here").await;
    assert_eq!(sub.expect(1).await.len(), 1);
}

async fn post_raw(t: &TestServer, room: &str, body: impl Into<reqwest::Body>) -> reqwest::Response {
    t.http
        .post(t.url(&format!("/api/rooms/{room}/messages")))
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn publish_refuses_bad_json_unknown_fields_bad_events_and_oversized_bodies() {
    let t = start(Config {
        max_body: 1024,
        ..Config::default()
    })
    .await;
    assert_refused(post_raw(&t, "r", "{\"from\":").await, 400, "JSON").await;
    assert_refused(post_raw(&t, "r", "[1,2]").await, 400, "JSON").await;
    assert_refused(
        post_raw(&t, "r", r#"{"from":"a","body":"b","bdy":1}"#).await,
        400,
        "bdy",
    )
    .await;
    assert_refused(post_raw(&t, "r", r#"{"body":"b"}"#).await, 400, "from").await;
    assert_refused(
        post_raw(&t, "r", r#"{"from":"a","body":7}"#).await,
        400,
        "JSON",
    )
    .await;
    let forged = json!({"from":"a","body":"b","event":"chat\ndata: forged"}).to_string();
    assert_refused(post_raw(&t, "r", forged).await, 400, "event").await;
    let big = json!({"from": "a", "body": "x".repeat(2000)}).to_string();
    assert_refused(post_raw(&t, "r", big).await, 413, "1024").await;
    assert_refused(
        post_raw(&t, "bad%20room", r#"{"from":"a","body":"b"}"#).await,
        400,
        "room",
    )
    .await;
    assert_refused(
        post_raw(&t, &"x".repeat(65), r#"{"from":"a","body":"b"}"#).await,
        400,
        "room",
    )
    .await;
    // None of it reached the log.
    assert_eq!(t.get("/api/rooms/r/poll?since=0").await.status(), 204);
    still_serving(&t).await;
}

#[tokio::test]
async fn every_feed_endpoint_refuses_bad_room_since_and_client() {
    let t = start_default().await;
    for kind in ["poll", "longpoll", "sse", "ws"] {
        for (query, needle) in [
            ("since=abc", "since"),
            ("since=-1", "since"),
            ("since=1.5", "since"),
            ("client=%0Aevil", "client"),
        ] {
            let resp = t.get(&format!("/api/rooms/r/{kind}?{query}")).await;
            assert_refused(resp, 400, needle).await;
        }
        assert_refused(
            t.get(&format!("/api/rooms/no.dots/{kind}")).await,
            400,
            "room",
        )
        .await;
    }
    still_serving(&t).await;
}

#[tokio::test]
async fn long_poll_refuses_timeout_out_of_range() {
    let t = start_default().await;
    for bad in ["120001", "-5", "soon"] {
        let resp = t
            .get(&format!("/api/rooms/r/longpoll?timeout_ms={bad}"))
            .await;
        assert_refused(resp, 400, "timeout_ms").await;
    }
    still_serving(&t).await;
}

#[tokio::test]
async fn sse_refuses_a_last_event_id_that_is_not_a_number() {
    let t = start_default().await;
    let resp = t
        .http
        .get(t.url("/api/rooms/r/sse"))
        .header("Last-Event-ID", "seven")
        .send()
        .await
        .unwrap();
    assert_refused(resp, 400, "Last-Event-ID").await;
    still_serving(&t).await;
}

#[tokio::test]
async fn polling_ignores_last_event_id_because_it_is_an_sse_header() {
    let t = start_default().await;
    for path in ["/api/rooms/r/poll", "/api/rooms/r/longpoll?timeout_ms=0"] {
        let resp = t
            .http
            .get(t.url(path))
            .header("Last-Event-ID", "seven")
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 204, "{path}");
    }
    still_serving(&t).await;
}

#[tokio::test]
async fn websocket_handshake_with_bad_since_is_refused_with_400() {
    let t = start_default().await;
    let err = tokio_tungstenite::connect_async(t.ws_url("/api/rooms/r/ws?since=x"))
        .await
        .expect_err("handshake refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(resp) => {
            assert_eq!(resp.status(), 400);
            let body: ErrorBody = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert!(body.error.contains("since"), "{}", body.error);
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
    // A plain GET on the WebSocket endpoint is told what is missing.
    assert_refused(t.get("/api/rooms/r/ws").await, 400, "WebSocket").await;
    still_serving(&t).await;
}

#[tokio::test]
async fn websocket_bad_frames_get_error_frames_and_the_socket_stays_usable() {
    let t = start_default().await;
    let mut sub = t
        .subscribe(Transport::WebSocket, "wsbad", Some("me"), None)
        .await;
    let ws = sub.ws();
    let cases: [(WsMessage, &str, Option<u64>); 4] = [
        (WsMessage::Text("not json".into()), "bad frame", None),
        (
            WsMessage::Text(r#"{"type":"send","body":"b","bdy":1,"ref":3}"#.into()),
            "bdy",
            Some(3),
        ),
        (
            WsMessage::Text(r#"{"type":"shout","body":"b"}"#.into()),
            "shout",
            None,
        ),
        (WsMessage::Binary(vec![1u8, 2, 3].into()), "binary", None),
    ];
    for (frame, needle, want_ref) in cases {
        ws.send(frame).await.unwrap();
        match ws_next_reply(ws).await {
            StreamItem::Error { error, reference } => {
                assert!(
                    error.contains(needle),
                    "{error:?} should mention {needle:?}"
                );
                assert_eq!(reference, want_ref);
            }
            other => panic!("expected an error frame, got {other:?}"),
        }
    }
    ws_send(ws, r#"{"type":"send","body":"fine","ref":9}"#).await;
    assert_eq!(
        ws_next_reply(ws).await,
        StreamItem::Ack {
            reference: 9,
            seq: 1
        }
    );
    assert_eq!(seqs(&sub.expect(1).await), [1]);
    still_serving(&t).await;
}

#[tokio::test]
async fn websocket_frame_over_max_body_closes_with_a_reason() {
    let t = start(Config {
        max_body: 1024,
        ..Config::default()
    })
    .await;
    let mut ws = t.ws_connect("/api/rooms/big/ws?client=c").await;
    let big = json!({"type": "send", "body": "x".repeat(4096)}).to_string();
    ws.send(WsMessage::Text(big.into())).await.unwrap();
    let close = loop {
        match tokio::time::timeout(PROMPT, ws.next())
            .await
            .expect("closed in time")
        {
            Some(Ok(WsMessage::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    };
    let close = close.expect("a close reason");
    assert_eq!(u16::from(close.code), 1009);
    assert!(close.reason.contains("1024"), "{}", close.reason);
    still_serving(&t).await;
}

#[tokio::test]
async fn connections_past_the_limit_get_503_and_the_rest_keep_working() {
    let t = start(Config {
        max_connections: Some(2),
        ..Config::default()
    })
    .await;
    let ws1 = t.ws_connect("/api/rooms/full/ws?client=a").await;
    let mut sub = t
        .subscribe(Transport::WebSocket, "full", Some("b"), None)
        .await;
    // A third connection (a fresh client, so no pooled connection is reused).
    let fresh = reqwest::Client::new();
    let resp = fresh.get(t.url("/healthz")).send().await.unwrap();
    assert_refused(resp, 503, "too many connections").await;
    let err = tokio_tungstenite::connect_async(t.ws_url("/api/rooms/full/ws"))
        .await
        .expect_err("refused");
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503));
    // The open ones are unaffected.
    t.server
        .state
        .feed
        .publish(
            &server::feed::RoomName::parse("full").unwrap(),
            None,
            wire::PublishRequest {
                from: "x".into(),
                body: "in".into(),
                event: None,
                to: None,
                echo: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(seqs(&sub.expect(1).await), [1]);
    // Closing one frees a slot.
    drop(ws1);
    let deadline = tokio::time::Instant::now() + PROMPT;
    while t.server.state.metrics.tcp_open() >= 2 {
        assert!(tokio::time::Instant::now() < deadline, "slot never freed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let resp = fresh.get(t.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn unknown_paths_get_a_json_404_and_wrong_methods_a_json_405() {
    let t = start_default().await;
    assert_refused(t.get("/api/nope").await, 404, "no such endpoint").await;
    assert_refused(
        t.get("/api/rooms/r/messages").await,
        405,
        "GET /api/rooms/r/messages",
    )
    .await;
    still_serving(&t).await;
}
