//! The Server-Sent Events client: one `GET .../sse?since=0` whose `text/event-stream` body is
//! read for the whole phase, and [`SseParser`], which reassembles events however the bytes
//! were split across reads (a line, or even a `\r\n`, may straddle two chunks). After a
//! disconnect the client resubscribes with `Last-Event-ID: <last seq>`, as `EventSource` does.
//! Every client of every phase parses every event, so the parser hands events out borrowed from
//! buffers it reuses.
//!
//! Byte accounting: the response head counts as header bytes, each message's JSON (`data:`
//! value) as payload; everything else in the stream (`id:`/`event:` lines, `data: ` prefixes,
//! blank lines, chunk sizes, `: ping` comments) is framing.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use hyper::StatusCode;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::room_path;
use super::stream::take_stream_item;
use crate::clients::http::{HttpConn, HttpStream, StreamConn, snippet};
use crate::clients::inline::Stopped;
use crate::clients::{ClientError, ClientHandle, TransportClient};

/// How long the subscription's response head may take.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// One dispatched event, owned (what [`SseParser::feed`] returns).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SseEvent {
    /// The `id:` field, if any.
    pub id: Option<String>,
    /// The `event:` field, if any.
    pub event: Option<String>,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// One dispatched event, borrowed from the parser's buffers (what [`SseParser::feed_with`]
/// hands out: nothing is allocated per event).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SseEventRef<'a> {
    /// The `id:` field, if any.
    pub id: Option<&'a str>,
    /// The `event:` field, if any.
    pub event: Option<&'a str>,
    /// The `data:` lines joined with `\n`.
    pub data: &'a str,
}

impl SseEventRef<'_> {
    /// The event, owned.
    pub fn to_owned(&self) -> SseEvent {
        SseEvent {
            id: self.id.map(str::to_owned),
            event: self.event.map(str::to_owned),
            data: self.data.to_owned(),
        }
    }
}

/// An incremental `text/event-stream` parser (the WHATWG rules the server's output needs:
/// fields `id`, `event`, `data`, comments, `\n` or `\r\n` line ends). The pending event's
/// fields live in buffers that are cleared, not freed, after each dispatch, and a line that a
/// chunk holds whole is read in place: a stream of thousands of events allocates nothing per
/// event.
#[derive(Debug, Default)]
pub struct SseParser {
    /// The start of a line the last chunk ended in the middle of.
    line: Vec<u8>,
    id: String,
    has_id: bool,
    event: String,
    has_event: bool,
    data: String,
    has_data: bool,
    /// Comment lines seen (`: ping`).
    pub comments: u64,
}

