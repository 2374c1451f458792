//! Where students join: the addresses a classroom can reach this server at, for `duplex serve`
//! to print and for the dashboard to show in large type and as a QR code (`GET /live/join`,
//! `GET /live/join.svg`, both the teacher's).
//!
//! The addresses come from the machine's interfaces (the `if-addrs` crate) and the port the
//! server listens on; this module does not guess which interface is the classroom's Wi-Fi, it
//! lists every non-loopback IPv4 address with its interface's name and leaves the choice to the
//! teacher (a laptop with a VPN or a container bridge has several). A server that listens on a
//! loopback address cannot be reached from another laptop at all: that is said, with the fix.

use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Serialize;

use super::{Live, Teacher};

/// One address students can type (or scan).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct JoinUrl {
    /// `http://ADDRESS:PORT/`.
    pub url: String,
    /// The interface it belongs to (`wlan0`, `eth0`), so the teacher can pick the classroom's.
    pub interface: String,
}

/// Where a server listening on some address can be joined from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Join {
    /// Addresses other machines can use, best first (the listening address itself when it is
    /// one interface's; every non-loopback IPv4 interface's when it is `0.0.0.0`).
    pub urls: Vec<JoinUrl>,
    /// The server listens on a loopback address: no student can reach it.
    pub loopback_only: bool,
    /// What to do when `urls` is empty, in words for the teacher.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Join {
    /// The URL the dashboard shows and encodes: the first student address, or (on loopback,
    /// where there is none) the loopback URL, so the teacher's own tabs can still join.
    pub fn shown_url(&self, listening: SocketAddr) -> String {
        self.urls
            .first()
            .map_or_else(|| format!("http://{listening}/"), |u| u.url.clone())
    }
}

/// The machine's non-loopback IPv4 addresses, each with its interface's name, in the order the
/// system lists them. An unreadable interface table is an empty list (and a warning): the
/// server still serves, the teacher just has to find the address another way.
pub fn interface_addresses() -> Vec<(String, Ipv4Addr)> {
    match if_addrs::get_if_addrs() {
        Ok(interfaces) => interfaces
            .into_iter()
            .filter_map(|i| match i.ip() {
                IpAddr::V4(v4) if !v4.is_loopback() => Some((i.name, v4)),
                _ => None,
            })
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "could not read the network interfaces");
            Vec::new()
        }
    }
}

/// Where a server listening on `listening` can be joined, given the machine's interface
/// addresses (from [`interface_addresses`]; a parameter so tests can give their own).
pub fn join_for(listening: SocketAddr, interfaces: &[(String, Ipv4Addr)]) -> Join {
    let port = listening.port();
    let url = |ip: IpAddr| match ip {
        IpAddr::V4(v4) => format!("http://{v4}:{port}/"),
        IpAddr::V6(v6) => format!("http://[{v6}]:{port}/"),
    };
    let ip = listening.ip();
    if ip.is_loopback() {
        return Join {
            urls: Vec::new(),
            loopback_only: true,
            fix: Some(format!(
                "students cannot reach {ip}: only this laptop can; restart with \
                 `duplex serve --listen 0.0.0.0:{port}` to let the classroom in"
            )),
        };
    }
    let urls: Vec<JoinUrl> = if ip.is_unspecified() {
        interfaces
            .iter()
            .map(|(name, v4)| JoinUrl {
                url: url(IpAddr::V4(*v4)),
                interface: name.clone(),
            })
            .collect()
    } else {
        let interface = interfaces
            .iter()
            .find(|(_, v4)| IpAddr::V4(*v4) == ip)
            .map_or_else(String::new, |(name, _)| name.clone());
        vec![JoinUrl {
            url: url(ip),
            interface,
        }]
    };
    let fix = urls.is_empty().then(|| {
        "this laptop has no network address other than loopback: join the classroom's \
         network (Wi-Fi) and restart duplex serve"
            .to_owned()
    });
    Join {
        urls,
        loopback_only: false,
        fix,
    }
}

/// What `duplex serve` prints after its first line (`duplex listening on ...`, which
/// `duplex run` reads): the teacher's dashboard URL on the second line, then one `students:`
/// line per address, or why there is none and how to fix it.
pub fn announce(
    out: &mut impl Write,
    listening: SocketAddr,
    token: &str,
    join: &Join,
) -> io::Result<()> {
    // The teacher's browser is on this laptop: loopback always reaches it, 0.0.0.0 may not.
    let teacher = if listening.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listening.port())
    } else {
        listening
    };
    writeln!(out, "teacher: http://{teacher}/dashboard?token={token}")?;
    for u in &join.urls {
        if u.interface.is_empty() {
            writeln!(out, "students: {}", u.url)?;
        } else {
            writeln!(out, "students: {} ({})", u.url, u.interface)?;
        }
    }
    if let Some(fix) = &join.fix {
        writeln!(out, "note: {fix}")?;
    }
    Ok(())
}

