//! Pass/fail checks on a finished run: the scenario's `[thresholds]`, the `--threshold` flags,
//! the integrity rule (nothing missing, duplicated, out of order or misdelivered unless a threshold on that
//! figure says how much is allowed) and, with `--strict`, a loadgen that was not saturated.
//!
//! A threshold reads `[<stack>.]<transport>.<metric> <op> <number>`, e.g.
//! `websocket.latency_p99_ms < 50`, `*.missing == 0`, `nchan.sse.latency_p99_ms < 80`; `*` means
//! every transport (or every stack), and a threshold that names no stack applies to every
//! stack's phases (the scenario checks a named stack against its `[[stacks]]`). Metrics are read from the results document
//! alone ([`report::results::Phase`]), so a check means the same as the figure in
//! `results.json`; [`METRICS`] lists them with their meaning (the README's list is checked
//! against it). [`evaluate`] checks every phase of every sweep point; [`write_table`] prints
//! the verdict. What the CLI does with a failure (exit status 2) is the CLI's business.
//! [`record`] keeps the checks in the results document, so `duplex report` and `duplex
//! compare` judge a run again from the file ([`judge_recorded`], [`regressions`]).

use std::fmt;
use std::io;

use report::results::{Phase, Results};
use wire::Transport;

mod metrics;
use metrics::HISTOGRAMS;
pub use metrics::{METRICS, Metric};

/// A threshold that could not be parsed; the message names what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ThresholdError(String);

impl ThresholdError {
    /// A problem with a threshold, in one sentence.
    pub fn new(problem: impl Into<String>) -> Self {
        Self(problem.into())
    }
}

/// Where a check came from, for the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The scenario's `[thresholds]`.
    Scenario,
    /// A `--threshold` flag.
    Flag,
    /// The integrity rule: `missing`, `duplicates`, `out_of_order`, `misdelivered` are 0 unless a threshold
    /// on that figure says otherwise.
    Integrity,
    /// `--strict`: the loadgen was not saturated.
    Strict,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Origin::Scenario => "scenario",
            Origin::Flag => "--threshold",
            Origin::Integrity => "integrity",
            Origin::Strict => "--strict",
        })
    }
}

/// A comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `==`
    Eq,
    /// `!=`
    Ne,
}

impl Op {
    /// Longest first, so `<=` is not read as `<`.
    const ALL: [(&'static str, Op); 6] = [
        ("<=", Op::Le),
        (">=", Op::Ge),
        ("==", Op::Eq),
        ("!=", Op::Ne),
        ("<", Op::Lt),
        (">", Op::Gt),
    ];

    fn holds(self, value: f64, bound: f64) -> bool {
        match self {
            Op::Lt => value < bound,
            Op::Le => value <= bound,
            Op::Gt => value > bound,
            Op::Ge => value >= bound,
            Op::Eq => value == bound,
            Op::Ne => value != bound,
        }
    }
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = Op::ALL
            .iter()
            .find(|(_, op)| op == self)
            .map_or("?", |(t, _)| t);
        f.write_str(text)
    }
}

/// What a threshold reads: a named metric or a histogram quantile.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Figure {
    Named(Metric),
    /// Histogram (index into [`HISTOGRAMS`]) at a quantile in 0..=1 (1 = the maximum).
    Quantile(usize, f64),
}

impl Figure {
    fn read(&self, p: &Phase) -> Option<f64> {
        match *self {
            Figure::Named(m) => (m.value)(p),
            Figure::Quantile(h, q) => match h {
                0 => p.latency.quantile_ms(q),
                1 => p.request_rtt.quantile_ms(q),
                _ => p.connect_time.quantile_ms(q),
            },
        }
    }
}

/// One parsed check.
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    /// The stack it is about (a `stacks.name`); `None` when it names none, or `*`: every stack.
    pub stack: Option<String>,
    /// The transport it is about; `None` for `*` (every transport).
    pub transport: Option<Transport>,
    /// The metric's name as written.
    pub metric: String,
    /// The comparison.
    pub op: Op,
    /// The number compared with.
    pub bound: f64,
    /// Where it was written.
    pub origin: Origin,
    figure: Figure,
}

