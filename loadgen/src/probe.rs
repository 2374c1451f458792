//! Watching the server and the loadgen itself while a run goes on.
//!
//! - The server: when duplex started it as a child, its CPU seconds and resident memory come
//!   from `/proc/<pid>` (sampled every 250 ms for the peak); for any server, `/metrics` is
//!   scraped every second for `duplex_open_connections` and `duplex_tcp_connections` (and, for a
//!   `--target` server, for `process_cpu_seconds_total` / `process_resident_memory_bytes`). A child that exits, or a
//!   server whose `/metrics` stops answering for a few seconds in a row, cancels the run with a
//!   reason, so a dead server ends the run within seconds instead of hanging it.
//! - The loadgen: its own CPU seconds from `/proc/self`, and timer lag: a task that asks to wake
//!   every 10 ms and records how late it woke. A late timer means the loadgen (not the server)
//!   was too busy, and its latencies include its own delay.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use report::LatencyHistogram;
use tokio::net::TcpStream;
use tokio::task::JoinSet;
use tokio::time::{Instant, MissedTickBehavior, interval, sleep_until};
use tokio_util::sync::CancellationToken;

/// Consecutive failed scrapes (one a second) after which the server counts as gone.
const SCRAPES_BEFORE_GIVING_UP: u32 = 3;
/// Timer-lag p99 above which the loadgen counts as saturated, ms.
pub const SATURATED_LAG_MS: f64 = 20.0;

/// What a server reading says at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ServerReading {
    /// CPU seconds used so far.
    pub cpu_s: f64,
    /// Resident memory now, bytes.
    pub rss_bytes: u64,
}

/// The probe's shared state; a handle is cheap to clone.
#[derive(Debug)]
pub struct Probe {
    child_pid: Option<i32>,
    server: SocketAddr,
    authority: String,
    rss_peak: AtomicU64,
    /// The loadgen's own peak RSS since [`Probe::reset_peaks`].
    self_rss_peak: AtomicU64,
    open_connections_peak: AtomicU64,
    tcp_connections_peak: AtomicU64,
    /// The last /metrics reading (CPU, RSS) for servers that are not our child.
    last_metrics: Mutex<Option<ServerReading>>,
    /// The last /proc reading of a child server.
    last_reading: Mutex<Option<ServerReading>>,
    lag: Mutex<LatencyHistogram>,
    failure: Mutex<Option<String>>,
    /// Cancelled when the server is gone (the run's abort token).
    abort: CancellationToken,
    /// Whether the server has duplex's `/metrics` (other stacks do not; a peer's liveness and
    /// cost come from /proc alone).
    has_metrics: bool,
}

impl Probe {
    /// A probe for the server at `server` (`child_pid` when duplex started it); `abort` is
    /// cancelled when the server fails.
    pub fn new(server: SocketAddr, child_pid: Option<u32>, abort: CancellationToken) -> Arc<Self> {
        Probe::with_metrics(server, child_pid, abort, true)
    }

