//! Who is on the live page, and over which transport. A tab first asks the server for its id
//! (`POST /live/tab`: 128 random bits, remembered with the address that asked), then posts a
//! heartbeat every 5 s (and at once when it switches); a tab not heard from for [`FRESH`] no
//! longer counts.
//!
//! The id is the tab's only credential: heartbeats, flash delay reports and experiment reports
//! carry it, and the server accepts none for an id it did not issue, or from an address other
//! than the one it issued the id to (while the tab is fresh). It is never published: dashboards
//! see a salted digest (see [`super::flash::DelayView`]). So a student's script can neither make
//! up tabs beyond [`TABS_PER_ADDRESS`] nor speak for another student's tab.
//!
//! Why heartbeats rather than the server's open-connection gauges: a short-polling client holds
//! no connection between polls and a long-polling one holds one only while a request is parked,
//! so the gauges cannot say how many *students* use a transport. The gauges still appear next to
//! these counts on the dashboard, because the difference is itself a lesson.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::{Extension, Json};
use serde::{Deserialize, Serialize};

use super::Live;
use crate::config::Config;
use crate::conn::Peer;
use crate::error::ApiError;
use crate::extract::JsonBody;
use crate::feed::RoomName;
use wire::Transport;

/// How long a heartbeat counts: two missed 5 s beats and a bit.
pub const FRESH: Duration = Duration::from_secs(12);

/// Most tabs remembered at once, so heartbeats with made-up tab ids cannot grow memory.
pub const MAX_TABS: usize = 10_000;
/// Fresh tabs one address off this machine may have: a student's browser or two, not the 2,500
/// fake students per transport a script could otherwise show (or use to crowd out real ones).
pub const TABS_PER_ADDRESS: usize = 16;

/// What a tab is doing with its transport.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TabState {
    /// Following the room over its transport.
    Active,
    /// Hidden: its long poll or SSE connection is released until it is visible again.
    Paused,
    /// No free connection slot in its browser: short-polling instead of long poll/SSE.
    Fallback,
    /// The tab is closing.
    Gone,
}

/// Body of `POST /live/presence`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The tab's id, as `POST /live/tab` issued it.
    pub tab: String,
    /// The student's name (their client id on the wire).
    pub client: String,
    /// The room followed.
    pub room: String,
    /// The transport actually running (short_poll during a fallback); none before joining.
    pub transport: Option<Transport>,
    /// What the tab is doing.
    pub state: TabState,
}

/// Answer of `POST /live/tab`: the id the tab uses from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Issued {
    /// 32 hex digits, random; a secret of the tab's.
    pub tab: String,
}

#[derive(Debug, Clone)]
struct Tab {
    /// Who asked for the id and sends its heartbeats (`None`: exempt, a loopback peer or no
    /// socket).
    address: Option<IpAddr>,
    /// Empty until the first heartbeat names the room.
    room: String,
    transport: Option<Transport>,
    state: TabState,
    seen: Instant,
}

/// The tabs heard from recently. A std Mutex: held for a map update, never across an await.
#[derive(Debug, Default)]
pub struct Presence {
    tabs: Mutex<HashMap<String, Tab>>,
}

/// Students per transport, as the dashboard shows them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Headcount {
    /// Tabs following a room over this transport now.
    pub clients: usize,
    /// Tabs on this transport that are hidden and paused.
    pub paused: usize,
}

impl Presence {
    /// Records a heartbeat from `address` (`None`: not limited); `Gone` forgets the tab. A tab
    /// is only moved or forgotten by the address that made it.
    /// Issues a fresh tab id to `address` (`None`: not limited), unless that address already
    /// has [`TABS_PER_ADDRESS`] fresh tabs or [`MAX_TABS`] are remembered.
    pub fn issue(&self, address: Option<IpAddr>) -> Result<Issued, ApiError> {
        let mut tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(ip) = address {
            let mine = tabs
                .values()
                .filter(|t| t.address == Some(ip) && t.seen.elapsed() < FRESH)
                .count();
            if mine >= TABS_PER_ADDRESS {
                return Err(ApiError::param(
                    "tab",
                    format!("{TABS_PER_ADDRESS} tabs from this address are already on the page"),
                ));
            }
        }
        if tabs.len() >= MAX_TABS {
            tabs.retain(|_, t| t.seen.elapsed() < FRESH);
            if tabs.len() >= MAX_TABS {
                return Err(ApiError::param(
                    "tab",
                    format!("{MAX_TABS} tabs are already connected"),
                ));
            }
        }
        // 128 bits from the thread's CSPRNG: not guessable, so holding one proves it was issued.
        let id = format!("{:032x}", rand::random::<u128>());
        tabs.insert(
            id.clone(),
            Tab {
                address,
                room: String::new(),
                transport: None,
                state: TabState::Active,
                seen: Instant::now(),
            },
        );
        Ok(Issued { tab: id })
    }