impl fmt::Display for Threshold {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = self.transport.map_or("*".to_owned(), |t| t.to_string());
        if let Some(stack) = &self.stack {
            write!(f, "{stack}.")?;
        }
        write!(f, "{who}.{} {} {}", self.metric, self.op, self.bound)
    }
}

fn problem(text: impl Into<String>) -> ThresholdError {
    ThresholdError(text.into())
}

/// The known metric names, for messages.
fn known_metrics() -> String {
    let mut names: Vec<String> = HISTOGRAMS
        .iter()
        .map(|(prefix, _)| format!("{prefix}pNN_ms, {prefix}max_ms"))
        .collect();
    names.extend(METRICS.iter().map(|m| m.name.to_owned()));
    names.join(", ")
}

fn figure(name: &str) -> Result<Figure, ThresholdError> {
    if let Some(m) = METRICS.iter().find(|m| m.name == name) {
        return Ok(Figure::Named(*m));
    }
    for (h, (prefix, _)) in HISTOGRAMS.iter().enumerate() {
        let Some(middle) = name
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix("_ms"))
        else {
            continue;
        };
        if middle == "max" {
            return Ok(Figure::Quantile(h, 1.0));
        }
        let digits = middle.strip_prefix('p').unwrap_or("");
        if digits.is_empty()
            || !digits.bytes().all(|b| b.is_ascii_digit())
            || digits.starts_with("100")
        {
            return Err(problem(format!(
                "`{name}`: write a percentile as p<digits> (p50, p99, p999 for 99.9) or `max`"
            )));
        }
        // p50 = 50, p999 = 99.9, p9999 = 99.99: the first two digits are whole percent.
        let (whole, fraction) = digits.split_at(digits.len().min(2));
        let percent: f64 = format!("{whole}.{fraction}0")
            .parse()
            .map_err(|_| problem(name.to_owned()))?;
        return Ok(Figure::Quantile(h, percent / 100.0));
    }
    Err(problem(format!(
        "unknown metric `{name}`; known: {}",
        known_metrics()
    )))
}

/// Parses `[<stack>.]<transport>.<metric> <op> <number>`.
pub fn parse(text: &str, origin: Origin) -> Result<Threshold, ThresholdError> {
    const SHAPE: &str = "write `[<stack>.]<transport>.<metric> <op> <number>`, e.g. `websocket.latency_p99_ms < 50`, `*.missing == 0` or `nchan.sse.latency_p99_ms < 80`";
    let at = text
        .find(['<', '>', '=', '!'])
        .ok_or_else(|| problem(format!("no comparison in {text:?}; {SHAPE}")))?;
    let (subject, rest) = text.split_at(at);
    let (op_text, op) = Op::ALL
        .into_iter()
        .find(|(t, _)| rest.starts_with(t))
        .ok_or_else(|| {
            problem(format!(
                "`{}` is not a comparison (use <, <=, >, >=, == or !=) in {text:?}",
                rest.chars().take(2).collect::<String>().trim()
            ))
        })?;
    let number = rest[op_text.len()..].trim();
    let bound: f64 = number
        .parse()
        .ok()
        .filter(|b: &f64| b.is_finite())
        .ok_or_else(|| problem(format!("`{number}` is not a number in {text:?}")))?;
    let parts: Vec<&str> = subject.trim().split('.').map(str::trim).collect();
    let (stack, who, metric) = match parts[..] {
        [who, metric] => (None, who, metric),
        [stack, who, metric] => (Some(stack), who, metric),
        [_] => {
            return Err(problem(format!(
                "no transport before the metric in {text:?}; {SHAPE}"
            )));
        }
        _ => {
            return Err(problem(format!(
                "too many parts in `{}`; {SHAPE}",
                subject.trim()
            )));
        }
    };
    let stack = match stack {
        None | Some("*") => None,
        Some(name) if is_stack_name(name) => Some(name.to_owned()),
        Some(name) => {
            return Err(problem(format!(
                "`{name}` is not a stack name (letters, digits, '_' or '-') in {text:?}"
            )));
        }
    };
    let transport = match who.trim() {
        "*" => None,
        t => Some(t.parse::<Transport>().map_err(|_| {
            problem(format!(
                "unknown transport `{t}` in {text:?} (expected *, {})",
                Transport::ALL.map(|t| t.as_str()).join(", ")
            ))
        })?),
    };
    Ok(Threshold {
        stack,
        transport,
        metric: metric.to_owned(),
        op,
        bound,
        origin,
        figure: figure(metric)?,
    })
}

