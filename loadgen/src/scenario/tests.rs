//! Scenario parsing and validation as a user meets it: defaults, every kind of error naming
//! the file and key (and the flag), sweeps, overrides, seeds, thresholds and the drain rule;
//! and the key table itself kept consistent with the raw structs.

use std::path::Path;
use std::time::Duration;

use wire::Transport;

use super::validate::parse_bandwidth;
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
        ..Overrides::default()
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
fn seed_defaults_to_the_table_and_the_flag_replaces_it() {
    assert_eq!(parse(MINIMAL).unwrap().seed, 0);
    let s = parse(&format!("{MINIMAL}seed = 42\n")).unwrap();
    assert_eq!((s.seed, s.info().seed), (42, Some(42)));
    let o = Overrides {
        seed: Some(7),
        ..Overrides::default()
    };
    let s = Scenario::parse(Path::new("x.toml"), &format!("{MINIMAL}seed = 42\n"), &o).unwrap();
    assert_eq!(s.seed, 7);
    let o = Overrides {
        seed: Some(-1),
        ..Overrides::default()
    };
    let e = Scenario::parse(Path::new("x.toml"), MINIMAL, &o).unwrap_err();
    assert_eq!(
        e.to_string(),
        "x.toml: seed: must be at least 0, got -1 (set by --seed)"
    );
}

#[test]
fn thresholds_are_read_from_the_file_and_the_flags() {
    let text = format!(
        "{MINIMAL}[thresholds]\n\"websocket.latency_p99_ms\" = \"< 50\"\n\"*\".missing = \"<= 3\"\n"
    );
    let o = Overrides {
        thresholds: vec!["short_poll.requests_per_s < 700".into()],
        ..Overrides::default()
    };
    let s = Scenario::parse(Path::new("x.toml"), &text, &o).unwrap();
    let written: Vec<String> = s.thresholds.iter().map(|t| t.to_string()).collect();
    assert_eq!(
        written,
        [
            "*.missing <= 3",
            "websocket.latency_p99_ms < 50",
            "short_poll.requests_per_s < 700"
        ]
    );
}

#[test]
fn a_bad_threshold_names_the_key_or_the_flag() {
    let e = error_of(&format!(
        "{MINIMAL}[thresholds]\n\"websocket.latncy_ms\" = \"< 50\"\n"
    ));
    assert!(
        e.starts_with(
            "scenarios/x.toml: thresholds.websocket.latncy_ms: unknown metric `latncy_ms`"
        ),
        "{e}"
    );
    let e = error_of(&format!("{MINIMAL}[thresholds]\n\"sse.missing\" = 0\n"));
    assert!(
        e.starts_with("scenarios/x.toml: thresholds.sse.missing: expected a condition string"),
        "{e}"
    );
    let o = Overrides {
        thresholds: vec!["sse.missing 0".into()],
        ..Overrides::default()
    };
    let e = Scenario::parse(Path::new("x.toml"), MINIMAL, &o)
        .unwrap_err()
        .to_string();
    assert!(e.starts_with("x.toml: thresholds: no comparison in"), "{e}");
    assert!(e.ends_with("(set by --threshold)"), "{e}");
}

#[test]
fn a_drain_too_short_for_the_poll_interval_is_extended_with_a_note() {
    let s = parse(&format!(
        "{MINIMAL}drain = \"0\"\n[short_poll]\ninterval = \"2s\"\n"
    ))
    .unwrap();
    assert_eq!(s.drain, Duration::from_millis(2100));
    assert_eq!(s.notes.len(), 1);
    assert!(
        s.notes[0].starts_with("scenarios/x.toml: drain: extended from 0 to 2s 100ms"),
        "{}",
        s.notes[0]
    );
    // Without short polling only the network's trips count.
    let s = parse(&format!(
        "{MINIMAL}drain = \"0\"\ntransports = [\"sse\"]\n[short_poll]\ninterval = \"2s\"\n[network]\nrtt = \"100ms\"\njitter = \"10ms\"\n"
    ))
    .unwrap();
    assert_eq!(s.drain, Duration::from_millis(300));
    // A long enough drain is left alone.
    let s = parse(MINIMAL).unwrap();
    assert_eq!((s.drain, s.notes.len()), (Duration::from_secs(2), 0));
}

