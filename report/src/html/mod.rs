//! `index.html`: one self-contained page (no scripts, fonts, images or stylesheets from
//! anywhere else; charts are inline SVG) rendered from one askama template,
//! `report/templates/index.html`. This module builds the view model: every number, label and
//! SVG coordinate is computed here in Rust, and the template only loops and prints, escaping
//! everything it prints (a scenario name is data, never markup).

mod axis;
mod bytes;
mod card;
mod cluster;
mod crossover;
mod line;
mod swimlane;

use askama::Template;

use crate::analysis::{Analysis, RunAnalysis};
use crate::findings::{self, Finding};
use crate::format;
use crate::recommend::{self, Recommendation};
use crate::results::{Results, Run};
use crate::transport::{self, Style as _};

use bytes::BytesChart;
use card::Card;
use cluster::ClusterSection;
use line::{Cost, LineChart, PerSecond};
use swimlane::Swimlane;

/// The page's template and everything it shows.
#[derive(Template)]
#[template(path = "index.html")]
struct IndexPage {
    title: String,
    scenario_name: String,
    description: String,
    /// "Sections 1–5 show ..." when the results hold several runs.
    headline_note: Option<String>,
    /// "Measured in N students' browsers ..." for the live classroom's guided experiment.
    browsers_note: Option<String>,
    /// Its notes (the server's own counts), listed under it.
    browsers_notes: Vec<String>,
    /// What this run actually did, under the scenario's own description (which quotes the
    /// scenario file and goes stale when `--clients` or `--duration` override it).
    this_run: String,
    /// The findings the page opens with.
    findings: Vec<Finding>,
    /// Which transport suits the scenario, when something was measured.
    recommendation: Option<Recommendation>,
    /// Each section's number (sections the run has no data for are left out, so the numbers
    /// run on without gaps).
    sections: Sections,
    legend: Vec<LegendEntry>,
    card: Card,
    cdf: LineChart,
    bytes: BytesChart,
    swimlane: Option<Swimlane>,
    per_second: Vec<LineChart>,
    /// Each process of a cluster, its fault, and what the design implies per transport.
    cluster: Option<ClusterSection>,
    /// Requests per client against the message rate, with the models' curves.
    crossover: Option<LineChart>,
    sweep: Vec<LineChart>,
    scenario_facts: Vec<(String, String)>,
    environment_facts: Vec<(String, String)>,
    warnings: Vec<String>,
}

/// The numbers of the page's sections, in page order; `None` for one the page leaves out.
struct Sections {
    card: usize,
    latency: usize,
    bytes: usize,
    timeline: Option<usize>,
    over_time: usize,
    cluster: Option<usize>,
    crossover: Option<usize>,
    sweep: Option<usize>,
    recommendation: Option<usize>,
    about: usize,
}

impl Sections {
    fn number(
        timeline: bool,
        cluster: bool,
        crossover: bool,
        sweep: bool,
        recommendation: bool,
    ) -> Self {
        let mut next = 0;
        let mut take = |shown: bool| {
            shown.then(|| {
                next += 1;
                next
            })
        };
        let card = take(true).unwrap_or_default();
        let latency = take(true).unwrap_or_default();
        let bytes = take(true).unwrap_or_default();
        let timeline = take(timeline);
        let over_time = take(true).unwrap_or_default();
        let cluster = take(cluster);
        let crossover = take(crossover);
        let sweep = take(sweep);
        let recommendation = take(recommendation);
        let about = take(true).unwrap_or_default();
        Self {
            card,
            latency,
            bytes,
            timeline,
            over_time,
            cluster,
            crossover,
            sweep,
            recommendation,
            about,
        }
    }
}

/// A transport and its colour, for the page-wide legend.
struct LegendEntry {
    label: String,
    colour: &'static str,
}

/// Renders the whole page.
pub fn render_html(results: &Results) -> Result<String, askama::Error> {
    page(results).render()
}

