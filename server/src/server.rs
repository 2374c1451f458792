//! Accepting and serving connections, mini-redis style: [`bind`] makes the listener (with a
//! backlog that holds a burst of thousands of connects), [`run`]/[`serve`] take an already-bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and own the lifetime; [`spawn`]
//! does both for tests and embedding.
//!
//! The accept loop is ours rather than `axum::serve` because three things happen per socket
//! before HTTP: the `--max-connections` check (past it the connection gets one `503` and is
//! closed), the byte meter, and the connection slot that an upgraded WebSocket carries along.
//! And one after: hyper reads the socket through a `held::Handoff`, from which an SSE stream or
//! a waiting long poll takes it to be served off hyper (a long poll hands it back).
//!
//! Shutdown: cancelling [`AppState::shutdown`] stops the accept loop, ends SSE streams, answers
//! long polls, closes WebSockets with a reason and asks hyper to finish keep-alive connections;
//! after [`SHUTDOWN_DEADLINE`] whatever is left is dropped.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::Config;
use crate::conn::{AddressSlot, Addresses, ConnMeter, Peer, SocketTally};
use crate::error::ApiError;
use crate::guard::Guarded;
use crate::held::{self, Handoff, HandoffIo, Holder, Release, Resume, Socket};
use crate::metrics::{Endpoint, Metrics, TcpSlot};
use crate::state::AppState;
use wire::metered::Metered;

/// Pending connects the kernel may queue (tokio's default is 128; a load test opening thousands
/// of clients at once overflows that and sees SYN retries of a second or more). Linux caps it at
/// `net.core.somaxconn`.
pub const BACKLOG: u32 = 8192;
/// After shutdown starts, connections still open after this long are dropped.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_millis(1500);
/// The longest wait between two passes that expire idle rooms.
const ROOM_SWEEP: Duration = Duration::from_secs(60);
/// A refused (503) connection is closed this long after it was accepted, at the latest.
const REFUSE_TIMEOUT: Duration = Duration::from_millis(400);
/// Refusals answered at once; beyond this many in flight a refused socket is just closed.
const REFUSING_AT_ONCE: usize = 256;
/// Descriptors kept free below the open-file limit when `--max-connections` is derived from it:
/// for refusals, log files, the listener, and tokio's own.
pub const DESCRIPTOR_RESERVE: u64 = 512;

/// Binds a listener on `addr` with a [`BACKLOG`]-deep accept queue. Call inside a tokio runtime.
pub fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    // A restarted server can take its port back while old connections sit in TIME_WAIT.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}

/// Serves the feed on `listener` with fresh state until `shutdown` completes, after
/// [`raise_descriptor_limit`].
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = AppState::open(raise_descriptor_limit(config)).map_err(io::Error::other)?;
    serve(listener, state, shutdown).await
}

/// [`run`] with state already made (`duplex serve` connects to its backplane before it
/// announces its address); make that state from a config passed through
/// [`raise_descriptor_limit`].
pub async fn run_state(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    serve(listener, state, shutdown).await
}

/// Raises this process's soft open-file limit to its hard limit (often 1024 -> far more), since
/// every client holds a descriptor, and, when `max_connections` is not set, sets it to that limit
/// less [`DESCRIPTOR_RESERVE`], so accepting never fails for want of a descriptor.
pub fn raise_descriptor_limit(mut config: Config) -> Config {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => {
            tracing::debug!(limit, "open-file limit");
            if config.max_connections.is_none() {
                let max = limit.saturating_sub(DESCRIPTOR_RESERVE).max(16);
                config.max_connections = Some(usize::try_from(max).unwrap_or(usize::MAX));
            }
        }
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    config
}

