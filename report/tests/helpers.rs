//! Shared helpers: loading fixtures and rendering them into a fresh folder under Cargo's
//! per-test-binary temporary directory.

use std::path::{Path, PathBuf};

use report::Results;

/// The checked-in fixture `name` (e.g. `results.json`).
pub fn fixture_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Reads a checked-in fixture through the public reader.
pub fn fixture(name: &str) -> Results {
    report::read_results(fixture_path(name)).expect("fixture parses")
}

/// A fresh, empty folder named after the test.
pub fn out_dir(test: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("report-tests")
        .join(test);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("create the output folder");
    dir
}

/// Renders `results` with [`report::write_all`] and returns the folder and the HTML.
pub fn render(results: &Results, test: &str) -> (PathBuf, String) {
    let dir = out_dir(test);
    let written = report::write_all(results, &dir).expect("report renders");
    let sweep_csv = usize::from(results.scenario.sweep.is_some());
    assert_eq!(
        written.len(),
        4 + sweep_csv,
        "index.html and three CSV files, plus sweep.csv for a sweep"
    );
    assert_eq!(dir.join("sweep.csv").exists(), sweep_csv == 1);
    let html = std::fs::read_to_string(dir.join("index.html")).expect("index.html exists");
    (dir, html)
}

/// The transports of the results' last run (the one sections 1–5 show).
pub fn transports(results: &Results) -> Vec<String> {
    results
        .runs
        .last()
        .expect("a run")
        .phases
        .iter()
        .map(|p| p.transport.clone())
        .collect()
}

/// The HTML of `<section id="{id}">` up to its end.
pub fn section<'a>(html: &'a str, id: &str) -> &'a str {
    let start = html
        .find(&format!("<section id=\"{id}\">"))
        .unwrap_or_else(|| panic!("section {id} is missing"));
    let end = html[start..].find("</section>").expect("section ends") + start;
    &html[start..end]
}

/// Every `<svg ...>...</svg>` chart inside `fragment`.
pub fn charts(fragment: &str) -> Vec<&str> {
    fragment
        .match_indices("<svg viewBox")
        .map(|(start, _)| {
            let end = fragment[start..].find("</svg>").expect("svg ends") + start;
            &fragment[start..end]
        })
        .collect()
}

/// The card cells of row `metric`, one per transport column, in order.
pub fn card_row(html: &str, metric: &str) -> Vec<String> {
    let card = section(html, "card");
    let row = &card[card
        .find(&format!("<th class=\"metric\">{metric}"))
        .unwrap_or_else(|| panic!("no card row {metric}"))..];
    let row = &row[..row.find("</tr>").expect("row ends")];
    row.split("<td>").skip(1).map(String::from).collect()
}
