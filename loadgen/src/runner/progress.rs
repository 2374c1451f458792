//! What a phase shows while it runs: the per-second time series sampled from its meter (kept in
//! the results for the "per second" chart) and the progress drawn from the same samples: an
//! indicatif bar on a terminal, or, when stderr is a pipe or a CI log ([`ProgressMode::Lines`]),
//! a plain line every few seconds, which a log keeps readably where redrawn bars would not.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::results::Second;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::PhaseSetup;
use crate::meter::PhaseMeter;

/// How a run shows its progress on stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// Redrawn bars, for a terminal.
    Bars,
    /// A plain line every 5 seconds of a phase and one when it ends, for logs.
    Lines,
    /// Nothing (tests).
    Hidden,
}

impl ProgressMode {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn for_stderr() -> ProgressMode {
        use std::io::IsTerminal as _;
        if std::io::stderr().is_terminal() {
            ProgressMode::Bars
        } else {
            ProgressMode::Lines
        }
    }
}

/// How often [`ProgressMode::Lines`] prints, in phase seconds.
const LINE_EVERY: u64 = 5;

/// A phase's progress, with the three calls the runner makes on an indicatif bar.
#[derive(Debug, Clone)]
pub(super) struct PhaseProgress {
    bar: ProgressBar,
    /// Set in [`ProgressMode::Lines`]: the line's prefix and planned seconds, and the message.
    lines: Option<Arc<Mutex<Lines>>>,
}

#[derive(Debug)]
struct Lines {
    prefix: String,
    planned_s: u64,
    message: String,
}

impl PhaseProgress {
    pub(super) fn set_message(&self, message: String) {
        match &self.lines {
            Some(lines) => lines.lock().unwrap_or_else(|e| e.into_inner()).message = message,
            None => self.bar.set_message(message),
        }
    }

    /// Called once a second, after [`PhaseProgress::set_message`]; in lines mode, prints the
    /// message every [`LINE_EVERY`] seconds.
    pub(super) fn set_position(&self, second: u64) {
        match &self.lines {
            Some(lines) if second.is_multiple_of(LINE_EVERY) => {
                let l = lines.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("{} {second:>3}/{}s {}", l.prefix, l.planned_s, l.message);
            }
            Some(_) => {}
            None => self.bar.set_position(second),
        }
    }

    pub(super) fn finish_with_message(&self, message: String) {
        match &self.lines {
            Some(lines) => {
                let l = lines.lock().unwrap_or_else(|e| e.into_inner());
                eprintln!("{} {message}", l.prefix);
            }
            None => self.bar.finish_with_message(message),
        }
    }
}

/// Samples the meter once a second into the phase's time series, and updates the bar.
pub(super) async fn tick_seconds(
    meter: Arc<PhaseMeter>,
    start: Instant,
    bar: PhaseProgress,
    clients: u64,
    stop: CancellationToken,
) -> Vec<Second> {
    let mut out = Vec::new();
    let mut ticks = interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut requests, mut deliveries, mut bytes, mut reconnects) = (0, 0, 0, 0);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return out,
            _ = ticks.tick() => {}
        }
        let r = meter.traffic.requests.load(Relaxed);
        let d = meter.deliveries.load(Relaxed);
        let b = meter.traffic.bytes_down.load(Relaxed);
        let c = meter.reconnects.load(Relaxed);
        out.push(Second {
            second: out.len() as u32,
            requests: r - requests,
            deliveries: d - deliveries,
            bytes_down: b - bytes,
            in_flight: meter.in_flight.load(Relaxed).max(0) as u64,
            latency_max_us: meter.latency_max_us.swap(0, Relaxed),
            reconnects: c - reconnects,
        });
        (requests, deliveries, bytes, reconnects) = (r, d, b, c);
        bar.set_message(format!(
            "{}/{clients} conn · {} req/s · {} dlv/s · {} err",
            meter.clients_connected.load(Relaxed),
            out.last().map_or(0, |s| s.requests),
            out.last().map_or(0, |s| s.deliveries),
            meter.traffic.errors.load(Relaxed),
        ));
        // After the message, so a printed line shows this second's figures.
        bar.set_position(out.len() as u64);
    }
}

pub(super) fn progress_bar(
    setup: &PhaseSetup,
    transport: Transport,
    planned: Duration,
) -> PhaseProgress {
    let target = match setup.progress {
        ProgressMode::Bars => ProgressDrawTarget::stderr(),
        ProgressMode::Lines | ProgressMode::Hidden => ProgressDrawTarget::hidden(),
    };
    let bar = ProgressBar::with_draw_target(Some(planned.as_secs().max(1)), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos:>3}/{len}s {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let prefix = format!("{}{transport}", setup.label);
    bar.set_prefix(prefix.clone());
    let lines = (setup.progress == ProgressMode::Lines).then(|| {
        Arc::new(Mutex::new(Lines {
            prefix,
            planned_s: planned.as_secs().max(1),
            message: String::new(),
        }))
    });
    PhaseProgress { bar, lines }
}
