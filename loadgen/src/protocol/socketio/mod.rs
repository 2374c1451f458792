//! The Socket.IO chat server as a target (`peers/socketio/`): Engine.IO v4 + Socket.IO v5 in
//! the shapes [`crate::codec::engineio`] and [`crate::codec::socketio`] read and write. Every
//! client joins the room with the handshake query `room=<room>&client=<id>`; a sender emits
//! `chat` with an ack over its own session, and the ack is the publish's acknowledgement.
//!
//! Socket.IO's transports map onto the phase's:
//! - `long_poll`: Engine.IO's HTTP long-polling only (a held GET for what the server has, a
//!   POST for what the client sends, so two connections, as a browser uses);
//! - `websocket`: a WebSocket from the start, or, with [`SocketIo::upgrade`], Socket.IO's
//!   default: open by polling, then probe and upgrade to a WebSocket.
//!
//! `short_poll` and `sse` are not Socket.IO transports; a scenario asking for them is refused
//! before any load. Socket.IO keeps no history: a reconnecting client opens a new session and
//! whatever was sent meanwhile counts as missing.

pub mod polling;
pub mod websocket;

use std::collections::HashMap;
use std::sync::atomic::Ordering::Relaxed;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::Request;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::TargetProtocol;
use crate::clients::http::{Answer, HttpConn};
use crate::clients::life::{ClientReport, client_task};
use crate::clients::{ClientError, ClientHandle, PhaseCtx, PublishOrder};
use crate::clock;
use crate::codec::socketio::{self as sio, ChatSend};
use crate::stamp::Stamp;

/// Where Socket.IO listens.
pub const BASE: &str = "/socket.io/";

/// The Socket.IO chat server.
#[derive(Debug, Clone, Copy, Default)]
pub struct SocketIo {
    /// The `websocket` transport opens by polling and upgrades (Socket.IO's default client)
    /// instead of opening a WebSocket at once.
    pub upgrade: bool,
}

/// The transports this protocol has.
pub const TRANSPORTS: [Transport; 2] = [Transport::LongPoll, Transport::WebSocket];

impl TargetProtocol for SocketIo {
    fn client(
        &self,
        transport: Transport,
        me: ClientHandle,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ClientReport> {
        match (transport, self.upgrade) {
            (Transport::WebSocket, false) => {
                client_task::<websocket::WebSocketClient>(me, stop).boxed()
            }
            (Transport::WebSocket, true) => {
                client_task::<websocket::UpgradedClient>(me, stop).boxed()
            }
            // The scenario is checked against TRANSPORTS before a run; polling is the only other.
            _ => client_task::<polling::PollingClient>(me, stop).boxed(),
        }
    }

    /// A Socket.IO sender emits over its own session, whatever the transport.
    fn publishes_on_subscription(&self, _transport: Transport) -> bool {
        true
    }

    /// Never used (senders emit on their session); a request Socket.IO refuses, should it be.
    fn publish_request(
        &self,
        phase: &PhaseCtx,
        _stamp: &Stamp,
        body: String,
    ) -> Request<Full<bytes::Bytes>> {
        HttpConn::request(phase, "POST", BASE, Some(body))
    }

    fn published_seq(
        &self,
        _phase: &PhaseCtx,
        _answer: &Answer,
        _stamp: &Stamp,
    ) -> Result<u64, ClientError> {
        Err(ClientError::Protocol(
            "Socket.IO publishes over the sender's session, not by HTTP".into(),
        ))
    }
}

/// The handshake query of client `me`.
pub fn query(me: &ClientHandle) -> String {
    format!("room={}&client={}", me.phase.room, me.id)
}

/// A sender's emits awaiting their ack: ack id -> (when sent, the message's seq, its counter).
#[derive(Debug, Default)]
pub struct Pending {
    acks: HashMap<u64, (Instant, u64, u32)>,
    next: u64,
}

impl Pending {
    /// The Engine.IO message that emits `order` for `me`, remembered until its ack.
    pub fn emit(&mut self, me: &ClientHandle, order: PublishOrder) -> String {
        let stamp = Stamp {
            sender: me.index as u32,
            n: order.n,
            scheduled_ns: clock::ns_at(order.scheduled.into_std()),
        };
        let body = stamp.encode(me.phase.payload_bytes);
        self.next += 1;
        self.acks.insert(
            self.next,
            (
                Instant::now(),
                stamp.log_position(me.phase.senders),
                order.n,
            ),
        );
        me.phase.meter.traffic.requests.fetch_add(1, Relaxed);
        let (to, echo) = me.phase.addressing(me.index, order.n);
        sio::encode_chat(
            &ChatSend {
                body: &body,
                to: to.as_deref(),
                echo,
            },
            Some(self.next),
        )
    }
}

/// Handles one Engine.IO message's Socket.IO packet: a chat delivery, an ack of our emit, or an
/// error for what the chat does not send.
pub fn take_message(
    me: &mut ClientHandle,
    pending: &mut Pending,
    text: &str,
    at: Instant,
) -> Result<(), ClientError> {
    let packet = sio::Packet::parse(text).map_err(|e| ClientError::Protocol(e.to_string()))?;
    if let Some(chat) = packet.chat_delivery() {
        return me.on_stamped(&chat.body, at);
    }
    match packet {
        sio::Packet::Ack { id, args } => {
            let ok = args
                .first()
                .and_then(|a| a.get("ok"))
                .and_then(|ok| ok.as_bool());
            let Some((sent, seq, n)) = pending.acks.remove(&id) else {
                return Ok(());
            };
            if ok != Some(true) {
                return Err(ClientError::Protocol(format!(
                    "the Socket.IO server refused a chat: {args:?}"
                )));
            }
            me.phase
                .meter
                .request_rtt
                .record_us((at - sent).as_micros() as u64);
            me.phase.publish_acked(seq, me.index, n, None);
            Ok(())
        }
        sio::Packet::Disconnect => Err(ClientError::Closed),
        sio::Packet::ConnectError { message } => Err(ClientError::Protocol(format!(
            "the Socket.IO server refused the connection: {message}"
        ))),
        sio::Packet::Event { name, args, .. } if name == "error" => Err(ClientError::Protocol(
            format!("the Socket.IO server sent an error: {args:?}"),
        )),
        // Other events and a repeated connect are not the chat's; ignore them as a client would.
        _ => Ok(()),
    }
}
