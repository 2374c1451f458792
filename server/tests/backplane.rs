//! Several nodes on one Redis (`--backplane`): a real `redis-server`, started and stopped by each
//! test on a free loopback port with persistence off, and two or more in-process servers pointed
//! at it. What a deployment of several nodes relies on, for every transport: a publish on one
//! node reaches subscribers on another with the same seq, exactly once; a client resumes on
//! another node after its node died and loses nothing; a Redis that lost its data is a reset,
//! never a silent loss.

use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use server::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::Instant;
use wire::{StreamItem, Transport};

use crate::helpers::{PROMPT, TestServer, seqs, start};

/// A `redis-server` child on 127.0.0.1, killed when dropped.
struct Redis {
    port: u16,
    child: Child,
}

impl Redis {
    /// Starts one on a free port (Redis takes no port 0: bind one, release it, hand it over).
    async fn start() -> Redis {
        let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        Redis::start_on(port).await
    }

    async fn start_on(port: u16) -> Redis {
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server is installed (apt-get install redis-server)");
        let redis = Redis { port, child };
        redis.wait_ready().await;
        redis
    }

    /// Waits until it answers `PING`.
    async fn wait_ready(&self) {
        let deadline = Instant::now() + PROMPT;
        loop {
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
            if let Ok(mut tcp) = tokio::net::TcpStream::connect(addr).await {
                let mut buf = [0; 7];
                if tcp.write_all(b"PING\r\n").await.is_ok()
                    && tcp.read_exact(&mut buf).await.is_ok()
                    && &buf == b"+PONG\r\n"
                {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Drops the tail connections of `nodes` nodes (the clients blocked in `XREAD`), once that
    /// many are blocked: a node's tail then waits before it connects again and loads its rooms,
    /// so for that long (50 ms or more) its window trails Redis, as a busy node's tail does by a
    /// few ms.
    async fn drop_tails(&self, nodes: usize) {
        let mut conn = redis::Client::open(self.url())
            .and_then(|c| c.get_connection())
            .expect("a connection to the test's redis-server");
        let deadline = Instant::now() + PROMPT;
        let tails = loop {
            let list: String = redis::cmd("CLIENT").arg("LIST").query(&mut conn).unwrap();
            let tails: Vec<String> = list
                .lines()
                .filter(|line| line.contains(" cmd=xread"))
                .filter_map(|line| line.split(' ').find_map(|f| f.strip_prefix("id=")))
                .map(str::to_owned)
                .collect();
            if tails.len() >= nodes {
                break tails;
            }
            assert!(
                Instant::now() < deadline,
                "{nodes} tails never blocked in XREAD"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        for id in tails {
            let _: redis::Value = redis::cmd("CLIENT")
                .arg("KILL")
                .arg("ID")
                .arg(id)
                .query(&mut conn)
                .unwrap();
        }
    }

    /// Kills it (all data gone: persistence is off) and starts it again on the same port.
    async fn restart(mut self) -> Redis {
        let _ = self.child.kill();
        let _ = self.child.wait();
        Redis::start_on(self.port).await
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn node(redis: &Redis) -> TestServer {
    start(Config {
        backplane: Some(redis.url()),
        ..Config::default()
    })
    .await
}

/// The room's epoch as a short poll on `node` reports it.
async fn epoch(node: &TestServer, room: &str) -> String {
    let resp = node.get(&format!("/api/rooms/{room}/poll?since=0")).await;
    match resp.status().as_u16() {
        200 => {
            let batch: serde_json::Value = resp.json().await.unwrap();
            batch["epoch"].as_str().unwrap().to_owned()
        }
        _ => resp.headers()["duplex-epoch"].to_str().unwrap().to_owned(),
    }
}

#[tokio::test]
async fn a_publish_on_one_node_reaches_every_transport_on_another_once_with_the_same_seq() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let room = "across";
    let mut on_b = Vec::new();
    for transport in Transport::ALL {
        on_b.push(b.subscribe(transport, room, Some("reader"), None).await);
    }
    let mut on_a = a
        .subscribe(Transport::Sse, room, Some("reader"), None)
        .await;
    // Publishes through both nodes, interleaved: one seq sequence for the room.
    let mut acked = Vec::new();
    for i in 0..10 {
        let publisher = if i % 3 == 0 { &b } else { &a };
        acked.push(publisher.say(room, "writer", &format!("m{i}")).await);
    }
    assert_eq!(acked, (1..=10).collect::<Vec<_>>());
    let reference = on_a.expect(10).await;
    for sub in &mut on_b {
        let got = sub.expect(10).await;
        assert_eq!(seqs(&got), acked, "{}", sub.transport);
        // The same bytes on every node: each node encodes the stream entry into the same JSON.
        for (g, r) in got.iter().zip(&reference) {
            assert_eq!(g.raw, r.raw, "{}", sub.transport);
        }
        sub.expect_quiet().await;
    }
    assert_eq!(epoch(&a, room).await, epoch(&b, room).await);
}

#[tokio::test]
async fn a_client_resumes_on_another_node_after_its_node_dies_and_loses_nothing() {
    let redis = Redis::start().await;
    for transport in Transport::ALL {
        let (a, b) = (node(&redis).await, node(&redis).await);
        let room = format!("resume-{transport}");
        let mut sub = a.subscribe(transport, &room, Some("reader"), None).await;
        for i in 0..3 {
            a.say(&room, "writer", &format!("before {i}")).await;
        }
        let first = seqs(&sub.expect(3).await);
        assert_eq!(first, [1, 2, 3], "{transport}");
        drop(sub);
        a.server.shutdown().await.unwrap();
        // Published while the client is away, through the node still up.
        for i in 0..3 {
            b.say(&room, "writer", &format!("while away {i}")).await;
        }
        let mut resumed = b.subscribe(transport, &room, Some("reader"), Some(3)).await;
        b.say(&room, "writer", "after").await;
        let got = resumed.expect(4).await;
        assert_eq!(seqs(&got), [4, 5, 6, 7], "{transport}");
        resumed.expect_quiet().await;
    }
}

#[tokio::test]
async fn a_redis_that_lost_its_data_is_a_reset_for_every_transport_never_a_silent_loss() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let room = "restart";
    let mut subs = Vec::new();
    for transport in Transport::ALL {
        subs.push(b.subscribe(transport, room, Some("reader"), None).await);
    }
    for i in 0..3 {
        a.say(room, "writer", &format!("old {i}")).await;
    }
    for sub in &mut subs {
        assert_eq!(seqs(&sub.expect(3).await), [1, 2, 3], "{}", sub.transport);
    }
    let old_epoch = epoch(&b, room).await;
    let redis = redis.restart().await;
    // Node B notices (its tail reconnects and reloads the room): a new epoch, agreed with A.
    let deadline = Instant::now() + PROMPT;
    while epoch(&b, room).await == old_epoch {
        assert!(Instant::now() < deadline, "node B never saw the new epoch");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Every client of B is told: a reset at the new log's head (a poll, when it next polls).
    for sub in &mut subs {
        let got = sub.expect(1).await;
        assert!(
            matches!(got[0].item, StreamItem::Reset { head: 0 }),
            "{}: {:?}",
            sub.transport,
            got[0].item
        );
    }
    // A publish is an error until node A's connection is made again, then seq 1 of the new
    // epoch: never acknowledged without Redis holding it.
    let deadline = Instant::now() + PROMPT;
    let seq = loop {
        let resp = a
            .publish_json(room, serde_json::json!({"from": "writer", "body": "new"}))
            .await;
        match resp.status().as_u16() {
            201 => break resp.json::<wire::Published>().await.unwrap().seq,
            503 => assert!(Instant::now() < deadline, "publishing never recovered"),
            other => panic!("publish answered {other}"),
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(seq, 1);
    assert_eq!(epoch(&a, room).await, epoch(&b, room).await);
    for sub in &mut subs {
        assert_eq!(seqs(&sub.expect(1).await), [1], "{}", sub.transport);
        sub.expect_quiet().await;
    }
    drop(redis);
}

#[tokio::test]
async fn a_node_started_with_an_unreachable_backplane_says_so() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let err = server::spawn(Config {
        backplane: Some(format!("redis://127.0.0.1:{port}")),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(
        err.to_string().contains("cannot reach the backplane"),
        "{err}"
    );
    let err = server::spawn(Config {
        backplane: Some("http://nope".into()),
        ..Config::default()
    })
    .await
    .unwrap_err();
    assert!(err.to_string().contains("bad backplane URL"), "{err}");
}

#[tokio::test]
async fn a_cursor_older_than_the_trimmed_stream_is_a_gap_with_the_exact_count_on_any_node() {
    let redis = Redis::start().await;
    let config = Config {
        backplane: Some(redis.url()),
        history: 3,
        ..Config::default()
    };
    let a = start(config.clone()).await;
    for i in 0..7 {
        a.say("trimmed", "writer", &format!("m{i}")).await;
    }
    // Node B opens the room after the stream was trimmed to 5..=7.
    let b = start(config).await;
    for transport in Transport::ALL {
        let mut sub = b.subscribe(transport, "trimmed", None, Some(1)).await;
        let got = sub.expect(4).await;
        assert!(
            matches!(got[0].item, StreamItem::Gap { missed: 3 }),
            "{transport}: {:?}",
            got[0].item
        );
        assert_eq!(seqs(&got), [5, 6, 7], "{transport}");
    }
}

/// A client that read `seq` on node A and polls node B at once is ahead of B's window for as long
/// as B's tail trails Redis (a few ms): that is "nothing yet", not a lost position. A cursor past
/// anything Redis assigned in the epoch is still a reset, at once, on every polling transport.
#[tokio::test]
async fn a_cursor_ahead_of_a_lagging_node_waits_but_one_redis_never_assigned_is_a_reset() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let room = "lagging";
    // Both follow the room, so B's window is filled by its tail (a poll does not load it afresh)
    // and both tails block in XREAD.
    for n in [&a, &b] {
        let opened = n.get(&format!("/api/rooms/{room}/poll?since=0")).await;
        assert_eq!(opened.status(), 204);
    }
    let mut resets = Vec::new();
    for i in 0..10 {
        redis.drop_tails(2).await;
        let seq = a.say(room, "writer", &format!("short {i}")).await;
        let resp = b.get(&format!("/api/rooms/{room}/poll?since={seq}")).await;
        if resp.status() == 200 {
            let batch: wire::Batch = resp.json().await.unwrap();
            assert!(
                batch.messages.is_empty(),
                "nothing follows {seq}: {batch:?}"
            );
            if batch.reset {
                resets.push(seq);
            }
        }
    }
    assert!(resets.is_empty(), "short polls on B reset at {resets:?}");
    // A long poll from a seq B has not read yet waits for the next message instead.
    for i in 0..5 {
        redis.drop_tails(2).await;
        let seq = a.say(room, "writer", &format!("long {i}")).await;
        let path = format!("/api/rooms/{room}/longpoll?since={seq}&timeout_ms=5000");
        let (resp, next) = tokio::join!(b.get(&path), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            a.say(room, "writer", &format!("after {i}")).await
        });
        assert_eq!(resp.status(), 200);
        let batch: wire::Batch = resp.json().await.unwrap();
        assert!(!batch.reset, "long poll from {seq} on B: {batch:?}");
        let got: Vec<u64> = batch.messages.iter().map(|m| m.seq).collect();
        assert_eq!((got, batch.next), (vec![next], next));
    }
    // Past what Redis ever assigned in this epoch: a reset at the head, not a wait that would
    // silently skip the seqs up to the cursor once the room grows past it.
    let head = a.say(room, "writer", "last").await;
    let ahead = head + 1000;
    for path in [
        format!("/api/rooms/{room}/poll?since={ahead}"),
        format!("/api/rooms/{room}/longpoll?since={ahead}&timeout_ms=5000"),
    ] {
        let started = Instant::now();
        let resp = b.get(&path).await;
        assert_eq!(resp.status(), 200, "{path}");
        let batch: wire::Batch = resp.json().await.unwrap();
        assert!(batch.reset, "{path}: {batch:?}");
        assert_eq!(batch.next, head, "{path}");
        assert!(started.elapsed() < Duration::from_secs(2), "{path} waited");
    }
}

/// Publishes alternate between two nodes while their tails trail Redis: each node's own append is
/// then not next in its window. It waits for the tail rather than make the window jump, which
/// would tell every reader on that node that the other node's messages were missed.
#[tokio::test]
async fn publishes_through_two_lagging_nodes_reach_readers_on_both_without_a_false_gap() {
    let redis = Redis::start().await;
    let (a, b) = (node(&redis).await, node(&redis).await);
    let room = "interleaved";
    let mut subs = Vec::new();
    for n in [&a, &b] {
        for transport in Transport::ALL {
            subs.push(n.subscribe(transport, room, Some("reader"), None).await);
        }
    }
    let mut acked = Vec::new();
    for i in 0..6 {
        redis.drop_tails(2).await;
        acked.push(a.say(room, "writer", &format!("a{i}")).await);
        acked.push(b.say(room, "writer", &format!("b{i}")).await);
    }
    assert_eq!(acked, (1..=12).collect::<Vec<_>>());
    for sub in &mut subs {
        let got = sub.expect(12).await;
        assert_eq!(seqs(&got), acked, "{}: {:?}", sub.transport, got[0].item);
        sub.expect_quiet().await;
    }
}

/// A room's keys in Redis outlive no node's use of it: once every node let the room go (nobody
/// follows it, its idle time passed), Redis deletes both keys when their TTL runs out; a room a
/// node still follows keeps its keys however quiet it is.
#[tokio::test]
async fn an_expired_rooms_keys_leave_redis_but_a_followed_rooms_stay() {
    let redis = Redis::start().await;
    let config = Config {
        backplane: Some(redis.url()),
        // The keys' TTL is then its floor, 4 s.
        room_idle: Duration::from_secs(1),
        ..Config::default()
    };
    let (a, b) = (start(config.clone()).await, start(config).await);
    let mut follower = b.subscribe(Transport::Sse, "kept", None, None).await;
    a.say("kept", "writer", "stays").await;
    a.say("gone", "writer", "goes").await;
    assert_eq!(seqs(&follower.expect(1).await), [1]);
    let mut conn = redis::Client::open(redis.url())
        .and_then(|c| c.get_connection())
        .unwrap();
    let keys = |room: &str| {
        [
            format!("duplex:{{{room}}}:meta"),
            format!("duplex:{{{room}}}:log"),
        ]
    };
    for key in keys("gone") {
        let ttl: i64 = redis::cmd("PTTL").arg(&key).query(&mut conn).unwrap();
        assert!((1..=4000).contains(&ttl), "{key}: PTTL {ttl}");
    }
    // A drops "gone" after its idle second; its TTL then runs out. B follows "kept" throughout.
    let deadline = Instant::now() + Duration::from_secs(12);
    loop {
        let exists: u64 = redis::cmd("EXISTS")
            .arg(&keys("gone"))
            .query(&mut conn)
            .unwrap();
        if exists == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "the expired room's keys stayed");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(5)).await;
    let exists: u64 = redis::cmd("EXISTS")
        .arg(&keys("kept"))
        .query(&mut conn)
        .unwrap();
    assert_eq!(
        exists, 2,
        "the followed room's keys expired under its reader"
    );
    // And it still works: the next publish continues its log.
    assert_eq!(a.say("kept", "writer", "still here").await, 2);
    assert_eq!(seqs(&follower.expect(1).await), [2]);
}
