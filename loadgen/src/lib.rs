//! duplex's load generator: reads a scenario, simulates its chat clients on each transport in
//! turn, measures delivery latency, integrity, traffic and server cost, and writes the results
//! document that the report crate renders.

#![warn(missing_docs)]

pub mod clock;
pub mod scenario;
pub mod stamp;
pub mod netem;
