//! Writes the report's test fixtures: `results.json` (one run, all four transports, a trace
//! each) and `sweep.json` (three runs sweeping `clients.count`). The numbers are SYNTHETIC: a
//! tiny deterministic simulation of the report's models (`report::model`, described in
//! `docs/ARCHITECTURE.md`): short polls on a timer with random phase, long polls re-asked at
//! once, pushes after a fraction of a millisecond. So the report can be rendered and tested
//! without running any load. Real runs come from `duplex run`.
//!
//! `cargo run -p report --example synthetic_results -- report/tests/fixtures`

use std::path::PathBuf;

use report::LatencyHistogram;
use report::results::*;

/// A small xorshift generator: deterministic, so regenerating the fixture gives the same file.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> f64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
}

const WARMUP_S: f64 = 2.0;
const DURATION_S: f64 = 10.0;
const SENDERS: u64 = 2;
const RATE: f64 = 1.0;
const PAYLOAD: u64 = 100;
const INTERVAL_MS: f64 = 500.0;
const TIMEOUT_MS: f64 = 25_000.0;
/// Bytes of one delivered message's JSON (body plus envelope).
const MESSAGE: u64 = PAYLOAD + 100;
const HEADER_200: u64 = 110;
const HEADER_204: u64 = 64;
/// `{"messages":[`...`],"next":N,"missed":0}` around a batch, plus commas.
const BATCH: u64 = 35;

fn scenario(clients: u64, sweep: Option<SweepInfo>) -> ScenarioInfo {
    ScenarioInfo {
        name: if sweep.is_some() {
            "synthetic-sweep"
        } else {
            "synthetic-classroom"
        }
        .into(),
        description: "SYNTHETIC test data for the report's tests: a few clients per transport, \
                      two senders chatting once a second."
            .into(),
        transports: ["short_poll", "long_poll", "sse", "websocket"]
            .map(String::from)
            .into(),
        duration_s: DURATION_S,
        warmup_s: WARMUP_S,
        drain_s: 1.0,
        clients,
        connect_rate: 100.0,
        room: "lobby".into(),
        senders: SENDERS,
        rate_per_sender: RATE,
        payload_bytes: PAYLOAD,
        chat_mode: None,
        short_poll_interval_ms: INTERVAL_MS,
        long_poll_timeout_ms: TIMEOUT_MS,
        network: NetworkInfo::default(),
        sweep,
        seed: None,
        cluster_nodes: 1,
    }
}

/// Scheduled publish times, ms since phase start, in the measured window: each sender's gaps
/// are exponential (a Poisson stream), which is what the models assume.
fn schedule(rng: &mut Rng) -> Vec<f64> {
    let mut times = Vec::new();
    for _ in 0..SENDERS {
        let mut t = WARMUP_S * 1000.0;
        loop {
            t += -(1.0 - rng.next()).ln() * 1000.0 / RATE;
            if t >= (WARMUP_S + DURATION_S) * 1000.0 {
                break;
            }
            times.push(t);
        }
    }
    times.sort_by(f64::total_cmp);
    times
}

struct Counters {
    latency: LatencyHistogram,
    rtt: LatencyHistogram,
    connect: LatencyHistogram,
    traffic: Traffic,
    seconds: Vec<Second>,
    deliveries: u64,
}

impl Counters {
    fn second(&mut self, ms: f64) -> &mut Second {
        let i = ((ms / 1000.0) as usize).min(self.seconds.len() - 1);
        &mut self.seconds[i]
    }

    fn deliver(&mut self, at_ms: f64, published_ms: f64) {
        self.latency
            .record_us(((at_ms - published_ms) * 1000.0) as u64);
        self.second(at_ms).deliveries += 1;
        self.deliveries += 1;
    }

    /// A poll sent at `start_ms` and answered at `answer_ms` with `batch` (their publish
    /// times): counts it, delivers the batch, and traces the deliveries and the request bar.
    fn answer_poll(
        &mut self,
        events: &mut Vec<TraceEvent>,
        start_ms: f64,
        answer_ms: f64,
        batch: &[f64],
    ) {
        let bytes = self.request(start_ms, answer_ms, batch.len() as u64);
        for p in batch {
            self.deliver(answer_ms, *p);
            events.push(TraceEvent::Delivery {
                at_ms: answer_ms,
                published_ms: *p,
                seq: 0,
            });
        }
        events.push(TraceEvent::Request {
            start_ms,
            end_ms: answer_ms,
            status: if batch.is_empty() { 204 } else { 200 },
            messages: batch.len() as u32,
            bytes_down: bytes,
        });
    }

