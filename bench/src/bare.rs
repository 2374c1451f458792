//! The same fan-out over bare sockets: what this machine's kernel charges for one delivery when
//! no server code stands around it, measured in the same run as the servers so the three can be
//! set side by side. A goal below these figures is a goal for the kernel, not for a server.
//!
//! The bench opens `subscribers` loopback TCP connections to itself. Writer threads, one per core
//! (as duplex's fan-out has one shard per core), write each stamped message to their share of the
//! connections with one `write(2)` each, and the bench's own client ([`clients::follow`], the one
//! both servers are measured with) reads them. So:
//!
//! - the writers' CPU per write is the least any server pays for one delivery here: on loopback
//!   the receiver's TCP input and its wake-up run inside the sender's `write`, and they are most of
//!   it (ARCHITECTURE.md, "What a delivery costs");
//! - the client's CPU per delivery is what the bench's client costs when the server costs the
//!   least, and what any client (the loadgen too) pays at least for receiving one: the `read`,
//!   the ACK it sends, epoll;
//! - the p99 is a server that does nothing but write, with this client on the same cores: the
//!   least either server's p99 could be.

use std::io::Write;
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Socket, Type};

use crate::clients::{self, source};
use crate::cpu::Meter;

/// What was asked: the fan-out run's own shape.
pub struct Shape {
    pub subscribers: usize,
    pub rate: f64,
    pub payload: usize,
    pub window: Duration,
    pub sources: u8,
}

/// The bare sockets' figures for one run.
pub struct Bare {
    /// Writer CPU seconds per write (one delivery).
    pub write_s: f64,
    /// Client CPU seconds per delivery received.
    pub read_s: f64,
    /// p99 delivery latency, seconds.
    pub p99_s: f64,
    /// Deliveries the client counted in the window.
    pub deliveries: usize,
    /// How many writer threads shared the connections.
    pub writers: usize,
}

/// The warm-up before the window opens, as in the servers' fan-out runs.
const WARM_UP: Duration = Duration::from_secs(2);

/// Runs the bare fan-out for `shape` on plain threads (it blocks: call it from `spawn_blocking`).
pub fn measure(shape: &Shape) -> Result<Bare, String> {
    if shape.subscribers == 0 {
        return Err("bare sockets: no subscribers".into());
    }
    let (senders, receivers) = connect(shape)?;
    let clock = Instant::now();
    let window = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let client = clients::follow(
        receivers.into_iter().map(|s| (s, Vec::new())).collect(),
        clock,
        window.clone(),
        stop.clone(),
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let per = senders.len().div_ceil(cores);
    let mut senders = senders.into_iter().peekable();
    let mut writers = Vec::new();
    while senders.peek().is_some() {
        let mine: Vec<TcpStream> = senders.by_ref().take(per).collect();
        let (window, stop) = (window.clone(), stop.clone());
        let (rate, payload) = (shape.rate, shape.payload);
        writers.push(std::thread::spawn(move || {
            write_all(mine, rate, payload, clock, &window, &stop)
        }));
    }
    std::thread::sleep(WARM_UP);
    window.store(true, Ordering::Relaxed);
    std::thread::sleep(shape.window);
    window.store(false, Ordering::Relaxed);
    // The last message of the window is read before the client stops.
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    let threads = writers.len();
    let (mut write_ns, mut writes) = (0u64, 0u64);
    for t in writers {
        let (ns, count) = t.join().map_err(|_| "a bare-socket writer panicked")??;
        write_ns += ns;
        writes += count;
    }
    let received = client.join()?;
    let got = received.latencies_us.len();
    let delivered = match received.delivered() {
        Some(d) if writes > 0 => d,
        _ => {
            return Err(format!(
                "bare sockets: nothing delivered ({writes} writes, {got} read)"
            ));
        }
    };
    Ok(Bare {
        write_s: write_ns as f64 / 1e9 / writes as f64,
        read_s: delivered.client_cpu_s,
        p99_s: delivered.p99_s,
        deliveries: delivered.deliveries,
        writers: threads,
    })
}

/// `subscribers` connected pairs: the accepted ends (written) and the connecting ends (read),
/// each connecting end bound to one of the `sources` addresses like the real clients.
fn connect(shape: &Shape) -> Result<(Vec<TcpStream>, Vec<TcpStream>), String> {
    let listener =
        TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bare sockets: bind: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let (mut senders, mut receivers) = (Vec::new(), Vec::new());
    for n in 0..shape.subscribers {
        let from: IpAddr = source(n, shape.sources);
        let socket = Socket::new(Domain::IPV4, Type::STREAM, None).map_err(|e| e.to_string())?;
        socket
            .bind(&SocketAddr::new(from, 0).into())
            .map_err(|e| format!("bare sockets: bind {from}: {e}"))?;
        socket
            .connect(&addr.into())
            .map_err(|e| format!("bare sockets: connect {addr}: {e}"))?;
        let (accepted, _) = listener.accept().map_err(|e| e.to_string())?;
        let connecting: TcpStream = socket.into();
        for s in [&accepted, &connecting] {
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
        }
        senders.push(accepted);
        receivers.push(connecting);
    }
    Ok((senders, receivers))
}

/// One writer: every `1/rate` s, one stamped `payload`-byte message to each of `sockets`, one
/// write each; returns its CPU nanoseconds and writes while the window was open. A write that
/// does not take the whole message fails the run (finishing it later would need the buffering a
/// real server has, which is not what is measured here).
fn write_all(
    mut sockets: Vec<TcpStream>,
    rate: f64,
    payload: usize,
    clock: Instant,
    window: &AtomicBool,
    stop: &AtomicBool,
) -> Result<(u64, u64), String> {
    let every = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let mut meter = Meter::default();
    let mut count = 0;
    let mut message = Vec::with_capacity(payload.max(32));
    for round in 0u32.. {
        let at = start + every * round;
        if let Some(wait) = at.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        let counting = meter.counting(window)?;
        if stop.load(Ordering::Relaxed) {
            break;
        }
        // Stamped with the scheduled instant, as the real publisher does.
        message.clear();
        write!(message, "@T{};", (at - clock).as_nanos()).map_err(|e| e.to_string())?;
        message.resize(payload.max(message.len()), b'x');
        for socket in &mut sockets {
            match socket.write(&message) {
                Ok(n) if n == message.len() => {}
                Ok(n) => {
                    return Err(format!(
                        "bare sockets: a write took {n} of {}",
                        message.len()
                    ));
                }
                Err(e) => return Err(format!("bare sockets: write: {e}")),
            }
        }
        if counting {
            count += sockets.len() as u64;
        }
    }
    meter.stop()?;
    Ok((meter.ns, count))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_subscriber_gets_every_message_of_the_window_and_each_side_is_metered() {
        let shape = Shape {
            subscribers: 16,
            rate: 50.0,
            payload: 100,
            window: Duration::from_secs(1),
            sources: 2,
        };
        let bare = measure(&shape).expect("the bare fan-out runs");
        // 16 subscribers x 50 msg/s x 1 s, give or take the message at each edge of the window.
        let expected = 16.0 * 50.0;
        let got = bare.deliveries as f64;
        assert!(
            (expected * 0.9..=expected * 1.1).contains(&got),
            "{got} deliveries, expected about {expected}"
        );
        assert!(
            bare.write_s > 0.0 && bare.read_s > 0.0,
            "both sides metered"
        );
        assert!(bare.p99_s < 0.5, "p99 {} s on an idle loopback", bare.p99_s);
    }
}
