//! Held requests (an SSE stream, a long poll that has to wait) are served off hyper, on the bare
//! socket, because hyper keeps 16 KiB per connection for as long as a response is in flight: its
//! read buffer (8 KiB, reserved on the first read) and its write buffer (8 KiB, made with the
//! connection), neither of which `http1::Builder` can shrink. An idle SSE stream or a parked long
//! poll would carry both for minutes or hours to send a few hundred bytes now and then.
//!
//! How the socket leaves hyper: the accept loop's socket (guarded, metered, holding its connection
//! slot) sits in a [`Handoff`], which hyper reads and writes through ([`HandoffIo`]). A handler
//! that would hold its response validates the request exactly as before, then asks [`Hold`] to
//! serve it: it leaves its job (the stream of events, or the answer still to come) in the
//! handoff and returns a response carrying only its status and headers. That response passes
//! through every middleware as usual (request counting, the boundary headers); at the outermost
//! layer [`release`] takes the socket out of the handoff, writes the response head itself and
//! hands socket and job to a lean task. hyper is given an empty `connection: close` answer, which
//! [`HandoffIo`] swallows (writes to an empty handoff vanish, reads end, shutting it down does
//! nothing), so hyper's connection ends and its buffers are freed without touching the socket.
//! hyper's upgrade path cannot do this: it only fires on `101` and `CONNECT`.
//!
//! The lean task writes what hyper would have (same status line and headers, `date`, chunked
//! framing for a stream, `content-length` for an answer) through the same guarded socket, so the
//! write-stall limit, the byte meter and the connection count stay in force; the response body
//! that the request-counting middleware wrapped is kept until the response is complete, so the
//! connection counts as serving a request until then (the request-head timer stays off). While it
//! waits it watches the socket only to notice the client closing. A long poll's answer is
//! followed by a fresh hyper connection on the same socket, so keep-alive works as before.
//!
//! Limit: bytes a client pipelines behind a held request are not served when they arrived before
//! the socket left hyper (in the same packet as the request, typically): hyper had them in its
//! read buffer, which goes with it. Behind an SSE stream nothing would ever be served anyway (the
//! stream ends only with the server). Behind a long poll, such a request gets no answer; the
//! connection then waits for a head until the keep-alive limit closes it, and a pipelining client
//! retries its unanswered requests on a new connection, as HTTP/1.1 requires of it. Bytes that
//! arrive while a long poll waits stay in the socket and are the next hyper connection's.
//! Browsers do not pipeline; requests that are not plain HTTP/1.1 GETs without a body (or that
//! ask to close the connection) are not held, and are served inside hyper as before.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::OptionalFromRequestParts;
use axum::http::request::Parts as RequestParts;
use axum::http::response::Parts;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Version, header};
use axum::response::Response;
use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::conn::SocketTally;
use crate::guard::Guarded;
use crate::metrics::{Endpoint, Metrics};
use wire::metered::Metered;

/// An accepted socket as hyper and the lean tasks use it: time limits over the byte meter.
pub(crate) type Socket = Guarded<Metered<TcpStream, SocketTally>>;

/// Serves a socket that a long poll's answer hands back (a fresh hyper connection on it).
pub(crate) type Resume = Box<dyn FnOnce(Socket) + Send>;

/// Serves a held stream on the bare socket, spawned as its task: writes the [`Opening`]'s head,
/// then each event as a chunk and, when the stream ends, the last chunk (see [`chunk_size`]).
pub(crate) type Serve =
    Box<dyn FnOnce(Socket, Opening) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send>;

/// What a held stream's task is given besides the socket: the response head to write first, and
/// the response body the request-counting middleware wrapped, to keep until the stream ends (the
/// connection counts as serving a request until it is dropped).
pub(crate) struct Opening {
    head: Vec<u8>,
    _done: Body,
}

impl Opening {
    /// The response head, as hyper would have written it.
    pub(crate) fn head(&self) -> &[u8] {
        &self.head
    }

    /// The head is written: its bytes are not kept for the stream's life.
    pub(crate) fn sent(&mut self) {
        self.head = Vec::new();
    }
}

/// What a held response still has to do once the socket has left hyper.
enum Job {
    /// SSE: after the head (chunked), the stream is the handler's to write.
    Stream(Serve),
    /// Long poll: the answer, once it is known (its status is counted under `endpoint` then).
    Answer {
        endpoint: Endpoint,
        answer: Pin<Box<dyn Future<Output = Response> + Send>>,
    },
}

#[derive(Default)]
struct Slot {
    /// The socket while hyper serves it; `None` once a held response took it.
    socket: Option<Socket>,
    /// Left by a handler that holds its response, for [`release`].
    job: Option<Job>,
}

