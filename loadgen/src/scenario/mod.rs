//! Scenario files: TOML parsed into raw serde structs (`deny_unknown_fields`, `raw.rs`), then
//! validated (`validate.rs`) into a typed [`Scenario`]. Every error names the file, the dotted
//! key and the problem, e.g. `scenarios/x.toml: clients.count: must be at least 1, got 0`, and
//! the flag when a flag set the value, and is raised before any load.
//!
//! Each key is described once, in the table [`keys::KEYS`] (type, default, range, unit,
//! sweepable, doc): validation reads defaults and ranges from it, and a test checks
//! `scenarios/README.md` against it. The sweep rule: one sweepable key may be given a list of
//! values, and [`Scenario::points`] expands it into one resolved scenario per value. Running a
//! scenario is the runner's business; judging its results against `[thresholds]` is
//! `crate::thresholds`'s.
//!
//! Command-line overrides (`--clients`, `--duration`, `--transports`, `--seed`, `--peer`,
//! `--socketio-websocket`) are applied to
//! the parsed TOML *before* validation, so they are checked by exactly the same rules as the
//! file; `--threshold` flags are parsed beside the file's `[thresholds]`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use wire::Transport;

pub mod keys;
mod raw;
pub mod stacks;
pub mod target;
#[cfg(test)]
mod tests;
mod text;
mod validate;

pub use keys::{MAX_CLIENTS, MAX_PAYLOAD_BYTES, MIN_PAYLOAD_BYTES};
pub use stacks::Stack;
pub use target::{ProtocolChoice, TargetSpec};

use crate::thresholds::Threshold;

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
    /// The request headers the clients send.
    pub client_profile: crate::clients::profile::ClientProfile,
    /// Room name prefix.
    pub room: String,
    /// Clients that also publish.
    pub senders: u64,
    /// Messages per second per sender.
    pub rate: f64,
    /// Bytes per published body.
    pub payload_bytes: usize,
    /// Who each message is for.
    pub chat_mode: crate::recipients::ChatMode,
    /// Short-poll timer period.
    pub short_poll_interval: Duration,
    /// Long-poll hold timeout.
    pub long_poll_timeout: Duration,
    /// Emulated network.
    pub network: Network,
    /// duplex nodes to start on one Redis backplane (1: one node, no Redis).
    pub cluster_nodes: u64,
    /// `faults.kill_node`: when in each measured window the cluster's last node is killed.
    pub kill_node: Option<Duration>,
    /// The swept key and its values, if any.
    pub sweep: Option<Sweep>,
    /// The one seed for every random choice of the run (publish schedules, poll phases,
    /// jitter); recorded in the results.
    pub seed: u64,
    /// Checks the finished run must pass: the file's `[thresholds]`, then the `--threshold`
    /// flags. The integrity rule and `--strict` are added when the run is judged.
    pub thresholds: Vec<Threshold>,
    /// What validation changed and the user should hear about (e.g. a drain extended so the
    /// last messages can arrive), each naming the file and the key.
    pub notes: Vec<String>,
    /// The servers measured, in order: the `[[stacks]]`, or the one `[target]` (a stack
    /// without a name).
    pub stacks: Vec<Stack>,
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
    /// `--seed`
    pub seed: Option<i64>,
    /// `--peer` (replaces `target.peer`)
    pub peer: Option<String>,
    /// `--socketio-websocket` (replaces `target.socketio_websocket`, and the key of every
    /// Socket.IO entry of `[[stacks]]`)
    pub socketio_websocket: Option<String>,
    /// `--threshold`, each `<transport>.<metric> <op> <number>`, added to the file's.
    pub thresholds: Vec<String>,
}

impl Overrides {
    /// Says which flag set the value when an error is about a key a flag replaced.
    fn blame(&self, error: ScenarioError) -> ScenarioError {
        let flag = match error.key() {
            Some("transports") if self.transports.is_some() => "--transports",
            Some("duration") if self.duration.is_some() => "--duration",
            Some("clients.count") if self.clients.is_some() => "--clients",
            Some("seed") if self.seed.is_some() => "--seed",
            Some("target.peer" | "target.url" | "target.protocol" | "transports" | "stacks")
                if self.peer.is_some() =>
            {
                "--peer"
            }
            Some(key)
                if key.ends_with(".socketio_websocket") && self.socketio_websocket.is_some() =>
            {
                "--socketio-websocket"
            }
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
        let mut table = raw::parse_toml(file, text)?;
        raw::apply_overrides(&mut table, overrides);
        let checked = raw::find_sweep(file, &table).and_then(|sweep_key| {
            let raw = raw::deserialize(file, table)?;
            validate::Validator { file }.validate(raw, sweep_key, overrides)
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
            chat_mode: Some(self.chat_mode.id().to_owned()),
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
            seed: Some(self.seed),
            cluster_nodes: self.cluster_nodes,
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
