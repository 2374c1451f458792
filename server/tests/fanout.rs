//! Attacks on the room's fan-out (`feed::fanout`, `link.rs`) against a real server: clients that
//! come and go and read slowly while a publisher floods (every message once, in order, across
//! the switches between the fan-out and the connection's own task), a WebSocket that sends
//! without ever reading, and clients that vanish in the middle of a frame.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use server::Config;
use tokio::net::TcpSocket;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{WebSocketStream, client_async};
use wire::{StreamItem, Transport};

use crate::helpers::*;

/// A WebSocket over a socket whose receive window is small, so the server's send buffer fills
/// after a few messages and the fan-out lets go of it whenever the client reads slowly.
async fn narrow_ws(t: &TestServer, path: &str) -> WebSocketStream<tokio::net::TcpStream> {
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let tcp = socket.connect(t.server.addr).await.unwrap();
    let (ws, resp) = client_async(t.ws_url(path), tcp)
        .await
        .expect("websocket handshake");
    assert_eq!(resp.status(), 101);
    ws
}

fn room_name(name: &str) -> server::feed::RoomName {
    server::feed::RoomName::parse(name).unwrap()
}

/// The next message's seq on a WebSocket (the epoch frame skipped); `None` when it closed.
/// Waits until `n` connections of `room` are attached to its fan-out.
async fn until_attached(t: &TestServer, room: &str, n: usize) {
    let deadline = Instant::now() + PROMPT;
    while t
        .server
        .state
        .feed
        .find(&room_name(room))
        .map(|r| r.attached())
        != Some(n)
    {
        assert!(Instant::now() < deadline, "the clients never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn ws_seq(ws: &mut WebSocketStream<tokio::net::TcpStream>) -> Option<u64> {
    loop {
        match timeout(PROMPT, ws.next()).await.expect("a frame in time")? {
            Ok(WsMessage::Text(t)) => match serde_json::from_str(t.as_str()).unwrap() {
                StreamItem::Message(m) => return Some(m.seq),
                StreamItem::Epoch { .. } => {}
                other => panic!("unexpected {other:?}"),
            },
            Ok(WsMessage::Close(_)) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_come_and_go_and_read_slowly_during_a_flood_get_every_message_once_in_order() {
    const TOTAL: u64 = 600;
    let t = std::sync::Arc::new(
        start(Config {
            history: 10_000,
            ..Config::default()
        })
        .await,
    );
    let room = "churn";
    t.say(room, "p", "first").await;
    let publisher = {
        let t = t.clone();
        tokio::spawn(async move {
            // 1.5 KB bodies: a narrow client's window holds two or three.
            let body = "f".repeat(1500);
            for _ in 1..TOTAL {
                t.say(room, "p", &body).await;
            }
        })
    };
    let mut clients = Vec::new();
    for c in 0..16u64 {
        let t = t.clone();
        clients.push(tokio::spawn(async move {
            let mut cursor = 0;
            let mut round = 0;
            while cursor < TOTAL {
                round += 1;
                // Each connection reads a different stretch, then goes; every other one reads
                // slowly, so its fan-out lets go of it and takes it back again and again.
                let stretch = 20 + (c * 7 + round * 13) % 90;
                let slow = c % 2 == 1;
                let until = (cursor + stretch).min(TOTAL);
                if c % 4 == 3 {
                    let mut sse = t.subscribe(Transport::Sse, room, None, Some(cursor)).await;
                    while cursor < until {
                        let got = sse.take(1, PROMPT).await;
                        let seq = got.first().and_then(Got::seq).unwrap_or_else(|| {
                            panic!("sse client {c}: after {cursor}, got {got:?}")
                        });
                        assert_eq!(seq, cursor + 1, "sse client {c}: lost or repeated");
                        cursor = seq;
                        if slow && seq % 8 == 0 {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                    }
                } else {
                    let mut ws =
                        narrow_ws(&t, &format!("/api/rooms/{room}/ws?since={cursor}")).await;
                    while cursor < until {
                        let seq = ws_seq(&mut ws)
                            .await
                            .unwrap_or_else(|| panic!("ws client {c}: closed after {cursor}"));
                        assert_eq!(seq, cursor + 1, "ws client {c}: lost or repeated");
                        cursor = seq;
                        if slow && seq % 8 == 0 {
                            tokio::time::sleep(Duration::from_millis(3)).await;
                        }
                    }
                    // Some go politely, some just drop the socket.
                    if round % 2 == 0 {
                        let _ = ws.close(None).await;
                    }
                }
            }
            round
        }));
    }
    publisher.await.unwrap();
    let mut rounds = 0;
    for c in clients {
        rounds += c.await.unwrap();
    }
    assert!(
        rounds > 16 * 3,
        "the clients came and went: {rounds} connections"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_sends_without_ever_reading_is_dropped_and_others_are_unaffected() {
    let t = start(Config {
        write_timeout: Duration::from_millis(500),
        ..Config::default()
    })
    .await;
    let room = "noreader";
    let mut other = t.subscribe(Transport::WebSocket, room, None, None).await;
    let mut flooder = narrow_ws(&t, &format!("/api/rooms/{room}/ws")).await;
    // Sends as fast as TCP lets it and never reads: each send is published and acked, and the
    // acks and the room's messages pile up on the server's side until it gives up.
    let started = Instant::now();
    let mut sent = 0u64;
    let ended = timeout(Duration::from_secs(15), async {
        loop {
            let frame = format!(r#"{{"type":"send","body":"x{sent}","ref":{sent}}}"#);
            if flooder.send(WsMessage::Text(frame.into())).await.is_err() {
                return;
            }
            sent += 1;
            if sent == 200_000 {
                panic!("200,000 frames sent without reading and the server still reads them");
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the non-reading sender was never throttled and dropped ({sent} frames sent)"
    );
    // Dropped by the write-stall limit once its acks and messages filled the server's send
    // buffer (on loopback that buffer grows to megabytes: some 10^5 frames are read first).
    assert!(t.server.state.metrics.write_timeouts() >= 1);
    eprintln!(
        "non-reader: {sent} frames sent, dropped after {:?}",
        started.elapsed()
    );
    // The other client got every one of its messages that was published, in order.
    let published = t.say(room, "a", "after").await;
    let got = other.take(published as usize, PROMPT).await;
    assert_eq!(
        seqs(&got),
        (1..=published).collect::<Vec<_>>(),
        "after {:?}",
        started.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_vanish_mid_frame_leave_nothing_behind_and_the_room_expires() {
    let t = start(Config {
        room_idle: Duration::from_millis(600),
        max_body: 512 * 1024,
        ..Config::default()
    })
    .await;
    let room = "vanish";
    // Attached, caught up, never reading: a large message fills their sockets mid-frame.
    let mut narrow = Vec::new();
    for _ in 0..6 {
        narrow.push(narrow_ws(&t, &format!("/api/rooms/{room}/ws")).await);
    }
    until_attached(&t, room, 6).await;
    // Until their sockets are full: the fan-out lets go of each in mid-frame, so the last of them
    // leaves the fan-out by being let go at the last publish, not by dropping its attachment.
    let big = "v".repeat(400 * 1024);
    let found = t.server.state.feed.find(&room_name(room)).unwrap();
    for published in 1.. {
        assert!(published <= 40, "40 messages of 400 KiB and still attached");
        t.say(room, "a", &big).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if found.attached() == 0 {
            break;
        }
    }
    drop(found);
    // They go without reading the rest of it.
    drop(narrow);
    // Nothing more is published: the room expires once nobody follows it.
    let deadline = Instant::now() + Duration::from_millis(600) * 2 + PROMPT;
    while t.server.state.feed.room_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "the room nobody follows did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// This process's resident memory (the server under test runs in it).
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    kb * 1024
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_that_pings_without_ever_reading_costs_bounded_memory() {
    // The default write-stall limit (30 s): the memory must stay bounded while it runs.
    let t = start(Config::default()).await;
    let mut flooder = narrow_ws(&t, "/api/rooms/pings/ws").await;
    let before = rss_bytes();
    let started = Instant::now();
    let mut pings = 0u64;
    // Each ping asks for a pong the server cannot write: tungstenite must keep one, not all.
    while started.elapsed() < Duration::from_secs(3) && pings < 3_000_000 {
        let ping = WsMessage::Ping(vec![b'p'; 125].into());
        if timeout(PROMPT, flooder.send(ping)).await.is_err() {
            break;
        }
        pings += 1;
    }
    let grown = rss_bytes().saturating_sub(before);
    eprintln!(
        "{pings} pings in {:?}: RSS grew {} KiB",
        started.elapsed(),
        grown / 1024
    );
    assert!(
        grown < 48 << 20,
        "{pings} unanswered pings grew the server by {} MiB",
        grown >> 20
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_of_large_messages_get_each_whole_and_in_order() {
    // 7 MB for each: more than a loopback send buffer grows to (4 MiB), so the fan-out lets go.
    const N: u64 = 120;
    let t = std::sync::Arc::new(start(Config::default()).await);
    let room = "large";
    let mut sse = t.subscribe(Transport::Sse, room, None, None).await;
    let mut ws = narrow_ws(&t, &format!("/api/rooms/{room}/ws")).await;
    until_attached(&t, room, 2).await;
    // 60 KB bodies, each distinct, published faster than either client reads.
    let body = |seq: u64| format!("{seq}:{}", char::from(b'a' + (seq % 26) as u8)).repeat(6_000);
    let publisher = {
        let t = t.clone();
        tokio::spawn(async move {
            for seq in 1..=N {
                assert_eq!(t.say(room, "p", &body(seq)).await, seq);
            }
        })
    };
    let reader = tokio::spawn(async move {
        match timeout(PROMPT, ws.next()).await.expect("the epoch frame") {
            Some(Ok(WsMessage::Text(t))) => assert!(t.as_str().contains(r#""type":"epoch""#)),
            other => panic!("ws: unexpected {other:?}"),
        }
        for seq in 1..=N {
            match timeout(PROMPT, ws.next()).await.expect("a frame in time") {
                Some(Ok(WsMessage::Text(t))) => match serde_json::from_str(t.as_str()).unwrap() {
                    StreamItem::Message(m) => {
                        assert_eq!((m.seq, m.body.len()), (seq, body(seq).len()));
                        assert!(m.body == body(seq), "ws: seq {seq} garbled");
                    }
                    other => panic!("ws: unexpected {other:?}"),
                },
                other => panic!("ws: unexpected {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    for seq in 1..=N {
        let got = sse.expect(1).await;
        match &got[0].item {
            StreamItem::Message(m) => {
                assert_eq!((m.seq, m.body.len()), (seq, body(seq).len()));
                assert!(m.body == body(seq), "sse: seq {seq} garbled");
            }
            other => panic!("sse: unexpected {other:?}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    publisher.await.unwrap();
    reader.await.unwrap();
}

/// A WebSocket opened by hand, to see the server's frames exactly as they come.
async fn raw_ws(addr: std::net::SocketAddr, room: &str) -> tokio::net::TcpStream {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "GET /api/rooms/{room}/ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).await.unwrap();
    // The 101's head, byte by byte so no frame is read with it.
    let mut got = Vec::new();
    while !got.ends_with(b"\r\n\r\n") {
        let mut b = [0u8];
        tcp.read_exact(&mut b).await.unwrap();
        got.push(b[0]);
    }
    assert!(
        got.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    tcp
}

/// The opcodes of the server's frames in `bytes` (unmasked, as a server's are), and whether the
/// last one is complete.
fn opcodes(bytes: &[u8]) -> Vec<u8> {
    let mut ops = Vec::new();
    let mut at = 0;
    while at + 2 <= bytes.len() {
        let (op, len) = (bytes[at] & 0x0f, (bytes[at + 1] & 0x7f) as usize);
        assert_eq!(bytes[at + 1] & 0x80, 0, "a server frame is not masked");
        let (len, head) = match len {
            126 => (
                u16::from_be_bytes([bytes[at + 2], bytes[at + 3]]) as usize,
                4,
            ),
            127 => (
                u64::from_be_bytes(bytes[at + 2..at + 10].try_into().unwrap()) as usize,
                10,
            ),
            n => (n, 2),
        };
        ops.push(op);
        at += head + len;
    }
    assert_eq!(at, bytes.len(), "the stream ends on a frame's end");
    ops
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_frame_follows_the_close_frame_while_a_publisher_floods() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = std::sync::Arc::new(start(Config::default()).await);
    let room = "closing";
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let publisher = {
        let (t, stop) = (t.clone(), stop.clone());
        tokio::spawn(async move {
            for _ in 0..5_000 {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                t.say(room, "p", "flood").await;
            }
        })
    };
    let mut clients = Vec::new();
    for i in 0..12u64 {
        let t = t.clone();
        clients.push(tokio::spawn(async move {
            let mut tcp = raw_ws(t.server.addr, room).await;
            // Attached and receiving the flood for a moment, then a close frame (code 1000).
            tokio::time::sleep(Duration::from_millis(20 + i * 10)).await;
            let mask = [1u8, 2, 3, 4];
            let code = 1000u16.to_be_bytes();
            tcp.write_all(&[0x88, 0x82, 1, 2, 3, 4, code[0] ^ mask[0], code[1] ^ mask[1]])
                .await
                .unwrap();
            let mut bytes = Vec::new();
            timeout(PROMPT, tcp.read_to_end(&mut bytes))
                .await
                .expect("the server closes")
                .unwrap();
            let ops = opcodes(&bytes);
            let close = ops
                .iter()
                .position(|&op| op == 8)
                .unwrap_or_else(|| panic!("client {i}: no close frame in {} frames", ops.len()));
            assert_eq!(
                close,
                ops.len() - 1,
                "client {i}: {} frames after the close frame",
                ops.len() - 1 - close
            );
            ops.len()
        }));
    }
    for c in clients {
        c.await.unwrap();
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    publisher.await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_shutdown_during_a_flood_websockets_end_on_a_1001_close_and_sse_on_the_last_chunk() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let t = start(Config::default()).await;
    let (addr, url) = (t.server.addr, t.url("/api/rooms/down/messages"));
    let publisher = tokio::spawn(async move {
        let http = reqwest::Client::new();
        for _ in 0..20_000 {
            let sent = http
                .post(&url)
                .json(&serde_json::json!({"from": "p", "body": "flood"}))
                .send()
                .await;
            if !sent.is_ok_and(|r| r.status() == 201) {
                break;
            }
        }
    });
    let mut ws = Vec::new();
    let mut sse = Vec::new();
    for _ in 0..8 {
        ws.push(raw_ws(addr, "down").await);
        let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        tcp.write_all(b"GET /api/rooms/down/sse HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            .await
            .unwrap();
        sse.push(tcp);
    }
    let readers: Vec<_> = ws
        .into_iter()
        .map(|mut tcp| {
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                timeout(PROMPT, tcp.read_to_end(&mut bytes))
                    .await
                    .unwrap()
                    .unwrap();
                bytes
            })
        })
        .chain(sse.into_iter().map(|mut tcp| {
            tokio::spawn(async move {
                let mut bytes = Vec::new();
                timeout(PROMPT, tcp.read_to_end(&mut bytes))
                    .await
                    .unwrap()
                    .unwrap();
                bytes
            })
        }))
        .collect();
    tokio::time::sleep(Duration::from_millis(300)).await;
    t.server.shutdown().await.unwrap();
    publisher.await.unwrap();
    for (i, reader) in readers.into_iter().enumerate() {
        let bytes = reader.await.unwrap();
        if i < 8 {
            let ops = opcodes(&bytes);
            assert_eq!(ops.last(), Some(&8), "ws {i}: ends on a close frame");
            assert_eq!(ops.iter().filter(|&&op| op == 8).count(), 1);
            // The close frame: code 1001 and the reason.
            let reason = b"server shutting down";
            let mut close = vec![0x88, 2 + reason.len() as u8, 0x03, 0xe9];
            close.extend_from_slice(reason);
            assert!(
                bytes.ends_with(&close),
                "ws {i}: {:?}",
                &bytes[bytes.len().saturating_sub(24)..]
            );
        } else {
            let text = String::from_utf8_lossy(&bytes);
            assert!(text.starts_with("HTTP/1.1 200"), "sse {i}");
            assert!(
                text.ends_with("\r\n0\r\n\r\n"),
                "sse {i}: no last chunk: {:?}",
                &text[text.len().saturating_sub(80)..]
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn addressed_messages_reach_only_their_clients_across_the_switches() {
    const TOTAL: u64 = 300;
    let t = std::sync::Arc::new(start(Config::default()).await);
    let room = "addressed";
    let mut clients = Vec::new();
    for c in 0..6u64 {
        clients.push(narrow_ws(&t, &format!("/api/rooms/{room}/ws?client=c{c}")).await);
    }
    let deadline = Instant::now() + PROMPT;
    while t
        .server
        .state
        .feed
        .find(&room_name(room))
        .map(|r| r.attached())
        != Some(6)
    {
        if t.server.state.feed.find(&room_name(room)).is_none() {
            t.say(room, "p", "open").await;
        }
        assert!(Instant::now() < deadline, "the clients never attached");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let first = t.say(room, "p", "start").await;
    // Seq s goes to c(s % 6) when s % 3 == 0, comes from c(s % 6) with echo off when
    // s % 3 == 1, and is for everyone otherwise; bodies are large enough to fill windows.
    let for_client = |c: u64, s: u64| match s % 3 {
        0 => c == s % 6,
        1 => c != s % 6,
        _ => true,
    };
    let readers: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(c, mut ws)| {
            let want: Vec<u64> = std::iter::once(first)
                .chain((first + 1..=first + TOTAL).filter(|&s| for_client(c as u64, s)))
                .collect();
            tokio::spawn(async move {
                let mut got = Vec::new();
                while got.len() < want.len() {
                    let seq = ws_seq(&mut ws).await.expect("open");
                    got.push(seq);
                    // Half of them read slowly, so the fan-out lets go of them and takes them
                    // back while the publisher runs.
                    if c % 2 == 0 {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
                assert_eq!(got, want, "client c{c}");
                // Nothing else for it.
                assert!(
                    timeout(QUIET, ws.next()).await.is_err(),
                    "client c{c}: more came"
                );
            })
        })
        .collect();
    // 16 KB bodies, 4.8 MB in all: more than a loopback send buffer grows to.
    let pad = "z".repeat(16_000);
    for s in first + 1..=first + TOTAL {
        let who = format!("c{}", s % 6);
        let body = match s % 3 {
            0 => serde_json::json!({"from": "p", "body": pad, "to": who}),
            1 => serde_json::json!({"from": who, "body": pad, "echo": false}),
            _ => serde_json::json!({"from": "p", "body": pad}),
        };
        assert_eq!(t.say_json(room, body).await, s);
    }
    for r in readers {
        r.await.unwrap();
    }
}
