//! `duplex compare BASE.json NEW.json`: the differences between two runs, per transport and
//! figure, with the ratio and whether the difference is beyond the noise the two runs' own
//! counts and histograms show (the same noise [`crate::noise`] judges models with). Both runs
//! are analysed with [`Analysis`]; for a sweep, the run each page's card shows is compared.
//! The result prints as a terminal table ([`write_table`]) and as one offline HTML page
//! ([`render_page`]). Phases pair by their identifier (`sse`, or `nchan/sse` in a run of
//! several stacks); a run of one server against a run of stacks pairs the one server's phases
//! with the stack of the same server ([`Pairing`]).

use std::io;
use std::path::{Path, PathBuf};

use crate::ReportError;
use crate::analysis::{Analysis, PhaseAnalysis};
use crate::format;
use crate::noise;
use crate::results::Results;

/// The page [`write_page`] writes into its folder.
pub const COMPARE_FILE: &str = "compare.html";

/// Writes [`render_page`] to `out_dir/compare.html` (the folder is created if missing) and
/// returns its path.
pub fn write_page(c: &Comparison, out_dir: &Path) -> Result<PathBuf, ReportError> {
    let write_error = |path: &Path, source| ReportError::Write {
        path: path.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(out_dir).map_err(|e| write_error(out_dir, e))?;
    let path = out_dir.join(COMPARE_FILE);
    std::fs::write(&path, render_page(c)).map_err(|e| write_error(&path, e))?;
    Ok(path)
}

/// One figure of one transport in both runs.
#[derive(Debug, Clone)]
pub struct Difference {
    /// Transport identifier.
    pub transport: String,
    /// What is compared, with its unit.
    pub figure: &'static str,
    /// The base run's value, `None` when it has none.
    pub base: Option<f64>,
    /// The new run's value.
    pub new: Option<f64>,
    /// How far apart two runs like these could be by noise alone; `None` when the runs do not
    /// show their noise for this figure (server CPU and memory are single readings).
    pub noise: Option<f64>,
    /// How to format the values.
    format: fn(f64) -> String,
}

impl Difference {
    /// new ÷ base, when both exist and base is not zero.
    pub fn ratio(&self) -> Option<f64> {
        match (self.base, self.new) {
            (Some(b), Some(n)) if b != 0.0 => Some(n / b),
            _ => None,
        }
    }

    /// `Some(true)` when the difference is larger than the noise, `None` when the noise is
    /// unknown or a value is missing.
    pub fn beyond_noise(&self) -> Option<bool> {
        Some((self.new? - self.base?).abs() > self.noise?)
    }

    /// `true` when the new run is worse beyond the noise (every figure here is better lower).
    pub fn regressed(&self) -> bool {
        self.beyond_noise() == Some(true) && self.new > self.base
    }

    /// The verdict in a word: "worse", "better", "same" (within noise) or "?" (noise unknown).
    pub fn verdict(&self) -> &'static str {
        match self.beyond_noise() {
            Some(true) if self.new > self.base => "worse",
            Some(true) => "better",
            Some(false) => "same",
            None => "?",
        }
    }

    fn cell(&self, v: Option<f64>) -> String {
        v.map_or_else(|| "—".into(), self.format)
    }

    /// The base value, formatted.
    pub fn base_text(&self) -> String {
        self.cell(self.base)
    }

    /// The new value, formatted.
    pub fn new_text(&self) -> String {
        self.cell(self.new)
    }

    /// The ratio, formatted (`1.52×`).
    pub fn ratio_text(&self) -> String {
        self.ratio()
            .map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
    }
}

/// Every difference between two runs, transports in the base run's order (then any only the
/// new run has).
#[derive(Debug, Clone)]
pub struct Comparison {
    /// The base run's scenario name and start.
    pub base_label: String,
    /// The new run's.
    pub new_label: String,
    /// The differences.
    pub differences: Vec<Difference>,
    /// What the two runs were asked to do differently (clients, rate, interval, rtt), so a
    /// reader knows which differences the setup explains.
    pub setup: Vec<String>,
}

