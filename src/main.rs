//! The `duplex` binary: thin glue that parses the command line, sets up logging and hands over
//! to the libraries: `serve` to the server, `run` to the loadgen, `report` and `compare` to the
//! report crate.
//!
//! What scripts rely on lives here: `duplex run`'s exit status (0 ok, 1 error, 2 a check failed,
//! 130 interrupted; see [`EXIT_CHECKS_FAILED`]), progress as plain lines when stderr is not a
//! terminal, no ANSI colour in logs that are piped or when `NO_COLOR` is set, and an error
//! printed with each cause once.

use std::io::IsTerminal as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

/// A transport comparison lab: one chat feed over short polling, long polling, SSE and
/// WebSocket, measured.
#[derive(Debug, Parser)]
#[command(name = "duplex", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the chat feed over all four transports, the live page and /metrics.
    Serve {
        /// Address to listen on (use 0.0.0.0:8080 to let a classroom in).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Messages kept per room for resuming clients.
        #[arg(long, default_value_t = 4096)]
        history: usize,
        /// Largest request body accepted, bytes.
        #[arg(long, default_value_t = 65536)]
        max_body: usize,
        /// Refuse connections beyond this many with 503 (default: the open-file limit less a
        /// reserve, so accepting never runs out of descriptors).
        #[arg(long)]
        max_connections: Option<usize>,
        /// Bytes of message history kept for all rooms together; past it the oldest messages
        /// are evicted and readers behind them get a gap. Accepts K/M/G suffixes (KiB, MiB, GiB).
        #[arg(long, default_value = "256M", value_parser = parse_bytes)]
        memory_budget: usize,
        /// Connections one address off this machine may hold open (loopback is exempt).
        #[arg(long, default_value_t = 256)]
        max_connections_per_address: usize,
        /// Another origin allowed to post and open WebSockets (repeatable), e.g.
        /// `http://teacher.local:8080`. The server's own origin is always allowed.
        #[arg(long)]
        allow_origin: Vec<String>,
        /// A host name accepted in the Host header besides IP literals and localhost
        /// (repeatable), e.g. the laptop's name on the classroom network.
        #[arg(long)]
        allow_host: Vec<String>,
        /// Keep rooms' logs in this Redis (redis://HOST:PORT), shared with every duplex node
        /// pointed at it: clients on any node see the same messages with the same seqs.
        #[arg(long, value_name = "URL")]
        backplane: Option<String>,
    },
    /// Run a scenario: simulate its clients on each transport, measure, write the report.
    #[command(
        after_help = "Exit status: 0 the run completed and every check passed; 1 an error \
        (bad scenario or flag, server not started, run cut short); 2 a check failed (a missing, \
        duplicated or out-of-order delivery, a threshold, or --strict and a saturated loadgen); \
        130 interrupted."
    )]
    Run {
        /// The scenario file (TOML), e.g. scenarios/classroom.toml.
        scenario: PathBuf,
        /// Output folder (default: `reports/<scenario name>/`).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Measure this server instead of starting one (e.g. http://127.0.0.1:8080).
        #[arg(long)]
        target: Option<String>,
        /// Only these transports, comma separated (short_poll,long_poll,sse,websocket).
        #[arg(long, value_delimiter = ',')]
        transports: Option<Vec<String>>,
        /// Clients per transport (overrides clients.count).
        #[arg(long)]
        clients: Option<u64>,
        /// Measured time per transport, e.g. 10s (overrides duration).
        #[arg(long)]
        duration: Option<String>,
        /// Measure another stack from peers/ instead of duplex: nchan or socketio (overrides
        /// target.peer; Socket.IO has only long_poll and websocket, see --transports).
        #[arg(long)]
        peer: Option<String>,
        /// How a Socket.IO `websocket` client opens: `direct` (a WebSocket at once) or
        /// `upgrade` (Socket.IO's default: polling first, then the upgrade); overrides
        /// `target.socketio_websocket` and that key of every Socket.IO entry of `[[stacks]]`.
        #[arg(long, value_name = "HOW")]
        socketio_websocket: Option<String>,
        /// The seed for the run's random choices (overrides seed; recorded in results.json).
        #[arg(long, allow_hyphen_values = true)]
        seed: Option<i64>,
        /// A check the run must pass, e.g. 'websocket.latency_p99_ms < 50' or '*.missing == 0'
        /// (repeatable; added to the scenario's `[thresholds]`).
        #[arg(long = "threshold", value_name = "CHECK")]
        thresholds: Vec<String>,
        /// Also fail (exit 2) when the loadgen was saturated, so its figures cannot be trusted.
        #[arg(long)]
        strict: bool,
    },
    /// Compare two results files: per transport and figure, the ratio and whether the
    /// difference is beyond the noise the runs show; writes compare.html with --out. Both runs
    /// are judged again by the checks they recorded (thresholds, --strict, integrity).
    #[command(
        after_help = "Exit status: 0 no check that passed in BASE fails in NEW; 1 an error (a         file unreadable or not a results file); 2 a check regressed: a threshold, --strict or         the integrity rule passed in BASE and fails in NEW."
    )]
    Compare {
        /// The run to compare against (e.g. an earlier results.json).
        base: PathBuf,
        /// The run to compare.
        new: PathBuf,
        /// Folder for compare.html (no page without it).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Re-render index.html and the CSV files from a results.json, without running any load.
    Report {
        /// The results file written by `duplex run`.
        results: PathBuf,
        /// Output folder (default: the folder holding the results file).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

/// `duplex run`: the run completed but a check failed (integrity, a threshold, `--strict`).
/// Distinct from 1, an error, so CI can tell "the numbers are bad" from "it did not run".
const EXIT_CHECKS_FAILED: u8 = 2;
/// Interrupted by Ctrl-C (128 + SIGINT, as shells report it).
const EXIT_INTERRUPTED: u8 = 130;

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The server logs through a queue that never blocks serving (a parent that does not drain
    // our stderr would otherwise stall the tasks that log); the other commands write directly,
    // so nothing is lost when they exit.
    let writer = if matches!(cli.command, Command::Serve { .. }) {
        let log = server::log::LogWriter::stderr();
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(move || log.clone())
    } else {
        tracing_subscriber::fmt::writer::BoxMakeWriter::new(std::io::stderr)
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(writer)
        // tracing colours by default even into a pipe; a log file should hold plain text.
        .with_ansi(colour_on_stderr())
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", error_text(&e));
            ExitCode::FAILURE
        }
    }
}

/// Colour only on a terminal, and never when `NO_COLOR` is set to anything (no-color.org).
fn colour_on_stderr() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

/// The error and its causes, each said once: many error types put their source's text in
/// their own message too, so `{:#}` would print it twice ("cannot read x: No such file...:
/// No such file...").
fn error_text(e: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in e.chain() {
        let cause = cause.to_string();
        if text.contains(&cause) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&cause);
    }
    text
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve {
            listen,
            history,
            max_body,
            max_connections,
            memory_budget,
            max_connections_per_address,
            allow_origin,
            allow_host,
            backplane,
        } => serve(
            &listen,
            server::Config {
                history,
                max_body,
                max_connections,
                memory_budget,
                max_connections_per_address,
                allow_origins: allow_origin,
                allow_hosts: allow_host,
                backplane,
                ..server::Config::default()
            },
        ),
        Command::Run {
            scenario,
            out,
            target,
            transports,
            clients,
            duration,
            seed,
            thresholds,
            strict,
            peer,
            socketio_websocket,
        } => run_scenario(
            &scenario,
            out,
            target,
            loadgen::scenario::Overrides {
                transports,
                clients,
                duration,
                seed,
                thresholds,
                peer,
                socketio_websocket,
            },
            strict,
        ),
        Command::Compare { base, new, out } => {
            let (base, new) = (report::read_results(&base)?, report::read_results(&new)?);
            let comparison = report::compare::compare(&base, &new);
            report::compare::write_table(&comparison, &mut std::io::stdout().lock())?;
            if let Some(out) = out {
                let page = report::compare::write_page(&comparison, &out)?;
                println!("wrote {}", page.display());
            }
            let (mut base_verdict, mut new_verdict) = loadgen::thresholds::judge_both(&base, &new)?;
            // Checks pair as the phases do (a run of one server against a run of stacks).
            let pairing = report::compare::Pairing::of(&base, &new);
            for c in &mut base_verdict.checks {
                c.subject = pairing.base_id(&c.subject);
            }
            for c in &mut new_verdict.checks {
                c.subject = pairing.new_id(&c.subject);
            }
            let regressed = loadgen::thresholds::regressions(&base_verdict, &new_verdict);
            loadgen::thresholds::write_regressions(
                &regressed,
                base_verdict.checks.len(),
                &mut std::io::stdout().lock(),
            )?;
            Ok(if regressed.is_empty() {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "error: {} check(s) regressed (exit status {EXIT_CHECKS_FAILED})",
                    regressed.len()
                );
                ExitCode::from(EXIT_CHECKS_FAILED)
            })
        }
        Command::Report { results, out } => {
            let parsed = report::read_results(&results)?;
            // Default: beside the results file, where `duplex run` put the report.
            let out = out.unwrap_or_else(|| match results.parent() {
                Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
                _ => PathBuf::from("."),
            });
            let written = report::write_all(&parsed, &out)?;
            for path in written {
                println!("wrote {}", path.display());
            }
            // The checks the run recorded, judged again from the file: the table `duplex run`
            // printed. Only an error is an error here; a failed check was the run's news.
            let verdict = loadgen::thresholds::judge_recorded(&parsed)?;
            loadgen::thresholds::write_table(&verdict, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `duplex run`: validate the scenario (before any load), run it against a child server or
/// `--target`, write results.json and the report, print the summary and the checks. Ctrl-C
/// stops cleanly and still writes what was measured. Exit status: see [`EXIT_CHECKS_FAILED`].
fn run_scenario(
    path: &std::path::Path,
    out: Option<PathBuf>,
    target: Option<String>,
    overrides: loadgen::scenario::Overrides,
    strict: bool,
) -> anyhow::Result<ExitCode> {
    let scenario = loadgen::scenario::Scenario::load(path, &overrides)?;
    for note in &scenario.notes {
        eprintln!("note: {note}");
    }
    let thresholds = scenario.thresholds.clone();
    let out = out.unwrap_or_else(|| loadgen::default_out_dir(&scenario));
    let server = match target {
        Some(url) => loadgen::target::ServerChoice::External(url),
        None => loadgen::target::ServerChoice::Child {
            exe: std::env::current_exe()
                .context("finding the duplex binary to start the server")?,
            // The server's own default: its open-file limit less a reserve (19,488 of the
            // 20,000 here), so overload is a clean 503 and 19,000 clients (`clients.count`'s
            // limit) still fit beside the senders' pools and the probe's scrape (a fixed 19,000
            // refused the probe once the clients held them all).
            max_connections: None,
        },
    };
    let interrupt = loadgen::CancellationToken::new();
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    let results = runtime.block_on(async {
        let on_ctrl_c = interrupt.clone();
        let ctrl_c = tokio::spawn(async move {
            if tokio::signal::ctrl_c().await.is_ok() {
                eprintln!("\ninterrupted: stopping and writing what was measured (Ctrl-C again to quit at once)");
                on_ctrl_c.cancel();
                if tokio::signal::ctrl_c().await.is_ok() {
                    std::process::exit(130);
                }
            }
        });
        let results = loadgen::run(loadgen::RunOptions {
            scenario,
            server,
            progress: loadgen::ProgressMode::for_stderr(),
            interrupt: interrupt.clone(),
        })
        .await;
        ctrl_c.abort();
        results
    });
    // Connection tasks still winding down are not worth waiting for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    let mut results = results?;
    results.checks = loadgen::thresholds::record(&thresholds, strict);
    loadgen::summary::print_summary(&results, &mut std::io::stdout().lock())?;
    let written = loadgen::write_outputs(&results, &out)
        .with_context(|| format!("writing the results into {}", out.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    if interrupt.is_cancelled() {
        return Ok(ExitCode::from(EXIT_INTERRUPTED));
    }
    let verdict = loadgen::thresholds::evaluate(&results, &thresholds, strict);
    loadgen::thresholds::write_table(&verdict, &mut std::io::stdout().lock())?;
    Ok(if !results.complete {
        eprintln!(
            "error: the run is incomplete: {}",
            results.warnings.join("; ")
        );
        ExitCode::FAILURE
    } else if !verdict.passed() {
        eprintln!(
            "error: {} of {} checks failed (exit status {EXIT_CHECKS_FAILED})",
            verdict.failures(),
            verdict.checks.len()
        );
        ExitCode::from(EXIT_CHECKS_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// A byte count: a whole number with an optional K, M or G suffix (powers of 1024).
fn parse_bytes(text: &str) -> Result<usize, String> {
    let t = text.trim();
    let (digits, unit) = match t.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => t.split_at(i),
        None => (t, ""),
    };
    let scale: usize = match unit
        .to_ascii_uppercase()
        .trim_end_matches("IB")
        .trim_end_matches('B')
    {
        "" => 1,
        "K" => 1 << 10,
        "M" => 1 << 20,
        "G" => 1 << 30,
        _ => {
            return Err(format!(
                "{text:?}: expected bytes such as 268435456, 256M or 1G"
            ));
        }
    };
    digits
        .parse::<usize>()
        .ok()
        .and_then(|n| n.checked_mul(scale))
        .filter(|&n| n > 0)
        .ok_or_else(|| format!("{text:?}: expected bytes such as 268435456, 256M or 1G"))
}

/// `duplex serve`: bind, announce the address on stdout (one line, which `duplex run` reads
/// when it starts the server as a child), serve until Ctrl-C or SIGTERM.
fn serve(listen: &str, mut config: server::Config) -> anyhow::Result<ExitCode> {
    use std::io::Write as _;
    let token = server::live::new_token();
    config.teacher_token = Some(token.clone());
    let addr: std::net::SocketAddr = listen
        .parse()
        .with_context(|| format!("--listen {listen:?} is not an address like 127.0.0.1:8080"))?;
    // tokio's multi-thread runtime, one worker per core, as `Runtime::new` makes it. Measured
    // against it for the 1,000-subscriber fan-out (docs/ARCHITECTURE.md, "What a delivery
    // costs"): a current_thread runtime runs 5% fewer user-space instructions per WebSocket
    // delivery (callgrind: 4,907 against 5,190), but used more CPU time per delivery in the one
    // `vs-nchan` run that compared them (WebSocket 32.5 against 30.6 us, SSE 27.1 against 24.8,
    // load 6-9), and it leaves the second core to the loadgen alone; larger `event_interval` and
    // `global_queue_interval` (250) changed the profile's shares within noise. `disable_lifo_slot`
    // needs `--cfg tokio_unstable` and was not tried.
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = server::bind(addr).with_context(|| format!("binding {addr}"))?;
        // Before the address is announced: whoever waits for it gets a node that can serve.
        let state = server::AppState::open(server::server::raise_descriptor_limit(config))?;
        let local = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "duplex listening on http://{local}")?;
        // The second line, never the first (`duplex run` reads the first): the teacher's URL;
        // then every address students can use, or why they cannot and how to fix it.
        let join = server::live::join::join_for(local, &server::live::join::interface_addresses());
        server::live::join::announce(&mut stdout, local, &token, &join)?;
        stdout.flush()?;
        drop(stdout);
        server::run_state(listener, state, shutdown_signal()).await?;
        Ok::<_, anyhow::Error>(())
    })?;
    // Tasks still running after the shutdown deadline are dropped, not waited for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C (SIGINT) or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    tracing::info!("shutting down");
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error whose message repeats its source's, as `ScenarioError::Read` and
    /// `ReportError::Read` do.
    #[derive(Debug)]
    struct Unreadable {
        source: std::io::Error,
    }

    impl std::fmt::Display for Unreadable {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "scenarios/x.toml: cannot read: {}", self.source)
        }
    }

    impl std::error::Error for Unreadable {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.source)
        }
    }

    #[test]
    fn an_error_prints_each_cause_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "No such file or directory");
        let e = anyhow::Error::new(Unreadable { source: io }).context("loading the scenario");
        assert_eq!(
            error_text(&e),
            "loading the scenario: scenarios/x.toml: cannot read: No such file or directory"
        );
        // `{:#}` says the cause twice; that is what this replaces.
        assert_eq!(format!("{e:#}").matches("No such file").count(), 2);
    }
}