/// Serves `state` on `listener` until `shutdown` completes or `state.shutdown` is cancelled,
/// then closes every connection within [`SHUTDOWN_DEADLINE`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = crate::app(state.clone());
    // The dashboard shows where students join, which follows from the listening address.
    if let Ok(at) = listener.local_addr() {
        state.live.set_listening(at);
    }
    let cancel = state.shutdown.clone();
    let mut connections = JoinSet::new();
    let addresses = Arc::new(Addresses::default());
    // Refusals being answered now; past REFUSING_AT_ONCE a refused socket is closed unanswered,
    // so a flood of connects cannot turn the refusals themselves into held descriptors.
    let refusing = Arc::new(AtomicUsize::new(0));
    tokio::pin!(shutdown);
    // Idle rooms also expire when the table is full; this pass gives their memory back sooner.
    let sweep_every = (state.config.room_idle / 2).clamp(Duration::from_millis(50), ROOM_SWEEP);
    let mut sweep = tokio::time::interval(sweep_every);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let accepted = tokio::select! {
            biased;
            _ = &mut shutdown => break,
            _ = cancel.cancelled() => break,
            _ = sweep.tick() => {
                let expired = state.feed.expire_idle();
                if expired > 0 {
                    tracing::debug!(expired, "idle rooms expired");
                }
                continue;
            }
            // A finished connection's task is freed as it ends, not at the next accept: a held
            // response's hyper connection ends right after its head, and a quiet listener would
            // keep every such task's memory until someone connects.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(e) => {
                // Typically EMFILE: out of file descriptors. Back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    _ = tokio::time::sleep(Duration::from_millis(50)) => continue,
                }
            }
        };
        // Chat frames are small and latency is what is measured: no Nagle delay.
        let _ = tcp.set_nodelay(true);
        let over_limit = state
            .config
            .max_connections
            .is_some_and(|max| state.metrics.tcp_open() >= max);
        if over_limit {
            let limit = state.config.max_connections.unwrap_or_default();
            refuse_soon(
                &mut connections,
                &refusing,
                tcp,
                &state,
                ApiError::TooManyConnections { limit },
            );
            continue;
        }
        // Off this machine, one address gets a share; loopback is exempt (the loadgen's
        // thousands of clients come from 127.0.0.x) unless the config says otherwise.
        let per_address = state.config.max_connections_per_address;
        let address = if peer.ip().is_loopback() && !state.config.limit_loopback {
            None
        } else {
            match addresses.take(peer.ip(), per_address) {
                Some(slot) => Some(slot),
                None => {
                    let error = ApiError::TooManyFromAddress { limit: per_address };
                    refuse_soon(&mut connections, &refusing, tcp, &state, error);
                    continue;
                }
            }
        };
        // The slot is taken here, not in the task, so the next accept sees it.
        let slot = state.metrics.tcp_slot();
        connections.spawn(serve_connection(
            tcp,
            Peer(peer),
            (slot, address),
            router.clone(),
            state.clone(),
        ));
    }
    cancel.cancel();
    drop(listener);
    let metrics = state.metrics.clone();
    let drained = tokio::time::timeout(SHUTDOWN_DEADLINE, async {
        while connections.join_next().await.is_some() {}
        // Upgraded WebSockets run in their own tasks; their sockets hold the slots.
        while metrics.tcp_open() > 0 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            open = metrics.tcp_open(),
            "shutdown deadline passed; dropping the remaining connections"
        );
    }
    connections.abort_all();
    Ok(())
}

async fn serve_connection(
    tcp: TcpStream,
    peer: Peer,
    (slot, address): (TcpSlot, Option<AddressSlot>),
    router: Router,
    state: AppState,
) {
    let meter = Arc::new(ConnMeter::new(state.metrics.clone()));
    let metered = Metered::new(tcp, SocketTally::new(meter.clone(), slot, address));
    let socket = Guarded::new(
        metered,
        meter.clone(),
        state.metrics.clone(),
        state.config.write_timeout,
        state.config.request_timeout,
    );
    serve_socket(socket, meter, peer, router, state).await;
}

/// Serves HTTP on `socket` with hyper until the connection ends, or until a held response
/// (`held`) takes the socket away; a long poll's lean task hands it back here afterwards. Boxed:
/// that hand-back makes this future part of its own type.
fn serve_socket(
    socket: Socket,
    meter: Arc<ConnMeter>,
    peer: Peer,
    router: Router,
    state: AppState,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(async move {
        let handoff = Handoff::new(socket);
        let io = TokioIo::new(HandoffIo(handoff.clone()));
        let service_state = state.clone();
        let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
            req.extensions_mut().insert(meter.clone());
            req.extensions_mut().insert(peer);
            req.extensions_mut().insert(Holder(handoff.clone()));
            let (handoff, meter, router, state) = (
                handoff.clone(),
                meter.clone(),
                router.clone(),
                service_state.clone(),
            );
            async move {
                let response = router.clone().oneshot(req).await?;
                let how = Release {
                    metrics: state.metrics.clone(),
                    shutdown: state.shutdown.clone(),
                    resume: move || -> Resume {
                        Box::new(move |socket| {
                            tokio::spawn(serve_socket(socket, meter, peer, router, state));
                        })
                    },
                };
                Ok::<_, std::convert::Infallible>(held::release(&handoff, response, how))
            }
        });
        let mut builder = http1::Builder::new();
        // The timer enables hyper's header read timeout (30 s): a connection that never finishes
        // a request head is closed instead of holding a slot forever.
        builder.timer(TokioTimer::new());
        let connection = builder.serve_connection(io, service).with_upgrades();
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
            }
            _ = state.shutdown.cancelled() => {
                // Finish the request in flight (streams and long polls end on the same signal),
                // then close instead of keeping the connection alive.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
        }
    })
}

