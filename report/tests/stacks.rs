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

/// The fixture's phases as one stack's of a stacks run: `stack`'s (then `other`'s, a copy).
fn stacks_run(stack: &str, other: &str) -> Results {
    let mut results = two_stacks();
    for p in &mut results.runs.last_mut().unwrap().phases {
        p.stack = Some(
            if p.stack.as_deref() == Some("duplex") {
                stack
            } else {
                other
            }
            .to_owned(),
        );
    }
    results
}

#[test]
fn compare_pairs_a_run_of_one_server_with_the_stack_of_that_server() {
    // The fixture is a run of duplex's own child.
    let single = fixture("results.json");
    assert!(
        single.environment.target.contains("embedded child"),
        "{}",
        single.environment.target
    );
    let stacks = stacks_run("duplex", "nchan");
    let c = report::compare::compare(&single, &stacks);
    let sse: Vec<_> = c
        .differences
        .iter()
        .filter(|d| d.transport == "duplex/sse")
        .collect();
    assert!(!sse.is_empty());
    assert!(
        sse.iter()
            .filter(|d| d.base.is_some() && d.new.is_some())
            .count()
            >= sse.len() / 2,
        "base's sse pairs with new's duplex/sse"
    );
    assert!(
        !c.differences.iter().any(|d| d.transport == "sse"),
        "no unpaired `sse` row"
    );
    assert!(
        c.differences
            .iter()
            .filter(|d| d.transport == "nchan/sse")
            .all(|d| d.base.is_none())
    );
    assert!(
        c.setup[0].contains("paired with new's duplex stack"),
        "{:?}",
        c.setup
    );
    // Either way round; and a peer's run pairs with the stack named after the peer.
    let back = report::compare::compare(&stacks, &single);
    let paired = |c: &report::compare::Comparison, id: &str| {
        c.differences
            .iter()
            .filter(|d| d.transport == id && d.base.is_some() && d.new.is_some())
            .count()
    };
    assert_eq!(paired(&back, "duplex/sse"), paired(&c, "duplex/sse"));
    let mut nchan = single.clone();
    nchan.environment.target = "nchan peer, child pid 7 at http://127.0.0.1:9".into();
    let by_peer = report::compare::compare(&nchan, &stacks);
    assert!(paired(&by_peer, "nchan/sse") > 0);
    assert_eq!(paired(&by_peer, "nchan/sse"), paired(&c, "duplex/sse"));
    let c = by_peer;
    assert!(
        c.differences
            .iter()
            .filter(|d| d.transport == "duplex/sse")
            .all(|d| d.base.is_none())
    );
}

#[test]
fn compare_says_in_one_sentence_why_nothing_pairs() {
    let mut single = fixture("results.json");
    single.environment.target = "http://127.0.0.1:8080".into();
    let c = report::compare::compare(&single, &stacks_run("duplex", "nchan"));
    assert!(
        c.setup[0].starts_with("nothing pairs: base measured one server (http://127.0.0.1:8080)"),
        "{:?}",
        c.setup
    );
    let c = report::compare::compare(&fixture("results.json"), &stacks_run("mine", "nchan"));
    assert!(
        c.setup[0].contains("none of them named duplex"),
        "{:?}",
        c.setup
    );
}

#[test]
fn findings_of_a_stacks_run_name_the_stack_of_each_figure_they_compare() {
    let results = two_stacks();
    let found = report::findings::findings(&report::Analysis::of(&results));
    let requests = found
        .iter()
        .map(|f| f.text.as_str())
        .find(|t| t.contains("the requests of"))
        .expect("a finding on requests per second");
    // Which of two equal stacks is named may go either way; that one is named may not.
    let named = |text: &str, at: &str| {
        ["duplex", "nchan"]
            .iter()
            .any(|s| text.contains(&format!("{at} on {s}")))
    };
    assert!(named(requests, "Short polling"), "{requests}");
    assert!(named(requests, "the requests of SSE"), "{requests}");
}
