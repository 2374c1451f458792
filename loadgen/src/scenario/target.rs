//! `[target]`: which server a scenario measures and what it speaks. Its keys (part of the one
//! table in `keys.rs`), the checked [`TargetSpec`] they become, and their validation, which
//! ties them to `transports` (a stack is asked only for transports it has).

use wire::Transport;

use super::ScenarioError;
use super::keys::{self, Default, Key, Range, Type};
use super::raw::RawTarget;
use super::validate::Validator;

/// What a scenario measures: which protocol the target speaks, and either a peer duplex starts
/// or a URL (neither: duplex starts its own server, or `--target` names one).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TargetSpec {
    /// What the target speaks.
    pub protocol: ProtocolChoice,
    /// A peer from `peers/` to start.
    pub peer: Option<crate::peer::Peer>,
    /// A server someone else started.
    pub url: Option<String>,
    /// The templates of a `generic` target.
    pub generic: Option<crate::protocol::generic::Generic>,
}

impl TargetSpec {
    /// The adapter the runner speaks the target's protocol with.
    pub fn adapter(&self) -> std::sync::Arc<dyn crate::protocol::TargetProtocol> {
        match &self.generic {
            Some(g) if self.protocol == ProtocolChoice::Generic => std::sync::Arc::new(g.clone()),
            _ => self
                .protocol
                .builtin_adapter()
                .expect("validation gives a generic target its templates"),
        }
    }
}

/// `target.protocol`, with its options.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProtocolChoice {
    /// duplex's wire API.
    #[default]
    Duplex,
    /// nginx + nchan.
    Nchan,
    /// Socket.IO (Engine.IO v4).
    SocketIo {
        /// `target.socketio_websocket = "upgrade"`.
        upgrade: bool,
    },
    /// Any SSE or WebSocket endpoint with an HTTP publish (its templates are in
    /// [`TargetSpec::generic`]).
    Generic,
}

impl ProtocolChoice {
    /// Its `target.protocol` word.
    pub fn id(self) -> &'static str {
        match self {
            ProtocolChoice::Duplex => "duplex",
            ProtocolChoice::Nchan => "nchan",
            ProtocolChoice::SocketIo { .. } => "socketio",
            ProtocolChoice::Generic => "generic",
        }
    }

    /// The transports it has.
    pub fn transports(self) -> &'static [Transport] {
        match self {
            ProtocolChoice::Duplex | ProtocolChoice::Nchan => &Transport::ALL,
            ProtocolChoice::SocketIo { .. } => &crate::protocol::socketio::TRANSPORTS,
            ProtocolChoice::Generic => &crate::protocol::generic::TRANSPORTS,
        }
    }

    /// The adapter of a protocol that needs nothing beyond its options (`None`: generic,
    /// whose templates live in [`TargetSpec::generic`]).
    fn builtin_adapter(self) -> Option<std::sync::Arc<dyn crate::protocol::TargetProtocol>> {
        use crate::protocol::{duplex::Duplex, nchan::Nchan, socketio::SocketIo};
        Some(match self {
            ProtocolChoice::Duplex => std::sync::Arc::new(Duplex),
            ProtocolChoice::Nchan => std::sync::Arc::new(Nchan),
            ProtocolChoice::SocketIo { upgrade } => std::sync::Arc::new(SocketIo { upgrade }),
            ProtocolChoice::Generic => return None,
        })
    }
}

/// `target.peer`
pub const TARGET_PEER: Key = Key {
    name: "target.peer",
    ty: Type::Choice,
    default: Default::Described(
        "none: duplex starts its own server (or measures `target.url` / `--target`)",
    ),
    range: Range::OneOf(&["nchan", "socketio"]),
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "another stack from `peers/` that duplex starts (`peers/nchan/start.sh`, or `node peers/socketio/server.js` after `npm ci` there), samples from /proc like its own server, and stops; it implies `target.protocol`",
};

/// `target.url`
pub const TARGET_URL: Key = Key {
    name: "target.url",
    ty: Type::Text,
    default: Default::Described("none"),
    range: Range::NotEmpty,
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "a server someone else started, `http://host:port`, spoken to in `target.protocol`; `--target` overrides it. Not with `target.peer`",
};

