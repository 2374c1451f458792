//! The results document (`results.json`): everything one `duplex run` measured, in a form the
//! report can be rebuilt from without running any load. The loadgen fills it; the renderers in
//! this crate read it. This crate depends on neither `server` nor `loadgen`, so transports are
//! named here by their identifiers (`short_poll`, `long_poll`, `sse`, `websocket`).
//!
//! Times inside a phase are milliseconds since that phase's start (the moment its first client
//! began to connect), on the loadgen's monotonic clock. Sizes are bytes. Rates are per second.

use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::histogram::LatencyHistogram;

/// Bumped when a field changes meaning; readers refuse versions they do not know.
pub const SCHEMA_VERSION: u32 = 1;

/// One `duplex run`: a scenario, where it ran, and one [`Run`] per value of its sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Results {
    /// [`SCHEMA_VERSION`] of the writer.
    pub schema_version: u32,
    /// The scenario after defaults and command-line overrides were applied.
    pub scenario: ScenarioInfo,
    /// The machine, versions and server this ran against.
    pub environment: Environment,
    /// Wall-clock start, RFC 3339 (UTC).
    pub started_at: String,
    /// Wall time of the whole run, seconds.
    pub wall_time_s: f64,
    /// `false` when the run was interrupted (Ctrl-C, server died): what is here was measured,
    /// but not everything planned was.
    pub complete: bool,
    /// Validity warnings for the run as a whole (e.g. "interrupted by Ctrl-C").
    pub warnings: Vec<String>,
    /// One entry per sweep value, in the order run; a single entry when nothing is swept.
    pub runs: Vec<Run>,
    /// Set when the figures come from students' browsers on the live page (the classroom's
    /// guided experiment, `duplex serve`), not from the loadgen's simulated clients; the report
    /// says so at the top. Absent in loadgen results.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub measured_in_browsers: Option<BrowserRun>,
    /// The checks `duplex run` judged the run by besides the integrity rule (which always
    /// applies): the scenario's `[thresholds]`, the `--threshold` flags and `--strict`, as
    /// written, so `duplex report` and `duplex compare` can judge the run again. Empty in
    /// results written before checks were recorded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<RecordedCheck>,
}

/// One check as `duplex run` was given it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedCheck {
    /// The rule, e.g. `websocket.latency_p99_ms < 50` or `*.loadgen_saturated == 0`.
    pub rule: String,
    /// Where it was written: `scenario`, `--threshold` or `--strict`.
    pub origin: String,
}

/// How a results document measured in browsers was measured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BrowserRun {
    /// Student pages that took part (tabs on the page when the experiment started).
    pub pages: u64,
    /// Pages that sent at least one phase's figures.
    pub pages_reporting: u64,
    /// Which figures each page measured and which it estimated, in a sentence or two.
    pub method: String,
    /// Facts beside the pages' figures, one line each (the live classroom: what the server
    /// counted at its own sockets per transport, every real header included).
    #[serde(default)]
    pub notes: Vec<String>,
}

/// The resolved scenario, as plain numbers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScenarioInfo {
    /// Short name, used for the default output folder.
    pub name: String,
    /// What the scenario shows, in a sentence or two; shown in the report.
    pub description: String,
    /// Transport identifiers, in the order they ran.
    pub transports: Vec<String>,
    /// Measured seconds per transport (after warm-up).
    pub duration_s: f64,
    /// Seconds per transport before measuring starts (connects happen here).
    pub warmup_s: f64,
    /// Seconds after the last publish during which late deliveries still count.
    pub drain_s: f64,
    /// Simulated clients per transport (receivers; senders are among them).
    pub clients: u64,
    /// Connects per second while ramping up.
    pub connect_rate: f64,
    /// The room every client joins.
    pub room: String,
    /// How many of the clients publish.
    pub senders: u64,
    /// Messages per second per sender.
    pub rate_per_sender: f64,
    /// Bytes of each published body.
    pub payload_bytes: u64,
    /// Who each message was for (`chat.mode`: `all`, `others`, `direct`); absent in results
    /// written before modes existed, which were all `all`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_mode: Option<String>,
    /// Short-poll timer period, ms.
    pub short_poll_interval_ms: f64,
    /// Long-poll hold timeout, ms.
    pub long_poll_timeout_ms: f64,
    /// Emulated network conditions.
    pub network: NetworkInfo,
    /// The swept key and its values, when the scenario sweeps one.
    pub sweep: Option<SweepInfo>,
    /// The seed every random choice of the run was drawn from (`seed` in the scenario);
    /// absent in results written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// duplex nodes the run started on one Redis backplane (`[cluster] nodes`); the server's CPU
    /// and memory are then the whole cluster's, Redis included. 1 (and absent) for one node.
    #[serde(default = "one_node", skip_serializing_if = "is_one_node")]
    pub cluster_nodes: u64,
}

