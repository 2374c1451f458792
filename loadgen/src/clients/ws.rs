//! What every protocol's WebSocket client shares before its own handshake logic: the upgrade
//! request for a path on the phase's server, carrying the client profile's headers (a browser's
//! `new WebSocket(url)` sends `Origin`, `User-Agent` and the rest whatever the server is), and
//! the socket's buffer limits, and the connect + handshake every one of them does the same way
//! ([`open`]). Subprotocols and query strings are the protocol's to add.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::http::{CONNECT_TIMEOUT, head_len};
use super::profile::RequestKind;
use super::{ClientError, PhaseCtx};
use crate::conn::{ClientIo, ConnBytes};

/// Small read buffers (thousands of idle sockets), writes flushed at once, and a 1 MiB cap on
/// what the server may make us buffer. The read buffer is 1 KiB: a chat frame (a message's
/// JSON, ~200 bytes at the default payload) still arrives in one read, and tungstenite zeroes
/// the whole free part of the buffer before every read, which at 4 KiB was 64 cache lines of a
/// cold client's memory per delivery (and 3 KiB more held by every idle socket).
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(1024)
        .write_buffer_size(0)
        .max_write_buffer_size(1024 * 1024)
        .max_message_size(Some(1024 * 1024))
        .max_frame_size(Some(1024 * 1024))
}

/// The upgrade request for `path` (with its query) on the phase's server, with the profile's
/// WebSocket headers.
pub fn upgrade_request(phase: &PhaseCtx, path: &str) -> Result<Request, ClientError> {
    let url = format!("ws://{}{path}", phase.authority);
    let mut request = url
        .as_str()
        .into_client_request()
        .map_err(|e| ClientError::Protocol(format!("bad url {url}: {e}")))?;
    phase.profile.apply(
        request.headers_mut(),
        RequestKind::WebSocket,
        &phase.authority,
    );
    Ok(request)
}

/// Opens a connection on the phase's connector and makes the WebSocket handshake for `request`,
/// each step within [`CONNECT_TIMEOUT`]; the handshake counts as a request in flight and the
/// `101`'s head as header bytes down. Returns the socket and its connection's counters (which
/// also say which node it reached).
pub async fn open(
    phase: &PhaseCtx,
    request: Request,
) -> Result<(WebSocketStream<ClientIo>, Arc<ConnBytes>), ClientError> {
    let (io, bytes) = tokio::time::timeout(CONNECT_TIMEOUT, phase.connector.connect(&phase.meter))
        .await
        .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
    phase.meter.request_started();
    let handshake = tokio::time::timeout(
        CONNECT_TIMEOUT,
        tokio_tungstenite::client_async_with_config(request, io, Some(config())),
    )
    .await;
    phase.meter.request_finished();
    let (socket, response) = handshake.map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
    phase
        .meter
        .traffic
        .header_down
        .fetch_add(head_len(&response), Relaxed);
    Ok((socket, bytes))
}
