//! Measures what an idle client costs the server: opens N idle WebSocket or SSE clients against
//! a running `duplex serve`, and reads the server's resident memory from its `/metrics` before
//! and after. The clients speak just enough HTTP by hand (one request, then silence), so this
//! process stays small and the figure is the server's alone.
//!
//! ```text
//! duplex serve --listen 127.0.0.1:8080 --max-connections 20000 &
//! cargo run --release -p server --example idle_clients -- \
//!     --target 127.0.0.1:8080 --transport websocket --clients 5000
//! ```
//!
//! Clients are spread over source addresses 127.0.0.2, 127.0.0.3, ... (`--sources`), so a large
//! N does not run out of ephemeral ports on one address.
//!
//! Measured (2-core machine, release build, 5,000 clients, 200 connecting at a time):
//! WebSocket 6.3 -> 63.7 MiB, 11.8 KiB per idle client; SSE 6.3 -> 63.7 MiB, 11.8 KiB. With
//! tungstenite's default 128 KiB buffers a WebSocket cost 139.9 KiB. With `--concurrency 5000`
//! (every connect at once, which the 8192-deep accept backlog holds) all 5,000 connect in
//! about half a second.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::task::JoinSet;

struct Args {
    target: SocketAddr,
    transport: String,
    clients: usize,
    sources: u8,
    concurrency: usize,
    hold: Duration,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        target: "127.0.0.1:8080".parse().unwrap(),
        transport: "websocket".into(),
        clients: 1000,
        sources: 4,
        concurrency: 200,
        hold: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        let bad = |e: &dyn std::fmt::Display| format!("{flag} {value:?}: {e}");
        match flag.as_str() {
            "--target" => args.target = value.parse().map_err(|e| bad(&e))?,
            "--transport" => args.transport = value,
            "--clients" => args.clients = value.parse().map_err(|e| bad(&e))?,
            "--sources" => args.sources = value.parse().map_err(|e| bad(&e))?,
            "--concurrency" => args.concurrency = value.parse().map_err(|e| bad(&e))?,
            "--hold-secs" => args.hold = Duration::from_secs(value.parse().map_err(|e| bad(&e))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if !matches!(args.transport.as_str(), "websocket" | "sse") {
        return Err("--transport must be websocket or sse".into());
    }
    Ok(args)
}

/// Reads one value from the server's `/metrics`.
async fn metric(target: SocketAddr, name: &str) -> Result<f64, String> {
    let mut tcp = TcpStream::connect(target)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .map_err(|e| e.to_string())?;
    let mut text = String::new();
    tcp.read_to_string(&mut text)
        .await
        .map_err(|e| e.to_string())?;
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .ok_or(format!("{name} not in /metrics"))
}

/// Opens one idle client from `source`: sends the request, reads the answer's head, and keeps
/// the socket.
async fn open(
    target: SocketAddr,
    source: IpAddr,
    transport: &str,
    n: usize,
) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("bind {source}: {e}"))?;
    let mut tcp = socket
        .connect(target)
        .await
        .map_err(|e| format!("connect: {e}"))?;
    let request = match transport {
        "websocket" => format!(
            "GET /api/rooms/idle/ws?client=c{n} HTTP/1.1\r\nHost: {target}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        ),
        _ => format!(
            "GET /api/rooms/idle/sse?client=c{n} HTTP/1.1\r\nHost: {target}\r\n\
             Accept: text/event-stream\r\n\r\n"
        ),
    };
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let k = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if k == 0 {
            return Err("closed before answering".into());
        }
        head.extend_from_slice(&buf[..k]);
    }
    let want = if transport == "websocket" {
        "101"
    } else {
        "200"
    };
    let status = String::from_utf8_lossy(&head[..head.len().min(12)]).into_owned();
    if !status.contains(want) {
        return Err(format!("answered {status:?}"));
    }
    Ok(tcp)
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let rss_before = match metric(args.target, "process_resident_memory_bytes").await {
        Ok(v) => v,
        Err(e) => {
            eprintln!("error: reading /metrics from {}: {e}", args.target);
            return ExitCode::FAILURE;
        }
    };
    let started = Instant::now();
    let mut clients = Vec::with_capacity(args.clients);
    let mut failures = 0usize;
    let mut pending = JoinSet::new();
    let mut next = 0usize;
    while clients.len() + failures < args.clients {
        while next < args.clients && pending.len() < args.concurrency {
            let source = IpAddr::V4(Ipv4Addr::new(
                127,
                0,
                0,
                2 + (next % args.sources as usize) as u8,
            ));
            let transport = args.transport.clone();
            let target = args.target;
            let n = next;
            pending.spawn(async move { open(target, source, &transport, n).await });
            next += 1;
        }
        match pending.join_next().await {
            Some(Ok(Ok(tcp))) => clients.push(tcp),
            Some(Ok(Err(e))) => {
                failures += 1;
                if failures <= 5 {
                    eprintln!("client failed: {e}");
                }
            }
            Some(Err(e)) => {
                failures += 1;
                eprintln!("client task failed: {e}");
            }
            None => break,
        }
    }
    let connect_time = started.elapsed();
    // Let the server settle (allocator, lazily allocated buffers) before reading its memory.
    tokio::time::sleep(args.hold).await;
    let rss_after = metric(args.target, "process_resident_memory_bytes")
        .await
        .unwrap_or(f64::NAN);
    let open = metric(
        args.target,
        &format!(
            "duplex_open_connections{{transport=\"{}\"}}",
            args.transport
        ),
    )
    .await
    .unwrap_or(f64::NAN);
    let n = clients.len().max(1) as f64;
    println!("transport            {}", args.transport);
    println!(
        "clients connected    {} ({} failed) in {:.1} s",
        clients.len(),
        failures,
        connect_time.as_secs_f64()
    );
    println!("server open gauge    {open}");
    println!("server RSS before    {:.1} MiB", rss_before / 1048576.0);
    println!("server RSS after     {:.1} MiB", rss_after / 1048576.0);
    println!(
        "per idle connection  {:.1} KiB",
        (rss_after - rss_before) / n / 1024.0
    );
    drop(clients);
    if failures > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
