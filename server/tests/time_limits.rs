//! Connections that try to hold the server: a head or body trickled forever (slowloris), a client
//! that reads nothing, a silent WebSocket, a flood past the connection limits, and pages from
//! other sites. Each over real sockets, at small scale, with the limits shortened.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;

use crate::helpers::*;

/// Reads until the peer closes (or `within` passes); returns what came.
async fn read_to_close(tcp: &mut TcpStream, within: Duration) -> String {
    let mut out = Vec::new();
    let _ = timeout(within, tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

async fn connect_from(ip: [u8; 4], addr: std::net::SocketAddr) -> std::io::Result<TcpStream> {
    let socket = TcpSocket::new_v4()?;
    socket.bind(std::net::SocketAddr::from((ip, 0)))?;
    socket.connect(addr).await
}

fn quick() -> Config {
    Config {
        request_timeout: Duration::from_millis(300),
        ..Config::default()
    }
}

#[tokio::test]
async fn a_trickled_request_head_gets_408_and_is_closed() {
    let t = start(quick()).await;
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ")
        .await
        .unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("{\"error\":"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_trickled_body_gets_408() {
    let t = start(quick()).await;
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(
        b"POST /api/rooms/lobby/messages HTTP/1.1\r\nHost: 127.0.0.1\r\n\
          Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"from\":",
    )
    .await
    .unwrap();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("body took longer"), "{answer:?}");
}

#[tokio::test]
async fn a_client_that_reads_nothing_is_disconnected_and_counted() {
    let t = start(Config {
        write_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let body = "w".repeat(60 * 1024);
    for _ in 0..300 {
        t.say("flood", "a", &body).await;
    }
    // Asks for all 18 MB of history and never reads a byte of it.
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(b"GET /api/rooms/flood/sse?since=0 HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(15);
    while t.server.state.metrics.write_timeouts() == 0 {
        assert!(
            Instant::now() < deadline,
            "the stalled client was never dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let metrics = t.get("/metrics").await.text().await.unwrap();
    assert!(
        metrics.contains("duplex_write_timeouts_total 1"),
        "{metrics}"
    );
    drop(tcp);
}

#[tokio::test]
async fn a_silent_websocket_is_pinged_then_closed() {
    let t = start(Config {
        ws_ping: Duration::from_millis(200),
        ..Config::default()
    })
    .await;
    let mut ws = t.ws_connect("/api/rooms/quiet/ws").await;
    // Not reading means not answering pings (tungstenite answers when it reads).
    tokio::time::sleep(Duration::from_millis(900)).await;
    let mut pinged = false;
    let close = loop {
        match timeout(PROMPT, ws.next()).await.expect("frames in time") {
            Some(Ok(WsMessage::Ping(_))) => pinged = true,
            Some(Ok(WsMessage::Close(frame))) => break frame,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(pinged);
    assert_eq!(u16::from(close.unwrap().code), 1001);
}

#[tokio::test]
async fn invalid_utf8_in_a_text_frame_closes_with_1007() {
    let t = start_default().await;
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    tcp.write_all(
        b"GET /api/rooms/utf/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
          Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
          Sec-WebSocket-Version: 13\r\n\r\n",
    )
    .await
    .unwrap();
    let mut head = vec![0u8; 1024];
    let n = timeout(PROMPT, tcp.read(&mut head)).await.unwrap().unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 101"));
    // A masked text frame whose payload (0xff 0xfe) is not UTF-8.
    let mask = [1u8, 2, 3, 4];
    let payload = [0xffu8 ^ mask[0], 0xfe ^ mask[1]];
    let mut frame = vec![0x81, 0x80 | 2];
    frame.extend_from_slice(&mask);
    frame.extend_from_slice(&payload);
    tcp.write_all(&frame).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = timeout(PROMPT, tcp.read(&mut buf)).await.unwrap().unwrap();
    // A close frame: 0x88, length, then the code.
    assert_eq!(buf[0], 0x88, "{:?}", &buf[..n]);
    assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 1007);
}

#[tokio::test]
async fn a_refused_connection_is_answered_and_closed_at_once() {
    let t = start(Config {
        max_connections: Some(1),
        ..Config::default()
    })
    .await;
    let _held = TcpStream::connect(t.server.addr).await.unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    // Sends nothing: still answered, and closed well before the old 5 s.
    let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
    let started = Instant::now();
    let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn one_address_off_this_machine_cannot_take_every_connection() {
    let t = start(Config {
        max_connections_per_address: 3,
        limit_loopback: true,
        ..Config::default()
    })
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(connect_from([127, 0, 0, 9], t.server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut fourth = connect_from([127, 0, 0, 9], t.server.addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut fourth, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer:?}");
    assert!(answer.contains("from this address"), "{answer:?}");
    // Another address is unaffected.
    let mut other = connect_from([127, 0, 0, 10], t.server.addr).await.unwrap();
    other
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_to_close(&mut other, Duration::from_secs(5)).await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer:?}");
}

#[tokio::test]
async fn pages_from_other_sites_cannot_post_or_open_websockets() {
    let t = start_default().await;
    let evil = "http://evil.example";
    let resp = t
        .http
        .post(t.url("/api/rooms/lobby/messages"))
        .header("Origin", evil)
        .json(&json!({"from": "teacher", "body": "forged"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    // A "simple" cross-site post needs no preflight: text/plain is refused for what it is.
    let resp = t
        .http
        .post(t.url("/api/rooms/lobby/messages"))
        .header("Content-Type", "text/plain")
        .body(r#"{"from":"teacher","body":"forged"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 415);
    // Cross-site WebSocket: refused at the handshake.
    let mut req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        t.ws_url("/api/rooms/lobby/ws"),
    )
    .unwrap();
    req.headers_mut().insert("origin", evil.parse().unwrap());
    let err = tokio_tungstenite::connect_async(req)
        .await
        .expect_err("refused");
    assert!(
        matches!(&err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 403),
        "{err:?}"
    );
    // DNS rebinding: a name that is not ours.
    let resp = t
        .http
        .get(t.url("/api/rooms/lobby/poll"))
        .header("Host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 421);
    // Our own origin, and no origin at all (curl, the loadgen), still work; nothing forged landed.
    let own = format!("http://{}", t.server.addr);
    let resp = t
        .http
        .post(t.url("/api/rooms/lobby/messages"))
        .header("Origin", own)
        .json(&json!({"from": "alice", "body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let published: wire::Published = resp.json().await.unwrap();
    assert_eq!(published.seq, 1);
}

#[tokio::test]
async fn html_pages_carry_csp_nosniff_and_no_framing() {
    let t = start_default().await;
    let resp = t.get("/").await;
    let h = resp.headers();
    let csp = h["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("frame-ancestors 'none'") && csp.contains("script-src 'self'"));
    assert_eq!(h["x-content-type-options"], "nosniff");
    assert_eq!(h["referrer-policy"], "no-referrer");
    assert_eq!(h["x-frame-options"], "DENY");
    let resp = t.get("/api/rooms/lobby/poll").await;
    assert_eq!(resp.headers()["x-content-type-options"], "nosniff");
}

/// Requests hyper refuses before any handler runs still get a JSON error naming the problem
/// (hyper alone answers them with an empty body), also after a keep-alive request was served.
#[tokio::test]
async fn requests_hyper_cannot_parse_get_json_errors() {
    let t = start_default().await;
    let huge_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: {}\r\n\r\n",
        "a".repeat(500_000)
    );
    let long_uri = format!(
        "GET /{} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
        "a".repeat(70_000)
    );
    let cases = [
        (huge_header, "431", "request head too large"),
        (long_uri, "414", "URI too long"),
        (
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nBad Header: x\r\n\r\n".to_owned(),
            "400",
            "malformed request",
        ),
        (
            // A good request, then a broken one on the same connection.
            "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\nGE\u{1} / HTTP/1.1\r\n\r\n".to_owned(),
            "400",
            "malformed request",
        ),
    ];
    for (request, status, reason) in cases {
        let mut tcp = TcpStream::connect(t.server.addr).await.unwrap();
        // The server may answer (and close) before all of a huge head is sent.
        let _ = tcp.write_all(request.as_bytes()).await;
        let answer = read_to_close(&mut tcp, Duration::from_secs(5)).await;
        let last = answer.rfind("HTTP/1.1 ").map_or("", |i| &answer[i..]);
        assert!(
            last.starts_with(&format!("HTTP/1.1 {status}")),
            "{answer:?}"
        );
        let body = last.split("\r\n\r\n").nth(1).unwrap_or("");
        let error: wire::ErrorBody = serde_json::from_str(body).expect(&answer);
        assert!(error.error.contains(reason), "{answer:?}");
    }
    // Every other client carries on.
    let health = reqwest::get(format!("{}/healthz", t.server.url()))
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
}
