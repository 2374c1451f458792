//! What theory expects of each transport: the "model" column of the report card, the dashed
//! curves on the latency chart, and the loadgen's "measured vs model" terminal lines. The
//! model is evaluated once per phase, in [`crate::analysis`]; `docs/ARCHITECTURE.md` shows
//! where it sits between the results document and the page.
//!
//! The models are the ones `docs/ARCHITECTURE.md` lists, deliberately simple so a student can redo them on paper:
//! λ = messages per second into one client's feed (every client of the room receives every
//! message, so λ = senders × rate per sender), T = short-poll interval, d = one-way network
//! delay (rtt / 2), g = the client's re-request gap, B = 2d + g, L = long-poll timeout,
//! H = header bytes per HTTP answer, P = bytes of one delivered message.
//!
//! One change to the textbook formulas: duplex measures latency from the sender's *scheduled*
//! publish, and the sender sits behind the same emulated network as the receivers, so every
//! message first travels d to reach the server (the publish) before the textbook's "+ d" of
//! delivery. The fixed part of every latency is therefore the publish trip plus the delivery
//! trip (d + d = one round trip on a symmetric network), not d alone.
//!
//! Every delivery latency in these models has the shape "the two trips, plus with probability q
//! a wait spread evenly over 0..W" ([`LatencyModel`]): short polling waits for the next poll
//! (q = 1, W = T); long polling waits only when a message lands in the gap between two holds
//! (q = x / (x + e^-x) with x = λB, W = B); SSE and WebSocket never wait (q = 0). Server
//! processing time and jitter are left out on purpose: the difference between model and
//! measurement is exactly what the report wants the reader to notice.

use crate::results::{Phase, Run, ScenarioInfo};
use crate::transport::Transport;

/// Bytes of HTTP status line and headers assumed for one answer when the results hold no
/// measurement (what axum/hyper send: status line, content-type, content-length, date).
pub const DEFAULT_HEADER_BYTES: f64 = 110.0;

/// Bytes a delivered message's JSON adds around its body (`type`, `seq`, `room`, `event`,
/// `from`, `ts_us` and the punctuation), used when the results hold no measurement.
pub const DEFAULT_ENVELOPE_BYTES: f64 = 100.0;

/// The numbers a model needs, in seconds and bytes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ModelInput {
    /// λ: messages per second into one client's feed.
    pub lambda_per_s: f64,
    /// Clients of the transport (senders publish too, which costs requests).
    pub clients: u64,
    /// T: short-poll interval, s.
    pub poll_interval_s: f64,
    /// d: one-way network delay between a receiving client and the server, s.
    pub one_way_delay_s: f64,
    /// Time from the sender's scheduled publish until the server has the message, s: the
    /// sender's own one-way delay (senders sit behind the same emulated network).
    pub publish_delay_s: f64,
    /// g: time a long-poll client needs between an answer and its next request, s (beyond the
    /// network: parsing and scheduling). Zero unless known.
    pub rerequest_gap_s: f64,
    /// F: the server's service time, s: from a publish reaching the server to the message
    /// leaving it for a waiting subscriber. Added to every long-poll, SSE and WebSocket
    /// delivery (a short poll's wait for the next poll dwarfs it). Zero unless known.
    pub server_floor_s: f64,
    /// L: long-poll hold timeout, s.
    pub long_poll_timeout_s: f64,
    /// H: status line and header bytes of one HTTP answer.
    pub header_bytes: f64,
    /// P: bytes of one delivered message's JSON.
    pub message_bytes: f64,
}

impl ModelInput {
    /// The inputs as the scenario planned them for one run, with header and message sizes
    /// assumed ([`DEFAULT_HEADER_BYTES`], [`DEFAULT_ENVELOPE_BYTES`]).
    pub fn planned(scenario: &ScenarioInfo, run: &Run) -> Self {
        Self {
            lambda_per_s: scenario.senders as f64 * run.rate_per_sender,
            clients: run.clients,
            poll_interval_s: run.short_poll_interval_ms / 1000.0,
            one_way_delay_s: run.rtt_ms / 2000.0,
            publish_delay_s: run.rtt_ms / 2000.0,
            rerequest_gap_s: 0.0,
            server_floor_s: 0.0,
            long_poll_timeout_s: scenario.long_poll_timeout_ms / 1000.0,
            header_bytes: DEFAULT_HEADER_BYTES,
            message_bytes: scenario.payload_bytes as f64 + DEFAULT_ENVELOPE_BYTES,
        }
    }