    /// Like [`Probe::new`], for a server that may have no `/metrics` (`has_metrics` false:
    /// it is never scraped).
    pub fn with_metrics(
        server: SocketAddr,
        child_pid: Option<u32>,
        abort: CancellationToken,
        has_metrics: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            has_metrics,
            child_pid: child_pid.map(|p| p as i32),
            server,
            authority: server.to_string(),
            rss_peak: AtomicU64::new(0),
            self_rss_peak: AtomicU64::new(0),
            open_connections_peak: AtomicU64::new(0),
            tcp_connections_peak: AtomicU64::new(0),
            last_metrics: Mutex::new(None),
            last_reading: Mutex::new(None),
            lag: Mutex::new(LatencyHistogram::new()),
            failure: Mutex::new(None),
            abort,
        })
    }

    /// Starts the sampling tasks into `tasks`; they end when `stop` is cancelled.
    pub fn start(self: &Arc<Self>, tasks: &mut JoinSet<()>, stop: CancellationToken) {
        let me = Arc::clone(self);
        let s = stop.clone();
        tasks.spawn(async move { me.sample_proc(s).await });
        let me = Arc::clone(self);
        let s = stop.clone();
        tasks.spawn(async move { me.scrape_metrics(s).await });
        let me = Arc::clone(self);
        tasks.spawn(async move { me.measure_lag(stop).await });
    }

    /// Why the server was declared gone, if it was.
    pub fn failure(&self) -> Option<String> {
        self.failure
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn fail(&self, why: String) {
        let mut f = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        if f.is_none() {
            tracing::error!(reason = %why, "server gone");
            *f = Some(why);
        }
        self.abort.cancel();
    }

    /// Whether the server is our child (CPU and RSS from /proc).
    pub fn server_is_child(&self) -> bool {
        self.child_pid.is_some()
    }

    /// The server's CPU and RSS now: from /proc for a child (its last reading once it has
    /// exited, so a phase cut short by its death still shows what it spent), else from the last
    /// /metrics scrape.
    pub fn server_reading(&self) -> Option<ServerReading> {
        let mut last = self.last_reading.lock().unwrap_or_else(|e| e.into_inner());
        match self.child_pid {
            Some(pid) => {
                if let Some(r) = tree_reading(pid) {
                    *last = Some(r);
                }
                *last
            }
            None => *self.last_metrics.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Like [`Probe::server_reading`], but a server that is not our child is scraped right
    /// now, so a window's CPU is not off by up to a second of scrape age.
    pub async fn server_reading_now(&self) -> Option<ServerReading> {
        if self.child_pid.is_some() || !self.has_metrics {
            return self.server_reading();
        }
        let scraped = http_get(
            self.server,
            &self.authority,
            "/metrics",
            Duration::from_secs(2),
        )
        .await;
        let m = match scraped {
            Ok((200, text)) => parse_metrics(&text),
            _ => return self.server_reading(),
        };
        let (Some(cpu_s), Some(rss_bytes)) = (m.cpu_s, m.rss_bytes) else {
            return self.server_reading();
        };
        let r = ServerReading { cpu_s, rss_bytes };
        *self.last_metrics.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
        Some(r)
    }

    /// Starts a new peak window for RSS, open connections and streams, and timer lag.
    pub fn reset_peaks(&self) {
        let rss = self.server_reading().map_or(0, |r| r.rss_bytes);
        self.rss_peak.store(rss, Relaxed);
        self.self_rss_peak.store(self_rss_bytes(), Relaxed);
        self.open_connections_peak.store(0, Relaxed);
        self.tcp_connections_peak.store(0, Relaxed);
        self.lag.lock().unwrap_or_else(|e| e.into_inner()).0.reset();
    }

    /// Peak RSS since [`Probe::reset_peaks`].
    pub fn rss_peak(&self) -> u64 {
        let now = self.server_reading().map_or(0, |r| r.rss_bytes);
        self.rss_peak.fetch_max(now, Relaxed).max(now)
    }

    /// The loadgen's own peak RSS since [`Probe::reset_peaks`].
    pub fn self_rss_peak(&self) -> u64 {
        let now = self_rss_bytes();
        self.self_rss_peak.fetch_max(now, Relaxed).max(now)
    }

    /// Peak `duplex_open_connections` since [`Probe::reset_peaks`].
    pub fn open_connections_peak(&self) -> u64 {
        self.open_connections_peak.load(Relaxed)
    }

    /// Peak `duplex_tcp_connections` since [`Probe::reset_peaks`], not counting the probe's
    /// own scrape.
    pub fn tcp_connections_peak(&self) -> u64 {
        self.tcp_connections_peak.load(Relaxed)
    }

    /// Timer lag since [`Probe::reset_peaks`]: (p99, max) in ms.
    pub fn lag_ms(&self) -> (f64, f64) {
        let h = self.lag.lock().unwrap_or_else(|e| e.into_inner());
        (
            h.quantile_ms(0.99).unwrap_or(0.0),
            h.quantile_ms(1.0).unwrap_or(0.0),
        )
    }

    /// Every 250 ms: the loadgen's own RSS (what its simulated clients hold) for its peak, and
    /// the child server's process tree when there is one; the child gone is the run's failure,
    /// after which only the loadgen's own memory is sampled.
    async fn sample_proc(&self, stop: CancellationToken) {
        let mut child = self.child_pid;
        let mut ticks = interval(Duration::from_millis(250));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            self.self_rss_peak.fetch_max(self_rss_bytes(), Relaxed);
            let Some(pid) = child else { continue };
            match tree_reading(pid) {
                Some(r) => {
                    *self.last_reading.lock().unwrap_or_else(|e| e.into_inner()) = Some(r);
                    self.rss_peak.fetch_max(r.rss_bytes, Relaxed);
                }
                None => {
                    self.fail(format!("the server (child pid {pid}) exited"));
                    child = None;
                }
            }
        }
    }

    async fn scrape_metrics(&self, stop: CancellationToken) {
        if !self.has_metrics {
            return;
        }
        let mut ticks = interval(Duration::from_secs(1));
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        let mut failures = 0;
        loop {
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = ticks.tick() => {}
            }
            match http_get(
                self.server,
                &self.authority,
                "/metrics",
                Duration::from_secs(2),
            )
            .await
            {
                Ok((200, text)) => {
                    failures = 0;
                    let m = parse_metrics(&text);
                    self.open_connections_peak
                        .fetch_max(m.open_connections, Relaxed);
                    // Less this scrape's own connection, which the server counts too.
                    self.tcp_connections_peak
                        .fetch_max(m.tcp_connections.saturating_sub(1), Relaxed);
                    if let (Some(cpu_s), Some(rss_bytes)) = (m.cpu_s, m.rss_bytes) {
                        *self.last_metrics.lock().unwrap_or_else(|e| e.into_inner()) =
                            Some(ServerReading { cpu_s, rss_bytes });
                        if self.child_pid.is_none() {
                            self.rss_peak.fetch_max(rss_bytes, Relaxed);
                        }
                    }
                }
                other => {
                    // A child that answers late is busy, not gone: its exit is seen from /proc
                    // (`sample_proc`), and 19,000 pollers (or the loadgen's own saturated
                    // runtime, whose timer lag marks the phase) can hold a scrape past its limit
                    // for seconds. Only a refusal or an error counts towards giving up on it.
                    let late = matches!(&other, Err(why) if why.starts_with(NO_ANSWER));
                    if !(late && self.child_pid.is_some()) {
                        failures += 1;
                    }
                    tracing::warn!(?other, failures, "scraping /metrics failed");
                    if failures >= SCRAPES_BEFORE_GIVING_UP {
                        let why = match other {
                            Ok((status, _)) => format!("status {status}"),
                            Err(e) => e,
                        };
                        self.fail(format!(
                            "the server at http://{} stopped answering ({why})",
                            self.server
                        ));
                        return;
                    }
                }
            }
        }
    }

    async fn measure_lag(&self, stop: CancellationToken) {
        const PERIOD: Duration = Duration::from_millis(10);
        loop {
            let due = Instant::now() + PERIOD;
            tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                _ = sleep_until(due) => {}
            }
            let late = Instant::now().saturating_duration_since(due);
            self.lag
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .record_us(late.as_micros() as u64);
        }
    }
}