fn page(results: &Results) -> IndexPage {
    let scenario = &results.scenario;
    let headline = crate::headline_run(results);
    // An empty results document still renders (every chart empty) rather than failing.
    let empty_run = Run {
        sweep_value: None,
        clients: scenario.clients,
        rate_per_sender: scenario.rate_per_sender,
        short_poll_interval_ms: scenario.short_poll_interval_ms,
        rtt_ms: scenario.network.rtt_ms,
        phases: Vec::new(),
    };
    let analysis = Analysis::of(results);
    let empty_analysis = RunAnalysis::of(results, &empty_run);
    let analysed = analysis.headline().unwrap_or(&empty_analysis);
    let legend = analysed
        .phases
        .iter()
        .map(|a| LegendEntry {
            label: a.label(),
            colour: a.colour(),
        })
        .collect();
    let swimlane = swimlane::swimlane(results, analysed);
    let sweep: Vec<LineChart> = Cost::ALL
        .into_iter()
        .filter_map(|cost| line::sweep_cost(&analysis, cost))
        .collect();
    let recommendation = recommend::recommend(&analysis);
    let crossover = crossover::crossover(&analysis);
    let cluster = cluster::cluster(results, analysed);
    let sections = Sections::number(
        swimlane.is_some(),
        cluster.is_some(),
        crossover.is_some(),
        !sweep.is_empty(),
        recommendation.is_some(),
    );
    let headline_note = match (&scenario.sweep, headline) {
        (Some(sweep), Some(run)) if results.runs.len() > 1 => Some(format!(
            "This scenario swept {} over {} values. Sections {}–{} show the last run ({} = {}), \
             as do summary.csv, latency_percentiles.csv and timeseries.csv; section {} and \
             sweep.csv compare all of them.",
            sweep.key,
            results.runs.len(),
            sections.card,
            sections.over_time,
            sweep.key,
            run.sweep_value.map_or_else(
                || "—".into(),
                |v| format!("{} {}", format::real(v), sweep.unit)
            ),
            sections.sweep.map_or_else(|| "—".into(), |n| n.to_string()),
        )),
        _ => None,
    };
    IndexPage {
        title: format!("duplex report: {}", scenario.name),
        scenario_name: scenario.name.clone(),
        description: scenario.description.clone(),
        headline_note,
        browsers_note: results.measured_in_browsers.as_ref().map(|b| {
            format!(
                "Measured in browsers: {} of {} student pages on the live page reported these \
                 figures from their own browsers (not the loadgen's simulated clients). {}",
                b.pages_reporting, b.pages, b.method
            )
        }),
        browsers_notes: results
            .measured_in_browsers
            .as_ref()
            .map(|b| b.notes.clone())
            .unwrap_or_default(),
        this_run: this_run(results, headline),
        findings: findings::findings(&analysis),
        recommendation,
        sections,
        legend,
        card: card::card(results, analysed),
        cdf: line::latency_cdf(analysed),
        bytes: bytes::bytes_per_message(analysed),
        swimlane,
        per_second: [
            PerSecond::Requests,
            PerSecond::Deliveries,
            PerSecond::InFlight,
            PerSecond::LatencyMax,
            PerSecond::Reconnects,
        ]
        .into_iter()
        .filter(|what| what.shown(analysed))
        .map(|what| line::per_second(analysed, what))
        .collect(),
        cluster,
        crossover,
        sweep,
        scenario_facts: scenario_facts(results, headline),
        environment_facts: environment_facts(results),
        warnings: warnings(results),
    }
}

/// One line with the figures the run the page shows actually used.
fn this_run(results: &Results, headline: Option<&Run>) -> String {
    let s = &results.scenario;
    let clients = headline.map_or(s.clients, |r| r.clients);
    let rate = headline.map_or(s.rate_per_sender, |r| r.rate_per_sender);
    let rtt = headline.map_or(s.network.rtt_ms, |r| r.rtt_ms);
    if let Some(b) = &results.measured_in_browsers {
        return format!(
            "This run: {} student pages in their own browsers, every one on each transport in \
             turn for {} s, while the server sent {} flash(es) a second.",
            format::count(b.pages),
            format::value(s.duration_s),
            format::value(rate),
        );
    }
    format!(
        "This run: {} clients per transport, {} of them sending {} msg/s each, {} s measured \
         per transport{}.",
        format::count(clients),
        format::count(s.senders),
        format::value(rate),
        format::value(s.duration_s),
        if rtt > 0.0 {
            format!(", {} round trip", format::ms(rtt))
        } else {
            ", on loopback".into()
        }
    )
}

