//! duplex's load generator: reads a scenario, simulates its chat clients on each transport in
//! turn, measures delivery latency, integrity, traffic and server cost, and writes the results
//! document that the report crate renders.
//!
//! [`run`] is the entry point: it starts (or checks) the server, runs one phase per transport
//! per sweep value with [`runner::run_phase`], watches the server and itself with
//! [`probe::Probe`], and returns the [`Results`]. [`write_outputs`] writes `results.json` and the
//! report; [`summary::print_summary`] prints the terminal table.

#![warn(missing_docs)]

pub mod child;
pub mod clients;
pub mod clock;
pub mod codec;
pub mod conn;
pub mod environment;
pub mod ledger;
pub mod meter;
pub mod netem;
pub mod peer;
pub mod probe;
pub mod protocol;
pub mod publisher;
pub mod runner;
pub mod scenario;
pub mod stamp;
pub mod summary;
pub mod target;
pub mod thresholds;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

pub use runner::ProgressMode;
pub use tokio_util::sync::CancellationToken;

use report::Results;
use report::results::{Run, SCHEMA_VERSION};
use tokio::task::JoinSet;

use crate::conn::Connector;
use crate::netem::NetworkConditions;
use crate::probe::Probe;
use crate::runner::{PhaseSetup, run_phase};
use crate::scenario::{ProtocolChoice, Scenario};
use crate::target::{ServerChoice, Target, TargetError};

/// What `duplex run` asks for.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The validated scenario (overrides applied).
    pub scenario: Scenario,
    /// Which server to measure.
    pub server: ServerChoice,
    /// How to show progress on stderr: bars on a terminal, plain lines in a log.
    pub progress: ProgressMode,
    /// Cancelled on Ctrl-C: the run stops cleanly and returns what it measured.
    pub interrupt: CancellationToken,
}

/// A run that could not start.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The server could not be started or reached.
    #[error(transparent)]
    Target(#[from] TargetError),
}

/// Pause between phases, so one transport's connections are closed before the next starts.
const BETWEEN_PHASES: Duration = Duration::from_millis(500);

