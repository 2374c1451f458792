//! What every handler shares: the feed, the counters, the limits, the live page's memory and the
//! shutdown signal. Cloned per request (a handful of `Arc` bumps). Each field can be extracted on
//! its own (`State<Arc<Feed>>`, ...) through the derived `FromRef`, so handlers outside `api`
//! (the live page, the shared extractors) depend on the parts they use, not on this type.

use std::sync::Arc;

use axum::extract::FromRef;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::feed::{BackplaneError, Feed, LogStore, MAX_ROOMS, MemoryStore, RedisStore, RoomRules};
use crate::live::Live;
use crate::metrics::Metrics;

/// The server's shared state, handed to [`crate::app`].
#[derive(Debug, Clone, FromRef)]
pub struct AppState {
    /// The rooms and their logs.
    pub feed: Arc<Feed>,
    /// The counters behind `/metrics` and the live page.
    pub metrics: Arc<Metrics>,
    /// Limits from the command line.
    pub config: Arc<Config>,
    /// What the live page remembers: presence and flashes. One per state, so two servers in one
    /// test process never share it.
    pub live: Arc<Live>,
    /// Cancelled when the server starts shutting down: streams end, long polls answer,
    /// WebSockets close with a reason.
    pub shutdown: CancellationToken,
}

impl AppState {
    /// Fresh state for `config`, with its own shutdown token, rooms' logs in this process's
    /// memory (whatever `config.backplane` says: see [`AppState::open`]).
    pub fn new(config: Config) -> Self {
        let store = MemoryStore::new(config.history, config.memory_budget);
        AppState::with_store(config, Box::new(store))
    }

    /// Fresh state for `config`: rooms' logs in the Redis that `config.backplane` names
    /// (connected to here), else in memory. Call inside a tokio runtime.
    pub fn open(config: Config) -> Result<Self, BackplaneError> {
        let store: Box<dyn LogStore> = match &config.backplane {
            Some(url) => Box::new(RedisStore::connect(url, config.history, config.room_idle)?),
            None => Box::new(MemoryStore::new(config.history, config.memory_budget)),
        };
        Ok(AppState::with_store(config, store))
    }

    fn with_store(config: Config, store: Box<dyn LogStore>) -> Self {
        AppState {
            feed: Arc::new(Feed::with_store(
                store,
                RoomRules {
                    max_rooms: MAX_ROOMS,
                    per_address: config.rooms_per_address,
                    idle: config.room_idle,
                    limit_loopback: config.limit_loopback,
                },
            )),
            metrics: Arc::new(Metrics::default()),
            live: Arc::new(Live::new(config.teacher_token.clone())),
            config: Arc::new(config),
            shutdown: CancellationToken::new(),
        }
    }
}
