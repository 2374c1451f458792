//! What every protocol's WebSocket client shares before its own handshake logic: the upgrade
//! request for a path on the phase's server, carrying the client profile's headers (a browser's
//! `new WebSocket(url)` sends `Origin`, `User-Agent` and the rest whatever the server is), and
//! the socket's buffer limits. Subprotocols and query strings are the protocol's to add.

use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use super::profile::RequestKind;
use super::{ClientError, PhaseCtx};

/// Small read buffers (thousands of idle sockets), writes flushed at once, and a 1 MiB cap on
/// what the server may make us buffer.
pub fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
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
