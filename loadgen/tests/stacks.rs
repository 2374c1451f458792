//! The codecs against the real peers in `peers/`: nginx + nchan (`start.sh`) and the Socket.IO
//! chat server (node, socket.io 4.8), each started the way a run starts it ([`Peer::start`]),
//! spoken to over HTTP and WebSocket, and stopped. Tiny scale: a few clients, seconds.
//!
//! They need the peers installed (`.ci/run` does it: nginx-light, libnginx-mod-nchan, and
//! `npm ci` in peers/socketio); without them they fail, saying what to install.

use std::path::PathBuf;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use loadgen::child::ChildServer;
use loadgen::codec::engineio::{self, Packet as Eio};
use loadgen::codec::nchan::{self, MessageId, PollCursor, Published, WsFrame};
use loadgen::codec::socketio::{self, ChatSend, Packet as Sio};
use loadgen::peer::{Peer, RelayMode};
use loadgen::protocol::duplex::sse::SseParser;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const STEP: Duration = Duration::from_secs(5);

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../peers")
}

struct Running {
    child: ChildServer,
    url: String,
    http: reqwest::Client,
}

impl Running {
    async fn start(peer: Peer) -> Running {
        let (child, url) = peer
            .start(&peers_dir())
            .await
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", peer.name()));
        Running {
            child,
            url,
            http: reqwest::Client::builder().timeout(STEP).build().unwrap(),
        }
    }

    fn ws_url(&self, path: &str) -> String {
        format!("{}{path}", self.url.replacen("http://", "ws://", 1))
    }

    async fn stop(mut self) {
        self.child.stop().await;
    }
}

// ---- nchan ----

async fn nchan_publish(p: &Running, room: &str, body: &str) -> Published {
    let answer = p
        .http
        .post(format!("{}/pub/{room}", p.url))
        .header("accept", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());
    Published::parse(&answer.text().await.unwrap()).unwrap()
}

