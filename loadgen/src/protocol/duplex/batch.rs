//! What short and long polls have in common: opening the client's keep-alive connection, one
//! request on it (reopened when the server closed it while idle), and the accounting of its
//! answer: a `200` batch (each message handed to the client, the message JSON counted as payload
//! and the rest of the body as framing), a `204` (a wasted answer, counted whole as empty), or an
//! error.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::StatusCode;
use report::results::TraceEvent;
use serde::Deserialize;
use serde_json::value::RawValue;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::wire_ref::MessageRef;
use crate::clients::http::{Answer, HttpConn, snippet};
use crate::clients::{ClientError, ClientHandle};

/// A batch with its messages left as raw JSON, so their exact byte length is known.
#[derive(Debug, Deserialize)]
struct RawBatch<'a> {
    #[serde(borrow)]
    messages: Vec<&'a RawValue>,
    next: u64,
    missed: u64,
    reset: bool,
}

/// Opens a polling client's keep-alive connection and records its connect time.
pub async fn open(me: &mut ClientHandle) -> Result<HttpConn, ClientError> {
    let start = Instant::now();
    let conn = HttpConn::open(&me.phase).await?;
    me.on_node(conn.node());
    me.connected(start);
    Ok(conn)
}

/// Makes one poll for `path` (built from the client's current `since`) and accounts for its
/// answer. Returns `Ok` at once when `stop` comes first; an `Err` leaves the connection in an
/// unknown state, so the caller gives it up.
pub async fn poll_once(
    conn: &mut HttpConn,
    me: &mut ClientHandle,
    path: String,
    limit: Duration,
    stop: &CancellationToken,
) -> Result<(), ClientError> {
    if !conn.is_open() {
        // The server may close an idle keep-alive connection; that is not a failure. But it is
        // a reconnect (after a node died, the one its poll clients make), so it is counted.
        *conn = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(()),
            r = open(me) => r?,
        };
        me.phase
            .meter
            .reconnects
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    let request = HttpConn::request(&me.phase, "GET", &path, None);
    let answer = tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(()),
        r = conn.exchange(&me.phase, request, limit) => r?,
    };
    take_answer(me, answer)
}

/// Accounts for a poll's answer and hands its messages to the client.
fn take_answer(me: &mut ClientHandle, answer: Answer) -> Result<(), ClientError> {
    // A clone of the Arc, so the client can be borrowed mutably while counting.
    let meter = std::sync::Arc::clone(&me.phase.meter);
    meter
        .request_rtt
        .record_us((answer.end - answer.start).as_micros() as u64);
    let mut messages = 0u32;
    match answer.status {
        StatusCode::NO_CONTENT => {
            meter.traffic.empty_responses.fetch_add(1, Relaxed);
            meter
                .traffic
                .empty_down
                .fetch_add(answer.bytes_down, Relaxed);
        }
        StatusCode::OK => {
            meter
                .traffic
                .header_down
                .fetch_add(answer.head_len, Relaxed);
            let batch: RawBatch<'_> = serde_json::from_slice(&answer.body)
                .map_err(|e| ClientError::Protocol(format!("bad batch: {e}")))?;
            if batch.missed > 0 {
                me.on_gap(batch.missed);
            }
            if batch.reset {
                me.on_reset(batch.next);
            }
            for raw in batch.messages {
                let json = raw.get();
                meter
                    .traffic
                    .payload_down
                    .fetch_add(json.len() as u64, Relaxed);
                let message: MessageRef<'_> = serde_json::from_str(json)
                    .map_err(|e| ClientError::Protocol(format!("bad message: {e}")))?;
                me.on_message(message.seq, &message.body, answer.end);
                messages += 1;
            }
        }
        status => {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: snippet(&answer.body),
            });
        }
    }
    if me.trace.is_some() {
        let event = TraceEvent::Request {
            start_ms: me.phase.ms(answer.start),
            end_ms: me.phase.ms(answer.end),
            status: answer.status.as_u16(),
            messages,
            bytes_down: answer.bytes_down,
        };
        me.trace_event(event);
    }
    Ok(())
}
