//! The `duplex` binary: thin glue that parses the command line, sets up logging and hands over
//! to the libraries: `serve` to the server, `run` to the loadgen, `report` to the report crate.

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
        /// http://teacher.local:8080. The server's own origin is always allowed.
        #[arg(long)]
        allow_origin: Vec<String>,
        /// A host name accepted in the Host header besides IP literals and localhost
        /// (repeatable), e.g. the laptop's name on the classroom network.
        #[arg(long)]
        allow_host: Vec<String>,
    },
    /// Run a scenario: simulate its clients on each transport, measure, write the report.
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
        .init();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
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
        } => run_scenario(
            &scenario,
            out,
            target,
            loadgen::scenario::Overrides {
                transports,
                clients,
                duration,
                ..Default::default()
            },
        ),
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
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `duplex run`: validate the scenario (before any load), run it against a child server or
/// `--target`, write results.json and the report, print the summary. Ctrl-C stops cleanly and
/// still writes what was measured; exit status is non-zero for an incomplete run.
fn run_scenario(
    path: &std::path::Path,
    out: Option<PathBuf>,
    target: Option<String>,
    overrides: loadgen::scenario::Overrides,
) -> anyhow::Result<ExitCode> {
    let scenario = loadgen::scenario::Scenario::load(path, &overrides)?;
    let out = out.unwrap_or_else(|| loadgen::default_out_dir(&scenario));
    let server = match target {
        Some(url) => loadgen::target::ServerChoice::External(url),
        None => loadgen::target::ServerChoice::Child {
            exe: std::env::current_exe()
                .context("finding the duplex binary to start the server")?,
            // Below the 20,000 open files a process may have, so overload is a clean 503.
            max_connections: Some(19_000),
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
            progress: true,
            interrupt: interrupt.clone(),
        })
        .await;
        ctrl_c.abort();
        results
    });
    // Connection tasks still winding down are not worth waiting for.
    runtime.shutdown_timeout(std::time::Duration::from_millis(500));
    let results = results?;
    loadgen::summary::print_summary(&results, &mut std::io::stdout().lock())?;
    let written = loadgen::write_outputs(&results, &out)
        .with_context(|| format!("writing the results into {}", out.display()))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(if interrupt.is_cancelled() {
        ExitCode::from(130)
    } else if !results.complete {
        eprintln!(
            "error: the run is incomplete: {}",
            results.warnings.join("; ")
        );
        ExitCode::FAILURE
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
    let runtime = tokio::runtime::Runtime::new().context("starting the tokio runtime")?;
    runtime.block_on(async {
        let listener = server::bind(addr).with_context(|| format!("binding {addr}"))?;
        let local = listener.local_addr()?;
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "duplex listening on http://{local}")?;
        // The second line, never the first (`duplex run` reads the first): the teacher's URL.
        // On 0.0.0.0 the students' address is the laptop's own; the token works with any host.
        writeln!(stdout, "teacher: http://{local}/dashboard?token={token}")?;
        stdout.flush()?;
        drop(stdout);
        server::run(listener, config, shutdown_signal()).await?;
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
