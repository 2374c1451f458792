//! What duplex keeps in Redis and the two Lua scripts that change it, plus the parsing of what
//! Redis answers into entries. Nothing here holds a connection: the store and the tail send these.
//!
//! Per room `R` there are two keys, hash-tagged `{R}` so that both land in one slot (a script
//! may only touch keys of one slot on a Redis Cluster):
//! - `duplex:{R}:meta`, a hash: `epoch` (this incarnation of the room's log, Redis's own clock
//!   in milliseconds when it was created) and `seq` (the last seq assigned);
//! - `duplex:{R}:log`, a stream of the room's messages, trimmed to the history length with an
//!   exact `MAXLEN`, each entry's id `<epoch>-<seq>`.
//!
//! Both keys carry a TTL (the room's idle time, `--room-idle`), renewed by every append, every
//! load and every node's tail while the node has the room open: a room no node has open any
//! more is deleted by Redis itself once the TTL runs out, as the nodes forget it from memory. No
//! node deletes keys (it cannot know that no other node uses them).
//!
//! Why the epoch is in every stream id: after Redis loses its data (a restart without
//! persistence, a flush) the next log starts again at seq 1, and a node still tailing from
//! `<old epoch>-57` would never see `1`. An epoch taken from Redis's clock is larger than any
//! before it, so the new log's ids sort after the old ones, the tail's `XREAD` returns them, and
//! the id itself says that the epoch changed. Every entry names its epoch; none can be taken for
//! a message of another incarnation.

use std::sync::Arc;

use redis::Value;

use super::super::entry::{Draft, Entry, Epoch, RoomName};

/// Creates the room's epoch if it has none (the Lua shared by both scripts).
const ENSURE_EPOCH: &str = r"
local epoch = redis.call('HGET', KEYS[1], 'epoch')
if not epoch then
  local t = redis.call('TIME')
  epoch = t[1] .. string.format('%03d', math.floor(tonumber(t[2]) / 1000))
  redis.call('HSET', KEYS[1], 'epoch', epoch, 'seq', 0)
end
";

/// Assigns the next seq and appends, atomically (a script runs alone in Redis), so every node
/// sees the same seq for the same message. KEYS: meta, log. ARGV: history, from, event, body,
/// to (empty: none), echo (1/0), ts_us, TTL in ms. Returns `{epoch, seq}`.
pub(super) fn append() -> redis::Script {
    redis::Script::new(&format!(
        "{ENSURE_EPOCH}
local seq = redis.call('HINCRBY', KEYS[1], 'seq', 1)
redis.call('XADD', KEYS[2], 'MAXLEN', ARGV[1], epoch .. '-' .. seq,
  'f', ARGV[2], 'e', ARGV[3], 'b', ARGV[4], 'o', ARGV[5], 'x', ARGV[6], 't', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[8])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
return {{epoch, seq}}"
    ))
}

/// The room's epoch (created if none), its head and the stream's entries after what the caller
/// already has: all of them when `ARGV[1]` (the caller's epoch, empty if none) is not the room's,
/// else those after `ARGV[2]` (the caller's head). One script, so the three agree. Renews both
/// keys' TTL to `ARGV[3]` ms. Returns `{epoch, head, entries}`.
pub(super) fn load() -> redis::Script {
    redis::Script::new(&format!(
        "{ENSURE_EPOCH}
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PEXPIRE', KEYS[2], ARGV[3])
local head = tonumber(redis.call('HGET', KEYS[1], 'seq'))
local start = '-'
if epoch == ARGV[1] then start = '(' .. epoch .. '-' .. ARGV[2] end
return {{epoch, head, redis.call('XRANGE', KEYS[2], start, '+')}}"
    ))
}

/// The meta hash's key for `room`.
pub(super) fn meta_key(room: &RoomName) -> String {
    format!("duplex:{{{}}}:meta", room.as_str())
}

/// The stream's key for `room`.
pub(super) fn log_key(room: &RoomName) -> String {
    format!("duplex:{{{}}}:log", room.as_str())
}

/// The stream id of `seq` in `epoch`.
pub(super) fn stream_id(epoch: Epoch, seq: u64) -> String {
    format!("{}-{seq}", epoch.0)
}

/// What Redis answered that duplex did not write (someone else's keys, another version).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected answer from Redis: {0}")]
pub struct BadReply(pub String);

fn bad(what: &str, value: &Value) -> BadReply {
    BadReply(format!("{what}: {value:?}"))
}

/// A bulk or simple string as text.
pub(super) fn text(value: &Value) -> Option<&str> {
    match value {
        Value::BulkString(b) => std::str::from_utf8(b).ok(),
        Value::SimpleString(s) => Some(s),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => text(other)?.parse().ok(),
    }
}

/// `{epoch, seq}` from [`append`].
pub(super) fn appended(value: &Value) -> Result<(Epoch, u64), BadReply> {
    match value {
        Value::Array(parts) if parts.len() == 2 => {
            let epoch = number(&parts[0]).ok_or_else(|| bad("epoch", &parts[0]))?;
            let seq = number(&parts[1]).ok_or_else(|| bad("seq", &parts[1]))?;
            Ok((Epoch(epoch), seq))
        }
        other => Err(bad("append", other)),
    }
}

