//! [`app`]: the one router, assembled here from [`crate::api::routes`] (the wire API) and
//! [`crate::live::routes`] (the classroom page), plus `/metrics`, `/healthz`, the JSON 404/405
//! fallbacks, the body limit, the browser boundary checks ([`crate::boundary`]) and the
//! request-counting middleware that every route shares.
//! Neither `api` nor `live` knows about the other; this module is the only one that sees both.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::conn::ConnMeter;
use crate::error::ApiError;
use crate::held::AnsweredLater;
use crate::metrics::Endpoint;
use crate::state::AppState;

/// The router: the wire API, `/metrics`, `/healthz`, and the live page's routes.
pub fn app(state: AppState) -> Router {
    let max_body = state.config.max_body;
    Router::new()
        .merge(crate::api::routes())
        .merge(crate::live::routes())
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(not_found)
        // axum's own 405 has an empty body; ours says what was asked, like every refusal.
        .method_not_allowed_fallback(method_not_allowed)
        // Publishing reads at most this much; more is a 413 naming the limit.
        .layer(DefaultBodyLimit::max(max_body))
        .layer(middleware::from_fn_with_state(
            state.config.clone(),
            crate::boundary::check,
        ))
        .layer(middleware::from_fn_with_state(state.clone(), track))
        .with_state(state)
}

/// Counts every answered request under its endpoint and status, and tells the connection's
/// byte meter which endpoint it is serving now.
async fn track(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let endpoint = Endpoint::from_path(req.uri().path());
    let meter = req.extensions().get::<Arc<ConnMeter>>().cloned();
    if let Some(meter) = &meter {
        meter.serve(endpoint);
    }
    let response = next.run(req).await;
    // A long poll answered off hyper is counted when its answer is written.
    if response.extensions().get::<AnsweredLater>().is_none() {
        state
            .metrics
            .record_request(endpoint, response.status().as_u16());
    }
    let Some(meter) = meter else {
        return response;
    };
    meter.finish();
    if response.status() == StatusCode::SWITCHING_PROTOCOLS {
        meter.upgrade();
    }
    // The connection waits for its next head only once this body is written (a stream may
    // run for hours), which the wrapper reports when it is dropped: by hyper, or by the lean
    // task that finishes a held response (`held`).
    response.map(|body| {
        Body::new(Written {
            body,
            meter: Some(meter),
        })
    })
}

/// A response body that tells the connection's meter when it is done.
struct Written {
    body: Body,
    meter: Option<Arc<ConnMeter>>,
}

impl Drop for Written {
    fn drop(&mut self) {
        if let Some(meter) = self.meter.take() {
            meter.response_done();
        }
    }
}

impl http_body::Body for Written {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.body.size_hint()
    }
}

async fn metrics(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(&state.feed),
    )
        .into_response()
}

async fn not_found(req: Request) -> ApiError {
    ApiError::NotFound(format!("{} {}", req.method(), req.uri().path()))
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::MethodNotAllowed(format!("{} {}", req.method(), req.uri().path()))
}
