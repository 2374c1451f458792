//! What a curious student on the classroom network might try, each over real sockets against a
//! real server, and what the server must do instead of running out: rooms that cannot be used up,
//! answers and history that stay within their bounds, cursors that survive a restart without
//! silent loss, names that cannot hide what they are.

use std::time::Duration;

use serde_json::{Value, json};
use server::Config;
use server::feed::RoomName;
use wire::StreamItem;

use crate::helpers::*;

fn room(name: &str) -> RoomName {
    RoomName::parse(name).unwrap()
}

/// A client bound to another loopback address, so the server sees a second peer.
fn client_from(ip: [u8; 4]) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .unwrap()
}

#[tokio::test]
async fn polling_made_up_rooms_creates_none_and_lobby_still_works() {
    let t = start_default().await;
    for i in 0..300 {
        let resp = t.get(&format!("/api/rooms/made-up-{i}/poll?since=0")).await;
        assert_eq!(resp.status(), 204);
    }
    assert_eq!(t.server.state.feed.room_count(), 0);
    // A cursor into a room that does not exist is ahead of it: a reset, and no room either.
    let resp = t.get("/api/rooms/nowhere/poll?since=5").await;
    let batch: Value = resp.json().await.unwrap();
    assert_eq!(
        (batch["reset"].as_bool(), batch["next"].as_u64()),
        (Some(true), Some(0))
    );
    assert_eq!(t.server.state.feed.room_count(), 0);
    assert_eq!(t.say("lobby", "teacher", "hello").await, 1);
}

