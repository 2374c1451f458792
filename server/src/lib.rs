//! duplex's server: one chat feed (rooms, each an append-only log with bounded history) exposed
//! over short polling, long polling, Server-Sent Events and WebSocket, plus `/metrics`,
//! `/healthz` and the live classroom page.
//!
//! Modules, one concept each: [`feed`] (rooms, seqs, history, addressing, wake-ups, and the
//! [`feed::RoomLog`] seam where a room's log lives), [`api`] (one handler module per transport),
//! [`live`] (the classroom page and dashboard), [`extract`] (the request checks both share),
//! [`router`] (the one place both are mounted), [`state`] (what handlers share), [`metrics`]
//! (counters and their Prometheus names), `conn` (what a server socket's bytes are credited to,
//! and its connection slot), `guard` (a socket's time limits), `held` (SSE streams and waiting long polls served off
//! hyper, on the bare socket), [`server`] (bind, accept, shutdown), `config` (the limits), [`log`] (a log
//! writer that never blocks serving). The
//! JSON shapes and the byte-counting socket wrapper are the `wire` crate's, shared with the
//! loadgen. How a publish flows through the feed to each transport, and where to add one, is
//! told in `docs/ARCHITECTURE.md`.

#![warn(missing_docs)]

pub mod api;
pub mod boundary;
mod config;
mod conn;
pub mod error;
pub mod extract;
pub mod feed;
mod guard;
mod held;
mod link;
pub mod live;
pub mod log;
pub mod metrics;
pub mod router;
pub mod server;
pub mod state;

pub use config::Config;
pub use conn::{ConnMeter, Peer};
pub use router::app;
pub use server::{SpawnedServer, bind, run, run_state, serve, spawn};
pub use state::AppState;
