//! Client profiles: which request headers a simulated client sends. Bytes up count as much as
//! bytes down (a poll's request is most of what polling costs upstream), so by default the
//! clients send what a current Chromium sends for `fetch`, `EventSource` and the WebSocket
//! upgrade to a page's own origin; `minimal` sends only what the protocol needs (what the
//! loadgen sent before profiles existed), for comparison.
//!
//! The browser headers were captured from headless Chromium 156 loading a page from a local
//! server (`tests/fixtures/chromium-156-requests.txt`, checked against this list by a test),
//! with `HeadlessChrome` in the User-Agent written as a desktop browser's `Chrome`. Hyper and
//! tungstenite add `Host`, `Content-Length` and the WebSocket handshake's own headers; the
//! `Cookie` is a filler of the scenario's `cookie_bytes` (a fresh browser sends none, a site
//! with a login or analytics sends hundreds of bytes).

use hyper::header::{HeaderMap, HeaderName, HeaderValue};

/// What a client's requests look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientProfile {
    /// The headers a current Chromium sends, with a `Cookie` of `cookie_bytes` (none when 0).
    Browser {
        /// Length of the `Cookie` header's value.
        cookie_bytes: usize,
    },
    /// Only the headers the protocol needs.
    Minimal,
}

impl Default for ClientProfile {
    fn default() -> Self {
        ClientProfile::Browser { cookie_bytes: 0 }
    }
}

/// What a request is, as the browser sees it (each kind gets its own headers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestKind {
    /// `fetch()` of a GET (a poll).
    Fetch,
    /// `fetch()` of a POST with a JSON body (a publish).
    FetchPost,
    /// `new EventSource(url)`.
    EventSource,
    /// `new WebSocket(url)`: the upgrade request.
    WebSocket,
}

const USER_AGENT: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const SEC_CH_UA: &str = "\"Not:A-Brand\";v=\"8\", \"Chromium\";v=\"156\"";
const ACCEPT_ENCODING: &str = "gzip, deflate, br, zstd";
const ACCEPT_LANGUAGE: &str = "en-US,en;q=0.9";

impl ClientProfile {
    /// The headers this profile adds to a request of `kind` to the page's origin `authority`
    /// (`host:port`), in the order Chromium writes them; `Host` and `Content-Length` are added
    /// by the HTTP client, and the protocol's own headers (a JSON `content-type`, the WebSocket
    /// handshake's) by the caller.
    pub fn headers(&self, kind: RequestKind, authority: &str) -> Vec<(&'static str, String)> {
        let ClientProfile::Browser { cookie_bytes } = *self else {
            return Vec::new();
        };
        let s = |v: &str| v.to_owned();
        let origin = format!("http://{authority}");
        let referer = format!("http://{authority}/");
        let mut h = Vec::with_capacity(16);
        match kind {
            RequestKind::Fetch | RequestKind::FetchPost | RequestKind::EventSource => {
                h.push(("connection", s("keep-alive")));
                if kind == RequestKind::EventSource {
                    h.push(("pragma", s("no-cache")));
                    h.push(("cache-control", s("no-cache")));
                }
                h.push(("sec-ch-ua-platform", s("\"Linux\"")));
                h.push(("user-agent", s(USER_AGENT)));
                if kind == RequestKind::EventSource {
                    h.push(("accept", s("text/event-stream")));
                }
                h.push(("sec-ch-ua", s(SEC_CH_UA)));
                h.push(("sec-ch-ua-mobile", s("?0")));
                if kind != RequestKind::EventSource {
                    h.push(("accept", s("*/*")));
                }
                if kind == RequestKind::FetchPost {
                    h.push(("origin", origin));
                }
                h.push(("sec-fetch-site", s("same-origin")));
                h.push(("sec-fetch-mode", s("cors")));
                h.push(("sec-fetch-dest", s("empty")));
                h.push(("referer", referer));
            }
            RequestKind::WebSocket => {
                h.push(("pragma", s("no-cache")));
                h.push(("cache-control", s("no-cache")));
                h.push(("user-agent", s(USER_AGENT)));
                h.push(("origin", origin));
            }
        }
        h.push(("accept-encoding", s(ACCEPT_ENCODING)));
        h.push(("accept-language", s(ACCEPT_LANGUAGE)));
        if kind == RequestKind::WebSocket {
            h.push((
                "sec-websocket-extensions",
                s("permessage-deflate; client_max_window_bits"),
            ));
        }
        if cookie_bytes > 0 {
            h.push(("cookie", cookie(cookie_bytes)));
        }
        h
    }

