//! Scenario files: TOML parsed into raw serde structs (`deny_unknown_fields`), then validated into
//! a typed [`Scenario`]. Every error names the file, the dotted key and the problem, e.g.
//! `scenarios/x.toml: clients.count: must be at least 1, got 0`, and is raised before any load.
//!
//! This module owns the scenario *format* (every key, its unit, default and range is documented
//! on the raw structs below; `scenarios/README.md` is written from them) and the sweep rule: one
//! key among [`SweepKey`] may be given a list of values, and [`Scenario::points`] expands it into
//! one resolved scenario per value. Running a scenario is the runner's business.
//!
//! Command-line overrides (`--clients`, `--duration`, `--transports`) are applied to the parsed
//! TOML *before* validation, so they are checked by exactly the same rules as the file.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use wire::Transport;

/// Smallest `chat.payload_bytes`: the loadgen's stamp must fit in the body (see `stamp.rs`).
pub const MIN_PAYLOAD_BYTES: u64 = crate::stamp::MAX_STAMP_LEN as u64;
/// Largest `clients.count`: one socket per client, under the 20,000 open files a process may
/// have, with headroom for the senders' own connections.
pub const MAX_CLIENTS: u64 = 18_000;
/// Largest `chat.payload_bytes`, well under the server's default 64 KiB body limit once the
/// publish request's JSON is wrapped around it.
pub const MAX_PAYLOAD_BYTES: u64 = 60_000;

/// A scenario file that could not be read, parsed or validated.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    /// The file could not be read.
    #[error("{file}: cannot read: {source}")]
    Read {
        /// The scenario file.
        file: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("{file}: not valid TOML: {message}")]
    Syntax {
        /// The scenario file.
        file: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// A key is unknown, missing, of the wrong type or out of range.
    #[error("{file}: {key}: {problem}")]
    Invalid {
        /// The scenario file.
        file: PathBuf,
        /// The dotted key, e.g. `clients.count`.
        key: String,
        /// What is wrong with it.
        problem: String,
    },
}

impl ScenarioError {
    /// The dotted key the error is about, when it is about one.
    pub fn key(&self) -> Option<&str> {
        match self {
            ScenarioError::Invalid { key, .. } => Some(key),
            _ => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw: what the file says, as serde reads it. Doc comments here are the format's documentation.
// ---------------------------------------------------------------------------------------------

/// A scenario file as written. Unknown keys are errors.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    /// `name`: required. Letters, digits, `_` and `-` only (1..=64); names the default output
    /// folder `reports/<name>/`.
    name: String,
    /// `description`: required, non-empty. One or two sentences saying what the scenario shows;
    /// the report prints it.
    description: String,
    /// `transports`: optional list of `"short_poll"`, `"long_poll"`, `"sse"`, `"websocket"`, run
    /// in the order given, each at most once. Default: all four in that order.
    #[serde(default)]
    transports: Option<Vec<String>>,
    /// `duration`: measured time per transport, a humantime string (`"500ms"`, `"30s"`, `"2m"`).
    /// Default `"30s"`; range 1 s ..= 1 h.
    #[serde(default)]
    duration: Option<String>,
    /// `warmup`: time per transport before measuring, while clients connect. The measured window
    /// starts when the warm-up has passed *and* every client has tried to connect. Default
    /// `"3s"`; range 0 ..= 10 min.
    #[serde(default)]
    warmup: Option<String>,
    /// `drain`: time after the last publish during which late deliveries still count. The drain
    /// ends early once every expected delivery arrived. Default `"2s"`; range 0 ..= 10 min.
    #[serde(default)]
    drain: Option<String>,
    /// `[clients]`: the simulated population.
    #[serde(default)]
    clients: RawClients,
    /// `[chat]`: what the senders publish.
    #[serde(default)]
    chat: RawChat,
    /// `[short_poll]`: the short-poll client's timer.
    #[serde(default)]
    short_poll: RawShortPoll,
    /// `[long_poll]`: the long-poll request's hold time.
    #[serde(default)]
    long_poll: RawLongPoll,
    /// `[network]`: emulated network conditions, applied by the loadgen's in-process delay proxy.
    #[serde(default)]
    network: RawNetwork,
}

/// `[clients]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClients {
    /// `clients.count`: simulated clients per transport (senders are among them), integer
    /// 1 ..= 18,000 (each client holds a socket, and a process may have 20,000 open files;
    /// the rest is headroom for senders' connections). Default 100. Sweepable:
    /// `count = [100, 300, 1000]`.
    #[serde(default)]
    count: Option<toml::Value>,
    /// `clients.connect_rate`: connects per second while ramping up, > 0 ..= 100,000.
    /// Default 500.
    #[serde(default)]
    connect_rate: Option<f64>,
}

/// `[chat]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChat {
    /// `chat.room`: the room name prefix, `[A-Za-z0-9_-]`, 1 ..= 32 characters. Default
    /// `"lobby"`. Each phase uses a fresh room `<room>-<run id>-<transport>` so its log starts
    /// empty and every client's expectations are exact.
    #[serde(default)]
    room: Option<String>,
    /// `chat.senders`: how many of the clients also publish, 0 ..= `clients.count`. Default 1.
    #[serde(default)]
    senders: Option<i64>,
    /// `chat.rate`: messages per second *per sender*, on average, 0 ..= 1,000 (0 = nobody
    /// publishes). Arrivals are Poisson (exponential gaps, seeded per sender so every run
    /// publishes at the same offsets). Default 1.0. Sweepable.
    #[serde(default)]
    rate: Option<toml::Value>,
    /// `chat.payload_bytes`: size of each published body in bytes, [`MIN_PAYLOAD_BYTES`]
    /// (the loadgen's stamp) ..= 60,000. Default 100.
    #[serde(default)]
    payload_bytes: Option<i64>,
}

