//! What a phase shows while it runs: the per-second time series sampled from its meter (kept in
//! the results for the "per second" chart) and the progress bar drawn from the same samples.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use report::results::Second;
use tokio::time::{Instant, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::PhaseSetup;
use crate::meter::PhaseMeter;

/// Samples the meter once a second into the phase's time series, and updates the bar.
pub(super) async fn tick_seconds(
    meter: Arc<PhaseMeter>,
    start: Instant,
    bar: ProgressBar,
    clients: u64,
    stop: CancellationToken,
) -> Vec<Second> {
    let mut out = Vec::new();
    let mut ticks = interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let (mut requests, mut deliveries, mut bytes) = (0, 0, 0);
    loop {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return out,
            _ = ticks.tick() => {}
        }
        let r = meter.traffic.requests.load(Relaxed);
        let d = meter.deliveries.load(Relaxed);
        let b = meter.traffic.bytes_down.load(Relaxed);
        out.push(Second {
            second: out.len() as u32,
            requests: r - requests,
            deliveries: d - deliveries,
            bytes_down: b - bytes,
            in_flight: meter.in_flight.load(Relaxed).max(0) as u64,
        });
        (requests, deliveries, bytes) = (r, d, b);
        bar.set_position(out.len() as u64);
        bar.set_message(format!(
            "{}/{clients} conn · {} req/s · {} dlv/s · {} err",
            meter.clients_connected.load(Relaxed),
            out.last().map_or(0, |s| s.requests),
            out.last().map_or(0, |s| s.deliveries),
            meter.traffic.errors.load(Relaxed),
        ));
    }
}

pub(super) fn progress_bar(
    setup: &PhaseSetup,
    transport: Transport,
    planned: Duration,
) -> ProgressBar {
    let target = if setup.progress {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(planned.as_secs().max(1)), target);
    bar.set_style(
        ProgressStyle::with_template("{prefix:>12} [{bar:20}] {pos:>3}/{len}s {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.set_prefix(format!("{}{transport}", setup.label));
    bar
}