    /// The planned inputs, with λ, H and P replaced by what the phase measured where it can:
    /// λ = messages published per measured second, H = header bytes per request answered (polling transports only: for SSE and WebSocket
    /// the headers are paid once per connection, not per answer), P = payload bytes per
    /// delivery. The model then predicts the *shape* of the cost from the measured sizes.
    pub fn measured(scenario: &ScenarioInfo, run: &Run, phase: &Phase) -> Self {
        let mut input = Self::planned(scenario, run);
        // λ as it actually happened: an open schedule with random phases publishes close to,
        // but not exactly, the planned rate, and the model should explain what was measured.
        if phase.messages_published > 0 && phase.duration_s > 0.0 {
            input.lambda_per_s = phase.messages_published as f64 / phase.duration_s;
        }
        let traffic = &phase.traffic;
        let polling = phase
            .transport
            .parse::<Transport>()
            .ok()
            .is_some_and(Transport::is_polling);
        if polling && traffic.requests > 0 && traffic.header_down > 0 {
            input.header_bytes = traffic.header_down as f64 / traffic.requests as f64;
        }
        if phase.integrity.deliveries_received > 0 && traffic.payload_down > 0 {
            input.message_bytes =
                traffic.payload_down as f64 / phase.integrity.deliveries_received as f64;
        }
        input.clients = phase.clients;
        input
    }

    /// B = 2d + g: the time between a long poll's answer leaving the server and the next
    /// request arriving there.
    pub fn rerequest_cycle_s(&self) -> f64 {
        2.0 * self.one_way_delay_s + self.rerequest_gap_s
    }

    /// Publishing requests per second per client: every message is one request from a sender,
    /// and the report counts requests per transport over all its clients.
    pub fn publishes_per_s_per_client(&self) -> f64 {
        if self.clients == 0 {
            0.0
        } else {
            self.lambda_per_s / self.clients as f64
        }
    }
}

/// Delivery latency as "a fixed delay, plus with probability `wait_share` a wait spread evenly
/// over 0..`wait_max_ms`".
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyModel {
    /// The fixed part in ms, which every message pays: the publish's trip to the server plus
    /// the delivery's trip to the reader (one round trip on a symmetric network).
    pub delay_ms: f64,
    /// q: the share of messages that wait.
    pub wait_share: f64,
    /// W in ms: the longest wait.
    pub wait_max_ms: f64,
}

impl LatencyModel {
    /// The share of messages delivered within `t_ms`.
    pub fn cdf(&self, t_ms: f64) -> f64 {
        if t_ms < self.delay_ms {
            return 0.0;
        }
        let waited = if self.wait_max_ms > 0.0 {
            ((t_ms - self.delay_ms) / self.wait_max_ms).clamp(0.0, 1.0)
        } else {
            1.0
        };
        (1.0 - self.wait_share) + self.wait_share * waited
    }

    /// The latency below which a share `p` (0..=1) of messages arrive, ms.
    pub fn quantile_ms(&self, p: f64) -> f64 {
        let no_wait = 1.0 - self.wait_share;
        if p <= no_wait || self.wait_share <= 0.0 {
            self.delay_ms
        } else {
            self.delay_ms + self.wait_max_ms * (p - no_wait) / self.wait_share
        }
    }

    /// Mean latency, ms.
    pub fn mean_ms(&self) -> f64 {
        self.delay_ms + self.wait_share * self.wait_max_ms / 2.0
    }
}

/// What a transport is expected to measure under a [`ModelInput`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Expected {
    /// The transport this is about.
    pub transport: Transport,
    /// The latency distribution.
    pub latency: LatencyModel,
    /// Median delivery latency, ms.
    pub latency_p50_ms: f64,
    /// 99th percentile delivery latency, ms.
    pub latency_p99_ms: f64,
    /// Mean delivery latency, ms.
    pub latency_mean_ms: f64,
    /// Requests per second per client: polls (if any) plus the client's share of publishes.
    pub requests_per_s_per_client: f64,
    /// Requests per second for all clients of the transport.
    pub requests_per_s: f64,
    /// Share of poll answers that carry nothing; `None` for transports without poll answers.
    pub empty_share: Option<f64>,
    /// Bytes read per delivered message; `None` when nothing is published (infinite).
    pub bytes_per_message: Option<f64>,
}

