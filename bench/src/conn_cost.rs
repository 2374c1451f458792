//! `conn-cost`: where the server's bytes go per idle connection. Runs duplex's server in this
//! process under dhat's heap profiler, opens `--clients` idle SSE, WebSocket or long-poll clients
//! from a child process (this binary again, `--client-of ADDR`, so the clients' own allocations
//! are not counted), and once they are all open and quiet reads the live heap and each
//! allocation site's live bytes at that moment. It prints the heap per connection and the sites
//! that hold at least 16 bytes per connection, each named by its first frame outside the
//! allocator and the standard library.
//!
//! ```text
//! cargo run --release -p bench --bin conn-cost -- --transport websocket --clients 2000
//! ```
//!
//! The figure is live heap, not RSS: the allocator's own overhead and fragmentation come on top
//! (`vs-nchan` measures RSS). dhat's bookkeeping makes this process large; only the difference
//! with and without the clients counts.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use bench::clients::{self, Held};
use bench::servers::Stack;

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const USAGE: &str = "usage: conn-cost --transport sse|websocket|long_poll [--clients N] \
[--sources N]";

fn held(name: &str) -> Result<Held, String> {
    match name {
        "sse" => Ok(Held::Sse),
        "websocket" => Ok(Held::WebSocket),
        "long_poll" => Ok(Held::LongPoll),
        _ => Err(format!(
            "--transport {name:?}: expected sse, websocket or long_poll"
        )),
    }
}