/// Whether `name` could be a `stacks.name` (the scenario checks that it is one).
fn is_stack_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl Threshold {
    /// Whether it checks the phase of `stack` (its `stacks.name`, `None` for a run of one
    /// stack) on `transport`.
    fn applies_to(&self, stack: Option<&str>, transport: Option<Transport>) -> bool {
        (self.stack.is_none() || self.stack.as_deref() == stack)
            && (self.transport.is_none() || self.transport == transport)
    }
}

/// The outcome of one check on one phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The figure meets the threshold.
    Pass,
    /// It does not, or the phase has no such figure.
    Fail,
    /// The threshold names a transport (or a stack) that did not run.
    Skipped,
}

/// One row of the verdict.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// The transport, with the sweep value when the scenario sweeps (`sse (clients.count=500)`).
    pub subject: String,
    /// The rule without its transport (`latency_p99_ms < 50`).
    pub rule: String,
    /// The measured figure, when there is one.
    pub value: Option<f64>,
    /// Pass, fail or skipped.
    pub outcome: Outcome,
    /// Where the rule came from.
    pub origin: Origin,
}

/// Every check of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Verdict {
    /// In the order: per sweep point, per phase, the rules in the order given.
    pub checks: Vec<Check>,
}

impl Verdict {
    /// How many checks failed.
    pub fn failures(&self) -> usize {
        self.checks
            .iter()
            .filter(|c| c.outcome == Outcome::Fail)
            .count()
    }

    /// `true` when nothing failed.
    pub fn passed(&self) -> bool {
        self.failures() == 0
    }

    /// `true` when the table has nothing to say beyond "the integrity checks passed".
    fn only_integrity_passed(&self) -> bool {
        self.checks
            .iter()
            .all(|c| c.origin == Origin::Integrity && c.outcome == Outcome::Pass)
    }
}

/// The figures the integrity rule requires to be 0; with a `chat.mode` that leaves clients
/// out, also `misdelivered` (everyone is owed everything in `all`, so nothing can be).
const INTEGRITY: [&str; 3] = ["missing", "duplicates", "out_of_order"];

/// Checks every phase of `results` against `thresholds`, the integrity rule and, when `strict`,
/// `loadgen_saturated == 0`.
pub fn evaluate(results: &Results, thresholds: &[Threshold], strict: bool) -> Verdict {
    let addressed = results
        .scenario
        .chat_mode
        .as_deref()
        .is_some_and(|m| m != "all");
    let mut implicit: Vec<Threshold> = INTEGRITY
        .iter()
        .chain(addressed.then_some(&"misdelivered"))
        .map(|m| parse(&format!("*.{m} == 0"), Origin::Integrity).expect("a valid rule"))
        .collect();
    if strict {
        implicit.push(parse("*.loadgen_saturated == 0", Origin::Strict).expect("a valid rule"));
    }
    let sweep_key = results.scenario.sweep.as_ref().map(|s| s.key.as_str());
    let mut checks = Vec::new();
    for run in &results.runs {
        for phase in &run.phases {
            let transport: Option<Transport> = phase.transport.parse().ok();
            let applies = |t: &Threshold| t.applies_to(phase.stack.as_deref(), transport);
            let id = report::transport::phase_id(phase.stack.as_deref(), &phase.transport);
            let subject = match (sweep_key, run.sweep_value) {
                (Some(key), Some(v)) => format!("{id} ({key}={v})"),
                _ => id,
            };
            // An implicit rule gives way to any threshold the user wrote on the same figure
            // for this transport: that threshold says how much is allowed.
            let implied = implicit.iter().filter(|i| {
                !thresholds
                    .iter()
                    .any(|t| applies(t) && t.metric == i.metric)
            });
            for t in thresholds.iter().filter(|t| applies(t)).chain(implied) {
                let value = t.figure.read(phase);
                let outcome = match value {
                    Some(v) if t.op.holds(v, t.bound) => Outcome::Pass,
                    _ => Outcome::Fail,
                };
                checks.push(Check {
                    subject: subject.clone(),
                    rule: format!("{} {} {}", t.metric, t.op, t.bound),
                    value,
                    outcome,
                    origin: t.origin,
                });
            }
        }
    }
    // A threshold on a transport (or stack) that did not run is shown, so it is not silently
    // ignored.
    for t in thresholds {
        if (t.transport.is_some() || t.stack.is_some())
            && !results
                .runs
                .iter()
                .flat_map(|r| &r.phases)
                .any(|p| t.applies_to(p.stack.as_deref(), p.transport.parse().ok()))
        {
            let who = t.transport.map_or("*".to_owned(), |w| w.to_string());
            checks.push(Check {
                subject: report::transport::phase_id(t.stack.as_deref(), &who),
                rule: format!("{} {} {}", t.metric, t.op, t.bound),
                value: None,
                outcome: Outcome::Skipped,
                origin: t.origin,
            });
        }
    }
    Verdict { checks }
}