/// `[short_poll]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShortPoll {
    /// `short_poll.interval`: the poll timer's period, humantime, 10 ms ..= 10 min. Each client
    /// starts at a random phase within one period. Default `"500ms"`. Sweepable.
    #[serde(default)]
    interval: Option<toml::Value>,
}

/// `[long_poll]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLongPoll {
    /// `long_poll.timeout`: how long the server holds a long poll with nothing new before a 204,
    /// humantime, 100 ms ..= 5 min. Default `"25s"`.
    #[serde(default)]
    timeout: Option<String>,
}

/// `[network]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNetwork {
    /// `network.rtt`: round-trip time added to every client connection (half each way),
    /// humantime, 0 ..= 10 s. Default `"0ms"`. Sweepable.
    #[serde(default)]
    rtt: Option<toml::Value>,
    /// `network.jitter`: random extra delay per direction, uniform in 0 ..= jitter, humantime,
    /// 0 ..= 10 s. Default `"0ms"`. Byte order is preserved.
    #[serde(default)]
    jitter: Option<String>,
    /// `network.bandwidth`: optional cap per connection and direction. Either an integer in
    /// bytes per second (`bandwidth = 125000`) or a string `"<number><unit>/s"` with unit one of
    /// `B`, `kB`/`KB`, `MB`, `GB` (powers of 1000), `KiB`, `MiB`, `GiB` (powers of 1024), or
    /// `kbit`, `Mbit`, `Gbit` (bits): `"1MB/s"`, `"10Mbit/s"`. Must be at least 1,000 B/s.
    /// Default: no cap.
    #[serde(default)]
    bandwidth: Option<toml::Value>,
}

// ---------------------------------------------------------------------------------------------
// Validated.
// ---------------------------------------------------------------------------------------------

/// A checked scenario: every value in range, durations typed. With a sweep, the swept key's
/// field holds the first value; [`Scenario::points`] yields one scenario per value.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    /// The file it came from (for messages).
    pub file: PathBuf,
    /// Short name, `[A-Za-z0-9_-]+`.
    pub name: String,
    /// What the scenario shows.
    pub description: String,
    /// Transports to run, in order.
    pub transports: Vec<Transport>,
    /// Measured time per transport.
    pub duration: Duration,
    /// Minimum time before measuring.
    pub warmup: Duration,
    /// Grace period for late deliveries after the last publish.
    pub drain: Duration,
    /// Clients per transport.
    pub clients: u64,
    /// Connects per second while ramping.
    pub connect_rate: f64,
    /// Room name prefix.
    pub room: String,
    /// Clients that also publish.
    pub senders: u64,
    /// Messages per second per sender.
    pub rate: f64,
    /// Bytes per published body.
    pub payload_bytes: usize,
    /// Short-poll timer period.
    pub short_poll_interval: Duration,
    /// Long-poll hold timeout.
    pub long_poll_timeout: Duration,
    /// Emulated network.
    pub network: Network,
    /// The swept key and its values, if any.
    pub sweep: Option<Sweep>,
}

/// Emulated network conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Network {
    /// Added round-trip time (half each way).
    pub rtt: Duration,
    /// Random extra delay per direction, up to this.
    pub jitter: Duration,
    /// Cap per connection and direction, bytes per second.
    pub bandwidth_bytes_per_s: Option<u64>,
}

