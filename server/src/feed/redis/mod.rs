//! [`RedisStore`] and [`RedisLog`]: rooms' logs kept in Redis (`duplex serve --backplane
//! redis://HOST:PORT`), so several duplex nodes serve one feed. A message has the same seq on
//! every node, a client can resume on any node with its cursor, and a publish is answered only
//! once Redis holds it.
//!
//! The design, in the terms of the [`RoomLog`] contract (`feed/log.rs`):
//! - **append** runs one Lua script (`scripts.rs`) that takes the next seq from the room's meta
//!   hash and `XADD`s the message under the id `<epoch>-<seq>`, trimmed to the history length
//!   with an exact `MAXLEN`. Redis runs a script alone, so the seq is assigned once, atomically,
//!   and the same on every node. The append resolves when the script has answered.
//! - **read** is synchronous and served from this node's [`Window`] of the room's stream. The
//!   window is filled by the node's one tail task (`tail.rs`: `XREAD BLOCK` over every stream
//!   this node follows, on a connection of its own) and, when it is next in line, by the node's
//!   own append. It is contiguous up to its head, so a gap is counted exactly. A cursor ahead
//!   of the window (handed out by a node whose window was further on) is checked once against
//!   the room's `seq` in Redis ([`RoomLog::confirm`]): up to it, "nothing yet" (the tail brings
//!   it in a few ms); past it, a reset.
//! - **open** (synchronous, like [`LogStore::open`]) loads the room from Redis on a small
//!   blocking connection before it returns: the room's epoch, head and kept history, so a client
//!   resuming here with a cursor from another node reads what it missed, and "from now on" means
//!   the room's real head. That costs one round trip to Redis per room per node, the first time.
//! - **epoch**: created by Redis (its own clock, in ms) the first time any node opens or writes
//!   the room, stored in the meta hash, so every node agrees. When Redis loses the room (a
//!   restart without persistence, a flush) the next open or append makes a new, larger epoch;
//!   each node sees it (in the ids its tail reads, or when its connection to Redis is made again
//!   and it reloads every room) and replaces its window, and readers are reset, never silently
//!   moved to a seq that now means another message.
//!
//! While Redis cannot be reached, publishes fail (503) and readers wait; nothing is delivered out
//! of order or twice. A room opened while Redis is unreachable is empty until the tail connects
//! and loads it. The memory budget of the memory log does not apply: a node keeps at most
//! `--history` entries per room it serves, and Redis keeps the same per room.

mod scripts;
mod tail;
mod window;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio::sync::{Notify, watch};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::entry::{Draft, Entry, Epoch, Limit, PublishError, Read, Reader, RoomName};
use super::log::{Appended, Confirmed, LogStore, RoomLog};
use scripts::{BadReply, Stamped};
use window::{Pushed, Window};

/// How long connecting to Redis, or one command, may take before it counts as unreachable. Redis
/// answers in well under a millisecond on a healthy network; a second is a dead peer.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(1);

/// `--backplane` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum BackplaneError {
    /// Not a Redis URL.
    #[error("bad backplane URL {url:?}: {reason} (expected redis://HOST:PORT)")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What the client library said.
        reason: String,
    },
    /// Redis did not answer.
    #[error("cannot reach the backplane at {url}: {reason}")]
    Unreachable {
        /// The URL given.
        url: String,
        /// The connection or command error.
        reason: String,
    },
}