/// Evaluates the model of `transport`.
pub fn expected(transport: Transport, input: &ModelInput) -> Expected {
    let lambda = input.lambda_per_s;
    // Every delivery pays the publish's trip in and the delivery's trip out; a message that
    // finds its reader waiting (long poll, SSE, WebSocket) also pays the server's service time.
    let trips_ms = (input.publish_delay_s + input.one_way_delay_s) * 1000.0;
    let d_ms = if transport == Transport::ShortPoll {
        trips_ms
    } else {
        trips_ms + input.server_floor_s * 1000.0
    };
    let p = input.message_bytes;
    let h = input.header_bytes;
    // Answers per second a client asks for, beyond publishing.
    let (latency, polls_per_s, empty_share, bytes_per_message) = match transport {
        Transport::ShortPoll => {
            let t = input.poll_interval_s;
            let polls = if t > 0.0 { 1.0 / t } else { 0.0 };
            let latency = LatencyModel {
                delay_ms: d_ms,
                wait_share: 1.0,
                wait_max_ms: t * 1000.0,
            };
            let bytes = (lambda > 0.0).then(|| h / (lambda * t) + p);
            (latency, polls, Some((-lambda * t).exp()), bytes)
        }
        Transport::LongPoll => {
            let b = input.rerequest_cycle_s();
            let l = input.long_poll_timeout_s;
            let x = lambda * b;
            // A hold lasts until a message or the timeout: E[min(Exp(λ), L)] = (1 − e^-λL) / λ,
            // and only happens when nothing arrived during the gap (probability e^-x).
            let mean_hold = if lambda > 0.0 {
                (1.0 - (-lambda * l).exp()) / lambda
            } else {
                l
            };
            let cycle = b + (-x).exp() * mean_hold;
            let polls = if cycle > 0.0 { 1.0 / cycle } else { 0.0 };
            let latency = LatencyModel {
                delay_ms: d_ms,
                wait_share: if x > 0.0 { x / (x + (-x).exp()) } else { 0.0 },
                wait_max_ms: b * 1000.0,
            };
            let empty = (-x).exp() * (-lambda * l).exp();
            let bytes = (lambda > 0.0).then(|| h * polls / lambda + p);
            (latency, polls, Some(empty), bytes)
        }
        // Push: no waiting and no requests; each message costs its framing.
        Transport::Sse | Transport::WebSocket => {
            let framing = if transport == Transport::Sse {
                sse_framing_bytes(p)
            } else {
                websocket_frame_header_bytes(p)
            };
            let latency = LatencyModel {
                delay_ms: d_ms,
                wait_share: 0.0,
                wait_max_ms: 0.0,
            };
            (latency, 0.0, None, (lambda > 0.0).then_some(p + framing))
        }
    };
    let per_client = polls_per_s + input.publishes_per_s_per_client();
    Expected {
        transport,
        latency,
        latency_p50_ms: latency.quantile_ms(0.5),
        latency_p99_ms: latency.quantile_ms(0.99),
        latency_mean_ms: latency.mean_ms(),
        requests_per_s_per_client: per_client,
        requests_per_s: per_client * input.clients as f64,
        empty_share,
        bytes_per_message,
    }
}

/// Bytes SSE adds around one message of `message_bytes`: `data: ` and the two line ends (8),
/// an `id: <seq>\n` line (assuming 4-digit seqs), an `event: chat\n` line and the HTTP chunk
/// around the event (hex length, two CRLFs).
pub fn sse_framing_bytes(message_bytes: f64) -> f64 {
    let id_line = "id: 1234\n".len() as f64;
    let event_line = "event: chat\n".len() as f64;
    let block = message_bytes + 8.0 + id_line + event_line;
    let hex_digits = (block.max(1.0).log2() / 4.0).floor() + 1.0;
    8.0 + id_line + event_line + hex_digits + 4.0
}