/// The place a connection's socket sits while hyper serves it, shared by hyper's I/O
/// ([`HandoffIo`]) and the requests ([`Hold`]). Only hyper's task touches it, so the lock is
/// never contended.
pub(crate) struct Handoff {
    slot: Mutex<Slot>,
}

impl Handoff {
    pub(crate) fn new(socket: Socket) -> Arc<Self> {
        Arc::new(Handoff {
            slot: Mutex::new(Slot {
                socket: Some(socket),
                job: None,
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Slot> {
        self.slot.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// hyper's side of a [`Handoff`]: the socket while it is there; once it is taken, reads see the
/// end of the stream and writes and shutdown succeed without doing anything.
pub(crate) struct HandoffIo(pub(crate) Arc<Handoff>);

impl AsyncRead for HandoffIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match &mut self.0.lock().socket {
            Some(socket) => Pin::new(socket).poll_read(cx, buf),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl AsyncWrite for HandoffIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0.lock().socket {
            Some(socket) => Pin::new(socket).poll_write(cx, buf),
            None => Poll::Ready(Ok(buf.len())),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.0.lock().socket {
            Some(socket) => Pin::new(socket).poll_write_vectored(cx, bufs),
            None => Poll::Ready(Ok(bufs.iter().map(|b| b.len()).sum())),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.0
            .lock()
            .socket
            .as_ref()
            .is_none_or(|s| s.is_write_vectored())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0.lock().socket {
            Some(socket) => Pin::new(socket).poll_flush(cx),
            None => Poll::Ready(Ok(())),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.0.lock().socket {
            Some(socket) => Pin::new(socket).poll_shutdown(cx),
            None => Poll::Ready(Ok(())),
        }
    }
}

impl Handoff {
    /// Takes the socket of a connection hyper has upgraded (its `101` is written and hyper has
    /// let go of the connection): a WebSocket is served on the bare socket, shared with the room's
    /// fan-out (`link.rs`), not through hyper's `Upgraded`. Bytes hyper read past the handshake
    /// request would stay behind in `Upgraded`, but there are none: a client must wait for the
    /// server's handshake before it sends anything (RFC 6455, 4.1).
    pub(crate) fn take_upgraded(&self) -> Option<Socket> {
        self.lock().socket.take()
    }
}

/// In every request's extensions (put there by the accept loop's service): the connection's
/// handoff, for [`Hold`].
#[derive(Clone)]
pub(crate) struct Holder(pub(crate) Arc<Handoff>);

/// A handler's permission to hold its response off hyper: present (as `Option<Hold>`) when the
/// request came over a socket of the accept loop and is a plain HTTP/1.1 `GET` with no body that
/// keeps its connection open. Without it (a `HEAD`, HTTP/1.0, a router driven without a socket)
/// the handler answers inside hyper as before.
pub(crate) struct Hold(Arc<Handoff>);

/// Marks a response whose status is not known yet ([`Hold::answer_later`]): the
/// request-counting middleware leaves it to the lean task, which counts the real answer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct AnsweredLater;

impl<S: Send + Sync> OptionalFromRequestParts<S> for Hold {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut RequestParts,
        _: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        let headers = &parts.headers;
        let no_body = headers
            .get(header::CONTENT_LENGTH)
            .is_none_or(|l| l.as_bytes() == b"0")
            && !headers.contains_key(header::TRANSFER_ENCODING);
        let closes = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"close"));
        let plain = parts.method == Method::GET && parts.version == Version::HTTP_11;
        Ok((plain && no_body && !closes)
            .then(|| parts.extensions.get::<Holder>().map(|h| Hold(h.0.clone())))
            .flatten())
    }
}

impl Hold {
    /// Holds an event stream: `head` (status and headers, no body) goes out as the response
    /// head, chunked, then `serve` writes the stream on the bare socket.
    pub(crate) fn stream(self, head: Response, serve: Serve) -> Response {
        self.0.lock().job = Some(Job::Stream(serve));
        let (parts, _) = head.into_parts();
        Response::from_parts(parts, unsized_empty())
    }

    /// Holds an answer that is still to come: the response returned now carries no status of
    /// its own, only the headers the middleware adds; `answer` decides the rest.
    pub(crate) fn answer_later(
        self,
        endpoint: Endpoint,
        answer: impl Future<Output = Response> + Send + 'static,
    ) -> Response {
        self.0.lock().job = Some(Job::Answer {
            endpoint,
            answer: Box::pin(answer),
        });
        let mut template = Response::new(unsized_empty());
        template.extensions_mut().insert(AnsweredLater);
        template
    }
}

/// An empty body that does not say it is empty, so the router adds no `content-length: 0` to a
/// held response's head (a stream has none; an answer gets its own).
fn unsized_empty() -> Body {
    Body::from_stream(futures_util::stream::empty::<
        Result<Bytes, std::convert::Infallible>,
    >())
}

/// What [`release`] needs from the server: where counts go, when to stop, and how to serve the
/// socket again after an answer (built only for answers).
pub(crate) struct Release<F> {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: CancellationToken,
    pub(crate) resume: F,
}

/// Called with every response the router gives back for `handoff`'s connection: when its
/// handler held it, takes the socket out of the handoff, starts the lean task that finishes the
/// response, and returns the empty answer that lets hyper's connection end; otherwise returns
/// `response` untouched.
pub(crate) fn release(
    handoff: &Handoff,
    response: Response,
    how: Release<impl FnOnce() -> Resume>,
) -> Response {
    let mut slot = handoff.lock();
    let Some(job) = slot.job.take() else {
        return response;
    };
    let Some(mut socket) = slot.socket.take() else {
        return response;
    };
    drop(slot);
    let (parts, done) = response.into_parts();
    // The lean task reads no request heads: the guard's head timer is not needed until hyper
    // has the socket again.
    socket.disarm_head();
    match job {
        Job::Stream(serve) => {
            let head = encode_head(&parts, Framing::Chunked, how.shutdown.is_cancelled());
            // The stream's own future is the task: no task around it to write the head (that
            // one kept the socket's and the head's room for the stream's life, 0.5 KB).
            tokio::spawn(serve(socket, Opening { head, _done: done }));
        }
        Job::Answer { endpoint, answer } => {
            // Only the headers the middleware added are kept while the answer waits.
            let added: Box<[(HeaderName, HeaderValue)]> = parts
                .headers
                .into_iter()
                .scan(None, |name, (next, value)| {
                    if next.is_some() {
                        *name = next;
                    }
                    Some(name.clone().map(|n| (n, value)))
                })
                .flatten()
                .collect();
            let lean = Answer {
                endpoint,
                added,
                done,
                metrics: how.metrics,
                shutdown: how.shutdown,
                resume: (how.resume)(),
            };
            tokio::spawn(lean.serve(socket, answer));
        }
    }
    let mut empty = Response::new(Body::empty());
    empty
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    empty
}

/// How a response's body is delimited on the wire.
enum Framing {
    Chunked,
    Length(usize),
}

/// The response head as hyper writes it for an HTTP/1.1 request: the status line, the headers in
/// their order, `connection: close` when the connection ends after it, the framing, `date`.
fn encode_head(parts: &Parts, framing: Framing, closing: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(192);
    if parts.status == StatusCode::OK {
        out.extend_from_slice(b"HTTP/1.1 200 OK\r\n");
    } else {
        out.extend_from_slice(b"HTTP/1.1 ");
        out.extend_from_slice(parts.status.as_str().as_bytes());
        out.push(b' ');
        let reason = parts.status.canonical_reason().unwrap_or("<none>");
        out.extend_from_slice(reason.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    for (name, value) in &parts.headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    if closing {
        out.extend_from_slice(b"connection: close\r\n");
    }
    match framing {
        Framing::Chunked => out.extend_from_slice(b"transfer-encoding: chunked\r\n"),
        // hyper sends no length on answers that cannot have a body, nor a second one.
        Framing::Length(_)
            if !has_body(parts.status) || parts.headers.contains_key(header::CONTENT_LENGTH) => {}
        Framing::Length(n) => {
            out.extend_from_slice(b"content-length: ");
            out.extend_from_slice(n.to_string().as_bytes());
            out.extend_from_slice(b"\r\n");
        }
    }
    out.extend_from_slice(b"date: ");
    out.extend_from_slice(httpdate::fmt_http_date(SystemTime::now()).as_bytes());
    out.extend_from_slice(b"\r\n\r\n");
    out
}

/// Whether answers with `status` carry a body (and so a length).
fn has_body(status: StatusCode) -> bool {
    !(status.is_informational()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::NOT_MODIFIED)
}

/// A chunk's size line, `<hex length>\r\n`, as hyper writes it (upper-case hex).
pub(crate) fn chunk_size(len: usize, out: &mut [u8; 18]) -> &[u8] {
    let written = {
        let mut cursor = io::Cursor::new(&mut out[..]);
        io::Write::write_fmt(&mut cursor, format_args!("{len:X}\r\n"))
            .expect("16 hex digits and CRLF fit in 18 bytes");
        cursor.position() as usize
    };
    &out[..written]
}

/// Ready once the client has closed its side of `socket` (or the socket failed). What it sends
/// meanwhile is left in the socket, for the connection's next request, and the watch ends
/// there.
async fn client_gone(socket: &mut Socket) {
    let mut probe = [0u8; 1];
    let tcp = socket.get_ref().get_ref();
    // `poll_peek`, not `peek`: it takes the socket's read waker slot, which still holds hyper's
    // task's waker (and so that finished task's memory) until someone replaces it.
    let peeked = std::future::poll_fn(|cx| tcp.poll_peek(cx, &mut ReadBuf::new(&mut probe))).await;
    match peeked {
        Ok(0) | Err(_) => {}
        // A request pipelined behind this one: it waits for the next hyper connection.
        Ok(_) => std::future::pending().await,
    }
}

/// A long poll's lean task, once the socket has left hyper.
struct Answer {
    endpoint: Endpoint,
    /// The headers the middleware put on the response (written after the answer's own).
    added: Box<[(HeaderName, HeaderValue)]>,
    /// The response body the request-counting middleware wrapped: dropped once the answer is
    /// written, which tells the connection a new request head may come.
    done: Body,
    metrics: Arc<Metrics>,
    shutdown: CancellationToken,
    resume: Resume,
}

impl Answer {
    /// Waits for the answer (or the client leaving), writes it, then hands the socket back to
    /// hyper for the next request, or closes it when the server is shutting down.
    async fn serve(
        self,
        mut socket: Socket,
        answer: Pin<Box<dyn Future<Output = Response> + Send>>,
    ) {
        let response = tokio::select! {
            response = answer => response,
            () = client_gone(&mut socket) => return,
        };
        let (mut parts, body) = response.into_parts();
        let body = axum::body::to_bytes(body, usize::MAX)
            .await
            .unwrap_or_default();
        // Where the router puts it on every answer with a known length, before the middleware's
        // headers (hyper leaves it out where a status has no body).
        if has_body(parts.status) && !parts.headers.contains_key(header::CONTENT_LENGTH) {
            parts
                .headers
                .insert(header::CONTENT_LENGTH, HeaderValue::from(body.len()));
        }
        let mut last: Option<HeaderName> = None;
        for (name, value) in self.added.into_vec() {
            // As the middleware did it: `insert` replaces, a repeated name appends.
            if last.as_ref() == Some(&name) {
                parts.headers.append(name, value);
            } else {
                parts.headers.insert(name.clone(), value);
                last = Some(name);
            }
        }
        let closing = self.shutdown.is_cancelled();
        let head = encode_head(&parts, Framing::Length(body.len()), closing);
        self.metrics
            .record_request(self.endpoint, parts.status.as_u16());
        let mut whole = Bytes::from(head).chain(body);
        if let Err(e) = socket.write_all_buf(&mut whole).await {
            tracing::debug!(error = %e, "long poll answer not written");
            return;
        }
        drop(self.done);
        if closing {
            let _ = socket.shutdown().await;
        } else {
            (self.resume)(socket);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_sizes_are_upper_case_hex_lines() {
        let mut buf = [0u8; 18];
        assert_eq!(chunk_size(0, &mut buf), b"0\r\n");
        assert_eq!(chunk_size(10, &mut buf), b"A\r\n");
        assert_eq!(chunk_size(0x1f4, &mut buf), b"1F4\r\n");
        assert_eq!(
            chunk_size(usize::MAX, &mut buf),
            format!("{:X}\r\n", usize::MAX).as_bytes()
        );
    }

    #[test]
    fn heads_are_written_as_hyper_writes_them() {
        let mut response = Response::new(());
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        let (parts, ()) = response.into_parts();
        let head = String::from_utf8(encode_head(&parts, Framing::Chunked, false)).unwrap();
        assert!(
            head.starts_with(
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 transfer-encoding: chunked\r\ndate: "
            ),
            "{head}"
        );
        assert!(head.ends_with(" GMT\r\n\r\n"), "{head}");
        let (mut parts, ()) = Response::new(()).into_parts();
        parts.status = StatusCode::NO_CONTENT;
        let head = String::from_utf8(encode_head(&parts, Framing::Length(0), true)).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 204 No Content\r\nconnection: close\r\ndate: "),
            "{head}"
        );
        parts.status = StatusCode::SERVICE_UNAVAILABLE;
        let head = String::from_utf8(encode_head(&parts, Framing::Length(12), false)).unwrap();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\ncontent-length: 12\r\ndate: "),
            "{head}"
        );
        // A length the response already carries is not written twice.
        parts
            .headers
            .insert(header::CONTENT_LENGTH, HeaderValue::from_static("12"));
        let head = String::from_utf8(encode_head(&parts, Framing::Length(12), false)).unwrap();
        assert_eq!(head.matches("content-length").count(), 1, "{head}");
    }
}
