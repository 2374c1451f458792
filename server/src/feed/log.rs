//! The seam where a room's messages live: [`RoomLog`]. The feed and the [`Follower`] read a room
//! only through it, so where the log is kept (this process's memory today, [`MemoryLog`]; a shared
//! store such as a Redis stream later) is one implementation of this trait, and the four
//! transports do not change.
//!
//! The contract every implementation keeps:
//! - seqs are assigned by the log, contiguous from 1 (`append` returns the entry with its seq);
//! - an entry is encoded once ([`Draft::into_entry`]) and shared by every reader through an `Arc`;
//! - `read` never blocks on I/O and never skips silently: what was evicted before the cursor
//!   could see it is counted in [`Read::missed`], a cursor ahead of everything the log assigned
//!   gets [`Read::reset`] (for a shared store, after [`RoomLog::confirm`] asked it);
//! - `watch` is flagged changed on every append *after* the entry is readable, which is what the
//!   [`Follower`]'s no-missed-wake-up rule relies on.
//!
//! Why `read` is synchronous while `append` returns a future: reads happen once per delivery per
//! client (the hot path) and are served from memory in any design (a shared-store log keeps a
//! node-local window filled by its subscription); appends are once per message and may have to
//! travel to the store that assigns the seq.
//!
//! [`Follower`]: super::Follower
//! [`MemoryLog`]: super::MemoryLog

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

use super::entry::{Draft, Entry, Epoch, Limit, PublishError, Read, Reader, RoomName};

/// What [`RoomLog::append`] returns: the entry with its seq, once the log has it.
pub type Appended<'a> = Pin<Box<dyn Future<Output = Result<Arc<Entry>, PublishError>> + Send + 'a>>;

/// What [`RoomLog::confirm`] returns: done once the log knows.
pub type Confirmed<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// One room's append-only log. See the module docs for the contract.
pub trait RoomLog: Debug + Send + Sync {
    /// Appends `draft` with the next seq and wakes every watcher.
    fn append(&self, draft: Draft) -> Appended<'_>;

    /// What follows `since` for `client`: at most `limit` messages addressed to it, the number
    /// of seqs evicted before it could see them, or a reset when `since` is ahead of the log.
    /// A read never holds more than `limit` (messages and bytes); `next` then stops before the
    /// rest.
    fn read(&self, since: u64, reader: Reader<'_>, limit: Limit) -> Read;

    /// The seq of the newest message (0 when none yet).
    fn head(&self) -> u64;

    /// Called before the first read from a client's cursor `since` when it is ahead of
    /// [`RoomLog::head`]: learns whether the log ever assigned it. A shared store's node-local
    /// copy trails the store by a few ms, so a cursor handed out by another node can be ahead of
    /// it; `read` then answers "nothing yet" for a seq the store assigned and a reset only past
    /// that. The memory log is the store itself and knows at once.
    fn confirm(&self, since: u64) -> Confirmed<'_> {
        let _ = since;
        Box::pin(std::future::ready(()))
    }

    /// This incarnation of the log: see [`Epoch`].
    fn epoch(&self) -> Epoch;

    /// A receiver flagged changed on every append (its value is the new head).
    fn watch(&self) -> watch::Receiver<u64>;

    /// Number of messages currently kept.
    fn retained(&self) -> usize;
}

/// Where the feed gets a new room's log: one implementation per place logs are kept.
pub trait LogStore: Debug + Send + Sync {
    /// An empty log (or, for a shared store, the existing one) for `room`.
    fn open(&self, room: &RoomName) -> Arc<dyn RoomLog>;

    /// Whether logs live outside this process (a backplane), so a room this node never opened
    /// may still hold messages: reading it must open it rather than answer "empty".
    fn is_shared(&self) -> bool {
        false
    }

    /// Bytes of history this process keeps for all rooms, when the store knows (for `/metrics`).
    fn bytes_kept(&self) -> Option<usize> {
        None
    }
}
