//! Test harness: a real server on `127.0.0.1:0` ([`start`]) and one subscriber type that
//! follows a room over any of the four transports, so each behaviour is written once and run
//! for every transport. Items come back as [`Got`]: the parsed item plus the exact JSON text the
//! transport carried.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::value::RawValue;
use server::{Config, SpawnedServer};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use wire::{Batch, StreamItem, Transport};

/// How long a test waits for something that should come promptly (generous: shared machine).
pub const PROMPT: Duration = Duration::from_secs(5);
/// How long a test listens to be sure nothing more comes.
pub const QUIET: Duration = Duration::from_millis(300);

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Held by each test that drives headless Chromium (`browser.rs`, `experiment.rs`), so the two
/// browser runs take turns: run side by side on a 2-core machine, each page's timers and
/// sockets wait on the other browser's, and the experiment's 3 s phases measure contention
/// rather than the transports (a WebSocket phase once saw 4 of 16 flashes that way).
pub static CHROMIUM: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A running server and an HTTP client for it.
pub struct TestServer {
    pub server: SpawnedServer,
    pub http: reqwest::Client,
}

pub async fn start(config: Config) -> TestServer {
    TestServer {
        server: server::spawn(config).await.expect("server starts"),
        http: reqwest::Client::new(),
    }
}

pub async fn start_default() -> TestServer {
    start(Config::default()).await
}

impl TestServer {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.url())
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.server.addr)
    }

    /// POSTs `body` (any JSON) as a publish.
    pub async fn publish_json(&self, room: &str, body: serde_json::Value) -> reqwest::Response {
        self.http
            .post(self.url(&format!("/api/rooms/{room}/messages")))
            .json(&body)
            .send()
            .await
            .expect("publish request")
    }

    /// Publishes `body` from `from` to everyone; returns the seq.
    pub async fn say(&self, room: &str, from: &str, body: &str) -> u64 {
        self.say_json(room, serde_json::json!({"from": from, "body": body}))
            .await
    }

    pub async fn say_json(&self, room: &str, body: serde_json::Value) -> u64 {
        let resp = self.publish_json(room, body).await;
        let status = resp.status();
        if status != 201 {
            panic!(
                "publish answered {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        let published: wire::Published = resp.json().await.unwrap();
        published.seq
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http.get(self.url(path)).send().await.expect("GET")
    }

    pub async fn ws_connect(&self, path: &str) -> Ws {
        self.ws_connect_epoch(path).await.0
    }

    /// As [`TestServer::ws_connect`], also returning the epoch the first frame announced.
    pub async fn ws_connect_epoch(&self, path: &str) -> (Ws, String) {
        let (mut ws, resp) = tokio_tungstenite::connect_async(self.ws_url(path))
            .await
            .expect("websocket handshake");
        assert_eq!(resp.status(), 101);
        // Every socket opens by saying which epoch its seqs belong to.
        match ws_next_reply(&mut ws).await {
            StreamItem::Epoch { epoch } => (ws, epoch),
            other => panic!("the first frame is not the epoch: {other:?}"),
        }
    }

    /// Follows `room` over `transport` as `client`, from `since` (`None`: from now on). Returns
    /// once the subscription is in place: every publish after this reaches it.
    pub async fn subscribe(
        &self,
        transport: Transport,
        room: &str,
        client: Option<&str>,
        since: Option<u64>,
    ) -> Subscriber {
        let mut query = Vec::new();
        if let Some(c) = client {
            query.push(format!("client={c}"));
        }
        let base = format!("/api/rooms/{room}");
        let kind = match transport {
            Transport::ShortPoll | Transport::LongPoll => {
                let cursor = match since {
                    Some(s) => s,
                    None => {
                        // "From now on": learn the head the way a client would, from a
                        // since-less poll's `Duplex-Next`.
                        let resp = self.get(&format!("{base}/poll?{}", query.join("&"))).await;
                        assert_eq!(resp.status(), 204);
                        resp.headers()["duplex-next"]
                            .to_str()
                            .unwrap()
                            .parse()
                            .unwrap()
                    }
                };
                Kind::Poll {
                    http: self.http.clone(),
                    url: self.url(&format!(
                        "{base}/{}",
                        if transport == Transport::ShortPoll {
                            "poll"
                        } else {
                            "longpoll"
                        }
                    )),
                    client: client.map(str::to_owned),
                    cursor,
                    long: transport == Transport::LongPoll,
                }
            }
            Transport::Sse => {
                if let Some(s) = since {
                    query.push(format!("since={s}"));
                }
                let resp = self.get(&format!("{base}/sse?{}", query.join("&"))).await;
                assert_eq!(resp.status(), 200);
                assert_eq!(resp.headers()["content-type"], "text/event-stream");
                Kind::Sse {
                    body: Box::pin(resp.bytes_stream()),
                    buf: Vec::new(),
                }
            }
            Transport::WebSocket => {
                if let Some(s) = since {
                    query.push(format!("since={s}"));
                }
                Kind::Ws(Box::new(
                    self.ws_connect(&format!("{base}/ws?{}", query.join("&")))
                        .await,
                ))
            }
        };
        Subscriber {
            transport,
            kind,
            ready: Vec::new(),
        }
    }
}

/// One item as delivered: parsed, plus the JSON text exactly as it came over the wire.
#[derive(Debug, Clone)]
pub struct Got {
    pub item: StreamItem,
    pub raw: String,
}

impl Got {
    fn parse(raw: &str) -> Got {
        Got {
            item: serde_json::from_str(raw)
                .unwrap_or_else(|e| panic!("not a stream item: {raw}: {e}")),
            raw: raw.to_owned(),
        }
    }

    /// The seq, when this is a message.
    pub fn seq(&self) -> Option<u64> {
        match &self.item {
            StreamItem::Message(m) => Some(m.seq),
            _ => None,
        }
    }
}

type ByteStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>;

enum Kind {
    Poll {
        http: reqwest::Client,
        url: String,
        client: Option<String>,
        cursor: u64,
        long: bool,
    },
    Sse {
        body: ByteStream,
        buf: Vec<u8>,
    },
    Ws(Box<Ws>),
}

/// A client following a room over one transport.
pub struct Subscriber {
    pub transport: Transport,
    kind: Kind,
    ready: Vec<Got>,
}

/// The batch shape with messages kept as raw JSON.
#[derive(serde::Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    next: u64,
    missed: u64,
    reset: bool,
}

