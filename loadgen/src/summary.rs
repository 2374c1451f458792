//! The terminal summary printed at the end of `duplex run`: one row per transport, or per stack
//! x transport (per sweep value), the same figures as `summary.csv` (from the report crate's [`SummaryRow`]) condensed
//! to fit a terminal, with the model's expectation next to the measured latency p50 and
//! requests per second, then the findings the page opens with. Every figure and every finding
//! comes from the report crate's one analysis per phase ([`Analysis`]), computed once here and
//! the same the report card, the page's findings and the CSV files read, so none of them can
//! disagree. Writes to any `io::Write`, so tests render into a `Vec<u8>`.

use std::io::{self, Write};

use report::Analysis;
use report::results::Results;
use report::summary::SummaryRow;

/// Prints the summary table of `results` to `out`.
pub fn print_summary(results: &Results, out: &mut impl Write) -> io::Result<()> {
    let s = &results.scenario;
    writeln!(
        out,
        "\n{} — {} clients/transport, {} senders × {} msg/s, {} s measured{}{}",
        s.name,
        s.clients,
        s.senders,
        s.rate_per_sender,
        s.duration_s,
        if s.cluster_nodes > 1 {
            format!(
                ", {} nodes on Redis (srv = the whole cluster)",
                s.cluster_nodes
            )
        } else {
            String::new()
        },
        if results.complete {
            ""
        } else {
            "  [INCOMPLETE]"
        }
    )?;
    let analysis = Analysis::of(results);
    for analysed in &analysis.runs {
        let run = analysed.run;
        if let (Some(v), Some(sweep)) = (run.sweep_value, &s.sweep) {
            writeln!(out, "\n{} = {v} {}", sweep.key, sweep.unit)?;
        }
        // Wide enough for a stack's rows (`socketio-upgrade/websocket`).
        let w = analysed
            .phases
            .iter()
            .map(|a| a.id().len())
            .fold(10, usize::max);
        writeln!(
            out,
            "{:<w$} {:>11} {:>17} {:>9} {:>8} {:>17} {:>6} {:>9} {:>8} {:>8} {:>8} {:>5} {:>6}",
            "transport",
            "connected",
            "p50 ms (model)",
            "p99 ms",
            "max ms",
            "req/s (model)",
            "empty",
            "B↓/msg",
            "srv CPU",
            "srv MiB",
            "missing",
            "dup",
            "errors"
        )?;
        for analysis in &analysed.phases {
            let phase = analysis.phase;
            let row = SummaryRow::from_phase(phase);
            let measured = &analysis.measured;
            let verdicts = &analysis.verdicts;
            let ms = |v: Option<f64>| figure(v, 1);
            let p50 = measured_and_model(
                verdicts.latency_p50.measured,
                verdicts.latency_p50.expected,
                1,
            );
            let rps = measured_and_model(
                verdicts.requests_per_s.measured,
                verdicts.requests_per_s.expected,
                0,
            );
            // The card's figure, printed the card's way (a share of poll answers).
            let empty = measured
                .empty_share
                .map_or("-".to_owned(), report::format::share);
            let per_msg = figure(measured.bytes_down_per_message, 0);
            writeln!(
                out,
                "{:<w$} {:>11} {:>17} {:>9} {:>8} {:>17} {:>6} {:>9} {:>8.2} {:>8.1} {:>8} {:>5} {:>6}",
                analysis.id(),
                format!("{}/{}", phase.clients_connected, row.clients),
                p50,
                ms(row.latency_p99_ms),
                ms(row.latency_max_ms),
                rps,
                empty,
                per_msg,
                row.server_cpu_s,
                row.server_rss_peak_mib,
                row.missing,
                row.duplicates,
                row.errors,
            )?;
        }
        for phase in &run.phases {
            if !phase.server_processes.is_empty() {
                let each: Vec<String> = phase
                    .server_processes
                    .iter()
                    .map(|c| {
                        format!(
                            "{} {:.2} s {:.1} MiB{}",
                            c.name,
                            c.cpu_s,
                            c.rss_bytes as f64 / (1024.0 * 1024.0),
                            if c.killed { " (killed)" } else { "" }
                        )
                    })
                    .collect();
                writeln!(out, "  {}: {}", phase.transport, each.join(" · "))?;
            }
            if let Some(split) = &phase.latency_by_node {
                let side = |h: &report::LatencyHistogram| {
                    let ms = |q| figure(h.quantile_ms(q), 1);
                    format!(
                        "{} deliveries, p50 {} p99 {} ms",
                        h.0.len(),
                        ms(0.5),
                        ms(0.99)
                    )
                };
                writeln!(
                    out,
                    "  {}: sender's node {} · across nodes {}",
                    phase.transport,
                    side(&split.same_node),
                    side(&split.across_nodes)
                )?;
            }
            if let Some(k) = &phase.node_killed {
                writeln!(
                    out,
                    "  {}: {} killed at {:.1} s; {} reconnects",
                    phase.transport, k.node, k.at_s, phase.reconnects
                )?;
            }
            for w in &phase.warnings {
                writeln!(out, "  ! {}: {w}", phase.transport)?;
            }
        }
    }
    for w in &results.warnings {
        writeln!(out, "! {w}")?;
    }
    let findings = report::findings::findings(&analysis);
    if !findings.is_empty() {
        writeln!(out, "\nfindings (as the report opens with them):")?;
        for f in &findings {
            writeln!(out, "- {} [{}]", f.text, f.link_text())?;
        }
    }
    writeln!(out, "wall time {:.1} s", results.wall_time_s)
}