/// The scenario as the run the page shows ran it: for a sweep, the swept keys take that
/// run's values (the card and section 7 must describe the same run), and the sweep's other
/// values are listed under "Sweep".
fn scenario_facts(results: &Results, headline: Option<&Run>) -> Vec<(String, String)> {
    let s = &results.scenario;
    let clients = headline.map_or(s.clients, |r| r.clients);
    let rate = headline.map_or(s.rate_per_sender, |r| r.rate_per_sender);
    let interval = headline.map_or(s.short_poll_interval_ms, |r| r.short_poll_interval_ms);
    let rtt = headline.map_or(s.network.rtt_ms, |r| r.rtt_ms);
    let in_run = if s.sweep.is_some() {
        " in the run shown"
    } else {
        ""
    };
    let mut facts = vec![
        ("Transports".into(), s.transports.join(", ")),
        (
            format!("Clients per transport{in_run}"),
            format!(
                "{} (connecting at {}/s)",
                format::count(clients),
                format::real(s.connect_rate)
            ),
        ),
        (
            format!("Chat{in_run}"),
            format!(
                "{} senders × {} msg/s into room “{}”, {} bytes each",
                s.senders,
                format::real(rate),
                s.room,
                s.payload_bytes
            ),
        ),
        (
            "Each message for".into(),
            format::chat_mode(s.chat_mode.as_deref()),
        ),
        (
            "Time per transport".into(),
            format!(
                "{} s warm-up, {} s measured, {} s drain",
                format::real(s.warmup_s),
                format::real(s.duration_s),
                format::real(s.drain_s)
            ),
        ),
        (format!("Short-poll interval{in_run}"), format::ms(interval)),
        (
            "Long-poll timeout".into(),
            format::ms(s.long_poll_timeout_ms),
        ),
        (
            "Network".into(),
            format!(
                "rtt {}, jitter {}{}",
                format::ms(rtt),
                format::ms(s.network.jitter_ms),
                s.network
                    .bandwidth_bytes_per_s
                    .map_or_else(String::new, |b| format!(
                        ", {}/s per connection",
                        format::bytes(b)
                    ))
            ),
        ),
    ];
    if let Some(sweep) = &s.sweep {
        facts.push((
            "Sweep".into(),
            format!(
                "{} = {} {}",
                sweep.key,
                sweep
                    .values
                    .iter()
                    .map(|v| format::real(*v))
                    .collect::<Vec<_>>()
                    .join(", "),
                sweep.unit
            ),
        ));
    }
    facts.push(("Started".into(), results.started_at.clone()));
    facts.push((
        "Wall time".into(),
        format!("{} s", format::real(results.wall_time_s)),
    ));
    facts
}

fn environment_facts(results: &Results) -> Vec<(String, String)> {
    let e = &results.environment;
    vec![
        ("duplex".into(), e.duplex_version.clone()),
        (
            "git commit".into(),
            e.git_commit.clone().unwrap_or_else(|| "unknown".into()),
        ),
        ("OS".into(), e.os.clone()),
        (
            "CPU".into(),
            format!("{} ({} logical CPUs)", e.cpu_model, e.cpus),
        ),
        ("Memory".into(), format::mib(e.memory_bytes)),
        ("Server".into(), e.target.clone()),
        (
            "Server cost measured".into(),
            if e.server_is_child {
                "from /proc (duplex started the server)".into()
            } else {
                "from /metrics only (external server)".into()
            },
        ),
        ("Open-files limit".into(), format::count(e.open_files_limit)),
        (
            "Client source addresses".into(),
            e.source_addresses.to_string(),
        ),
    ]
}

/// Phrases of the loadgen's phase warnings that restate a fact the report words itself from
/// the numbers (saturation, a phase cut short, clients that never connected, missing
/// deliveries, errors); listing both showed each of those warnings twice.
const RESTATED: [&str; 5] = [
    "loadgen saturated",
    "phase cut short",
    "clients never connected",
    "deliveries missing",
    "errors (failed connects",
];

/// Every reason to doubt a number, in one list: the run's own warnings, then each phase's,
/// plus what the report can see for itself (saturated loadgen, incomplete phases, clients that
/// never connected, lost messages).
fn warnings(results: &Results) -> Vec<String> {
    let mut out = Vec::new();
    if !results.complete {
        out.push(
            "The run did not complete: what is shown was measured, but not everything planned was."
                .into(),
        );
    }
    out.extend(results.warnings.iter().cloned());
    for run in &results.runs {
        let at = run.sweep_value.map_or_else(String::new, |v| {
            format!(" (sweep value {})", format::real(v))
        });
        for phase in &run.phases {
            let name = transport::label_of(&transport::phase_id(
                phase.stack.as_deref(),
                &phase.transport,
            ));
            if phase.loadgen.saturated {
                out.push(format!(
                    "{name}{at}: the load generator was saturated (timer lag p99 {}, {:.1} CPU s); \
                     its latencies may be the loadgen's fault, not the server's.",
                    format::ms(phase.loadgen.timer_lag_p99_ms),
                    phase.loadgen.cpu_s
                ));
            }
            if !phase.complete {
                out.push(format!(
                    "{name}{at}: this phase was cut short ({} s measured).",
                    format::real(phase.duration_s)
                ));
            }
            if phase.clients_connected < phase.clients {
                out.push(format!(
                    "{name}{at}: only {} of {} clients connected.",
                    format::count(phase.clients_connected),
                    format::count(phase.clients)
                ));
            }
            if phase.integrity.missing > 0 {
                out.push(format!(
                    "{name}{at}: {} expected deliveries never arrived.",
                    format::count(phase.integrity.missing)
                ));
            }
            if phase.traffic.errors > 0 {
                out.push(format!(
                    "{name}{at}: {} errors.",
                    format::count(phase.traffic.errors)
                ));
            }
            out.extend(
                phase
                    .warnings
                    .iter()
                    .filter(|w| !RESTATED.iter().any(|fact| w.contains(fact)))
                    .map(|w| format!("{name}{at}: {w}")),
            );
        }
    }
    out
}
