//! nchan's polling subscribers. Each answer carries one message (nchan's default, without
//! multipart answers) and its id as `Last-Modified` + `Etag`; the next request sends them back
//! as `If-Modified-Since` + `If-None-Match`.
//!
//! - Interval polling (`short_poll`): a request per timer tick with a random phase; a `304` means
//!   nothing newer. After a `200` the client asks again at once instead of waiting for the
//!   next tick, since one message per answer would otherwise leave it behind forever whenever
//!   more than one message arrives per interval.
//! - Long polling: the request is held until a message arrives or nchan's subscriber timeout
//!   passes (then `304`), and the next one leaves at once.
//!
//! Accounting as for duplex's polls: a `200`'s head counts as header bytes, its body as payload;
//! a `304` counts whole as an empty answer.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::StatusCode;
use rand::Rng;
use report::results::TraceEvent;
use tokio::time::{Instant, Interval, MissedTickBehavior, interval_at};
use tokio_util::sync::CancellationToken;

use super::sub_path;
use crate::clients::http::{Answer, HttpConn, snippet};
use crate::clients::{ClientError, ClientHandle, TransportClient};
use crate::codec::nchan::PollCursor;

/// How long an interval poll may take.
const POLL_TIMEOUT: Duration = Duration::from_secs(10);
/// How much longer than nchan's own subscriber timeout (30 s in peers/nchan) a long poll may be
/// held before the client gives up on it.
const LONG_POLL_LIMIT: Duration = Duration::from_secs(40);

/// What one poll brought.
enum Polled {
    /// A message (or an answer to a stopped client).
    Message,
    /// Nothing newer.
    Empty,
}

/// `ClientHandle::resume` holds the cursor as `Last-Modified\nEtag`.
fn cursor(me: &ClientHandle) -> Option<PollCursor> {
    let (lm, etag) = me.resume.as_deref()?.split_once('\n')?;
    Some(PollCursor {
        last_modified: lm.to_owned(),
        etag: etag.to_owned(),
    })
}

async fn open(me: &mut ClientHandle) -> Result<HttpConn, ClientError> {
    let start = Instant::now();
    let conn = HttpConn::open(&me.phase).await?;
    me.connected(start);
    Ok(conn)
}

/// One poll of `kind` from the client's cursor, and its accounting.
async fn poll_once(
    conn: &mut HttpConn,
    me: &mut ClientHandle,
    kind: &str,
    limit: Duration,
    stop: &CancellationToken,
) -> Result<Polled, ClientError> {
    if !conn.is_open() {
        *conn = tokio::select! {
            biased;
            _ = stop.cancelled() => return Ok(Polled::Message),
            r = open(me) => r?,
        };
    }
    let mut request = HttpConn::request(&me.phase, "GET", &sub_path(&me.phase, kind), None);
    if let Some(c) = cursor(me) {
        for (name, value) in c.request_headers() {
            let value = value
                .parse()
                .map_err(|_| ClientError::Protocol(format!("nchan sent a bad cursor {value:?}")))?;
            request.headers_mut().insert(name, value);
        }
    }
    let answer = tokio::select! {
        biased;
        _ = stop.cancelled() => return Ok(Polled::Message),
        r = conn.exchange(&me.phase, request, limit) => r?,
    };
    take_answer(me, answer)
}

fn take_answer(me: &mut ClientHandle, answer: Answer) -> Result<Polled, ClientError> {
    let meter = std::sync::Arc::clone(&me.phase.meter);
    meter
        .request_rtt
        .record_us((answer.end - answer.start).as_micros() as u64);
    let polled = match answer.status {
        // 304: nothing newer (an interval poll at once, a long poll at nchan's timeout);
        // 408: a long poll's timeout on some nchan versions.
        StatusCode::NOT_MODIFIED | StatusCode::REQUEST_TIMEOUT => {
            meter.traffic.empty_responses.fetch_add(1, Relaxed);
            meter
                .traffic
                .empty_down
                .fetch_add(answer.bytes_down, Relaxed);
            Polled::Empty
        }
        StatusCode::OK => {
            meter
                .traffic
                .header_down
                .fetch_add(answer.head_len, Relaxed);
            let header = |name: &str| {
                answer
                    .headers
                    .get(name)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_owned)
            };
            let next = PollCursor::from_answer(
                header("last-modified").as_deref(),
                header("etag").as_deref(),
            )
            .map_err(|e| ClientError::Protocol(e.to_string()))?;
            let body = std::str::from_utf8(&answer.body).map_err(|_| {
                ClientError::Protocol("nchan sent a message that is not UTF-8".into())
            })?;
            me.on_stamped(body, answer.end)?;
            me.resume = Some(format!("{}\n{}", next.last_modified, next.etag));
            Polled::Message
        }
        status => {
            return Err(ClientError::Status {
                status: status.as_u16(),
                body: snippet(&answer.body),
            });
        }
    };
    if me.trace.is_some() {
        let event = TraceEvent::Request {
            start_ms: me.phase.ms(answer.start),
            end_ms: me.phase.ms(answer.end),
            status: answer.status.as_u16(),
            messages: u32::from(matches!(polled, Polled::Message)),
            bytes_down: answer.bytes_down,
        };
        me.trace_event(event);
    }
    Ok(polled)
}

/// nchan interval polling (`/sub/poll/<room>`).
#[derive(Debug)]
pub struct IntervalPollClient {
    conn: HttpConn,
    ticks: Interval,
}

impl TransportClient for IntervalPollClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let conn = open(me).await?;
        let period = me.phase.short_poll_interval;
        let offset = me.rng.random_range(Duration::ZERO..period);
        let mut ticks = interval_at(Instant::now() + offset, period);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Skip);
        Ok(Self { conn, ticks })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let mut behind = false;
        loop {
            if !behind {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    _ = self.ticks.tick() => {}
                }
            } else if stop.is_cancelled() {
                return Ok(());
            }
            let polled = poll_once(&mut self.conn, me, "poll", POLL_TIMEOUT, stop).await?;
            behind = matches!(polled, Polled::Message);
        }
    }
}

/// nchan long polling (`/sub/longpoll/<room>`).
#[derive(Debug)]
pub struct LongPollClient {
    conn: HttpConn,
}

impl TransportClient for LongPollClient {
    type Setup = ();

    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        Ok(Self {
            conn: open(me).await?,
        })
    }

    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        let limit = LONG_POLL_LIMIT.max(me.phase.long_poll_timeout + Duration::from_secs(5));
        loop {
            if stop.is_cancelled() {
                return Ok(());
            }
            poll_once(&mut self.conn, me, "longpoll", limit, stop).await?;
        }
    }
}
