//! Engine.IO's HTTP long-polling, as `socket.io-client` does it with `transports: ["polling"]`:
//! a GET opens the session (`0{"sid":...}`), a POST of `40` joins the default namespace, and
//! from then on one GET is always held on one connection (the server answers it when it has
//! packets, or with a ping at its interval) while the client's own packets (emits, pongs) go
//! in POSTs on a second connection.
//!
//! Byte accounting: each answer's head is header bytes, each chat body payload, the rest of the
//! payloads (packet types, `\x1e`, JSON around the body, acks, pings) framing; a GET that brought
//! nothing but a ping or a noop counts whole as an empty answer.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use report::results::TraceEvent;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{BASE, Pending, query, take_message};
use crate::clients::http::{Answer, HttpConn, snippet};
use crate::clients::{ClientError, ClientHandle, TransportClient};
use crate::codec::engineio::{self, Handshake, Packet};
use crate::codec::socketio::CONNECT;

/// How long a POST may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

fn protocol(e: crate::codec::CodecError) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// The text of a `200` answer, or the error its status means.
fn ok_text(answer: &Answer) -> Result<&str, ClientError> {
    if answer.status.as_u16() != 200 {
        return Err(ClientError::Status {
            status: answer.status.as_u16(),
            body: snippet(&answer.body),
        });
    }
    std::str::from_utf8(&answer.body)
        .map_err(|_| ClientError::Protocol("Engine.IO sent a payload that is not UTF-8".into()))
}

/// Opens a polling session on `conn` and joins the namespace: the session's handshake.
pub async fn open_session(
    me: &mut ClientHandle,
    conn: &mut HttpConn,
) -> Result<Handshake, ClientError> {
    let phase = Arc::clone(&me.phase);
    let path = engineio::polling_path(BASE, &query(me), None);
    let request = HttpConn::request(&phase, "GET", &path, None);
    let answer = conn.exchange(&phase, request, POST_TIMEOUT).await?;
    phase
        .meter
        .traffic
        .header_down
        .fetch_add(answer.head_len, Relaxed);
    let text = ok_text(&answer)?;
    let handshake = match Packet::parse(text.split(engineio::SEPARATOR).next().unwrap_or(""))
        .map_err(protocol)?
    {
        Packet::Open(h) => h,
        _ => {
            return Err(protocol(crate::codec::CodecError::new(
                "an Engine.IO open packet 0{\"sid\":...}",
                text,
            )));
        }
    };
    post(me, conn, &handshake.sid, CONNECT).await?;
    // The namespace's answer (`40{"sid":...}`), possibly with the first packets behind it.
    let session = engineio::polling_path(BASE, "", Some(&handshake.sid));
    let request = HttpConn::request(&phase, "GET", &session, None);
    let answer = conn.exchange(&phase, request, POST_TIMEOUT).await?;
    phase
        .meter
        .traffic
        .header_down
        .fetch_add(answer.head_len, Relaxed);
    let text = ok_text(&answer)?;
    let connected = engineio::parse_payload(text)
        .map_err(protocol)?
        .iter()
        .any(|p| matches!(p, Packet::Message(m) if m.starts_with('0')));
    if !connected {
        return Err(protocol(crate::codec::CodecError::new(
            "the Socket.IO connect answer 40{\"sid\":...}",
            text,
        )));
    }
    Ok(handshake)
}

/// POSTs `packets` (joined as one payload) to session `sid`.
async fn post(
    me: &ClientHandle,
    conn: &mut HttpConn,
    sid: &str,
    payload: &str,
) -> Result<(), ClientError> {
    if !conn.is_open() {
        *conn = HttpConn::open(&me.phase).await?;
    }
    let path = engineio::polling_path(BASE, "", Some(sid));
    let mut request = HttpConn::request(&me.phase, "POST", &path, Some(payload.to_owned()));
    request.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain;charset=UTF-8"),
    );
    let answer = conn.exchange(&me.phase, request, POST_TIMEOUT).await?;
    me.phase
        .meter
        .traffic
        .header_down
        .fetch_add(answer.head_len, Relaxed);
    match ok_text(&answer)? {
        "ok" => Ok(()),
        other => Err(protocol(crate::codec::CodecError::new(
            "Engine.IO's \"ok\" for a POST",
            other,
        ))),
    }
}

