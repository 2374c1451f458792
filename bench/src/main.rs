//! `vs-nchan`: duplex against nginx+nchan, side by side in one run, with one client for both
//! (issue 16's table). Each measurement starts its server fresh as a child process, so both start
//! equal, and reads the server's memory and CPU from `/proc`:
//!
//! - **Idle memory**: `--idle` (5,000) clients open on SSE, WebSocket and long poll, none of them
//!   sent anything; RSS of the server's process tree after they are all open, less before, per
//!   connection. `--idle 0` leaves this out.
//! - **Fan-out**: `--subscribers` (1,000) on one room over WebSocket and SSE, one publisher at
//!   `--rate` (10) msg/s; over a `--window` (10 s): server CPU seconds per delivery and the p99
//!   of delivery latency (receive time minus the publish's scheduled time, one clock).
//!
//! - **Bare sockets**: the same fan-out with no server: writer threads writing each message to
//!   `--subscribers` loopback sockets inside the bench, read by the same client (bare.rs). Its
//!   CPU per write and its p99 are the least this machine's kernel allows a server, its client CPU
//!   per delivery the least a client pays, so a goal below them is a goal for the kernel.
//!
//! Beside each fan-out it prints the client's own CPU per delivery (its threads' run time): on
//! two cores the client's time is in every server's p99, the same for each.
//!
//! It prints each figure with the 1-minute load average beside it (the machine may be shared:
//! memory per idle connection is robust to that, CPU and latency are not), then the ratios
//! duplex / nchan and bare / nchan. Run it with `bench/run.sh`, which builds both release
//! binaries first.

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use bench::bare::{self, Bare, Shape};
use bench::clients::{self, Held};
use bench::servers::{self, Paths, Server, Stack};

struct Args {
    paths: Paths,
    idle: usize,
    subscribers: usize,
    rate: f64,
    payload: usize,
    window: Duration,
    sources: u8,
    only: Option<Stack>,
    deadline: Duration,
}

const USAGE: &str = "usage: vs-nchan [--duplex PATH] [--nchan-start PATH] [--idle N] \
[--subscribers N] [--rate MSG_PER_S] [--payload BYTES] [--window SECS] [--sources N] \
[--only duplex|nchan] [--baseline PATH] [--deadline SECS]";

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        paths: Paths {
            duplex: "target/release/duplex".into(),
            nchan_start: "peers/nchan/start.sh".into(),
            baseline: None,
        },
        idle: 5000,
        subscribers: 1000,
        rate: 10.0,
        payload: 100,
        window: Duration::from_secs(10),
        sources: 8,
        only: None,
        deadline: Duration::from_secs(600),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.into());
        }
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--duplex" => args.paths.duplex = value.into(),
            "--nchan-start" => args.paths.nchan_start = value.into(),
            "--baseline" => args.paths.baseline = Some(value.into()),
            "--idle" => args.idle = value.parse().map_err(|e| bad(&e))?,
            "--subscribers" => args.subscribers = value.parse().map_err(|e| bad(&e))?,
            "--rate" => args.rate = value.parse().map_err(|e| bad(&e))?,
            "--payload" => args.payload = value.parse().map_err(|e| bad(&e))?,
            "--window" => args.window = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            "--sources" => args.sources = value.parse().map_err(|e| bad(&e))?,
            "--deadline" => {
                args.deadline = Duration::from_secs(value.parse().map_err(|e| bad(&e))?)
            }
            "--only" => {
                args.only = Some(match value.as_str() {
                    "duplex" => Stack::Duplex,
                    "nchan" => Stack::Nchan,
                    _ => return Err(bad(&"expected duplex or nchan")),
                })
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if !(args.rate > 0.0 && args.rate <= 1000.0) {
        return Err(format!("--rate {}: expected 0 < rate <= 1000", args.rate));
    }
    if args.sources == 0 || args.sources > 250 {
        return Err(format!("--sources {}: expected 1..=250", args.sources));
    }
    if args.idle.max(args.subscribers) > 19_000 {
        return Err("at most 19,000 clients: one process may hold 20,000 descriptors".into());
    }
    Ok(args)
}

/// One figure for one stack, with the load average when it was taken.
struct Figure {
    value: f64,
    load: String,
}