impl Network {
    /// `true` when connections must go through the delay proxy.
    pub fn is_active(&self) -> bool {
        !self.rtt.is_zero() || !self.jitter.is_zero() || self.bandwidth_bytes_per_s.is_some()
    }
}

/// The keys a scenario may sweep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SweepKey {
    /// `clients.count`
    ClientsCount,
    /// `chat.rate`
    ChatRate,
    /// `network.rtt`
    NetworkRtt,
    /// `short_poll.interval`
    ShortPollInterval,
}

impl SweepKey {
    /// Every sweepable key.
    pub const ALL: [SweepKey; 4] = [
        SweepKey::ClientsCount,
        SweepKey::ChatRate,
        SweepKey::NetworkRtt,
        SweepKey::ShortPollInterval,
    ];

    /// The dotted key as written in the file.
    pub fn dotted(self) -> &'static str {
        match self {
            SweepKey::ClientsCount => "clients.count",
            SweepKey::ChatRate => "chat.rate",
            SweepKey::NetworkRtt => "network.rtt",
            SweepKey::ShortPollInterval => "short_poll.interval",
        }
    }

    /// The unit of its values as stored in [`Sweep::values`] (axis label).
    pub fn unit(self) -> &'static str {
        match self {
            SweepKey::ClientsCount => "clients",
            SweepKey::ChatRate => "msg/s",
            SweepKey::NetworkRtt | SweepKey::ShortPollInterval => "ms",
        }
    }

    fn from_dotted(key: &str) -> Option<SweepKey> {
        SweepKey::ALL.into_iter().find(|k| k.dotted() == key)
    }
}

impl fmt::Display for SweepKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dotted())
    }
}

/// One key given several values.
#[derive(Debug, Clone, PartialEq)]
pub struct Sweep {
    /// Which key.
    pub key: SweepKey,
    /// Its values in [`SweepKey::unit`] (clients, msg/s, ms), in the order given.
    pub values: Vec<f64>,
}

/// Command-line values that replace the file's before validation.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `--transports`
    pub transports: Option<Vec<String>>,
    /// `--clients` (replaces a `clients.count` sweep too)
    pub clients: Option<u64>,
    /// `--duration`, humantime
    pub duration: Option<String>,
}

impl Overrides {
    /// Says which flag set the value when an error is about a key a flag replaced.
    fn blame(&self, error: ScenarioError) -> ScenarioError {
        let flag = match error.key() {
            Some("transports") if self.transports.is_some() => "--transports",
            Some("duration") if self.duration.is_some() => "--duration",
            Some("clients.count") if self.clients.is_some() => "--clients",
            _ => return error,
        };
        match error {
            ScenarioError::Invalid { file, key, problem } => ScenarioError::Invalid {
                file,
                key,
                problem: format!("{problem} (set by {flag})"),
            },
            other => other,
        }
    }
}

