//! duplex's own wire API (see the design's table): polls and long polls answered with
//! batches, an SSE stream of message items, a WebSocket of message frames that also takes a
//! sender's `send` frames, and `POST /api/rooms/{room}/messages` answered `201 {"seq":N}`.
//! One module per transport's client; [`stream`] decodes the stream items SSE and WebSocket
//! share, [`batch`] the answers both polls share.

pub mod batch;
pub mod long_poll;
pub mod short_poll;
pub mod sse;
pub mod stream;
pub mod websocket;
pub mod wire_ref;

use futures_util::FutureExt;
use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::{Request, StatusCode};
use tokio_util::sync::CancellationToken;
use wire::{PublishRequest, Published, Transport};

use super::TargetProtocol;
use crate::clients::http::{Answer, HttpConn, snippet};
use crate::clients::life::{ClientReport, client_task};
use crate::clients::{ClientError, ClientHandle, PhaseCtx};
use crate::stamp::Stamp;
use long_poll::LongPollClient;
use short_poll::ShortPollClient;
use sse::SseClient;
use websocket::WebSocketClient;

/// duplex's wire API.
#[derive(Debug, Clone, Copy, Default)]
pub struct Duplex;

/// A path under the phase's room, e.g. `poll?since=3`.
pub fn room_path(phase: &PhaseCtx, rest: &str) -> String {
    format!("/api/rooms/{}/{rest}", phase.room)
}

impl TargetProtocol for Duplex {
    fn client(
        &self,
        transport: Transport,
        me: ClientHandle,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ClientReport> {
        match transport {
            Transport::ShortPoll => client_task::<ShortPollClient>(me, stop).boxed(),
            Transport::LongPoll => client_task::<LongPollClient>(me, stop).boxed(),
            Transport::Sse => client_task::<SseClient>(me, stop).boxed(),
            Transport::WebSocket => client_task::<WebSocketClient>(me, stop).boxed(),
        }
    }

    fn publishes_on_subscription(&self, transport: Transport) -> bool {
        transport == Transport::WebSocket
    }

    fn publish_request(
        &self,
        phase: &PhaseCtx,
        stamp: &Stamp,
        body: String,
    ) -> Request<Full<bytes::Bytes>> {
        let (to, echo) = phase.addressing(stamp.sender as usize, stamp.n);
        let body = PublishRequest {
            from: format!("c{}", stamp.sender),
            body,
            event: None,
            to,
            echo,
        };
        let json = serde_json::to_string(&body).expect("a publish request serializes");
        HttpConn::request(phase, "POST", &room_path(phase, "messages"), Some(json))
    }

    fn published_seq(
        &self,
        _phase: &PhaseCtx,
        answer: &Answer,
        _stamp: &Stamp,
    ) -> Result<u64, ClientError> {
        if answer.status != StatusCode::CREATED {
            return Err(ClientError::Status {
                status: answer.status.as_u16(),
                body: snippet(&answer.body),
            });
        }
        let published: Published = serde_json::from_slice(&answer.body)
            .map_err(|e| ClientError::Protocol(format!("bad publish answer: {e}")))?;
        Ok(published.seq)
    }
}
