//! nginx + nchan as a target (`peers/nchan/`): publish with `POST /pub/<room>`, subscribe on
//! the four subscriber locations, one per transport: interval polling (`short_poll`), long
//! polling, EventSource (`sse`) and WebSocket with the `ws+meta.nchan` subprotocol. The formats
//! are [`crate::codec::nchan`]'s; this module is about connections and accounting.
//!
//! nchan numbers nothing the loadgen can check, so a delivery's seq is its stamp's
//! [`log_position`](crate::stamp::Stamp::log_position), the same number its publisher recorded.
//! A client resumes from nchan's own cursor (`ClientHandle::resume`). nchan evicts past its
//! buffer without a word: such messages show up as missing, never as reported gaps.

pub mod poll;
pub mod stream;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::Request;
use hyper::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use tokio_util::sync::CancellationToken;
use wire::Transport;

use super::TargetProtocol;
use crate::clients::http::{Answer, HttpConn};
use crate::clients::life::{ClientReport, client_task};
use crate::clients::{ClientError, ClientHandle, PhaseCtx};
use crate::codec::nchan::Published;
use crate::stamp::Stamp;

/// What a run sees when nchan evicted messages: the server is silent about them.
pub const SILENT_LOSS_WARNING: &str = "nchan does not report messages it evicted from its buffer \
     (nchan_message_buffer_length): they are counted as missing, and the server gave no sign of them";

/// nginx + nchan, configured as in `peers/nchan/nginx.conf.template`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Nchan;

/// The subscriber path of `kind` (`poll`, `longpoll`, `sse`, `ws`) for the phase's room.
pub fn sub_path(phase: &PhaseCtx, kind: &str) -> String {
    format!("/sub/{kind}/{}", phase.room)
}

impl TargetProtocol for Nchan {
    fn client(
        &self,
        transport: Transport,
        me: ClientHandle,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ClientReport> {
        match transport {
            Transport::ShortPoll => client_task::<poll::IntervalPollClient>(me, stop).boxed(),
            Transport::LongPoll => client_task::<poll::LongPollClient>(me, stop).boxed(),
            Transport::Sse => client_task::<stream::EventSourceClient>(me, stop).boxed(),
            Transport::WebSocket => client_task::<stream::WebSocketClient>(me, stop).boxed(),
        }
    }

    /// nchan's subscriber sockets take no publishes: every sender POSTs.
    fn publishes_on_subscription(&self, _transport: Transport) -> bool {
        false
    }

    fn publish_request(
        &self,
        phase: &PhaseCtx,
        _stamp: &Stamp,
        body: String,
    ) -> Request<Full<bytes::Bytes>> {
        let mut request =
            HttpConn::request(phase, "POST", &format!("/pub/{}", phase.room), Some(body));
        let headers = request.headers_mut();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        request
    }

    fn published_seq(
        &self,
        phase: &PhaseCtx,
        answer: &Answer,
        stamp: &Stamp,
    ) -> Result<u64, ClientError> {
        // 201: someone was subscribed; 202: queued for later subscribers. Both are kept.
        let text = String::from_utf8_lossy(&answer.body);
        if !matches!(answer.status.as_u16(), 201 | 202) {
            return Err(ClientError::Protocol(format!(
                "nchan's publisher answers 201 or 202, got {} {:?}",
                answer.status.as_u16(),
                crate::codec::CodecError::new("", &text).got
            )));
        }
        Published::parse(&text).map_err(|e| ClientError::Protocol(e.to_string()))?;
        Ok(stamp.log_position(phase.senders))
    }
}