/// Runs the scenario: every sweep value, every transport. Returns the results, marked
/// incomplete (with a warning saying why) when interrupted or when the server died; fails
/// before any load when the server cannot be started or reached.
pub async fn run(options: RunOptions) -> Result<Results, RunError> {
    let wall = std::time::Instant::now();
    let started_at = environment::rfc3339(SystemTime::now());
    let open_files_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let s = &options.scenario;

    // The scenario's [target] says which server when the command line did not name one.
    let speaks = s.target.protocol;
    let server = match (&options.server, &s.target.peer, &s.target.url) {
        (ServerChoice::Child { .. }, Some(peer), _) => ServerChoice::Peer {
            peer: peer.clone(),
            dir: peer::peers_dir(),
        },
        (ServerChoice::Child { .. }, None, Some(url)) => ServerChoice::External(url.clone()),
        (chosen, _, _) => chosen.clone(),
    };
    let mut target = match &server {
        ServerChoice::Child {
            exe,
            max_connections,
        } if s.cluster_nodes > 1 => {
            Target::start_cluster(exe, *max_connections, s.cluster_nodes).await?
        }
        _ => Target::start_speaking(&server, speaks).await?,
    };
    let abort = options.interrupt.child_token();
    let probe = Probe::with_metrics(
        target.addr,
        target.child_pid(),
        abort.clone(),
        speaks == ProtocolChoice::Duplex,
    );
    let adapter = s.target.adapter();
    let mut probe_tasks = JoinSet::new();
    let probe_stop = CancellationToken::new();
    probe.start(&mut probe_tasks, probe_stop.clone());

    // Fresh rooms per phase: a short run id keeps reruns against one server apart.
    let run_id = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000);

    let points = s.points();
    let mut runs = Vec::new();
    let mut source_addresses = 1;
    'points: for (p, (sweep_value, point)) in points.iter().enumerate() {
        let network = NetworkConditions {
            rtt: point.network.rtt,
            jitter: point.network.jitter,
            bandwidth: point.network.bandwidth_bytes_per_s,
        };
        let connector = Arc::new(Connector::across(target.nodes.clone(), network));
        source_addresses = connector.source_addresses();
        let setup = PhaseSetup {
            connector,
            authority: target.addr.to_string(),
            protocol: Arc::clone(&adapter),
            probe: Arc::clone(&probe),
            abort: abort.clone(),
            progress: options.progress,
            label: match (sweep_value, &s.sweep) {
                (Some(v), Some(sw)) => format!("{}={v} ", sw.key),
                _ => String::new(),
            },
        };
        let mut run = Run {
            sweep_value: *sweep_value,
            clients: point.clients,
            rate_per_sender: point.rate,
            short_poll_interval_ms: point.short_poll_interval.as_secs_f64() * 1e3,
            rtt_ms: point.network.rtt.as_secs_f64() * 1e3,
            phases: Vec::new(),
        };
        for (t, &transport) in point.transports.iter().enumerate() {
            if abort.is_cancelled() {
                runs.push(run);
                break 'points;
            }
            if p + t > 0 {
                tokio::time::sleep(BETWEEN_PHASES).await;
            }
            let room = format!("{}-{run_id}-{p}-{transport}", point.room);
            let mut phase = run_phase(point, transport, room, &setup).await;
            if speaks == ProtocolChoice::Nchan && phase.integrity.missing > 0 {
                phase
                    .warnings
                    .push(protocol::nchan::SILENT_LOSS_WARNING.to_owned());
            }
            run.phases.push(phase);
        }
        runs.push(run);
    }

    probe_stop.cancel();
    while probe_tasks.join_next().await.is_some() {}

    let mut warnings = Vec::new();
    let planned = points.len() * s.transports.len();
    let measured: usize = runs.iter().map(|r| r.phases.len()).sum();
    if options.interrupt.is_cancelled() {
        warnings.push("interrupted by Ctrl-C".to_owned());
    }
    if let Some(why) = probe.failure() {
        let detail = target
            .child_exit()
            .map(|d| format!(" ({d})"))
            .unwrap_or_default();
        warnings.push(format!("stopped early: {why}{detail}"));
    }
    let complete = !abort.is_cancelled()
        && measured == planned
        && runs.iter().flat_map(|r| &r.phases).all(|p| p.complete);
    if !complete && warnings.is_empty() {
        warnings.push(format!("only {measured} of {planned} phases were measured"));
    }
    let env = environment::environment(
        target.describe(),
        probe.server_is_child(),
        open_files_limit,
        source_addresses,
    );
    target.stop().await;

    Ok(Results {
        schema_version: SCHEMA_VERSION,
        scenario: s.info(),
        environment: env,
        started_at,
        wall_time_s: wall.elapsed().as_secs_f64(),
        complete,
        warnings,
        runs,
    })
}

/// The output folder when none is given: `reports/<scenario name>/`, or
/// `reports/<scenario name>-<peer>/` when it measures a peer (so one scenario run against
/// several stacks keeps each report).
pub fn default_out_dir(scenario: &Scenario) -> PathBuf {
    match &scenario.target.peer {
        Some(peer) => Path::new("reports").join(format!("{}-{}", scenario.name, peer.name())),
        None => Path::new("reports").join(&scenario.name),
    }
}

/// Writes `results.json`, then the report (`index.html`, `summary.csv`, ...) into `out_dir`.
/// The JSON is written first so that a failing renderer never loses the measurements.
pub fn write_outputs(
    results: &Results,
    out_dir: &Path,
) -> Result<Vec<PathBuf>, report::ReportError> {
    std::fs::create_dir_all(out_dir).map_err(|source| report::ReportError::Write {
        path: out_dir.to_path_buf(),
        source,
    })?;
    let json = out_dir.join("results.json");
    report::write_results(results, &json)?;
    let mut paths = vec![json];
    paths.extend(report::write_all(results, out_dir)?);
    Ok(paths)
}