impl Scenario {
    /// Reads, parses and validates a scenario file, applying `overrides` first.
    pub fn load(path: &Path, overrides: &Overrides) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            file: path.to_owned(),
            source,
        })?;
        Scenario::parse(path, &text, overrides)
    }

    /// Parses and validates scenario text; `file` is only used in messages.
    pub fn parse(
        file: &Path,
        text: &str,
        overrides: &Overrides,
    ) -> Result<Scenario, ScenarioError> {
        let mut table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ScenarioError::Syntax {
                    file: file.to_owned(),
                    message: e.to_string().trim_end().replace('\n', " "),
                })?;
        apply_overrides(&mut table, overrides);
        let v = Validator { file };
        let checked = v.find_sweep(&table).and_then(|sweep_key| {
            let raw: RawScenario = serde_path_to_error::deserialize(table).map_err(|e| {
                let key = e.path().to_string();
                let inner = e.into_inner().to_string();
                v.raw_error(&key, &inner)
            })?;
            v.validate(raw, sweep_key)
        });
        checked.map_err(|e| overrides.blame(e))
    }

    /// One scenario per sweep value (the swept field set, `sweep` kept for the record), or just
    /// this one when nothing is swept.
    pub fn points(&self) -> Vec<(Option<f64>, Scenario)> {
        let Some(sweep) = &self.sweep else {
            return vec![(None, self.clone())];
        };
        sweep
            .values
            .iter()
            .map(|&value| {
                let mut s = self.clone();
                match sweep.key {
                    SweepKey::ClientsCount => s.clients = value as u64,
                    SweepKey::ChatRate => s.rate = value,
                    SweepKey::NetworkRtt => s.network.rtt = Duration::from_secs_f64(value / 1e3),
                    SweepKey::ShortPollInterval => {
                        s.short_poll_interval = Duration::from_secs_f64(value / 1e3)
                    }
                }
                (Some(value), s)
            })
            .collect()
    }

    /// The resolved scenario as the results document records it.
    pub fn info(&self) -> report::results::ScenarioInfo {
        report::results::ScenarioInfo {
            name: self.name.clone(),
            description: self.description.clone(),
            transports: self.transports.iter().map(|t| t.to_string()).collect(),
            duration_s: self.duration.as_secs_f64(),
            warmup_s: self.warmup.as_secs_f64(),
            drain_s: self.drain.as_secs_f64(),
            clients: self.clients,
            connect_rate: self.connect_rate,
            room: self.room.clone(),
            senders: self.senders,
            rate_per_sender: self.rate,
            payload_bytes: self.payload_bytes as u64,
            short_poll_interval_ms: ms(self.short_poll_interval),
            long_poll_timeout_ms: ms(self.long_poll_timeout),
            network: report::results::NetworkInfo {
                rtt_ms: ms(self.network.rtt),
                jitter_ms: ms(self.network.jitter),
                bandwidth_bytes_per_s: self.network.bandwidth_bytes_per_s.map(|b| b as f64),
            },
            sweep: self.sweep.as_ref().map(|s| report::results::SweepInfo {
                key: s.key.dotted().to_owned(),
                unit: s.key.unit().to_owned(),
                values: s.values.clone(),
            }),
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn apply_overrides(table: &mut toml::Table, o: &Overrides) {
    if let Some(ts) = &o.transports {
        let list = ts.iter().map(|t| toml::Value::String(t.clone())).collect();
        table.insert("transports".into(), toml::Value::Array(list));
    }
    if let Some(d) = &o.duration {
        table.insert("duration".into(), toml::Value::String(d.clone()));
    }
    if let Some(n) = o.clients {
        let clients = table
            .entry("clients")
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = clients {
            t.insert(
                "count".into(),
                toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            );
        }
    }
}

/// Validation with the file at hand, so every error can name it.
struct Validator<'a> {
    file: &'a Path,
}

impl Validator<'_> {
    fn err(&self, key: &str, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    /// Turns a serde error at `path` into a message naming the dotted key. Unknown keys are
    /// reported at their own dotted name (`clients.cout`), not at the enclosing table.
    fn raw_error(&self, path: &str, inner: &str) -> ScenarioError {
        // The TOML deserializer appends "in `table`" on a second line; the key says that already.
        let inner = inner.lines().next().unwrap_or(inner).trim();
        let join = |field: &str| {
            if path.is_empty() || path == "." {
                field.to_owned()
            } else if path == field || path.ends_with(&format!(".{field}")) {
                path.to_owned()
            } else {
                format!("{path}.{field}")
            }
        };
        if let Some((field, expected)) = inner
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            return self.err(
                &join(field),
                format!(
                    "unknown key{}",
                    expected.replace(", expected", "; expected")
                ),
            );
        }
        if let Some(rest) = inner.strip_prefix("missing field `") {
            let field = rest.split('`').next().unwrap_or(rest);
            return self.err(&join(field), "required key is missing");
        }
        let key = if path.is_empty() { "." } else { path };
        self.err(key, inner.to_owned())
    }

    /// Finds the one key given a list of values. `transports` is a list by nature and is not a
    /// sweep. Two swept keys, or a list where a sweep is not allowed, are errors.
    fn find_sweep(&self, table: &toml::Table) -> Result<Option<SweepKey>, ScenarioError> {
        let mut found: Option<SweepKey> = None;
        let mut visit = |key: String, value: &toml::Value| -> Result<(), ScenarioError> {
            if !matches!(value, toml::Value::Array(_)) || key == "transports" {
                return Ok(());
            }
            let Some(k) = SweepKey::from_dotted(&key) else {
                let allowed: Vec<_> = SweepKey::ALL.iter().map(|k| k.dotted()).collect();
                return Err(self.err(
                    &key,
                    format!(
                        "cannot be swept (a list of values is allowed only for {})",
                        allowed.join(", ")
                    ),
                ));
            };
            if let Some(first) = found {
                return Err(self.err(
                    &key,
                    format!("only one key may be swept, but both {first} and {key} are lists"),
                ));
            }
            found = Some(k);
            Ok(())
        };
        for (key, value) in table {
            if let toml::Value::Table(inner) = value {
                for (sub, v) in inner {
                    visit(format!("{key}.{sub}"), v)?;
                }
            } else {
                visit(key.clone(), value)?;
            }
        }
        Ok(found)
    }

    fn validate(
        &self,
        raw: RawScenario,
        sweep_key: Option<SweepKey>,
    ) -> Result<Scenario, ScenarioError> {
        if raw.name.is_empty() || raw.name.len() > 64 || !is_name(&raw.name) {
            return Err(self.err(
                "name",
                format!(
                    "must be 1 to 64 letters, digits, '_' or '-', got {:?}",
                    raw.name
                ),
            ));
        }
        if raw.description.trim().is_empty() {
            return Err(self.err("description", "must say what the scenario shows"));
        }

        let transports = match raw.transports {
            None => Transport::ALL.to_vec(),
            Some(list) => {
                if list.is_empty() {
                    return Err(self.err("transports", "must name at least one transport"));
                }
                let mut out = Vec::new();
                for t in list {
                    let t: Transport = t
                        .parse()
                        .map_err(|e| self.err("transports", format!("{e}")))?;
                    if out.contains(&t) {
                        return Err(self.err("transports", format!("{t} is listed twice")));
                    }
                    out.push(t);
                }
                out
            }
        };

        let duration = self.duration("duration", raw.duration.as_deref(), "30s")?;
        self.range_duration(
            "duration",
            duration,
            Duration::from_secs(1),
            Duration::from_secs(3600),
        )?;
        let warmup = self.duration("warmup", raw.warmup.as_deref(), "3s")?;
        self.range_duration("warmup", warmup, Duration::ZERO, Duration::from_secs(600))?;
        let drain = self.duration("drain", raw.drain.as_deref(), "2s")?;
        self.range_duration("drain", drain, Duration::ZERO, Duration::from_secs(600))?;

        // Sweepable values: each is a list of f64 in the key's unit, one element when not swept.
        let counts =
            self.sweep_values("clients.count", raw.clients.count.as_ref(), 100.0, |v| {
                self.integer("clients.count", v)
            })?;
        for &c in &counts {
            if c < 1.0 {
                return Err(self.err("clients.count", format!("must be at least 1, got {c}")));
            }
            if c > MAX_CLIENTS as f64 {
                return Err(self.err(
                    "clients.count",
                    format!(
                        "must be at most {MAX_CLIENTS} (a process may have 20000 open files), got {c}"
                    ),
                ));
            }
        }
        let connect_rate = raw.clients.connect_rate.unwrap_or(500.0);
        if !(connect_rate > 0.0 && connect_rate <= 100_000.0) {
            return Err(self.err(
                "clients.connect_rate",
                format!(
                    "must be above 0 and at most 100000 connects per second, got {connect_rate}"
                ),
            ));
        }

        let room = raw.chat.room.unwrap_or_else(|| "lobby".to_owned());
        if room.is_empty() || room.len() > 32 || !is_name(&room) {
            return Err(self.err(
                "chat.room",
                format!("must be 1 to 32 letters, digits, '_' or '-', got {room:?}"),
            ));
        }
        let senders = raw.chat.senders.unwrap_or(1);
        if senders < 0 {
            return Err(self.err("chat.senders", format!("must be at least 0, got {senders}")));
        }
        let min_count = counts.iter().cloned().fold(f64::INFINITY, f64::min);
        if senders as f64 > min_count {
            return Err(self.err(
                "chat.senders",
                format!("must be at most clients.count ({min_count}), got {senders}"),
            ));
        }
        let rates = self.sweep_values("chat.rate", raw.chat.rate.as_ref(), 1.0, |v| {
            self.number("chat.rate", v)
        })?;
        for &r in &rates {
            if !(0.0..=1000.0).contains(&r) {
                return Err(self.err(
                    "chat.rate",
                    format!("must be between 0 and 1000 messages per second per sender, got {r}"),
                ));
            }
        }
        let payload = raw.chat.payload_bytes.unwrap_or(100);
        if payload < MIN_PAYLOAD_BYTES as i64 || payload > MAX_PAYLOAD_BYTES as i64 {
            return Err(self.err(
                "chat.payload_bytes",
                format!(
                    "must be between {MIN_PAYLOAD_BYTES} (the loadgen's stamp) and {MAX_PAYLOAD_BYTES}, got {payload}"
                ),
            ));
        }

        let intervals = self.sweep_values(
            "short_poll.interval",
            raw.short_poll.interval.as_ref(),
            500.0,
            |v| self.duration_value_ms("short_poll.interval", v),
        )?;
        for &i in &intervals {
            self.range_duration(
                "short_poll.interval",
                Duration::from_secs_f64(i / 1e3),
                Duration::from_millis(10),
                Duration::from_secs(600),
            )?;
        }
        let long_poll_timeout =
            self.duration("long_poll.timeout", raw.long_poll.timeout.as_deref(), "25s")?;
        self.range_duration(
            "long_poll.timeout",
            long_poll_timeout,
            Duration::from_millis(100),
            Duration::from_secs(300),
        )?;

        let rtts = self.sweep_values("network.rtt", raw.network.rtt.as_ref(), 0.0, |v| {
            self.duration_value_ms("network.rtt", v)
        })?;
        for &r in &rtts {
            self.range_duration(
                "network.rtt",
                Duration::from_secs_f64(r / 1e3),
                Duration::ZERO,
                Duration::from_secs(10),
            )?;
        }
        let jitter = self.duration("network.jitter", raw.network.jitter.as_deref(), "0ms")?;
        self.range_duration(
            "network.jitter",
            jitter,
            Duration::ZERO,
            Duration::from_secs(10),
        )?;
        let bandwidth = match &raw.network.bandwidth {
            None => None,
            Some(v) => Some(self.bandwidth(v)?),
        };

        let sweep = sweep_key.map(|key| Sweep {
            key,
            values: match key {
                SweepKey::ClientsCount => counts.clone(),
                SweepKey::ChatRate => rates.clone(),
                SweepKey::NetworkRtt => rtts.clone(),
                SweepKey::ShortPollInterval => intervals.clone(),
            },
        });

        Ok(Scenario {
            file: self.file.to_owned(),
            name: raw.name,
            description: raw.description.trim().to_owned(),
            transports,
            duration,
            warmup,
            drain,
            clients: counts[0] as u64,
            connect_rate,
            room,
            senders: senders as u64,
            rate: rates[0],
            payload_bytes: payload as usize,
            short_poll_interval: Duration::from_secs_f64(intervals[0] / 1e3),
            long_poll_timeout,
            network: Network {
                rtt: Duration::from_secs_f64(rtts[0] / 1e3),
                jitter,
                bandwidth_bytes_per_s: bandwidth,
            },
            sweep,
        })
    }

    /// A possibly swept value: a scalar gives one value, an array gives its values (at least
    /// two, no repeats); missing gives the default.
    fn sweep_values(
        &self,
        key: &str,
        value: Option<&toml::Value>,
        default: f64,
        one: impl Fn(&toml::Value) -> Result<f64, ScenarioError>,
    ) -> Result<Vec<f64>, ScenarioError> {
        match value {
            None => Ok(vec![default]),
            Some(toml::Value::Array(items)) => {
                if items.len() < 2 {
                    return Err(self.err(key, "a sweep needs at least two values"));
                }
                if items.len() > 50 {
                    return Err(self.err(key, "a sweep may have at most 50 values"));
                }
                let values = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
                for (i, v) in values.iter().enumerate() {
                    if values[..i].contains(v) {
                        return Err(self.err(key, format!("sweep value {v} is listed twice")));
                    }
                }
                Ok(values)
            }
            Some(v) => Ok(vec![one(v)?]),
        }
    }

    fn integer(&self, key: &str, v: &toml::Value) -> Result<f64, ScenarioError> {
        match v {
            toml::Value::Integer(i) if *i < 1 => {
                Err(self.err(key, format!("must be at least 1, got {i}")))
            }
            toml::Value::Integer(i) => Ok(*i as f64),
            other => Err(self.err(
                key,
                format!("expected an integer, got {}", other.type_str()),
            )),
        }
    }

    fn number(&self, key: &str, v: &toml::Value) -> Result<f64, ScenarioError> {
        let x = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            other => {
                return Err(self.err(key, format!("expected a number, got {}", other.type_str())));
            }
        };
        if x < 0.0 || !x.is_finite() {
            return Err(self.err(key, format!("must not be negative, got {x}")));
        }
        Ok(x)
    }

    fn duration_value_ms(&self, key: &str, v: &toml::Value) -> Result<f64, ScenarioError> {
        match v {
            toml::Value::String(s) => Ok(self.parse_duration(key, s)?.as_secs_f64() * 1e3),
            other => Err(self.err(
                key,
                format!(
                    "expected a duration string like \"500ms\", got {}",
                    other.type_str()
                ),
            )),
        }
    }

    fn duration(
        &self,
        key: &str,
        text: Option<&str>,
        default: &str,
    ) -> Result<Duration, ScenarioError> {
        self.parse_duration(key, text.unwrap_or(default))
    }

    fn parse_duration(&self, key: &str, text: &str) -> Result<Duration, ScenarioError> {
        let t = text.trim();
        if t == "0" {
            return Ok(Duration::ZERO);
        }
        if t.starts_with('-') {
            return Err(self.err(key, format!("must not be negative, got {text:?}")));
        }
        humantime::parse_duration(t).map_err(|e| {
            self.err(
                key,
                format!(
                    "not a duration ({e}); write e.g. \"500ms\", \"30s\", \"2m\", got {text:?}"
                ),
            )
        })
    }

    fn range_duration(
        &self,
        key: &str,
        d: Duration,
        min: Duration,
        max: Duration,
    ) -> Result<(), ScenarioError> {
        if d < min || d > max {
            return Err(self.err(
                key,
                format!(
                    "must be between {} and {}, got {}",
                    humantime::format_duration(min),
                    humantime::format_duration(max),
                    humantime::format_duration(d)
                ),
            ));
        }
        Ok(())
    }

    fn bandwidth(&self, v: &toml::Value) -> Result<u64, ScenarioError> {
        const KEY: &str = "network.bandwidth";
        let bytes = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            toml::Value::String(s) => parse_bandwidth(s).ok_or_else(|| {
                self.err(
                    KEY,
                    format!(
                        "not a bandwidth, got {s:?}; write bytes per second (125000) or e.g. \"1MB/s\", \"512KiB/s\", \"10Mbit/s\""
                    ),
                )
            })?,
            other => {
                return Err(self.err(
                    KEY,
                    format!("expected a number or a string like \"1MB/s\", got {}", other.type_str()),
                ));
            }
        };
        if !(bytes >= 1000.0 && bytes.is_finite()) {
            return Err(self.err(
                KEY,
                format!("must be at least 1000 bytes per second, got {bytes}"),
            ));
        }
        Ok(bytes as u64)
    }
}

