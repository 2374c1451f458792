//! The feed's promises, checked on all four transports: order, exactly-once, resume, gaps,
//! resets, broadcast modes, identical bytes.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use server::Config;
use tokio::time::Instant;
use wire::{Batch, StreamItem, Transport};

use crate::helpers::{PROMPT, seqs, start, start_default, ws_next_reply, ws_send};

#[tokio::test]
async fn messages_arrive_once_and_in_order_on_every_transport() {
    let t = start_default().await;
    for transport in Transport::ALL {
        let room = format!("order-{transport}");
        let mut sub = t.subscribe(transport, &room, Some("reader"), None).await;
        for i in 0..20 {
            t.say(&room, "writer", &format!("m{i}")).await;
        }
        let got = sub.expect(20).await;
        assert_eq!(seqs(&got), (1..=20).collect::<Vec<_>>(), "{transport}");
        for (i, g) in got.iter().enumerate() {
            let StreamItem::Message(m) = &g.item else {
                unreachable!()
            };
            assert_eq!(m.body, format!("m{i}"), "{transport}");
        }
        sub.expect_quiet().await;
    }
}

#[tokio::test]
async fn websocket_send_is_acked_and_every_transport_gets_identical_bytes() {
    let t = start_default().await;
    let room = "same-bytes";
    let mut subs = Vec::new();
    for transport in Transport::ALL {
        subs.push(t.subscribe(transport, room, Some("reader"), None).await);
    }
    let mut sender = t
        .subscribe(Transport::WebSocket, room, Some("ws-writer"), None)
        .await;
    ws_send(
        sender.ws(),
        r#"{"type":"send","body":"hello \"all\"","event":"note","ref":7}"#,
    )
    .await;
    let StreamItem::Ack { reference, seq } = ws_next_reply(sender.ws()).await else {
        panic!("expected an ack");
    };
    assert_eq!((reference, seq), (7, 1));
    let mut raws = Vec::new();
    for sub in &mut subs {
        let got = sub.expect(1).await;
        let StreamItem::Message(m) = &got[0].item else {
            panic!("{}: not a message", sub.transport)
        };
        assert_eq!(
            (m.seq, m.event.as_str(), m.from.as_str(), m.body.as_str()),
            (1, "note", "ws-writer", "hello \"all\"")
        );
        raws.push(got[0].raw.clone());
    }
    assert!(raws.iter().all(|r| *r == raws[0]), "{raws:#?}");
}

#[tokio::test]
async fn resume_from_since_delivers_exactly_what_was_missed() {
    let t = start_default().await;
    for transport in Transport::ALL {
        let room = format!("resume-{transport}");
        for i in 0..10 {
            t.say(&room, "w", &i.to_string()).await;
        }
        let mut sub = t.subscribe(transport, &room, Some("r"), Some(4)).await;
        let got = sub.expect(6).await;
        assert_eq!(seqs(&got), (5..=10).collect::<Vec<_>>(), "{transport}");
        sub.expect_quiet().await;
        // And it goes on live from there.
        t.say(&room, "w", "live").await;
        assert_eq!(seqs(&sub.expect(1).await), [11], "{transport}");
    }
}