/// Bytes of a server-to-client (unmasked) WebSocket frame header for a payload of
/// `message_bytes`: 2 up to 125 bytes, 4 up to 65535, 10 beyond.
pub fn websocket_frame_header_bytes(message_bytes: f64) -> f64 {
    if message_bytes <= 125.0 {
        2.0
    } else if message_bytes <= 65_535.0 {
        4.0
    } else {
        10.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn classroom() -> ModelInput {
        ModelInput {
            lambda_per_s: 10.0,
            clients: 300,
            poll_interval_s: 0.5,
            one_way_delay_s: 0.0,
            publish_delay_s: 0.0,
            rerequest_gap_s: 0.0,
            server_floor_s: 0.0,
            long_poll_timeout_s: 25.0,
            header_bytes: 110.0,
            message_bytes: 200.0,
        }
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-3 * b.abs().max(1.0)
    }

    #[test]
    fn short_poll_waits_half_an_interval_and_asks_every_interval() {
        let e = expected(Transport::ShortPoll, &classroom());
        assert!(close(e.latency_p50_ms, 250.0));
        assert!(close(e.latency_p99_ms, 495.0));
        assert!(close(e.latency_mean_ms, 250.0));
        // 2 polls/s plus 10 publishes/s shared by 300 clients.
        assert!(close(e.requests_per_s_per_client, 2.0 + 10.0 / 300.0));
        assert!(close(e.requests_per_s, 610.0));
        // e^-5
        assert!(close(e.empty_share.unwrap(), 0.006_737_947));
        // 110 / (10 × 0.5) + 200
        assert!(close(e.bytes_per_message.unwrap(), 222.0));
    }

    #[test]
    fn short_poll_adds_the_one_way_delay() {
        let input = ModelInput {
            one_way_delay_s: 0.04,
            ..classroom()
        };
        let e = expected(Transport::ShortPoll, &input);
        assert!(close(e.latency_p50_ms, 290.0));
        assert_eq!(e.latency.cdf(39.9), 0.0);
        assert!(close(e.latency.cdf(165.0), 0.25));
        assert_eq!(e.latency.cdf(540.0), 1.0);
    }

    #[test]
    fn push_latency_counts_the_publish_trip_and_the_delivery_trip() {
        // rtt 100 ms for everyone: the post reaches the server after 50 ms, the push after 100.
        let input = ModelInput {
            one_way_delay_s: 0.05,
            publish_delay_s: 0.05,
            ..classroom()
        };
        for t in [Transport::Sse, Transport::WebSocket] {
            assert!(close(expected(t, &input).latency_p50_ms, 100.0));
        }
        // Short poll: both trips plus half an interval on average.
        assert!(close(
            expected(Transport::ShortPoll, &input).latency_mean_ms,
            350.0
        ));
    }

    #[test]
    fn long_poll_matches_hand_computation_at_one_message_per_cycle() {
        // rtt 100 ms: d = 50 ms, B = 100 ms, x = λB = 1.
        let input = ModelInput {
            one_way_delay_s: 0.05,
            ..classroom()
        };
        let e = expected(Transport::LongPoll, &input);
        let q = 1.0 / (1.0 + (-1.0f64).exp()); // 0.731059
        assert!(close(e.latency.wait_share, q));
        // d + (xB/2) / (x + e^-x) = 50 + 50 / 1.367879
        assert!(close(e.latency_mean_ms, 86.5529));
        // 50 + 100 × (0.5 − 0.268941) / 0.731059
        assert!(close(e.latency_p50_ms, 81.6060));
        // λ / (x + e^-x) = 7.31059 polls/s, plus publishes
        assert!(close(e.requests_per_s_per_client, 7.31059 + 10.0 / 300.0));
        // H × polls / λ + P = 110 × 0.731059 + 200
        assert!(close(e.bytes_per_message.unwrap(), 280.4165));
        assert!(e.empty_share.unwrap() < 1e-9);
    }

    #[test]
    fn the_server_floor_delays_every_push_and_long_poll_delivery_but_not_the_poll_beat() {
        let input = ModelInput {
            server_floor_s: 0.0004,
            ..classroom()
        };
        for t in [Transport::LongPoll, Transport::Sse, Transport::WebSocket] {
            let e = expected(t, &input);
            assert!(close(e.latency_p50_ms, 0.4), "{t}: {}", e.latency_p50_ms);
            assert!(close(e.latency_p99_ms, 0.4), "{t}");
        }
        let short = expected(Transport::ShortPoll, &input);
        assert!(close(short.latency_p50_ms, 250.0));
    }

    #[test]
    fn long_poll_on_loopback_delivers_at_once_with_one_request_per_message() {
        let e = expected(Transport::LongPoll, &classroom());
        assert_eq!(e.latency_p99_ms, 0.0);
        assert!(close(e.requests_per_s_per_client, 10.0 + 10.0 / 300.0));
        assert!(close(e.bytes_per_message.unwrap(), 310.0));
    }

    #[test]
    fn long_poll_with_no_messages_asks_once_per_timeout() {
        let input = ModelInput {
            lambda_per_s: 0.0,
            one_way_delay_s: 0.05,
            ..classroom()
        };
        let e = expected(Transport::LongPoll, &input);
        assert!(close(e.requests_per_s_per_client, 1.0 / 25.1));
        assert!(close(e.empty_share.unwrap(), 1.0));
        assert_eq!(e.bytes_per_message, None);
    }

    #[test]
    fn push_transports_cost_the_delay_and_their_framing() {
        let input = ModelInput {
            one_way_delay_s: 0.01,
            message_bytes: 100.0,
            ..classroom()
        };
        let ws = expected(Transport::WebSocket, &input);
        assert!(close(ws.latency_p50_ms, 10.0));
        assert!(close(ws.latency_p99_ms, 10.0));
        assert!(close(ws.bytes_per_message.unwrap(), 102.0));
        assert!(close(ws.requests_per_s_per_client, 10.0 / 300.0));
        assert_eq!(ws.empty_share, None);
        // data line (8) + "id: 1234\n" (9) + "event: chat\n" (12) + 2 hex digits + 2 CRLFs (6)
        let sse = expected(Transport::Sse, &input);
        assert!(close(sse.bytes_per_message.unwrap(), 135.0));
        assert!(close(websocket_frame_header_bytes(200.0), 4.0));
        assert!(close(websocket_frame_header_bytes(70_000.0), 10.0));
    }
}