/// `target.protocol`
pub const TARGET_PROTOCOL: Key = Key {
    name: "target.protocol",
    ty: Type::Choice,
    default: Default::Described("the peer's, else `\"duplex\"`"),
    range: Range::OneOf(&["duplex", "nchan", "socketio", "generic"]),
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "what the target speaks: duplex's wire API; nchan (`short_poll` is its interval polling, `long_poll`, `sse` its EventSource, `websocket`); Socket.IO (`long_poll` is Engine.IO polling, `websocket`; it has no `short_poll` or `sse`); generic (`sse` or `websocket` at `target.subscribe`, publishing to `target.publish`)",
};

/// `target.nchan_buffer`
pub const TARGET_NCHAN_BUFFER: Key = Key {
    name: "target.nchan_buffer",
    ty: Type::Integer,
    default: Default::Integer(4096),
    range: Range::Integer {
        min: 1,
        max: 1_000_000,
    },
    range_note: "",
    unit: "messages",
    sweep: false,
    doc: "messages the nchan peer keeps per room (`nchan_message_buffer_length`); it evicts older ones without telling anyone, so a buffer shorter than a client's backlog shows up as missing deliveries",
};

/// `target.socketio_websocket`
pub const TARGET_SOCKETIO_WEBSOCKET: Key = Key {
    name: "target.socketio_websocket",
    ty: Type::Choice,
    default: Default::Text("direct"),
    range: Range::OneOf(&["direct", "upgrade"]),
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "how a Socket.IO `websocket` client opens: a WebSocket at once (`transports: [\"websocket\"]`), or Socket.IO's default, polling first and then the upgrade probe",
};

/// `target.subscribe`
pub const TARGET_SUBSCRIBE: Key = Key {
    name: "target.subscribe",
    ty: Type::Text,
    default: Default::Described("none; required by `\"generic\"`"),
    range: Range::NotEmpty,
    range_note: "",
    unit: "path",
    sweep: false,
    doc: "a `generic` target's subscribe path, `{room}` standing for the phase's room, e.g. `\"/events/{room}\"`: an SSE stream (`sse`) or a WebSocket (`websocket`) whose events or frames contain the published body",
};

/// `target.publish`
pub const TARGET_PUBLISH: Key = Key {
    name: "target.publish",
    ty: Type::Text,
    default: Default::Described("none; required by `\"generic\"`"),
    range: Range::NotEmpty,
    range_note: "",
    unit: "path",
    sweep: false,
    doc: "a `generic` target's publish path for `POST`, with `{room}`; any 2xx answer acknowledges the message",
};

/// `target.publish_body`
pub const TARGET_PUBLISH_BODY: Key = Key {
    name: "target.publish_body",
    ty: Type::Text,
    default: Default::Text("{stamp}"),
    range: Range::NotEmpty,
    range_note: "must contain `{stamp}`",
    unit: "text",
    sweep: false,
    doc: "a `generic` target's publish body: `{stamp}` is the loadgen's stamp (ASCII, safe inside a JSON string), `{from}` the sender's id, `{room}` the room, e.g. `'{\"text\":\"{stamp}\"}'` in TOML; sent as JSON when it starts with `{` or `[`, else as text",
};

