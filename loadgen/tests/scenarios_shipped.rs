//! Every scenario shipped in `scenarios/` must load with the loadgen's own parser, be named after
//! its file (the default report folder is `reports/<name>/`), and be described in
//! `scenarios/README.md`, so a teacher never meets a broken or undocumented file.

use std::path::{Path, PathBuf};

use loadgen::scenario::{Overrides, Scenario};

fn scenarios_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn shipped() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(scenarios_dir())
        .expect("scenarios/ exists next to loadgen/")
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_shipped_scenario_loads_and_is_named_after_its_file() {
    let files = shipped();
    assert!(
        files.len() >= 7,
        "expected the seven scenarios of issue 5, found {files:?}"
    );
    let mut failures = Vec::new();
    for file in &files {
        match Scenario::load(file, &Overrides::default()) {
            Ok(scenario) => {
                let stem = file.file_stem().unwrap().to_string_lossy();
                if scenario.name != stem {
                    failures.push(format!(
                        "{}: name is {:?}, expected {stem:?}",
                        file.display(),
                        scenario.name
                    ));
                }
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_shipped_scenario_is_described_in_the_readme() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md"))
        .expect("scenarios/README.md exists");
    let missing: Vec<String> = shipped()
        .iter()
        .map(|file| file.file_name().unwrap().to_string_lossy().into_owned())
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "scenarios/README.md does not describe {missing:?}"
    );
}

#[test]
fn the_readme_documents_every_key() {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md"))
        .expect("scenarios/README.md exists");
    let keys = [
        "name",
        "description",
        "transports",
        "duration",
        "warmup",
        "drain",
        "clients.count",
        "clients.connect_rate",
        "chat.room",
        "chat.senders",
        "chat.rate",
        "chat.payload_bytes",
        "short_poll.interval",
        "long_poll.timeout",
        "network.rtt",
        "network.jitter",
        "network.bandwidth",
    ];
    let missing: Vec<&str> = keys
        .iter()
        .copied()
        .filter(|key| !readme.contains(&format!("`{key}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "scenarios/README.md does not document {missing:?}"
    );
}
