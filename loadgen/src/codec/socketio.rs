//! Socket.IO v5 packets, each carried in one Engine.IO message (`4` + the packet):
//! `<type>[<namespace>,][<ack id>][<json>]`, with types `0` connect, `1` disconnect, `2` event,
//! `3` ack, `4` connect error (`5`/`6`, binary event and ack, are refused: the chat is text).
//! The default namespace `/` is written by leaving it out, so the chat's packets read
//! `40` (connect), `42["chat",{...}]` (an event), `421["chat",{...}]` (an event that wants
//! ack 1) and `431[{"ok":true}]` (that ack).
//!
//! The chat the loadgen speaks is the one in `peers/socketio/server.js`: the sender emits
//! `chat` `{body, to?, echo?}` with an ack; every recipient gets `chat` `{from, body}`.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::CodecError;

/// One Socket.IO packet of the default namespace.
#[derive(Debug, Clone, PartialEq)]
pub enum Packet {
    /// `0{"sid":...}`: the namespace accepted the connection.
    Connect {
        /// The Socket.IO socket id (not the Engine.IO session id).
        sid: Option<String>,
    },
    /// `1`: the server disconnected this socket.
    Disconnect,
    /// `2[name, args...]`, with an ack id when the sender wants an answer.
    Event {
        /// Set when the sender wants an ack.
        ack: Option<u64>,
        /// The event name.
        name: String,
        /// The arguments after the name.
        args: Vec<Value>,
    },
    /// `3<id>[args...]`: the answer to event `id`.
    Ack {
        /// The event's ack id.
        id: u64,
        /// The answer's arguments.
        args: Vec<Value>,
    },
    /// `4{"message":...}`: the namespace refused the connection.
    ConnectError {
        /// The server's reason.
        message: String,
    },
}

/// A relayed chat message, as the peer emits it to each recipient.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChatDelivery {
    /// The sender's client id.
    pub from: String,
    /// The body as published (the loadgen's stamp).
    pub body: String,
}

/// What a sender emits as `chat`.
#[derive(Debug, Clone, Serialize)]
pub struct ChatSend<'a> {
    /// The body (the loadgen's stamp).
    pub body: &'a str,
    /// Only this client receives it (`socket.to(id).emit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<&'a str>,
    /// `false`: everyone but the sender (`socket.broadcast.emit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub echo: Option<bool>,
}

impl Packet {
    /// Reads the Socket.IO packet inside an Engine.IO message's data.
    pub fn parse(text: &str) -> Result<Packet, CodecError> {
        let bad = || CodecError::new("a Socket.IO packet (type 0-4)", text);
        let mut rest = text.get(1..).ok_or_else(bad)?;
        let kind = text.as_bytes()[0];
        if rest.starts_with('/') {
            // A namespace other than "/": the chat uses only the default one.
            let end = rest.find(',').ok_or_else(bad)?;
            if &rest[..end] != "/" {
                return Err(CodecError::new("a packet of the default namespace /", text));
            }
            rest = &rest[end + 1..];
        }
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        let id = if digits > 0 {
            Some(rest[..digits].parse::<u64>().map_err(|_| bad())?)
        } else {
            None
        };
        let json = &rest[digits..];
        let args = || -> Result<Vec<Value>, CodecError> {
            serde_json::from_str(json)
                .map_err(|_| CodecError::new("a Socket.IO JSON array of arguments", text))
        };
        Ok(match kind {
            b'0' => Packet::Connect {
                sid: serde_json::from_str::<Value>(json)
                    .ok()
                    .and_then(|v| v.get("sid")?.as_str().map(str::to_owned)),
            },
            b'1' => Packet::Disconnect,
            b'2' => {
                let mut args = args()?;
                if args.is_empty() || !args[0].is_string() {
                    return Err(CodecError::new("an event [name, args...]", text));
                }
                let Value::String(name) = args.remove(0) else {
                    unreachable!("checked above")
                };
                Packet::Event {
                    ack: id,
                    name,
                    args,
                }
            }
            b'3' => Packet::Ack {
                id: id.ok_or_else(|| CodecError::new("an ack with its id", text))?,
                args: args()?,
            },
            b'4' => Packet::ConnectError {
                message: serde_json::from_str::<Value>(json)
                    .ok()
                    .and_then(|v| v.get("message")?.as_str().map(str::to_owned))
                    .unwrap_or_else(|| json.to_owned()),
            },
            b'5' | b'6' => {
                return Err(CodecError::new(
                    "a text Socket.IO packet (the chat sends no binary)",
                    text,
                ));
            }
            _ => return Err(bad()),
        })
    }