/// The QR code of `url` as an SVG document: black on white with the standard quiet zone, at
/// least 320 px, which a phone reads from the back of a room when projected.
pub fn qr_svg(url: &str) -> String {
    use qrcode::render::svg;
    match qrcode::QrCode::new(url.as_bytes()) {
        Ok(code) => code
            .render::<svg::Color>()
            .min_dimensions(320, 320)
            .quiet_zone(true)
            .build(),
        // Only a URL longer than a QR code holds (~2900 bytes), which no address is.
        Err(e) => format!(
            "<svg xmlns=\"http://www.w3.org/2000/svg\"><title>{}</title></svg>",
            e.to_string().replace('<', "")
        ),
    }
}

/// The server's listening address as the dashboard sees it: the one [`Live`] was told, or
/// loopback when nobody told it (an app built without [`crate::server::serve`]).
fn listening(live: &Live) -> SocketAddr {
    live.listening()
        .unwrap_or_else(|| SocketAddr::new(Ipv4Addr::LOCALHOST.into(), 0))
}

/// Answer of `GET /live/join`: [`Join`] plus the URL the dashboard shows and encodes.
#[derive(Debug, Serialize)]
pub struct JoinView {
    /// The URL in large type and in the QR code.
    pub shown: String,
    /// Every address and the loopback note.
    #[serde(flatten)]
    pub join: Join,
}

/// `GET /live/join`: where students join, for the dashboard's header.
pub(super) async fn view(_teacher: Teacher, State(live): State<Arc<Live>>) -> Json<JoinView> {
    let at = listening(&live);
    let join = join_for(at, &interface_addresses());
    Json(JoinView {
        shown: join.shown_url(at),
        join,
    })
}

/// `GET /live/join.svg`: the QR code of the shown URL.
pub(super) async fn qr(_teacher: Teacher, State(live): State<Arc<Live>>) -> impl IntoResponse {
    let at = listening(&live);
    let svg = qr_svg(&join_for(at, &interface_addresses()).shown_url(at));
    (
        [
            (header::CONTENT_TYPE, "image/svg+xml"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        svg,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wifi() -> Vec<(String, Ipv4Addr)> {
        vec![
            ("wlan0".to_owned(), Ipv4Addr::new(192, 168, 1, 23)),
            ("docker0".to_owned(), Ipv4Addr::new(172, 17, 0, 1)),
        ]
    }

    #[test]
    fn every_interface_is_a_join_address_when_listening_on_all() {
        let join = join_for("0.0.0.0:8080".parse().unwrap(), &wifi());
        let urls: Vec<&str> = join.urls.iter().map(|u| u.url.as_str()).collect();
        assert_eq!(
            urls,
            ["http://192.168.1.23:8080/", "http://172.17.0.1:8080/"]
        );
        assert!(!join.loopback_only && join.fix.is_none());
        let mut out = Vec::new();
        announce(&mut out, "0.0.0.0:8080".parse().unwrap(), "t0k", &join).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "teacher: http://127.0.0.1:8080/dashboard?token=t0k\n\
             students: http://192.168.1.23:8080/ (wlan0)\n\
             students: http://172.17.0.1:8080/ (docker0)\n"
        );
    }

    #[test]
    fn loopback_says_students_cannot_reach_it_and_how_to_fix_it() {
        let at: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        let join = join_for(at, &wifi());
        assert!(join.loopback_only && join.urls.is_empty());
        let mut out = Vec::new();
        announce(&mut out, at, "t0k", &join).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.starts_with("teacher: http://127.0.0.1:9000/dashboard?token=t0k\n"),
            "{text}"
        );
        assert!(text.contains("students cannot reach 127.0.0.1"), "{text}");
        assert!(text.contains("--listen 0.0.0.0:9000"), "{text}");
        assert_eq!(join.shown_url(at), "http://127.0.0.1:9000/");
    }

    #[test]
    fn one_interface_address_is_the_only_join_address() {
        let join = join_for("192.168.1.23:80".parse().unwrap(), &wifi());
        assert_eq!(
            join.urls,
            [JoinUrl {
                url: "http://192.168.1.23:80/".to_owned(),
                interface: "wlan0".to_owned()
            }]
        );
    }

    #[test]
    fn no_network_says_so() {
        let join = join_for("0.0.0.0:8080".parse().unwrap(), &[]);
        assert!(join.urls.is_empty());
        assert!(join.fix.unwrap().contains("no network address"));
    }

    #[test]
    fn qr_code_is_an_svg_document() {
        let svg = qr_svg("http://192.168.1.23:8080/");
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
    }
}
