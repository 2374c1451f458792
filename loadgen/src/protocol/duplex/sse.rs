//! The Server-Sent Events client: one `GET .../sse?since=0` whose `text/event-stream` body is
//! read for the whole phase, and [`SseParser`], which reassembles events however the bytes
//! were split across reads (a line, or even a `\r\n`, may straddle two chunks). After a
//! disconnect the client resubscribes with `Last-Event-ID: <last seq>`, as `EventSource` does.
//!
//! Byte accounting: the response head counts as header bytes, each message's JSON (`data:`
//! value) as payload; everything else in the stream (`id:`/`event:` lines, `data: ` prefixes,
//! blank lines, chunk sizes, `: ping` comments) is framing.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::room_path;
use super::stream::take_stream_item;
use crate::clients::http::{HttpConn, snippet};
use crate::clients::{ClientError, ClientHandle, TransportClient};

/// How long the subscription's response head may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One dispatched event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// An incremental `text/event-stream` parser (the WHATWG rules the server's output needs:
/// fields `id`, `event`, `data`, comments, `\n` or `\r\n` line ends).
#[derive(Debug, Default)]
pub struct SseParser {
    line: Vec<u8>,
    pending: SseEvent,
    has_data: bool,
    /// Comment lines seen (`: ping`).
    pub comments: u64,
}

impl SseParser {
    /// Feeds the next chunk of the stream and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let mut rest = chunk;
        while let Some(end) = rest.iter().position(|&b| b == b'\n') {
            self.line.extend_from_slice(&rest[..end]);
            rest = &rest[end + 1..];
            if self.line.last() == Some(&b'\r') {
                self.line.pop();
            }
            // Taken for the call and handed back cleared: the buffer keeps its capacity, so a
            // stream of thousands of events does not regrow it from nothing on every line.
            let mut line = std::mem::take(&mut self.line);
            self.take_line(&line, &mut out);
            line.clear();
            self.line = line;
        }
        self.line.extend_from_slice(rest);
        out
    }

    fn take_line(&mut self, line: &[u8], out: &mut Vec<SseEvent>) {
        if line.is_empty() {
            if self.has_data {
                out.push(std::mem::take(&mut self.pending));
            } else {
                self.pending = SseEvent::default();
            }
            self.has_data = false;
            return;
        }
        if line[0] == b':' {
            self.comments += 1;
            return;
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        let value = String::from_utf8_lossy(value);
        match field {
            b"data" => {
                if self.has_data {
                    self.pending.data.push('\n');
                }
                self.pending.data.push_str(&value);
                self.has_data = true;
            }
            b"id" => self.pending.id = Some(value.into_owned()),
            b"event" => self.pending.event = Some(value.into_owned()),
            _ => {}
        }
    }
}

/// An open `text/event-stream` body and its parser: the read loop every SSE client shares,
/// whatever server it follows (duplex, nchan, a generic endpoint), so each protocol only says
/// what an event means.
#[derive(Debug)]
pub struct EventStream {
    body: Incoming,
    parser: SseParser,
}

impl EventStream {
    /// Reads `body` as an event stream.
    pub fn new(body: Incoming) -> Self {
        EventStream {
            body,
            parser: SseParser::default(),
        }
    }

    /// The events completed by the next chunk, with the time the chunk arrived (empty when a
    /// chunk completed none); `None` once `stop` is cancelled. The stream's end is a failure:
    /// a server does not end a subscription on its own while the phase runs.
    pub async fn next(
        &mut self,
        stop: &CancellationToken,
    ) -> Result<Option<(Vec<SseEvent>, Instant)>, ClientError> {
        loop {
            let frame = tokio::select! {
                biased;
                _ = stop.cancelled() => return Ok(None),
                f = self.body.frame() => f,
            };
            let frame = frame.ok_or(ClientError::Closed)??;
            if let Some(data) = frame.data_ref() {
                return Ok(Some((self.parser.feed(data), Instant::now())));
            }
        }
    }
}

