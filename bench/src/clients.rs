//! The one client used for both servers: raw sockets speaking just enough HTTP and WebSocket by
//! hand, so the client's own cost is small and identical for either server.
//!
//! A delivery is found by its stamp, not by parsing either server's framing: the publisher puts
//! `@T<ns>;` (nanoseconds since the bench started, on its one monotonic clock) in every body, and
//! each subscriber scans the bytes it reads for stamps (an SSE `data:` line, a WebSocket text
//! frame and a long poll's body all carry the body unchanged). A stamp split across two reads is
//! carried over to the next one.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::servers::Stack;

/// The three transports that hold a connection open while idle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    Sse,
    WebSocket,
    LongPoll,
}

impl Held {
    pub fn name(self) -> &'static str {
        match self {
            Held::Sse => "SSE",
            Held::WebSocket => "WebSocket",
            Held::LongPoll => "long poll",
        }
    }
}

/// Source address for the `n`-th client: 127.0.0.2, 127.0.0.3, ... (`sources` of them), so
/// tens of thousands of clients do not exhaust one address's ~28k ephemeral ports.
pub fn source(n: usize, sources: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (n % sources as usize) as u8))
}

/// The subscribe request for `held` on `stack`, room `room`.
fn subscribe_request(stack: Stack, held: Held, room: &str, addr: SocketAddr, n: usize) -> String {
    let path = match (stack.is_duplex(), held) {
        (true, Held::Sse) => format!("/api/rooms/{room}/sse?client=c{n}"),
        (true, Held::WebSocket) => format!("/api/rooms/{room}/ws?client=c{n}"),
        // The longest hold duplex allows, so an idle poll outlasts the measurement.
        (true, Held::LongPoll) => {
            format!("/api/rooms/{room}/longpoll?client=c{n}&timeout_ms=120000")
        }
        (false, Held::Sse) => format!("/sub/sse/{room}"),
        (false, Held::WebSocket) => format!("/sub/ws/{room}"),
        (false, Held::LongPoll) => format!("/sub/longpoll/{room}"),
    };
    let extra = match held {
        Held::Sse => "Accept: text/event-stream\r\n",
        Held::WebSocket => {
            "Upgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        }
        Held::LongPoll => "",
    };
    format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{extra}\r\n")
}

async fn connect(addr: SocketAddr, from: IpAddr) -> Result<TcpStream, String> {
    let socket = TcpSocket::new_v4().map_err(|e| e.to_string())?;
    socket
        .bind(SocketAddr::new(from, 0))
        .map_err(|e| format!("bind {from}: {e}"))?;
    let tcp = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    tcp.set_nodelay(true).map_err(|e| e.to_string())?;
    Ok(tcp)
}

/// An open subscriber: the socket, and what was read past the answer's head.
pub struct Subscriber {
    pub tcp: TcpStream,
    pub rest: Vec<u8>,
}

/// Opens one subscriber. SSE and WebSocket wait for the answer's head (`200` / `101`); a long
/// poll is held without an answer, so it returns once the request is written.
pub async fn subscribe(
    stack: Stack,
    held: Held,
    room: &str,
    addr: SocketAddr,
    from: IpAddr,
    n: usize,
) -> Result<Subscriber, String> {
    let mut tcp = connect(addr, from).await?;
    let request = subscribe_request(stack, held, room, addr, n);
    tcp.write_all(request.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    if held == Held::LongPoll {
        return Ok(Subscriber {
            tcp,
            rest: Vec::new(),
        });
    }
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    let end = loop {
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let k = tcp.read(&mut buf).await.map_err(|e| e.to_string())?;
        if k == 0 {
            return Err(format!("{} closed before answering", stack.name()));
        }
        head.extend_from_slice(&buf[..k]);
    };
    let want: &[u8] = if held == Held::WebSocket {
        b" 101 "
    } else {
        b" 200 "
    };
    if !head[..end.min(16)].windows(5).any(|w| w == want) {
        let status = String::from_utf8_lossy(&head[..end.min(40)]).into_owned();
        return Err(format!("{} answered {status:?}", stack.name()));
    }
    Ok(Subscriber {
        tcp,
        rest: head[end..].to_vec(),
    })
}

/// Latencies (µs) of the stamps one subscriber read while `window` was open, and how many.
#[derive(Default)]
pub struct Received {
    pub latencies_us: Vec<u32>,
}

/// Reads `sub` until `stop` is set or the socket closes, recording each stamp that arrives while
/// `window` is set.
pub async fn follow(
    mut sub: Subscriber,
    clock: Instant,
    window: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Received {
    let mut received = Received::default();
    let mut buf = vec![0u8; 16 * 1024];
    let mut carry = std::mem::take(&mut sub.rest);
    loop {
        let read = tokio::time::timeout(Duration::from_millis(200), sub.tcp.read(&mut buf)).await;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        let n = match read {
            Err(_) => continue,
            Ok(Ok(0) | Err(_)) => break,
            Ok(Ok(n)) => n,
        };
        let now = clock.elapsed().as_nanos() as u64;
        let counting = window.load(Ordering::Relaxed);
        carry.extend_from_slice(&buf[..n]);
        let keep = scan(&carry, |stamp_ns| {
            if counting {
                let us = now.saturating_sub(stamp_ns) / 1000;
                received.latencies_us.push(us.min(u32::MAX as u64) as u32);
            }
        });
        carry.drain(..keep);
    }
    received
}

/// Calls `found` with each complete `@T<ns>;` stamp in `bytes`; returns how many leading bytes
/// are done with (everything but a stamp that may continue in the next read).
fn scan(bytes: &[u8], mut found: impl FnMut(u64)) -> usize {
    let mut i = 0;
    let mut done = bytes.len();
    while i + 1 < bytes.len() {
        if bytes[i] == b'@' && bytes[i + 1] == b'T' {
            let digits = &bytes[i + 2..];
            let len = digits.iter().take_while(|b| b.is_ascii_digit()).count();
            match digits.get(len) {
                Some(b';') => {
                    let text = std::str::from_utf8(&digits[..len]).unwrap_or("");
                    if let Ok(ns) = text.parse() {
                        found(ns);
                    }
                    i += 2 + len + 1;
                    continue;
                }
                None => {
                    done = i;
                    break;
                }
                Some(_) => {}
            }
        }
        i += 1;
    }
    if done == bytes.len() && bytes.last() == Some(&b'@') {
        done -= 1;
    }
    done
}

/// Publishes `rate` messages a second into `room` on one keep-alive connection, each at its
/// scheduled instant (open model: latency is measured from the schedule), until `stop`.
/// Returns how many were published.
pub async fn publish(
    stack: Stack,
    addr: SocketAddr,
    room: String,
    rate: f64,
    payload: usize,
    clock: Instant,
    stop: Arc<AtomicBool>,
) -> Result<u64, String> {
    let mut tcp = connect(addr, source(0, 1)).await?;
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; 8192];
    while !stop.load(Ordering::Relaxed) {
        let at = start + every * sent as u32;
        tokio::time::sleep_until(at).await;
        let scheduled = clock.elapsed() - (tokio::time::Instant::now() - at);
        let stamp = format!("@T{};", scheduled.as_nanos());
        let body = format!("{stamp}{}", "x".repeat(payload.saturating_sub(stamp.len())));
        let (path, body, kind) = match stack {
            Stack::Duplex | Stack::Baseline => (
                format!("/api/rooms/{room}/messages"),
                format!("{{\"from\":\"bench\",\"body\":\"{body}\"}}"),
                "application/json",
            ),
            Stack::Nchan => (format!("/pub/{room}"), body, "text/plain"),
        };
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: {kind}\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| format!("publish: {e}"))?;
        read_answer(&mut tcp, &mut buf).await?;
        sent += 1;
    }
    Ok(sent)
}

/// Reads one HTTP answer with a `Content-Length` body and checks it is a 2xx.
async fn read_answer(tcp: &mut TcpStream, buf: &mut [u8]) -> Result<(), String> {
    let mut got = Vec::new();
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            if !head.starts_with("http/1.1 2") {
                return Err(format!("publish answered {:?}", head.lines().next()));
            }
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .ok_or("publish answer has no content-length")?;
            if got.len() >= end + 4 + length {
                return Ok(());
            }
        }
        let n = tcp.read(buf).await.map_err(|e| format!("publish: {e}"))?;
        if n == 0 {
            return Err("publish connection closed".into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

#[cfg(test)]
mod tests {
    use super::scan;

    #[test]
    fn scan_finds_whole_stamps_and_keeps_a_split_one_for_the_next_read() {
        let mut seen = Vec::new();
        let keep = scan(b"data: {\"body\":\"@T12;xx\"}\n@T3", |ns| seen.push(ns));
        assert_eq!(seen, vec![12]);
        assert_eq!(keep, 25);
        let keep = scan(b"ab@", |ns| seen.push(ns));
        assert_eq!(keep, 2);
        let keep = scan(b"@Tx;@T45;", |ns| seen.push(ns));
        assert_eq!((seen, keep), (vec![12, 45], 9));
    }
}
