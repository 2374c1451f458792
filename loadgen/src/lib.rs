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
pub mod recipients;
pub mod runner;
pub mod scenario;
pub mod seed;
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
use crate::runner::cluster::ClusterWatch;
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
    /// `--target` names one server, but the scenario measures several stacks.
    #[error(
        "--target measures one server, but the scenario lists {stacks} stacks; give it one [target] instead of [[stacks]], or use --peer"
    )]
    OneTargetForStacks {
        /// How many stacks the scenario lists.
        stacks: usize,
    },
}

/// How one stack of the scenario is run: which server, spoken to how.
struct StackRun {
    /// The server to start or reach.
    chosen: ServerChoice,
    /// What it speaks.
    speaks: ProtocolChoice,
    /// The adapter the clients speak it with.
    adapter: Arc<dyn protocol::TargetProtocol>,
    /// duplex's own child: a fresh one per phase.
    fresh_per_phase: bool,
    /// The stack's name, for progress bars.
    name: Option<String>,
}

impl StackRun {
    /// The stack's `[target]` says which server when the command line did not name one.
    fn new(stack: &scenario::Stack, server: &ServerChoice) -> Self {
        let chosen = match (server, &stack.target.peer, &stack.target.url) {
            (ServerChoice::Child { .. }, Some(peer), _) => ServerChoice::Peer {
                peer: peer.clone(),
                dir: peer::peers_dir(),
            },
            (ServerChoice::Child { .. }, None, Some(url)) => ServerChoice::External(url.clone()),
            (chosen, _, _) => chosen.clone(),
        };
        Self {
            fresh_per_phase: matches!(chosen, ServerChoice::Child { .. }),
            chosen,
            speaks: stack.target.protocol,
            adapter: stack.target.adapter(),
            name: stack.name.clone(),
        }
    }

    /// The progress bar's label: the stack, then the sweep value.
    fn label(&self, sweep_value: &Option<f64>, s: &Scenario) -> String {
        let mut label = self
            .name
            .as_ref()
            .map(|n| format!("{n} "))
            .unwrap_or_default();
        if let (Some(v), Some(sw)) = (sweep_value, &s.sweep) {
            label.push_str(&format!("{}={v} ", sw.key));
        }
        label
    }
}

/// Pause between phases, so one transport's connections are closed before the next starts.
const BETWEEN_PHASES: Duration = Duration::from_millis(500);

/// The server one or more phases run against, with the probe watching it.
struct Watched {
    target: Target,
    probe: Arc<Probe>,
    tasks: JoinSet<()>,
    stop: CancellationToken,
}

impl Watched {
    async fn start(
        choice: &ServerChoice,
        speaks: ProtocolChoice,
        cluster_nodes: u64,
        abort: &CancellationToken,
    ) -> Result<Self, TargetError> {
        let target = match choice {
            ServerChoice::Child {
                exe,
                max_connections,
            } if cluster_nodes > 1 => {
                Target::start_cluster(exe, *max_connections, cluster_nodes).await?
            }
            _ => Target::start_speaking(choice, speaks).await?,
        };
        let probe = Probe::with_metrics(
            target.addr,
            target.child_pid(),
            abort.clone(),
            speaks == ProtocolChoice::Duplex,
        );
        let mut tasks = JoinSet::new();
        let stop = CancellationToken::new();
        probe.start(&mut tasks, stop.clone());
        Ok(Self {
            target,
            probe,
            tasks,
            stop,
        })
    }

    /// Stops the probe and the server; why the server was declared gone, if it was (with the
    /// child's exit status and last output).
    async fn end(mut self) -> Option<String> {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        let failure = self.probe.failure().map(|why| {
            let detail = self
                .target
                .child_exit()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default();
            format!("{why}{detail}")
        });
        self.target.stop().await;
        failure
    }
}

