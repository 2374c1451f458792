//! What the two bench binaries share: the raw-socket client used for every server
//! ([`clients`]), the servers started as children and read from `/proc` ([`servers`]), the
//! same fan-out over bare sockets with no server at all ([`bare`]), and a thread's own CPU time
//! ([`cpu`]).
//! `vs-nchan` (main.rs) compares duplex with nginx+nchan; `conn-cost` (conn_cost.rs) profiles
//! duplex's heap per idle connection.

pub mod bare;
pub mod clients;
pub mod cpu;
pub mod servers;
