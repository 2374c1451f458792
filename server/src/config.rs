//! [`Config`]: the server's limits, from `duplex serve`'s flags. A leaf: every module may read
//! it, it reads none of them.

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
