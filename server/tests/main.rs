//! The server's integration tests: one binary, a real server on `127.0.0.1:0` per test, real
//! sockets, the same behaviour checked on every transport where it applies.

mod backplane;
mod bad_input;
mod browser;
mod experiment;
mod fanout;
mod hardening;
mod held;
mod helpers;
mod operations;
mod time_limits;
mod transports;