    /// Records a heartbeat from `address`; `Gone` forgets the tab. Only an id this server
    /// issued counts, and only from the address it was issued to (while the tab is fresh).
    pub fn beat(&self, beat: Heartbeat, address: Option<IpAddr>) -> Result<(), ApiError> {
        let mut tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        let Some(tab) = tabs.get_mut(&beat.tab) else {
            return Err(unknown_tab());
        };
        if tab.address != address && tab.seen.elapsed() < FRESH {
            return Err(ApiError::param(
                "tab",
                "this tab id belongs to another client",
            ));
        }
        if beat.state == TabState::Gone {
            tabs.remove(&beat.tab);
            return Ok(());
        }
        *tab = Tab {
            address,
            room: beat.room,
            transport: beat.transport,
            state: beat.state,
            seen: Instant::now(),
        };
        Ok(())
    }

    /// Whether `tab` is an id this server issued, heard from recently.
    pub fn is_present(&self, tab: &str) -> bool {
        self.present_in(tab).is_some()
    }

    /// Whether `tab` is on the page and belongs to `address` (as [`Presence::beat`] records
    /// it), so one student's figures cannot be sent in another's name.
    pub fn is_present_from(&self, tab: &str, address: Option<IpAddr>) -> bool {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        tabs.get(tab)
            .is_some_and(|t| t.seen.elapsed() < FRESH && !t.room.is_empty() && t.address == address)
    }

    /// The room `tab` follows, when it is issued, fresh and has named one.
    pub fn present_in(&self, tab: &str) -> Option<String> {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        tabs.get(tab)
            .filter(|t| t.seen.elapsed() < FRESH && !t.room.is_empty())
            .map(|t| t.room.clone())
    }

    /// Fresh tabs that named a room, with it.
    pub fn tabs(&self) -> Vec<(String, String)> {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        tabs.iter()
            .filter(|(_, t)| t.seen.elapsed() < FRESH && !t.room.is_empty())
            .map(|(id, t)| (id.clone(), t.room.clone()))
            .collect()
    }

    /// How many fresh tabs use `transport`, following or paused.
    pub fn headcount(&self, transport: Transport) -> Headcount {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        let mut count = Headcount::default();
        for tab in tabs.values().filter(|t| t.seen.elapsed() < FRESH) {
            if tab.transport == Some(transport) {
                match tab.state {
                    TabState::Paused => count.paused += 1,
                    TabState::Active | TabState::Fallback => count.clients += 1,
                    TabState::Gone => {}
                }
            }
        }
        count
    }

    /// Rooms with at least one fresh tab, sorted, with how many tabs follow each.
    pub fn rooms(&self) -> Vec<(String, usize)> {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        let mut rooms: HashMap<&str, usize> = HashMap::new();
        for tab in tabs
            .values()
            .filter(|t| t.seen.elapsed() < FRESH && !t.room.is_empty())
        {
            *rooms.entry(tab.room.as_str()).or_default() += 1;
        }
        let mut rooms: Vec<(String, usize)> =
            rooms.into_iter().map(|(r, n)| (r.to_owned(), n)).collect();
        rooms.sort();
        rooms
    }
}

fn unknown_tab() -> ApiError {
    ApiError::param(
        "tab",
        "unknown tab id: a tab gets its id from POST /live/tab",
    )
}

/// The address limits apply to: the peer's, unless it is loopback (this machine) and the config
/// does not limit loopback, as for connections.
pub(super) fn limited_address(peer: Option<Extension<Peer>>, config: &Config) -> Option<IpAddr> {
    peer.map(|Extension(Peer(addr))| addr.ip())
        .filter(|ip| config.limit_loopback || !ip.is_loopback())
}

