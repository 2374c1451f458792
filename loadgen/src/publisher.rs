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
//! keep-alive connections of their own, apart from the subscription (as a browser would), up to
//! [`SENDER_CONNECTIONS`] of them so that a publish never waits behind an earlier one; a
//! WebSocket sender hands its orders to its own client, which sends them over its socket and
//! matches the acks (pipelined, so it never waits either).

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use crate::clients::http::HttpConn;
use crate::clients::{ClientError, PhaseCtx, PublishOrder, Window};
use crate::clock;
use crate::recipients::RequestSpan;
use crate::seed::{Stream, derive};
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
    /// The run's seed (`seed` in the scenario).
    pub seed: u64,
}

impl Schedule {
    /// The scheduled times within `window`, in order: Poisson arrivals at `rate` per second,
    /// the same for the same sender every run.
    pub fn times(&self, window: Window) -> impl Iterator<Item = Instant> {
        let rate = self.rate;
        // Seed 0 (the default) keeps the schedules runs had before the seed existed.
        let base = 0x5eed_0000 + self.sender as u64;
        let mut rng = StdRng::seed_from_u64(match self.seed {
            0 => base,
            seed => derive(seed, Stream::Schedule, base),
        });
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

/// Most keep-alive connections one HTTP sender keeps, as a browser opens up to six per host: a
/// publish that finds every open one busy opens another, up to this many; past it, it waits
/// for one to come free (as the browser's seventh request would).
pub const SENDER_CONNECTIONS: usize = 6;

/// Connections an HTTP sender opens before the window: its pool's steady state. A sender at
/// chat rates rarely has more than two publishes in flight (at 1/s over a 100 ms round trip, a
/// publish finds the previous one still travelling about 10% of the time, and a third
/// about 0.5%), and a browser keeps a used idle connection for minutes (Chromium: 5), so a
/// sender that has been chatting for a while has two. Without them, each sender's first
/// overlap in the window would pay a handshake that a browser paid long before.
const WARM_CONNECTIONS: usize = 2;

/// One HTTP sender's keep-alive connections: idle ones ready for the next publish, and a
/// permit per connection that may exist.
#[derive(Debug)]
struct SenderPool {
    /// A std mutex: held only to push or pop, never across an await.
    idle: Mutex<Vec<HttpConn>>,
    slots: Semaphore,
}

impl SenderPool {
    fn new() -> Self {
        Self {
            idle: Mutex::new(Vec::new()),
            slots: Semaphore::new(SENDER_CONNECTIONS),
        }
    }

    /// An idle connection still open, if any (closed ones are dropped).
    fn take_idle(&self) -> Option<HttpConn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(c) = idle.pop() {
            if c.is_open() {
                return Some(c);
            }
        }
        None
    }

    fn give_back(&self, conn: HttpConn) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(conn);
    }
}

/// Runs one sender: waits for the window, then publishes on schedule until its end or `stop`.
/// Each HTTP publish leaves at its scheduled time on a connection of the sender's pool, never
/// behind the sender's earlier publish still in flight (which would add that publish's round
/// trip to this one's latency, an artifact of the loadgen). Returns once its last publish was
/// answered.
pub async fn run_sender(
    phase: Arc<PhaseCtx>,
    schedule: Schedule,
    mut window: watch::Receiver<Option<Window>>,
    via: PublishVia,
    stop: CancellationToken,
) {
    let pool = Arc::new(SenderPool::new());
    // Open the pool's steady state during the warm-up, so the window measures a sender that
    // has been publishing for a while rather than its first handshakes.
    if let PublishVia::Http = via {
        let home = Some(phase.connector.home_of(schedule.sender));
        let opened = futures_util::future::join_all(
            (0..WARM_CONNECTIONS).map(|_| HttpConn::open_to(&phase, home)),
        )
        .await;
        for c in opened {
            match c {
                Ok(c) => pool.give_back(c),
                Err(e) => {
                    phase.meter.error();
                    tracing::debug!(error = %e, "publisher connect failed");
                }
            }
        }
    }
    let window = tokio::select! {
        biased;
        _ = stop.cancelled() => return,
        w = window.wait_for(Option::is_some) => match w {
            Ok(w) => w.expect("waited for Some"),
            Err(_) => return,
        },
    };
    // Publishes in flight; dropping the set (the runner aborting this sender) aborts them.
    let mut in_flight = JoinSet::new();
    for (n, scheduled) in schedule.times(window).enumerate() {
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = sleep_until(scheduled) => {}
        }
        // Reap finished publishes, so the set holds only those in flight.
        while in_flight.try_join_next().is_some() {}
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
                let (phase, pool, stop) = (Arc::clone(&phase), Arc::clone(&pool), stop.clone());
                let sender = schedule.sender;
                in_flight.spawn(async move {
                    let published = tokio::select! {
                        biased;
                        _ = stop.cancelled() => return,
                        r = publish_http(&phase, &pool, sender, order) => r,
                    };
                    if let Err(e) = published {
                        phase.meter.error();
                        tracing::debug!(error = %e, "publish failed");
                    }
                });
            }
        }
    }
    while in_flight.join_next().await.is_some() {}
}

/// One HTTP publish in the target protocol's shape, on an idle connection of the sender's pool
/// or a new one; the connection goes back to the pool when the publish succeeded (after a
/// failure its state is unknown, so it is dropped).
async fn publish_http(
    phase: &PhaseCtx,
    pool: &SenderPool,
    sender: usize,
    order: PublishOrder,
) -> Result<(), ClientError> {
    let _slot = pool
        .slots
        .acquire()
        .await
        .expect("the pool's semaphore is never closed");
    let mut c = match pool.take_idle() {
        Some(c) => c,
        None => HttpConn::open_to(phase, Some(phase.connector.home_of(sender))).await?,
    };
    // Before the publish leaves, so every receiver of it reads this node.
    phase.sender_on_node(sender, c.node());
    let stamp = Stamp {
        sender: sender as u32,
        n: order.n,
        scheduled_ns: clock::ns_at(order.scheduled.into_std()),
    };
    let body = stamp.encode(phase.payload_bytes);
    let request = phase.protocol.publish_request(phase, &stamp, body);
    let answer = c.exchange(phase, request, PUBLISH_TIMEOUT).await?;
    let meter = &phase.meter;
    meter
        .request_rtt
        .record_us((answer.end - answer.start).as_micros() as u64);
    let seq = phase.protocol.published_seq(phase, &answer, &stamp)?;
    meter
        .traffic
        .header_down
        .fetch_add(answer.head_len, Relaxed);
    let request = RequestSpan {
        left_ns: clock::ns_at(answer.start.into_std()),
        answered_ns: clock::ns_at(answer.end.into_std()),
    };
    phase.publish_acked(seq, sender, order.n, Some(request));
    pool.give_back(c);
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
            seed: 0,
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
        let seeded = Schedule { seed: 42, ..s };
        let first: Vec<_> = seeded.times(window).collect();
        assert_eq!(
            first,
            seeded.times(window).collect::<Vec<_>>(),
            "the same seed, the same schedule"
        );
        assert_ne!(first, times, "another seed, another schedule");
        let silent = Schedule { rate: 0.0, ..s };
        assert_eq!(silent.times(window).count(), 0);
    }
}