impl SseParser {
    /// Feeds the next chunk of the stream and returns the events it completed.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SseEvent> {
        let mut out = Vec::new();
        let _ = self.feed_with(chunk, |event| {
            out.push(event.to_owned());
            Ok::<(), std::convert::Infallible>(())
        });
        out
    }

    /// Feeds the next chunk of the stream, handing each event it completes to `on_event`; the
    /// first error `on_event` returns stops the chunk and is returned.
    pub fn feed_with<E>(
        &mut self,
        chunk: &[u8],
        mut on_event: impl FnMut(SseEventRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut rest = chunk;
        // memchr's vectorised search: a byte-at-a-time scan for the line ends was a seventh of
        // an SSE delivery's user-space instructions (~1,800 of 13,500 for a ~260-byte event).
        while let Some(end) = memchr::memchr(b'\n', rest) {
            let (head, tail) = (&rest[..end], &rest[end + 1..]);
            rest = tail;
            if self.line.is_empty() {
                self.take_line(strip_cr(head), &mut on_event)?;
            } else {
                // Taken for the call and handed back cleared, so the buffer keeps its capacity.
                let mut line = std::mem::take(&mut self.line);
                line.extend_from_slice(head);
                let result = self.take_line(strip_cr(&line), &mut on_event);
                line.clear();
                self.line = line;
                result?;
            }
        }
        self.line.extend_from_slice(rest);
        Ok(())
    }

    fn take_line<E>(
        &mut self,
        line: &[u8],
        on_event: &mut impl FnMut(SseEventRef<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        if line.is_empty() {
            let result = if self.has_data {
                on_event(SseEventRef {
                    id: self.has_id.then_some(self.id.as_str()),
                    event: self.has_event.then_some(self.event.as_str()),
                    data: &self.data,
                })
            } else {
                Ok(())
            };
            self.id.clear();
            self.event.clear();
            self.data.clear();
            (self.has_id, self.has_event, self.has_data) = (false, false, false);
            return result;
        }
        if line[0] == b':' {
            self.comments += 1;
            return Ok(());
        }
        let (field, value) = match line.iter().position(|&b| b == b':') {
            Some(i) => {
                let value = &line[i + 1..];
                (&line[..i], value.strip_prefix(b" ").unwrap_or(value))
            }
            None => (line, &[][..]),
        };
        // Valid UTF-8 (what servers write) is checked, not copied; anything else is replaced.
        let value = match std::str::from_utf8(value) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(value),
        };
        match field {
            b"data" => {
                if self.has_data {
                    self.data.push('\n');
                }
                self.data.push_str(&value);
                self.has_data = true;
            }
            b"id" => {
                self.id.clear();
                self.id.push_str(&value);
                self.has_id = true;
            }
            b"event" => {
                self.event.clear();
                self.event.push_str(&value);
                self.has_event = true;
            }
            _ => {}
        }
        Ok(())
    }
}

/// A line without the `\r` of a `\r\n` end.
fn strip_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// An open `text/event-stream` body and its parser: the read loop every SSE client shares,
/// whatever server it follows (duplex, nchan, a generic endpoint), so each protocol only says
/// what an event means.
#[derive(Debug)]
pub struct EventStream {
    body: HttpStream,
    parser: SseParser,
}

impl EventStream {
    /// Reads `body` as an event stream.
    pub fn new(body: HttpStream) -> Self {
        EventStream {
            body,
            parser: SseParser::default(),
        }
    }

    /// Reads the stream until `stop` is cancelled (`Ok`), handing each event to `on_event` with
    /// the time its chunk arrived. The stream's end is a failure (a server does not end a
    /// subscription on its own while the phase runs), as is the first error `on_event` returns.
    ///
    /// The one wait for `stop` is made here for the whole stream and polled only once the token
    /// woke it ([`Stopped`]), not beside every chunk.
    pub async fn follow(
        &mut self,
        stop: &CancellationToken,
        mut on_event: impl FnMut(SseEventRef<'_>, Instant) -> Result<(), ClientError>,
    ) -> Result<(), ClientError> {
        let mut stopped = Stopped::new(stop);
        loop {
            let chunk = tokio::select! {
                biased;
                _ = &mut stopped => return Ok(()),
                c = self.body.chunk() => c,
            };
            let data = chunk.ok_or(ClientError::Closed)??;
            let at = Instant::now();
            self.parser.feed_with(&data, |event| on_event(event, at))?;
        }
    }
}

/// An SSE client: one subscription's event stream (which holds and drives its connection).
#[derive(Debug)]
pub struct SseClient {
    stream: EventStream,
}

/// Hands one event's item to the client; an item only a WebSocket sender receives (`ack`,
/// `error`) is not the wire API on SSE.
fn take_event(
    me: &mut ClientHandle,
    event: SseEventRef<'_>,
    at: Instant,
) -> Result<(), ClientError> {
    match take_stream_item(me, event.data, at, "SSE data")? {
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
        let conn = StreamConn::open(&me.phase).await?;
        let node = conn.node();
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
            let body = response.into_body().collect().await;
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
        me.on_node(node);
        me.connected(start);
        Ok(Self {
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
        self.stream
            .follow(stop, |event, at| take_event(me, event, at))
            .await
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