fn figure_text(value: Option<f64>) -> String {
    match value {
        None => "none".to_owned(),
        Some(v) if v.fract() == 0.0 && v.abs() < 1e15 => format!("{v}"),
        Some(v) => format!("{v:.2}"),
    }
}

/// Prints the verdict: one line when only the integrity rule ran and it passed, else a table
/// with a row per check and a closing line.
pub fn write_table(verdict: &Verdict, out: &mut impl io::Write) -> io::Result<()> {
    if verdict.only_integrity_passed() {
        return writeln!(
            out,
            "checks: {} passed (nothing missing, duplicated or out of order)",
            verdict.checks.len()
        );
    }
    // Passing integrity checks are summed up in one line: the rows that matter are the
    // thresholds someone wrote and whatever failed.
    let shown: Vec<&Check> = verdict
        .checks
        .iter()
        .filter(|c| c.origin != Origin::Integrity || c.outcome != Outcome::Pass)
        .collect();
    let integrity_passed = verdict.checks.len() - shown.len();
    let subject_w = shown
        .iter()
        .map(|c| c.subject.len())
        .max()
        .unwrap_or(0)
        .max(9);
    let rule_w = shown.iter().map(|c| c.rule.len()).max().unwrap_or(0).max(5);
    writeln!(
        out,
        "{:<6}  {:<subject_w$}  {:<rule_w$}  {:>10}  from",
        "result", "transport", "check", "measured"
    )?;
    for c in shown {
        let result = match c.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail => "FAIL",
            Outcome::Skipped => "skip",
        };
        writeln!(
            out,
            "{result:<6}  {:<subject_w$}  {:<rule_w$}  {:>10}  {}",
            c.subject,
            c.rule,
            figure_text(c.value),
            c.origin
        )?;
    }
    if integrity_passed > 0 {
        writeln!(
            out,
            "pass    the other {integrity_passed} integrity checks: nothing missing, duplicated or out of order"
        )?;
    }
    let skipped = verdict
        .checks
        .iter()
        .filter(|c| c.outcome == Outcome::Skipped)
        .count();
    let failed = verdict.failures();
    // Not "N passed, N failed": CI logs read that shape as a test runner's summary.
    if failed == 0 {
        write!(out, "checks: all {} passed", verdict.checks.len())?;
    } else {
        write!(out, "checks: {failed} of {} failed", verdict.checks.len())?;
    }
    if skipped > 0 {
        write!(out, ", {skipped} skipped (transport not run)")?;
    }
    writeln!(out)
}

mod recorded;
pub use recorded::{
    judge_both, judge_recorded, parse_recorded, record, regressions, write_regressions,
};

#[cfg(test)]
mod tests;