/// One interval poll from `cursor`: `Some((message, next cursor))`, or `None` on 304.
async fn nchan_poll(
    p: &Running,
    kind: &str,
    room: &str,
    cursor: Option<&PollCursor>,
) -> Option<(String, PollCursor)> {
    let mut request = p.http.get(format!("{}/sub/{kind}/{room}", p.url));
    if let Some(c) = cursor {
        for (name, value) in c.request_headers() {
            request = request.header(name, value);
        }
    }
    let answer = request.send().await.unwrap();
    match answer.status().as_u16() {
        304 => None,
        200 => {
            let h = answer.headers();
            let header = |n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
            let next = PollCursor::from_answer(
                header("last-modified").as_deref(),
                header("etag").as_deref(),
            )
            .unwrap();
            Some((answer.text().await.unwrap(), next))
        }
        other => panic!("poll answered {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_interval_poll_follows_the_cursor_then_answers_304() {
    let p = Running::start(Peer::Nchan { buffer: 16 }).await;
    let first = nchan_publish(&p, "ip", "m1").await;
    nchan_publish(&p, "ip", "m2").await;
    let third = nchan_publish(&p, "ip", "m3").await;
    assert_eq!(third.messages, 3);
    let ids: [MessageId; 2] = [
        first.last_message_id.parse().unwrap(),
        third.last_message_id.parse().unwrap(),
    ];
    assert!(ids[0] < ids[1]);

    // No cursor: the oldest message kept (the config's "oldest", like duplex's since=0).
    let mut cursor = None;
    let mut got = Vec::new();
    while let Some((msg, next)) = nchan_poll(&p, "poll", "ip", cursor.as_ref()).await {
        got.push(msg);
        cursor = Some(next);
        assert!(
            got.len() <= 3,
            "the poll does not stop at the head: {got:?}"
        );
    }
    assert_eq!(got, ["m1", "m2", "m3"]);
    // Caught up: 304 at once, again.
    assert!(
        nchan_poll(&p, "poll", "ip", cursor.as_ref())
            .await
            .is_none()
    );
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_long_poll_is_held_until_a_publish() {
    let p = Running::start(Peer::Nchan { buffer: 16 }).await;
    nchan_publish(&p, "lp", "m1").await;
    let (m1, cursor) = nchan_poll(&p, "longpoll", "lp", None).await.unwrap();
    assert_eq!(m1, "m1");
    let url = p.url.clone();
    let http = p.http.clone();
    let c = cursor.clone();
    let poll = tokio::spawn(async move {
        let mut r = http.get(format!("{url}/sub/longpoll/lp"));
        for (n, v) in c.request_headers() {
            r = r.header(n, v);
        }
        let started = std::time::Instant::now();
        let a = r.send().await.unwrap();
        (
            a.status().as_u16(),
            started.elapsed(),
            a.text().await.unwrap(),
        )
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    nchan_publish(&p, "lp", "m2").await;
    let (status, held_for, body) = poll.await.unwrap();
    assert_eq!((status, body.as_str()), (200, "m2"));
    assert!(held_for >= Duration::from_millis(250), "{held_for:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_eventsource_and_websocket_carry_message_ids() {
    let p = Running::start(Peer::Nchan { buffer: 16 }).await;
    let published = nchan_publish(&p, "push", "m1").await;
    let id: MessageId = published.last_message_id.parse().unwrap();

    // EventSource: nchan refuses a subscriber that does not accept text/event-stream.
    let refused = p
        .http
        .get(format!("{}/sub/sse/push", p.url))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status().as_u16(), 403);
    let mut sse = p
        .http
        .get(format!("{}/sub/sse/push", p.url))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status().as_u16(), 200);
    let mut parser = SseParser::default();
    let mut events = Vec::new();
    nchan_publish(&p, "push", "m2\nline two").await;
    while events.len() < 2 {
        let chunk = tokio::time::timeout(STEP, sse.chunk())
            .await
            .unwrap()
            .unwrap();
        events.extend(parser.feed(&chunk.expect("the stream stays open")));
    }
    assert_eq!(events[0].data, "m1");
    assert_eq!(
        events[0]
            .id
            .as_deref()
            .unwrap()
            .parse::<MessageId>()
            .unwrap(),
        id
    );
    // A multi-line message arrives as data lines, joined back by the parser.
    assert_eq!(events[1].data, "m2\nline two");
    drop(sse);

    // WebSocket with ws+meta.nchan: each frame is id + content type + message.
    let mut request = p.ws_url("/sub/ws/push").into_client_request().unwrap();
    request.headers_mut().insert(
        "sec-websocket-protocol",
        nchan::WS_SUBPROTOCOL.parse().unwrap(),
    );
    let (mut ws, response) = tokio_tungstenite::connect_async(request).await.unwrap();
    assert_eq!(
        response.headers().get("sec-websocket-protocol").unwrap(),
        nchan::WS_SUBPROTOCOL
    );
    let mut frames = Vec::new();
    while frames.len() < 2 {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => {
                let f = WsFrame::parse(&t).unwrap();
                frames.push((f.id, f.data.to_owned()));
            }
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
    assert_eq!(frames[0], (id, "m1".to_owned()));
    assert_eq!(frames[1].1, "m2\nline two");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_evicts_past_its_buffer_without_saying_so() {
    let p = Running::start(Peer::Nchan { buffer: 3 }).await;
    let mut ids = Vec::new();
    for n in 1..=6 {
        ids.push(
            nchan_publish(&p, "evict", &format!("m{n}"))
                .await
                .last_message_id,
        );
    }
    // Resuming from m1's id (evicted): nchan answers with the oldest it kept, m4, and nothing
    // in the answer says that m2 and m3 were lost.
    let answer = p
        .http
        .get(format!("{}/sub/poll/evict?last_event_id={}", p.url, ids[0]))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 200);
    let headers = format!("{:?}", answer.headers()).to_lowercase();
    assert!(
        !headers.contains("miss") && !headers.contains("gap"),
        "{headers}"
    );
    assert_eq!(answer.text().await.unwrap(), "m4");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_peer_fails_to_start_with_a_sentence() {
    // A missing peers folder is named, not a panic or a hang.
    let e = Peer::Nchan { buffer: 4 }
        .start(&PathBuf::from("/nonexistent"))
        .await
        .unwrap_err();
    assert!(e.contains("/nonexistent/nchan/start.sh not found"), "{e}");
}

// ---- Socket.IO ----

fn socketio(mode: RelayMode) -> Peer {
    Peer::SocketIo {
        mode,
        ping_interval_ms: Some(300),
    }
}

/// A Socket.IO client over HTTP long-polling.
struct PollingClient {
    http: reqwest::Client,
    url: String,
    sid: String,
    ping_interval: u64,
}

impl PollingClient {
    async fn connect(p: &Running, room: &str, client: &str) -> PollingClient {
        let query = format!("room={room}&client={client}");
        let text = p
            .http
            .get(format!(
                "{}{}",
                p.url,
                engineio::polling_path("/socket.io/", &query, None)
            ))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let Eio::Open(h) = Eio::parse(&text).unwrap() else {
            panic!("no open packet: {text}")
        };
        let me = PollingClient {
            http: p.http.clone(),
            url: format!(
                "{}{}",
                p.url,
                engineio::polling_path("/socket.io/", "", Some(&h.sid))
            ),
            sid: h.sid,
            ping_interval: h.ping_interval,
        };
        me.post(&[socketio::CONNECT]).await;
        let packets = me.poll().await;
        assert!(
            matches!(&packets[..], [Sio::Connect { sid: Some(_) }]),
            "{packets:?}"
        );
        me
    }

    async fn post(&self, packets: &[&str]) {
        let answer = self
            .http
            .post(&self.url)
            .body(engineio::encode_payload(packets))
            .send()
            .await
            .unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
    }

    /// One held GET: the Socket.IO packets it brought (a ping is answered with a pong).
    async fn poll(&self) -> Vec<Sio> {
        let text = self
            .http
            .get(&self.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let mut out = Vec::new();
        for packet in engineio::parse_payload(&text).unwrap() {
            match packet {
                Eio::Message(m) => out.push(Sio::parse(m).unwrap()),
                Eio::Ping(_) => self.post(&["3"]).await,
                other => panic!("unexpected {other:?}"),
            }
        }
        out
    }

    /// Polls until `n` chat deliveries arrived (bounded); returns their bodies and the acks.
    async fn deliveries(&self, n: usize) -> (Vec<String>, Vec<u64>) {
        let (mut bodies, mut acks) = (Vec::new(), Vec::new());
        for _ in 0..20 {
            for packet in self.poll().await {
                if let Some(d) = packet.chat_delivery() {
                    bodies.push(d.body);
                } else if let Sio::Ack { id, .. } = packet {
                    acks.push(id);
                }
            }
            if bodies.len() >= n {
                break;
            }
        }
        (bodies, acks)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_polling_relays_chat_with_acks_and_pings() {
    let p = Running::start(socketio(RelayMode::All)).await;
    let alice = PollingClient::connect(&p, "r", "alice").await;
    let bob = PollingClient::connect(&p, "r", "bob").await;
    assert_eq!(alice.ping_interval, 300);
    assert_ne!(alice.sid, bob.sid);
    let send = ChatSend {
        body: "dx1 0 0 1;",
        to: None,
        echo: None,
    };
    alice.post(&[&socketio::encode_chat(&send, Some(7))]).await;
    // io.emit: both get it, alice also gets her ack.
    let (bodies, acks) = alice.deliveries(1).await;
    assert_eq!(bodies, ["dx1 0 0 1;"]);
    assert_eq!(acks, [7]);
    assert_eq!(bob.deliveries(1).await.0, ["dx1 0 0 1;"]);
    // Held polls outlive several ping intervals because the client answers the pings.
    tokio::time::sleep(Duration::from_millis(400)).await;
    let (none, _) = tokio::time::timeout(STEP, async {
        let mut got = Vec::new();
        for _ in 0..3 {
            got.extend(bob.poll().await);
        }
        (got, ())
    })
    .await
    .unwrap();
    assert!(none.is_empty(), "{none:?}");
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_broadcast_forms_choose_the_recipients() {
    let p = Running::start(socketio(RelayMode::All)).await;
    let alice = PollingClient::connect(&p, "f", "alice").await;
    let bob = PollingClient::connect(&p, "f", "bob").await;
    let carol = PollingClient::connect(&p, "f", "carol").await;
    let others = ChatSend {
        body: "to others",
        to: None,
        echo: Some(false),
    };
    let direct = ChatSend {
        body: "to carol",
        to: Some("carol"),
        echo: None,
    };
    alice
        .post(&[
            &socketio::encode_chat(&others, Some(1)),
            &socketio::encode_chat(&direct, Some(2)),
        ])
        .await;
    let (a, acks) = alice.deliveries(0).await;
    assert!(a.is_empty(), "broadcast and to(id) skip the sender: {a:?}");
    assert_eq!(acks, [1, 2]);
    assert_eq!(bob.deliveries(1).await.0, ["to others"]);
    assert_eq!(carol.deliveries(2).await.0, ["to others", "to carol"]);
    p.stop().await;
}

async fn ws_text<S>(ws: &mut S) -> String
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    loop {
        match tokio::time::timeout(STEP, ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Message::Text(t) => return t.to_string(),
            Message::Ping(_) | Message::Pong(_) => {}
            other => panic!("unexpected frame {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_websocket_only_and_upgrade_from_polling() {
    let p = Running::start(socketio(RelayMode::All)).await;
    // WebSocket only: the open packet is the first frame.
    let path = engineio::websocket_path("/socket.io/", "room=w&client=alice", None);
    let (mut alice, _) = tokio_tungstenite::connect_async(p.ws_url(&path))
        .await
        .unwrap();
    let Eio::Open(h) = Eio::parse(&ws_text(&mut alice).await).unwrap() else {
        panic!("no open packet")
    };
    assert!(
        h.upgrades.is_empty(),
        "a WebSocket session has nothing to upgrade to"
    );
    alice.send(Message::text(socketio::CONNECT)).await.unwrap();
    assert!(matches!(
        Eio::parse(&ws_text(&mut alice).await).unwrap(),
        Eio::Message(m) if matches!(Sio::parse(m).unwrap(), Sio::Connect { .. })
    ));

    // Polling, then the upgrade probe on a WebSocket with the same sid.
    let bob = PollingClient::connect(&p, "w", "bob").await;
    let path = engineio::websocket_path("/socket.io/", "", Some(&bob.sid));
    let (mut bob_ws, _) = tokio_tungstenite::connect_async(p.ws_url(&path))
        .await
        .unwrap();
    bob_ws.send(Message::text("2probe")).await.unwrap();
    assert_eq!(
        Eio::parse(&ws_text(&mut bob_ws).await).unwrap(),
        Eio::Pong("probe")
    );
    // A poll during the upgrade is released with a noop (a ping due at the same moment may
    // come first: the test's ping interval is 300 ms), then the client says it switched.
    let mut noop = false;
    for _ in 0..3 {
        let released = bob
            .http
            .get(&bob.url)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let packets = engineio::parse_payload(&released).unwrap();
        assert!(
            packets
                .iter()
                .all(|p| matches!(p, Eio::Noop | Eio::Ping(_))),
            "{released}"
        );
        if packets.contains(&Eio::Noop) {
            noop = true;
            break;
        }
    }
    assert!(noop, "the poll was never released with a noop");
    bob_ws.send(Message::text("5")).await.unwrap();

    let send = ChatSend {
        body: "over ws",
        to: None,
        echo: None,
    };
    alice
        .send(Message::text(socketio::encode_chat(&send, Some(3))))
        .await
        .unwrap();
    let mut alice_got = Vec::new();
    while alice_got.len() < 2 {
        let text = ws_text(&mut alice).await;
        match Eio::parse(&text).unwrap() {
            Eio::Message(m) => alice_got.push(Sio::parse(m).unwrap()),
            // The server pings (v4); the client answers.
            Eio::Ping(_) => alice.send(Message::text("3")).await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        alice_got
            .iter()
            .any(|p| matches!(p, Sio::Ack { id: 3, .. }))
    );
    assert!(alice_got.iter().any(|p| p.chat_delivery().is_some()));
    loop {
        let text = ws_text(&mut bob_ws).await;
        match Eio::parse(&text).unwrap() {
            Eio::Message(m) => {
                let d = Sio::parse(m).unwrap().chat_delivery().unwrap();
                assert_eq!((d.from.as_str(), d.body.as_str()), ("alice", "over ws"));
                break;
            }
            Eio::Ping(_) => bob_ws.send(Message::text("3")).await.unwrap(),
            other => panic!("unexpected {other:?}"),
        }
    }
    p.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_refuses_a_handshake_without_room_and_client() {
    let p = Running::start(socketio(RelayMode::All)).await;
    let path = engineio::websocket_path("/socket.io/", "", None);
    let (mut ws, _) = tokio_tungstenite::connect_async(p.ws_url(&path))
        .await
        .unwrap();
    assert!(matches!(
        Eio::parse(&ws_text(&mut ws).await).unwrap(),
        Eio::Open(_)
    ));
    ws.send(Message::text(socketio::CONNECT)).await.unwrap();
    let mut saw_error = false;
    for _ in 0..4 {
        let text = ws_text(&mut ws).await;
        if let Eio::Message(m) = Eio::parse(&text).unwrap()
            && let Sio::Event { name, args, .. } = Sio::parse(m).unwrap()
            && name == "error"
        {
            assert!(args[0]["error"].as_str().unwrap().contains("room=<room>"));
            saw_error = true;
            break;
        }
    }
    assert!(saw_error);
    p.stop().await;
}
