//! Any server with an SSE or WebSocket subscribe URL and an HTTP publish URL (`target.protocol
//! = "generic"`): an engineer's own endpoint, measured without writing an adapter. The scenario
//! gives three templates, in which `{room}` is the phase's room, and in the publish body
//! `{stamp}` the loadgen's stamp and `{from}` the sender's id:
//! `target.subscribe` (`/events/{room}`), `target.publish` (`/rooms/{room}/messages`) and
//! `target.publish_body` (`{"text":"{stamp}"}`).
//!
//! A delivery is any SSE event's data or WebSocket text frame that contains the stamp, wherever
//! the server put it (wrapped in its own JSON, say): the stamp and its padding count as payload,
//! the rest as framing. Anything without a stamp (the server's own pings, presence) is ignored.
//! The server numbers nothing duplex can check, so a message's seq is its stamp's
//! [`log_position`](crate::stamp::Stamp::log_position); a publish is acknowledged by any 2xx.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::{FutureExt, StreamExt};
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Request, StatusCode};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::TargetProtocol;
use super::duplex::sse::EventStream;
use crate::clients::http::{Answer, HttpConn, StreamConn, snippet};
use crate::clients::inline::Stopped;
use crate::clients::life::{ClientReport, client_task_with};
use crate::clients::{ClientError, ClientHandle, PhaseCtx, TransportClient, ws};
use crate::conn::ClientIo;
use crate::stamp::Stamp;

/// The transports a generic endpoint has.
pub const TRANSPORTS: [Transport; 2] = [Transport::Sse, Transport::WebSocket];

/// How long a subscription's response head may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// A generic SSE/WebSocket server, by its templates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Generic {
    /// Subscribe path, with `{room}`.
    pub subscribe: String,
    /// Publish path, with `{room}`.
    pub publish: String,
    /// Publish body, with `{stamp}` (and optionally `{from}`, `{room}`).
    pub publish_body: String,
}

/// The phase's subscribe path (`target.subscribe` with its room), every connect's setup.
#[derive(Debug, Clone)]
pub struct SubscribePath(String);

impl Generic {
    fn subscribe_path(&self, phase: &PhaseCtx) -> String {
        self.subscribe.replace("{room}", &phase.room)
    }
}

/// Hands the stamp inside `data` (if any) to the client; what surrounds it is framing.
fn take_data(me: &mut ClientHandle, data: &str, at: Instant) -> Result<(), ClientError> {
    let Some(start) = data.find("dx1 ") else {
        return Ok(());
    };
    let rest = &data[start..];
    // The stamp is padded with '.' to payload_bytes: that much is the message.
    let end = rest
        .char_indices()
        .nth(me.phase.payload_bytes)
        .map_or(rest.len(), |(i, _)| i);
    me.on_stamped(&rest[..end], at)
}

impl TargetProtocol for Generic {
    fn client(
        &self,
        transport: Transport,
        me: ClientHandle,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ClientReport> {
        // The path is fixed for the phase: every connect of the client gets it.
        let path = SubscribePath(self.subscribe_path(&me.phase));
        match transport {
            Transport::WebSocket => client_task_with::<GenericWebSocket>(me, stop, path).boxed(),
            // The scenario is checked against TRANSPORTS before a run; SSE is the only other.
            _ => client_task_with::<GenericSse>(me, stop, path).boxed(),
        }
    }

    fn publishes_on_subscription(&self, _transport: Transport) -> bool {
        false
    }

    fn publish_request(
        &self,
        phase: &PhaseCtx,
        stamp: &Stamp,
        body: String,
    ) -> Request<Full<bytes::Bytes>> {
        let from = format!("c{}", stamp.sender);
        let path = self.publish.replace("{room}", &phase.room);
        // The stamp is ASCII without quotes or backslashes: it needs no escaping in JSON.
        let text = self
            .publish_body
            .replace("{stamp}", &body)
            .replace("{from}", &from)
            .replace("{room}", &phase.room);
        let json = text.trim_start().starts_with(['{', '[']);
        let mut request = HttpConn::request(phase, "POST", &path, Some(text));
        if !json {
            request
                .headers_mut()
                .insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        }
        request
    }

    fn published_seq(
        &self,
        phase: &PhaseCtx,
        answer: &Answer,
        stamp: &Stamp,
    ) -> Result<u64, ClientError> {
        if !answer.status.is_success() {
            return Err(ClientError::Status {
                status: answer.status.as_u16(),
                body: snippet(&answer.body),
            });
        }
        Ok(stamp.log_position(phase.senders))
    }
}

/// An SSE subscription to the generic endpoint.
#[derive(Debug)]
pub struct GenericSse {
    /// Holds and drives its connection.
    stream: EventStream,
}

impl TransportClient for GenericSse {
    type Setup = SubscribePath;

    async fn connect(me: &mut ClientHandle, path: &SubscribePath) -> Result<Self, ClientError> {
        let start = Instant::now();
        let path = &path.0;
        let conn = StreamConn::open(&me.phase).await?;
        let request = HttpConn::event_source_request(&me.phase, path);
        let (response, head_len) = conn
            .open_stream(&me.phase, request, SUBSCRIBE_TIMEOUT)
            .await?;
        let is_stream = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if response.status() != StatusCode::OK || !is_stream {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await;
            return Err(ClientError::Protocol(format!(
                "GET {path} should open a text/event-stream, but it answered {status} {:?}",
                body.map(|b| snippet(&b)).unwrap_or_default()
            )));
        }
        me.phase
            .meter
            .traffic
            .header_down
            .fetch_add(head_len, Relaxed);
        me.connected(start);
        Ok(Self {
            stream: EventStream::new(response.into_body()),
        })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        self.stream
            .follow(stop, |event, at| take_data(me, event.data, at))
            .await
    }
}

/// A WebSocket subscription to the generic endpoint.
#[derive(Debug)]
pub struct GenericWebSocket {
    socket: WebSocketStream<ClientIo>,
}

impl TransportClient for GenericWebSocket {
    type Setup = SubscribePath;

    async fn connect(me: &mut ClientHandle, path: &SubscribePath) -> Result<Self, ClientError> {
        let start = Instant::now();
        let phase = &me.phase;
        let request = ws::upgrade_request(phase, &path.0)?;
        let (socket, _) = ws::open(phase, request).await?;
        me.connected(start);
        Ok(Self { socket })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        // One wait for `stop` for the whole connection, polled only once the token woke it.
        let mut stopped = Stopped::new(stop);
        loop {
            let frame = tokio::select! {
                biased;
                _ = &mut stopped => {
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.socket.close(None)).await;
                    return Ok(());
                }
                f = self.socket.next() => f,
            };
            match frame.ok_or(ClientError::Closed)?? {
                WsMessage::Text(text) => take_data(me, text.as_str(), Instant::now())?,
                WsMessage::Close(_) => return Err(ClientError::Closed),
                _ => {}
            }
        }
    }
}
