//! The delay proxy over real loopback sockets: a tiny TCP server on `127.0.0.1:0` timestamps what
//! it receives on the same monotonic clock as the client, so each direction's added delay is
//! measured on its own. Lower bounds are strict (the proxy must never deliver early); upper
//! bounds are generous, because this machine is shared and noisy.

use std::net::SocketAddr;
use std::time::Duration;

use loadgen::netem::{NetworkConditions, emulate};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};

/// Slack allowed above the configured delay for scheduling noise on a busy 2-core machine.
const SLACK: Duration = Duration::from_millis(30);
/// Slack for the single worst chunk of a stream: one late wake-up of the echo server's task on a
/// loaded machine (seen: 39 ms past the bound with the whole test suite running) must not fail a
/// bound whose point is that no chunk waits *far* beyond rtt/2 + jitter.
const TAIL_SLACK: Duration = Duration::from_millis(100);

/// Everything the echo server saw, in order, with when it saw it.
#[derive(Debug)]
enum Seen {
    Data { at: Instant, bytes: Vec<u8> },
    Eof { at: Instant },
}

/// A TCP server that records each read and echoes it back; at end of stream it closes its side.
async fn echo_server() -> (SocketAddr, mpsc::UnboundedReceiver<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (seen, events) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = socket.read(&mut buf).await.unwrap_or(0);
            let at = Instant::now();
            if n == 0 {
                let _ = seen.send(Seen::Eof { at });
                let _ = socket.shutdown().await;
                return;
            }
            let _ = seen.send(Seen::Data {
                at,
                bytes: buf[..n].to_vec(),
            });
            if socket.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    });
    (addr, events)
}

async fn next(events: &mut mpsc::UnboundedReceiver<Seen>) -> Seen {
    timeout(Duration::from_secs(5), events.recv())
        .await
        .expect("the server saw nothing within 5 s")
        .expect("the server stopped")
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::test]
async fn delay_proxy_adds_half_the_rtt_in_each_direction() {
    let conditions = NetworkConditions::new(Duration::from_millis(100), Duration::ZERO);
    let one_way = conditions.one_way_delay();
    let (addr, mut events) = echo_server().await;
    let mut client = emulate(TcpStream::connect(addr).await.unwrap(), conditions);

    let (mut ups, mut downs, mut rounds) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..5u8 {
        let sent = Instant::now();
        client.write_all(&[i]).await.unwrap();
        let Seen::Data { at: arrived, bytes } = next(&mut events).await else {
            panic!("expected data at the server");
        };
        assert_eq!(bytes, [i]);
        let mut back = [0u8; 1];
        timeout(Duration::from_secs(5), client.read_exact(&mut back))
            .await
            .expect("no echo within 5 s")
            .unwrap();
        let returned = Instant::now();
        assert_eq!(back, [i]);

        let (up, down, round) = (arrived - sent, returned - arrived, returned - sent);
        assert!(up >= one_way, "upstream {up:?} shorter than {one_way:?}");
        assert!(
            down >= one_way,
            "downstream {down:?} shorter than {one_way:?}"
        );
        assert!(
            round >= conditions.rtt,
            "round trip {round:?} shorter than the rtt"
        );
        ups.push(up);
        downs.push(down);
        rounds.push(round);
    }
    let (up, down, round) = (median(ups), median(downs), median(rounds));
    assert!(up <= one_way + SLACK, "median upstream {up:?}");
    assert!(down <= one_way + SLACK, "median downstream {down:?}");
    assert!(
        round <= conditions.rtt + SLACK,
        "median round trip {round:?}"
    );
}

#[tokio::test]
async fn jitter_keeps_each_delay_in_bounds_and_bytes_in_order() {
    let conditions = NetworkConditions::new(Duration::from_millis(20), Duration::from_millis(20));
    let (min, max) = (
        conditions.one_way_delay(),
        conditions.one_way_delay() + conditions.jitter,
    );
    let (addr, mut events) = echo_server().await;
    let client = emulate(TcpStream::connect(addr).await.unwrap(), conditions);
    let (mut reader, mut writer) = tokio::io::split(client);

    // Many small writes, spread out so that they travel as many separately jittered chunks.
    const NUMBERS: u32 = 1_000;
    let send_times = tokio::spawn(async move {
        let mut times = Vec::new();
        for n in 0..NUMBERS {
            times.push(Instant::now());
            writer.write_all(&n.to_be_bytes()).await.unwrap();
            if n % 20 == 19 {
                tokio::time::sleep(Duration::from_millis(1)).await;
            } else {
                tokio::task::yield_now().await;
            }
        }
        times
    });

    let mut echoed = vec![0u8; NUMBERS as usize * 4];
    timeout(Duration::from_secs(20), reader.read_exact(&mut echoed))
        .await
        .expect("echo did not complete within 20 s")
        .unwrap();
    let send_times = send_times.await.unwrap();

    for (i, word) in echoed.chunks_exact(4).enumerate() {
        let n = u32::from_be_bytes(word.try_into().unwrap());
        assert_eq!(n, i as u32, "byte stream reordered at number {i}");
    }

    // Upstream, chunk by chunk: a chunk's first number was written no later than it arrived
    // minus the minimum delay, and its last number no earlier than its arrival minus the maximum.
    let mut offset = 0usize;
    let mut chunks = 0;
    while offset < echoed.len() {
        let Seen::Data { at, bytes } = next(&mut events).await else {
            panic!("unexpected end of stream");
        };
        let first = offset / 4;
        let last = (offset + bytes.len() - 1) / 4;
        assert!(
            at - send_times[first] >= min,
            "number {first} arrived after {:?}, less than {min:?}",
            at - send_times[first]
        );
        // Generous: the upper bound only fails if a chunk waited far beyond rtt/2 + jitter.
        assert!(
            at.saturating_duration_since(send_times[last]) <= max + TAIL_SLACK,
            "number {last} arrived after {:?}, more than {max:?} + slack",
            at - send_times[last]
        );
        offset += bytes.len();
        chunks += 1;
    }
    assert!(
        chunks > 10,
        "only {chunks} chunks: the test did not exercise jitter"
    );
}