/// A figure with `decimals` places, `-` when there is none.
fn figure(v: Option<f64>, decimals: usize) -> String {
    v.map_or("-".to_owned(), |v| format!("{v:.decimals$}"))
}

/// A "measured (model)" cell, both figures with `decimals` places (`-` for a missing one).
fn measured_and_model(measured: Option<f64>, model: Option<f64>, decimals: usize) -> String {
    format!(
        "{} ({})",
        figure(measured, decimals),
        figure(model, decimals)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Results {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../report/tests/fixtures")
            .join(name);
        report::read_results(path).expect("the report crate's fixture reads")
    }

    #[test]
    fn measured_and_model_cells_round_each_figure_and_dash_missing_ones() {
        assert_eq!(
            measured_and_model(Some(12.345), Some(10.0), 1),
            "12.3 (10.0)"
        );
        assert_eq!(measured_and_model(Some(99.6), None, 0), "100 (-)");
        assert_eq!(measured_and_model(None, Some(0.04), 1), "- (0.0)");
    }

    #[test]
    fn prints_one_row_per_phase_with_measured_and_model() {
        let results = fixture("results.json");
        let mut out = Vec::new();
        print_summary(&results, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        for phase in &results.runs[0].phases {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("{} ", phase.transport)))
                .unwrap_or_else(|| panic!("no row for {}\n{text}", phase.transport));
            // "p50 (model)": a measured figure followed by a parenthesized model figure.
            assert!(row.contains(" ("), "{row}");
        }
        assert!(text.contains("wall time"));
    }

    /// The figures in the report card's row `metric`, one per transport column, in order.
    fn card_row(html: &str, metric: &str) -> Vec<String> {
        let card = &html[html.find("<section id=\"card\">").expect("a card")..];
        let row = &card[card
            .find(&format!("<th class=\"metric\">{metric}"))
            .unwrap_or_else(|| panic!("no card row {metric}"))..];
        let row = &row[..row.find("</tr>").expect("row ends")];
        row.split("<span class=\"measured\">")
            .skip(1)
            .map(|cell| cell[..cell.find("</span>").unwrap()].to_owned())
            .collect()
    }

    #[test]
    fn the_terminal_and_the_report_card_give_the_same_empty_share_for_every_transport() {
        let results = fixture("results.json");
        let html = report::render_html(&results).unwrap();
        let card = card_row(&html, "Empty answers");
        let mut out = Vec::new();
        print_summary(&results, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let phases = &results.runs[0].phases;
        assert_eq!(card.len(), phases.len());
        // Split on whitespace, "empty" is the 9th cell: transport, connected, p50, (model),
        // p99, max, req/s, (model), empty.
        for (phase, card_share) in phases.iter().zip(&card) {
            let row = text
                .lines()
                .find(|l| l.starts_with(&format!("{} ", phase.transport)))
                .unwrap();
            let cells: Vec<&str> = row.split_whitespace().collect();
            let terminal_share = cells[8];
            let card_share = if card_share == "—" { "-" } else { card_share };
            assert_eq!(terminal_share, card_share, "{}: {row}", phase.transport);
        }
        // The fixture's short polls come back empty often enough to tell the two definitions
        // (share of poll answers, share of all requests) apart.
        let short = &phases[0];
        let all_requests = short.traffic.empty_responses as f64 / short.traffic.requests as f64;
        assert_ne!(report::format::share(all_requests), card[0]);
    }

    #[test]
    fn prints_the_pages_findings_word_for_word() {
        for name in ["results.json", "sweep.json"] {
            let results = fixture(name);
            let html = report::render_html(&results).unwrap();
            let mut out = Vec::new();
            print_summary(&results, &mut out).unwrap();
            let text = String::from_utf8(out).unwrap();
            let findings = report::findings::findings(&Analysis::of(&results));
            assert!(!findings.is_empty(), "{name}");
            let listed: Vec<&str> = text
                .lines()
                .skip_while(|l| !l.starts_with("findings"))
                .filter(|l| l.starts_with("- "))
                .collect();
            assert_eq!(listed.len(), findings.len(), "{name}: {text}");
            for (line, f) in listed.iter().zip(&findings) {
                assert!(line.starts_with(&format!("- {}", f.text)), "{line}");
                // The page says the same sentence (its text escaped for HTML).
                let first_words: String = f.text.chars().take(30).collect();
                let escaped = first_words
                    .replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
                    .replace('"', "&quot;")
                    .replace('\'', "&#x27;");
                assert!(html.contains(&escaped), "{name}: {first_words}");
            }
        }
    }

    #[test]
    fn prints_each_sweep_value_as_its_own_block() {
        let results = fixture("sweep.json");
        let mut out = Vec::new();
        print_summary(&results, &mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let sweep = results.scenario.sweep.as_ref().unwrap();
        let headers = text.lines().filter(|l| l.starts_with(&sweep.key)).count();
        assert_eq!(headers, results.runs.len(), "{text}");
    }
}