struct Args {
    held: Held,
    transport: String,
    clients: usize,
    sources: u8,
    client_of: Option<SocketAddr>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        held: Held::Sse,
        transport: "sse".into(),
        clients: 2000,
        sources: 4,
        client_of: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value\n{USAGE}"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--transport" => {
                args.held = held(&value)?;
                args.transport = value;
            }
            "--clients" => args.clients = value.parse().map_err(|e| bad(&e))?,
            "--sources" => args.sources = value.parse().map_err(|e| bad(&e))?,
            "--client-of" => args.client_of = Some(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if args.sources == 0 || args.sources > 250 {
        return Err(format!("--sources {}: expected 1..=250", args.sources));
    }
    Ok(args)
}

/// The child's part: open the clients, say `ready`, hold them until stdin closes.
async fn clients_of(addr: SocketAddr, args: &Args) -> Result<(), String> {
    rlimit::increase_nofile_limit(u64::MAX).map_err(|e| e.to_string())?;
    let mut open = Vec::with_capacity(args.clients);
    for n in 0..args.clients {
        let from = clients::source(n, args.sources);
        let sub = clients::subscribe(Stack::Duplex, args.held, "idle", addr, from, n)
            .await
            .map_err(|e| format!("client {n}: {e}"))?;
        open.push(sub);
    }
    println!("ready {}", open.len());
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
    Ok(())
}

/// Live bytes at the moment the profile was written, summed over the allocation sites that
/// share a call path (the frames that name it).
struct Site {
    bytes: u64,
    blocks: u64,
    frames: String,
}

/// How many frames of ours or a library's name a site.
const FRAMES: usize = 3;

/// Reads dhat's JSON: each program point's bytes live at the end (`eb`, `ebk`) and its frames,
/// grouped by the first [`FRAMES`] frames outside the profiler, the allocator, the standard
/// library and the byte containers (one allocation reached through different polls is one site).
fn sites(json: &serde_json::Value) -> Vec<Site> {
    let frames: Vec<&str> = json["ftbl"]
        .as_array()
        .map(|f| f.iter().map(|s| s.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    let boring = [
        "dhat",
        "alloc",
        "core::",
        "std::",
        "[root]",
        "<alloc::",
        "<core::",
        "<std::",
        "hashbrown::",
        "<dhat::",
        "bytes::",
        "<bytes::",
        "__rust",
        "try_allocate_in",
        "with_capacity",
        "box_new",
        "new_uninit",
        "finish_grow",
        "grow_",
        "do_reserve",
        "reserve",
    ];
    let mut grouped: std::collections::BTreeMap<String, (u64, u64)> = Default::default();
    for pp in json["pps"].as_array().into_iter().flatten() {
        let bytes = pp["eb"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let names: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .map(|f| f.split_once(": ").map_or(f, |(_, name)| name))
            .filter(|name| !boring.iter().any(|b| name.starts_with(b)))
            .take(FRAMES)
            .map(|name| name.split(" (").next().unwrap_or(name))
            .collect();
        let entry = grouped.entry(names.join(" < ")).or_default();
        entry.0 += bytes;
        entry.1 += pp["ebk"].as_u64().unwrap_or(0);
    }
    grouped
        .into_iter()
        .map(|(frames, (bytes, blocks))| Site {
            bytes,
            blocks,
            frames,
        })
        .collect()
}

async fn profile(args: &Args) -> Result<(), String> {
    let file = std::env::temp_dir().join(format!("conn-cost-{}.json", std::process::id()));
    let profiler = dhat::Profiler::builder().file_name(&file).build();
    let server = server::spawn(server::server::raise_descriptor_limit(
        server::Config::default(),
    ))
    .await
    .map_err(|e| format!("starting the server: {e}"))?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = dhat::HeapStats::get();
    let mut child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["--transport", &args.transport])
        .args(["--clients", &args.clients.to_string()])
        .args(["--sources", &args.sources.to_string()])
        .args(["--client-of", &server.addr.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("starting the clients: {e}"))?;
    let stdout = child.stdout.take().expect("piped");
    let ready = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    });
    let line = tokio::time::timeout(Duration::from_secs(120), ready)
        .await
        .map_err(|_| "the clients did not open within 120 s".to_string())?
        .map_err(|e| e.to_string())?
        .map_err(|e| e.to_string())?;
    if !line.starts_with("ready") {
        let _ = child.kill();
        return Err(format!("the clients failed (printed {line:?})"));
    }
    // A long poll's client returns once its request is written, and under the profiler the
    // server is slow: wait (bounded) until the server holds every one, then a quiet second for
    // buffers made during the handshake to be dropped or kept.
    let transport = match args.held {
        Held::Sse => wire::Transport::Sse,
        Held::WebSocket => wire::Transport::WebSocket,
        Held::LongPoll => wire::Transport::LongPoll,
    };
    for _ in 0..600 {
        let open = server.state.metrics.transport(transport).open_connections;
        if open >= args.clients as i64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = dhat::HeapStats::get();
    drop(profiler);
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = server.shutdown().await;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    if std::env::var_os("CONN_COST_KEEP").is_none() {
        let _ = std::fs::remove_file(&file);
    }
    let json: serde_json::Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
    let n = args.clients as f64;
    println!(
        "{}: {} idle connections: live heap {:.0} bytes and {:.1} blocks per connection",
        args.transport,
        args.clients,
        (after.curr_bytes as f64 - before.curr_bytes as f64) / n,
        (after.curr_blocks as f64 - before.curr_blocks as f64) / n
    );
    let mut sites = sites(&json);
    sites.sort_by_key(|s| std::cmp::Reverse(s.bytes));
    println!(
        "{:>7} {:>8}  allocated in (innermost first)",
        "B/conn", "blk/conn"
    );
    for site in sites.iter().filter(|s| s.bytes as f64 >= 16.0 * n) {
        println!(
            "{:>7.0} {:>8.2}  {}",
            site.bytes as f64 / n,
            site.blocks as f64 / n,
            site.frames
        );
    }
    Ok(())
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("conn-cost: {e}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime starts");
    let outcome = runtime.block_on(async {
        match args.client_of {
            Some(addr) => clients_of(addr, &args).await,
            None => profile(&args).await,
        }
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("conn-cost: {e}");
            ExitCode::FAILURE
        }
    }
}
