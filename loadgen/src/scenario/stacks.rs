//! `[[stacks]]`: several servers measured in one run, under the same clients and message rate,
//! so one report compares them side by side (rows: stack x transport). Each entry is a
//! `[target]` table (the same keys, checked by the same rules) plus a `name` for the report's
//! rows and the `transports` it runs. A scenario gives `[target]` or `[[stacks]]`, not both;
//! with neither, or with `[target]`, it measures one stack and its phases carry no stack name,
//! exactly as before stacks existed.

use wire::Transport;

use super::ScenarioError;
use super::keys::{Default, Key, Range, Type};
use super::raw::{RawStack, RawTarget};
use super::target::TargetSpec;
use super::validate::Validator;
use crate::thresholds::{Threshold, ThresholdError};

/// One server a run measures, and the transports it is measured on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stack {
    /// Its name in the report (`stacks.name`); `None` for a scenario's one `[target]`.
    pub name: Option<String>,
    /// The server and what it speaks.
    pub target: TargetSpec,
    /// Its own transports (`stacks.transports`), in the order run; `None`: the scenario's.
    pub transports: Option<Vec<Transport>>,
}

impl Stack {
    /// The transports it runs in scenario `s` (its own, else the scenario's).
    pub fn transports<'a>(&'a self, s: &'a super::Scenario) -> &'a [Transport] {
        self.transports.as_deref().unwrap_or(&s.transports)
    }
}

/// `stacks.name`
pub const STACKS_NAME: Key = Key {
    name: "stacks.name",
    ty: Type::Name,
    default: Default::Described(
        "the entry's `peer`, else its `protocol` (`\"duplex\"` when neither)",
    ),
    range: Range::Name { max_len: 32 },
    range_note: "unique among the stacks",
    unit: "text",
    sweep: false,
    doc: "the stack's name in the report: its rows are `<name> · <transport>` (`nchan · SSE`), its CSV lines carry it in the `stack` column",
};

/// `stacks.transports`
pub const STACKS_TRANSPORTS: Key = Key {
    name: "stacks.transports",
    ty: Type::Transports,
    default: Default::Described("the scenario's `transports`"),
    range: Range::Transports,
    range_note: "only transports the stack has",
    unit: "list",
    sweep: false,
    doc: "the transports this stack is measured on, in order (Socket.IO has only `long_poll` and `websocket`)",
};

impl RawStack {
    /// The entry's `[target]` keys.
    fn target(&self) -> RawTarget {
        RawTarget {
            peer: self.peer.clone(),
            url: self.url.clone(),
            protocol: self.protocol.clone(),
            nchan_buffer: self.nchan_buffer,
            socketio_websocket: self.socketio_websocket.clone(),
            subscribe: self.subscribe.clone(),
            publish: self.publish.clone(),
            publish_body: self.publish_body.clone(),
        }
    }
}

impl Validator<'_> {
    /// The stacks a scenario measures: its `[[stacks]]`, or its one `[target]` (or duplex).
    pub(super) fn stacks(
        &self,
        target: Option<RawTarget>,
        stacks: Option<Vec<RawStack>>,
        transports: &[Transport],
    ) -> Result<Vec<Stack>, ScenarioError> {
        let entries = match (target, stacks) {
            (Some(_), Some(_)) => {
                return Err(self.err(
                    "stacks",
                    "give [target] (one server) or [[stacks]] (several), not both",
                ));
            }
            (target, None) => {
                return Ok(vec![Stack {
                    name: None,
                    target: self.target(target.unwrap_or_default(), transports)?,
                    transports: None,
                }]);
            }
            (None, Some(entries)) => entries,
        };
        if entries.is_empty() {
            return Err(self.err("stacks", "must list at least one stack"));
        }
        let mut out: Vec<Stack> = Vec::new();
        for (i, entry) in entries.into_iter().enumerate() {
            let at = |e| at_entry(i, e);
            let own = match &entry.transports {
                Some(list) => Some(self.transports(Some(list.clone())).map_err(at)?),
                None => None,
            };
            let target = self
                .target(entry.target(), own.as_deref().unwrap_or(transports))
                .map_err(at)?;
            let default_name = target
                .peer
                .as_ref()
                .map_or(target.protocol.id(), |p| p.name());
            let name = entry
                .name
                .clone()
                .unwrap_or_else(|| default_name.to_owned());
            let name = self.name(&STACKS_NAME, Some(name)).map_err(at)?;
            if out.iter().any(|s| s.name.as_deref() == Some(name.as_str())) {
                return Err(at(self.err(
                    STACKS_NAME.name,
                    format!("two stacks are named {name:?}; give each its own stacks.name"),
                )));
            }
            out.push(Stack {
                name: Some(name),
                target,
                transports: own,
            });
        }
        Ok(out)
    }
}

