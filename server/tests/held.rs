//! SSE streams and waiting long polls are written off hyper, on the bare socket
//! (`server/src/held.rs`). On the wire nothing may show it: the same heads hyper writes, chunked
//! events, and a keep-alive connection that goes on serving requests after a long poll's answer.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

use crate::helpers::*;

/// Reads from `tcp` until `text` has come (or fails after [`PROMPT`]); returns all read so far.
async fn read_until(tcp: &mut TcpStream, got: &mut String, text: &str) {
    let mut buf = [0u8; 4096];
    while !got.contains(text) {
        let n = timeout(PROMPT, tcp.read(&mut buf))
            .await
            .unwrap_or_else(|_| panic!("{text:?} did not come; got {got:?}"))
            .unwrap();
        assert!(n > 0, "closed before {text:?}; got {got:?}");
        got.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
}

/// The head's lines with the `date` value left out (it is the only line that may differ).
fn head_lines(answer: &str) -> Vec<&str> {
    let head = answer.split("\r\n\r\n").next().unwrap_or("");
    head.lines()
        .map(|l| if l.starts_with("date: ") { "date" } else { l })
        .collect()
}

fn get(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

#[tokio::test]
async fn a_long_poll_answered_off_hyper_has_hypers_head_and_keeps_its_connection() {
    let t = start_default().await;
    t.say("kept", "w", "first").await;
    // hyper's own 204, for comparison: a short poll with nothing newer.
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    let mut hyper = String::new();
    tcp.write_all(get("/api/rooms/kept/poll?since=1").as_bytes())
        .await
        .unwrap();
    read_until(&mut tcp, &mut hyper, "\r\n\r\n").await;
    // On the same connection: a long poll that waits, times out off hyper, and the
    // connection goes on serving.
    let mut held = String::new();
    tcp.write_all(get("/api/rooms/kept/longpoll?since=1&timeout_ms=200").as_bytes())
        .await
        .unwrap();
    read_until(&mut tcp, &mut held, "\r\n\r\n").await;
    assert_eq!(
        head_lines(&held),
        head_lines(&hyper),
        "{held:?} vs {hyper:?}"
    );
    assert!(held.starts_with("HTTP/1.1 204 No Content\r\n"), "{held:?}");
    // A long poll that a publish answers: a 200 with its length, then the connection again.
    let mut answered = String::new();
    tcp.write_all(get("/api/rooms/kept/longpoll?since=1&timeout_ms=20000").as_bytes())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(100)).await;
    t.say("kept", "w", "second").await;
    read_until(&mut tcp, &mut answered, "\"second\"").await;
    read_until(&mut tcp, &mut answered, "}").await;
    let (head, body) = answered.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{answered:?}");
    assert!(
        head.contains(&format!("\r\ncontent-length: {}\r\n", body.len())),
        "{answered:?}"
    );
    assert!(head.contains("\r\nx-content-type-options: nosniff\r\n"));
    let batch: wire::Batch = serde_json::from_str(body).unwrap();
    assert_eq!(batch.messages[0].body, "second");
    let mut health = String::new();
    tcp.write_all(get("/healthz").as_bytes()).await.unwrap();
    read_until(&mut tcp, &mut health, "\r\n\r\nok").await;
    assert!(health.starts_with("HTTP/1.1 200 OK\r\n"), "{health:?}");
    let text = t.get("/metrics").await.text().await.unwrap();
    for counted in [
        "duplex_requests_total{transport=\"long_poll\",status=\"204\"} 1",
        "duplex_requests_total{transport=\"long_poll\",status=\"200\"} 1",
    ] {
        assert!(text.contains(counted), "{counted} missing from\n{text}");
    }
}

#[tokio::test]
async fn an_sse_stream_off_hyper_has_its_head_and_chunked_events_and_ends_with_the_server() {
    let t = start_default().await;
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(get("/api/rooms/chunks/sse").as_bytes())
        .await
        .unwrap();
    let mut got = String::new();
    read_until(&mut tcp, &mut got, "\r\n\r\n").await;
    assert_eq!(
        head_lines(&got),
        [
            "HTTP/1.1 200 OK",
            "content-type: text/event-stream",
            "cache-control: no-cache",
            "x-accel-buffering: no",
            "x-content-type-options: nosniff",
            "transfer-encoding: chunked",
            "date",
        ],
        "{got:?}"
    );
    t.say("chunks", "w", "hi").await;
    read_until(&mut tcp, &mut got, "\"hi\"").await;
    read_until(&mut tcp, &mut got, "\n\n\r\n").await;
    let chunk = got.split_once("\r\n\r\n").unwrap().1;
    let (size, event) = chunk.split_once("\r\n").unwrap();
    let event = event.strip_suffix("\r\n").unwrap();
    assert_eq!(
        usize::from_str_radix(size, 16).unwrap(),
        event.len(),
        "{chunk:?}"
    );
    assert!(event.starts_with("id: ") && event.contains("\nevent: chat\ndata: {"));
    assert_eq!(
        t.server
            .state
            .metrics
            .transport(wire::Transport::Sse)
            .open_connections,
        1
    );
    // Shutdown ends the stream with the last chunk and closes the connection.
    let server = t.server;
    let down = tokio::spawn(server.shutdown());
    let mut rest = Vec::new();
    timeout(PROMPT, tcp.read_to_end(&mut rest))
        .await
        .expect("closed at shutdown")
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&rest), "0\r\n\r\n");
    down.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_client_leaving_a_held_stream_or_poll_frees_it() {
    let t = start_default().await;
    for path in [
        "/api/rooms/gone/sse",
        "/api/rooms/gone/longpoll?timeout_ms=60000",
    ] {
        let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
        tcp.write_all(get(path).as_bytes()).await.unwrap();
        let transport = if path.contains("sse") {
            wire::Transport::Sse
        } else {
            wire::Transport::LongPoll
        };
        let open = || t.server.state.metrics.transport(transport).open_connections;
        let deadline = tokio::time::Instant::now() + PROMPT;
        while open() != 1 {
            assert!(tokio::time::Instant::now() < deadline, "{path} never held");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        drop(tcp);
        while open() != 0 || t.server.state.metrics.tcp_open() != 0 {
            assert!(
                tokio::time::Instant::now() < deadline,
                "{path} kept after close"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A request that asks to close its connection (or is not HTTP/1.1) is served inside hyper, as
/// before: hyper answers it with `connection: close` and closes.
#[tokio::test]
async fn a_long_poll_that_asks_to_close_is_answered_and_closed() {
    let t = start_default().await;
    for request in [
        "GET /api/rooms/c/longpoll?timeout_ms=100 HTTP/1.1\r\nHost: 127.0.0.1\r\n\
         Connection: keep-alive, close\r\n\r\n",
        "GET /api/rooms/c/longpoll?timeout_ms=100 HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n",
    ] {
        let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        timeout(PROMPT, tcp.read_to_end(&mut answer))
            .await
            .expect("closed after the answer")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.contains(" 204 No Content\r\n"), "{answer:?}");
        assert!(answer.contains("duplex-next: 0\r\n"), "{answer:?}");
    }
}
