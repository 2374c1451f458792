//! duplex's server: one chat feed (rooms, each an append-only log with bounded history) exposed
//! over short polling, long polling, Server-Sent Events and WebSocket, plus `/metrics`,
//! `/healthz` and the live classroom page.

#![warn(missing_docs)]

pub mod wire;
