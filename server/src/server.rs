//! Accepting and serving connections, mini-redis style: [`bind`] makes the listener (with a
//! backlog that holds a burst of thousands of connects), [`run`]/[`serve`] take an already-bound
//! listener and a shutdown future, so tests bind `127.0.0.1:0` and own the lifetime; [`spawn`]
//! does both for tests and embedding.
//!
//! The accept loop is ours rather than `axum::serve` because three things happen per socket
//! before HTTP: the `--max-connections` check (past it the connection gets one `503` and is
//! closed), the byte meter, and the connection slot that an upgraded WebSocket carries along.
//!
//! Shutdown: cancelling [`AppState::shutdown`] stops the accept loop, ends SSE streams, answers
//! long polls, closes WebSockets with a reason and asks hyper to finish keep-alive connections;
//! after [`SHUTDOWN_DEADLINE`] whatever is left is dropped.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::response::IntoResponse;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::task::{JoinHandle, JoinSet};
use tower::ServiceExt;

use crate::Config;
use crate::conn::{ConnMeter, Peer, SocketTally};
use crate::error::ApiError;
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
/// A refused (503) connection gets this long to send its request and read the answer.
const REFUSE_TIMEOUT: Duration = Duration::from_secs(5);

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

/// Serves the feed on `listener` with fresh state until `shutdown` completes. Also raises this
/// process's soft open-file limit to its hard limit (often 1024 -> far more), since every client
/// holds a descriptor.
pub async fn run(
    listener: TcpListener,
    config: Config,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let state = AppState::open(config).map_err(io::Error::other)?;
    run_state(listener, state, shutdown).await
}

/// [`run`] with state already made (`duplex serve` connects to its backplane before it
/// announces its address).
pub async fn run_state(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => tracing::debug!(limit, "open-file limit"),
        Err(e) => tracing::warn!(error = %e, "could not raise the open-file limit"),
    }
    serve(listener, state, shutdown).await
}

/// Serves `state` on `listener` until `shutdown` completes or `state.shutdown` is cancelled,
/// then closes every connection within [`SHUTDOWN_DEADLINE`].
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()>,
) -> io::Result<()> {
    let router = crate::app(state.clone());
    let cancel = state.shutdown.clone();
    let mut connections = JoinSet::new();
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
            accepted = listener.accept() => accepted,
        };
        // Reap finished connection tasks so the set stays the size of what is open.
        while connections.try_join_next().is_some() {}
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
            state.metrics.record_refused();
            let limit = state.config.max_connections.unwrap_or_default();
            connections.spawn(refuse(tcp, state.metrics.clone(), limit));
            continue;
        }
        // The slot is taken here, not in the task, so the next accept sees it.
        let slot = state.metrics.tcp_slot();
        connections.spawn(serve_connection(
            tcp,
            Peer(peer),
            slot,
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
    slot: TcpSlot,
    router: Router,
    state: AppState,
) {
    let meter = Arc::new(ConnMeter::new(state.metrics.clone()));
    let io = TokioIo::new(Metered::new(tcp, SocketTally::new(meter.clone(), slot)));
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(meter.clone());
        req.extensions_mut().insert(peer);
        router.clone().oneshot(req)
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
}

/// Answers one request on a connection past `--max-connections` with `503` and closes it.
/// Served through hyper (rather than writing bytes and closing) so the client's request is read
/// first and it sees the answer instead of a reset.
async fn refuse(tcp: TcpStream, metrics: Arc<Metrics>, limit: usize) {
    let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        metrics.record_request(Endpoint::from_path(req.uri().path()), 503);
        async move { Ok::<_, Infallible>(ApiError::TooManyConnections { limit }.into_response()) }
    });
    let connection = http1::Builder::new()
        .keep_alive(false)
        .serve_connection(TokioIo::new(tcp), service);
    let _ = tokio::time::timeout(REFUSE_TIMEOUT, connection).await;
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
