//! Raw scenario -> checked [`Scenario`]. Each key's default and range come from the table in
//! `keys.rs`, and range errors are worded from it (`must be at least 1, got 0`, `must be
//! between 10ms and 10m, got 1ms`). The rules that tie keys together are here: `chat.senders`
//! at most the smallest `clients.count`, and a drain long enough for the slowest transport to
//! deliver the last messages (extended, with a note, when it is not).

use std::path::Path;
use std::time::Duration;

use wire::Transport;

use super::keys::{self, Default, Key, Range, duration_text, grouped};
use super::raw::RawScenario;
use super::stacks::known_stack;
use super::{Network, Overrides, Scenario, ScenarioError, Sweep, SweepKey};
use crate::clients::profile::ClientProfile;
use crate::recipients::ChatMode;
use crate::thresholds::{self, Origin};

/// What the drain must leave beyond the network's share and the poll interval: the server's
/// answer and the client's bookkeeping on a loaded 2-core machine.
const DRAIN_MARGIN: Duration = Duration::from_millis(100);

/// Validation with the file at hand, so every error can name it.
pub(super) struct Validator<'a> {
    pub file: &'a Path,
}

impl Validator<'_> {
    pub(super) fn err(&self, key: &str, problem: impl Into<String>) -> ScenarioError {
        ScenarioError::Invalid {
            file: self.file.to_owned(),
            key: key.to_owned(),
            problem: problem.into(),
        }
    }

    pub(super) fn validate(
        &self,
        raw: RawScenario,
        sweep_key: Option<SweepKey>,
        overrides: &Overrides,
    ) -> Result<Scenario, ScenarioError> {
        let name = self.name(&keys::NAME, Some(raw.name))?;
        if raw.description.trim().is_empty() {
            return Err(self.err(keys::DESCRIPTION.name, "must say what the scenario shows"));
        }
        let transports = self.transports(raw.transports)?;
        let stacks = self.stacks(raw.target, raw.stacks, &transports)?;
        let duration = self.duration(&keys::DURATION, raw.duration.as_deref())?;
        let warmup = self.duration(&keys::WARMUP, raw.warmup.as_deref())?;
        let drain = self.duration(&keys::DRAIN, raw.drain.as_deref())?;
        let seed = self.integer(&keys::SEED, raw.seed)? as u64;

        // Sweepable values: each is a list of f64 in the key's unit, one element when not swept.
        let key = &keys::CLIENTS_COUNT;
        let counts = self.sweep_values(key, raw.clients.count.as_ref(), |v| {
            self.integer_value(key, v)
        })?;
        let connect_rate = self.number(&keys::CLIENTS_CONNECT_RATE, raw.clients.connect_rate)?;

        let room = self.name(&keys::CHAT_ROOM, raw.chat.room)?;
        let senders = self.integer(&keys::CHAT_SENDERS, raw.chat.senders)?;
        let min_count = counts.iter().cloned().fold(f64::INFINITY, f64::min);
        if senders as f64 > min_count {
            return Err(self.err(
                keys::CHAT_SENDERS.name,
                format!("must be at most clients.count ({min_count}), got {senders}"),
            ));
        }
        let key = &keys::CHAT_RATE;
        let rates =
            self.sweep_values(key, raw.chat.rate.as_ref(), |v| self.number_value(key, v))?;
        let payload = self.integer(&keys::CHAT_PAYLOAD_BYTES, raw.chat.payload_bytes)?;
        let chat_mode = self
            .choice(&keys::CHAT_MODE, raw.chat.mode)?
            .and_then(|w| ChatMode::from_id(&w))
            .unwrap_or_default();
        let mut stacks = stacks;
        self.mode_for_stacks(chat_mode, min_count, &mut stacks)?;
        let cookie_bytes =
            self.integer(&keys::CLIENTS_COOKIE_BYTES, raw.clients.cookie_bytes)? as usize;
        let client_profile = match self
            .choice(&keys::CLIENTS_PROFILE, raw.clients.profile.clone())?
            .as_deref()
        {
            Some("minimal") => ClientProfile::Minimal,
            _ => ClientProfile::Browser { cookie_bytes },
        };

        let key = &keys::SHORT_POLL_INTERVAL;
        let intervals = self.sweep_values(key, raw.short_poll.interval.as_ref(), |v| {
            self.duration_value_ms(key, v)
        })?;
        let long_poll_timeout =
            self.duration(&keys::LONG_POLL_TIMEOUT, raw.long_poll.timeout.as_deref())?;

        let key = &keys::NETWORK_RTT;
        let rtts = self.sweep_values(key, raw.network.rtt.as_ref(), |v| {
            self.duration_value_ms(key, v)
        })?;
        let jitter = self.duration(&keys::NETWORK_JITTER, raw.network.jitter.as_deref())?;
        let bandwidth = match &raw.network.bandwidth {
            None => None,
            Some(v) => Some(self.bandwidth(v)?),
        };

        let mut thresholds = Vec::new();
        for (key, text) in flatten(raw.thresholds.unwrap_or_default()) {
            let dotted = format!("{}.{key}", keys::THRESHOLDS.name);
            let toml::Value::String(condition) = text else {
                return Err(self.err(
                    &dotted,
                    format!(
                        "expected a condition string like \"< 50\", got {}",
                        text.type_str()
                    ),
                ));
            };
            let t = thresholds::parse(&format!("{key} {condition}"), Origin::Scenario)
                .and_then(|t| known_stack(t, &stacks))
                .map_err(|e| self.err(&dotted, e.to_string()))?;
            thresholds.push(t);
        }
        for text in &overrides.thresholds {
            let t = thresholds::parse(text, Origin::Flag)
                .and_then(|t| known_stack(t, &stacks))
                .map_err(|e| {
                    self.err(keys::THRESHOLDS.name, format!("{e} (set by --threshold)"))
                })?;
            thresholds.push(t);
        }

        let mut notes = Vec::new();
        let max_ms = |values: &[f64]| {
            Duration::from_secs_f64(values.iter().cloned().fold(0.0, f64::max) / 1e3)
        };
        let measured: Vec<Transport> = stacks
            .iter()
            .flat_map(|s| s.transports.as_deref().unwrap_or(&transports))
            .copied()
            .collect();
        let drain = self.long_enough_drain(
            drain,
            &measured,
            max_ms(&intervals),
            max_ms(&rtts),
            jitter,
            &mut notes,
        );

        let sweep = sweep_key.map(|key| Sweep {
            key,
            values: match key {
                SweepKey::ClientsCount => counts.clone(),
                SweepKey::ChatRate => rates.clone(),
                SweepKey::NetworkRtt => rtts.clone(),
                SweepKey::ShortPollInterval => intervals.clone(),
            },
        });

        let cluster_nodes = self.integer(&keys::CLUSTER_NODES, raw.cluster.nodes)? as u64;
        let kill_node = self.kill_node(raw.faults.kill_node.as_deref(), duration, cluster_nodes)?;
        Ok(Scenario {
            file: self.file.to_owned(),
            name,
            description: raw.description.trim().to_owned(),
            transports,
            duration,
            warmup,
            drain,
            clients: counts[0] as u64,
            connect_rate,
            client_profile,
            room,
            senders: senders as u64,
            rate: rates[0],
            payload_bytes: payload as usize,
            chat_mode,
            short_poll_interval: Duration::from_secs_f64(intervals[0] / 1e3),
            long_poll_timeout,
            network: Network {
                rtt: Duration::from_secs_f64(rtts[0] / 1e3),
                jitter,
                bandwidth_bytes_per_s: bandwidth,
            },
            cluster_nodes,
            kill_node,
            sweep,
            seed,
            thresholds,
            notes,
            stacks,
        })
    }

    /// `faults.kill_node`: within the measured window, and only where there is a node to spare.
    fn kill_node(
        &self,
        text: Option<&str>,
        duration: Duration,
        nodes: u64,
    ) -> Result<Option<Duration>, ScenarioError> {
        let Some(text) = text else {
            return Ok(None);
        };
        let key = &keys::FAULTS_KILL_NODE;
        let at = self.parse_duration(key.name, text)?;
        self.check_duration(key, at)?;
        if at >= duration {
            return Err(self.err(
                key.name,
                format!(
                    "must be less than `duration` ({}), got {text:?}: the node dies inside the                      measured window",
                    humantime::format_duration(duration)
                ),
            ));
        }
        if nodes < 2 {
            return Err(self.err(
                key.name,
                format!(
                    "needs `cluster.nodes` of 2 or more (it is {nodes}): killing the only node                      leaves its clients nowhere to reconnect"
                ),
            ));
        }
        Ok(Some(at))
    }

    /// The drain the slowest transport needs: a message published at the window's end
    /// travels in (rtt/2 + jitter), waits for the next short poll (up to one interval), and
    /// travels out (rtt/2 + jitter); push transports and long polls need only the trips.
    /// A shorter drain would count those last messages as missing, which is the loadgen's
    /// artifact, not the transport's, so it is extended and the note says so.
    fn long_enough_drain(
        &self,
        drain: Duration,
        transports: &[Transport],
        interval: Duration,
        rtt: Duration,
        jitter: Duration,
        notes: &mut Vec<String>,
    ) -> Duration {
        let polls = transports.contains(&Transport::ShortPoll);
        let wait = if polls { interval } else { Duration::ZERO };
        let needed = wait + rtt + 2 * jitter + DRAIN_MARGIN;
        if drain >= needed {
            return drain;
        }
        // Whole tenths of a second, so the note and results.json show a round figure.
        let needed = Duration::from_millis(needed.as_millis().div_ceil(100) as u64 * 100);
        let mut parts = Vec::new();
        if polls {
            parts.push(format!("short_poll.interval {}", duration_text(interval)));
        }
        parts.push(format!("network.rtt {}", duration_text(rtt)));
        parts.push(format!("2 x network.jitter {}", duration_text(jitter)));
        parts.push(format!("{} margin", duration_text(DRAIN_MARGIN)));
        notes.push(format!(
            "{}: drain: extended from {} to {} so the last messages can still arrive ({}); otherwise they would count as missing",
            self.file.display(),
            duration_text(drain),
            duration_text(needed),
            parts.join(" + ")
        ));
        needed
    }

    pub(super) fn name(&self, key: &Key, value: Option<String>) -> Result<String, ScenarioError> {
        let value = match (value, key.default) {
            (Some(v), _) => v,
            (None, Default::Text(d)) => d.to_owned(),
            (None, _) => return Err(self.err(key.name, "required key is missing")),
        };
        if let Range::Name { max_len } = key.range
            && (value.is_empty() || value.len() > max_len || !is_name(&value))
        {
            return Err(self.err(
                key.name,
                format!("must be 1 to {max_len} letters, digits, '_' or '-', got {value:?}"),
            ));
        }
        Ok(value)
    }

    pub(super) fn transports(
        &self,
        list: Option<Vec<String>>,
    ) -> Result<Vec<Transport>, ScenarioError> {
        let key = keys::TRANSPORTS.name;
        // The default ("all four, in that order"), as the table says.
        let Some(list) = list else {
            return Ok(Transport::ALL.to_vec());
        };
        if list.is_empty() {
            return Err(self.err(key, "must name at least one transport"));
        }
        let mut out = Vec::new();
        for t in list {
            let t: Transport = t.parse().map_err(|e| self.err(key, format!("{e}")))?;
            if out.contains(&t) {
                return Err(self.err(key, format!("{t} is listed twice")));
            }
            out.push(t);
        }
        Ok(out)
    }

    /// A possibly swept value: a scalar gives one value, an array gives its values (at least
    /// two, no repeats); missing gives the key's default.
    fn sweep_values(
        &self,
        key: &Key,
        value: Option<&toml::Value>,
        one: impl Fn(&toml::Value) -> Result<f64, ScenarioError>,
    ) -> Result<Vec<f64>, ScenarioError> {
        match value {
            None => Ok(vec![one(&default_value(key))?]),
            Some(toml::Value::Array(items)) => {
                if items.len() < 2 {
                    return Err(self.err(key.name, "a sweep needs at least two values"));
                }
                if items.len() > 50 {
                    return Err(self.err(key.name, "a sweep may have at most 50 values"));
                }
                let values = items.iter().map(one).collect::<Result<Vec<_>, _>>()?;
                for (i, v) in values.iter().enumerate() {
                    if values[..i].contains(v) {
                        return Err(self.err(key.name, format!("sweep value {v} is listed twice")));
                    }
                }
                Ok(values)
            }
            Some(v) => Ok(vec![one(v)?]),
        }
    }

    pub(super) fn integer(&self, key: &Key, value: Option<i64>) -> Result<i64, ScenarioError> {
        let i = match (value, key.default) {
            (Some(i), _) => i,
            (None, Default::Integer(d)) => d,
            (None, _) => return Err(self.err(key.name, "required key is missing")),
        };
        self.check_integer(key, i)?;
        Ok(i)
    }

    fn integer_value(&self, key: &Key, v: &toml::Value) -> Result<f64, ScenarioError> {
        match v {
            toml::Value::Integer(i) => {
                self.check_integer(key, *i)?;
                Ok(*i as f64)
            }
            other => Err(self.err(
                key.name,
                format!("expected an integer, got {}", other.type_str()),
            )),
        }
    }

    fn check_integer(&self, key: &Key, i: i64) -> Result<(), ScenarioError> {
        let (min, max) = match key.range {
            Range::Integer { min, max } => (min, Some(max)),
            Range::IntegerUpTo { min, .. } => (min, None),
            _ => return Ok(()),
        };
        if i < min {
            return Err(self.err(
                key.name,
                format!("must be at least {}, got {i}", grouped(min as f64)),
            ));
        }
        if let Some(max) = max
            && i > max
        {
            return Err(self.err(
                key.name,
                format!(
                    "must be at most {}{}, got {i}",
                    grouped(max as f64),
                    key.note_suffix()
                ),
            ));
        }
        Ok(())
    }

    fn number(&self, key: &Key, value: Option<f64>) -> Result<f64, ScenarioError> {
        match value {
            Some(x) => self.number_value(key, &toml::Value::Float(x)),
            None => self.number_value(key, &default_value(key)),
        }
    }

    fn number_value(&self, key: &Key, v: &toml::Value) -> Result<f64, ScenarioError> {
        let x = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            other => {
                return Err(self.err(
                    key.name,
                    format!("expected a number, got {}", other.type_str()),
                ));
            }
        };
        let Range::Number {
            min,
            min_exclusive,
            max,
        } = key.range
        else {
            return Ok(x);
        };
        let unit = key.unit;
        if !x.is_finite() || x < min || (min_exclusive && x == min) {
            let problem = match (min, min_exclusive) {
                (0.0, false) => format!("must not be negative, got {x}"),
                (_, true) => format!("must be above {} {unit}, got {x}", grouped(min)),
                (_, false) => format!("must be at least {} {unit}, got {x}", grouped(min)),
            };
            return Err(self.err(key.name, problem));
        }
        if x > max {
            return Err(self.err(
                key.name,
                format!(
                    "must be at most {} {unit}{}, got {x}",
                    grouped(max),
                    key.note_suffix()
                ),
            ));
        }
        Ok(x)
    }

    fn duration(&self, key: &Key, text: Option<&str>) -> Result<Duration, ScenarioError> {
        let text = match (text, key.default) {
            (Some(t), _) => t,
            (None, Default::Duration(d)) => d,
            (None, _) => return Err(self.err(key.name, "required key is missing")),
        };
        let d = self.parse_duration(key.name, text)?;
        self.check_duration(key, d)?;
        Ok(d)
    }

    fn duration_value_ms(&self, key: &Key, v: &toml::Value) -> Result<f64, ScenarioError> {
        match v {
            toml::Value::String(s) => {
                let d = self.parse_duration(key.name, s)?;
                self.check_duration(key, d)?;
                Ok(d.as_secs_f64() * 1e3)
            }
            other => Err(self.err(
                key.name,
                format!(
                    "expected a duration string like \"500ms\", got {}",
                    other.type_str()
                ),
            )),
        }
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

    fn check_duration(&self, key: &Key, d: Duration) -> Result<(), ScenarioError> {
        if let Range::Duration { min, max } = key.range
            && (d < min || d > max)
        {
            return Err(self.err(
                key.name,
                format!(
                    "must be between {} and {}{}, got {}",
                    duration_text(min),
                    duration_text(max),
                    key.note_suffix(),
                    duration_text(d)
                ),
            ));
        }
        Ok(())
    }

    fn bandwidth(&self, v: &toml::Value) -> Result<u64, ScenarioError> {
        let key = &keys::NETWORK_BANDWIDTH;
        let bytes = match v {
            toml::Value::Integer(i) => *i as f64,
            toml::Value::Float(f) => *f,
            toml::Value::String(s) => parse_bandwidth(s).ok_or_else(|| {
                self.err(
                    key.name,
                    format!(
                        "not a bandwidth, got {s:?}; write bytes per second (125000) or e.g. \"1MB/s\", \"512KiB/s\", \"10Mbit/s\""
                    ),
                )
            })?,
            other => {
                return Err(self.err(
                    key.name,
                    format!("expected a number or a string like \"1MB/s\", got {}", other.type_str()),
                ));
            }
        };
        let Range::AtLeast(min) = key.range else {
            unreachable!("network.bandwidth has a lower bound");
        };
        if !(bytes >= min && bytes.is_finite()) {
            return Err(self.err(
                key.name,
                format!(
                    "must be at least {} bytes per second, got {bytes}",
                    grouped(min)
                ),
            ));
        }
        Ok(bytes as u64)
    }
}

