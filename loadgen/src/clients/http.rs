//! One HTTP/1.1 keep-alive connection for a simulated client, built on hyper's client
//! connection API over a counted socket (see `conn.rs`), so every byte of every answer is known.
//! Short-poll and long-poll clients and HTTP publishers use [`HttpConn`], whose connection
//! future runs in a task of its own; an SSE subscription uses [`StreamConn`], whose connection
//! is driven by the client's task as it reads the stream (see `inline.rs`: one task wake-up per
//! delivery instead of three).
//!
//! Per answer it reports the status, the body, the bytes read for it (counter before vs after,
//! exact since one request at a time is in flight on a connection) and the size of the response
//! head, reconstructed from the parsed status line and headers (hyper does not expose the raw
//! head; the reconstruction is byte-exact for the `name: value\r\n` form servers write).
//! A body the server compressed (`Content-Encoding: gzip` or `deflate`; the browser profile
//! accepts them, as a browser does) is decoded before anyone reads it, while the bytes counted
//! are the compressed ones that crossed the socket.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::{Body, Incoming};
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::inline::InlineWaker;
use super::profile::RequestKind;
use super::{ClientError, PhaseCtx};
use crate::conn::{ClientIo, ConnBytes};
use crate::meter::PhaseMeter;

/// A keep-alive connection and the task driving it (aborted when this is dropped).
#[derive(Debug)]
pub struct HttpConn {
    send: SendRequest<Full<Bytes>>,
    bytes: Arc<ConnBytes>,
    driver: JoinHandle<()>,
}

impl Drop for HttpConn {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

/// A complete answer.
#[derive(Debug)]
pub struct Answer {
    /// HTTP status.
    pub status: StatusCode,
    /// Status line and headers, bytes.
    pub head_len: u64,
    /// The headers (nchan's poll cursor rides in them).
    pub headers: hyper::HeaderMap,
    /// The body.
    pub body: Bytes,
    /// Bytes read for this answer (head + body + framing).
    pub bytes_down: u64,
    /// When the request was sent.
    pub start: Instant,
    /// When the answer was complete.
    pub end: Instant,
}

/// Keeps a request counted as in flight until dropped (also when a request is abandoned).
struct InFlight<'a>(&'a PhaseMeter);

impl<'a> InFlight<'a> {
    fn new(meter: &'a PhaseMeter) -> Self {
        meter.request_started();
        Self(meter)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.request_finished();
    }
}

impl HttpConn {
    /// Connects (TCP + HTTP/1 handshake, which sends nothing) to the next node in turn.
    pub async fn open(phase: &PhaseCtx) -> Result<HttpConn, ClientError> {
        Self::open_to(phase, None).await
    }

    /// [`HttpConn::open`] on node `node` while it is up (see [`Connector::connect_to`]).
    ///
    /// [`Connector::connect_to`]: crate::conn::Connector::connect_to
    pub async fn open_to(phase: &PhaseCtx, node: Option<usize>) -> Result<HttpConn, ClientError> {
        let connect = phase.connector.connect_to(node, &phase.meter);
        let (io, bytes) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
        let (send, conn) = http1::handshake(TokioIo::new(io)).await?;
        let driver = tokio::spawn(async move {
            // The connection's end (EOF, reset) surfaces as an error on the next request.
            let _ = conn.await;
        });
        Ok(HttpConn {
            send,
            bytes,
            driver,
        })
    }

    /// The node it is connected to.
    pub fn node(&self) -> usize {
        self.bytes.node
    }

    /// Whether the connection can take another request.
    pub fn is_open(&self) -> bool {
        !self.send.is_closed()
    }

