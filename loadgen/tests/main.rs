//! The loadgen integration tests: one binary, one module per concern.

mod netem;
mod scenarios_shipped;