/// `POST /live/tab`: a new tab's id.
pub(super) async fn issue(
    State(live): State<Arc<Live>>,
    State(config): State<Arc<Config>>,
    peer: Option<Extension<Peer>>,
) -> Result<(StatusCode, Json<Issued>), ApiError> {
    let issued = live.presence.issue(limited_address(peer, &config))?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `POST /live/presence`.
pub(super) async fn report(
    State(live): State<Arc<Live>>,
    State(config): State<Arc<Config>>,
    peer: Option<Extension<Peer>>,
    JsonBody(beat): JsonBody<Heartbeat>,
) -> Result<StatusCode, ApiError> {
    super::check_tab_and_client(&beat.tab, &beat.client)?;
    if beat.state != TabState::Gone {
        RoomName::parse(&beat.room)?;
    }
    live.presence.beat(beat, limited_address(peer, &config))?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issues an id for each name, so tests can go on naming tabs `a`, `b`, ...
    fn issued(p: &Presence, names: &[&str]) -> HashMap<String, String> {
        names
            .iter()
            .map(|n| ((*n).to_owned(), p.issue(None).unwrap().tab))
            .collect()
    }

    fn beat(tab: &str, transport: Transport, state: TabState) -> Heartbeat {
        Heartbeat {
            tab: tab.into(),
            client: "alice".into(),
            room: "lobby".into(),
            transport: Some(transport),
            state,
        }
    }

    #[test]
    fn headcount_counts_tabs_once_and_forgets_gone_ones() {
        let p = Presence::default();
        let ids = issued(&p, &["a", "b", "c"]);
        p.beat(beat(&ids["a"], Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(beat(&ids["a"], Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(beat(&ids["b"], Transport::Sse, TabState::Paused), None)
            .unwrap();
        p.beat(
            beat(&ids["c"], Transport::ShortPoll, TabState::Fallback),
            None,
        )
        .unwrap();
        assert_eq!(
            p.headcount(Transport::Sse),
            Headcount {
                clients: 1,
                paused: 1
            }
        );
        assert_eq!(p.headcount(Transport::ShortPoll).clients, 1);
        p.beat(beat(&ids["a"], Transport::Sse, TabState::Gone), None)
            .unwrap();
        assert_eq!(p.headcount(Transport::Sse).clients, 0);
        assert_eq!(p.rooms(), vec![("lobby".to_owned(), 2)]);
    }

    #[test]
    fn a_tab_that_switches_counts_under_its_new_transport_only() {
        let p = Presence::default();
        let ids = issued(&p, &["a"]);
        p.beat(beat(&ids["a"], Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(
            beat(&ids["a"], Transport::WebSocket, TabState::Active),
            None,
        )
        .unwrap();
        assert_eq!(p.headcount(Transport::Sse).clients, 0);
        assert_eq!(p.headcount(Transport::WebSocket).clients, 1);
    }

    #[test]
    fn only_issued_ids_count_and_an_address_gets_a_bounded_number() {
        let p = Presence::default();
        let err = p
            .beat(beat("made-up", Transport::Sse, TabState::Active), None)
            .unwrap_err();
        assert!(err.to_string().contains("/live/tab"), "{err}");
        let mallory = Some(IpAddr::from([10, 0, 0, 66]));
        let ids: Vec<String> = (0..TABS_PER_ADDRESS)
            .map(|_| p.issue(mallory).unwrap().tab)
            .collect();
        assert!(p.issue(mallory).is_err());
        assert!(p.issue(Some(IpAddr::from([10, 0, 0, 7]))).is_ok());
        // Two issued ids are different, and not one beaten tab counts in a room yet.
        assert_ne!(ids[0], ids[1]);
        assert_eq!(ids[0].len(), 32);
        assert!(p.rooms().is_empty());
        // Another address cannot speak for a fresh tab.
        assert!(
            p.beat(beat(&ids[0], Transport::Sse, TabState::Gone), None)
                .is_err()
        );
        // Issued but not on the page until a heartbeat names its room.
        assert!(!p.is_present(&ids[0]));
    }
}