    /// A request for `path` on this phase's server.
    pub fn request(
        phase: &PhaseCtx,
        method: &str,
        path: &str,
        body: Option<String>,
    ) -> Request<Full<Bytes>> {
        let mut builder = Request::builder()
            .method(method)
            .uri(path)
            .header(hyper::header::HOST, &phase.authority);
        if body.is_some() {
            builder = builder.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        let mut request = builder
            .body(Full::new(body.map(Bytes::from).unwrap_or_default()))
            .expect("a request built from valid parts");
        let kind = if method == "POST" {
            RequestKind::FetchPost
        } else {
            RequestKind::Fetch
        };
        phase
            .profile
            .apply(request.headers_mut(), kind, &phase.authority);
        request
    }

    /// The `EventSource` request for `path`: `Accept: text/event-stream` and the profile's
    /// EventSource headers (`Cache-Control`, `Pragma` beside a fetch's).
    pub fn event_source_request(phase: &PhaseCtx, path: &str) -> Request<Full<Bytes>> {
        let mut request = HttpConn::request(phase, "GET", path, None);
        let headers = request.headers_mut();
        headers.insert(
            hyper::header::ACCEPT,
            hyper::header::HeaderValue::from_static("text/event-stream"),
        );
        phase
            .profile
            .apply(headers, RequestKind::EventSource, &phase.authority);
        request
    }

    /// Sends `request` and reads the whole answer within `limit`.
    pub async fn exchange(
        &mut self,
        phase: &PhaseCtx,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<Answer, ClientError> {
        let before = self.bytes.read.load(Relaxed);
        let start = Instant::now();
        let _in_flight = InFlight::new(&phase.meter);
        let work = async {
            let response = self.send.send_request(request).await?;
            let head_len = head_len(&response);
            let status = response.status();
            let (parts, body) = response.into_parts();
            let body = decoded(&parts.headers, body.collect().await?.to_bytes())?;
            Ok::<_, ClientError>((status, head_len, parts.headers, body))
        };
        let (status, head_len, headers, body) = tokio::time::timeout(limit, work)
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        let end = Instant::now();
        Ok(Answer {
            status,
            head_len,
            headers,
            body,
            bytes_down: self.bytes.read.load(Relaxed) - before,
            start,
            end,
        })
    }

    /// Sends `request` and returns once the response head arrived (for streams), with the head's
    /// size; the request is in flight only until then.
    pub async fn open_stream(
        &mut self,
        phase: &PhaseCtx,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<(Response<Incoming>, u64), ClientError> {
        let _in_flight = InFlight::new(&phase.meter);
        let response = tokio::time::timeout(limit, self.send.send_request(request))
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        let len = head_len(&response);
        Ok((response, len))
    }
}

/// hyper's connection future for one client connection, boxed: it is moved from the connect
/// into the open stream and lives in the client's own future, and inline it took its size (about
/// a kilobyte) in each of the client future's states (3.2 KiB more loadgen memory per SSE
/// client at 19,000 clients, `docs/ARCHITECTURE.md`).
type Conn = Box<Connection<TokioIo<ClientIo>, Full<Bytes>>>;

/// A connection for one streamed answer (an SSE subscription), driven by whoever reads it: no
/// task of its own, so a chunk reaches its reader without a task wake-up between them.
#[derive(Debug)]
pub struct StreamConn {
    send: SendRequest<Full<Bytes>>,
    conn: Conn,
    bytes: Arc<ConnBytes>,
}

impl StreamConn {
    /// Connects (TCP + HTTP/1 handshake, which sends nothing) to the next node in turn.
    pub async fn open(phase: &PhaseCtx) -> Result<StreamConn, ClientError> {
        let connect = phase.connector.connect(&phase.meter);
        let (io, bytes) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| ClientError::Timeout(CONNECT_TIMEOUT))??;
        let (send, conn) = http1::handshake(TokioIo::new(io)).await?;
        Ok(StreamConn {
            send,
            conn: Box::new(conn),
            bytes,
        })
    }

    /// The node it is connected to.
    pub fn node(&self) -> usize {
        self.bytes.node
    }

    /// Sends `request`, driving the connection, and returns once the response head arrived,
    /// with the head's size and the body to read (which drives the connection from then on);
    /// the request is in flight only until the head.
    pub async fn open_stream(
        mut self,
        phase: &PhaseCtx,
        request: Request<Full<Bytes>>,
        limit: Duration,
    ) -> Result<(Response<HttpStream>, u64), ClientError> {
        let _in_flight = InFlight::new(&phase.meter);
        let inline = InlineWaker::default();
        let mut answer = pin!(self.send.send_request(request));
        let conn = &mut self.conn;
        let head = std::future::poll_fn(|cx| {
            inline.poll_inline(cx, |cx| {
                if let Poll::Ready(answer) = answer.as_mut().poll(cx) {
                    return Poll::Ready(answer.map_err(ClientError::from));
                }
                // The connection ending before the head is the request's failure.
                match ready!(Pin::new(&mut *conn).poll(cx)) {
                    Err(e) => Poll::Ready(Err(e.into())),
                    Ok(()) => Poll::Ready(Err(ClientError::Closed)),
                }
            })
        });
        let response = tokio::time::timeout(limit, head)
            .await
            .map_err(|_| ClientError::Timeout(limit))??;
        let len = head_len(&response);
        let (parts, body) = response.into_parts();
        let stream = HttpStream {
            body,
            conn: Some(self.conn),
            ended: None,
            _send: self.send,
            inline,
        };
        Ok((Response::from_parts(parts, stream), len))
    }
}

/// A streamed answer's body and the connection it arrives on, driven as it is read (see
/// [`StreamConn`]).
#[derive(Debug)]
pub struct HttpStream {
    body: Incoming,
    /// `None` once it ended; the chunks it had handed to `body` are still read.
    conn: Option<Conn>,
    /// Why the connection ended (hyper's error), reported after the body's last chunk.
    ended: Option<hyper::Error>,
    /// Kept: dropping it would tell the connection no more requests come.
    _send: SendRequest<Full<Bytes>>,
    inline: InlineWaker,
}

impl HttpStream {
    /// The body's next chunk (trailers and other frames skipped), or `None` at its end; the
    /// connection is polled whenever the body has nothing, so it reads the socket.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Bytes, ClientError>>> {
        let HttpStream {
            body,
            conn,
            ended,
            inline,
            ..
        } = self;
        inline.poll_inline(cx, |cx| {
            loop {
                match Pin::new(&mut *body).poll_frame(cx) {
                    Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                        Ok(data) => return Poll::Ready(Some(Ok(data))),
                        Err(_) => continue,
                    },
                    Poll::Ready(Some(Err(e))) => return Poll::Ready(Some(Err(e.into()))),
                    Poll::Ready(None) => {
                        return Poll::Ready(ended.take().map(|e| Err(e.into())));
                    }
                    Poll::Pending => {}
                }
                let Some(c) = conn.as_mut() else {
                    return Poll::Pending;
                };
                match ready!(Pin::new(c).poll(cx)) {
                    Ok(()) => {}
                    Err(e) => *ended = Some(e),
                }
                // Dropped, it drops the body's sender: the body hands out what it still holds,
                // then ends.
                *conn = None;
            }
        })
    }