/// Runs the scenario: every sweep value, every transport. Returns the results, marked
/// incomplete (with a warning saying why) when interrupted or when the server died; fails
/// before any load when the server cannot be started or reached.
///
/// When duplex starts its own server (not a peer), every phase gets a fresh child (with
/// `[cluster] nodes` above 1, a fresh cluster: an empty Redis and new nodes), so each transport's
/// CPU and memory start from the same empty server instead of from what the phases before it
/// left behind (memory the allocator keeps, rooms in history). A `--target` server is shared
/// by every phase (fresh rooms keep them apart).
pub async fn run(options: RunOptions) -> Result<Results, RunError> {
    let wall = std::time::Instant::now();
    let started_at = environment::rfc3339(SystemTime::now());
    let open_files_limit = rlimit::increase_nofile_limit(u64::MAX).unwrap_or(0);
    let s = &options.scenario;
    if matches!(options.server, ServerChoice::External(_)) && s.stacks.len() > 1 {
        return Err(RunError::OneTargetForStacks {
            stacks: s.stacks.len(),
        });
    }
    let stacks: Vec<StackRun> = s
        .stacks
        .iter()
        .map(|stack| StackRun::new(stack, &options.server))
        .collect();
    let abort = options.interrupt.child_token();
    // The first stack's server is started before any load, so a server that cannot start
    // fails the run at once. A server serves its stack's phases (or one phase, for duplex's
    // own child) and is stopped before the next stack's starts, so no idle stack shares the
    // machine with a measured one.
    let first = &stacks[0];
    let mut server = Some((
        0,
        Watched::start(&first.chosen, first.speaks, s.cluster_nodes, &abort).await?,
    ));
    let mut server_is_child = server
        .as_ref()
        .is_some_and(|(_, w)| w.probe.server_is_child());
    let mut described: Vec<String> = vec![String::new(); stacks.len()];
    let mut failure = None;

    // Fresh rooms per phase: a short run id keeps reruns against one server apart.
    let run_id = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() % 1_000_000);

    let points = s.points();
    let mut runs = Vec::new();
    let mut source_addresses = 1;
    let mut measured_before = false;
    'points: for (p, (sweep_value, point)) in points.iter().enumerate() {
        let network = NetworkConditions {
            rtt: point.network.rtt,
            jitter: point.network.jitter,
            bandwidth: point.network.bandwidth_bytes_per_s,
        };
        let mut run = Run {
            sweep_value: *sweep_value,
            clients: point.clients,
            rate_per_sender: point.rate,
            short_poll_interval_ms: point.short_poll_interval.as_secs_f64() * 1e3,
            rtt_ms: point.network.rtt.as_secs_f64() * 1e3,
            phases: Vec::new(),
        };
        for (k, (stack, spec)) in stacks.iter().zip(&point.stacks).enumerate() {
            for &transport in spec.transports(point) {
                if abort.is_cancelled() {
                    runs.push(run);
                    break 'points;
                }
                let watched = match server.take() {
                    Some((owner, w)) if owner == k => w,
                    other => {
                        if let Some((owner, w)) = other {
                            described[owner] = w.target.describe();
                            failure = failure.or(w.end().await);
                        }
                        match Watched::start(&stack.chosen, stack.speaks, s.cluster_nodes, &abort)
                            .await
                        {
                            Ok(w) => w,
                            Err(e) => {
                                failure =
                                    Some(format!("the server for the {transport} phase: {e}"));
                                runs.push(run);
                                break 'points;
                            }
                        }
                    }
                };
                server_is_child &= watched.probe.server_is_child();
                // Between phases, so one transport's connections are closed before the next
                // starts; and after a fresh server started, so that every phase's server has
                // settled (and answered the probe's first /metrics scrape, which grows it by
                // most of a MiB) before its memory at the start is read.
                if measured_before || stack.fresh_per_phase {
                    tokio::time::sleep(BETWEEN_PHASES).await;
                }
                measured_before = true;
                described[k] = watched.target.describe();
                let connector = Arc::new(
                    Connector::across(watched.target.nodes.clone(), network).with_seed(point.seed),
                );
                source_addresses = connector.source_addresses();
                let setup = PhaseSetup {
                    connector,
                    authority: watched.target.addr.to_string(),
                    protocol: Arc::clone(&stack.adapter),
                    probe: Arc::clone(&watched.probe),
                    abort: abort.clone(),
                    progress: options.progress,
                    label: stack.label(sweep_value, s),
                    cluster: ClusterWatch::of(&watched.target, s.kill_node),
                };
                let room = match &spec.name {
                    Some(name) => format!("{}-{run_id}-{p}-{name}-{transport}", point.room),
                    None => format!("{}-{run_id}-{p}-{transport}", point.room),
                };
                let mut phase = run_phase(point, transport, room, &setup).await;
                phase.stack = spec.name.clone();
                if stack.speaks == ProtocolChoice::Nchan && phase.integrity.missing > 0 {
                    phase
                        .warnings
                        .push(protocol::nchan::SILENT_LOSS_WARNING.to_owned());
                }
                run.phases.push(phase);
                if stack.fresh_per_phase {
                    failure = failure.or(watched.end().await);
                } else {
                    server = Some((k, watched));
                }
            }
        }
        runs.push(run);
    }
    if let Some((owner, watched)) = server.take() {
        if described[owner].is_empty() {
            described[owner] = watched.target.describe();
        }
        failure = failure.or(watched.end().await);
    }
    for (text, stack) in described.iter_mut().zip(&stacks) {
        if stack.fresh_per_phase {
            *text = format!("a fresh embedded child per phase (the last: {text})");
        }
    }
    let described = match s.stacks.as_slice() {
        [one] if one.name.is_none() => described.remove(0),
        _ => s
            .stacks
            .iter()
            .zip(&described)
            .map(|(stack, text)| format!("{}: {text}", stack.name.as_deref().unwrap_or("")))
            .collect::<Vec<_>>()
            .join("; "),
    };

    let mut warnings = Vec::new();
    let planned = points.len()
        * s.stacks
            .iter()
            .map(|st| st.transports(s).len())
            .sum::<usize>();
    let measured: usize = runs.iter().map(|r| r.phases.len()).sum();
    if options.interrupt.is_cancelled() {
        warnings.push("interrupted by Ctrl-C".to_owned());
    }
    if let Some(why) = failure {
        warnings.push(format!("stopped early: {why}"));
    }
    let complete = !abort.is_cancelled()
        && measured == planned
        && runs.iter().flat_map(|r| &r.phases).all(|p| p.complete);
    if !complete && warnings.is_empty() {
        warnings.push(format!("only {measured} of {planned} phases were measured"));
    }
    let env = environment::environment(
        described,
        server_is_child,
        open_files_limit,
        source_addresses,
    );

    Ok(Results {
        schema_version: SCHEMA_VERSION,
        scenario: s.info(),
        environment: env,
        started_at,
        wall_time_s: wall.elapsed().as_secs_f64(),
        complete,
        warnings,
        runs,
        measured_in_browsers: None,
        checks: Vec::new(),
    })
}

/// The output folder when none is given: `reports/<scenario name>/`, or
/// `reports/<scenario name>-<peer>/` when its one `[target]` is a peer (so one scenario run
/// with `--peer` against several stacks keeps each report).
pub fn default_out_dir(scenario: &Scenario) -> PathBuf {
    match scenario.stacks.as_slice() {
        [one] if one.name.is_none() => match &one.target.peer {
            Some(peer) => Path::new("reports").join(format!("{}-{}", scenario.name, peer.name())),
            None => Path::new("reports").join(&scenario.name),
        },
        _ => Path::new("reports").join(&scenario.name),
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