    /// The chat delivery this packet carries, if it is a `chat` event with `{from, body}`.
    pub fn chat_delivery(&self) -> Option<ChatDelivery> {
        match self {
            Packet::Event { name, args, .. } if name == "chat" => {
                ChatDelivery::deserialize(args.first()?).ok()
            }
            _ => None,
        }
    }
}

/// The Engine.IO message that connects to the default namespace.
pub const CONNECT: &str = "40";

/// The Engine.IO message that emits `chat` with `send`, asking for ack `ack`.
pub fn encode_chat(send: &ChatSend<'_>, ack: Option<u64>) -> String {
    let json = serde_json::to_string(send).expect("a chat message serializes");
    match ack {
        Some(id) => format!("42{id}[\"chat\",{json}]"),
        None => format!("42[\"chat\",{json}]"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_relayed_chat_event() {
        let p = Packet::parse(r#"2["chat",{"from":"c1","body":"dx1 0 3 99;.."}]"#).unwrap();
        assert_eq!(
            p.chat_delivery(),
            Some(ChatDelivery {
                from: "c1".into(),
                body: "dx1 0 3 99;..".into()
            })
        );
        // Another event is not a chat delivery.
        let p = Packet::parse(r#"2["typing",{"from":"c1"}]"#).unwrap();
        assert_eq!(p.chat_delivery(), None);
    }

    #[test]
    fn reads_connect_ack_and_errors() {
        assert_eq!(
            Packet::parse(r#"0{"sid":"UUiRs6z5ShugxqIBAAAA"}"#).unwrap(),
            Packet::Connect {
                sid: Some("UUiRs6z5ShugxqIBAAAA".into())
            }
        );
        assert_eq!(
            Packet::parse(r#"317[{"ok":true}]"#).unwrap(),
            Packet::Ack {
                id: 17,
                args: vec![serde_json::json!({"ok": true})]
            }
        );
        assert_eq!(
            Packet::parse(r#"4{"message":"Invalid namespace"}"#).unwrap(),
            Packet::ConnectError {
                message: "Invalid namespace".into()
            }
        );
        assert_eq!(Packet::parse("1").unwrap(), Packet::Disconnect);
        // The default namespace may also be spelled out.
        assert!(matches!(
            Packet::parse(r#"2/,["chat",{}]"#).unwrap(),
            Packet::Event { .. }
        ));
    }

    #[test]
    fn refuses_what_the_chat_does_not_speak() {
        assert!(Packet::parse("").is_err());
        assert!(Packet::parse("2/admin,[\"chat\"]").is_err());
        assert!(Packet::parse("51-[\"chat\",{\"_placeholder\":true}]").is_err());
        assert!(Packet::parse("2{\"not\":\"an array\"}").is_err());
        assert!(Packet::parse("3[]").is_err(), "an ack needs its id");
        assert!(Packet::parse("9").is_err());
    }

    #[test]
    fn encodes_the_chat_emit_with_its_ack_id() {
        let send = ChatSend {
            body: "hi",
            to: None,
            echo: None,
        };
        assert_eq!(encode_chat(&send, Some(4)), r#"424["chat",{"body":"hi"}]"#);
        let send = ChatSend {
            body: "hi",
            to: Some("c2"),
            echo: Some(false),
        };
        assert_eq!(
            encode_chat(&send, None),
            r#"42["chat",{"body":"hi","to":"c2","echo":false}]"#
        );
    }
}