/// What the store, its logs and its tail share: connections, scripts and the rooms followed.
pub(super) struct Backplane {
    client: redis::Client,
    history: usize,
    /// The rooms' keys' TTL in Redis, ms: the room's idle time (see `scripts.rs`).
    ttl_ms: u64,
    append: redis::Script,
    load: redis::Script,
    /// The blocking connection `open` loads rooms on (`LogStore::open` is synchronous). A std
    /// Mutex held for one load, at most [`COMMAND_TIMEOUT`]; `None` after a failure, made again
    /// on the next open.
    blocking: Mutex<Option<redis::Connection>>,
    /// The connection appends are pipelined on (cloned per append); `None` after a failure.
    commands: Mutex<Option<MultiplexedConnection>>,
    /// Every room this node has open, by stream key: the streams the tail reads.
    rooms: Mutex<HashMap<String, Weak<Shared>>>,
    /// Signalled when a room is opened, for a tail that follows none yet.
    rooms_changed: Notify,
    /// The tail connection's Redis client id (0: none), so `open` can `CLIENT UNBLOCK` its
    /// `XREAD` to add the new room's stream at once.
    tail_client: AtomicU64,
}

impl std::fmt::Debug for Backplane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Backplane")
            .field("history", &self.history)
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every guarded value here is replaced whole or pushed to, so a panic elsewhere cannot leave
    // it half-written.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A connection failure (as opposed to a refused command): the connection is made again.
fn is_connection_error(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal()
}

impl Backplane {
    fn connection_config(response: Duration) -> redis::AsyncConnectionConfig {
        redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(COMMAND_TIMEOUT))
            .set_response_timeout(Some(response))
    }

    /// The connection for appends, made if there is none.
    async fn commands(&self) -> redis::RedisResult<MultiplexedConnection> {
        if let Some(conn) = lock(&self.commands).clone() {
            return Ok(conn);
        }
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&Self::connection_config(COMMAND_TIMEOUT))
            .await?;
        *lock(&self.commands) = Some(conn.clone());
        Ok(conn)
    }

    /// Runs `f` on the blocking connection, made if there is none, dropped after a failure.
    fn blocking<T>(
        &self,
        f: impl FnOnce(&mut redis::Connection) -> redis::RedisResult<T>,
    ) -> redis::RedisResult<T> {
        let mut slot = lock(&self.blocking);
        if slot.is_none() {
            let conn = self.client.get_connection_with_timeout(COMMAND_TIMEOUT)?;
            conn.set_read_timeout(Some(COMMAND_TIMEOUT))?;
            conn.set_write_timeout(Some(COMMAND_TIMEOUT))?;
            *slot = Some(conn);
        }
        let conn = slot.as_mut().expect("made above");
        let result = f(conn);
        if result.as_ref().is_err_and(is_connection_error) {
            *slot = None;
        }
        result
    }

    /// The load script's invocation for `room`, asking for what follows its window.
    fn load_invocation<'a>(&'a self, room: &Shared) -> redis::ScriptInvocation<'a> {
        let (epoch, head) = {
            let window = lock(&room.window);
            (window.epoch(), window.head())
        };
        let mut invocation = self.load.key(&room.meta_key);
        invocation
            .key(&room.log_key)
            .arg(epoch.map_or(String::new(), |e| e.0.to_string()))
            .arg(head)
            .arg(self.ttl_ms);
        invocation
    }

    fn register(&self, room: &Arc<Shared>) {
        {
            let mut rooms = lock(&self.rooms);
            rooms.retain(|_, r| r.strong_count() > 0);
            rooms.insert(room.log_key.clone(), Arc::downgrade(room));
        }
        self.rooms_changed.notify_one();
        let tail = self.tail_client.load(Ordering::Relaxed);
        if tail != 0 {
            // Wake the tail's blocked XREAD so it reads this stream too. Should it not be blocked
            // yet, it builds its next XREAD with this room in it anyway.
            let unblocked = self.blocking(|conn| {
                redis::cmd("CLIENT")
                    .arg("UNBLOCK")
                    .arg(tail)
                    .query::<Value>(conn)
            });
            if let Err(e) = unblocked {
                tracing::debug!(error = %e, "could not unblock the backplane tail");
            }
        }
    }

    /// The rooms open on this node.
    fn rooms(&self) -> Vec<Arc<Shared>> {
        lock(&self.rooms)
            .values()
            .filter_map(Weak::upgrade)
            .collect()
    }

    fn room(&self, log_key: &str) -> Option<Arc<Shared>> {
        lock(&self.rooms).get(log_key).and_then(Weak::upgrade)
    }
}