    /// Adds [`ClientProfile::headers`] to `map` (replacing any the caller set, e.g. `accept`).
    pub fn apply(&self, map: &mut HeaderMap, kind: RequestKind, authority: &str) {
        for (name, value) in self.headers(kind, authority) {
            map.insert(
                HeaderName::from_static(name),
                HeaderValue::from_str(&value).expect("profile headers are visible ASCII"),
            );
        }
    }
}

/// A cookie value of exactly `n` bytes: one session id padded with hex digits, like the opaque
/// tokens sites set.
fn cookie(n: usize) -> String {
    const NAME: &str = "sid=";
    let mut c = String::with_capacity(n.max(NAME.len()));
    c.push_str(&NAME[..n.min(NAME.len())]);
    let digits = b"0123456789abcdef";
    while c.len() < n {
        c.push(digits[c.len() % 16] as char);
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header names Chromium sent for each kind of request, in order, from the capture.
    fn captured(request_line_start: &str) -> Vec<String> {
        let capture = include_str!("../../tests/fixtures/chromium-156-requests.txt");
        let block = capture
            .split("=====\n")
            .find(|b| b.starts_with(request_line_start))
            .expect("the capture has this request");
        block
            .lines()
            .skip(1)
            .filter_map(|l| l.split_once(':').map(|(n, _)| n.to_ascii_lowercase()))
            .collect()
    }

    /// Headers the HTTP client or the WebSocket handshake adds, not the profile.
    const ADDED_BY_CLIENT: [&str; 7] = [
        "host",
        "content-length",
        "content-type",
        "connection",
        "upgrade",
        "sec-websocket-version",
        "sec-websocket-key",
    ];

    #[test]
    fn browser_profile_sends_chromiums_headers_in_chromiums_order() {
        let p = ClientProfile::Browser { cookie_bytes: 0 };
        for (kind, line) in [
            (RequestKind::Fetch, "GET /api/rooms/r/poll"),
            (RequestKind::FetchPost, "POST /api/rooms/r/messages"),
            (RequestKind::EventSource, "GET /api/rooms/r/sse"),
            (RequestKind::WebSocket, "GET /api/rooms/r/ws"),
        ] {
            let expected: Vec<String> = captured(line)
                .into_iter()
                .filter(|n| !ADDED_BY_CLIENT.contains(&n.as_str()))
                .collect();
            let ours: Vec<String> = p
                .headers(kind, "127.0.0.1:18931")
                .into_iter()
                .map(|(n, _)| n.to_owned())
                .filter(|n| !ADDED_BY_CLIENT.contains(&n.as_str()))
                .collect();
            assert_eq!(ours, expected, "{kind:?}");
        }
    }

    #[test]
    fn cookie_has_the_configured_size_and_minimal_sends_nothing() {
        for n in [1, 4, 5, 300] {
            let h = ClientProfile::Browser { cookie_bytes: n }.headers(RequestKind::Fetch, "h:1");
            let (_, cookie) = h.iter().find(|(name, _)| *name == "cookie").unwrap();
            assert_eq!(cookie.len(), n);
        }
        let h = ClientProfile::Browser { cookie_bytes: 0 }.headers(RequestKind::Fetch, "h:1");
        assert!(h.iter().all(|(name, _)| *name != "cookie"));
        assert!(
            ClientProfile::Minimal
                .headers(RequestKind::WebSocket, "h:1")
                .is_empty()
        );
    }
}
