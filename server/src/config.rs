//! [`Config`]: the server's limits, from `duplex serve`'s flags. A leaf: every module may read
//! it, it reads none of them.

use std::time::Duration;

/// The server's limits, from `duplex serve`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Messages kept per room for resuming clients.
    pub history: usize,
    /// Bytes of history kept for all rooms together (`--memory-budget`); past it the oldest
    /// messages, whichever room they are in, are evicted (readers behind them get a gap).
    pub memory_budget: usize,
    /// Largest request body (and WebSocket frame) accepted, bytes.
    pub max_body: usize,
    /// Connections beyond this many are answered `503` and closed; `None`: no limit (`run`
    /// derives one from the open-file limit).
    pub max_connections: Option<usize>,
    /// Connections one address off this machine may hold open (`--max-connections-per-address`).
    pub max_connections_per_address: usize,
    /// Apply the per-address limits to loopback peers too. Off by default: the loadgen opens
    /// thousands of clients from 127.0.0.x. Tests turn it on to exercise the limits.
    pub limit_loopback: bool,
    /// Rooms one address off this machine may have created among those that exist.
    pub rooms_per_address: usize,
    /// A room nobody follows expires this long after its last message.
    pub room_idle: Duration,
    /// A request head must arrive within this (else `408`), and so must a request body.
    pub request_timeout: Duration,
    /// A client that takes no bytes from the server for this long, while some wait to be
    /// written, is disconnected (`duplex_write_timeouts_total`).
    pub write_timeout: Duration,
    /// A WebSocket with no frame from its client for this long is sent a ping; after twice this
    /// without an answer it is closed.
    pub ws_ping: Duration,
    /// Origins allowed besides the server's own (`--allow-origin`), e.g. `http://teacher.local:8080`.
    pub allow_origins: Vec<String>,
    /// Host names accepted in `Host` besides IP literals and `localhost` (`--allow-host`).
    pub allow_hosts: Vec<String>,
    /// The teacher's token (dashboard, flash); `None`: a random one per start.
    pub teacher_token: Option<String>,
    /// Keep rooms' logs in this Redis (`--backplane redis://HOST:PORT`), shared with every node
    /// pointed at it; `None`: in this process's memory.
    pub backplane: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history: 4096,
            memory_budget: 256 * 1024 * 1024,
            max_body: 64 * 1024,
            max_connections: None,
            max_connections_per_address: 256,
            limit_loopback: false,
            rooms_per_address: 1000,
            room_idle: Duration::from_secs(10 * 60),
            request_timeout: Duration::from_secs(10),
            write_timeout: Duration::from_secs(30),
            ws_ping: Duration::from_secs(30),
            allow_origins: Vec::new(),
            allow_hosts: Vec::new(),
            teacher_token: None,
            backplane: None,
        }
    }
}