/// One room's state on this node, shared by its [`RedisLog`] and the tail.
#[derive(Debug)]
pub(super) struct Shared {
    name: RoomName,
    meta_key: String,
    log_key: String,
    /// A std Mutex: held for a push or a read's slice copy, never across an await.
    window: Mutex<Window>,
    head: watch::Sender<u64>,
}

impl Shared {
    fn new(name: RoomName, history: usize) -> Self {
        Shared {
            meta_key: scripts::meta_key(&name),
            log_key: scripts::log_key(&name),
            name,
            window: Mutex::new(Window::new(history)),
            head: watch::Sender::new(0),
        }
    }

    /// Takes in a load script's answer and wakes readers when it changed the window.
    fn apply_load(&self, reply: &Value) -> Result<(), BadReply> {
        let loaded = scripts::loaded(&self.name, reply)?;
        let (changed, head) = {
            let mut window = lock(&self.window);
            (window.load(loaded), window.head())
        };
        if changed {
            self.head.send_replace(head);
        }
        Ok(())
    }

    /// Adds entries in seq order and wakes readers; true when one belonged to another epoch (the
    /// room must be loaded again).
    fn push(&self, entries: Vec<Stamped>) -> bool {
        let (moved, other_epoch, head) = {
            let mut window = lock(&self.window);
            let mut moved = false;
            let mut other_epoch = false;
            for (epoch, entry) in entries {
                match window.push(epoch, entry) {
                    Pushed::Head => moved = true,
                    Pushed::Stale => {}
                    Pushed::OtherEpoch => other_epoch = true,
                }
            }
            (moved, other_epoch, window.head())
        };
        // Outside the lock, after the entries are readable: the watch contract.
        if moved {
            self.head.send_replace(head);
        }
        other_epoch
    }

    /// This node's own append. Next in line, it is pushed at once, so readers here need not wait
    /// for the tail to read it back. Otherwise another node appended the seqs before it and the
    /// tail has not brought them yet: pushing it would make the window jump, and count those
    /// seqs as missed (a gap that loses nothing in Redis). The tail brings it in order (or, for
    /// another epoch, has the room loaded again); the window only learns that Redis has it.
    fn push_own(&self, epoch: Epoch, entry: Arc<Entry>) {
        let head = {
            let mut window = lock(&self.window);
            if window.epoch() != Some(epoch) || entry.seq != window.head() + 1 {
                window.learn(epoch, entry.seq);
                return;
            }
            window.push(epoch, entry);
            window.head()
        };
        // Outside the lock, after the entry is readable: the watch contract.
        self.head.send_replace(head);
    }

    /// The stream id the tail reads after, when the room is loaded.
    fn tail_from(&self) -> Option<String> {
        let window = lock(&self.window);
        Some(scripts::stream_id(window.epoch()?, window.head()))
    }
}

/// Opens a [`RedisLog`] per room, all sharing this node's connections to Redis and its tail.
#[derive(Debug)]
pub struct RedisStore {
    backplane: Arc<Backplane>,
    /// Stops the tail when the store goes (with the feed that owns it).
    _tail: DropGuard,
}