/// CPU seconds and RSS of process `pid`; `None` when it is gone (or a zombie).
pub fn proc_reading(pid: i32) -> Option<ServerReading> {
    let stat = procfs::process::Process::new(pid).ok()?.stat().ok()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    let ticks = procfs::ticks_per_second() as f64;
    Some(ServerReading {
        cpu_s: (stat.utime + stat.stime) as f64 / ticks,
        rss_bytes: stat.rss * procfs::page_size(),
    })
}

/// CPU seconds and RSS of process `root` and every process below it (a peer's start script
/// may leave workers: nginx's master and its worker are measured together), counting the CPU of
/// descendants that already exited and were reaped; `None` when `root` is gone.
///
/// Summing RSS counts memory shared between the processes (nginx's shared message store, the
/// code pages) once per process that touched it, as `ps` would; for one process (duplex's own
/// child, node) it is exactly [`proc_reading`] plus reaped children's CPU.
pub fn tree_reading(root: i32) -> Option<ServerReading> {
    let stat = procfs::process::Process::new(root).ok()?.stat().ok()?;
    if stat.state == 'Z' || stat.state == 'X' {
        return None;
    }
    let mut tree = vec![stat];
    // One pass over /proc for parent links, then a walk down from the root.
    let all: Vec<procfs::process::Stat> = procfs::process::all_processes()
        .map(|ps| ps.filter_map(|p| p.ok()?.stat().ok()).collect())
        .unwrap_or_default();
    let mut i = 0;
    while i < tree.len() {
        let parent = tree[i].pid;
        tree.extend(
            all.iter()
                .filter(|s| s.ppid == parent && s.pid != root)
                .cloned(),
        );
        i += 1;
    }
    let ticks = procfs::ticks_per_second() as f64;
    let page = procfs::page_size();
    let live = tree.iter().filter(|s| s.state != 'Z' && s.state != 'X');
    Some(live.fold(ServerReading::default(), |r, s| ServerReading {
        cpu_s: r.cpu_s
            + (s.utime + s.stime) as f64 / ticks
            + (s.cutime + s.cstime).max(0) as f64 / ticks,
        rss_bytes: r.rss_bytes + s.rss * page,
    }))
}

/// The loadgen's own CPU seconds so far.
pub fn self_cpu_s() -> f64 {
    proc_reading(std::process::id() as i32).map_or(0.0, |r| r.cpu_s)
}