/// Opens `n` idle `held` clients on a fresh server and returns its RSS per connection, bytes.
async fn idle_memory(stack: Stack, held: Held, args: &Args) -> Result<Figure, String> {
    let server = Server::start(stack, &args.paths)?;
    // Let the server settle after start before taking the baseline.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = server.rss();
    let mut pending = JoinSet::new();
    let mut open = Vec::with_capacity(args.idle);
    let mut next = 0;
    let mut failures = Vec::new();
    while open.len() + failures.len() < args.idle {
        while next < args.idle && pending.len() < 256 {
            let from = clients::source(next, args.sources);
            let addr = server.addr;
            let n = next;
            pending
                .spawn(async move { clients::subscribe(stack, held, "idle", addr, from, n).await });
            next += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(sub))) => open.push(sub),
            Some(Ok(Err(e))) => failures.push(e),
            Some(Err(e)) => failures.push(e.to_string()),
            None => break,
        }
    }
    if !failures.is_empty() {
        return Err(format!(
            "{} of {} idle {} clients failed on {}; first: {}",
            failures.len(),
            args.idle,
            held.name(),
            stack.name(),
            failures[0]
        ));
    }
    // Allocators and lazily made buffers settle; a long poll's request is read by now.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let after = server.rss();
    // Every client must still be held: open (SSE/WebSocket may have sent a ping) and, for a
    // long poll, not answered.
    let mut scratch = [0u8; 256];
    let broken = open
        .iter()
        .filter(|s| match s.tcp.try_read(&mut scratch) {
            Ok(0) => true,
            Ok(_) => held == Held::LongPoll,
            Err(e) => e.kind() != std::io::ErrorKind::WouldBlock,
        })
        .count();
    if broken > 0 {
        return Err(format!(
            "{broken} idle {} clients on {} were closed or answered while idle",
            held.name(),
            stack.name()
        ));
    }
    let per = after.saturating_sub(before) as f64 / args.idle as f64;
    drop(open);
    drop(server);
    Ok(Figure {
        value: per,
        load: servers::load(),
    })
}

/// Server CPU per delivery (seconds) and p99 latency (seconds) for one fan-out run.
struct FanOut {
    cpu_per_delivery: Figure,
    p99: Figure,
    deliveries: usize,
    expected: f64,
    /// The client threads' CPU seconds per delivery over the window.
    client_per_delivery: f64,
}

async fn fan_out(stack: Stack, held: Held, args: &Args) -> Result<FanOut, String> {
    let server = Server::start(stack, &args.paths)?;
    let clock = Instant::now();
    let window = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let room = format!("fan{}", clock.elapsed().as_nanos() % 1_000_000);
    let mut subscribers = Vec::with_capacity(args.subscribers);
    for n in 0..args.subscribers {
        let from = clients::source(n, args.sources);
        let sub = clients::subscribe(stack, held, &room, server.addr, from, n)
            .await
            .map_err(|e| format!("subscriber {n} on {}: {e}", stack.name()))?;
        let tcp = sub.tcp.into_std().map_err(|e| e.to_string())?;
        subscribers.push((tcp, sub.rest));
    }
    let client = clients::follow(subscribers, clock, window.clone(), stop.clone());
    let publisher = tokio::spawn(clients::publish(
        stack,
        server.addr,
        room,
        args.rate,
        args.payload,
        clock,
        stop.clone(),
    ));
    // Warm-up: connections settle, the first deliveries go out.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let cpu0 = server.cpu();
    window.store(true, Ordering::Relaxed);
    let opened = Instant::now();
    tokio::time::sleep(args.window).await;
    window.store(false, Ordering::Relaxed);
    let elapsed = opened.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu0;
    let load = servers::load();
    stop.store(true, Ordering::Relaxed);
    let published = publisher.await.map_err(|e| e.to_string())??;
    let received = tokio::task::spawn_blocking(move || client.join())
        .await
        .map_err(|e| e.to_string())??;
    drop(server);
    let delivered = match received.delivered() {
        Some(d) if published > 0 => d,
        _ => {
            return Err(format!(
                "{} {}: nothing delivered ({published} published)",
                stack.name(),
                held.name()
            ));
        }
    };
    Ok(FanOut {
        cpu_per_delivery: Figure {
            value: cpu / delivered.deliveries as f64,
            load: load.clone(),
        },
        p99: Figure {
            value: delivered.p99_s,
            load,
        },
        deliveries: delivered.deliveries,
        expected: args.subscribers as f64 * args.rate * elapsed,
        client_per_delivery: delivered.client_cpu_s,
    })
}