    /// Counts one poll; polls before the measured window (warm-up) are not counted, as the
    /// loadgen counts only measured seconds.
    fn request(&mut self, start_ms: f64, end_ms: f64, messages: u64) -> u64 {
        let bytes = if messages == 0 {
            HEADER_204
        } else {
            HEADER_200 + messages * (MESSAGE + 1) + BATCH
        };
        if start_ms < WARMUP_S * 1000.0 {
            return bytes;
        }
        self.traffic.requests += 1;
        self.second(start_ms).requests += 1;
        self.rtt
            .record_us(((end_ms - start_ms) * 1000.0).max(1.0) as u64);
        if messages == 0 {
            self.traffic.empty_responses += 1;
            self.traffic.empty_down += HEADER_204;
        } else {
            self.traffic.header_down += HEADER_200;
            self.traffic.payload_down += messages * MESSAGE;
            self.traffic.framing_down += BATCH + messages;
        }
        self.traffic.bytes_up += 150;
        self.traffic.bytes_down += bytes;
        self.second(end_ms).bytes_down += bytes;
        bytes
    }
}

fn phase(transport: &str, clients: u64, rng: &mut Rng) -> Phase {
    let published = schedule(rng);
    let seconds = (WARMUP_S + DURATION_S + 1.0) as usize;
    let mut c = Counters {
        latency: LatencyHistogram::new(),
        rtt: LatencyHistogram::new(),
        connect: LatencyHistogram::new(),
        traffic: Traffic::default(),
        seconds: (0..seconds as u32)
            .map(|second| Second {
                second,
                ..Second::default()
            })
            .collect(),
        deliveries: 0,
    };
    let mut trace = Vec::new();
    let end_ms = (WARMUP_S + DURATION_S) * 1000.0;
    for client in 0..clients {
        let traced = client == 0;
        let connect_start = client as f64 * 10.0 + 5.0;
        let connect_end = connect_start + 0.4 + rng.next() * 0.4;
        c.connect
            .record_us(((connect_end - connect_start) * 1000.0) as u64);
        c.traffic.connections_opened += 1;
        if traced {
            trace.push(TraceEvent::Connect {
                start_ms: connect_start,
                end_ms: connect_end,
            });
        }
        let mut events = Vec::new();
        match transport {
            "short_poll" => {
                let mut t = connect_end + rng.next() * INTERVAL_MS;
                let mut since = published.partition_point(|p| *p < t);
                // Poll on through the drain second, so the last messages arrive too.
                while t < end_ms + 1000.0 {
                    let answer = t + 0.6 + rng.next() * 0.8;
                    let upto = published.partition_point(|p| *p < t);
                    c.answer_poll(&mut events, t, answer, &published[since..upto]);
                    since = upto;
                    t += INTERVAL_MS;
                }
            }
            "long_poll" => {
                let mut t = connect_end;
                let mut since = published.partition_point(|p| *p < t);
                while t < end_ms {
                    // Held until the next message (or the timeout), answered ~0.5 ms later.
                    let next = published.get(since).copied().unwrap_or(f64::INFINITY);
                    let answer = next.max(t).min(t + TIMEOUT_MS) + 0.3 + rng.next() * 0.5;
                    if answer > end_ms + 1000.0 {
                        break;
                    }
                    let upto = published.partition_point(|p| *p < answer - 0.3);
                    c.answer_poll(&mut events, t, answer, &published[since..upto]);
                    since = upto;
                    t = answer + 0.2 + rng.next() * 0.3;
                }
            }
            _ => {
                // One response (SSE) or upgrade (WebSocket) with headers once, then framed messages.
                // Its request happened during warm-up: in the time series, not in the totals.
                c.second(connect_start).requests += 1;
                c.traffic.header_down += 130;
                c.traffic.bytes_down += 130;
                c.traffic.bytes_up += 200;
                let framing = if transport == "sse" { 35 } else { 4 };
                for p in published.iter().filter(|p| **p > connect_end) {
                    let at = p + 0.2 + rng.next() * 0.6;
                    c.deliver(at, *p);
                    c.traffic.payload_down += MESSAGE;
                    c.traffic.framing_down += framing;
                    c.traffic.bytes_down += MESSAGE + framing;
                    c.second(at).bytes_down += MESSAGE + framing;
                    events.push(TraceEvent::Delivery {
                        at_ms: at,
                        published_ms: *p,
                        seq: 0,
                    });
                }
            }
        }
        if traced {
            events.sort_by(|a, b| time(a).total_cmp(&time(b)));
            trace.extend(events);
        }
    }
    // Publishes are requests too (one per message, HTTP or a WebSocket frame).
    c.traffic.requests += published.len() as u64;
    c.traffic.bytes_up += published.len() as u64 * 250;
    for p in &published {
        c.second(*p).requests += 1;
    }
    // Number the traced deliveries as the server would.
    let mut seq = 0;
    for e in &mut trace {
        if let TraceEvent::Delivery {
            seq: s,
            published_ms,
            ..
        } = e
        {
            seq = published.partition_point(|p| p < published_ms) as u64 + 1;
            *s = seq;
        }
    }
    let _ = seq;
    // In flight: long polls are held all the time, short polls almost never.
    for s in &mut c.seconds {
        s.in_flight = match transport {
            "long_poll" => clients - (rng.next() * 2.0) as u64,
            "short_poll" => (rng.next() * 1.5) as u64,
            _ => 0,
        };
    }
    let expected = published.len() as u64 * clients;
    let requests = c.traffic.requests as f64;
    Phase {
        transport: transport.into(),
        clients,
        clients_connected: clients,
        duration_s: DURATION_S,
        complete: true,
        messages_published: published.len() as u64,
        integrity: Integrity {
            deliveries_expected: expected,
            deliveries_received: c.deliveries.min(expected),
            missing: expected.saturating_sub(c.deliveries),
            ..Integrity::default()
        },
        latency: c.latency,
        request_rtt: c.rtt,
        connect_time: c.connect,
        traffic: Traffic {
            peak_in_flight: clients,
            ..c.traffic
        },
        server: ServerCost {
            cpu_s: 0.05 + requests * 0.0004 + c.deliveries as f64 * 0.00002,
            rss_peak_bytes: (12.0 * 1048576.0 + clients as f64 * 40_000.0) as u64,
            rss_start_bytes: 12 * 1048576,
            // A short poll is open on the server only while it is being answered; every client
            // holds a TCP connection, and HTTP senders one more to publish.
            open_connections_peak: if transport == "short_poll" {
                2
            } else {
                clients
            },
            tcp_connections_peak: clients + if transport == "websocket" { 0 } else { SENDERS },
        },
        loadgen: LoadgenCost {
            cpu_s: 0.1 + requests * 0.0002,
            timer_lag_p99_ms: 0.8,
            timer_lag_max_ms: 2.5,
            saturated: false,
            ..Default::default()
        },
        timeseries: c.seconds,
        traces: vec![ClientTrace {
            client: format!("{transport}-0"),
            events: trace,
        }],
        warnings: Vec::new(),
        model_floor_ms: None,
        model_floor_spread_ms: None,
        stack: None,
        reconnects: 0,
        node_killed: None,
        server_processes: Vec::new(),
        latency_by_node: None,
    }
}

