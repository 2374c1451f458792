//! The WebSocket client: one socket per client (`GET .../ws?since=0`), messages as text frames,
//! and, for senders, publishing over the same socket with `send` frames answered by `ack`s (the
//! ack's round trip is the request RTT). Small read/write buffers keep thousands of idle sockets
//! cheap. After a failure the runner reconnects it from the last seq it saw; sends still waiting
//! for their ack on the dead socket are forgotten with it (they will never be acknowledged).
//!
//! Byte accounting: the handshake's response head counts as header bytes, each message frame's
//! text as payload; frame headers, acks, pings and close frames are framing.

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;
use wire::ClientFrame;

use super::room_path;
use super::stream::{SendReply, take_stream_item};
use crate::clients::inline::Stopped;
use crate::clients::{ClientError, ClientHandle, PublishOrder, TransportClient, ws};
use crate::clock;
use crate::conn::ClientIo;
use crate::stamp::Stamp;

/// A WebSocket client: its socket and the sends on it awaiting their ack.
#[derive(Debug)]
pub struct WebSocketClient {
    socket: WebSocketStream<ClientIo>,
    /// ref -> when it was sent, for sends not yet acknowledged.
    pending: HashMap<u64, (Instant, u32)>,
    next_ref: u64,
}

impl WebSocketClient {
    /// Sends one publish over the socket.
    async fn send(&mut self, me: &ClientHandle, order: PublishOrder) -> Result<(), ClientError> {
        let stamp = Stamp {
            sender: me.index as u32,
            n: order.n,
            scheduled_ns: clock::ns_at(order.scheduled.into_std()),
        };
        self.next_ref += 1;
        let (to, echo) = me.phase.addressing(me.index, order.n);
        let frame = ClientFrame::Send {
            body: stamp.encode(me.phase.payload_bytes),
            event: None,
            to,
            echo,
            reference: Some(self.next_ref),
        };
        let text = serde_json::to_string(&frame).expect("a frame serializes");
        self.pending
            .insert(self.next_ref, (Instant::now(), order.n));
        me.phase.meter.traffic.requests.fetch_add(1, Relaxed);
        self.socket.send(WsMessage::text(text)).await?;
        Ok(())
    }

    /// Handles one received frame.
    fn take_frame(&mut self, me: &mut ClientHandle, frame: WsMessage) -> Result<(), ClientError> {
        let at = Instant::now();
        let text = match frame {
            WsMessage::Text(text) => text,
            WsMessage::Close(_) => return Err(ClientError::Closed),
            // Pings are answered by tungstenite itself; binary frames are not part of the API.
            WsMessage::Binary(_) => {
                return Err(ClientError::Protocol("unexpected binary frame".into()));
            }
            _ => return Ok(()),
        };
        match take_stream_item(me, text.as_str(), at, "frame")? {
            None => {}
            Some(SendReply::Ack { reference, seq }) => {
                // Refs are per connection and acks come on it, so every ack has its send here.
                if let Some((sent, n)) = self.pending.remove(&reference) {
                    me.phase
                        .meter
                        .request_rtt
                        .record_us((at - sent).as_micros() as u64);
                    me.phase.publish_acked(seq, me.index, n, None);
                }
            }
            Some(SendReply::Error { error, reference }) => {
                if let Some(r) = reference {
                    self.pending.remove(&r);
                }
                return Err(ClientError::Protocol(format!(
                    "server refused a send: {error}"
                )));
            }
        }
        Ok(())
    }
}

impl TransportClient for WebSocketClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let phase = &me.phase;
        let path = room_path(phase, &format!("ws?since={}&client={}", me.since, me.id));
        let request = ws::upgrade_request(phase, &path)?;
        let (socket, bytes) = ws::open(phase, request).await?;
        me.on_node(bytes.node);
        me.connected(start);
        Ok(Self {
            socket,
            pending: HashMap::new(),
            next_ref: 0,
        })
    }

    /// Reads frames and, for a sender, sends its publish orders, until `stop` (then closes the
    /// socket politely) or a failure.
    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        // Taken for the loop (the select borrows it while `me` is borrowed mutably), and put
        // back for the next socket.
        let mut orders = me.orders.take();
        // One wait for `stop` for the whole connection, polled only once the token woke it.
        let mut stopped = Stopped::new(stop);
        let result = loop {
            let order = async {
                match orders.as_mut() {
                    Some(rx) => rx.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                _ = &mut stopped => {
                    // A polite close, bounded: the phase is over either way.
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.socket.close(None)).await;
                    break Ok(());
                }
                frame = self.socket.next() => match frame {
                    Some(Ok(frame)) => {
                        if let Err(e) = self.take_frame(me, frame) {
                            break Err(e);
                        }
                    }
                    Some(Err(e)) => break Err(e.into()),
                    None => break Err(ClientError::Closed),
                },
                order = order => match order {
                    Some(order) => {
                        if let Err(e) = self.send(me, order).await {
                            break Err(e);
                        }
                    }
                    None => orders = None,
                },
            }
        };
        me.orders = orders;
        result
    }
}
