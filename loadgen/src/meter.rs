//! The phase's shared counters: traffic totals, gauges and latency histograms that every client
//! of one transport phase records into. Counters are atomics (thousands of clients touch them,
//! and a relaxed add is cheaper than any lock); histograms are sharded behind std mutexes (held
//! for one `record`, never across an await) so that clients rarely contend, and merged at the end
//! as latte merges per-worker histograms.
//!
//! What belongs to which window (warm-up, measured window, drain) is the runner's business: it
//! takes [`TrafficSnapshot`]s at the window's edges and subtracts them.

use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use report::LatencyHistogram;

/// Shards per histogram: enough that 2 cores' worth of clients rarely wait on one another.
const SHARDS: usize = 16;

/// A latency histogram split into shards; client `i` records into shard `i % SHARDS`.
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
    /// Records `us` microseconds on behalf of client `client`.
    pub fn record_us(&self, client: usize, us: u64) {
        let mut h = self.shards[client % SHARDS]
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
    /// HTTP requests sent, or WebSocket frames sent.
    pub requests: AtomicU64,
    /// 204 answers.
    pub empty_responses: AtomicU64,
    /// TCP connections opened.
    pub connections_opened: AtomicU64,
    /// Failed connects, requests and protocol errors.
    pub errors: AtomicU64,
    /// Bytes the clients wrote.
    pub bytes_up: AtomicU64,
    /// Bytes the clients read.
    pub bytes_down: AtomicU64,
    /// Of `bytes_down`: message JSON.
    pub payload_down: AtomicU64,
    /// Of `bytes_down`: HTTP status lines and headers of non-empty answers.
    pub header_down: AtomicU64,
    /// Of `bytes_down`: whole 204 answers.
    pub empty_down: AtomicU64,
    /// Requests in flight now (a gauge).
    pub in_flight: AtomicI64,
    /// Highest `in_flight` seen.
    pub peak_in_flight: AtomicU64,
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
    /// Request round trip, µs.
    pub request_rtt: ShardedHistogram,
    /// Connect (+ handshake) time, µs.
    pub connect_time: ShardedHistogram,
}

impl PhaseMeter {
    /// Marks a request as started; pair with [`PhaseMeter::request_finished`].
    pub fn request_started(&self) {
        self.requests.fetch_add(1, Relaxed);
        let now = self.in_flight.fetch_add(1, Relaxed) + 1;
        self.peak_in_flight.fetch_max(now.max(0) as u64, Relaxed);
    }

    /// Marks a request as answered (or abandoned).
    pub fn request_finished(&self) {
        self.in_flight.fetch_sub(1, Relaxed);
    }

    /// Counts one error.
    pub fn error(&self) {
        self.errors.fetch_add(1, Relaxed);
    }

    /// The traffic counters now.
    pub fn snapshot(&self) -> TrafficSnapshot {
        TrafficSnapshot {
            requests: self.requests.load(Relaxed),
            empty_responses: self.empty_responses.load(Relaxed),
            connections_opened: self.connections_opened.load(Relaxed),
            errors: self.errors.load(Relaxed),
            bytes_up: self.bytes_up.load(Relaxed),
            bytes_down: self.bytes_down.load(Relaxed),
            payload_down: self.payload_down.load(Relaxed),
            header_down: self.header_down.load(Relaxed),
            empty_down: self.empty_down.load(Relaxed),
        }
    }
}

/// The traffic counters at one instant.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TrafficSnapshot {
    /// See [`PhaseMeter::requests`].
    pub requests: u64,
    /// See [`PhaseMeter::empty_responses`].
    pub empty_responses: u64,
    /// See [`PhaseMeter::connections_opened`].
    pub connections_opened: u64,
    /// See [`PhaseMeter::errors`].
    pub errors: u64,
    /// See [`PhaseMeter::bytes_up`].
    pub bytes_up: u64,
    /// See [`PhaseMeter::bytes_down`].
    pub bytes_down: u64,
    /// See [`PhaseMeter::payload_down`].
    pub payload_down: u64,
    /// See [`PhaseMeter::header_down`].
    pub header_down: u64,
    /// See [`PhaseMeter::empty_down`].
    pub empty_down: u64,
}

impl TrafficSnapshot {
    /// What happened between `earlier` and `self`, as the results document's [`Traffic`];
    /// framing is what is left of `bytes_down` after payload, headers and empty answers.
    ///
    /// [`Traffic`]: report::results::Traffic
    pub fn since(
        &self,
        earlier: &TrafficSnapshot,
        peak_in_flight: u64,
    ) -> report::results::Traffic {
        let d = |a: u64, b: u64| a.saturating_sub(b);
        let bytes_down = d(self.bytes_down, earlier.bytes_down);
        let payload_down = d(self.payload_down, earlier.payload_down);
        let header_down = d(self.header_down, earlier.header_down);
        let empty_down = d(self.empty_down, earlier.empty_down);
        report::results::Traffic {
            requests: d(self.requests, earlier.requests),
            empty_responses: d(self.empty_responses, earlier.empty_responses),
            connections_opened: d(self.connections_opened, earlier.connections_opened),
            errors: d(self.errors, earlier.errors),
            bytes_up: d(self.bytes_up, earlier.bytes_up),
            bytes_down,
            payload_down,
            header_down,
            framing_down: bytes_down.saturating_sub(payload_down + header_down + empty_down),
            empty_down,
            peak_in_flight,
        }
    }
}