impl Validator<'_> {
    /// One of the key's words, or its default.
    pub(super) fn choice(
        &self,
        key: &Key,
        value: Option<String>,
    ) -> Result<Option<String>, ScenarioError> {
        let Range::OneOf(words) = key.range else {
            unreachable!("{} is a choice", key.name)
        };
        match value {
            None => Ok(match key.default {
                Default::Text(t) => Some(t.to_owned()),
                _ => None,
            }),
            Some(v) if words.contains(&v.as_str()) => Ok(Some(v)),
            Some(v) => Err(self.err(key.name, format!("must be {}, got {v:?}", key.range))),
        }
    }

    /// `[target]`: the protocol, and a peer or a URL (not both); the transports must be the
    /// protocol's.
    pub(super) fn target(
        &self,
        raw: RawTarget,
        transports: &[Transport],
    ) -> Result<TargetSpec, ScenarioError> {
        use crate::peer::{Peer, RelayMode};
        let peer_word = self.choice(&TARGET_PEER, raw.peer)?;
        let protocol_word = self.choice(&TARGET_PROTOCOL, raw.protocol)?;
        let buffer = self.integer(&TARGET_NCHAN_BUFFER, raw.nchan_buffer)? as u64;
        let upgrade = self
            .choice(&TARGET_SOCKETIO_WEBSOCKET, raw.socketio_websocket)?
            .as_deref()
            == Some("upgrade");
        if let Some(url) = &raw.url {
            if peer_word.is_some() {
                return Err(self.err(TARGET_URL.name, "give target.url or target.peer, not both"));
            }
            if !url.starts_with("http://") {
                return Err(self.err(
                    TARGET_URL.name,
                    format!("must be http://host:port, got {url:?}"),
                ));
            }
        }
        let word = match (&peer_word, &protocol_word) {
            (Some(p), Some(proto)) if p != proto => {
                return Err(self.err(
                    TARGET_PROTOCOL.name,
                    format!("the {p} peer speaks {p}, not {proto}"),
                ));
            }
            (Some(p), _) => p.as_str(),
            (None, Some(proto)) => proto.as_str(),
            (None, None) => "duplex",
        };
        let protocol = match word {
            "nchan" => ProtocolChoice::Nchan,
            "socketio" => ProtocolChoice::SocketIo { upgrade },
            "generic" => ProtocolChoice::Generic,
            _ => ProtocolChoice::Duplex,
        };
        let generic = if protocol == ProtocolChoice::Generic {
            let need = |key: &Key, v: Option<String>| {
                v.filter(|v| !v.trim().is_empty())
                    .ok_or_else(|| self.err(key.name, "a generic target needs it"))
            };
            let body = raw.publish_body.unwrap_or_else(|| "{stamp}".to_owned());
            if !body.contains("{stamp}") {
                return Err(self.err(
                    TARGET_PUBLISH_BODY.name,
                    format!("must contain {{stamp}}, got {body:?}"),
                ));
            }
            Some(crate::protocol::generic::Generic {
                subscribe: need(&TARGET_SUBSCRIBE, raw.subscribe)?,
                publish: need(&TARGET_PUBLISH, raw.publish)?,
                publish_body: body,
            })
        } else {
            None
        };
        if let Some(t) = transports
            .iter()
            .find(|t| !protocol.transports().contains(t))
        {
            let has: Vec<&str> = protocol.transports().iter().map(|t| t.as_str()).collect();
            return Err(self.err(
                keys::TRANSPORTS.name,
                format!(
                    "{} has no {t} transport (it has {}); leave {t} out of transports",
                    protocol.id(),
                    has.join(", ")
                ),
            ));
        }
        let peer = peer_word.map(|p| match p.as_str() {
            "nchan" => Peer::Nchan { buffer },
            _ => Peer::SocketIo {
                mode: RelayMode::All,
                ping_interval_ms: None,
            },
        });
        Ok(TargetSpec {
            protocol,
            peer,
            url: raw.url,
            generic,
        })
    }
}

impl Validator<'_> {
    /// `chat.mode` against the stacks: a server that can only broadcast (nchan's channels,
    /// a generic endpoint) takes only `all`; a direct message needs a second client; the
    /// Socket.IO peer is told the mode as its default.
    pub(super) fn mode_for_stacks(
        &self,
        mode: crate::recipients::ChatMode,
        min_clients: f64,
        stacks: &mut [super::Stack],
    ) -> Result<(), ScenarioError> {
        use crate::peer::{Peer, RelayMode};
        use crate::recipients::ChatMode;
        let key = keys::CHAT_MODE.name;
        if mode == ChatMode::Direct && min_clients < 2.0 {
            return Err(self.err(
                key,
                "\"direct\" sends each message to another client, so clients.count must be at least 2",
            ));
        }
        for stack in stacks {
            let protocol = stack.target.protocol;
            if mode != ChatMode::All
                && matches!(protocol, ProtocolChoice::Nchan | ProtocolChoice::Generic)
            {
                return Err(self.err(
                    key,
                    format!(
                        "{} delivers every message to every subscriber of the room, so it cannot do {:?} (only \"all\"); measure that mode on duplex or socketio",
                        protocol.id(),
                        mode.id()
                    ),
                ));
            }
            if let Some(Peer::SocketIo { mode: relay, .. }) = stack.target.peer.as_mut() {
                *relay = match mode {
                    ChatMode::All => RelayMode::All,
                    ChatMode::Others => RelayMode::Others,
                    ChatMode::Direct => RelayMode::Direct,
                };
            }
        }
        Ok(())
    }
}
