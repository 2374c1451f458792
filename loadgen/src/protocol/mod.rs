//! The seam for the protocol a target speaks. The runner, the ledger and the meters know
//! nothing of URLs, batch formats or frame types: a [`TargetProtocol`] chooses the client each
//! transport runs (which subscribes, reads the next delivery and hands it to
//! [`ClientHandle::on_message`]) and shapes a sender's HTTP publish of the loadgen's stamp.
//! Scheduling, connections, byte counting and integrity stay with the loadgen, the same for
//! every protocol.
//!
//! [`duplex`] is duplex's own wire API. Another server (nchan, Socket.IO, a generic SSE or
//! WebSocket endpoint) is one more module here implementing [`TargetProtocol`].

pub mod duplex;
pub mod generic;
pub mod nchan;
pub mod socketio;

use std::fmt::Debug;

use futures_util::future::BoxFuture;
use http_body_util::Full;
use hyper::Request;
use tokio_util::sync::CancellationToken;
use wire::Transport;

use crate::clients::http::Answer;
use crate::clients::life::ClientReport;
use crate::clients::{ClientError, ClientHandle, PhaseCtx};
use crate::stamp::Stamp;

/// How a target is subscribed to and published to.
pub trait TargetProtocol: Debug + Send + Sync {
    /// The whole life of client `me` on `transport` (connect, follow until `stop`, reconnect
    /// after failures), usually [`client_task`](crate::clients::life::client_task) over the
    /// protocol's [`TransportClient`](crate::clients::TransportClient) for that transport.
    fn client(
        &self,
        transport: Transport,
        me: ClientHandle,
        stop: CancellationToken,
    ) -> BoxFuture<'static, ClientReport>;

    /// Whether a sender on `transport` publishes through its own subscription (a WebSocket
    /// sender's frames) rather than with HTTP requests; such a client receives its
    /// [`PublishOrder`](crate::clients::PublishOrder)s in [`ClientHandle::orders`].
    fn publishes_on_subscription(&self, transport: Transport) -> bool;

    /// The HTTP request that publishes `body` (the encoded `stamp`) as the stamp's sender,
    /// to the recipients [`PhaseCtx::addressing`] names (a protocol that can only broadcast
    /// is refused other modes by the scenario's validation).
    fn publish_request(
        &self,
        phase: &PhaseCtx,
        stamp: &Stamp,
        body: String,
    ) -> Request<Full<bytes::Bytes>>;

    /// The seq the server gave a publish of `stamp`, read from its answer (or, for a server
    /// that numbers nothing, [`Stamp::log_position`]); an error when the answer says the
    /// publish was refused or is not this protocol's.
    fn published_seq(
        &self,
        phase: &PhaseCtx,
        answer: &Answer,
        stamp: &Stamp,
    ) -> Result<u64, ClientError>;
}
