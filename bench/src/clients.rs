//! The one client used for both servers: raw sockets speaking just enough HTTP and WebSocket by
//! hand, so the client's own cost is small and identical for either server.
//!
//! A delivery is found by its stamp, not by parsing either server's framing: the publisher puts
//! `@T<ns>;` (nanoseconds since the bench started, on its one monotonic clock) in every body, and
//! each subscriber scans the bytes it reads for stamps (an SSE `data:` line, a WebSocket text
//! frame and a long poll's body all carry the body unchanged). A stamp split across two reads is
//! carried over to the next one.

use std::io::{ErrorKind, Read};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mio::net::TcpStream as MioStream;
use mio::{Events, Interest, Poll, Token};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::cpu;

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

/// What a set of subscribers read while `window` was open: each stamp's latency (µs) and the
/// CPU the threads reading them spent.
#[derive(Default)]
pub struct Received {
    pub latencies_us: Vec<u32>,
    pub cpu_ns: u64,
}

/// The figures a fan-out run reports from what its client received.
pub struct Delivered {
    pub deliveries: usize,
    /// The 99th percentile of delivery latency, seconds.
    pub p99_s: f64,
    /// The client threads' CPU seconds per delivery.
    pub client_cpu_s: f64,
}

impl Received {
    /// Its count, p99 and CPU per delivery; `None` when nothing was received.
    pub fn delivered(mut self) -> Option<Delivered> {
        let n = self.latencies_us.len();
        if n == 0 {
            return None;
        }
        self.latencies_us.sort_unstable();
        let p99 = self.latencies_us[(n * 99 / 100).min(n - 1)];
        Some(Delivered {
            deliveries: n,
            p99_s: f64::from(p99) / 1e6,
            client_cpu_s: self.cpu_ns as f64 / 1e9 / n as f64,
        })
    }
}

/// The client's threads reading, from [`follow`].
pub struct Following(std::thread::JoinHandle<Result<Received, String>>);

impl Following {
    /// Waits for the threads (they end once `stop` is set) and what they received.
    pub fn join(self) -> Result<Received, String> {
        self.0
            .join()
            .map_err(|_| "the client panicked".to_string())?
    }
}

/// Reads `subscribers` (each socket with the bytes already read past its answer's head) on as
/// many threads as there are cores, each waiting on its share with epoll (mio) and reading each
/// socket once per readiness, until `stop`. Threads, not tasks on the runtime: the client's cost
/// per delivery is a `read` and a scan, with no timer or task wake-up of its own, so it weighs as
/// little as it can in either server's latency, and is the same for both.
pub fn follow(
    subscribers: Vec<(std::net::TcpStream, Vec<u8>)>,
    clock: Instant,
    window: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
) -> Following {
    Following(std::thread::spawn(move || {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let per = subscribers.len().div_ceil(cores).max(1);
        let mut threads = Vec::new();
        let mut subscribers = subscribers.into_iter().peekable();
        while subscribers.peek().is_some() {
            let mine: Vec<_> = subscribers.by_ref().take(per).collect();
            let (window, stop) = (window.clone(), stop.clone());
            threads.push(std::thread::spawn(move || {
                follow_some(mine, clock, &window, &stop)
            }));
        }
        let mut all = Received::default();
        for t in threads {
            let got = t.join().map_err(|_| "a client thread panicked")??;
            all.latencies_us.extend(got.latencies_us);
            all.cpu_ns += got.cpu_ns;
        }
        Ok(all)
    }))
}

/// One client thread: a read per readiness (a second only when the first filled the buffer: a
/// shorter read emptied the socket, so more data is a new edge), stamps recorded while `window`
/// is open. A socket the server closed or reset is read no more.
fn follow_some(
    subscribers: Vec<(std::net::TcpStream, Vec<u8>)>,
    clock: Instant,
    window: &AtomicBool,
    stop: &AtomicBool,
) -> Result<Received, String> {
    let mut poll = Poll::new().map_err(|e| format!("epoll: {e}"))?;
    let mut streams = Vec::with_capacity(subscribers.len());
    for (i, (socket, rest)) in subscribers.into_iter().enumerate() {
        socket.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut stream = MioStream::from_std(socket);
        poll.registry()
            .register(&mut stream, Token(i), Interest::READABLE)
            .map_err(|e| format!("epoll: {e}"))?;
        streams.push((stream, rest));
    }
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 16 * 1024];
    let mut meter = cpu::Meter::default();
    let mut received = Received::default();
    while !stop.load(Ordering::Relaxed) {
        let counting = meter.counting(window)?;
        match poll.poll(&mut events, Some(Duration::from_millis(50))) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("epoll: {e}")),
        }
        for event in &events {
            let (stream, carry) = &mut streams[event.token().0];
            loop {
                let n = match stream.read(&mut buf) {
                    Ok(n) if n > 0 => n,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    // Closed or reset: no more edges come from it.
                    _ => break,
                };
                let now = clock.elapsed().as_nanos() as u64;
                carry.extend_from_slice(&buf[..n]);
                let keep = scan(carry, |stamp_ns| {
                    if counting {
                        let us = now.saturating_sub(stamp_ns) / 1000;
                        received
                            .latencies_us
                            .push(us.min(u64::from(u32::MAX)) as u32);
                    }
                });
                carry.drain(..keep);
                if n < buf.len() {
                    break;
                }
            }
        }
    }
    meter.stop()?;
    received.cpu_ns = meter.ns;
    Ok(received)
}

/// Calls `found` with each complete `@T<ns>;` stamp in `bytes`; returns how many leading bytes
/// are done with (everything but a stamp that may continue in the next read).
pub fn scan(bytes: &[u8], mut found: impl FnMut(u64)) -> usize {
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