impl Comparison {
    /// The figures that got worse beyond the noise.
    pub fn regressions(&self) -> Vec<&Difference> {
        self.differences.iter().filter(|d| d.regressed()).collect()
    }
}

/// How two runs' phases pair when only one of them compared stacks: the other run's phases
/// (`sse`) stand for its one server's stack (`duplex/sse`), the stack of the stacks run that
/// measured the same server: the one named after it (`duplex` for duplex's own server, a
/// child or a cluster; `nchan` or `socketio` for a peer). Runs that both or neither compared
/// stacks pair by identifier as they are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pairing {
    /// The stack the base run's phases stand for, when the base run named none.
    pub base_stack: Option<String>,
    /// The stack the new run's phases stand for, when the new run named none.
    pub new_stack: Option<String>,
    /// One sentence saying how the phases paired, or why nothing pairs.
    pub note: Option<String>,
}

impl Pairing {
    /// The pairing of `base` with `new`.
    pub fn of(base: &Results, new: &Results) -> Self {
        let stacks = |r: &Results| -> Vec<String> {
            let mut out: Vec<String> = Vec::new();
            for p in r.runs.iter().flat_map(|run| &run.phases) {
                if let Some(s) = &p.stack
                    && !out.contains(s)
                {
                    out.push(s.clone());
                }
            }
            out
        };
        let (in_base, in_new) = (stacks(base), stacks(new));
        let (single, stacked, single_is_base) = match (in_base.is_empty(), in_new.is_empty()) {
            (true, false) => (base, &in_new, true),
            (false, true) => (new, &in_base, false),
            _ => return Self::default(),
        };
        let side = if single_is_base { "base" } else { "new" };
        let other = if single_is_base { "new" } else { "base" };
        let server = server_of(&single.environment.target);
        let Some(stack) = server.filter(|s| stacked.iter().any(|x| x == s)) else {
            return Self {
                note: Some(format!(
                    "nothing pairs: {side} measured one server ({}) and {other} compared the \
                     stacks {}, none of them {}",
                    single.environment.target,
                    stacked.join(", "),
                    server.map_or("a server this report can name".to_owned(), |s| format!(
                        "named {s}"
                    )),
                )),
                ..Self::default()
            };
        };
        let note = Some(format!(
            "{side} measured one server ({stack}) and {other} compared stacks: {side}'s phases \
             are paired with {other}'s {stack} stack"
        ));
        let stack = Some(stack.to_owned());
        if single_is_base {
            Self {
                base_stack: stack,
                note,
                ..Self::default()
            }
        } else {
            Self {
                new_stack: stack,
                note,
                ..Self::default()
            }
        }
    }

    /// A base run's phase (or check subject) as the new run would name it.
    pub fn base_id(&self, id: &str) -> String {
        named(self.base_stack.as_deref(), id)
    }

    /// A new run's phase (or check subject) as the base run would name it.
    pub fn new_id(&self, id: &str) -> String {
        named(self.new_stack.as_deref(), id)
    }
}

fn named(stack: Option<&str>, id: &str) -> String {
    match stack {
        Some(stack) => format!("{stack}/{id}"),
        None => id.to_owned(),
    }
}

/// Which stack a run of one server measured, from how its results name the server
/// (`Environment::target`): a peer's name, `duplex` for duplex's own child or cluster, `None`
/// for a server at a URL (it could be anything).
fn server_of(target: &str) -> Option<&'static str> {
    if let Some((name, _)) = target.split_once(" peer, child pid") {
        return ["nchan", "socketio"].into_iter().find(|&p| p == name);
    }
    (target.contains("embedded child") || target.starts_with("a cluster of")).then_some("duplex")
}

