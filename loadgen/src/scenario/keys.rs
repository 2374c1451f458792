//! The one table of scenario keys: for each key its dotted name, type, default, allowed range,
//! unit, whether it may be swept, and its documentation. Validation (`validate.rs`) reads its
//! defaults and ranges from here and words its range errors from here; the sweep rule asks
//! [`Key::sweep`]; and a test checks `scenarios/README.md` against [`KEYS`] row by row, so the
//! code, its error messages and the documentation cannot drift apart.
//!
//! What this table does not hold: rules that tie keys together (`chat.senders` at most
//! `clients.count`, the drain long enough for the slowest transport) live in `validate.rs`, and
//! the grammar of a threshold lives in `crate::thresholds`.

use std::fmt;
use std::time::Duration;

pub use super::text::{duration_text, grouped};

/// What kind of value a key takes in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Type {
    /// A string of `A-Z a-z 0-9 _ -`.
    Name,
    /// Free text.
    Text,
    /// A list of transport identifiers.
    Transports,
    /// A humantime string (`"500ms"`, `"30s"`).
    Duration,
    /// A TOML integer.
    Integer,
    /// A TOML integer or float.
    Number,
    /// Bytes per second, an integer or a string like `"1MB/s"`.
    Bandwidth,
    /// A table of threshold checks (`"websocket.latency_p99_ms" = "< 50"`).
    Thresholds,
    /// One of a few words ([`Range::OneOf`]).
    Choice,
}

/// A key's value when the file leaves it out.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Default {
    /// The key must be given.
    Required,
    /// A string.
    Text(&'static str),
    /// A humantime duration string.
    Duration(&'static str),
    /// An integer.
    Integer(i64),
    /// A number.
    Number(f64),
    /// No literal: the text says what happens (the code that applies it sits beside the key's
    /// validation).
    Described(&'static str),
}

impl fmt::Display for Default {
    /// As the README's "default" column shows it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Default::Required => f.write_str("required"),
            Default::Text(s) | Default::Duration(s) => write!(f, "`\"{s}\"`"),
            Default::Integer(i) => write!(f, "`{i}`"),
            Default::Number(x) => write!(f, "`{x:?}`"),
            Default::Described(s) => f.write_str(s),
        }
    }
}

/// The values a key accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// 1 ..= `max_len` characters of `A-Z a-z 0-9 _ -`.
    Name {
        /// Longest accepted.
        max_len: usize,
    },
    /// Anything but blank.
    NotEmpty,
    /// At least one transport, each at most once.
    Transports,
    /// `min ..= max`.
    Duration {
        /// Shortest accepted.
        min: Duration,
        /// Longest accepted.
        max: Duration,
    },
    /// `min ..= max` (`max == i64::MAX`: no upper bound but TOML's).
    Integer {
        /// Smallest accepted.
        min: i64,
        /// Largest accepted.
        max: i64,
    },
    /// `min ..=` the value of another key.
    IntegerUpTo {
        /// Smallest accepted.
        min: i64,
        /// The dotted key whose value is the upper bound.
        key: &'static str,
    },
    /// `min ..= max`, or `> min ..= max` when `min_exclusive`.
    Number {
        /// Lower bound.
        min: f64,
        /// Whether `min` itself is refused.
        min_exclusive: bool,
        /// Largest accepted.
        max: f64,
    },
    /// At least this much.
    AtLeast(f64),
    /// Each entry is checked by the threshold grammar (see `scenarios/README.md`).
    Thresholds,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

/// One scenario key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Key {
    /// The dotted name as written in the file (`clients.count`).
    pub name: &'static str,
    /// What kind of value it takes.
    pub ty: Type,
    /// Its value when left out.
    pub default: Default,
    /// What it accepts.
    pub range: Range,
    /// Why the range is what it is, when that is not obvious; shown after the range in the
    /// README and in range errors, e.g. "a process may have 20,000 open files".
    pub range_note: &'static str,
    /// The unit of its values, as the README's "unit" column says it.
    pub unit: &'static str,
    /// Whether a list of values sweeps it.
    pub sweep: bool,
    /// What it means (the README's "meaning" column, Markdown).
    pub doc: &'static str,
}

