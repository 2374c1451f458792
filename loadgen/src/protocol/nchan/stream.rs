//! nchan's push subscribers: EventSource (`/sub/sse/<room>`, which nchan refuses without
//! `Accept: text/event-stream`) and WebSocket (`/sub/ws/<room>` with the `ws+meta.nchan`
//! subprotocol, so each frame carries its message id). Both resume after a reconnect from the
//! last id seen, with `Last-Event-ID` or `?last_event_id=`.
//!
//! Byte accounting as for duplex's streams: the response head is header bytes, each message
//! payload; `id:`/`data:` lines, the frames' meta headers, pings and frame headers are framing.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::StreamExt;
use hyper::StatusCode;
use hyper::header::HeaderValue;
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::sub_path;
use crate::clients::http::{HttpConn, StreamConn, snippet};
use crate::clients::inline::Stopped;
use crate::clients::{ClientError, ClientHandle, TransportClient, ws};
use crate::codec::nchan::{MessageId, WS_SUBPROTOCOL, WsFrame};
use crate::conn::ClientIo;
use crate::protocol::duplex::sse::EventStream;

/// How long the subscription's response head may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// An nchan EventSource subscription.
#[derive(Debug)]
pub struct EventSourceClient {
    /// Holds and drives its connection.
    stream: EventStream,
}

impl TransportClient for EventSourceClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let conn = StreamConn::open(&me.phase).await?;
        let mut request = HttpConn::event_source_request(&me.phase, &sub_path(&me.phase, "sse"));
        let headers = request.headers_mut();
        if let Some(id) = me
            .resume
            .as_deref()
            .and_then(|r| HeaderValue::from_str(r).ok())
        {
            headers.insert("last-event-id", id);
        }
        let (response, head_len) = conn
            .open_stream(&me.phase, request, SUBSCRIBE_TIMEOUT)
            .await?;
        if response.status() != StatusCode::OK {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await;
            return Err(ClientError::Status {
                status,
                body: body.map(|b| snippet(&b)).unwrap_or_default(),
            });
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
            .follow(stop, |event, at| {
                me.on_stamped(event.data, at)?;
                if let Some(id) = event.id {
                    // Checked, so a resume never sends nchan something it did not write.
                    id.parse::<MessageId>()
                        .map_err(|e| ClientError::Protocol(e.to_string()))?;
                    me.resume = Some(id.to_owned());
                }
                Ok(())
            })
            .await
    }
}

/// An nchan WebSocket subscription.
#[derive(Debug)]
pub struct WebSocketClient {
    socket: WebSocketStream<ClientIo>,
}

impl TransportClient for WebSocketClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let phase = &me.phase;
        let mut path = sub_path(phase, "ws");
        if let Some(id) = &me.resume {
            path.push_str("?last_event_id=");
            path.push_str(id);
        }
        let mut request = ws::upgrade_request(phase, &path)?;
        request.headers_mut().insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(WS_SUBPROTOCOL),
        );
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
            let text = match frame.ok_or(ClientError::Closed)?? {
                WsMessage::Text(text) => text,
                WsMessage::Close(_) => return Err(ClientError::Closed),
                WsMessage::Binary(_) => {
                    return Err(ClientError::Protocol("nchan sent a binary frame".into()));
                }
                // Pings are answered by tungstenite itself.
                _ => continue,
            };
            let at = Instant::now();
            let frame = WsFrame::parse(&text).map_err(|e| ClientError::Protocol(e.to_string()))?;
            me.on_stamped(frame.data, at)?;
            me.resume = Some(frame.id.to_string());
        }
    }
}
