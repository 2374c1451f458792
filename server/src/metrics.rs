//! Counters the server keeps about itself, rendered as Prometheus text at `/metrics` and read
//! directly (as [`TransportStats`]) by the live page. This module owns the metric names; it
//! leaves the counting to the places that see the events (handlers, the metered socket).
//!
//! Labels: the four transports, plus `publish` (HTTP `POST .../messages`) and `other` (`/metrics`,
//! `/healthz`, the live page, unknown paths). Bytes are counted at the socket, headers and
//! framing included, and attributed to the endpoint of the request the connection is serving.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use crate::feed::Feed;
use wire::Transport;

/// What a request or connection is used for: a metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Endpoint {
    /// One of the four subscribing transports.
    Transport(Transport),
    /// `POST /api/rooms/{room}/messages`.
    Publish,
    /// Anything else.
    Other,
}

impl Endpoint {
    /// Every endpoint, in label order.
    pub const ALL: [Endpoint; 6] = [
        Endpoint::Transport(Transport::ShortPoll),
        Endpoint::Transport(Transport::LongPoll),
        Endpoint::Transport(Transport::Sse),
        Endpoint::Transport(Transport::WebSocket),
        Endpoint::Publish,
        Endpoint::Other,
    ];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::Transport(t) => t.as_str(),
            Endpoint::Publish => "publish",
            Endpoint::Other => "other",
        }
    }

    /// Its position in [`Endpoint::ALL`] (the index of its counters).
    pub(crate) fn index(self) -> usize {
        match self {
            Endpoint::Transport(t) => transport_index(t),
            Endpoint::Publish => 4,
            Endpoint::Other => 5,
        }
    }

    /// Which endpoint a request path belongs to (`/api/rooms/{room}/{kind}`).
    pub fn from_path(path: &str) -> Endpoint {
        let mut parts = path.trim_start_matches('/').split('/');
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some("api"), Some("rooms"), Some(_), Some(kind)) => match kind {
                "messages" => Endpoint::Publish,
                "poll" => Endpoint::Transport(Transport::ShortPoll),
                "longpoll" => Endpoint::Transport(Transport::LongPoll),
                "sse" => Endpoint::Transport(Transport::Sse),
                "ws" => Endpoint::Transport(Transport::WebSocket),
                _ => Endpoint::Other,
            },
            _ => Endpoint::Other,
        }
    }

    /// The endpoint at position `i` of [`Endpoint::ALL`].
    pub(crate) fn from_index(i: usize) -> Option<Endpoint> {
        Endpoint::ALL.get(i).copied()
    }
}

fn transport_index(t: Transport) -> usize {
    match t {
        Transport::ShortPoll => 0,
        Transport::LongPoll => 1,
        Transport::Sse => 2,
        Transport::WebSocket => 3,
    }
}

/// A snapshot of one transport's counters, for the live page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// Which transport.
    pub transport: Transport,
    /// Open SSE streams / WebSockets, or requests in flight for the polls.
    pub open_connections: i64,
    /// Requests answered (all statuses; WebSocket counts its upgrade).
    pub requests: u64,
    /// Messages delivered to clients.
    pub deliveries: u64,
    /// Bytes written to sockets serving this transport (headers and framing included).
    pub bytes_sent: u64,
    /// Bytes read from sockets serving this transport.
    pub bytes_received: u64,
}

