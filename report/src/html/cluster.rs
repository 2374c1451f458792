//! The "Several nodes" section, shown when the run measured a cluster (`[cluster] nodes` above
//! 1): each process's CPU and memory per phase (Redis and every node, not only the cluster's
//! total on the card), the node a fault killed and what its clients went through (reconnects,
//! the slowest delivery per second around the kill), delivery latency on the sender's node
//! against across nodes, what a backplane hop cost in this run, and
//! what the shared-log design implies for each transport. Every figure is read from the results
//! file; the implications are the design's, the same for every run.

use crate::LatencyHistogram;
use crate::analysis::RunAnalysis;
use crate::format;
use crate::results::{Phase, Results};
use crate::transport;

/// The section's view model.
pub struct ClusterSection {
    /// Nodes in the cluster.
    pub nodes: u64,
    /// One block per phase.
    pub phases: Vec<ClusterPhase>,
    /// Per transport: what the design implies for it.
    pub implications: Vec<(String, &'static str)>,
}

/// One phase's processes and fault.
pub struct ClusterPhase {
    /// Transport label.
    pub label: String,
    /// Its colour.
    pub colour: &'static str,
    /// Redis and each node.
    pub rows: Vec<ProcessRow>,
    /// What the backplane cost in this phase, measured.
    pub hop: String,
    /// The kill and its effect, when the scenario killed a node.
    pub fault: Option<String>,
    /// Same-node against across-nodes delivery latency (empty in results without the split).
    pub locality: Vec<LocalityRow>,
}

/// One side of a phase's delivery latency split by node.
pub struct LocalityRow {
    /// `same node`, `across nodes`.
    pub name: &'static str,
    /// Deliveries on this side.
    pub deliveries: String,
    /// Median latency.
    pub p50: String,
    /// 99th percentile.
    pub p99: String,
}

/// The rows of `p`'s split, same node first.
fn locality(p: &Phase) -> Vec<LocalityRow> {
    let Some(split) = &p.latency_by_node else {
        return Vec::new();
    };
    let row = |name, h: &LatencyHistogram| LocalityRow {
        name,
        deliveries: format::count(h.0.len()),
        p50: h.quantile_ms(0.5).map_or("-".into(), format::ms),
        p99: h.quantile_ms(0.99).map_or("-".into(), format::ms),
    };
    vec![
        row("receiver on the sender's node", &split.same_node),
        row("receiver on another node", &split.across_nodes),
    ]
}

/// One process in a phase.
pub struct ProcessRow {
    /// `redis-server`, `node 0 (...)`.
    pub name: String,
    /// CPU seconds over the window.
    pub cpu_s: String,
    /// Share of one core over the window.
    pub core_share: String,
    /// Memory at the window's end.
    pub rss: String,
    /// It was killed by the fault.
    pub killed: bool,
}

/// What a shared log means for each transport, in the order the page lists transports.
fn implication(transport: &str) -> &'static str {
    match transport {
        "short_poll" => {
            "No sticky sessions: each poll carries its cursor, and any node answers it from the \
             shared log, so a load balancer may send every poll to a different node."
        }
        "long_poll" => {
            "No sticky sessions either: a held poll is woken by its node's own tail of the log, \
             and the next poll may go anywhere. (Socket.IO's HTTP long-polling does need them: \
             its session and buffered packets live in the memory of the node that made it.)"
        }
        "sse" => {
            "No sticky sessions: the stream is held by one node, but a broken one reconnects \
             to any node with Last-Event-ID and resumes there."
        }
        "websocket" => {
            "Bound to its connection, as everywhere; a reconnect with its last seq may land on \
             any node."
        }
        _ => "",
    }
}

/// The section, or `None` when the run was not a cluster's.
pub fn cluster(results: &Results, run: &RunAnalysis) -> Option<ClusterSection> {
    let nodes = results.scenario.cluster_nodes;
    if nodes <= 1 {
        return None;
    }
    let phases = run
        .phases
        .iter()
        .map(|a| phase_block(a.phase))
        .collect::<Vec<_>>();
    let implications = run
        .phases
        .iter()
        .map(|a| a.phase.transport.as_str())
        .filter(|t| !implication(t).is_empty())
        .map(|t| (transport::label_of(t), implication(t)))
        .collect();
    Some(ClusterSection {
        nodes,
        phases,
        implications,
    })
}

fn phase_block(p: &Phase) -> ClusterPhase {
    let window = p.duration_s.max(f64::MIN_POSITIVE);
    let rows = p
        .server_processes
        .iter()
        .map(|c| ProcessRow {
            name: c.name.clone(),
            cpu_s: format!("{:.2}", c.cpu_s),
            core_share: format::share(c.cpu_s / window),
            rss: format::mib(c.rss_bytes),
            killed: c.killed,
        })
        .collect();
    ClusterPhase {
        label: transport::label_of(&p.transport),
        colour: transport::colour_of(&p.transport),
        rows,
        hop: hop(p),
        fault: fault(p),
        locality: locality(p),
    }
}

/// Redis's CPU per published message and the nodes' per delivery, as measured.
fn hop(p: &Phase) -> String {
    let redis: f64 = p
        .server_processes
        .iter()
        .filter(|c| c.name == "redis-server")
        .map(|c| c.cpu_s)
        .sum();
    let nodes: f64 = p
        .server_processes
        .iter()
        .filter(|c| c.name != "redis-server")
        .map(|c| c.cpu_s)
        .sum();
    if p.server_processes.is_empty() || p.messages_published == 0 {
        return "Not measured (no per-process readings, or nothing published).".into();
    }
    let deliveries = p.integrity.deliveries_received.max(1) as f64;
    format!(
        "Redis spent {} of CPU per published message ({:.3} s for {} messages: one script, and \
         one copy per node's tail); the nodes spent {} µs per delivery ({:.3} s for {} \
         deliveries). A publish is acknowledged after one round trip to Redis.",
        format::ms(redis * 1e3 / p.messages_published as f64),
        redis,
        format::count(p.messages_published),
        format::value(nodes * 1e6 / deliveries),
        nodes,
        format::count(p.integrity.deliveries_received),
    )
}

/// The kill, the reconnects and the slowest delivery per second around it and before it.
fn fault(p: &Phase) -> Option<String> {
    let killed = p.node_killed.as_ref()?;
    // The per-second series is sampled by a timer that runs late on a busy machine, so the
    // second the kill fell in may be the one before its index: "around" starts one earlier.
    let kill_second = killed.at_s.floor() as u32;
    let slowest = |range: std::ops::Range<u32>| {
        p.timeseries
            .iter()
            .filter(|s| range.contains(&s.second))
            .map(|s| s.latency_max_us)
            .max()
            .unwrap_or(0) as f64
            / 1e3
    };
    let around = kill_second.saturating_sub(1);
    let before = slowest(around.saturating_sub(3)..around);
    let after = slowest(around..kill_second + 3);
    let i = &p.integrity;
    Some(format!(
        "{} was killed {} s into the phase; its clients made {} reconnects. The slowest \
         delivery per second was {} in the four seconds around the kill, against {} in the \
         three before. Integrity: {} missing, {} duplicated, {} out of order of {} expected.",
        killed.node,
        format::value(killed.at_s),
        format::count(p.reconnects),
        format::ms(after),
        format::ms(before),
        format::count(i.missing),
        format::count(i.duplicates),
        format::count(i.out_of_order),
        format::count(i.deliveries_expected),
    ))
}
