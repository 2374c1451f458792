//! What every handler shares: the feed, the counters, the limits and the shutdown signal.
//! Cloned per request (a handful of `Arc` bumps).

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::Config;
use crate::feed::Feed;
use crate::metrics::Metrics;

/// The server's shared state, handed to [`crate::app`].
#[derive(Debug, Clone)]
pub struct AppState {
    /// The rooms and their logs.
    pub feed: Arc<Feed>,
    /// The counters behind `/metrics` and the live page.
    pub metrics: Arc<Metrics>,
    /// Limits from the command line.
    pub config: Arc<Config>,
    /// Cancelled when the server starts shutting down: streams end, long polls answer,
    /// WebSockets close with a reason.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Fresh state for `config`, with its own shutdown token.
    pub fn new(config: Config) -> Self {
        AppState {
            feed: Arc::new(Feed::new(config.history)),
            metrics: Arc::new(Metrics::default()),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
        }
    }
}