/// Compares `new` with `base`.
pub fn compare(base: &Results, new: &Results) -> Comparison {
    let (a, b) = (Analysis::of(base), Analysis::of(new));
    let pairing = Pairing::of(base, new);
    let base_phases: Vec<(String, &PhaseAnalysis)> = a
        .headline()
        .map_or(&[][..], |r| &r.phases)
        .iter()
        .map(|p| (pairing.base_id(p.id()), p))
        .collect();
    let new_phases: Vec<(String, &PhaseAnalysis)> = b
        .headline()
        .map_or(&[][..], |r| &r.phases)
        .iter()
        .map(|p| (pairing.new_id(p.id()), p))
        .collect();
    let mut ids: Vec<&str> = base_phases.iter().map(|(id, _)| id.as_str()).collect();
    for (id, _) in &new_phases {
        if !ids.contains(&id.as_str()) {
            ids.push(id);
        }
    }
    let mut differences = Vec::new();
    for id in ids {
        let x = base_phases.iter().find(|(i, _)| i == id).map(|(_, p)| *p);
        let y = new_phases.iter().find(|(i, _)| i == id).map(|(_, p)| *p);
        differences.extend(figures(id, x, y));
    }
    let label = |r: &Results| format!("{} ({})", r.scenario.name, r.started_at);
    let mut setup: Vec<String> = pairing.note.into_iter().collect();
    if let (Some(x), Some(y)) = (a.headline(), b.headline()) {
        let (x, y) = (x.run, y.run);
        let mut differs = |what: &str, p: f64, q: f64| {
            if p != q {
                setup.push(format!(
                    "{what}: {} in base, {} in new",
                    format::value(p),
                    format::value(q)
                ));
            }
        };
        differs("clients per transport", x.clients as f64, y.clients as f64);
        differs(
            "messages per second per sender",
            x.rate_per_sender,
            y.rate_per_sender,
        );
        differs(
            "short-poll interval (ms)",
            x.short_poll_interval_ms,
            y.short_poll_interval_ms,
        );
        differs("round trip (ms)", x.rtt_ms, y.rtt_ms);
    }
    Comparison {
        base_label: label(base),
        new_label: label(new),
        differences,
        setup,
    }
}

/// The compared figures of one transport.
fn figures(id: &str, x: Option<&PhaseAnalysis>, y: Option<&PhaseAnalysis>) -> Vec<Difference> {
    let diff = |figure,
                format: fn(f64) -> String,
                value: &dyn Fn(&PhaseAnalysis) -> Option<f64>,
                noise: &dyn Fn(&PhaseAnalysis) -> Option<f64>| {
        let both_noise = match (x.and_then(noise), y.and_then(noise)) {
            (Some(a), Some(b)) => Some(a + b),
            _ => None,
        };
        Difference {
            transport: id.to_string(),
            figure,
            base: x.and_then(value),
            new: y.and_then(value),
            noise: both_noise,
            format,
        }
    };
    // Independent samples: deliveries when every delivery waits on its own client's poll
    // timing, messages when the clients of one message share its fate (see `noise`).
    let independent = |a: &PhaseAnalysis| {
        if a.model.is_some_and(|m| m.latency.wait_share > 0.0) {
            a.phase.integrity.deliveries_received
        } else {
            a.phase.messages_published
        }
    };
    let latency = |q: f64| {
        move |a: &PhaseAnalysis| noise::quantile_sampling_ms(&a.phase.latency, q, independent(a))
    };
    // A count n has Poisson noise √n; three of them, as a rate or a share of the total.
    let rate_noise = |a: &PhaseAnalysis| {
        (a.phase.duration_s > 0.0)
            .then(|| 3.0 * (a.phase.traffic.requests as f64).sqrt() / a.phase.duration_s)
    };
    let per_message_noise = |v: Option<f64>, a: &PhaseAnalysis| {
        let n = a.phase.integrity.deliveries_received as f64;
        v.map(|v| 3.0 * v / n.max(1.0).sqrt())
    };
    vec![
        diff(
            "latency p50 (ms)",
            format::ms,
            &|a| a.measured.latency_p50_ms,
            &latency(0.5),
        ),
        diff(
            "latency p99 (ms)",
            format::ms,
            &|a| a.measured.latency_p99_ms,
            &latency(0.99),
        ),
        diff(
            "requests / s",
            format::real,
            &|a| Some(a.measured.requests_per_s),
            &rate_noise,
        ),
        diff(
            "bytes down / message",
            format::bytes,
            &|a| a.measured.bytes_down_per_message,
            &|a| per_message_noise(a.measured.bytes_down_per_message, a),
        ),
        diff(
            "bytes up / message",
            format::bytes,
            &|a| a.measured.bytes_up_per_message,
            &|a| per_message_noise(a.measured.bytes_up_per_message, a),
        ),
        diff(
            "empty answers",
            format::share,
            &|a| a.measured.empty_share,
            &|a| {
                let p = a.measured.empty_share?;
                Some(3.0 * (p * (1.0 - p) / a.measured.poll_answers.max(1) as f64).sqrt())
            },
        ),
        diff(
            "server CPU (s)",
            |v| format!("{v:.2} s"),
            &|a| Some(a.phase.server.cpu_s),
            &|_| None,
        ),
        diff(
            "server memory peak",
            |v| format::mib(v as u64),
            &|a| Some(a.phase.server.rss_peak_bytes as f64),
            &|_| None,
        ),
        // Any lost delivery is beyond noise: a correct run loses none.
        diff(
            "missing deliveries",
            |v| format::count(v as u64),
            &|a| Some(a.phase.integrity.missing as f64),
            &|_| Some(0.0),
        ),
    ]
}