impl Subscriber {
    /// Collects items until `n` have arrived or `within` passes.
    pub async fn take(&mut self, n: usize, within: Duration) -> Vec<Got> {
        let deadline = Instant::now() + within;
        while self.ready.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            match timeout(left, self.fetch(left)).await {
                Ok(true) => {}
                Ok(false) | Err(_) => break,
            }
        }
        let k = n.min(self.ready.len());
        self.ready.drain(..k).collect()
    }

    /// Collects exactly `n` items or panics naming what did arrive.
    pub async fn expect(&mut self, n: usize) -> Vec<Got> {
        let got = self.take(n, PROMPT).await;
        assert_eq!(
            got.len(),
            n,
            "{}: expected {n} items, got {:?}",
            self.transport,
            got.iter().map(|g| &g.raw).collect::<Vec<_>>()
        );
        got
    }

    /// Asserts nothing more arrives for a little while.
    pub async fn expect_quiet(&mut self) {
        let extra = self.take(1, QUIET).await;
        assert!(
            extra.is_empty(),
            "{}: unexpected {:?}",
            self.transport,
            extra[0].raw
        );
    }

    /// One round of reading; false when the transport ended.
    async fn fetch(&mut self, left: Duration) -> bool {
        match &mut self.kind {
            Kind::Poll {
                http,
                url,
                client,
                cursor,
                long,
            } => {
                let mut req = http.get(url.as_str()).query(&[("since", *cursor)]);
                if let Some(c) = client {
                    req = req.query(&[("client", c)]);
                }
                if *long {
                    let t = left.as_millis().clamp(1, 5_000) as u64;
                    req = req.query(&[("timeout_ms", t)]);
                }
                let resp = req.send().await.expect("poll");
                match resp.status().as_u16() {
                    204 => {
                        if !*long {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                    200 => {
                        let text = resp.text().await.unwrap();
                        // The typed Batch must parse too: the wire contract.
                        let _: Batch = serde_json::from_str(&text).unwrap();
                        let batch: RawBatch = serde_json::from_str(&text).unwrap();
                        if batch.reset {
                            self.ready.push(Got {
                                item: StreamItem::Reset { head: batch.next },
                                raw: String::new(),
                            });
                        }
                        if batch.missed > 0 {
                            self.ready.push(Got {
                                item: StreamItem::Gap {
                                    missed: batch.missed,
                                },
                                raw: String::new(),
                            });
                        }
                        for m in batch.messages {
                            self.ready.push(Got::parse(m.get()));
                        }
                        *cursor = batch.next;
                    }
                    other => panic!("poll answered {other}: {}", resp.text().await.unwrap()),
                }
                true
            }
            Kind::Sse { body, buf } => {
                let Some(chunk) = body.next().await else {
                    return false;
                };
                buf.extend_from_slice(&chunk.expect("sse body"));
                while let Some(end) = find(buf, b"\n\n") {
                    let event: Vec<u8> = buf.drain(..end + 2).collect();
                    let event = String::from_utf8(event).unwrap();
                    let data: Vec<&str> = event
                        .lines()
                        .filter_map(|l| l.strip_prefix("data: "))
                        .collect();
                    if !data.is_empty() {
                        self.ready.push(Got::parse(&data.join("\n")));
                    }
                }
                true
            }
            Kind::Ws(ws) => match ws.next().await {
                Some(Ok(WsMessage::Text(t))) => {
                    let got = Got::parse(t.as_str());
                    // An epoch frame says where seqs belong, as an SSE id does: not an item.
                    if !matches!(got.item, StreamItem::Epoch { .. }) {
                        self.ready.push(got);
                    }
                    true
                }
                Some(Ok(WsMessage::Close(_))) | None | Some(Err(_)) => false,
                Some(Ok(_)) => true,
            },
        }
    }

    /// The WebSocket, for tests that send on it.
    pub fn ws(&mut self) -> &mut Ws {
        match &mut self.kind {
            Kind::Ws(ws) => ws,
            _ => panic!("{} is not a WebSocket", self.transport),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Sends a text frame on a WebSocket.
pub async fn ws_send(ws: &mut Ws, text: &str) {
    ws.send(WsMessage::Text(text.into()))
        .await
        .expect("ws send");
}

/// Reads the next text frame (skipping deliveries when `skip_messages`) as a stream item.
pub async fn ws_next_reply(ws: &mut Ws) -> StreamItem {
    loop {
        let frame = timeout(PROMPT, ws.next())
            .await
            .expect("a frame in time")
            .expect("socket open")
            .expect("frame");
        if let WsMessage::Text(t) = frame {
            let item: StreamItem = serde_json::from_str(t.as_str()).unwrap();
            if !matches!(item, StreamItem::Message(_)) {
                return item;
            }
        }
    }
}

/// The seqs among `got`.
pub fn seqs(got: &[Got]) -> Vec<u64> {
    got.iter().filter_map(Got::seq).collect()
}