#[tokio::test]
async fn since_zero_delivers_everything_in_history() {
    let t = start_default().await;
    for transport in Transport::ALL {
        let room = format!("all-{transport}");
        for _ in 0..3 {
            t.say(&room, "w", "x").await;
        }
        let mut sub = t.subscribe(transport, &room, None, Some(0)).await;
        assert_eq!(seqs(&sub.expect(3).await), [1, 2, 3], "{transport}");
    }
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_over_since() {
    let t = start_default().await;
    for i in 0..6 {
        t.say("lei", "w", &i.to_string()).await;
    }
    // EventSource reconnects with its original URL (since=1) plus the header: the header wins.
    let resp = t
        .http
        .get(t.url("/api/rooms/lei/sse?since=1"))
        .header("Last-Event-ID", "4")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let mut text = String::new();
    // Ids are cursors, `<epoch>-<seq>`; a bare Last-Event-ID is read as the current epoch.
    let epoch = format!(
        "{}",
        t.server
            .state
            .feed
            .find(&server::feed::RoomName::parse("lei").unwrap())
            .unwrap()
            .epoch()
    );
    while !text.contains(&format!("id: {epoch}-6\n")) {
        let chunk = tokio::time::timeout(PROMPT, body.next())
            .await
            .expect("events in time")
            .unwrap()
            .unwrap();
        text.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(
        !text.contains(&format!("id: {epoch}-4\n"))
            && text.contains(&format!(
                "id: {epoch}-5\nevent: chat\ndata: {{\"type\":\"message\",\"seq\":5"
            )),
        "{text}"
    );
}

#[tokio::test]
async fn evicted_history_is_reported_as_a_gap_with_the_exact_count() {
    let t = start(Config {
        history: 5,
        ..Config::default()
    })
    .await;
    for transport in Transport::ALL {
        let room = format!("gap-{transport}");
        for _ in 0..12 {
            t.say(&room, "w", "x").await;
        }
        // Kept: 8..=12. Lost after 2: 3..=7.
        let mut sub = t.subscribe(transport, &room, Some("r"), Some(2)).await;
        let got = sub.expect(6).await;
        assert_eq!(got[0].item, StreamItem::Gap { missed: 5 }, "{transport}");
        assert_eq!(seqs(&got[1..]), [8, 9, 10, 11, 12], "{transport}");
    }
}

#[tokio::test]
async fn since_ahead_of_the_log_gives_a_reset_then_continues_from_head() {
    let t = start_default().await;
    for transport in Transport::ALL {
        let room = format!("reset-{transport}");
        for _ in 0..3 {
            t.say(&room, "w", "x").await;
        }
        let mut sub = t.subscribe(transport, &room, Some("r"), Some(100)).await;
        let got = sub.expect(1).await;
        assert_eq!(got[0].item, StreamItem::Reset { head: 3 }, "{transport}");
        t.say(&room, "w", "after").await;
        assert_eq!(seqs(&sub.expect(1).await), [4], "{transport}");
        sub.expect_quiet().await;
    }
}

#[tokio::test]
async fn a_poll_reset_is_200_with_empty_messages_and_next_at_head() {
    let t = start_default().await;
    t.say("pr", "w", "x").await;
    for kind in ["poll", "longpoll"] {
        let resp = t.get(&format!("/api/rooms/pr/{kind}?since=9")).await;
        assert_eq!(resp.status(), 200);
        let batch: Batch = resp.json().await.unwrap();
        assert!(
            batch.reset && batch.messages.is_empty() && batch.next == 1,
            "{batch:?}"
        );
    }
}

#[tokio::test]
async fn broadcast_modes_reach_exactly_the_right_clients() {
    let t = start_default().await;
    for transport in Transport::ALL {
        let room = format!("modes-{transport}");
        let mut alice = t.subscribe(transport, &room, Some("alice"), None).await;
        let mut bob = t.subscribe(transport, &room, Some("bob"), None).await;
        let mut carol = t.subscribe(transport, &room, Some("carol"), None).await;
        let all = json!({"from": "alice", "body": "to everyone"});
        let others = json!({"from": "alice", "body": "not me", "echo": false});
        let direct = json!({"from": "alice", "body": "psst", "to": "bob"});
        for body in [all, others, direct] {
            t.say_json(&room, body).await;
        }
        // A last message to everyone marks the end, so "did not get it" is not a timing guess.
        t.say(&room, "dave", "end").await;
        assert_eq!(seqs(&alice.expect(2).await), [1, 4], "{transport} alice");
        assert_eq!(seqs(&bob.expect(4).await), [1, 2, 3, 4], "{transport} bob");
        assert_eq!(seqs(&carol.expect(3).await), [1, 2, 4], "{transport} carol");
        for sub in [&mut alice, &mut bob, &mut carol] {
            sub.expect_quiet().await;
        }
    }
}

#[tokio::test]
async fn long_poll_wakes_promptly_on_publish() {
    let t = start_default().await;
    let http = t.http.clone();
    let url = t.url("/api/rooms/wake/longpoll?since=0&timeout_ms=60000");
    let started = Instant::now();
    let poll = tokio::spawn(async move { http.get(url).send().await.unwrap() });
    // Give the poll time to be parked; even if it is not yet, it must still see the message.
    tokio::time::sleep(Duration::from_millis(200)).await;
    t.say("wake", "w", "now").await;
    let resp = tokio::time::timeout(PROMPT, poll)
        .await
        .expect("answered long before its 60 s timeout")
        .unwrap();
    assert_eq!(resp.status(), 200);
    let batch: Batch = resp.json().await.unwrap();
    assert_eq!(batch.messages[0].body, "now");
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[tokio::test]
async fn long_poll_returns_204_after_its_timeout() {
    let t = start_default().await;
    t.say("idle", "w", "old").await;
    let started = Instant::now();
    let resp = t
        .get("/api/rooms/idle/longpoll?since=1&timeout_ms=300")
        .await;
    assert_eq!(resp.status(), 204);
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert_eq!(resp.headers()["duplex-next"], "1");
}

#[tokio::test]
async fn short_poll_returns_204_when_nothing_is_newer() {
    let t = start_default().await;
    assert_eq!(t.get("/api/rooms/quiet/poll?since=0").await.status(), 204);
    t.say("quiet", "w", "x").await;
    assert_eq!(t.get("/api/rooms/quiet/poll?since=1").await.status(), 204);
    assert_eq!(t.get("/api/rooms/quiet/poll").await.status(), 204);
    assert_eq!(t.get("/api/rooms/quiet/poll?since=0").await.status(), 200);
}

#[tokio::test]
async fn a_consumer_that_stops_reading_falls_behind_into_a_gap_without_stalling_publishers() {
    let t = start(Config {
        history: 20,
        ..Config::default()
    })
    .await;
    let total: u64 = 400;
    let body = "x".repeat(32 * 1024);
    for transport in [Transport::Sse, Transport::WebSocket] {
        let room = format!("slow-{transport}");
        // Subscribed, then not read while 12 MiB are published: more than the socket buffers.
        let mut slow = t.subscribe(transport, &room, Some("slow"), None).await;
        let publishing = Instant::now();
        for _ in 0..total {
            t.say(&room, "w", &body).await;
        }
        assert!(
            publishing.elapsed() < Duration::from_secs(60),
            "{transport}: publish stalled"
        );
        let mut delivered = Vec::new();
        let mut missed = 0;
        while delivered.last() != Some(&total) {
            let got = slow.take(1, PROMPT).await;
            assert!(
                !got.is_empty(),
                "{transport}: stream ended at {delivered:?}"
            );
            match &got[0].item {
                StreamItem::Gap { missed: k } => missed += k,
                StreamItem::Message(m) => delivered.push(m.seq),
                other => panic!("{transport}: unexpected {other:?}"),
            }
        }
        assert!(missed > 0, "{transport}: expected a gap");
        assert!(
            delivered.windows(2).all(|w| w[0] < w[1]),
            "{transport}: order"
        );
        assert_eq!(
            delivered.len() as u64 + missed,
            total,
            "{transport}: every seq accounted for"
        );
    }
}

#[tokio::test]
async fn concurrent_publishers_reach_every_subscriber_exactly_once_in_seq_order() {
    let t = start_default().await;
    let room = "busy";
    let mut subs = Vec::new();
    for transport in Transport::ALL {
        for i in 0..5 {
            subs.push(
                t.subscribe(transport, room, Some(&format!("{transport}-{i}")), None)
                    .await,
            );
        }
    }
    let (publishers, each) = (5, 40);
    let mut tasks = tokio::task::JoinSet::new();
    for p in 0..publishers {
        let http = t.http.clone();
        let url = t.url(&format!("/api/rooms/{room}/messages"));
        tasks.spawn(async move {
            for n in 0..each {
                let resp = http
                    .post(&url)
                    .json(&json!({"from": format!("p{p}"), "body": format!("{p}/{n}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(resp.status(), 201);
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
    // One more after all of them: anything duplicated would arrive before it.
    t.say(room, "marker", "end").await;
    let total = publishers * each + 1;
    for sub in &mut subs {
        let got = sub.expect(total).await;
        assert_eq!(
            seqs(&got),
            (1..=total as u64).collect::<Vec<_>>(),
            "{}",
            sub.transport
        );
    }
}
