//! Engine.IO over a WebSocket, two ways in: at once (`transports: ["websocket"]`: the open
//! packet is the socket's first frame), or Socket.IO's default, which opens the session by
//! polling and then upgrades: a WebSocket with the session's sid, `2probe` answered `3probe`,
//! then `5`, after which everything goes over the socket. Either way the client answers the
//! server's pings (`2` -> `3`), receives `chat` events and, for a sender, emits `chat` with an
//! ack (the ack's round trip is the request RTT).
//!
//! Byte accounting: the handshake heads are header bytes, each chat body payload; packet types,
//! the JSON around bodies, acks, pings and frame headers are framing.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::time::Instant;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_util::sync::CancellationToken;

use super::{BASE, Pending, polling, query, take_message};
use crate::clients::http::{CONNECT_TIMEOUT, HttpConn};
use crate::clients::inline::Stopped;
use crate::clients::{ClientError, ClientHandle, TransportClient, ws};
use crate::codec::CodecError;
use crate::codec::engineio::{self, Packet};
use crate::codec::socketio::CONNECT;
use crate::conn::ClientIo;

fn protocol(e: CodecError) -> ClientError {
    ClientError::Protocol(e.to_string())
}

/// Opens a counted WebSocket to `path`.
async fn open_socket(
    me: &ClientHandle,
    path: &str,
) -> Result<WebSocketStream<ClientIo>, ClientError> {
    let phase = &me.phase;
    let request = ws::upgrade_request(phase, path)?;
    let (socket, _) = ws::open(phase, request).await?;
    Ok(socket)
}

/// The next text frame, within the connect timeout (handshake steps only).
async fn next_text(socket: &mut WebSocketStream<ClientIo>) -> Result<String, ClientError> {
    loop {
        let frame = tokio::time::timeout(CONNECT_TIMEOUT, socket.next())
            .await
            .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))?
            .ok_or(ClientError::Closed)??;
        match frame {
            WsMessage::Text(t) => return Ok(t.to_string()),
            WsMessage::Close(_) => return Err(ClientError::Closed),
            _ => {}
        }
    }
}

/// A Socket.IO session on a WebSocket, whichever way it was opened.
#[derive(Debug)]
pub struct Session {
    socket: WebSocketStream<ClientIo>,
    pending: Pending,
}

impl Session {
    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
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
                    let _ = tokio::time::timeout(Duration::from_millis(500), self.socket.close(None)).await;
                    break Ok(());
                }
                frame = self.socket.next() => {
                    let frame = match frame {
                        Some(Ok(f)) => f,
                        Some(Err(e)) => break Err(e.into()),
                        None => break Err(ClientError::Closed),
                    };
                    if let Err(e) = self.take_frame(me, frame).await {
                        break Err(e);
                    }
                }
                order = order => match order {
                    Some(order) => {
                        let emit = self.pending.emit(me, order);
                        if let Err(e) = self.socket.send(WsMessage::text(emit)).await {
                            break Err(e.into());
                        }
                    }
                    None => orders = None,
                },
            }
        };
        me.orders = orders;
        result
    }

    async fn take_frame(
        &mut self,
        me: &mut ClientHandle,
        frame: WsMessage,
    ) -> Result<(), ClientError> {
        let at = Instant::now();
        let text = match frame {
            WsMessage::Text(text) => text,
            WsMessage::Close(_) => return Err(ClientError::Closed),
            WsMessage::Binary(_) => {
                return Err(ClientError::Protocol(
                    "Socket.IO sent a binary frame; the chat sends text".into(),
                ));
            }
            _ => return Ok(()),
        };
        match Packet::parse(text.as_str()).map_err(protocol)? {
            Packet::Message(m) => take_message(me, &mut self.pending, m, at),
            // Engine.IO v4: the server pings, the client answers at once.
            Packet::Ping(_) => Ok(self.socket.send(WsMessage::text("3")).await?),
            Packet::Close => Err(ClientError::Closed),
            Packet::Noop | Packet::Pong(_) => Ok(()),
            other => Err(ClientError::Protocol(format!(
                "unexpected Engine.IO packet on a WebSocket: {other:?}"
            ))),
        }
    }
}

/// Joins the namespace on a session's socket and waits for `40{...}`.
async fn join(socket: &mut WebSocketStream<ClientIo>) -> Result<(), ClientError> {
    socket.send(WsMessage::text(CONNECT)).await?;
    loop {
        let text = next_text(socket).await?;
        match Packet::parse(&text).map_err(protocol)? {
            Packet::Message(m) if m.starts_with('0') => return Ok(()),
            Packet::Message(m) if m.starts_with('4') => {
                return Err(ClientError::Protocol(format!(
                    "the Socket.IO server refused the connection: {m}"
                )));
            }
            Packet::Ping(_) => socket.send(WsMessage::text("3")).await?,
            _ => {}
        }
    }
}

/// Socket.IO on a WebSocket from the start.
#[derive(Debug)]
pub struct WebSocketClient(Session);

impl TransportClient for WebSocketClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let path = engineio::websocket_path(BASE, &query(me), None);
        let mut socket = open_socket(me, &path).await?;
        let text = next_text(&mut socket).await?;
        if !matches!(Packet::parse(&text).map_err(protocol)?, Packet::Open(_)) {
            return Err(protocol(CodecError::new(
                "an Engine.IO open packet 0{\"sid\":...}",
                &text,
            )));
        }
        join(&mut socket).await?;
        me.connected(start);
        Ok(Self(Session {
            socket,
            pending: Pending::default(),
        }))
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        self.0.run(me, stop).await
    }
}

/// Socket.IO's default: open by polling, then upgrade to a WebSocket.
#[derive(Debug)]
pub struct UpgradedClient(Session);

impl TransportClient for UpgradedClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let mut conn = HttpConn::open(&me.phase).await?;
        let handshake = polling::open_session(me, &mut conn).await?;
        if !handshake.upgrades.iter().any(|u| u == "websocket") {
            return Err(ClientError::Protocol(format!(
                "the Socket.IO server offers no WebSocket upgrade (upgrades: {:?})",
                handshake.upgrades
            )));
        }
        let path = engineio::websocket_path(BASE, "", Some(&handshake.sid));
        let mut socket = open_socket(me, &path).await?;
        socket.send(WsMessage::text("2probe")).await?;
        let text = next_text(&mut socket).await?;
        if Packet::parse(&text).map_err(protocol)? != Packet::Pong("probe") {
            return Err(protocol(CodecError::new(
                "the upgrade probe's answer 3probe",
                &text,
            )));
        }
        // No poll is held (the connect answer was read), so nothing needs releasing first.
        socket.send(WsMessage::text("5")).await?;
        drop(conn);
        me.connected(start);
        Ok(Self(Session {
            socket,
            pending: Pending::default(),
        }))
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        self.0.run(me, stop).await
    }
}