fn is_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses `"<number><unit>/s"` into bytes per second (see `network.bandwidth`).
fn parse_bandwidth(text: &str) -> Option<f64> {
    let t = text.trim().strip_suffix("/s")?.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let number: f64 = number.parse().ok()?;
    let factor = match unit.trim() {
        "B" | "" => 1.0,
        "kB" | "KB" => 1e3,
        "MB" => 1e6,
        "GB" => 1e9,
        "KiB" => 1024.0,
        "MiB" => 1024.0 * 1024.0,
        "GiB" => 1024.0 * 1024.0 * 1024.0,
        "kbit" | "Kbit" => 1e3 / 8.0,
        "Mbit" => 1e6 / 8.0,
        "Gbit" => 1e9 / 8.0,
        _ => return None,
    };
    Some(number * factor)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "name = \"t\"\ndescription = \"a test\"\n";

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("scenarios/x.toml"), text, &Overrides::default())
    }

    fn error_of(text: &str) -> String {
        parse(text).unwrap_err().to_string()
    }

    #[test]
    fn minimal_file_gets_documented_defaults() {
        let s = parse(MINIMAL).unwrap();
        assert_eq!(s.transports, Transport::ALL.to_vec());
        assert_eq!(s.duration, Duration::from_secs(30));
        assert_eq!(s.warmup, Duration::from_secs(3));
        assert_eq!(s.drain, Duration::from_secs(2));
        assert_eq!(s.clients, 100);
        assert_eq!(s.connect_rate, 500.0);
        assert_eq!(s.room, "lobby");
        assert_eq!(s.senders, 1);
        assert_eq!(s.rate, 1.0);
        assert_eq!(s.payload_bytes, 100);
        assert_eq!(s.short_poll_interval, Duration::from_millis(500));
        assert_eq!(s.long_poll_timeout, Duration::from_secs(25));
        assert!(!s.network.is_active());
        assert!(s.sweep.is_none());
    }

    #[test]
    fn unknown_key_is_named_with_its_table() {
        let e = error_of(&format!("{MINIMAL}[clients]\ncout = 3\n"));
        assert!(
            e.starts_with("scenarios/x.toml: clients.cout: unknown key"),
            "{e}"
        );
        let e = error_of(&format!("{MINIMAL}speed = 3\n"));
        assert!(e.starts_with("scenarios/x.toml: speed: unknown key"), "{e}");
    }

    #[test]
    fn bad_duration_is_named() {
        let e = error_of(&format!("{MINIMAL}duration = \"30 parsecs\"\n"));
        assert!(
            e.starts_with("scenarios/x.toml: duration: not a duration"),
            "{e}"
        );
        let e = error_of(&format!("{MINIMAL}[short_poll]\ninterval = \"1ms\"\n"));
        assert!(
            e.starts_with("scenarios/x.toml: short_poll.interval: must be between"),
            "{e}"
        );
    }

    #[test]
    fn zero_clients_is_refused() {
        let e = error_of(&format!("{MINIMAL}[clients]\ncount = 0\n"));
        assert_eq!(
            e,
            "scenarios/x.toml: clients.count: must be at least 1, got 0"
        );
    }

    #[test]
    fn negative_rate_is_refused() {
        let e = error_of(&format!("{MINIMAL}[chat]\nrate = -1.5\n"));
        assert_eq!(
            e,
            "scenarios/x.toml: chat.rate: must not be negative, got -1.5"
        );
    }

    #[test]
    fn sweeping_a_key_that_cannot_be_swept_is_refused() {
        let e = error_of(&format!("{MINIMAL}[chat]\nsenders = [1, 2]\n"));
        assert!(
            e.starts_with("scenarios/x.toml: chat.senders: cannot be swept"),
            "{e}"
        );
        let e = error_of(&format!("{MINIMAL}duration = [\"1s\", \"2s\"]\n"));
        assert!(
            e.starts_with("scenarios/x.toml: duration: cannot be swept"),
            "{e}"
        );
    }

    #[test]
    fn two_swept_keys_are_refused() {
        let e = error_of(&format!(
            "{MINIMAL}[clients]\ncount = [10, 20]\n[chat]\nrate = [1.0, 2.0]\n"
        ));
        assert!(e.contains("only one key may be swept"), "{e}");
        assert!(
            e.contains("chat.rate") && e.contains("clients.count"),
            "{e}"
        );
    }

    #[test]
    fn missing_description_is_named() {
        let e = error_of("name = \"t\"\n");
        assert_eq!(e, "scenarios/x.toml: description: required key is missing");
    }

    #[test]
    fn wrong_type_is_named() {
        let e = error_of(&format!("{MINIMAL}[chat]\nsenders = \"ten\"\n"));
        assert!(
            e.starts_with("scenarios/x.toml: chat.senders: invalid type"),
            "{e}"
        );
    }

    #[test]
    fn more_senders_than_clients_is_refused() {
        let e = error_of(&format!(
            "{MINIMAL}[clients]\ncount = 5\n[chat]\nsenders = 6\n"
        ));
        assert!(
            e.starts_with("scenarios/x.toml: chat.senders: must be at most"),
            "{e}"
        );
    }

    #[test]
    fn unknown_transport_is_named() {
        let e = error_of(&format!("{MINIMAL}transports = [\"pigeon\"]\n"));
        assert!(
            e.starts_with("scenarios/x.toml: transports: unknown transport"),
            "{e}"
        );
    }

    #[test]
    fn sweep_expands_into_one_scenario_per_value() {
        let s = parse(&format!("{MINIMAL}[clients]\ncount = [100, 300, 1000]\n")).unwrap();
        let points = s.points();
        assert_eq!(points.len(), 3);
        assert_eq!(points[2].0, Some(1000.0));
        assert_eq!(points[2].1.clients, 1000);
        let s = parse(&format!("{MINIMAL}[network]\nrtt = [\"0ms\", \"50ms\"]\n")).unwrap();
        assert_eq!(s.points()[1].1.network.rtt, Duration::from_millis(50));
        assert_eq!(s.info().sweep.unwrap().unit, "ms");
    }

    #[test]
    fn overrides_replace_file_values_and_are_validated() {
        let o = Overrides {
            transports: Some(vec!["sse".into()]),
            clients: Some(7),
            duration: Some("4s".into()),
        };
        let s = Scenario::parse(Path::new("x.toml"), MINIMAL, &o).unwrap();
        assert_eq!(s.transports, vec![Transport::Sse]);
        assert_eq!(s.clients, 7);
        assert_eq!(s.duration, Duration::from_secs(4));
        let o = Overrides {
            clients: Some(0),
            ..Overrides::default()
        };
        let e = Scenario::parse(Path::new("x.toml"), MINIMAL, &o).unwrap_err();
        assert_eq!(e.key(), Some("clients.count"));
        assert!(e.to_string().ends_with("(set by --clients)"), "{e}");
    }

    #[test]
    fn bandwidth_accepts_bytes_and_units() {
        assert_eq!(parse_bandwidth("1MB/s"), Some(1e6));
        assert_eq!(parse_bandwidth("10Mbit/s"), Some(1.25e6));
        assert_eq!(parse_bandwidth("512KiB/s"), Some(524288.0));
        assert_eq!(parse_bandwidth("fast"), None);
        let s = parse(&format!("{MINIMAL}[network]\nbandwidth = 125000\n")).unwrap();
        assert_eq!(s.network.bandwidth_bytes_per_s, Some(125_000));
        assert!(s.network.is_active());
    }

    #[test]
    fn shipped_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
        for name in ["classroom.toml", "smoke.toml"] {
            let s = Scenario::load(&dir.join(name), &Overrides::default()).unwrap();
            assert!(!s.description.is_empty());
        }
    }
}
