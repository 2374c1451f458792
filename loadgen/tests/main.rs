//! The loadgen integration tests: one binary, one module per concern.

mod browser_headers;
mod modes;
mod netem;
mod phases;
mod scenarios_shipped;
mod stacks;
mod stacks_runs;