impl Key {
    /// The README's "allowed" cell: the range, then the note in parentheses.
    pub fn allowed(&self) -> String {
        if self.range_note.is_empty() {
            self.range.to_string()
        } else {
            format!("{} ({})", self.range, self.range_note)
        }
    }

    /// The README table row that documents this key.
    pub fn readme_row(&self) -> String {
        format!(
            "| `{}` | {} | {} | {} | {} | {} |",
            self.name,
            self.doc,
            self.unit,
            self.default,
            self.allowed(),
            if self.sweep { "**yes**" } else { "no" }
        )
    }

    /// The table it sits in (`clients` for `clients.count`), `None` at the top level.
    pub fn section(&self) -> Option<&'static str> {
        self.name.split_once('.').map(|(section, _)| section)
    }

    /// Its name inside its table (`count` for `clients.count`).
    pub fn field(&self) -> &'static str {
        self.name
            .split_once('.')
            .map_or(self.name, |(_, field)| field)
    }

    /// " (why)" for error messages, or nothing.
    pub fn note_suffix(&self) -> String {
        if self.range_note.is_empty() {
            String::new()
        } else {
            format!(" ({})", self.range_note)
        }
    }
}

/// Smallest `chat.payload_bytes`: the loadgen's stamp must fit in the body (see `stamp.rs`).
pub const MIN_PAYLOAD_BYTES: u64 = crate::stamp::MAX_STAMP_LEN as u64;
/// Largest `clients.count`: one socket per client, under the 20,000 open files a process may
/// have, with headroom for the senders' own connections (a keep-alive pool each, a few), the
/// probe's scrape and the process's own descriptors; the server's default connection cap (its
/// open-file limit less 512) holds them too. `scenarios/scale-19k.toml` runs at this limit.
pub const MAX_CLIENTS: u64 = 19_000;
/// Largest `chat.payload_bytes`, well under the server's default 64 KiB body limit once the
/// publish request's JSON is wrapped around it.
pub const MAX_PAYLOAD_BYTES: u64 = 60_000;

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn s(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `name`
pub const NAME: Key = Key {
    name: "name",
    ty: Type::Name,
    default: Default::Required,
    range: Range::Name { max_len: 64 },
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "short name; also the default output folder `reports/<name>/` (shipped files are named after the file)",
};

/// `description`
pub const DESCRIPTION: Key = Key {
    name: "description",
    ty: Type::Text,
    default: Default::Required,
    range: Range::NotEmpty,
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "one or two sentences saying what the scenario shows; the report prints it",
};

/// `transports`
pub const TRANSPORTS: Key = Key {
    name: "transports",
    ty: Type::Transports,
    default: Default::Described("all four, in that order"),
    range: Range::Transports,
    range_note: "",
    unit: "list of `\"short_poll\"`, `\"long_poll\"`, `\"sse\"`, `\"websocket\"`",
    sweep: false,
    doc: "transports to run, in this order, one after the other (a list by nature, not a sweep)",
};

/// `duration`
pub const DURATION: Key = Key {
    name: "duration",
    ty: Type::Duration,
    default: Default::Duration("30s"),
    range: Range::Duration {
        min: s(1),
        max: s(3600),
    },
    range_note: "",
    unit: "duration",
    sweep: false,
    doc: "measured time per transport",
};

/// `warmup`
pub const WARMUP: Key = Key {
    name: "warmup",
    ty: Type::Duration,
    default: Default::Duration("3s"),
    range: Range::Duration {
        min: s(0),
        max: s(600),
    },
    range_note: "",
    unit: "duration",
    sweep: false,
    doc: "time per transport before measuring, while clients connect; measuring starts when the warm-up has passed *and* every client has tried to connect",
};

/// `drain`
pub const DRAIN: Key = Key {
    name: "drain",
    ty: Type::Duration,
    default: Default::Duration("2s"),
    range: Range::Duration {
        min: s(0),
        max: s(600),
    },
    range_note: "",
    unit: "duration",
    sweep: false,
    doc: "time after the last publish during which late deliveries still count; ends early once every expected delivery arrived. A drain too short for the slowest transport to deliver (the short-poll interval plus the round trip and twice the jitter, plus 100 ms) is extended to that, with a note",
};

/// `seed`
pub const SEED: Key = Key {
    name: "seed",
    ty: Type::Integer,
    default: Default::Integer(0),
    range: Range::Integer {
        min: 0,
        max: i64::MAX,
    },
    range_note: "",
    unit: "integer",
    sweep: false,
    doc: "the one seed for the run's random choices (see [Reproducible runs](#reproducible-runs)); recorded in `results.json`",
};

/// `thresholds`
pub const THRESHOLDS: Key = Key {
    name: "thresholds",
    ty: Type::Thresholds,
    default: Default::Described("none: only the integrity checks"),
    range: Range::Thresholds,
    range_note: "",
    unit: "table",
    sweep: false,
    doc: "checks on the measured figures, e.g. `\"websocket.latency_p99_ms\" = \"< 50\"` (with `[[stacks]]`, `\"nchan.sse.latency_p99_ms\"` checks one stack's); a failed check makes `duplex run` exit with status 2",
};

/// `clients.count`
pub const CLIENTS_COUNT: Key = Key {
    name: "clients.count",
    ty: Type::Integer,
    default: Default::Integer(100),
    range: Range::Integer {
        min: 1,
        max: MAX_CLIENTS as i64,
    },
    range_note: "a process may have 20,000 open files; the rest is headroom for the senders' connections",
    unit: "clients",
    sweep: true,
    doc: "simulated clients per transport; the senders are among them",
};

/// `clients.connect_rate`
pub const CLIENTS_CONNECT_RATE: Key = Key {
    name: "clients.connect_rate",
    ty: Type::Number,
    default: Default::Number(500.0),
    range: Range::Number {
        min: 0.0,
        min_exclusive: true,
        max: 100_000.0,
    },
    range_note: "",
    unit: "connects/s",
    sweep: false,
    doc: "connects per second while the clients ramp up",
};

/// `clients.profile`
pub const CLIENTS_PROFILE: Key = Key {
    name: "clients.profile",
    ty: Type::Choice,
    default: Default::Text("browser"),
    range: Range::OneOf(&["browser", "minimal"]),
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "the request headers the clients send: `browser`, what a current Chromium sends for `fetch`, `EventSource` and the WebSocket upgrade (User-Agent, Accept*, sec-ch-ua*, Sec-Fetch-*, Referer, Origin where the browser sends it); `minimal`, only what the protocol needs",
};

/// `clients.cookie_bytes`
pub const CLIENTS_COOKIE_BYTES: Key = Key {
    name: "clients.cookie_bytes",
    ty: Type::Integer,
    default: Default::Integer(0),
    range: Range::Integer { min: 0, max: 8192 },
    range_note: "",
    unit: "bytes",
    sweep: false,
    doc: "length of the `Cookie` header a `browser` client sends on every request (0: none, as a fresh browser; a site with a login and analytics sends hundreds)",
};

/// `chat.room`
pub const CHAT_ROOM: Key = Key {
    name: "chat.room",
    ty: Type::Name,
    default: Default::Text("lobby"),
    range: Range::Name { max_len: 32 },
    range_note: "",
    unit: "text",
    sweep: false,
    doc: "room name prefix; each phase uses a fresh room `<room>-<run id>-<transport>`, so its log starts empty and every client knows exactly what it should receive",
};

/// `chat.senders`
pub const CHAT_SENDERS: Key = Key {
    name: "chat.senders",
    ty: Type::Integer,
    default: Default::Integer(1),
    range: Range::IntegerUpTo {
        min: 0,
        key: "clients.count",
    },
    range_note: "the smallest value, when swept",
    unit: "clients",
    sweep: false,
    doc: "how many of the clients also publish",
};

/// `chat.rate`
pub const CHAT_RATE: Key = Key {
    name: "chat.rate",
    ty: Type::Number,
    default: Default::Number(1.0),
    range: Range::Number {
        min: 0.0,
        min_exclusive: false,
        max: 1000.0,
    },
    range_note: "0: nobody publishes",
    unit: "messages/s",
    sweep: true,
    doc: "messages per second *per sender*, on average: each sender publishes on a seeded Poisson schedule fixed in advance (open model); the room receives `senders x rate`",
};

/// `chat.payload_bytes`
pub const CHAT_PAYLOAD_BYTES: Key = Key {
    name: "chat.payload_bytes",
    ty: Type::Integer,
    default: Default::Integer(100),
    range: Range::Integer {
        min: MIN_PAYLOAD_BYTES as i64,
        max: MAX_PAYLOAD_BYTES as i64,
    },
    range_note: "48 is the loadgen's stamp",
    unit: "bytes",
    sweep: false,
    doc: "size of each published body; it begins with the loadgen's timing stamp",
};

/// `chat.mode`
pub const CHAT_MODE: Key = Key {
    name: "chat.mode",
    ty: Type::Choice,
    default: Default::Text("all"),
    range: Range::OneOf(&["all", "others", "direct"]),
    range_note: "nchan and generic targets: only `\"all\"`",
    unit: "text",
    sweep: false,
    doc: "who each message is for, as Socket.IO's three broadcast forms: `all` everyone in the room, the sender included (`io.emit`); `others` everyone but the sender (`socket.broadcast.emit`); `direct` one client, each of a sender's messages the next other client in turn (`socket.emit` to one socket). duplex and Socket.IO are told with the publish's `to` / `echo`; each client is owed only the messages for it, and a delivery to a client a message was not for counts as misdelivered",
};

/// `short_poll.interval`
pub const SHORT_POLL_INTERVAL: Key = Key {
    name: "short_poll.interval",
    ty: Type::Duration,
    default: Default::Duration("500ms"),
    range: Range::Duration {
        min: ms(10),
        max: s(600),
    },
    range_note: "",
    unit: "duration",
    sweep: true,
    doc: "the poll timer's period; each client starts at a random phase within one period, and polls on the timer, not \"sleep after the answer\"",
};

/// `long_poll.timeout`
pub const LONG_POLL_TIMEOUT: Key = Key {
    name: "long_poll.timeout",
    ty: Type::Duration,
    default: Default::Duration("25s"),
    range: Range::Duration {
        min: ms(100),
        max: s(300),
    },
    range_note: "",
    unit: "duration",
    sweep: false,
    doc: "how long the server holds a long poll with nothing new before answering 204 (the model's `L`)",
};

/// `network.rtt`
pub const NETWORK_RTT: Key = Key {
    name: "network.rtt",
    ty: Type::Duration,
    default: Default::Duration("0ms"),
    range: Range::Duration {
        min: s(0),
        max: s(10),
    },
    range_note: "",
    unit: "duration",
    sweep: true,
    doc: "round-trip time added to every client connection, half in each direction (the models' `d` is `rtt / 2`)",
};

/// `network.jitter`
pub const NETWORK_JITTER: Key = Key {
    name: "network.jitter",
    ty: Type::Duration,
    default: Default::Duration("0ms"),
    range: Range::Duration {
        min: s(0),
        max: s(10),
    },
    range_note: "",
    unit: "duration",
    sweep: false,
    doc: "random extra delay per chunk and direction, uniform in `0 ..= jitter`; since bytes keep their order, a chunk's delay always stays within `rtt/2 .. rtt/2 + jitter`",
};

/// `network.bandwidth`
pub const NETWORK_BANDWIDTH: Key = Key {
    name: "network.bandwidth",
    ty: Type::Bandwidth,
    default: Default::Described("no cap"),
    range: Range::AtLeast(1000.0),
    range_note: "",
    unit: "bytes/s",
    sweep: false,
    doc: "cap per connection and per direction (not a shared link); chunks are paced in segments of 1,448 bytes. An integer is bytes per second (`125000`), a string is `\"<number><unit>/s\"` with unit `B`, `kB`/`KB`, `MB`, `GB` (powers of 1000), `KiB`, `MiB`, `GiB` (powers of 1024) or `kbit`, `Mbit`, `Gbit`",
};

/// `cluster.nodes`
pub const CLUSTER_NODES: Key = Key {
    name: "cluster.nodes",
    ty: Type::Integer,
    default: Default::Integer(1),
    range: Range::Integer { min: 1, max: 8 },
    range_note: "",
    unit: "nodes",
    sweep: false,
    doc: "duplex nodes the run starts when it starts the server (not with `--target`): above 1, one `redis-server` and that many `duplex serve --backplane` nodes on 127.0.0.10, .11, ... (`peers/cluster/start.sh`), each client's connections spread over the nodes in turn; the server CPU and memory are the whole cluster's, Redis included",
};

/// `faults.kill_node`
pub const FAULTS_KILL_NODE: Key = Key {
    name: "faults.kill_node",
    ty: Type::Duration,
    default: Default::Described("none: no node is killed"),
    range: Range::Duration {
        min: Duration::ZERO,
        max: s(3600),
    },
    range_note: "less than `duration`, and only with `cluster.nodes` of 2 or more",
    unit: "duration",
    sweep: false,
    doc: "this long into each phase's measured window, the cluster's last node is killed (SIGKILL, by the pid the lab started it with); its clients reconnect to the other nodes (which the connector then uses alone) and resume from the last seq they saw. The report counts the reconnects, draws them and the slowest delivery per second over time, and says when the node died and what each process spent",
};

/// Every key, in the order the README documents them.
pub const KEYS: [&Key; 34] = [
    &NAME,
    &DESCRIPTION,
    &TRANSPORTS,
    &DURATION,
    &WARMUP,
    &DRAIN,
    &SEED,
    &THRESHOLDS,
    &CLIENTS_COUNT,
    &CLIENTS_CONNECT_RATE,
    &CLIENTS_PROFILE,
    &CLIENTS_COOKIE_BYTES,
    &CHAT_ROOM,
    &CHAT_SENDERS,
    &CHAT_RATE,
    &CHAT_PAYLOAD_BYTES,
    &CHAT_MODE,
    &SHORT_POLL_INTERVAL,
    &LONG_POLL_TIMEOUT,
    &NETWORK_RTT,
    &NETWORK_JITTER,
    &NETWORK_BANDWIDTH,
    &super::target::TARGET_PEER,
    &super::target::TARGET_URL,
    &super::target::TARGET_PROTOCOL,
    &super::target::TARGET_NCHAN_BUFFER,
    &super::target::TARGET_SOCKETIO_WEBSOCKET,
    &super::target::TARGET_SUBSCRIBE,
    &super::target::TARGET_PUBLISH,
    &super::target::TARGET_PUBLISH_BODY,
    &super::stacks::STACKS_NAME,
    &super::stacks::STACKS_TRANSPORTS,
    &CLUSTER_NODES,
    &FAULTS_KILL_NODE,
];

/// The key with this dotted name.
pub fn key(name: &str) -> Option<&'static Key> {
    KEYS.into_iter().find(|k| k.name == name)
}
