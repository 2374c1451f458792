//! Engine.IO v4, the transport under Socket.IO: packets (`0` open, `1` close, `2` ping,
//! `3` pong, `4` message, `5` upgrade, `6` noop), the open packet's handshake JSON, and
//! HTTP long-polling payloads, where packets are joined by the record separator `\x1e`.
//!
//! In v4 the *server* pings (`2`) every `pingInterval` and the client answers `3`; a client
//! that does not answer within `pingTimeout` is dropped. The upgrade to WebSocket is a probe:
//! the client sends `2probe` on the new socket, the server answers `3probe`, the client sends
//! `5` and from then on uses only the WebSocket. Binary packets (`b<base64>` in a payload) are
//! not used by the chat the loadgen speaks and are refused.

use serde::Deserialize;

use super::CodecError;

/// The record separator between packets in a polling payload.
pub const SEPARATOR: char = '\x1e';
/// The query every Engine.IO v4 request carries.
pub const EIO_QUERY: &str = "EIO=4";

/// The open packet's JSON: the session and its timers.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Handshake {
    /// The session id, sent as `sid=` on every later request.
    pub sid: String,
    /// Transports this session may upgrade to (`["websocket"]`).
    #[serde(default)]
    pub upgrades: Vec<String>,
    /// How often the server pings, ms.
    pub ping_interval: u64,
    /// How long the server waits for a pong, ms.
    pub ping_timeout: u64,
    /// Most bytes the server takes in one payload.
    #[serde(default)]
    pub max_payload: u64,
}

/// One Engine.IO packet, borrowing its data from the text it was read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Packet<'a> {
    /// `0{...}`: the session opened.
    Open(Handshake),
    /// `1`: the session closed.
    Close,
    /// `2` (or `2probe`): the server's heartbeat, or a client's upgrade probe.
    Ping(&'a str),
    /// `3` (or `3probe`): the answer to a ping.
    Pong(&'a str),
    /// `4...`: a message (for Socket.IO, one Socket.IO packet).
    Message(&'a str),
    /// `5`: the client switches to the probed transport.
    Upgrade,
    /// `6`: nothing (ends a pending poll during an upgrade).
    Noop,
}

impl<'a> Packet<'a> {
    /// Reads one packet (a WebSocket text frame, or one record of a polling payload).
    pub fn parse(text: &'a str) -> Result<Packet<'a>, CodecError> {
        let mut chars = text.chars();
        let kind = chars.next();
        let data = chars.as_str();
        Ok(match kind {
            Some('0') => {
                Packet::Open(serde_json::from_str(data).map_err(|_| {
                    CodecError::new("an Engine.IO open packet 0{\"sid\":...}", text)
                })?)
            }
            Some('1') => Packet::Close,
            Some('2') => Packet::Ping(data),
            Some('3') => Packet::Pong(data),
            Some('4') => Packet::Message(data),
            Some('5') => Packet::Upgrade,
            Some('6') => Packet::Noop,
            _ => return Err(CodecError::new("an Engine.IO packet (type 0-6)", text)),
        })
    }
}

/// The packets of a polling answer, in order.
pub fn parse_payload(payload: &str) -> Result<Vec<Packet<'_>>, CodecError> {
    if payload.is_empty() {
        return Err(CodecError::new("an Engine.IO polling payload", payload));
    }
    payload.split(SEPARATOR).map(Packet::parse).collect()
}

/// The body of a polling POST carrying `packets` (each already encoded, e.g. `3` or `42[...]`).
pub fn encode_payload<S: AsRef<str>>(packets: &[S]) -> String {
    let mut out = String::new();
    for (i, p) in packets.iter().enumerate() {
        if i > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(p.as_ref());
    }
    out
}

/// The path and query that open a polling session (`/socket.io/?EIO=4&transport=polling&...`);
/// `extra` is the application's own query (`room=lobby&client=c3`).
pub fn polling_path(base: &str, extra: &str, sid: Option<&str>) -> String {
    let mut path = format!("{base}?{EIO_QUERY}&transport=polling");
    if let Some(sid) = sid {
        path.push_str("&sid=");
        path.push_str(sid);
    }
    if !extra.is_empty() {
        path.push('&');
        path.push_str(extra);
    }
    path
}

/// The path and query of the WebSocket transport: a fresh session when `sid` is `None`, or
/// the upgrade of a polling session.
pub fn websocket_path(base: &str, extra: &str, sid: Option<&str>) -> String {
    let mut path = format!("{base}?{EIO_QUERY}&transport=websocket");
    if let Some(sid) = sid {
        path.push_str("&sid=");
        path.push_str(sid);
    }
    if !extra.is_empty() {
        path.push('&');
        path.push_str(extra);
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_handshake_of_socket_io_4_8() {
        // As socket.io 4.8.1 sends it (peers/socketio).
        let open = r#"0{"sid":"UHBfNNvFZclEIMGWAAAA","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let Packet::Open(h) = Packet::parse(open).unwrap() else {
            panic!("not an open packet");
        };
        assert_eq!(h.sid, "UHBfNNvFZclEIMGWAAAA");
        assert_eq!(h.upgrades, ["websocket"]);
        assert_eq!((h.ping_interval, h.ping_timeout), (25000, 20000));
    }

    #[test]
    fn splits_a_polling_payload_on_the_record_separator() {
        let payload = "42[\"chat\",{\"from\":\"c1\",\"body\":\"hi\"}]\x1e431[{\"ok\":true}]\x1e2";
        let packets = parse_payload(payload).unwrap();
        assert_eq!(
            packets,
            [
                Packet::Message("2[\"chat\",{\"from\":\"c1\",\"body\":\"hi\"}]"),
                Packet::Message("31[{\"ok\":true}]"),
                Packet::Ping(""),
            ]
        );
        assert_eq!(encode_payload(&["3", "42[1]"]), "3\x1e42[1]");
    }

    #[test]
    fn knows_the_upgrade_probe() {
        assert_eq!(Packet::parse("2probe").unwrap(), Packet::Ping("probe"));
        assert_eq!(Packet::parse("3probe").unwrap(), Packet::Pong("probe"));
        assert_eq!(Packet::parse("5").unwrap(), Packet::Upgrade);
        assert_eq!(Packet::parse("6").unwrap(), Packet::Noop);
        assert_eq!(Packet::parse("1").unwrap(), Packet::Close);
    }

    #[test]
    fn refuses_what_is_not_engine_io() {
        let e = Packet::parse("<!DOCTYPE html><html>").unwrap_err();
        assert_eq!(e.expected, "an Engine.IO packet (type 0-6)");
        assert!(Packet::parse("0not json").is_err());
        assert!(parse_payload("").is_err());
        // A binary record in a payload is not the chat's.
        assert!(parse_payload("4x\x1ebAQID").is_err());
    }

    #[test]
    fn builds_session_paths() {
        assert_eq!(
            polling_path("/socket.io/", "room=r&client=c1", None),
            "/socket.io/?EIO=4&transport=polling&room=r&client=c1"
        );
        assert_eq!(
            websocket_path("/socket.io/", "room=r", Some("abc")),
            "/socket.io/?EIO=4&transport=websocket&sid=abc&room=r"
        );
    }
}
