//! The browser profile's headers on every protocol's subscriptions, not only duplex's: nchan's
//! EventSource and WebSocket, Socket.IO's WebSocket and a generic target's EventSource and
//! WebSocket send what Chromium sends for `new EventSource(url)` and `new WebSocket(url)`
//! (issue 10). A listener on 127.0.0.1:0 records each request head and answers 404, so the
//! clients give up after their connect tries.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use loadgen::CancellationToken;
use loadgen::clients::profile::ClientProfile;
use loadgen::clients::{ClientHandle, PhaseCtx};
use loadgen::conn::Connector;
use loadgen::meter::PhaseMeter;
use loadgen::netem::NetworkConditions;
use loadgen::protocol::TargetProtocol;
use loadgen::protocol::generic::Generic;
use loadgen::protocol::nchan::Nchan;
use loadgen::protocol::socketio::SocketIo;
use loadgen::recipients::ChatMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::time::Instant;
use wire::Transport;

/// Every request head the listener read, lower-cased.
async fn recorder() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = Arc::clone(&heads);
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let seen = Arc::clone(&seen);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => buf.extend_from_slice(&chunk[..n]),
                    }
                }
                seen.lock()
                    .unwrap()
                    .push(String::from_utf8_lossy(&buf).to_ascii_lowercase());
                let _ = socket
                    .write_all(
                        b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
                    )
                    .await;
            });
        }
    });
    (addr, heads)
}

/// The head of the first request `protocol`'s `transport` client sent.
async fn first_request(protocol: Arc<dyn TargetProtocol>, transport: Transport) -> String {
    let (addr, heads) = recorder().await;
    let phase = Arc::new(PhaseCtx {
        transport,
        authority: addr.to_string(),
        room: "r".into(),
        protocol: Arc::clone(&protocol),
        connector: Arc::new(Connector::new(addr, NetworkConditions::IDEAL)),
        meter: Arc::new(PhaseMeter::default()),
        start: Instant::now(),
        short_poll_interval: Duration::from_millis(500),
        long_poll_timeout: Duration::from_secs(2),
        payload_bytes: 100,
        seed: 0,
        profile: ClientProfile::Browser { cookie_bytes: 0 },
        senders: 0,
        clients: 1,
        mode: ChatMode::All,
        published: Default::default(),
        sender_nodes: Vec::new(),
    });
    let stop = CancellationToken::new();
    let client = protocol.client(transport, ClientHandle::new(0, phase, false), stop.clone());
    let task = tokio::spawn(client);
    let deadline = Instant::now() + Duration::from_secs(5);
    while heads.lock().unwrap().is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    let heads = heads.lock().unwrap();
    heads.first().cloned().expect("the client sent a request")
}

fn assert_has(what: &str, head: &str, headers: &[&str]) {
    for h in headers {
        assert!(head.contains(h), "{what}: no {h:?} in\n{head}");
    }
}

/// What Chromium sends on both (besides Host and the protocol's own headers).
const BROWSER: [&str; 4] = [
    "user-agent: mozilla/5.0",
    "accept-language: en-us",
    "accept-encoding: gzip",
    "cache-control: no-cache",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocols_event_source_sends_the_browser_headers() {
    let generic = Generic {
        subscribe: "/events/{room}".into(),
        publish: "/p/{room}".into(),
        publish_body: "{stamp}".into(),
    };
    let protocols: [(&str, Arc<dyn TargetProtocol>); 2] =
        [("nchan", Arc::new(Nchan)), ("generic", Arc::new(generic))];
    for (name, protocol) in protocols {
        let head = first_request(protocol, Transport::Sse).await;
        assert_has(name, &head, &BROWSER);
        assert_has(
            name,
            &head,
            &[
                "accept: text/event-stream",
                "sec-fetch-mode: cors",
                "pragma: no-cache",
            ],
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_protocols_websocket_upgrade_sends_the_browser_headers() {
    let generic = Generic {
        subscribe: "/ws/{room}".into(),
        publish: "/p/{room}".into(),
        publish_body: "{stamp}".into(),
    };
    let protocols: [(&str, Arc<dyn TargetProtocol>); 3] = [
        ("nchan", Arc::new(Nchan)),
        ("socketio", Arc::new(SocketIo { upgrade: false })),
        ("generic", Arc::new(generic)),
    ];
    for (name, protocol) in protocols {
        let head = first_request(protocol, Transport::WebSocket).await;
        assert_has(name, &head, &["upgrade: websocket"]);
        assert_has(name, &head, &BROWSER);
        assert_has(
            name,
            &head,
            &[
                "origin: http://127.0.0.1:",
                "sec-websocket-extensions: permessage-deflate",
            ],
        );
    }
}