/// The loadgen's own resident set size now, bytes (0 when /proc cannot be read).
pub fn self_rss_bytes() -> u64 {
    proc_reading(std::process::id() as i32).map_or(0, |r| r.rss_bytes)
}

/// What the probe reads from Prometheus text.
#[derive(Debug, Default, PartialEq)]
pub struct MetricsReading {
    /// Sum of `duplex_open_connections` over transports: streams and sockets held open, and
    /// poll requests in flight.
    pub open_connections: u64,
    /// `duplex_tcp_connections`: TCP connections open, every endpoint (the probe's own scrape
    /// connection included).
    pub tcp_connections: u64,
    /// `process_cpu_seconds_total`.
    pub cpu_s: Option<f64>,
    /// `process_resident_memory_bytes`.
    pub rss_bytes: Option<u64>,
}

/// Reads the few series the probe needs from Prometheus text exposition.
pub fn parse_metrics(text: &str) -> MetricsReading {
    let mut m = MetricsReading::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.trim().parse::<f64>() else {
            continue;
        };
        let bare = name.split('{').next().unwrap_or(name).trim();
        match bare {
            "duplex_open_connections" => m.open_connections += value.max(0.0) as u64,
            "duplex_tcp_connections" => m.tcp_connections = value.max(0.0) as u64,
            "process_cpu_seconds_total" => m.cpu_s = Some(value),
            "process_resident_memory_bytes" => m.rss_bytes = Some(value as u64),
            _ => {}
        }
    }
    m
}

/// A one-off `GET` on a fresh connection (not counted as client traffic): (status, body).
pub async fn http_get(
    server: SocketAddr,
    authority: &str,
    path: &str,
    limit: Duration,
) -> Result<(u16, String), String> {
    let work = async {
        let stream = TcpStream::connect(server)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("handshake: {e}"))?;
        let driver = tokio::spawn(async move {
            let _ = conn.await;
        });
        let request = Request::get(path)
            .header(hyper::header::HOST, authority)
            .body(Empty::<Bytes>::new())
            .map_err(|e| e.to_string())?;
        let result = async {
            let response = send
                .send_request(request)
                .await
                .map_err(|e| format!("request: {e}"))?;
            let status = response.status().as_u16();
            let body = response
                .into_body()
                .collect()
                .await
                .map_err(|e| format!("body: {e}"))?
                .to_bytes();
            Ok((status, String::from_utf8_lossy(&body).into_owned()))
        }
        .await;
        driver.abort();
        result
    };
    tokio::time::timeout(limit, work)
        .await
        .map_err(|_| format!("{NO_ANSWER} {limit:?}"))?
}

/// How [`http_get`]'s error for an answer that did not come in time begins.
const NO_ANSWER: &str = "no answer within";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tree_reading_counts_the_children_a_script_started() {
        // A shell that starts a busy child and waits: the shell itself spends nothing.
        let mut shell = std::process::Command::new("sh")
            .args(["-c", "timeout 3 sh -c 'while :; do :; done' & wait"])
            .spawn()
            .unwrap();
        let pid = shell.id() as i32;
        // The child's CPU shows once it has run a little; on a loaded machine that may take a
        // while, so wait for it (bounded by the child's own 2 s) instead of a fixed sleep.
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        let (alone, tree) = loop {
            std::thread::sleep(Duration::from_millis(50));
            let alone = proc_reading(pid).unwrap();
            let tree = tree_reading(pid).unwrap();
            if tree.cpu_s >= alone.cpu_s + 0.05 || std::time::Instant::now() > deadline {
                break (alone, tree);
            }
        };
        // The busy child ends itself (timeout), then the shell.
        shell.wait().unwrap();
        assert!(tree.cpu_s >= alone.cpu_s + 0.05, "{tree:?} vs {alone:?}");
        assert!(tree.rss_bytes > alone.rss_bytes);
        assert_eq!(tree_reading(pid), None, "a reaped root is gone");
    }

    #[test]
    fn reads_connections_cpu_and_memory_from_prometheus_text() {
        let text = "# HELP x\nduplex_open_connections{transport=\"sse\"} 3\n\
                    duplex_open_connections{transport=\"websocket\"} 4\n\
                    duplex_tcp_connections 12\n\
                    process_cpu_seconds_total 1.5\nprocess_resident_memory_bytes 1048576\n";
        let m = parse_metrics(text);
        assert_eq!(m.open_connections, 7);
        assert_eq!(m.tcp_connections, 12);
        assert_eq!(m.cpu_s, Some(1.5));
        assert_eq!(m.rss_bytes, Some(1_048_576));
    }
}