/// The bare-socket fan-out for this run's shape, off the runtime (its threads block).
async fn bare(args: &Args) -> Result<Bare, String> {
    let shape = Shape {
        subscribers: args.subscribers,
        rate: args.rate,
        payload: args.payload,
        window: args.window,
        sources: args.sources,
    };
    tokio::task::spawn_blocking(move || bare::measure(&shape))
        .await
        .map_err(|e| e.to_string())?
}

/// The stacks measured, each measurement in this order (so a baseline and the new binary see
/// nearly the same load).
fn stacks(args: &Args) -> Vec<Stack> {
    let mut out = match args.only {
        Some(s) => vec![s],
        None => vec![Stack::Nchan, Stack::Duplex],
    };
    if args.paths.baseline.is_some() && args.only != Some(Stack::Nchan) {
        out.insert(out.len() - 1, Stack::Baseline);
    }
    out
}

/// One line of the closing table: a figure for each stack (indexed by [`Stack`]) and the bare
/// sockets' where they have one, printed as `value * scale` in `unit`.
struct Row {
    label: String,
    figures: [Option<Figure>; 3],
    bare: Option<Figure>,
    scale: f64,
    unit: &'static str,
}

impl Row {
    fn new(
        label: String,
        figures: [Option<Figure>; 3],
        bare: Option<Figure>,
        scale: f64,
        unit: &'static str,
    ) -> Self {
        Row {
            label,
            figures,
            bare,
            scale,
            unit,
        }
    }
}

/// `duplex / nchan`, or blank when one side was not measured.
fn ratio(nchan: Option<&Figure>, duplex: Option<&Figure>) -> String {
    match (nchan, duplex) {
        (Some(n), Some(d)) if n.value > 0.0 => format!("{:.2}x", d.value / n.value),
        _ => "-".into(),
    }
}

fn show(f: Option<&Figure>, scale: f64, unit: &str) -> String {
    f.map_or_else(
        || "-".into(),
        |f| format!("{:.1} {unit} (load {})", f.value * scale, f.load),
    )
}

