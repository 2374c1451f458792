//! What a browser must not be able to do on another site's behalf, checked once for every route:
//!
//! - **Host.** A page on `evil.example` whose name is re-pointed at this laptop (DNS rebinding)
//!   would be same-origin with us; its requests carry `Host: evil.example`. Accepted hosts are IP
//!   literals (what a classroom types), `localhost`, and the names given with `--allow-host`;
//!   anything else is a `421`. A request without `Host` (HTTP/1.0 tools) is let through.
//! - **Origin.** A browser names the page that sent a request in `Origin`. Requests that change
//!   state (anything but GET/HEAD/OPTIONS) and WebSocket upgrades (which the same-origin policy
//!   does not cover) must come from this server's own origin or one given with
//!   `--allow-origin`; otherwise `403`. No `Origin` means no browser page (curl, the loadgen):
//!   allowed. Content types a page may post cross-site without asking (forms, `text/plain`) are
//!   refused by [`crate::extract::JsonBody`].
//! - **Headers on every answer.** `X-Content-Type-Options: nosniff`; on HTML pages a
//!   `Content-Security-Policy` (own scripts only, no framing), `X-Frame-Options: DENY` and
//!   `Referrer-Policy: no-referrer` (the teacher's URL carries a token).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::Config;
use crate::error::ApiError;

/// The policy for the live page and dashboard: scripts and styles from this server (styles may
/// also be set by those scripts), connections back to it only, never inside a frame.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
style-src 'self' 'unsafe-inline'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// The middleware: checks Host and Origin, then adds the headers.
pub async fn check(State(config): State<Arc<Config>>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    if let Some(host) = &host
        && !host_allowed(host, &config.allow_hosts)
    {
        return ApiError::ForeignHost(host.clone()).into_response();
    }
    let changes_state = !matches!(*req.method(), Method::GET | Method::HEAD | Method::OPTIONS);
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .is_some_and(|u| u.as_bytes().eq_ignore_ascii_case(b"websocket"));
    if (changes_state || upgrade)
        && let Some(origin) = req.headers().get(header::ORIGIN)
    {
        let origin = String::from_utf8_lossy(origin.as_bytes()).into_owned();
        if !origin_allowed(&origin, host.as_deref(), &config.allow_origins) {
            return ApiError::ForeignOrigin(origin).into_response();
        }
    }
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let html = headers
        .get(header::CONTENT_TYPE)
        .is_some_and(|t| t.as_bytes().starts_with(b"text/html"));
    if html {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        );
        headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
        headers.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        );
    }
    response
}

/// `host[:port]` is an IP literal, `localhost`, or a configured name.
fn host_allowed(host: &str, allowed: &[String]) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [v6]:port
        return rest
            .split(']')
            .next()
            .is_some_and(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok());
    } else {
        host.rsplit_once(':').map_or(host, |(name, _)| name)
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name.parse::<IpAddr>().is_ok()
        || name == "localhost"
        || name.ends_with(".localhost")
        || allowed.iter().any(|a| {
            let a = a.to_ascii_lowercase();
            a == name || a.rsplit_once(':').is_some_and(|(n, _)| n == name)
        })
}

/// The page's origin is ours (the scheme and the `Host` it asked for) or a configured one.
fn origin_allowed(origin: &str, host: Option<&str>, allowed: &[String]) -> bool {
    let origin = origin.trim_end_matches('/');
    host.is_some_and(|h| {
        origin.eq_ignore_ascii_case(&format!("http://{h}"))
            || origin.eq_ignore_ascii_case(&format!("https://{h}"))
    }) || allowed
        .iter()
        .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(origin))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_ip_literals_localhost_or_configured() {
        let allowed = vec!["teacher.local".to_owned()];
        for ok in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "localhost:8080",
            "teacher.local:8080",
            "TEACHER.local",
        ] {
            assert!(host_allowed(ok, &allowed), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.evil.example",
            "[evil]",
        ] {
            assert!(!host_allowed(bad, &allowed), "{bad}");
        }
    }

    #[test]
    fn origins_are_our_own_or_configured() {
        let allowed = vec!["http://teacher.local:8080".to_owned()];
        let host = Some("192.168.1.20:8080");
        assert!(origin_allowed("http://192.168.1.20:8080", host, &allowed));
        assert!(origin_allowed("http://teacher.local:8080/", host, &allowed));
        for bad in ["http://evil.example", "null", "http://192.168.1.20:9999"] {
            assert!(!origin_allowed(bad, host, &allowed), "{bad}");
        }
    }
}
