//! duplex's server: one chat feed (rooms, each an append-only log with bounded history) exposed
//! over short polling, long polling, Server-Sent Events and WebSocket, plus `/metrics`,
//! `/healthz` and the live classroom page.
//!
//! Modules, one concept each: [`feed`] (rooms, seqs, history, addressing, wake-ups), [`api`]
//! (the router and one handler module per transport), [`metrics`] (counters and their
//! Prometheus names), `conn` (what a server socket's bytes are credited to, and its connection
//! slot), [`server`] (bind, accept, shutdown), [`live`] (the classroom page and dashboard). The
//! JSON shapes and the byte-counting socket wrapper are the `wire` crate's, shared with the
//! loadgen.

#![warn(missing_docs)]

pub mod api;
mod conn;
pub mod error;
pub mod feed;
pub mod live;
pub mod metrics;
pub mod server;
pub mod state;

pub use api::app;
pub use conn::ConnMeter;
pub use server::{SpawnedServer, bind, run, serve, spawn};
pub use state::AppState;

/// The server's limits, from `duplex serve`'s flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Messages kept per room for resuming clients.
    pub history: usize,
    /// Largest request body (and WebSocket frame) accepted, bytes.
    pub max_body: usize,
    /// Connections beyond this many are answered `503` and closed; `None`: no limit.
    pub max_connections: Option<usize>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            history: 4096,
            max_body: 64 * 1024,
            max_connections: None,
        }
    }
}