/// A key's default as the TOML value the file would have written.
fn default_value(key: &Key) -> toml::Value {
    match key.default {
        Default::Integer(i) => toml::Value::Integer(i),
        Default::Number(x) => toml::Value::Float(x),
        Default::Text(s) | Default::Duration(s) => toml::Value::String(s.to_owned()),
        Default::Required | Default::Described(_) => {
            unreachable!("{} has no literal default", key.name)
        }
    }
}

/// `[thresholds]` entries as (dotted name, value): a quoted key (`"websocket.latency_p99_ms"`)
/// and nested tables (`websocket.latency_p99_ms` unquoted, which TOML reads as a table) read
/// the same.
fn flatten(table: toml::Table) -> Vec<(String, toml::Value)> {
    let mut out = Vec::new();
    for (key, value) in table {
        match value {
            toml::Value::Table(inner) => {
                out.extend(
                    flatten(inner)
                        .into_iter()
                        .map(|(k, v)| (format!("{key}.{k}"), v)),
                );
            }
            other => out.push((key, other)),
        }
    }
    out
}

fn is_name(s: &str) -> bool {
    s.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Parses `"<number><unit>/s"` into bytes per second (see `network.bandwidth`).
pub(super) fn parse_bandwidth(text: &str) -> Option<f64> {
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
