//! The one error type every handler returns. Each variant is a client mistake (4xx) or a refusal
//! (503), turned into a status and a `{"error":"..."}` body that names the problem, so a client
//! author can fix the request from the answer alone.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::feed::{BadRoomName, PublishError, TooManyRooms};
use wire::ErrorBody;

/// Why a request was refused.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The room segment of the path breaks the naming rule.
    #[error(transparent)]
    BadRoom(#[from] BadRoomName),
    /// A query parameter or header that cannot be used.
    #[error("bad {name}: {problem}")]
    BadParam {
        /// The parameter or header.
        name: &'static str,
        /// What is wrong with it.
        problem: String,
    },
    /// The query string itself could not be read.
    #[error("bad query string: {0}")]
    BadQuery(String),
    /// The body is not the JSON this endpoint takes (syntax, types, unknown or missing fields).
    #[error("bad JSON body: {0}")]
    BadJson(String),
    /// The body is over `--max-body`.
    #[error("body too large: the limit is {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The body could not be read for another reason.
    #[error("could not read body: {0}")]
    Body(String),
    /// The message itself was refused by the feed.
    #[error(transparent)]
    Publish(#[from] PublishError),
    /// A WebSocket endpoint was called without a WebSocket handshake.
    #[error("not a WebSocket handshake: {0}")]
    NotWebSocket(String),
    /// `--max-connections` connections are open already.
    #[error("too many connections: the limit is {limit}")]
    TooManyConnections {
        /// The limit.
        limit: usize,
    },
    /// A new room was asked for and no more can be created.
    #[error(transparent)]
    TooManyRooms(#[from] TooManyRooms),
    /// No route for this method and path.
    #[error("no such endpoint: {0}")]
    NotFound(String),
    /// The path exists, but not for this method.
    #[error("method not allowed: {0}")]
    MethodNotAllowed(String),
    /// The server is stopping.
    #[error("server is shutting down")]
    ShuttingDown,
    /// A JSON endpoint was sent another content type (a form or `text/plain` post, which a
    /// page on another site can send without asking).
    #[error("unsupported content type {0:?}: send application/json")]
    NotJson(String),
    /// The request body did not arrive within the request timeout.
    #[error("request timeout: the body took longer than {0} ms")]
    BodyTimeout(u128),
    /// Too many connections from one address.
    #[error("too many connections from this address: the limit is {limit}")]
    TooManyFromAddress {
        /// The limit.
        limit: usize,
    },
    /// A page from another origin tried to change something or open a WebSocket.
    #[error("origin {0:?} is not allowed here (see --allow-origin)")]
    ForeignOrigin(String),
    /// The `Host` header names a host this server does not answer for (DNS rebinding).
    #[error("host {0:?} is not served here (see --allow-host)")]
    ForeignHost(String),
    /// The request is fine but clashes with what is going on (an experiment already running, a
    /// phase's figures already sent).
    #[error("{0}")]
    Conflict(String),
    /// A teacher's endpoint without the teacher's token.
    #[error("this needs the teacher's token (the teacher URL that duplex serve printed)")]
    NotTeacher,
}

impl ApiError {
    /// The status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::TooManyRooms(TooManyRooms::PerAddress(_))
            | ApiError::Publish(PublishError::TooManyRooms(TooManyRooms::PerAddress(_))) => {
                StatusCode::TOO_MANY_REQUESTS
            }
            ApiError::TooManyRooms(_) | ApiError::Publish(PublishError::TooManyRooms(_)) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ApiError::ShuttingDown
            | ApiError::TooManyConnections { .. }
            | ApiError::TooManyFromAddress { .. }
            | ApiError::Publish(PublishError::Unavailable(_)) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NotJson(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::BodyTimeout(_) => StatusCode::REQUEST_TIMEOUT,
            ApiError::ForeignOrigin(_) | ApiError::NotTeacher => StatusCode::FORBIDDEN,
            ApiError::ForeignHost(_) => StatusCode::MISDIRECTED_REQUEST,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// A bad parameter, naming it.
    pub fn param(name: &'static str, problem: impl Into<String>) -> Self {
        ApiError::BadParam {
            name,
            problem: problem.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        tracing::debug!(error = %self, "request refused");
        (
            self.status(),
            Json(ErrorBody {
                error: self.to_string(),
            }),
        )
            .into_response()
    }
}
