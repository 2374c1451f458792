//! What the two bench binaries share: the raw-socket client used for every server
//! ([`clients`]) and the servers started as children and read from `/proc` ([`servers`]).
//! `vs-nchan` (main.rs) compares duplex with nginx+nchan; `conn-cost` (conn_cost.rs) profiles
//! duplex's heap per idle connection.

pub mod clients;
pub mod servers;