fn one_node() -> u64 {
    1
}

fn is_one_node(n: &u64) -> bool {
    *n == 1
}

/// Network conditions applied by the loadgen's delay proxy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NetworkInfo {
    /// Round-trip time added, ms (half each way).
    pub rtt_ms: f64,
    /// Random extra delay per direction, up to this many ms.
    pub jitter_ms: f64,
    /// Bandwidth cap per connection and direction, bytes/s, if any.
    pub bandwidth_bytes_per_s: Option<f64>,
}

/// A scenario key given a list of values.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SweepInfo {
    /// The dotted key, e.g. `clients.count`.
    pub key: String,
    /// Its unit for axis labels, e.g. `clients`, `msg/s`, `ms`.
    pub unit: String,
    /// The values, in the order run.
    pub values: Vec<f64>,
}

/// Where and with what the run happened.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Environment {
    /// duplex's version.
    pub duplex_version: String,
    /// `git rev-parse --short HEAD` of the duplex checkout, when known.
    pub git_commit: Option<String>,
    /// Operating system and kernel, e.g. `Linux 6.1.0 x86_64`.
    pub os: String,
    /// CPU model name.
    pub cpu_model: String,
    /// Logical CPUs.
    pub cpus: u32,
    /// Total memory, bytes.
    pub memory_bytes: u64,
    /// The server: `embedded child pid N at URL` or the `--target` URL.
    pub target: String,
    /// `true` when duplex started the server itself (server cost from /proc).
    pub server_is_child: bool,
    /// Open-files limit the loadgen ran with.
    pub open_files_limit: u64,
    /// Source addresses the clients were spread over.
    pub source_addresses: u32,
}

/// One sweep point: every transport measured with one value of the swept key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Run {
    /// The swept key's value for this run, `None` when nothing is swept.
    pub sweep_value: Option<f64>,
    /// The resolved values of the keys a sweep can change (so models use what actually ran).
    pub clients: u64,
    /// Messages per second per sender in this run.
    pub rate_per_sender: f64,
    /// Short-poll interval in this run, ms.
    pub short_poll_interval_ms: f64,
    /// Round-trip time in this run, ms.
    pub rtt_ms: f64,
    /// One phase per transport, in the order run.
    pub phases: Vec<Phase>,
}

/// One transport measured for one run: the unit every chart and CSV row is about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Phase {
    /// Transport identifier.
    pub transport: String,
    /// The stack measured (a scenario's `stacks.name`: `duplex`, `nchan`, ...) when one run
    /// compared several; absent for a run of one server and in results written before stacks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// Clients that were meant to run.
    pub clients: u64,
    /// Clients that connected and subscribed.
    pub clients_connected: u64,
    /// Measured seconds (may be short of the scenario's when interrupted).
    pub duration_s: f64,
    /// `false` when this phase was cut short.
    pub complete: bool,

    /// Messages the senders published during the measured window.
    pub messages_published: u64,
    /// Integrity: what should have arrived, what did, and what went wrong.
    pub integrity: Integrity,

    /// Delivery latency: receive time − scheduled publish time, µs, every delivery.
    pub latency: LatencyHistogram,
    /// Request round trip (polls and publishes over HTTP; WebSocket send→ack), µs.
    pub request_rtt: LatencyHistogram,
    /// TCP connect (+ handshake for WebSocket/SSE) time, µs.
    pub connect_time: LatencyHistogram,

    /// Traffic as the clients' sockets saw it.
    pub traffic: Traffic,
    /// What the server spent during the measured window.
    pub server: ServerCost,
    /// What the loadgen itself spent, to tell a saturated loadgen from a slow server.
    pub loadgen: LoadgenCost,

    /// One entry per second of the phase.
    pub timeseries: Vec<Second>,
    /// A few clients' full event traces, for the swimlane timeline (same seconds across phases).
    pub traces: Vec<ClientTrace>,
    /// Validity warnings for this phase (loadgen saturated, clients failed to connect, ...).
    pub warnings: Vec<String>,
    /// The server's service time on this machine, ms, measured before the phase (a few
    /// publishes to one idle subscriber): the floor the long-poll, SSE and WebSocket models add
    /// to the network's trips. Absent in results written before it was measured; the report
    /// then estimates it from the run's fastest delivery.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_floor_ms: Option<f64>,
    /// How much the floor measurement's samples scatter, ms (half the range between their
    /// 10th and 90th percentiles): the report widens every latency verdict's band by it.
    /// Absent when the floor was not measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_floor_spread_ms: Option<f64>,
    /// Reconnects after a failed connection, over the whole phase (0 in older results).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reconnects: u64,
    /// The node a `[faults] kill_node` killed, and when.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_killed: Option<NodeKilled>,
    /// With a cluster, what each of its processes (Redis and every node) spent; the cluster's
    /// total is [`Phase::server`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub server_processes: Vec<ProcessCost>,
    /// With a cluster, [`Phase::latency`] split by whether the receiver was connected to the
    /// node its message's sender published on (absent for one node and in older results).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_by_node: Option<NodeLatency>,
}