/// The rules for one entry word their errors for `target.x`, `transports` or `stacks.x`; in
/// the file the key is the entry's, `stacks[i].x`.
fn at_entry(i: usize, e: ScenarioError) -> ScenarioError {
    match e {
        ScenarioError::Invalid { file, key, problem } => {
            let field = key
                .strip_prefix("target.")
                .or_else(|| key.strip_prefix("stacks."))
                .unwrap_or(&key);
            ScenarioError::Invalid {
                file,
                key: format!("stacks[{i}].{field}"),
                problem,
            }
        }
        other => other,
    }
}

/// `t`, when the stack it names (if any) is one of `stacks`: a threshold on a stack the
/// scenario does not measure would be skipped silently run after run.
pub(super) fn known_stack(t: Threshold, stacks: &[Stack]) -> Result<Threshold, ThresholdError> {
    let Some(name) = t.stack.as_deref() else {
        return Ok(t);
    };
    let names: Vec<&str> = stacks.iter().filter_map(|s| s.name.as_deref()).collect();
    if names.contains(&name) {
        return Ok(t);
    }
    Err(ThresholdError::new(if names.is_empty() {
        format!(
            "`{t}` names the stack `{name}`, but this scenario measures one server and names \
             no stacks (a threshold names a stack only with `[[stacks]]`)"
        )
    } else {
        format!(
            "`{t}` names the stack `{name}`, which this scenario does not measure (its stacks: {})",
            names.join(", ")
        )
    }))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use wire::Transport;

    use super::super::{Overrides, Scenario};

    const HEAD: &str = "name = \"t\"\ndescription = \"a test\"\n";

    fn parse(text: &str, overrides: &Overrides) -> Result<Scenario, String> {
        Scenario::parse(
            Path::new("scenarios/x.toml"),
            &format!("{HEAD}{text}"),
            overrides,
        )
        .map_err(|e| e.to_string())
    }

    const THREE: &str = r#"
[[stacks]]
name = "duplex"
[[stacks]]
peer = "nchan"
[[stacks]]
peer = "socketio"
transports = ["long_poll", "websocket"]
[[stacks]]
name = "socketio-upgrade"
peer = "socketio"
socketio_websocket = "upgrade"
transports = ["websocket"]
"#;

    #[test]
    fn stacks_are_named_after_their_peer_and_keep_their_own_transports() {
        let s = parse(THREE, &Overrides::default()).unwrap();
        let names: Vec<_> = s.stacks.iter().map(|st| st.name.clone().unwrap()).collect();
        assert_eq!(names, ["duplex", "nchan", "socketio", "socketio-upgrade"]);
        assert_eq!(s.stacks[1].transports(&s), Transport::ALL);
        assert_eq!(
            s.stacks[2].transports(&s),
            [Transport::LongPoll, Transport::WebSocket]
        );
        assert_eq!(s.stacks[3].target.protocol.id(), "socketio");
        assert_ne!(s.stacks[3].target.protocol, s.stacks[2].target.protocol);
    }

    #[test]
    fn a_scenario_without_stacks_measures_one_unnamed_stack() {
        let s = parse("[target]\npeer = \"nchan\"\n", &Overrides::default()).unwrap();
        assert_eq!(s.stacks.len(), 1);
        assert_eq!(s.stacks[0].name, None);
        assert_eq!(s.stacks[0].target.peer.as_ref().unwrap().name(), "nchan");
    }

    #[test]
    fn errors_name_the_entry() {
        let e = parse("[[stacks]]\npeer = \"socketio\"\n", &Overrides::default()).unwrap_err();
        assert!(
            e.starts_with("scenarios/x.toml: stacks[0].transports: socketio has no short_poll"),
            "{e}"
        );
        let e = parse("[[stacks]]\n[[stacks]]\n", &Overrides::default()).unwrap_err();
        assert_eq!(
            e,
            "scenarios/x.toml: stacks[1].name: two stacks are named \"duplex\"; give each its own stacks.name"
        );
        let e = parse("[[stacks]]\nbuffer = 3\n", &Overrides::default()).unwrap_err();
        assert!(e.contains("stacks[0].buffer: unknown key"), "{e}");
        let e = parse("[target]\n[[stacks]]\n", &Overrides::default()).unwrap_err();
        assert!(e.contains("not both"), "{e}");
    }

    #[test]
    fn peer_flag_measures_that_stack_alone() {
        let overrides = Overrides {
            peer: Some("nchan".into()),
            ..Overrides::default()
        };
        let s = parse(THREE, &overrides).unwrap();
        assert_eq!(s.stacks.len(), 1);
        assert_eq!(s.stacks[0].target.peer.as_ref().unwrap().name(), "nchan");
    }

    #[test]
    fn the_socketio_websocket_flag_sets_every_socketio_stack_and_is_blamed_for_bad_values() {
        use crate::scenario::ProtocolChoice;
        let overrides = Overrides {
            socketio_websocket: Some("upgrade".into()),
            ..Overrides::default()
        };
        let s = parse(THREE, &overrides).unwrap();
        assert_eq!(
            s.stacks[2].target.protocol,
            ProtocolChoice::SocketIo { upgrade: true }
        );
        assert_eq!(s.stacks[1].target.protocol, ProtocolChoice::Nchan);
        let one = "transports = [\"websocket\"]\n[target]\npeer = \"socketio\"\n";
        let s = parse(one, &overrides).unwrap();
        assert_eq!(
            s.stacks[0].target.protocol,
            ProtocolChoice::SocketIo { upgrade: true }
        );
        let bad = Overrides {
            socketio_websocket: Some("sideways".into()),
            ..Overrides::default()
        };
        let e = parse(one, &bad).unwrap_err();
        assert!(
            e.contains("target.socketio_websocket: must be one of")
                && e.ends_with("(set by --socketio-websocket)"),
            "{e}"
        );
    }

    #[test]
    fn a_threshold_may_name_a_stack_the_scenario_measures_and_no_other() {
        let with = |t: &str| format!("{THREE}[thresholds]\n{t}\n");
        let s = parse(
            &with("\"nchan.sse.latency_p99_ms\" = \"< 80\""),
            &Overrides::default(),
        )
        .unwrap();
        assert_eq!(s.thresholds[0].stack.as_deref(), Some("nchan"));
        assert_eq!(s.thresholds[0].to_string(), "nchan.sse.latency_p99_ms < 80");
        let e = parse(
            &with("\"nchn.sse.missing\" = \"<= 3\""),
            &Overrides::default(),
        )
        .unwrap_err();
        assert_eq!(
            e,
            "scenarios/x.toml: thresholds.nchn.sse.missing: `nchn.sse.missing <= 3` names the stack \
             `nchn`, which this scenario does not measure (its stacks: duplex, nchan, socketio, \
             socketio-upgrade)"
        );
        let flag = Overrides {
            thresholds: vec!["redis.websocket.missing == 0".into()],
            ..Overrides::default()
        };
        let e = parse(THREE, &flag).unwrap_err();
        assert!(
            e.contains("names the stack `redis`") && e.ends_with("(set by --threshold)"),
            "{e}"
        );
        let e = parse(
            "[thresholds]\n\"nchan.sse.missing\" = \"== 0\"\n",
            &Overrides::default(),
        )
        .unwrap_err();
        assert!(e.contains("names no stacks"), "{e}");
    }
}