#[tokio::test]
async fn end_of_stream_travels_behind_the_data_in_both_directions() {
    let conditions = NetworkConditions::new(Duration::from_millis(60), Duration::ZERO);
    let one_way = conditions.one_way_delay();
    let (addr, mut events) = echo_server().await;
    let mut client = emulate(TcpStream::connect(addr).await.unwrap(), conditions);

    client.write_all(b"hello").await.unwrap();
    let closed = Instant::now();
    client.shutdown().await.unwrap();

    let Seen::Data { bytes, .. } = next(&mut events).await else {
        panic!("the end of stream overtook the data");
    };
    assert_eq!(bytes, b"hello");
    let Seen::Eof { at } = next(&mut events).await else {
        panic!("expected the end of stream");
    };
    assert!(
        at - closed >= one_way,
        "EOF arrived early: {:?}",
        at - closed
    );

    // The server closes its side at EOF; the client reads the echo, then the end.
    let mut echoed = Vec::new();
    timeout(Duration::from_secs(5), client.read_to_end(&mut echoed))
        .await
        .expect("the client never saw the end of stream")
        .unwrap();
    assert_eq!(echoed, b"hello");
    let round = closed.elapsed();
    assert!(round >= conditions.rtt, "EOF came back early: {round:?}");
}

/// The inode of a socket, which unlike its fd number is never reused while it lives.
fn socket_inode(socket: &TcpStream) -> String {
    use std::os::fd::AsRawFd;
    let link = std::fs::read_link(format!("/proc/self/fd/{}", socket.as_raw_fd())).unwrap();
    link.to_string_lossy().into_owned()
}

/// Whether this process still holds a descriptor for the socket with that inode.
fn process_holds(inode: &str) -> bool {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .any(|target| target.to_string_lossy() == inode)
}