/// Counts a refusal and answers it in the background, unless too many are being answered.
fn refuse_soon(
    connections: &mut JoinSet<()>,
    refusing: &Arc<AtomicUsize>,
    tcp: TcpStream,
    state: &AppState,
    error: ApiError,
) {
    state.metrics.record_refused();
    if refusing.fetch_add(1, Ordering::Relaxed) >= REFUSING_AT_ONCE {
        refusing.fetch_sub(1, Ordering::Relaxed);
        // Dropped: closed at once, unanswered.
        return;
    }
    let refusing = refusing.clone();
    let metrics = state.metrics.clone();
    connections.spawn(async move {
        refuse(tcp, &metrics, error).await;
        refusing.fetch_sub(1, Ordering::Relaxed);
    });
}

/// Answers a connection that is refused (`--max-connections`, or its address's share) with a
/// `503` and a JSON error and closes it within [`REFUSE_TIMEOUT`]. The request head is waited
/// for (briefly) first, because an HTTP client that gets an answer before it has sent its
/// request treats it as garbage; a client that sends nothing gets the answer when the wait ends.
async fn refuse(mut tcp: TcpStream, metrics: &Metrics, error: ApiError) {
    let body = serde_json::to_string(&wire::ErrorBody {
        error: error.to_string(),
    })
    .expect("an error body serializes");
    let answer = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let mut head = Vec::new();
    let mut buf = [0u8; 2048];
    let _ = tokio::time::timeout(REFUSE_TIMEOUT / 2, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
            let n = tcp.read(&mut buf).await?;
            if n == 0 {
                break;
            }
            head.extend_from_slice(&buf[..n]);
        }
        Ok::<_, io::Error>(())
    })
    .await;
    let _ = tokio::time::timeout(REFUSE_TIMEOUT / 2, async {
        tcp.write_all(answer.as_bytes()).await?;
        tcp.shutdown().await?;
        // Whatever else comes is read and dropped, so closing does not reset the connection
        // before the client has read the answer.
        while tcp.read(&mut buf).await? > 0 {}
        Ok::<_, io::Error>(())
    })
    .await;
    let path = std::str::from_utf8(&head)
        .ok()
        .and_then(|h| h.split(' ').nth(1))
        .unwrap_or("");
    metrics.record_request(Endpoint::from_path(path), 503);
}

/// A server running in the background of the current runtime, for tests and embedding.
#[derive(Debug)]
pub struct SpawnedServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its state: publish into its feed, read its metrics.
    pub state: AppState,
    task: Option<JoinHandle<io::Result<()>>>,
}

impl SpawnedServer {
    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Shuts the server down and waits until it has finished (at most about
    /// [`SHUTDOWN_DEADLINE`]).
    pub async fn shutdown(mut self) -> io::Result<()> {
        self.state.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.map_err(io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for SpawnedServer {
    fn drop(&mut self) {
        // A server nobody holds any more stops with it.
        self.state.shutdown.cancel();
    }
}

/// Binds `127.0.0.1:0` and serves `config` in a background task (connected to its backplane,
/// when it names one).
pub async fn spawn(config: Config) -> io::Result<SpawnedServer> {
    let listener = bind(SocketAddr::from(([127, 0, 0, 1], 0)))?;
    let addr = listener.local_addr()?;
    let state = AppState::open(config).map_err(io::Error::other)?;
    let task = tokio::spawn(serve(listener, state.clone(), std::future::pending()));
    Ok(SpawnedServer {
        addr,
        state,
        task: Some(task),
    })
}