#[tokio::test]
async fn one_address_cannot_use_up_the_rooms_and_an_existing_room_is_never_refused() {
    let t = start(Config {
        rooms_per_address: 20,
        // The test's "addresses" are 127.0.0.x, exempt by default.
        limit_loopback: true,
        ..Config::default()
    })
    .await;
    assert_eq!(t.say("lobby", "teacher", "first").await, 1);
    let mallory = client_from([127, 0, 0, 66]);
    let mut refused = 0;
    for i in 0..40 {
        let resp = mallory
            .post(t.url(&format!("/api/rooms/spam-{i}/messages")))
            .json(&json!({"from": "m", "body": "x"}))
            .send()
            .await
            .unwrap();
        if resp.status() == 429 {
            let body: Value = resp.json().await.unwrap();
            assert!(body["error"].as_str().unwrap().contains("this address"));
            refused += 1;
        } else {
            assert_eq!(resp.status(), 201);
        }
    }
    assert_eq!(refused, 20);
    // Long polls and streams on made-up names count against the same share.
    let resp = mallory
        .get(t.url("/api/rooms/spam-held/longpoll?timeout_ms=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 429);
    // Others can still create rooms, and everyone can use the existing ones.
    let alice = client_from([127, 0, 0, 7]);
    let resp = alice
        .post(t.url("/api/rooms/maths/messages"))
        .json(&json!({"from": "alice", "body": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let resp = mallory
        .post(t.url("/api/rooms/lobby/messages"))
        .json(&json!({"from": "m", "body": "still here"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

#[tokio::test]
async fn rooms_nobody_follows_or_writes_to_expire() {
    // Long enough that the 21 rooms all exist before the first can expire, even on a loaded
    // machine (200 ms once let rooms expire before the subscription below was made).
    let t = start(Config {
        room_idle: Duration::from_secs(3),
        ..Config::default()
    })
    .await;
    for i in 0..20 {
        t.say(&format!("once-{i}"), "m", "x").await;
    }
    // One room is followed: it stays however long it is quiet.
    let mut sub = t
        .subscribe(wire::Transport::Sse, "followed", None, None)
        .await;
    assert_eq!(t.server.state.feed.room_count(), 21);
    // Expiry comes within room_idle plus one sweep (room_idle / 2) of the last message.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(3) * 2 + PROMPT;
    while t.server.state.feed.room_count() > 1 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "idle rooms did not expire"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(t.server.state.feed.find(&room("followed")).is_some());
    t.say("followed", "a", "still delivered").await;
    assert_eq!(seqs(&sub.expect(1).await), [1]);
}

#[tokio::test]
async fn a_poll_answer_is_bounded_in_bytes_and_next_continues_from_there() {
    let t = start_default().await;
    let body = "z".repeat(8 * 1024);
    for _ in 0..100 {
        t.say("big", "a", &body).await;
    }
    let mut since = 0;
    let mut seen = 0;
    while since < 100 {
        let resp = t.get(&format!("/api/rooms/big/poll?since={since}")).await;
        let bytes = resp.bytes().await.unwrap();
        // 256 KiB of messages at most, plus the envelope.
        assert!(
            bytes.len() < 256 * 1024 + 16 * 1024,
            "{} bytes",
            bytes.len()
        );
        let batch: wire::Batch = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(batch.messages.first().map(|m| m.seq), Some(since + 1));
        seen += batch.messages.len() as u64;
        since = batch.next;
    }
    assert_eq!(seen, 100);
}

#[tokio::test]
async fn history_stays_within_the_memory_budget_and_eviction_is_a_gap() {
    let budget = 2 * 1024 * 1024;
    let t = start(Config {
        memory_budget: budget,
        ..Config::default()
    })
    .await;
    let body = "b".repeat(60 * 1024);
    for i in 0..100 {
        t.say(&format!("r{i}"), "a", &body).await;
        t.say(&format!("r{i}"), "a", &body).await;
    }
    let kept = t.server.state.feed.bytes_kept().unwrap();
    assert!(kept <= budget, "{kept} bytes kept, budget {budget}");
    // The oldest went first, and a reader of the first room is told exactly what it lost.
    let batch: Value = t
        .get("/api/rooms/r0/poll?since=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(batch["missed"].as_u64(), Some(2));
    let newest: wire::Batch = t
        .get("/api/rooms/r99/poll?since=0")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(newest.messages.len(), 2);
}

#[tokio::test]
async fn a_cursor_from_before_a_restart_is_reset_even_once_the_log_is_past_it() {
    let before = start_default().await;
    for i in 0..40 {
        before.say("lobby", "a", &format!("old {i}")).await;
    }
    let batch: Value = before
        .get("/api/rooms/lobby/poll?since=29")
        .await
        .json()
        .await
        .unwrap();
    let epoch = batch["epoch"]
        .as_str()
        .expect("batches carry their epoch")
        .to_owned();
    assert_eq!(batch["next"].as_u64(), Some(40));
    // "Restart": a new server, whose log grows past the old cursor.
    let after = start_default().await;
    for i in 0..40 {
        after.say("lobby", "a", &format!("new {i}")).await;
    }
    for transport in [wire::Transport::ShortPoll, wire::Transport::LongPoll] {
        let path = if transport == wire::Transport::ShortPoll {
            format!("/api/rooms/lobby/poll?since={epoch}-30")
        } else {
            format!("/api/rooms/lobby/longpoll?since={epoch}-30&timeout_ms=0")
        };
        let batch: Value = after.get(&path).await.json().await.unwrap();
        assert_eq!(batch["reset"].as_bool(), Some(true), "{transport}: {batch}");
        assert_eq!(batch["next"].as_u64(), Some(40));
    }
    // SSE: an EventSource reconnecting sends its last id, `<epoch>-<seq>`.
    let resp = after
        .http
        .get(after.url("/api/rooms/lobby/sse"))
        .header("Last-Event-ID", format!("{epoch}-30"))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let chunk = tokio::time::timeout(PROMPT, futures_util::StreamExt::next(&mut stream))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(text.contains("event: reset"), "{text}");
    // WebSocket: the first frame names the epoch (the new one), and an old epoch's cursor is
    // answered with a reset.
    let (mut ws, now) = after
        .ws_connect_epoch(&format!("/api/rooms/lobby/ws?since={epoch}-30"))
        .await;
    assert_ne!(now, epoch, "a restarted server is in another epoch");
    assert_eq!(ws_next_reply(&mut ws).await, StreamItem::Reset { head: 40 });
    let same = after
        .get("/api/rooms/lobby/poll?since=40")
        .await
        .headers()
        .get("duplex-epoch")
        .map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        same.as_deref(),
        Some(now.as_str()),
        "one epoch on every transport"
    );
    // A bare seq still reads as the current epoch, as simple clients and curl send it.
    let batch: wire::Batch = after
        .get("/api/rooms/lobby/poll?since=38")
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        (batch.reset, batch.messages.len(), batch.next),
        (false, 2, 40)
    );
}

#[tokio::test]
async fn names_cannot_hide_what_they_are() {
    let t = start_default().await;
    // Invalid percent-encoding (not UTF-8 once decoded), which used to become U+FFFD.
    let resp = t.get("/api/rooms/lobby/poll?client=%ff%fe").await;
    assert_eq!(resp.status(), 400);
    let resp = t.get("/api/rooms/lobby/poll?client=%zz").await;
    assert_eq!(resp.status(), 400);
    // A right-to-left override makes "alice\u{202E}rehcaet" show as "alice" + "teacher" reversed.
    for field in ["from", "to"] {
        let mut body = json!({"from": "ok", "body": "x"});
        body[field] = json!("alice\u{202E}rehcaet");
        let resp = t.publish_json("lobby", body).await;
        assert_eq!(resp.status(), 400, "{field}");
    }
    let resp = t.get("/api/rooms/lobby/poll?client=a%E2%80%AEb").await;
    assert_eq!(resp.status(), 400);
    // The teacher's flash cannot be forged by a student.
    let resp = t
        .publish_json(
            "lobby",
            json!({"from": "teacher", "body": "{}", "event": "flash"}),
        )
        .await;
    assert_eq!(resp.status(), 400);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("reserved"));
}

fn heartbeat(tab: &str, room: &str) -> Value {
    json!({"tab": tab, "client": "s", "room": room, "transport": "sse", "state": "active"})
}

#[tokio::test]
async fn the_teachers_controls_need_the_token_from_the_teacher_url() {
    let t = start(Config {
        teacher_token: Some("sesame-0123456789".into()),
        ..Config::default()
    })
    .await;
    let flash = json!({"text": "forged flash"});
    let resp = t
        .http
        .post(t.url("/live/flash"))
        .json(&flash)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let err: Value = resp.json().await.unwrap();
    assert!(err["error"].as_str().unwrap().contains("teacher"));
    for path in [
        "/dashboard",
        "/live/stats",
        "/live/stream",
        "/dashboard?token=guess",
    ] {
        assert_eq!(t.get(path).await.status(), 403, "{path}");
    }
    // The student page needs nothing.
    assert_eq!(t.get("/").await.status(), 200);
    assert_eq!(
        t.get("/dashboard?token=sesame-0123456789").await.status(),
        200
    );
    let resp = t
        .http
        .post(t.url("/live/flash"))
        .header("x-duplex-teacher", "sesame-0123456789")
        .json(&json!({"text": "look up", "room": "lobby"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
}

/// Asks the server for a tab id as `client`'s page would; `None` when refused (with a 400).
async fn new_tab(t: &TestServer, client: &reqwest::Client) -> Option<String> {
    let resp = client.post(t.url("/live/tab")).send().await.unwrap();
    match resp.status().as_u16() {
        201 => {
            let issued: Value = resp.json().await.unwrap();
            Some(issued["tab"].as_str().unwrap().to_owned())
        }
        400 => None,
        other => panic!("POST /live/tab answered {other}"),
    }
}

#[tokio::test]
async fn forged_presence_is_bounded_per_address_and_tabs_belong_to_their_address() {
    let t = start(Config {
        limit_loopback: true,
        ..Config::default()
    })
    .await;
    let mallory = client_from([127, 0, 0, 66]);
    let mut refused = 0;
    for _ in 0..40 {
        match new_tab(&t, &mallory).await {
            Some(tab) => {
                let resp = mallory
                    .post(t.url("/live/presence"))
                    .json(&heartbeat(&tab, "lobby"))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 204);
            }
            None => refused += 1,
        }
    }
    assert_eq!(refused, 40 - server::live::presence::TABS_PER_ADDRESS);
    // A real student still joins, and nobody else can move or remove their tab.
    let alice = client_from([127, 0, 0, 7]);
    let alice_tab = new_tab(&t, &alice).await.expect("alice gets a tab");
    let resp = alice
        .post(t.url("/live/presence"))
        .json(&heartbeat(&alice_tab, "lobby"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 204);
    let mut gone = heartbeat(&alice_tab, "elsewhere");
    gone["state"] = json!("gone");
    let resp = mallory
        .post(t.url("/live/presence"))
        .json(&gone)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    assert!(t.server.state.live.presence.is_present(&alice_tab));
}

#[tokio::test]
async fn tab_ids_the_server_did_not_issue_are_refused_for_heartbeats_and_reports() {
    let t = start(Config {
        teacher_token: Some("sesame-0123456789".into()),
        ..Config::default()
    })
    .await;
    // Before: any id a page made up was taken (a script could be 2,500 students).
    for tab in ["made-up", "00000000000000000000000000000000"] {
        let resp = t
            .http
            .post(t.url("/live/presence"))
            .json(&heartbeat(tab, "lobby"))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 400, "{tab}");
        let err: Value = resp.json().await.unwrap();
        assert!(
            err["error"].as_str().unwrap().contains("/live/tab"),
            "{err}"
        );
    }
    assert!(t.server.state.live.presence.rooms().is_empty());
    // Two ids issued one after the other share nothing a script could extrapolate from.
    let (a, b) = (
        new_tab(&t, &t.http).await.unwrap(),
        new_tab(&t, &t.http).await.unwrap(),
    );
    assert_eq!(a.len(), 32, "{a}");
    let same_digits = a.chars().zip(b.chars()).filter(|(x, y)| x == y).count();
    assert!(same_digits < 16, "{a} and {b} look related");
    // An issued id that never beat is not on the page: its flash reports are refused too.
    let sent: Value = t
        .http
        .post(t.url("/live/flash"))
        .header("x-duplex-teacher", "sesame-0123456789")
        .json(&json!({"text": "now", "room": "lobby"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = json!({"flash": sent["flash"], "tab": a, "client": "s", "transport": "sse", "delay_ms": 3.0});
    let resp = t
        .http
        .post(t.url("/live/flash/report"))
        .json(&report)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
}

#[tokio::test]
async fn delay_reports_come_only_from_tabs_on_the_page_and_dashboards_see_no_tab_ids() {
    let t = start(Config {
        teacher_token: Some("sesame-0123456789".into()),
        ..Config::default()
    })
    .await;
    let teacher =
        |req: reqwest::RequestBuilder| req.header("x-duplex-teacher", "sesame-0123456789");
    let secret = new_tab(&t, &t.http).await.unwrap();
    t.http
        .post(t.url("/live/presence"))
        .json(&heartbeat(&secret, "lobby"))
        .send()
        .await
        .unwrap();
    let sent: Value = teacher(t.http.post(t.url("/live/flash")))
        .json(&json!({"text": "now"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let report = |tab: &str| json!({"flash": sent["flash"], "tab": tab, "client": "s", "transport": "sse", "delay_ms": 3.0});
    let forged = t
        .http
        .post(t.url("/live/flash/report"))
        .json(&report("made-up"))
        .send()
        .await;
    assert_eq!(forged.unwrap().status(), 400);
    let real = t
        .http
        .post(t.url("/live/flash/report"))
        .json(&report(&secret))
        .send()
        .await;
    assert_eq!(real.unwrap().status(), 204);
    let stats = teacher(t.http.get(t.url("/live/stats")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let resp = teacher(t.http.get(t.url("/live/stream")))
        .send()
        .await
        .unwrap();
    let mut stream = resp.bytes_stream();
    let chunk = tokio::time::timeout(PROMPT, futures_util::StreamExt::next(&mut stream))
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    let text = String::from_utf8_lossy(&chunk);
    assert!(
        text.contains("event: delays") && text.contains("\"dot\""),
        "{text}"
    );
    assert!(
        !text.contains(&secret) && !stats.contains(&secret),
        "{text}"
    );
}