/// Prints the comparison as a table, one line per transport and figure.
pub fn write_table(c: &Comparison, out: &mut impl io::Write) -> io::Result<()> {
    writeln!(out, "base: {}\nnew:  {}", c.base_label, c.new_label)?;
    for line in &c.setup {
        writeln!(out, "setup differs: {line}")?;
    }
    writeln!(
        out,
        "{:<10} {:<22} {:>12} {:>12} {:>8}  beyond noise?",
        "transport", "figure", "base", "new", "ratio"
    )?;
    for d in &c.differences {
        writeln!(
            out,
            "{:<10} {:<22} {:>12} {:>12} {:>8}  {}",
            d.transport,
            d.figure,
            d.base_text(),
            d.new_text(),
            d.ratio_text(),
            d.verdict()
        )?;
    }
    let worse = c.regressions();
    if worse.is_empty() {
        writeln!(out, "no figure got worse beyond the noise")
    } else {
        writeln!(out, "{} figure(s) got worse beyond the noise", worse.len())
    }
}

/// The comparison as one self-contained HTML page (no scripts, nothing loaded from elsewhere;
/// every text escaped).
pub fn render_page(c: &Comparison) -> String {
    let esc = |s: &str| {
        s.replace('&', "&amp;")
            .replace('<', "&lt;")
            .replace('>', "&gt;")
            .replace('"', "&quot;")
    };
    let mut rows = String::new();
    for d in &c.differences {
        rows.push_str(&format!(
            "<tr class=\"{}\"><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            d.verdict().replace('?', "unknown"),
            esc(&d.transport),
            esc(d.figure),
            esc(&d.base_text()),
            esc(&d.new_text()),
            esc(&d.ratio_text()),
            d.verdict()
        ));
    }
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <title>duplex compare</title>\n<style>\n\
         body {{ font-family: system-ui, sans-serif; margin: 24px 32px; font-size: 18px; }}\n\
         table {{ border-collapse: collapse; }} td, th {{ padding: .3em .7em; border-bottom: 1px solid #ccc; text-align: left; }}\n\
         tr.worse td {{ color: #b00020; font-weight: 700; }} tr.better td {{ color: #006b4f; }}\n\
         tr.unknown td:last-child {{ color: #777; }}\n\
         </style>\n</head>\n<body>\n<h1>duplex compare</h1>\n\
         <p>Base: {}<br>New: {}</p>\n{}\
         <p>“worse” or “better” only when the difference is larger than the noise the two runs' own counts and \
         histograms show; “same” when it is within it; “?” when a figure is a single reading without a measure of its noise.</p>\n\
         <table>\n<thead><tr><th>transport</th><th>figure</th><th>base</th><th>new</th><th>new ÷ base</th><th>beyond noise?</th></tr></thead>\n\
         <tbody>\n{rows}</tbody>\n</table>\n</body>\n</html>\n",
        esc(&c.base_label),
        esc(&c.new_label),
        c.setup
            .iter()
            .map(|l| format!("<p>Setup differs: {}</p>\n", esc(l)))
            .collect::<String>()
    )
}
