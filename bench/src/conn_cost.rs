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

/// One allocation site's live bytes at the moment the profile was written.
struct Site {
    bytes: u64,
    blocks: u64,
    frame: String,
}

/// Reads dhat's JSON: each program point's bytes live at the end (`eb`, `ebk`) and its frames.
fn sites(json: &serde_json::Value) -> Vec<Site> {
    let frames: Vec<&str> = json["ftbl"]
        .as_array()
        .map(|f| f.iter().map(|s| s.as_str().unwrap_or("")).collect())
        .unwrap_or_default();
    let boring = [
        "dhat::",
        "alloc::",
        "core::",
        "std::",
        "[root]",
        "<alloc::",
        "<core::",
        "<std::",
        "hashbrown::",
        "<dhat::",
        "bytes::bytes_mut::",
        "<bytes::",
    ];
    let mut out = Vec::new();
    for pp in json["pps"].as_array().into_iter().flatten() {
        let bytes = pp["eb"].as_u64().unwrap_or(0);
        if bytes == 0 {
            continue;
        }
        let chain: Vec<&str> = pp["fs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|i| frames.get(i.as_u64()? as usize).copied())
            .collect();
        let frame = chain
            .iter()
            .map(|f| f.split_once(": ").map_or(*f, |(_, name)| name))
            .find(|name| !boring.iter().any(|b| name.starts_with(b)))
            .unwrap_or("?")
            .to_owned();
        out.push(Site {
            bytes,
            blocks: pp["ebk"].as_u64().unwrap_or(0),
            frame,
        });
    }
    out
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
    // Quiet: buffers made during the handshake are dropped or kept by now.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = dhat::HeapStats::get();
    drop(profiler);
    drop(child.stdin.take());
    let _ = child.wait();
    let _ = server.shutdown().await;
    let text = std::fs::read_to_string(&file).map_err(|e| format!("{}: {e}", file.display()))?;
    let _ = std::fs::remove_file(&file);
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
        "{:>9} {:>7}  first frame of ours or a library's",
        "B/conn", "blk/conn"
    );
    for site in sites.iter().filter(|s| s.bytes as f64 >= 16.0 * n) {
        println!(
            "{:>9.0} {:>7.2}  {}",
            site.bytes as f64 / n,
            site.blocks as f64 / n,
            site.frame
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