    /// [`HttpStream::poll_chunk`] as a future.
    pub async fn chunk(&mut self) -> Option<Result<Bytes, ClientError>> {
        std::future::poll_fn(|cx| self.poll_chunk(cx)).await
    }

    /// The whole rest of the body (for an error answer's text).
    pub async fn collect(mut self) -> Result<Bytes, ClientError> {
        let mut all = BytesMut::new();
        while let Some(chunk) = self.chunk().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }
}

/// How long a TCP connect may take before it counts as failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// The size of a response's status line and headers as written on the wire.
pub fn head_len<B>(response: &Response<B>) -> u64 {
    let status = response.status();
    let reason = status.canonical_reason().unwrap_or("");
    // "HTTP/1.1 200 OK\r\n"
    let mut n = 9 + 3 + 1 + reason.len() + 2;
    for (name, value) in response.headers() {
        n += name.as_str().len() + 2 + value.len() + 2;
    }
    (n + 2) as u64
}

/// Most bytes a compressed answer may decode to: far above any chat batch, and a bound on
/// what a hostile server's small answer can make the loadgen hold.
const DECODED_LIMIT: u64 = 16 << 20;

/// `body` as the server meant it: decoded when `headers` say it was compressed.
fn decoded(headers: &hyper::HeaderMap, body: Bytes) -> Result<Bytes, ClientError> {
    use std::io::Read;
    let Some(encoding) = headers.get(hyper::header::CONTENT_ENCODING) else {
        return Ok(body);
    };
    let encoding = encoding.to_str().unwrap_or("").trim().to_ascii_lowercase();
    let mut out = Vec::new();
    let read = match encoding.as_str() {
        "identity" | "" => return Ok(body),
        "gzip" | "x-gzip" => flate2::read::GzDecoder::new(&body[..])
            .take(DECODED_LIMIT + 1)
            .read_to_end(&mut out),
        // HTTP's `deflate` is the zlib format (RFC 9110), as Node's zlib writes it.
        "deflate" => flate2::read::ZlibDecoder::new(&body[..])
            .take(DECODED_LIMIT + 1)
            .read_to_end(&mut out),
        other => {
            return Err(ClientError::Protocol(format!(
                "the server compressed an answer with {other:?}; the loadgen decodes gzip and deflate"
            )));
        }
    };
    read.map_err(|e| {
        ClientError::Protocol(format!("a {encoding} answer that does not decode: {e}"))
    })?;
    if out.len() as u64 > DECODED_LIMIT {
        return Err(ClientError::Protocol(format!(
            "a {encoding} answer decodes to more than {DECODED_LIMIT} bytes"
        )));
    }
    Ok(Bytes::from(out))
}

/// The start of a body, for error messages.
pub fn snippet(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
    text.into_owned()
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn encoded(name: &str) -> hyper::HeaderMap {
        let mut h = hyper::HeaderMap::new();
        h.insert(hyper::header::CONTENT_ENCODING, name.parse().unwrap());
        h
    }

    #[test]
    fn gzip_and_deflate_answers_are_decoded_and_others_named() {
        let text = "4{\"body\":\"dx1 0 1 2;....\"}".repeat(50);
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(text.as_bytes()).unwrap();
        let gz = Bytes::from(gz.finish().unwrap());
        assert!(gz.len() < text.len());
        assert_eq!(
            decoded(&encoded("gzip"), gz.clone()).unwrap(),
            text.as_bytes()
        );
        let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        z.write_all(text.as_bytes()).unwrap();
        let z = Bytes::from(z.finish().unwrap());
        assert_eq!(decoded(&encoded("deflate"), z).unwrap(), text.as_bytes());
        let plain = Bytes::from_static(b"ok");
        assert_eq!(
            decoded(&hyper::HeaderMap::new(), plain.clone()).unwrap(),
            plain
        );
        let e = decoded(&encoded("br"), plain).unwrap_err().to_string();
        assert!(
            e.contains("\"br\"") && e.contains("gzip and deflate"),
            "{e}"
        );
        let e = decoded(&encoded("gzip"), Bytes::from_static(b"not gzip"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("gzip answer that does not decode"), "{e}");
    }
}