/// The server's counters. Cheap to update from any task: atomics, plus one short lock for the
/// `(endpoint, status)` request counts.
#[derive(Debug, Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(Endpoint, u16), u64>>,
    open: [AtomicI64; 4],
    deliveries: [AtomicU64; 4],
    bytes_sent: [AtomicU64; 6],
    bytes_received: [AtomicU64; 6],
    /// TCP connections open right now (upgraded WebSockets included); the connection limit
    /// checks this.
    tcp_open: AtomicUsize,
    tcp_accepted: AtomicU64,
    tcp_refused: AtomicU64,
    /// Connections dropped because their client took no bytes for `write_timeout`.
    write_timeouts: AtomicU64,
    /// Connections closed because a request head (408) or body did not arrive in time.
    request_timeouts: AtomicU64,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record_request(&self, endpoint: Endpoint, status: u16) {
        let mut map = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((endpoint, status)).or_default() += 1;
    }

    /// Counts `n` messages delivered over `transport`.
    pub fn record_deliveries(&self, transport: Transport, n: u64) {
        self.deliveries[transport_index(transport)].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes written to a socket serving `endpoint`.
    pub fn record_sent(&self, endpoint: Endpoint, n: u64) {
        self.bytes_sent[endpoint.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Counts bytes read from a socket serving `endpoint`.
    pub fn record_received(&self, endpoint: Endpoint, n: u64) {
        self.bytes_received[endpoint.index()].fetch_add(n, Ordering::Relaxed);
    }

    /// Marks one connection (or in-flight poll) of `transport` open until the guard drops.
    pub fn open(self: &Arc<Self>, transport: Transport) -> OpenGuard {
        self.open[transport_index(transport)].fetch_add(1, Ordering::Relaxed);
        OpenGuard {
            metrics: self.clone(),
            transport,
        }
    }

    /// Takes a TCP connection slot until the guard drops.
    pub(crate) fn tcp_slot(self: &Arc<Self>) -> TcpSlot {
        self.tcp_open.fetch_add(1, Ordering::Relaxed);
        self.tcp_accepted.fetch_add(1, Ordering::Relaxed);
        TcpSlot {
            metrics: self.clone(),
        }
    }

    pub(crate) fn record_refused(&self) {
        self.tcp_refused.fetch_add(1, Ordering::Relaxed);
    }

    /// A connection was dropped: its client read nothing for the write timeout.
    pub(crate) fn record_write_timeout(&self) {
        self.write_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// A request head or body did not arrive within the request timeout.
    pub(crate) fn record_request_timeout(&self) {
        self.request_timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// Connections dropped so far because their client read nothing for the write timeout.
    pub fn write_timeouts(&self) -> u64 {
        self.write_timeouts.load(Ordering::Relaxed)
    }

    /// TCP connections open right now, all endpoints.
    pub fn tcp_open(&self) -> usize {
        self.tcp_open.load(Ordering::Relaxed)
    }

    /// One transport's counters.
    pub fn transport(&self, transport: Transport) -> TransportStats {
        let i = transport_index(transport);
        let endpoint = Endpoint::Transport(transport);
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|((e, _), _)| *e == endpoint)
            .map(|(_, n)| n)
            .sum();
        TransportStats {
            transport,
            open_connections: self.open[i].load(Ordering::Relaxed),
            requests,
            deliveries: self.deliveries[i].load(Ordering::Relaxed),
            bytes_sent: self.bytes_sent[i].load(Ordering::Relaxed),
            bytes_received: self.bytes_received[i].load(Ordering::Relaxed),
        }
    }

    /// Renders every metric in the Prometheus text format.
    pub fn render(&self, feed: &Feed) -> String {
        let mut out = String::with_capacity(4096);
        let w = &mut out;
        header(
            w,
            "duplex_requests_total",
            "counter",
            "HTTP requests answered, by endpoint and status (WebSocket upgrades count as 101; refusals past --max-connections as 503).",
        );
        let requests = self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        for ((endpoint, status), n) in requests {
            let _ = writeln!(
                w,
                "duplex_requests_total{{transport=\"{}\",status=\"{status}\"}} {n}",
                endpoint.as_str()
            );
        }
        header(
            w,
            "duplex_open_connections",
            "gauge",
            "Open SSE streams and WebSockets; for the polls, requests in flight.",
        );
        for t in Transport::ALL {
            let v = self.open[transport_index(t)].load(Ordering::Relaxed);
            let _ = writeln!(w, "duplex_open_connections{{transport=\"{t}\"}} {v}");
        }
        header(
            w,
            "duplex_messages_published_total",
            "counter",
            "Messages published, over HTTP and WebSocket.",
        );
        let _ = writeln!(
            w,
            "duplex_messages_published_total {}",
            feed.published_total()
        );
        header(
            w,
            "duplex_deliveries_total",
            "counter",
            "Messages delivered to clients.",
        );
        for t in Transport::ALL {
            let v = self.deliveries[transport_index(t)].load(Ordering::Relaxed);
            let _ = writeln!(w, "duplex_deliveries_total{{transport=\"{t}\"}} {v}");
        }
        for (name, help, counters) in [
            (
                "duplex_bytes_sent_total",
                "Bytes written to client sockets, headers and framing included.",
                &self.bytes_sent,
            ),
            (
                "duplex_bytes_received_total",
                "Bytes read from client sockets, headers and framing included.",
                &self.bytes_received,
            ),
        ] {
            header(w, name, "counter", help);
            for (i, c) in counters.iter().enumerate() {
                if let Some(e) = Endpoint::from_index(i) {
                    let v = c.load(Ordering::Relaxed);
                    let _ = writeln!(w, "{name}{{transport=\"{}\"}} {v}", e.as_str());
                }
            }
        }
        header(
            w,
            "duplex_tcp_connections",
            "gauge",
            "TCP connections open, all endpoints.",
        );
        let _ = writeln!(w, "duplex_tcp_connections {}", self.tcp_open());
        header(
            w,
            "duplex_tcp_accepted_total",
            "counter",
            "TCP connections accepted.",
        );
        let _ = writeln!(
            w,
            "duplex_tcp_accepted_total {}",
            self.tcp_accepted.load(Ordering::Relaxed)
        );
        header(
            w,
            "duplex_tcp_refused_total",
            "counter",
            "TCP connections answered 503 because --max-connections were open.",
        );
        let _ = writeln!(
            w,
            "duplex_tcp_refused_total {}",
            self.tcp_refused.load(Ordering::Relaxed)
        );
        header(
            w,
            "duplex_write_timeouts_total",
            "counter",
            "Connections dropped because the client read nothing for the write timeout.",
        );
        let _ = writeln!(w, "duplex_write_timeouts_total {}", self.write_timeouts());
        header(
            w,
            "duplex_request_timeouts_total",
            "counter",
            "Requests whose head (408) or body did not arrive within the request timeout.",
        );
        let _ = writeln!(
            w,
            "duplex_request_timeouts_total {}",
            self.request_timeouts.load(Ordering::Relaxed)
        );
        header(w, "duplex_rooms", "gauge", "Rooms that exist.");
        let _ = writeln!(w, "duplex_rooms {}", feed.room_count());
        if let Some(bytes) = feed.bytes_kept() {
            header(
                w,
                "duplex_history_bytes",
                "gauge",
                "Bytes of message history kept, all rooms (bounded by --memory-budget).",
            );
            let _ = writeln!(w, "duplex_history_bytes {bytes}");
        }
        if let Some(p) = ProcessStats::read() {
            header(
                w,
                "process_cpu_seconds_total",
                "counter",
                "User and system CPU time spent, seconds.",
            );
            let _ = writeln!(w, "process_cpu_seconds_total {}", p.cpu_seconds);
            header(
                w,
                "process_resident_memory_bytes",
                "gauge",
                "Resident memory size, bytes.",
            );
            let _ = writeln!(w, "process_resident_memory_bytes {}", p.resident_bytes);
            header(w, "process_open_fds", "gauge", "Open file descriptors.");
            let _ = writeln!(w, "process_open_fds {}", p.open_fds);
        }
        out
    }
}

fn header(w: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(w, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// This process's CPU time and memory, read from /proc.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProcessStats {
    /// User + system CPU seconds.
    pub cpu_seconds: f64,
    /// Resident set size, bytes.
    pub resident_bytes: u64,
    /// Open file descriptors.
    pub open_fds: u64,
}

impl ProcessStats {
    /// Reads /proc/self; `None` where there is no /proc.
    pub fn read() -> Option<ProcessStats> {
        let me = procfs::process::Process::myself().ok()?;
        let stat = me.stat().ok()?;
        let ticks = procfs::ticks_per_second() as f64;
        Some(ProcessStats {
            cpu_seconds: (stat.utime + stat.stime) as f64 / ticks,
            resident_bytes: stat.rss * procfs::page_size(),
            open_fds: me.fd_count().map(|n| n as u64).unwrap_or(0),
        })
    }
}

/// Keeps a transport's open-connection gauge raised while alive.
#[derive(Debug)]
pub struct OpenGuard {
    metrics: Arc<Metrics>,
    transport: Transport,
}

impl Drop for OpenGuard {
    fn drop(&mut self) {
        self.metrics.open[transport_index(self.transport)].fetch_sub(1, Ordering::Relaxed);
    }
}

/// Holds one of the server's TCP connection slots; travels inside the socket, so an upgraded
/// WebSocket keeps it until the socket closes.
#[derive(Debug)]
pub(crate) struct TcpSlot {
    metrics: Arc<Metrics>,
}

impl Drop for TcpSlot {
    fn drop(&mut self) {
        self.metrics.tcp_open.fetch_sub(1, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_endpoints() {
        assert_eq!(
            Endpoint::from_path("/api/rooms/lobby/longpoll"),
            Endpoint::Transport(Transport::LongPoll)
        );
        assert_eq!(
            Endpoint::from_path("/api/rooms/x/messages"),
            Endpoint::Publish
        );
        assert_eq!(Endpoint::from_path("/metrics"), Endpoint::Other);
    }

    #[test]
    fn an_endpoints_index_is_its_position_in_all() {
        for (i, e) in Endpoint::ALL.into_iter().enumerate() {
            assert_eq!(e.index(), i, "{e:?}");
            assert_eq!(Endpoint::from_index(i), Some(e));
        }
    }

    #[test]
    fn render_names_every_required_metric() {
        let m = Metrics::default();
        m.record_request(Endpoint::Publish, 201);
        let text = m.render(&Feed::new(4));
        for name in [
            "duplex_requests_total{transport=\"publish\",status=\"201\"} 1",
            "duplex_open_connections{transport=\"websocket\"}",
            "duplex_messages_published_total",
            "duplex_deliveries_total{transport=\"sse\"}",
            "duplex_bytes_sent_total{transport=\"short_poll\"}",
            "duplex_bytes_received_total{transport=\"long_poll\"}",
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
        ] {
            assert!(text.contains(name), "{name} missing from\n{text}");
        }
    }
}