/// A cluster phase's delivery latency, µs, split by where the two ends were connected. A
/// delivery whose ends' nodes were not both known (the sender's first publish had not yet
/// opened its connection) is in neither, so the two may add up to a little less than
/// [`Phase::latency`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct NodeLatency {
    /// Receiver on the node the sender published on: no backplane hop between them.
    #[serde(default)]
    pub same_node: LatencyHistogram,
    /// Receiver on another node: the message crossed Redis to reach it.
    #[serde(default)]
    pub across_nodes: LatencyHistogram,
}

/// Per-recipient delivery accounting, summed over all clients of a phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Integrity {
    /// Deliveries that should have happened: for each client, the messages published after it
    /// subscribed and before the phase ended.
    pub deliveries_expected: u64,
    /// Distinct expected messages that arrived (within the drain period).
    pub deliveries_received: u64,
    /// Expected but never arrived.
    pub missing: u64,
    /// Arrived more than once (each extra copy counts one).
    pub duplicates: u64,
    /// Arrived with a lower seq than one already received by that client; for a server that
    /// numbers nothing, after a later message of the same sender, unless their HTTP publishes
    /// overlapped and the client saw the order most clients saw (see the loadgen's ledger).
    pub out_of_order: u64,
    /// Messages the server reported as lost (gap items / `missed`).
    pub gaps_reported: u64,
    /// Reset items received.
    pub resets: u64,
    /// Deliveries to a client the message was not for (`chat.mode`: the sender's own message
    /// when it should be left out, a direct message at another client). 0 in results written
    /// before modes existed.
    #[serde(default)]
    pub misdelivered: u64,
}

/// Declares [`Traffic`] and the walks over its counters from one list, so a counter is added in
/// one place: the loadgen's meter holds a `Traffic<AtomicU64>`, reads it into a `Traffic<u64>`
/// and subtracts two of those with [`Traffic::map`] and [`Traffic::zip`], and no other file
/// names the counters one by one.
macro_rules! traffic_counters {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Request and byte counts at the clients' sockets, with the byte split the transport
        /// allows. `C` is the cell: `u64` in the results document, an atomic in the loadgen.
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
        pub struct Traffic<C = u64> {
            $($(#[$doc])* pub $name: C,)*
        }

        impl<C> Traffic<C> {
            /// Every counter through `f`, e.g. loading atomics into numbers.
            pub fn map<D>(&self, mut f: impl FnMut(&C) -> D) -> Traffic<D> {
                Traffic { $($name: f(&self.$name),)* }
            }

            /// Every counter of `self` and `other`, pairwise, through `f`.
            pub fn zip<D, E>(&self, other: &Traffic<D>, mut f: impl FnMut(&C, &D) -> E) -> Traffic<E> {
                Traffic { $($name: f(&self.$name, &other.$name),)* }
            }
        }
    };
}

traffic_counters! {
    /// HTTP requests sent (polls and publishes) or WebSocket frames sent.
    requests,
    /// Poll answers with nothing in them (204).
    empty_responses,
    /// TCP connections opened.
    connections_opened,
    /// Failed requests, connects and protocol errors.
    errors,
    /// Bytes written by the clients.
    bytes_up,
    /// Bytes read by the clients.
    bytes_down,
    /// Of `bytes_down`: message bodies' JSON as delivered (the useful part).
    payload_down,
    /// Of `bytes_down`: HTTP status lines and headers.
    header_down,
    /// Of `bytes_down`: everything else around payloads (chunk sizes, SSE `id:`/`event:` lines,
    /// WebSocket frame headers, batch JSON around messages, pings). Derived (what is left of
    /// `bytes_down`), never counted directly.
    framing_down,
    /// Of `bytes_down`: whole answers that carried nothing (204s incl. headers).
    empty_down,
    /// Largest number of requests in flight at once (a gauge's peak, not a sum).
    peak_in_flight,
}

/// Server CPU and memory for the measured window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct ServerCost {
    /// CPU seconds (user + system) the server used during the phase.
    pub cpu_s: f64,
    /// Highest resident memory seen during the phase, bytes.
    pub rss_peak_bytes: u64,
    /// Resident memory before the phase's clients connected, bytes.
    pub rss_start_bytes: u64,
    /// Highest `duplex_open_connections` seen (all transports), from /metrics: SSE streams and
    /// WebSockets held open, but for the polls only requests in flight (a held long poll counts;
    /// an idle keep-alive short-poll connection does not).
    pub open_connections_peak: u64,
    /// Highest `duplex_tcp_connections` seen during the measured window, from /metrics: every
    /// TCP connection the server held (clients' and publishers', idle keep-alive ones included;
    /// the loadgen's own scrape not counted). 0 in results written before this field existed.
    #[serde(default)]
    pub tcp_connections_peak: u64,
}

