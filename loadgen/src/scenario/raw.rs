//! What a scenario file says, as serde reads it: one struct per table, `deny_unknown_fields`
//! everywhere, every key optional where it has a default. Nothing here checks a range; that is
//! `validate.rs`, reading the table in `keys.rs`, which also documents every field below.
//!
//! Also here, because they work on the file's TOML before it becomes these structs: the
//! command-line overrides (applied to the TOML, so they meet exactly the file's rules), the
//! search for the one swept key, and turning serde's errors into ones naming the dotted key.

use serde::Deserialize;

use super::keys::{self, KEYS};
use super::stacks as keys_stacks;
use super::target as keys_target;
use super::{Overrides, ScenarioError, SweepKey};

/// A scenario file as written. Unknown keys are errors. Fields: see [`keys::KEYS`].
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawScenario {
    pub name: String,
    pub description: String,
    #[serde(default)]
    pub transports: Option<Vec<String>>,
    #[serde(default)]
    pub duration: Option<String>,
    #[serde(default)]
    pub warmup: Option<String>,
    #[serde(default)]
    pub drain: Option<String>,
    #[serde(default)]
    pub seed: Option<i64>,
    /// Checked entry by entry by the threshold grammar, so kept as TOML here.
    #[serde(default)]
    pub thresholds: Option<toml::Table>,
    #[serde(default)]
    pub clients: RawClients,
    #[serde(default)]
    pub chat: RawChat,
    #[serde(default)]
    pub short_poll: RawShortPoll,
    #[serde(default)]
    pub long_poll: RawLongPoll,
    #[serde(default)]
    pub network: RawNetwork,
    #[serde(default)]
    pub target: Option<RawTarget>,
    #[serde(default)]
    pub stacks: Option<Vec<RawStack>>,
    #[serde(default)]
    pub cluster: RawCluster,
    #[serde(default)]
    pub faults: RawFaults,
}

/// One `[[stacks]]` entry: a `[target]` table plus its name and transports. It repeats
/// [`RawTarget`]'s fields because serde cannot deny unknown fields through `#[serde(flatten)]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawStack {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub transports: Option<Vec<String>>,
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub nchan_buffer: Option<i64>,
    #[serde(default)]
    pub socketio_websocket: Option<String>,
    #[serde(default)]
    pub subscribe: Option<String>,
    #[serde(default)]
    pub publish: Option<String>,
    #[serde(default)]
    pub publish_body: Option<String>,
}

/// `[target]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTarget {
    #[serde(default)]
    pub peer: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub nchan_buffer: Option<i64>,
    #[serde(default)]
    pub socketio_websocket: Option<String>,
    #[serde(default)]
    pub subscribe: Option<String>,
    #[serde(default)]
    pub publish: Option<String>,
    #[serde(default)]
    pub publish_body: Option<String>,
}

/// `[faults]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFaults {
    #[serde(default)]
    pub kill_node: Option<String>,
}

/// `[cluster]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCluster {
    #[serde(default)]
    pub nodes: Option<i64>,
}

/// `[clients]`. Sweepable keys are kept as TOML values: a scalar or a list.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawClients {
    #[serde(default)]
    pub count: Option<toml::Value>,
    #[serde(default)]
    pub connect_rate: Option<f64>,
    #[serde(default)]
    pub profile: Option<String>,
    #[serde(default)]
    pub cookie_bytes: Option<i64>,
}

/// `[chat]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawChat {
    #[serde(default)]
    pub room: Option<String>,
    #[serde(default)]
    pub senders: Option<i64>,
    #[serde(default)]
    pub rate: Option<toml::Value>,
    #[serde(default)]
    pub payload_bytes: Option<i64>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// `[short_poll]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawShortPoll {
    #[serde(default)]
    pub interval: Option<toml::Value>,
}

/// `[long_poll]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawLongPoll {
    #[serde(default)]
    pub timeout: Option<String>,
}

/// `[network]`
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawNetwork {
    #[serde(default)]
    pub rtt: Option<toml::Value>,
    #[serde(default)]
    pub jitter: Option<String>,
    #[serde(default)]
    pub bandwidth: Option<toml::Value>,
}

/// Parses the file's text into TOML, naming the file when it is not TOML.
pub(super) fn parse_toml(file: &std::path::Path, text: &str) -> Result<toml::Table, ScenarioError> {
    text.parse()
        .map_err(|e: toml::de::Error| ScenarioError::Syntax {
            file: file.to_owned(),
            message: e.to_string().trim_end().replace('\n', " "),
        })
}

/// Deserializes the TOML into [`RawScenario`], turning serde's error into one naming the key.
pub(super) fn deserialize(
    file: &std::path::Path,
    table: toml::Table,
) -> Result<RawScenario, ScenarioError> {
    serde_path_to_error::deserialize(table).map_err(|e| {
        let key = e.path().to_string();
        let inner = e.into_inner().to_string();
        raw_error(file, &key, &inner)
    })
}

