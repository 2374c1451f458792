//! A run that compared stacks (`[[stacks]]`): each stack x transport is its own row in the
//! card, the CSV files and `duplex compare`, named after its stack; a results file without
//! stacks reads and renders as before.

use report::results::Results;
use report::summary::SummaryRow;

use crate::helpers::{fixture, render};

/// The fixture's phases twice, once as duplex's and once as nchan's.
fn two_stacks() -> Results {
    let mut results = fixture("results.json");
    let run = results.runs.last_mut().unwrap();
    let mut phases = Vec::new();
    for stack in ["duplex", "nchan"] {
        for phase in &run.phases {
            let mut p = phase.clone();
            p.stack = Some(stack.to_owned());
            phases.push(p);
        }
    }
    run.phases = phases;
    results
}

#[test]
fn each_stack_and_transport_is_its_own_row_named_after_its_stack() {
    let results = two_stacks();
    let per_stack = results.runs.last().unwrap().phases.len() / 2;
    let (dir, html) = render(&results, "stacks_rows");
    assert!(html.contains("nchan · SSE"), "the card names nchan's SSE");
    assert!(html.contains("duplex · WebSocket"));
    let rows: Vec<SummaryRow> = csv::Reader::from_path(dir.join("summary.csv"))
        .unwrap()
        .deserialize()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 2 * per_stack);
    let nchan: Vec<&SummaryRow> = rows
        .iter()
        .filter(|r| r.stack.as_deref() == Some("nchan"))
        .collect();
    assert_eq!(nchan.len(), per_stack);
    // The JSON round-trips with the stack names.
    let text = serde_json::to_string(&results).unwrap();
    let back: Results = serde_json::from_str(&text).unwrap();
    assert_eq!(back, results);
}

#[test]
fn compare_pairs_phases_by_stack_and_transport() {
    let base = two_stacks();
    let mut new = base.clone();
    let run = new.runs.last_mut().unwrap();
    for phase in run
        .phases
        .iter_mut()
        .filter(|p| p.stack.as_deref() == Some("nchan"))
    {
        phase.integrity.missing += 7;
    }
    let c = report::compare::compare(&base, &new);
    let changed: Vec<&str> = c
        .differences
        .iter()
        .filter(|d| d.figure.starts_with("missing") && d.base != d.new)
        .map(|d| d.transport.as_str())
        .collect();
    assert!(
        !changed.is_empty(),
        "{:?}",
        c.differences.iter().map(|d| d.figure).collect::<Vec<_>>()
    );
    assert!(
        changed.iter().all(|t| t.starts_with("nchan/")),
        "{changed:?}"
    );
}

#[test]
fn results_without_stacks_name_rows_by_transport_alone() {
    let results = fixture("results.json");
    assert!(
        results
            .runs
            .iter()
            .flat_map(|r| &r.phases)
            .all(|p| p.stack.is_none())
    );
    let (_, html) = render(&results, "stacks_none");
    assert!(!html.contains(" · SSE"));
}

#[test]
fn the_page_says_how_order_is_judged_for_a_server_that_numbers_nothing() {
    let (_, html) = render(&two_stacks(), "stacks_order");
    let note = html
        .split("class=\"integrity-note\"")
        .nth(1)
        .expect("the card explains integrity");
    let note: String = note[..note.find("</p>").unwrap()]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(note.contains("A server that numbers nothing"), "{note}");
    assert!(note.contains("in flight at the same time"), "{note}");
    assert!(
        note.contains("sees a different order from the others"),
        "{note}"
    );
}

/// The stroke of each path drawn for phase `id` (`data-transport`), in page order.
fn strokes_of<'a>(html: &'a str, id: &str) -> Vec<&'a str> {
    let marker = format!("data-transport=\"{id}\"");
    html.match_indices(&marker)
        .filter_map(|(at, _)| {
            let path = &html[html[..at].rfind("<path")?..at];
            // Only a path's own attribute (the card's columns carry the id too).
            if path.contains('>') {
                return None;
            }
            let from = path.find("stroke=\"")? + "stroke=\"".len();
            Some(&path[from..from + 7])
        })
        .collect()
}

/// The colour of the page legend's swatch for `label`.
fn swatch_of<'a>(html: &'a str, label: &str) -> &'a str {
    let legend = &html[html.find("aria-label=\"Transport colours\"").unwrap()..];
    let legend = &legend[..legend.find("</div>").unwrap()];
    let at = legend
        .find(&format!("</span>{label}</span>"))
        .unwrap_or_else(|| panic!("{label} in {legend}"));
    let from = legend[..at].rfind("background: ").unwrap() + "background: ".len();
    &legend[from..from + 7]
}

#[test]
fn several_stacks_colour_each_stack_and_transport_apart_and_the_legend_names_both() {
    let (_, html) = render(&two_stacks(), "stacks_colours");
    let (duplex, nchan) = (
        swatch_of(&html, "duplex · Server-Sent Events"),
        swatch_of(&html, "nchan · Server-Sent Events"),
    );
    assert_eq!(
        duplex, "#0072B2",
        "the first stack keeps the transport's own colour"
    );
    assert_ne!(duplex, nchan, "duplex's SSE and nchan's SSE differ");
    // Every chart draws each phase in its legend colour.
    let (d, n) = (
        strokes_of(&html, "duplex/sse"),
        strokes_of(&html, "nchan/sse"),
    );
    assert!(!d.is_empty() && d.iter().all(|&c| c == duplex), "{d:?}");
    assert!(!n.is_empty() && n.iter().all(|&c| c == nchan), "{n:?}");
}

#[test]
fn a_single_stack_run_colours_by_transport_as_before() {
    let (_, html) = render(&fixture("results.json"), "stacks_one_colours");
    assert_eq!(swatch_of(&html, "Server-Sent Events"), "#0072B2");
    assert_eq!(swatch_of(&html, "WebSocket"), "#009E73");
    let sse = strokes_of(&html, "sse");
    assert!(
        !sse.is_empty() && sse.iter().all(|&c| c == "#0072B2"),
        "{sse:?}"
    );
}