/// A Socket.IO client on HTTP long-polling only.
#[derive(Debug)]
pub struct PollingClient {
    get: HttpConn,
    post: HttpConn,
    sid: String,
    pending: Pending,
}

impl PollingClient {
    /// Handles one GET's answer; returns the pongs to send.
    fn take_answer(&mut self, me: &mut ClientHandle, answer: &Answer) -> Result<u32, ClientError> {
        let meter = Arc::clone(&me.phase.meter);
        meter
            .request_rtt
            .record_us((answer.end - answer.start).as_micros() as u64);
        let text = ok_text(answer)?;
        let mut pings = 0;
        let mut messages = 0u32;
        for packet in engineio::parse_payload(text).map_err(protocol)? {
            match packet {
                Packet::Message(m) => {
                    let before = meter.distinct_deliveries.load(Relaxed);
                    take_message(me, &mut self.pending, m, answer.end)?;
                    messages += (meter.distinct_deliveries.load(Relaxed) - before) as u32;
                }
                Packet::Ping(_) => pings += 1,
                Packet::Noop => {}
                Packet::Close => return Err(ClientError::Closed),
                other => {
                    return Err(ClientError::Protocol(format!(
                        "unexpected Engine.IO packet on a poll: {other:?}"
                    )));
                }
            }
        }
        if messages == 0 {
            meter.traffic.empty_responses.fetch_add(1, Relaxed);
            meter
                .traffic
                .empty_down
                .fetch_add(answer.bytes_down, Relaxed);
        } else {
            meter
                .traffic
                .header_down
                .fetch_add(answer.head_len, Relaxed);
        }
        if me.trace.is_some() {
            let event = TraceEvent::Request {
                start_ms: me.phase.ms(answer.start),
                end_ms: me.phase.ms(answer.end),
                status: answer.status.as_u16(),
                messages,
                bytes_down: answer.bytes_down,
            };
            me.trace_event(event);
        }
        Ok(pings)
    }
}

impl TransportClient for PollingClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let mut get = HttpConn::open(&me.phase).await?;
        let handshake = open_session(me, &mut get).await?;
        let post = HttpConn::open(&me.phase).await?;
        me.connected(start);
        Ok(Self {
            get,
            post,
            sid: handshake.sid,
            pending: Pending::default(),
        })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let phase = Arc::clone(&me.phase);
        // A held GET ends at the server's ping interval (25 s) at the latest.
        let limit = Duration::from_secs(60);
        let path = engineio::polling_path(BASE, "", Some(&self.sid));
        let mut orders = me.orders.take();
        let result = loop {
            let request = HttpConn::request(&phase, "GET", &path, None);
            // Emits go out while the GET is held; the GET's answer ends the inner loop.
            let answer = {
                let mut get = std::pin::pin!(self.get.exchange(&phase, request, limit));
                loop {
                    let order = async {
                        match orders.as_mut() {
                            Some(rx) => rx.recv().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        biased;
                        _ = stop.cancelled() => break None,
                        a = &mut get => break Some(a),
                        order = order => match order {
                            Some(order) => {
                                let emit = self.pending.emit(me, order);
                                if let Err(e) = post(me, &mut self.post, &self.sid, &emit).await {
                                    break Some(Err(e));
                                }
                            }
                            None => orders = None,
                        },
                    }
                }
            };
            let answer = match answer {
                None => break Ok(()),
                Some(Err(e)) => break Err(e),
                Some(Ok(a)) => a,
            };
            // The GET future is done; the connection is free for the pong.
            let pings = match self.take_answer(me, &answer) {
                Ok(p) => p,
                Err(e) => break Err(e),
            };
            if pings > 0
                && let Err(e) = post(me, &mut self.post, &self.sid, "3").await
            {
                break Err(e);
            }
        };
        me.orders = orders;
        result
    }
}
