//! The phase's shared counters: traffic totals, gauges and latency histograms that every client
//! of one transport phase records into. Counters are atomics (thousands of clients touch them,
//! and a relaxed add is cheaper than any lock); histograms are sharded behind std mutexes (held
//! for one `record`, never across an await), one shard per runtime thread, and merged at the end
//! as latte merges per-worker histograms. A shard per thread rather than per client: each
//! worker records into its own histogram, whose counts stay in that core's cache and whose
//! lock no other worker takes (a histogram is ~200 KiB of counts; recording a delivery into one
//! of 16 shards chosen by client touched a cold line of a shared one almost every time).
//!
//! What belongs to which window (warm-up, measured window, drain) is the runner's business: it
//! takes [`TrafficSnapshot`]s at the window's edges and subtracts them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};

use report::LatencyHistogram;
use report::results::Traffic;

/// Shards per histogram: one per thread that records (the runtime's workers, and a few others:
/// the probe's sampler, blocking threads) before two threads share one.
const SHARDS: usize = 16;

/// The shard the current thread records into: threads are numbered as they first record.
fn thread_shard() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static SHARD: usize = NEXT.fetch_add(1, Relaxed) % SHARDS;
    }
    SHARD.with(|s| *s)
}

/// A latency histogram split into shards; each thread records into its own
/// (`thread_shard`).
#[derive(Debug)]
pub struct ShardedHistogram {
    shards: Vec<Mutex<LatencyHistogram>>,
}

impl Default for ShardedHistogram {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(LatencyHistogram::new()))
                .collect(),
        }
    }
}

impl ShardedHistogram {
    /// Records `us` microseconds.
    pub fn record_us(&self, us: u64) {
        let mut h = self.shards[thread_shard()]
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        h.record_us(us);
    }

    /// All shards merged into one histogram.
    pub fn merged(&self) -> LatencyHistogram {
        let mut out = LatencyHistogram::new();
        for shard in &self.shards {
            out.merge(&shard.lock().unwrap_or_else(|e| e.into_inner()));
        }
        out
    }

    /// Empties every shard.
    pub fn reset(&self) {
        for shard in &self.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).0.reset();
        }
    }
}

/// Everything the clients of one phase record.
#[derive(Debug, Default)]
pub struct PhaseMeter {
    /// The traffic counters, declared once with the results document's [`Traffic`]. Its
    /// `framing_down` stays 0 here (framing is what is left over, worked out by
    /// [`TrafficSnapshot::since`]); its `peak_in_flight` is the highest `in_flight` seen.
    pub traffic: Traffic<AtomicU64>,
    /// Requests in flight now (a gauge).
    pub in_flight: AtomicI64,
    /// Message arrivals, duplicates included.
    pub deliveries: AtomicU64,
    /// First arrivals of a stamped message at a client (what integrity calls received).
    pub distinct_deliveries: AtomicU64,
    /// Clients that finished their connect attempt (connected or given up).
    pub clients_attempted: AtomicU64,
    /// Clients connected and subscribed.
    pub clients_connected: AtomicU64,
    /// Publishes the server acknowledged.
    pub published: AtomicU64,
    /// Delivery latency, µs.
    pub latency: ShardedHistogram,
    /// With a cluster, the deliveries of `latency` whose receiver was on its sender's node.
    pub latency_same_node: ShardedHistogram,
    /// With a cluster, those whose receiver was on another node.
    pub latency_across_nodes: ShardedHistogram,
    /// The slowest delivery since the time series' last tick, µs (taken and zeroed each second).
    pub latency_max_us: AtomicU64,
    /// Clients that reconnected after a failed connection (a counter; the time series takes
    /// differences).
    pub reconnects: AtomicU64,
    /// Request round trip, µs.
    pub request_rtt: ShardedHistogram,
    /// Connect (+ handshake) time, µs.
    pub connect_time: ShardedHistogram,
}

impl PhaseMeter {
    /// Marks a request as started; pair with [`PhaseMeter::request_finished`].
    pub fn request_started(&self) {
        self.traffic.requests.fetch_add(1, Relaxed);
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.traffic
            .peak_in_flight
            .fetch_max(now.max(0) as u64, Relaxed);
    }

    /// Marks a request as answered (or abandoned).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.traffic.errors.fetch_add(1, Relaxed);
    }

    /// Starts a new peak of requests in flight from those in flight now (at a window's start).
    pub fn restart_peak_in_flight(&self) {
        self.traffic
            .peak_in_flight
            .store(self.in_flight.load(Relaxed).max(0) as u64, Relaxed);
    }

    /// The traffic counters now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot(self.traffic.map(|c| c.load(Relaxed)))
    }
}

/// The traffic counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot(pub Traffic);

impl TrafficSnapshot {
    /// What happened between `earlier` and `self`, as the results document's [`Traffic`]: each
    /// counter's difference, except the peak of requests in flight, which is `self`'s (a peak
    /// since [`PhaseMeter::restart_peak_in_flight`]), and framing, which is what is left of
    /// `bytes_down` after payload, headers and empty answers.
    pub fn since(&self, earlier: &TrafficSnapshot) -> Traffic {
        let mut t = self.0.zip(&earlier.0, |a, b| a.saturating_sub(*b));
        t.peak_in_flight = self.0.peak_in_flight;
        t.framing_down = t
            .bytes_down
            .saturating_sub(t.payload_down + t.header_down + t.empty_down);
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_subtracts_counters_keeps_the_peak_and_derives_framing() {
        let meter = PhaseMeter::default();
        meter.request_started();
        meter.traffic.bytes_down.fetch_add(100, Relaxed);
        let before = meter.snapshot();
        meter.restart_peak_in_flight();
        meter.request_started();
        meter.request_finished();
        meter.traffic.bytes_down.fetch_add(50, Relaxed);
        meter.traffic.payload_down.fetch_add(20, Relaxed);
        meter.traffic.header_down.fetch_add(10, Relaxed);
        meter.traffic.empty_down.fetch_add(5, Relaxed);
        let t = meter.snapshot().since(&before);
        assert_eq!(t.requests, 1);
        assert_eq!(t.bytes_down, 50);
        assert_eq!(t.framing_down, 15);
        // One request was in flight at the window's start and a second joined it.
        assert_eq!(t.peak_in_flight, 2);
    }
}
