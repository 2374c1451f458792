//! The node's tail: one task, on a connection of its own, that reads every stream this node has
//! open with one `XREAD BLOCK` and pushes what it reads into the rooms' windows, waking their
//! readers. One connection for all rooms (not one per room) so a node's connections to Redis do
//! not grow with its rooms; `open` interrupts the blocked read (`CLIENT UNBLOCK`) to add a room.
//!
//! Each time the connection is made (at start, and after it broke: a lost connection may be a
//! Redis restart) every room is loaded again with the load script, which answers with the room's
//! current epoch: a room Redis lost gets a new epoch and its window is replaced, so its readers
//! are reset rather than left waiting at a seq that will never come or that now means another
//! message. Between reconnects, an id of another epoch in what `XREAD` returns has the same
//! effect.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use redis::Value;
use redis::aio::MultiplexedConnection;
use tokio_util::sync::CancellationToken;

use super::{Backplane, Shared, is_connection_error, scripts};

/// How long one `XREAD` blocks when nothing comes: the longest a room opened just as the tail
/// was about to block (so its `CLIENT UNBLOCK` came too early) waits to be read.
const BLOCK_MS: u64 = 1000;
/// Entries read per stream per round: bounds one reply while a node catches up.
const COUNT: usize = 512;
/// The tail renews the TTL of the rooms this node has open this often, as a share of the TTL:
/// several chances before a key would expire under a node that still uses it (a renewal waits
/// for the current XREAD, up to `BLOCK_MS`).
const RENEW_PER_TTL: u32 = 4;
/// Waits between attempts to reach Redis: doubling from the first to the last.
const RETRY_FIRST: Duration = Duration::from_millis(50);
const RETRY_LAST: Duration = Duration::from_secs(1);

/// Runs until `stop` is cancelled (the store was dropped).
pub(super) async fn run(backplane: Arc<Backplane>, stop: CancellationToken) {
    let mut retry = RETRY_FIRST;
    // Replies may take the whole block, plus what any command may take.
    let config =
        Backplane::connection_config(Duration::from_millis(BLOCK_MS) + super::COMMAND_TIMEOUT);
    loop {
        let connected = backplane
            .client
            .get_multiplexed_async_connection_with_config(&config);
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            result = connected => result,
        };
        let error = match result {
            Ok(mut conn) => {
                retry = RETRY_FIRST;
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    error = follow(&backplane, &mut conn) => error,
                }
            }
            Err(e) => e,
        };
        backplane.tail_client.store(0, Ordering::Relaxed);
        tracing::warn!(error = %error, "backplane tail lost Redis; reconnecting");
        tokio::select! {
            biased;
            _ = stop.cancelled() => return,
            _ = tokio::time::sleep(retry) => {}
        }
        retry = (retry * 2).min(RETRY_LAST);
    }
}

/// Loads every room, then reads their streams until the connection fails.
async fn follow(backplane: &Backplane, conn: &mut MultiplexedConnection) -> redis::RedisError {
    let id = match redis::cmd("CLIENT")
        .arg("ID")
        .query_async::<u64>(conn)
        .await
    {
        Ok(id) => id,
        Err(e) => return e,
    };
    backplane.tail_client.store(id, Ordering::Relaxed);
    for room in backplane.rooms() {
        if let Err(e) = load(backplane, &room, conn).await {
            return e;
        }
    }
    let renew_every = Duration::from_millis(backplane.ttl_ms) / RENEW_PER_TTL;
    let mut renewed = tokio::time::Instant::now();
    loop {
        if renewed.elapsed() >= renew_every {
            if let Err(e) = renew(backplane, conn).await {
                return e;
            }
            renewed = tokio::time::Instant::now();
        }
        let mut keys = Vec::new();
        let mut ids = Vec::new();
        for room in backplane.rooms() {
            match room.tail_from() {
                Some(id) => {
                    keys.push(room.log_key.clone());
                    ids.push(id);
                }
                // Opened while Redis was unreachable: load it now.
                None => {
                    if let Err(e) = load(backplane, &room, conn).await {
                        return e;
                    }
                }
            }
        }
        if keys.is_empty() {
            backplane.rooms_changed.notified().await;
            continue;
        }
        let reply = redis::cmd("XREAD")
            .arg("COUNT")
            .arg(COUNT)
            .arg("BLOCK")
            .arg(BLOCK_MS)
            .arg("STREAMS")
            .arg(&keys)
            .arg(&ids)
            .query_async::<Value>(conn)
            .await;
        match reply {
            Ok(reply) => {
                for (key, entries) in streams(&reply) {
                    let Some(room) = backplane.room(key) else {
                        continue;
                    };
                    let other_epoch = match scripts::entries(&room.name, entries) {
                        Ok(entries) => room.push(entries),
                        Err(e) => {
                            tracing::warn!(room = room.name.as_str(), error = %e, "skipped a reply");
                            false
                        }
                    };
                    if other_epoch && let Err(e) = load(backplane, &room, conn).await {
                        return e;
                    }
                }
            }
            Err(e) if is_connection_error(&e) => return e,
            Err(e) => {
                // A refused command (someone else's key of another type, say) is not a reason to
                // spin: wait as long as a block would have.
                tracing::warn!(error = %e, "backplane XREAD refused");
                tokio::time::sleep(Duration::from_millis(BLOCK_MS)).await;
            }
        }
    }
}

/// Renews the TTL of every room this node has open, in one pipeline: a room a node still has
/// open must not expire in Redis under its readers, however quiet it is.
async fn renew(backplane: &Backplane, conn: &mut MultiplexedConnection) -> redis::RedisResult<()> {
    let rooms = backplane.rooms();
    if rooms.is_empty() {
        return Ok(());
    }
    let mut pipe = redis::pipe();
    for room in &rooms {
        pipe.cmd("PEXPIRE")
            .arg(&room.meta_key)
            .arg(backplane.ttl_ms)
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&room.log_key)
            .arg(backplane.ttl_ms)
            .ignore();
    }
    pipe.query_async::<()>(conn).await
}

/// Loads `room` from Redis: its epoch, head and what follows its window.
async fn load(
    backplane: &Backplane,
    room: &Shared,
    conn: &mut MultiplexedConnection,
) -> Result<(), redis::RedisError> {
    let reply = backplane
        .load_invocation(room)
        .invoke_async::<Value>(conn)
        .await?;
    if let Err(e) = room.apply_load(&reply) {
        tracing::warn!(room = room.name.as_str(), error = %e, "room not loaded");
    }
    Ok(())
}

/// `XREAD`'s answer as (stream key, entries) pairs; none when it timed out (`Nil`).
fn streams(reply: &Value) -> Vec<(&str, &Value)> {
    fn pair<'a>(key: &'a Value, entries: &'a Value) -> Option<(&'a str, &'a Value)> {
        Some((scripts::text(key)?, entries))
    }
    match reply {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(kv) if kv.len() == 2 => pair(&kv[0], &kv[1]),
                _ => None,
            })
            .collect(),
        // RESP3 answers with a map.
        Value::Map(streams) => streams.iter().filter_map(|(k, v)| pair(k, v)).collect(),
        _ => Vec::new(),
    }
}