/// The loadgen's own CPU, memory and timer lag.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct LoadgenCost {
    /// CPU seconds the loadgen process used during the phase's measured window.
    pub cpu_s: f64,
    /// The loadgen process's resident set size before the phase's clients connected, bytes (0 in
    /// results written before this field existed).
    #[serde(default)]
    pub rss_start_bytes: u64,
    /// Its peak resident set size during the measured window, all clients connected, bytes (0 in
    /// results written before this field existed).
    #[serde(default)]
    pub rss_peak_bytes: u64,
    /// How late timers fired, 99th percentile, ms.
    pub timer_lag_p99_ms: f64,
    /// How late timers fired at worst, ms.
    pub timer_lag_max_ms: f64,
    /// `true` when the loadgen was too busy for its own numbers to be trusted.
    pub saturated: bool,
}

/// One second of a phase.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Second {
    /// Seconds since the phase start (0 = the first second).
    pub second: u32,
    /// Requests started in this second.
    pub requests: u64,
    /// Messages delivered in this second (all clients).
    pub deliveries: u64,
    /// Bytes read by clients in this second.
    pub bytes_down: u64,
    /// Requests in flight at the end of this second.
    pub in_flight: u64,
    /// The slowest delivery that arrived in this second, µs (0: none arrived, or results
    /// written before this field existed): where a spike shows, such as a node dying.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub latency_max_us: u64,
    /// Clients that reconnected in this second after their connection failed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub reconnects: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// One process of a cluster the lab started (Redis or one node), over the measured window.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProcessCost {
    /// `redis-server`, or `node 0 (127.0.0.10:PORT)`.
    pub name: String,
    /// CPU seconds it used in the measured window (up to its death, if it was killed: the last
    /// sample before).
    pub cpu_s: f64,
    /// Its resident memory at the window's end (or at the last sample before it was killed),
    /// bytes.
    pub rss_bytes: u64,
    /// It was killed by the scenario's fault.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub killed: bool,
}

/// The scenario's fault as it happened in this phase.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeKilled {
    /// Which node (`node 2 (127.0.0.12:PORT)`).
    pub node: String,
    /// When, seconds since the phase start (the time series' clock).
    pub at_s: f64,
}

/// One client's events over the phase, for the swimlane timeline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClientTrace {
    /// The client's id.
    pub client: String,
    /// Events in time order.
    pub events: Vec<TraceEvent>,
}

/// What a traced client saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TraceEvent {
    /// A connection (and, for SSE/WebSocket, its handshake) from start to ready.
    Connect {
        /// When the connect began, ms since phase start.
        start_ms: f64,
        /// When the connection was ready.
        end_ms: f64,
    },
    /// An HTTP request from send to the end of its answer (a long poll's held time is visible).
    Request {
        /// Sent, ms since phase start.
        start_ms: f64,
        /// Answer complete.
        end_ms: f64,
        /// HTTP status.
        status: u16,
        /// Messages in the answer.
        messages: u32,
        /// Bytes read for this answer.
        bytes_down: u64,
    },
    /// A message arrived.
    Delivery {
        /// Arrival, ms since phase start.
        at_ms: f64,
        /// Its scheduled publish time, ms since phase start.
        published_ms: f64,
        /// Its seq.
        seq: u64,
    },
    /// Something failed.
    Error {
        /// When, ms since phase start.
        at_ms: f64,
        /// What.
        message: String,
    },
}

/// `t` as RFC 3339 in UTC, to the second.
pub fn rfc3339(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}