impl RedisStore {
    /// Connects to the Redis at `url` (checked with a `PING`) and starts this node's tail. Rooms
    /// keep `history` messages, in Redis and in each node's window; a room's keys in Redis
    /// expire `idle` after the last node that had it open let it go. Call inside a tokio
    /// runtime.
    pub fn connect(url: &str, history: usize, idle: Duration) -> Result<Self, BackplaneError> {
        let client = redis::Client::open(url).map_err(|e| BackplaneError::BadUrl {
            url: url.to_owned(),
            reason: e.to_string(),
        })?;
        let backplane = Arc::new(Backplane {
            client,
            history: history.max(1),
            // At least 4 s: the tail renews a quarter TTL apart, but only between two XREADs,
            // which block up to a second.
            ttl_ms: (idle.as_millis() as u64).max(4000),
            append: scripts::append(),
            load: scripts::load(),
            blocking: Mutex::new(None),
            commands: Mutex::new(None),
            rooms: Mutex::new(HashMap::new()),
            rooms_changed: Notify::new(),
            tail_client: AtomicU64::new(0),
        });
        backplane
            .blocking(|conn| redis::cmd("PING").query::<String>(conn))
            .map_err(|e| BackplaneError::Unreachable {
                url: url.to_owned(),
                reason: e.to_string(),
            })?;
        let stop = CancellationToken::new();
        tokio::spawn(tail::run(backplane.clone(), stop.clone()));
        Ok(RedisStore {
            backplane,
            _tail: stop.drop_guard(),
        })
    }
}

impl LogStore for RedisStore {
    fn is_shared(&self) -> bool {
        true
    }

    fn open(&self, room: &RoomName) -> Arc<dyn RoomLog> {
        let shared = Arc::new(Shared::new(room.clone(), self.backplane.history));
        let loaded = self.backplane.blocking(|conn| {
            self.backplane
                .load_invocation(&shared)
                .invoke::<Value>(conn)
        });
        match loaded.map(|reply| shared.apply_load(&reply)) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(room = room.as_str(), error = %e, "room not loaded"),
            Err(e) => tracing::warn!(
                room = room.as_str(),
                error = %e,
                "backplane unreachable: the room is loaded once the tail reconnects"
            ),
        }
        self.backplane.register(&shared);
        Arc::new(RedisLog {
            shared,
            backplane: self.backplane.clone(),
        })
    }
}

/// One room's log in Redis, read through this node's window. See the module docs.
#[derive(Debug)]
pub struct RedisLog {
    shared: Arc<Shared>,
    backplane: Arc<Backplane>,
}

impl RedisLog {
    async fn append_draft(&self, draft: Draft) -> Result<Arc<Entry>, PublishError> {
        let unavailable = |e: &dyn std::fmt::Display| PublishError::Unavailable(e.to_string());
        let mut conn = self
            .backplane
            .commands()
            .await
            .map_err(|e| unavailable(&e))?;
        let reply = self
            .backplane
            .append
            .key(&self.shared.meta_key)
            .key(&self.shared.log_key)
            .arg(self.backplane.history)
            .arg(&draft.from)
            .arg(&draft.event)
            .arg(&draft.body)
            .arg(draft.to.as_deref().unwrap_or(""))
            .arg(if draft.echo { "1" } else { "0" })
            .arg(draft.ts_us)
            .arg(self.backplane.ttl_ms)
            .invoke_async::<Value>(&mut conn)
            .await
            .map_err(|e| {
                if is_connection_error(&e) {
                    *lock(&self.backplane.commands) = None;
                }
                unavailable(&e)
            })?;
        let (epoch, seq) = scripts::appended(&reply).map_err(|e| unavailable(&e))?;
        let entry = Arc::new(draft.into_entry(&self.shared.name, seq));
        self.shared.push_own(epoch, entry.clone());
        Ok(entry)
    }

    /// Asks Redis how far the room got when `since` is past what this node knows Redis
    /// assigned, so the window tells a seq its tail has not brought yet from one never assigned.
    /// When Redis cannot be asked, nothing is learned and such a cursor is reset as before:
    /// announced, never a silent skip.
    async fn learn_assigned(&self, since: u64) {
        {
            let window = lock(&self.shared.window);
            if window.epoch().is_none() || since <= window.assigned() {
                return;
            }
        }
        let Ok(mut conn) = self.backplane.commands().await else {
            return;
        };
        let reply = redis::cmd("HMGET")
            .arg(&self.shared.meta_key)
            .arg("epoch")
            .arg("seq")
            .query_async::<Value>(&mut conn)
            .await;
        match reply {
            Ok(reply) => {
                if let Some((epoch, seq)) = scripts::assigned(&reply) {
                    lock(&self.shared.window).learn(epoch, seq);
                }
            }
            Err(e) => {
                if is_connection_error(&e) {
                    *lock(&self.backplane.commands) = None;
                }
                tracing::debug!(room = self.shared.name.as_str(), error = %e, "seq not checked");
            }
        }
    }
}

