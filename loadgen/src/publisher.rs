//! The senders: each publishes on a schedule fixed in advance (open model) during the measured
//! window, never "after the previous one finished". A message's stamp carries its *scheduled*
//! time, so when the server (or the loadgen) falls behind, the lateness shows up in delivery
//! latency instead of quietly stretching the schedule.
//!
//! Arrivals are Poisson: each sender's gaps are exponential with mean `1 / rate`, drawn from an
//! RNG seeded with the sender's index, so a scenario publishes at the same offsets every run.
//! Why not evenly spaced: real chat is bursty, and with evenly interleaved senders a short poll
//! would find exactly `λT` messages every time and never come back empty, hiding the waste the
//! model's `e^(-λT)` empty share describes. The room's stream (all senders together) is then
//! Poisson with `λ = senders × rate`, which is what the report's models assume.
//!
//! HTTP transports publish with the target protocol's request (duplex: `POST .../messages`) on
//! a keep-alive connection of their own (a browser would use a second connection too); a
//! WebSocket sender hands its orders to its own client, which sends them over its socket and
//! matches the acks.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::clients::http::HttpConn;
use crate::clients::{ClientError, PhaseCtx, PublishOrder, Window};
use crate::clock;
use crate::stamp::Stamp;

/// How long one publish may take before it counts as failed.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(10);

/// How a sender's messages reach the server.
#[derive(Debug)]
pub enum PublishVia {
    /// `POST` on the sender's own connection.
    Http,
    /// Through the sender's WebSocket client.
    WebSocket(mpsc::UnboundedSender<PublishOrder>),
}

/// One sender's schedule.
#[derive(Debug, Clone, Copy)]
pub struct Schedule {
    /// This sender's index (also its client index).
    pub sender: usize,
    /// Messages per second for this sender.
    pub rate: f64,
}

impl Schedule {
    /// The scheduled times within `window`, in order: Poisson arrivals at `rate` per second,
    /// the same for the same sender every run.
    pub fn times(&self, window: Window) -> impl Iterator<Item = Instant> {
        let rate = self.rate;
        let mut rng = StdRng::seed_from_u64(0x5eed_0000 + self.sender as u64);
        let mut at = window.start;
        std::iter::from_fn(move || {
            if rate <= 0.0 {
                return None;
            }
            // 1 - U lies in (0, 1], so the logarithm is finite.
            let u: f64 = 1.0 - rng.random::<f64>();
            at += Duration::from_secs_f64(-u.ln() / rate);
            (at < window.end).then_some(at)
        })
    }
}

/// Runs one sender: waits for the window, then publishes on schedule until its end or `stop`.
pub async fn run_sender(
    phase: Arc<PhaseCtx>,
    schedule: Schedule,
    mut window: watch::Receiver<Option<Window>>,
    via: PublishVia,
    stop: CancellationToken,
) {
    // Open the HTTP connection during the warm-up so the first publish does not pay for it.
    let mut conn = match via {
        PublishVia::Http => match HttpConn::open(&phase).await {
            Ok(c) => Some(c),
            Err(e) => {
                phase.meter.error();
                tracing::debug!(error = %e, "publisher connect failed");
                None
            }
        },
        PublishVia::WebSocket(_) => None,
    };
    let window = tokio::select! {
        biased;
        _ = stop.cancelled() => return,
        w = window.wait_for(Option::is_some) => match w {
            Ok(w) => w.expect("waited for Some"),
            Err(_) => return,
        },
    };
    for (n, scheduled) in schedule.times(window).enumerate() {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = sleep_until(scheduled) => {}
        }
        let order = PublishOrder {
            n: n as u32,
            scheduled,
        };
        match &via {
            PublishVia::WebSocket(tx) => {
                if tx.send(order).is_err() {
                    return;
                }
            }
            PublishVia::Http => {
                let published = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    r = publish_http(&phase, &mut conn, schedule.sender, order) => r,
                };
                if let Err(e) = published {
                    phase.meter.error();
                    tracing::debug!(error = %e, "publish failed");
                    conn = None;
                }
            }
        }
    }
}

/// One HTTP publish in the target protocol's shape, reopening the connection when needed.
async fn publish_http(
    phase: &PhaseCtx,
    conn: &mut Option<HttpConn>,
    sender: usize,
    order: PublishOrder,
) -> Result<(), ClientError> {
    if conn.as_ref().is_none_or(|c| !c.is_open()) {
        *conn = Some(HttpConn::open(phase).await?);
    }
    let c = conn.as_mut().expect("opened above");
    let stamp = Stamp {
        sender: sender as u32,
        n: order.n,
        scheduled_ns: clock::ns_at(order.scheduled.into_std()),
    };
    let body = stamp.encode(phase.payload_bytes);
    let request = phase
        .protocol
        .publish_request(phase, &format!("c{sender}"), body);
    let answer = c.exchange(phase, request, PUBLISH_TIMEOUT).await?;
    let meter = &phase.meter;
    meter
        .request_rtt
        .record_us(sender, (answer.end - answer.start).as_micros() as u64);
    let seq = phase.protocol.published_seq(&answer)?;
    meter
        .traffic
        .header_down
        .fetch_add(answer.head_len, Relaxed);
    phase.publish_acked(seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_is_poisson_at_the_rate_and_stays_in_the_window() {
        let start = Instant::now();
        let window = Window {
            start,
            end: start + Duration::from_secs(1000),
        };
        let s = Schedule {
            sender: 3,
            rate: 2.0,
        };
        let times: Vec<_> = s.times(window).collect();
        // 2,000 expected; a Poisson count's standard deviation is about 45.
        assert!((1800..=2200).contains(&times.len()), "{}", times.len());
        assert!(times.windows(2).all(|w| w[0] <= w[1]));
        assert!(times.iter().all(|&t| t >= window.start && t < window.end));
        // Gaps are exponential: about 1 - e^-1 = 63% of them are shorter than the mean.
        let short = times
            .windows(2)
            .filter(|w| w[1] - w[0] < Duration::from_millis(500))
            .count() as f64
            / (times.len() - 1) as f64;
        assert!((0.58..0.68).contains(&short), "{short}");
        let again: Vec<_> = s.times(window).collect();
        assert_eq!(times, again, "the same sender gets the same schedule");
        let silent = Schedule { rate: 0.0, ..s };
        assert_eq!(silent.times(window).count(), 0);
    }
}