/// Writes the command-line values into the TOML, replacing the file's.
pub(super) fn apply_overrides(table: &mut toml::Table, o: &Overrides) {
    if let Some(ts) = &o.transports {
        let list = ts.iter().map(|t| toml::Value::String(t.clone())).collect();
        table.insert(keys::TRANSPORTS.name.into(), toml::Value::Array(list));
    }
    if let Some(d) = &o.duration {
        table.insert(keys::DURATION.name.into(), toml::Value::String(d.clone()));
    }
    if let Some(seed) = o.seed {
        table.insert(keys::SEED.name.into(), toml::Value::Integer(seed));
    }
    if let Some(peer) = &o.peer {
        // One peer instead of the file's stacks: `--peer` measures that stack alone.
        table.remove(keys_stacks::STACKS_NAME.section().unwrap_or_default());
        let target = table
            .entry(keys_target::TARGET_PEER.section().unwrap_or_default())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = target {
            t.insert(
                keys_target::TARGET_PEER.field().into(),
                toml::Value::String(peer.clone()),
            );
        }
    }
    if let Some(how) = &o.socketio_websocket {
        let field = keys_target::TARGET_SOCKETIO_WEBSOCKET.field();
        let value = toml::Value::String(how.clone());
        match table.get_mut(keys_stacks::STACKS_NAME.section().unwrap_or_default()) {
            // Every Socket.IO entry of the stacks: the flag says how Socket.IO's WebSocket opens.
            Some(toml::Value::Array(entries)) => {
                for entry in entries.iter_mut().filter_map(toml::Value::as_table_mut) {
                    let speaks =
                        |k: &str| entry.get(k).and_then(toml::Value::as_str) == Some("socketio");
                    if speaks("peer") || speaks("protocol") {
                        entry.insert(field.into(), value.clone());
                    }
                }
            }
            _ => {
                let target = table
                    .entry(
                        keys_target::TARGET_SOCKETIO_WEBSOCKET
                            .section()
                            .unwrap_or_default(),
                    )
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = target {
                    t.insert(field.into(), value);
                }
            }
        }
    }
    if let Some(n) = o.clients {
        let clients = table
            .entry(keys::CLIENTS_COUNT.section().unwrap_or_default())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = clients {
            t.insert(
                keys::CLIENTS_COUNT.field().into(),
                toml::Value::Integer(i64::try_from(n).unwrap_or(i64::MAX)),
            );
        }
    }
}

fn invalid(file: &std::path::Path, key: &str, problem: impl Into<String>) -> ScenarioError {
    ScenarioError::Invalid {
        file: file.to_owned(),
        key: key.to_owned(),
        problem: problem.into(),
    }
}

/// Turns a serde error at `path` into a message naming the dotted key. Unknown keys are
/// reported at their own dotted name (`clients.cout`), not at the enclosing table.
fn raw_error(file: &std::path::Path, path: &str, inner: &str) -> ScenarioError {
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
        return invalid(
            file,
            &join(field),
            format!(
                "unknown key{}",
                expected.replace(", expected", "; expected")
            ),
        );
    }
    if let Some(rest) = inner.strip_prefix("missing field `") {
        let field = rest.split('`').next().unwrap_or(rest);
        return invalid(file, &join(field), "required key is missing");
    }
    let key = if path.is_empty() { "." } else { path };
    invalid(file, key, inner.to_owned())
}

/// Finds the one key given a list of values. `transports` and `[[stacks]]` are lists by nature
/// and are not sweeps, and `[thresholds]` entries are not keys of the format. Two swept keys, or a list
/// where a sweep is not allowed, are errors.
pub(super) fn find_sweep(
    file: &std::path::Path,
    table: &toml::Table,
) -> Result<Option<SweepKey>, ScenarioError> {
    let mut found: Option<SweepKey> = None;
    let mut visit = |key: String, value: &toml::Value| -> Result<(), ScenarioError> {
        if !matches!(value, toml::Value::Array(_)) || key == keys::TRANSPORTS.name {
            return Ok(());
        }
        let sweepable = keys::key(&key).is_some_and(|k| k.sweep);
        let Some(k) = SweepKey::from_dotted(&key).filter(|_| sweepable) else {
            let allowed: Vec<_> = KEYS.iter().filter(|k| k.sweep).map(|k| k.name).collect();
            return Err(invalid(
                file,
                &key,
                format!(
                    "cannot be swept (a list of values is allowed only for {})",
                    allowed.join(", ")
                ),
            ));
        };
        if let Some(first) = found {
            return Err(invalid(
                file,
                &key,
                format!("only one key may be swept, but both {first} and {key} are lists"),
            ));
        }
        found = Some(k);
        Ok(())
    };
    for (key, value) in table {
        // `[[stacks]]` is a list of tables by nature, not a sweep.
        if key == keys::THRESHOLDS.name || Some(key.as_str()) == keys_stacks::STACKS_NAME.section()
        {
            continue;
        }
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
