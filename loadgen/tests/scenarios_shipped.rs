//! Every scenario shipped in `scenarios/` must load with the loadgen's own parser, be named after
//! its file (the default report folder is `reports/<name>/`), and be described in
//! `scenarios/README.md`, so a teacher never meets a broken or undocumented file; and the
//! README's key tables and threshold metrics must say what the code's tables say.

use std::path::{Path, PathBuf};

use loadgen::scenario::{Overrides, Scenario, keys};

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

/// The part of scenarios/README.md under `heading`, up to the next `## ` heading.
fn readme_section(heading: &str) -> String {
    let readme = std::fs::read_to_string(scenarios_dir().join("README.md"))
        .expect("scenarios/README.md exists");
    let start = readme
        .find(&format!("\n{heading}\n"))
        .unwrap_or_else(|| panic!("scenarios/README.md has a {heading:?} section"));
    let body = &readme[start + heading.len() + 2..];
    body[..body.find("\n## ").unwrap_or(body.len())].to_owned()
}

/// Table rows whose first cell is a backticked name, by that name.
fn rows_by_name(section: &str) -> Vec<(String, String)> {
    section
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("| `")?;
            let name = rest.split('`').next()?;
            Some((name.to_owned(), line.trim_end().to_owned()))
        })
        .collect()
}

#[test]
fn the_readme_documents_every_key_as_the_key_table_says() {
    let documented = rows_by_name(&readme_section("## Every key"));
    let mut problems = Vec::new();
    for key in keys::KEYS {
        let expected = key.readme_row();
        match documented.iter().find(|(name, _)| name == key.name) {
            None => problems.push(format!("{} is not documented; add:\n{expected}", key.name)),
            Some((_, row)) if *row != expected => problems.push(format!(
                "{}'s row differs from the key table (loadgen/src/scenario/keys.rs):\n  README: {row}\n  table:  {expected}",
                key.name
            )),
            Some(_) => {}
        }
    }
    for (name, _) in &documented {
        if keys::key(name).is_none() {
            problems.push(format!("{name} is documented but is not a scenario key"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn the_readme_lists_every_threshold_metric() {
    let documented = rows_by_name(&readme_section("## Thresholds"));
    let mut problems = Vec::new();
    for metric in loadgen::thresholds::METRICS {
        let expected = format!("| `{}` | {} |", metric.name, metric.doc);
        match documented.iter().find(|(name, _)| name == metric.name) {
            None => problems.push(format!("{} is not listed; add:\n{expected}", metric.name)),
            Some((_, row)) if *row != expected => {
                problems.push(format!("README: {row}\nmetric: {expected}"))
            }
            Some(_) => {}
        }
    }
    for (name, _) in &documented {
        let known =
            name.contains("pNN") || loadgen::thresholds::METRICS.iter().any(|m| m.name == name);
        if !known {
            problems.push(format!("{name} is listed but is not a threshold metric"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