/// An SSE client: one subscription's connection and its event stream.
#[derive(Debug)]
pub struct SseClient {
    /// Kept for the stream's lifetime: dropping it ends the connection.
    _conn: HttpConn,
    stream: EventStream,
}

/// Hands one event's item to the client; an item only a WebSocket sender receives (`ack`,
/// `error`) is not the wire API on SSE.
fn take_event(me: &mut ClientHandle, event: &SseEvent, at: Instant) -> Result<(), ClientError> {
    match take_stream_item(me, &event.data, at, "SSE data")? {
        None => Ok(()),
        Some(other) => Err(ClientError::Protocol(format!(
            "unexpected SSE item {other:?}"
        ))),
    }
}

impl TransportClient for SseClient {
    type Setup = ();

    /// Opens a connection and subscribes from `me.since` (with `Last-Event-ID` on a resubscribe,
    /// as `EventSource` does).
    async fn connect(me: &mut ClientHandle, _: &()) -> Result<Self, ClientError> {
        let start = Instant::now();
        let mut conn = HttpConn::open(&me.phase).await?;
        let path = room_path(
            &me.phase,
            &format!("sse?since={}&client={}", me.since, me.id),
        );
        let mut request = HttpConn::event_source_request(&me.phase, &path);
        let headers = request.headers_mut();
        if me.since > 0 {
            headers.insert("last-event-id", me.since.into());
        }
        let (response, head_len) = conn
            .open_stream(&me.phase, request, SUBSCRIBE_TIMEOUT)
            .await?;
        if response.status() != StatusCode::OK {
            let status = response.status().as_u16();
            let body = response.into_body().collect().await.map(|b| b.to_bytes());
            return Err(ClientError::Status {
                status,
                body: body.map(|b| snippet(&b)).unwrap_or_default(),
            });
        }
        me.phase
            .meter
            .traffic
            .header_down
            .fetch_add(head_len, Relaxed);
        me.on_node(conn.node());
        me.connected(start);
        Ok(Self {
            _conn: conn,
            stream: EventStream::new(response.into_body()),
        })
    }

    /// Reads the stream until `stop`; its end is a failure (the server never ends a stream on
    /// its own while the phase runs).
    async fn run(
        &mut self,
        me: &mut ClientHandle,
        stop: &CancellationToken,
    ) -> Result<(), ClientError> {
        while let Some((events, at)) = self.stream.next(stop).await? {
            for event in events {
                take_event(me, &event, at)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = "id: 1\nevent: chat\ndata: {\"a\":1}\n\n: ping\n\r\nid: 2\r\nevent: chat\r\ndata: x\r\ndata: y\r\n\r\n";

    #[test]
    fn parses_events_split_at_every_byte() {
        let mut whole = SseParser::default();
        let expected = whole.feed(STREAM.as_bytes());
        assert_eq!(expected.len(), 2);
        assert_eq!(expected[0].id.as_deref(), Some("1"));
        assert_eq!(expected[0].data, "{\"a\":1}");
        assert_eq!(expected[1].data, "x\ny");
        assert_eq!(whole.comments, 1);
        for split in 0..STREAM.len() {
            let mut p = SseParser::default();
            let (a, b) = STREAM.as_bytes().split_at(split);
            let mut got = p.feed(a);
            got.extend(p.feed(b));
            assert_eq!(got, expected, "split at {split}");
        }
        let mut p = SseParser::default();
        let got: Vec<_> = STREAM.bytes().flat_map(|b| p.feed(&[b])).collect();
        assert_eq!(got, expected);
    }

    #[test]
    fn comment_only_blocks_dispatch_nothing() {
        let mut p = SseParser::default();
        assert!(p.feed(b": ping\n\n: ping\n\n").is_empty());
        assert_eq!(p.comments, 2);
    }
}