#[tokio::test]
async fn dropping_the_client_delivers_its_data_then_closes_the_real_socket() {
    let conditions = NetworkConditions::new(Duration::from_millis(40), Duration::ZERO);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let socket = TcpStream::connect(addr).await.unwrap();
    let inode = socket_inode(&socket);
    let mut client = emulate(socket, conditions);
    // The server keeps its side open and silent: nothing from it will make the proxy notice.
    let (mut server_side, _) = listener.accept().await.unwrap();

    client.write_all(b"bye").await.unwrap();
    drop(client);

    let mut got = Vec::new();
    timeout(Duration::from_secs(5), server_side.read_to_end(&mut got))
        .await
        .expect("the server never saw the end of stream")
        .unwrap();
    assert_eq!(got, b"bye");

    // The proxy's tasks must let go of the real socket by themselves, or every dropped
    // connection would leak a descriptor until its server spoke again.
    let deadline = Instant::now() + Duration::from_secs(3);
    while process_holds(&inode) {
        assert!(
            Instant::now() < deadline,
            "the proxy kept the real socket open after the client dropped it"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn a_reset_from_the_server_reaches_the_client_as_an_error() {
    let conditions = NetworkConditions::new(Duration::from_millis(20), Duration::ZERO);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut client = emulate(TcpStream::connect(addr).await.unwrap(), conditions);
    let (server_side, _) = listener.accept().await.unwrap();
    server_side.set_zero_linger().unwrap();
    drop(server_side);

    let mut buf = [0u8; 16];
    let read = timeout(Duration::from_secs(5), client.read(&mut buf))
        .await
        .expect("the client never heard of the reset");
    let error = read.expect_err("a reset must not look like a clean end of stream");
    assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset);
}

#[tokio::test]
async fn bandwidth_cap_paces_a_bulk_transfer() {
    // 50 kB through a 100 kB/s link takes at least half a second, whatever the loopback can do.
    let conditions = NetworkConditions::IDEAL.with_bandwidth(100_000);
    let (addr, mut events) = echo_server().await;
    let mut client = emulate(TcpStream::connect(addr).await.unwrap(), conditions);

    let payload = vec![7u8; 50_000];
    let started = Instant::now();
    client.write_all(&payload).await.unwrap();
    let mut received = 0;
    let mut last = started;
    while received < payload.len() {
        let Seen::Data { at, bytes } = next(&mut events).await else {
            panic!("unexpected end of stream");
        };
        received += bytes.len();
        last = at;
    }
    let took = last - started;
    assert!(took >= Duration::from_millis(490), "too fast: {took:?}");
    assert!(took <= Duration::from_millis(1_500), "too slow: {took:?}");
}

/// CPU seconds this process has used so far (user + system), from /proc.
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the command name, which is in parentheses and may contain spaces.
    let fields: Vec<&str> = stat
        .rsplit(')')
        .next()
        .unwrap()
        .split_whitespace()
        .collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / 100.0
}

/// Fans a 256-byte message out to `clients` connections ten times a second for `seconds`, each
/// client behind the delay proxy (or not), and returns the delays beyond the configured one-way
/// delay (sorted) and the CPU seconds the whole process used.
async fn fan_out(
    clients: usize,
    seconds: u64,
    conditions: NetworkConditions,
) -> (Vec<Duration>, f64) {
    const MESSAGE: usize = 256;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let base = Instant::now();
    let accept = tokio::spawn(async move {
        let mut sockets = Vec::with_capacity(clients);
        while sockets.len() < clients {
            let (socket, _) = listener.accept().await.unwrap();
            socket.set_nodelay(true).unwrap();
            sockets.push(socket);
        }
        sockets
    });
    let mut readers = tokio::task::JoinSet::new();
    for _ in 0..clients {
        let socket = TcpStream::connect(addr).await.unwrap();
        socket.set_nodelay(true).unwrap();
        let one_way = conditions.one_way_delay();
        let mut stream: Box<dyn tokio::io::AsyncRead + Unpin + Send> = if conditions.is_ideal() {
            Box::new(socket)
        } else {
            Box::new(emulate(socket, conditions))
        };
        readers.spawn(async move {
            let mut extra = Vec::new();
            let mut message = [0u8; MESSAGE];
            while stream.read_exact(&mut message).await.is_ok() {
                let sent_ns = u64::from_be_bytes(message[..8].try_into().unwrap());
                let sent = base + Duration::from_nanos(sent_ns);
                extra.push(Instant::now().saturating_duration_since(sent + one_way));
            }
            extra
        });
    }
    let mut sockets = accept.await.unwrap();
    let cpu_before = process_cpu_seconds();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    for _ in 0..seconds * 10 {
        tick.tick().await;
        let mut message = [0u8; MESSAGE];
        let now_ns = u64::try_from((Instant::now() - base).as_nanos()).unwrap();
        message[..8].copy_from_slice(&now_ns.to_be_bytes());
        for socket in &mut sockets {
            socket.write_all(&message).await.unwrap();
        }
    }
    tokio::time::sleep(conditions.rtt + conditions.jitter + Duration::from_millis(200)).await;
    let cpu = process_cpu_seconds() - cpu_before;
    drop(sockets);
    let mut extra = Vec::new();
    while let Some(delays) = readers.join_next().await {
        extra.extend(delays.unwrap());
    }
    extra.sort();
    (extra, cpu)
}

/// A measurement, not a unit test: the same fan-out with and without the proxy, so what the
/// proxy adds beyond its configured delay shows apart from the machine's own scheduling delay.
/// Run it on a quiet machine:
/// `cargo test --release -p loadgen --test main netem_at_scale -- --ignored --nocapture`
/// (`NETEM_CLIENTS` sets the number of connections, default 1,000).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a load measurement: thousands of connections for several seconds"]
async fn netem_at_scale_adds_little_beyond_the_configured_delay() {
    let clients: usize = std::env::var("NETEM_CLIENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let seconds = 5;
    let mut baseline_p50 = None;
    for conditions in [
        NetworkConditions::IDEAL,
        NetworkConditions::new(Duration::from_millis(100), Duration::ZERO),
        NetworkConditions::new(Duration::from_millis(100), Duration::from_millis(10)),
    ] {
        let (extra, cpu) = fan_out(clients, seconds, conditions).await;
        assert_eq!(
            extra.len(),
            clients * seconds as usize * 10,
            "lost messages"
        );
        let at = |q: f64| extra[((extra.len() - 1) as f64 * q) as usize];
        println!(
            "{clients} clients x 10 msg/s, rtt {:?} jitter {:?}: beyond one-way delay p50 {:?} p99 {:?} max {:?}; process CPU {cpu:.2} s in {seconds} s",
            conditions.rtt,
            conditions.jitter,
            at(0.5),
            at(0.99),
            extra.last().unwrap()
        );
        let baseline = *baseline_p50.get_or_insert(at(0.5));
        assert!(
            at(0.5) <= baseline + conditions.jitter + SLACK,
            "median {:?} beyond the delay, against {baseline:?} without the proxy",
            at(0.5)
        );
    }
}