/// `{epoch, seq}` from `HMGET <meta> epoch seq`: how far Redis got; `None` for a room it does
/// not hold.
pub(super) fn assigned(value: &Value) -> Option<(Epoch, u64)> {
    match value {
        Value::Array(parts) if parts.len() == 2 => {
            Some((Epoch(number(&parts[0])?), number(&parts[1])?))
        }
        _ => None,
    }
}

/// An entry read from a stream, with the epoch its id names.
pub(super) type Stamped = (Epoch, Arc<Entry>);

/// What [`load`] found: the room's epoch, its head, and the entries asked for.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) epoch: Epoch,
    pub(super) head: u64,
    pub(super) entries: Vec<Stamped>,
}

/// `{epoch, head, entries}` from [`load`].
pub(super) fn loaded(room: &RoomName, value: &Value) -> Result<Loaded, BadReply> {
    match value {
        Value::Array(parts) if parts.len() == 3 => {
            let epoch = number(&parts[0]).ok_or_else(|| bad("epoch", &parts[0]))?;
            let head = number(&parts[1]).ok_or_else(|| bad("head", &parts[1]))?;
            Ok(Loaded {
                epoch: Epoch(epoch),
                head,
                entries: entries(room, &parts[2])?,
            })
        }
        other => Err(bad("load", other)),
    }
}

/// A stream's entries (`[[id, [field, value, ...]], ...]`) as encoded entries with their epochs.
pub(super) fn entries(room: &RoomName, value: &Value) -> Result<Vec<Stamped>, BadReply> {
    let Value::Array(items) = value else {
        return match value {
            Value::Nil => Ok(Vec::new()),
            other => Err(bad("stream entries", other)),
        };
    };
    items.iter().map(|item| entry(room, item)).collect()
}

/// One stream entry, decoded back into the draft it was and encoded as this node's [`Entry`]:
/// the same fields and seq give the same JSON bytes on every node.
fn entry(room: &RoomName, item: &Value) -> Result<Stamped, BadReply> {
    let Value::Array(pair) = item else {
        return Err(bad("stream entry", item));
    };
    let [id, Value::Array(fields)] = pair.as_slice() else {
        return Err(bad("stream entry", item));
    };
    let (epoch, seq) = text(id)
        .and_then(|id| id.split_once('-'))
        .and_then(|(e, s)| Some((e.parse().ok()?, s.parse().ok()?)))
        .ok_or_else(|| bad("stream id", id))?;
    let mut draft = Draft {
        event: String::new(),
        from: String::new(),
        body: String::new(),
        to: None,
        echo: true,
        ts_us: 0,
    };
    for kv in fields.chunks(2) {
        let [k, v] = kv else {
            return Err(bad("stream fields", item));
        };
        let v = text(v).ok_or_else(|| bad("field value", v))?;
        match text(k) {
            Some("f") => draft.from = v.to_owned(),
            Some("e") => draft.event = v.to_owned(),
            Some("b") => draft.body = v.to_owned(),
            Some("o") if !v.is_empty() => draft.to = Some(v.to_owned()),
            Some("x") => draft.echo = v != "0",
            Some("t") => draft.ts_us = v.parse().map_err(|_| bad("ts_us", item))?,
            _ => {}
        }
    }
    Ok((Epoch(epoch), Arc::new(draft.into_entry(room, seq))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(s: &str) -> Value {
        Value::BulkString(s.as_bytes().to_vec())
    }

    #[test]
    fn a_stream_entry_becomes_the_same_message_json_as_a_local_publish() {
        let room = RoomName::parse("lobby").unwrap();
        let draft = Draft {
            event: "chat".into(),
            from: "alice".into(),
            body: "hi \"there\"".into(),
            to: Some("bob".into()),
            echo: false,
            ts_us: 1_796_000_000_000_123,
        };
        let local = draft.clone().into_entry(&room, 7);
        let fields = [
            "f",
            "alice",
            "e",
            "chat",
            "b",
            "hi \"there\"",
            "o",
            "bob",
            "x",
            "0",
        ]
        .iter()
        .map(|s| bulk(s))
        .chain([bulk("t"), bulk("1796000000000123")])
        .collect();
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("1796000000000-7"),
            Value::Array(fields),
        ])]);
        let got = entries(&room, &reply).unwrap();
        let (epoch, entry) = &got[0];
        assert_eq!(*epoch, Epoch(1_796_000_000_000));
        assert_eq!(entry.text.as_str(), local.text.as_str());
        assert_eq!(
            (entry.seq, entry.to.as_deref(), entry.echo),
            (7, Some("bob"), false)
        );
    }

    #[test]
    fn an_answer_duplex_did_not_write_is_an_error_not_a_message() {
        let room = RoomName::parse("lobby").unwrap();
        let reply = Value::Array(vec![Value::Array(vec![
            bulk("not-an-id"),
            Value::Array(vec![]),
        ])]);
        assert!(entries(&room, &reply).is_err());
        assert!(appended(&Value::Okay).is_err());
        assert_eq!(entries(&room, &Value::Nil).unwrap().len(), 0);
    }
}
