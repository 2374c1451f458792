//! Who is on the live page, and over which transport. Each student tab posts a heartbeat every
//! 5 s (and at once when it switches); a tab not heard from for [`FRESH`] no longer counts.
//!
//! Why heartbeats rather than the server's open-connection gauges: a short-polling client holds
//! no connection between polls and a long-polling one holds one only while a request is parked,
//! so the gauges cannot say how many *students* use a transport. The gauges still appear next to
//! these counts on the dashboard, because the difference is itself a lesson.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
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
    /// A random id per browser tab.
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

#[derive(Debug, Clone)]
struct Tab {
    /// Who sent its heartbeats (`None`: exempt, a loopback peer or no socket).
    address: Option<IpAddr>,
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
    pub fn beat(&self, beat: Heartbeat, address: Option<IpAddr>) -> Result<(), ApiError> {
        let mut tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(tab) = tabs.get(&beat.tab)
            && tab.address != address
            && tab.seen.elapsed() < FRESH
        {
            return Err(ApiError::param(
                "tab",
                "this tab id belongs to another client",
            ));
        }
        if beat.state == TabState::Gone {
            tabs.remove(&beat.tab);
            return Ok(());
        }
        if let Some(ip) = address
            && !tabs.contains_key(&beat.tab)
        {
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
        if !tabs.contains_key(&beat.tab) && tabs.len() >= MAX_TABS {
            tabs.retain(|_, t| t.seen.elapsed() < FRESH);
            if tabs.len() >= MAX_TABS {
                return Err(ApiError::param(
                    "tab",
                    format!("{MAX_TABS} tabs are already connected"),
                ));
            }
        }
        tabs.insert(
            beat.tab,
            Tab {
                address,
                room: beat.room,
                transport: beat.transport,
                state: beat.state,
                seen: Instant::now(),
            },
        );
        Ok(())
    }

    /// Whether `tab` sent a heartbeat recently.
    pub fn is_present(&self, tab: &str) -> bool {
        let tabs = self.tabs.lock().unwrap_or_else(|e| e.into_inner());
        tabs.get(tab).is_some_and(|t| t.seen.elapsed() < FRESH)
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
        for tab in tabs.values().filter(|t| t.seen.elapsed() < FRESH) {
            *rooms.entry(tab.room.as_str()).or_default() += 1;
        }
        let mut rooms: Vec<(String, usize)> =
            rooms.into_iter().map(|(r, n)| (r.to_owned(), n)).collect();
        rooms.sort();
        rooms
    }
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
    // As for connections: loopback (this machine) is not limited unless the config says so.
    let address = peer
        .map(|Extension(Peer(addr))| addr.ip())
        .filter(|ip| config.limit_loopback || !ip.is_loopback());
    live.presence.beat(beat, address)?;
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;

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
        p.beat(beat("a", Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(beat("a", Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(beat("b", Transport::Sse, TabState::Paused), None)
            .unwrap();
        p.beat(beat("c", Transport::ShortPoll, TabState::Fallback), None)
            .unwrap();
        assert_eq!(
            p.headcount(Transport::Sse),
            Headcount {
                clients: 1,
                paused: 1
            }
        );
        assert_eq!(p.headcount(Transport::ShortPoll).clients, 1);
        p.beat(beat("a", Transport::Sse, TabState::Gone), None)
            .unwrap();
        assert_eq!(p.headcount(Transport::Sse).clients, 0);
        assert_eq!(p.rooms(), vec![("lobby".to_owned(), 2)]);
    }

    #[test]
    fn a_tab_that_switches_counts_under_its_new_transport_only() {
        let p = Presence::default();
        p.beat(beat("a", Transport::Sse, TabState::Active), None)
            .unwrap();
        p.beat(beat("a", Transport::WebSocket, TabState::Active), None)
            .unwrap();
        assert_eq!(p.headcount(Transport::Sse).clients, 0);
        assert_eq!(p.headcount(Transport::WebSocket).clients, 1);
    }
}
