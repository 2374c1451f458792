//! [`app`]: the one router, assembled here from [`crate::api::routes`] (the wire API) and
//! [`crate::live::routes`] (the classroom page), plus `/metrics`, `/healthz`, the JSON 404/405
//! fallbacks, the body limit and the request-counting middleware that every route shares.
//! Neither `api` nor `live` knows about the other; this module is the only one that sees both.

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::header;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::conn::ConnMeter;
use crate::error::ApiError;
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
    if let Some(meter) = &meter {
        meter.finish();
    }
    state
        .metrics
        .record_request(endpoint, response.status().as_u16());
    response
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