#[test]
fn every_default_in_the_table_is_valid_and_applied() {
    // A file giving every key its table default parses to the same scenario as one giving none.
    let mut text = String::from(MINIMAL);
    let mut sections: std::collections::BTreeMap<&str, String> = Default::default();
    for key in keys::KEYS {
        let literal = match key.default {
            keys::Default::Integer(i) => i.to_string(),
            keys::Default::Number(x) => format!("{x:?}"),
            keys::Default::Text(t) | keys::Default::Duration(t) => format!("{t:?}"),
            keys::Default::Required | keys::Default::Described(_) => continue,
        };
        match key.section() {
            None => text.push_str(&format!("{} = {literal}\n", key.field())),
            Some(section) => sections
                .entry(section)
                .or_default()
                .push_str(&format!("{} = {literal}\n", key.field())),
        }
    }
    for (section, body) in sections {
        text.push_str(&format!("[{section}]\n{body}"));
    }
    let explicit = parse(&text).unwrap();
    assert_eq!(explicit, parse(MINIMAL).unwrap(), "{text}");
}

#[test]
fn the_key_table_and_the_raw_structs_name_the_same_keys() {
    // serde lists a table's known fields when it meets an unknown one; that list must be the
    // table's keys in that section (plus the sections themselves at the top level).
    let listed = |prefix: &str| -> Vec<String> {
        let text = match prefix {
            "" => format!("{MINIMAL}zzz = 1\n"),
            section => format!("{MINIMAL}[{section}]\nzzz = 1\n"),
        };
        let e = error_of(&text);
        let (_, expected) = e.split_once("expected ").expect(&e);
        let mut names: Vec<String> = expected
            .trim_start_matches("one of ")
            .split([',', ' '])
            .filter(|n| n.starts_with('`'))
            .map(|n| n.trim_matches('`').to_owned())
            .collect();
        names.sort();
        names
    };
    let mut top: Vec<String> = keys::KEYS
        .iter()
        .map(|k| k.section().unwrap_or(k.name).to_owned())
        .collect();
    top.sort();
    top.dedup();
    assert_eq!(listed(""), top);
    for section in ["clients", "chat", "short_poll", "long_poll", "network"] {
        let mut fields: Vec<String> = keys::KEYS
            .iter()
            .filter(|k| k.section() == Some(section))
            .map(|k| k.field().to_owned())
            .collect();
        fields.sort();
        assert_eq!(listed(section), fields, "[{section}]");
    }
}

#[test]
fn the_sweepable_keys_are_the_tables() {
    let mut table: Vec<&str> = keys::KEYS
        .iter()
        .filter(|k| k.sweep)
        .map(|k| k.name)
        .collect();
    let mut enumerated: Vec<&str> = SweepKey::ALL.iter().map(|k| k.dotted()).collect();
    table.sort();
    enumerated.sort();
    assert_eq!(table, enumerated);
}

#[test]
fn range_errors_are_worded_from_the_table() {
    let e = error_of(&format!("{MINIMAL}[clients]\ncount = 20000\n"));
    assert_eq!(
        e,
        "scenarios/x.toml: clients.count: must be at most 19,000 (a process may have 20,000 open files; the rest is headroom for the senders' connections), got 20000"
    );
    let e = error_of(&format!("{MINIMAL}[clients]\nconnect_rate = 0\n"));
    assert_eq!(
        e,
        "scenarios/x.toml: clients.connect_rate: must be above 0 connects/s, got 0"
    );
}

#[test]
fn shipped_scenarios_are_valid() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios");
    for name in ["classroom.toml", "smoke.toml"] {
        let s = Scenario::load(&dir.join(name), &Overrides::default()).unwrap();
        assert!(!s.description.is_empty());
    }
}

#[test]
fn kill_node_must_fall_in_the_window_of_a_cluster() {
    let cluster = format!("{MINIMAL}duration = \"10s\"\n[cluster]\nnodes = 3\n");
    assert_eq!(parse(&cluster).unwrap().kill_node, None);
    let s = parse(&format!("{cluster}[faults]\nkill_node = \"4s\"\n")).unwrap();
    assert_eq!(s.kill_node, Some(Duration::from_secs(4)));
    let e = error_of(&format!("{cluster}[faults]\nkill_node = \"10s\"\n"));
    assert!(
        e.starts_with("scenarios/x.toml: faults.kill_node: must be less than `duration` (10s)"),
        "{e}"
    );
    let e = error_of(&format!("{MINIMAL}[faults]\nkill_node = \"1s\"\n"));
    assert!(
        e.starts_with("scenarios/x.toml: faults.kill_node: needs `cluster.nodes` of 2 or more"),
        "{e}"
    );
    let e = error_of(&format!("{cluster}[faults]\nkill_node = \"soon\"\n"));
    assert!(
        e.starts_with("scenarios/x.toml: faults.kill_node: not a duration"),
        "{e}"
    );
}