impl RoomLog for RedisLog {
    fn append(&self, draft: Draft) -> Appended<'_> {
        Box::pin(self.append_draft(draft))
    }

    fn read(&self, since: u64, reader: Reader<'_>, limit: Limit) -> Read {
        lock(&self.shared.window).read(since, reader, limit)
    }

    fn head(&self) -> u64 {
        lock(&self.shared.window).head()
    }

    fn confirm(&self, since: u64) -> Confirmed<'_> {
        Box::pin(self.learn_assigned(since))
    }

    fn epoch(&self) -> Epoch {
        // Before the first load the epoch is unknown; 0 is never one Redis makes.
        lock(&self.shared.window).epoch().unwrap_or(Epoch(0))
    }

    fn watch(&self) -> watch::Receiver<u64> {
        self.shared.head.subscribe()
    }

    fn retained(&self) -> usize {
        lock(&self.shared.window).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::feed::{Cursor, Follower, Room};

    /// A log whose Redis is never contacted: the test hands it what loads would answer.
    fn offline_log(room: &RoomName) -> (Arc<Shared>, RedisLog) {
        let backplane = Arc::new(Backplane {
            client: redis::Client::open("redis://127.0.0.1:1").unwrap(),
            history: 10,
            ttl_ms: 60_000,
            append: scripts::append(),
            load: scripts::load(),
            blocking: Mutex::new(None),
            commands: Mutex::new(None),
            rooms: Mutex::new(HashMap::new()),
            rooms_changed: Notify::new(),
            tail_client: AtomicU64::new(0),
        });
        let shared = Arc::new(Shared::new(room.clone(), 10));
        let log = RedisLog {
            shared: shared.clone(),
            backplane,
        };
        (shared, log)
    }

    /// What the load script answers: `{epoch, head, entries 1..=head}`.
    fn load_reply(epoch: u64, head: u64) -> Value {
        let bulk = |s: String| Value::BulkString(s.into_bytes());
        let entries = (1..=head)
            .map(|seq| {
                let fields = ["f", "a", "e", "chat", "b", "x", "o", "", "x", "1", "t", "1"]
                    .map(|s| bulk(s.to_owned()));
                Value::Array(vec![
                    bulk(format!("{epoch}-{seq}")),
                    Value::Array(fields.to_vec()),
                ])
            })
            .collect();
        Value::Array(vec![
            bulk(epoch.to_string()),
            Value::Int(head as i64),
            Value::Array(entries),
        ])
    }

    #[test]
    fn a_follower_is_reset_when_the_log_begins_a_new_epoch_even_past_its_cursor() {
        let name = RoomName::parse("r").unwrap();
        let (shared, log) = offline_log(&name);
        shared.apply_load(&load_reply(100, 1)).unwrap();
        let room = Arc::new(Room::new(name, Arc::new(log)));
        let limit = Limit {
            messages: 10,
            bytes: usize::MAX,
        };
        let since = Cursor {
            epoch: None,
            seq: 1,
        };
        let mut follower = Follower::new(room, Some(since), None, limit);
        assert!(!follower.read().has_news());
        // Redis lost the room; by the time this node reloads it the new log has 3 messages.
        // Seqs 2 and 3 of the new epoch are not what follows seq 1 of the old one.
        shared.apply_load(&load_reply(200, 3)).unwrap();
        let read = follower.read();
        assert!(read.reset, "{read:?}");
        assert!(read.entries.is_empty());
        assert_eq!((read.next, follower.epoch()), (3, Epoch(200)));
    }
}