fn time(e: &TraceEvent) -> f64 {
    match e {
        TraceEvent::Connect { start_ms, .. } | TraceEvent::Request { start_ms, .. } => *start_ms,
        TraceEvent::Delivery { at_ms, .. } | TraceEvent::Error { at_ms, .. } => *at_ms,
    }
}

fn run(clients: u64, sweep_value: Option<f64>, rng: &mut Rng) -> Run {
    Run {
        sweep_value,
        clients,
        rate_per_sender: RATE,
        short_poll_interval_ms: INTERVAL_MS,
        rtt_ms: 0.0,
        phases: ["short_poll", "long_poll", "sse", "websocket"]
            .iter()
            .map(|t| phase(t, clients, rng))
            .collect(),
    }
}

fn results(scenario: ScenarioInfo, runs: Vec<Run>) -> Results {
    Results {
        schema_version: SCHEMA_VERSION,
        scenario,
        environment: Environment {
            duplex_version: "0.1.0 (synthetic fixture)".into(),
            git_commit: Some("0000000".into()),
            os: "Linux 6.1.0 x86_64".into(),
            cpu_model: "Synthetic CPU @ 2.0GHz".into(),
            cpus: 2,
            memory_bytes: 8 * 1024 * 1024 * 1024,
            target: "embedded child (synthetic)".into(),
            server_is_child: true,
            open_files_limit: 20_000,
            source_addresses: 1,
        },
        started_at: "2026-01-01T00:00:00Z".into(),
        wall_time_s: 4.0 * (WARMUP_S + DURATION_S + 1.0) * runs.len() as f64,
        complete: true,
        warnings: Vec::new(),
        runs,
        measured_in_browsers: None,
        checks: Vec::new(),
    }
}

fn main() {
    let dir = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "report/tests/fixtures".into()),
    );
    std::fs::create_dir_all(&dir).expect("create the fixture folder");
    let mut rng = Rng(0x5eed_cafe_f00d_0001);
    let single = results(scenario(20, None), vec![run(20, None, &mut rng)]);
    report::write_results(&single, dir.join("results.json")).expect("write results.json");

    let values = [10.0, 20.0, 40.0];
    let sweep = SweepInfo {
        key: "clients.count".into(),
        unit: "clients".into(),
        values: values.to_vec(),
    };
    let runs = values
        .iter()
        .map(|v| run(*v as u64, Some(*v), &mut rng))
        .collect();
    let swept = results(scenario(40, Some(sweep)), runs);
    report::write_results(&swept, dir.join("sweep.json")).expect("write sweep.json");
    eprintln!("wrote {}/results.json and sweep.json", dir.display());
}