async fn run(args: Args) -> Result<(), String> {
    if args.only != Some(Stack::Duplex) {
        servers::check_nchan()?;
    }
    if let Some(before) = &args.paths.baseline
        && !before.exists()
    {
        return Err(format!("--baseline {}: not found", before.display()));
    }
    if args.only != Some(Stack::Nchan) && !args.paths.duplex.exists() {
        return Err(format!(
            "{} not found: build it with `cargo build --release -p duplex` (or pass --duplex)",
            args.paths.duplex.display()
        ));
    }
    let limit = rlimit::increase_nofile_limit(u64::MAX).map_err(|e| e.to_string())?;
    if limit < args.idle.max(args.subscribers) as u64 + 64 {
        return Err(format!(
            "the open-file limit is {limit}: too low for the clients asked"
        ));
    }
    println!("vs-nchan: load at start {}", servers::load());
    let mut rows: Vec<Row> = Vec::new();
    // `--idle 0` skips the idle-memory figures (a fan-out-only run, e.g. for a before/after).
    let idle_kinds: &[Held] = if args.idle == 0 {
        &[]
    } else {
        &[Held::Sse, Held::WebSocket, Held::LongPoll]
    };
    for &held in idle_kinds {
        let mut pair = [None, None, None];
        for stack in stacks(&args) {
            let f = idle_memory(stack, held, &args).await?;
            println!(
                "idle {:<9} {:<6} {:>6.1} KiB per connection ({} open, load {})",
                held.name(),
                stack.name(),
                f.value / 1024.0,
                args.idle,
                f.load
            );
            pair[stack as usize] = Some(f);
        }
        let label = format!(
            "RSS per idle connection, {} open: {}",
            args.idle,
            held.name()
        );
        rows.push(Row::new(label, pair, None, 1.0 / 1024.0, "KiB"));
    }
    for held in [Held::WebSocket, Held::Sse] {
        // The bare sockets carry the same bytes whatever the transport; they are measured again
        // before each transport's runs so that they see the same machine those do.
        let base = bare(&args).await?;
        let load = servers::load();
        println!(
            "fan-out {:<9} bare   {:>6.1} us CPU per write ({} writers), p99 {:>6.1} ms, {} \
             deliveries, client {:.1} us per delivery (load {load})",
            held.name(),
            base.write_s * 1e6,
            base.writers,
            base.p99_s * 1e3,
            base.deliveries,
            base.read_s * 1e6,
        );
        let at_load = |value| Figure {
            value,
            load: load.clone(),
        };
        let (mut cpu, mut p99, mut client) =
            ([None, None, None], [None, None, None], [None, None, None]);
        for stack in stacks(&args) {
            let f = fan_out(stack, held, &args).await?;
            println!(
                "fan-out {:<9} {:<6} {:>6.1} us CPU per delivery, p99 {:>6.1} ms, {} of ~{:.0} \
                 deliveries, client {:.1} us per delivery (load {})",
                held.name(),
                stack.name(),
                f.cpu_per_delivery.value * 1e6,
                f.p99.value * 1e3,
                f.deliveries,
                f.expected,
                f.client_per_delivery * 1e6,
                f.p99.load
            );
            client[stack as usize] = Some(Figure {
                value: f.client_per_delivery,
                load: f.p99.load.clone(),
            });
            cpu[stack as usize] = Some(f.cpu_per_delivery);
            p99[stack as usize] = Some(f.p99);
        }
        let setup = format!("{} subscribers x {} msg/s", args.subscribers, args.rate);
        rows.push(Row::new(
            format!("server CPU per delivery, {setup}: {}", held.name()),
            cpu,
            Some(at_load(base.write_s)),
            1e6,
            "us",
        ));
        rows.push(Row::new(
            format!("p99 delivery, {setup}: {}", held.name()),
            p99,
            Some(at_load(base.p99_s)),
            1e3,
            "ms",
        ));
        rows.push(Row::new(
            format!("client (this bench) CPU per delivery: {}", held.name()),
            client,
            Some(at_load(base.read_s)),
            1e6,
            "us",
        ));
    }
    println!();
    let before = args.paths.baseline.is_some();
    if before {
        println!(
            "| figure | nchan | before | duplex | bare | before / nchan | duplex / nchan | \
             bare / nchan |"
        );
        println!("|---|---|---|---|---|---|---|---|");
    } else {
        println!("| figure | nchan | duplex | bare | duplex / nchan | bare / nchan |");
        println!("|---|---|---|---|---|---|");
    }
    for row in &rows {
        let [nchan, duplex, baseline] = &row.figures;
        let (nchan, duplex, baseline) = (nchan.as_ref(), duplex.as_ref(), baseline.as_ref());
        let bare = row.bare.as_ref();
        let show = |f| show(f, row.scale, row.unit);
        let (label, n, d, f) = (&row.label, show(nchan), show(duplex), show(bare));
        let (rd, rf) = (ratio(nchan, duplex), ratio(nchan, bare));
        if before {
            let (b, rb) = (show(baseline), ratio(nchan, baseline));
            println!("| {label} | {n} | {b} | {d} | {f} | {rb} | {rd} | {rf} |");
        } else {
            println!("| {label} | {n} | {d} | {f} | {rd} | {rf} |");
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("vs-nchan: {e}");
            return ExitCode::from(2);
        }
    };
    let deadline = args.deadline;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vs-nchan: starting tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    // Bounded in time: a stuck server or client ends the run with an error, and the servers
    // (children, killed on drop) go with it.
    let outcome = runtime.block_on(async { tokio::time::timeout(deadline, run(args)).await });
    runtime.shutdown_timeout(Duration::from_millis(200));
    match outcome {
        Ok(Ok(())) => ExitCode::SUCCESS,
        Ok(Err(e)) => {
            eprintln!("vs-nchan: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("vs-nchan: the run took longer than --deadline {deadline:?}");
            ExitCode::FAILURE
        }
    }
}
