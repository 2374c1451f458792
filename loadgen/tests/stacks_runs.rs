//! Whole phases against the real peers, through the nchan and Socket.IO adapters: every
//! transport each stack has delivers every message exactly once at tiny scale; nchan's buffer
//! shorter than a client's backlog loses messages silently (missing, never reported); a target
//! that does not speak the chosen protocol is refused in one sentence; a generic SSE/WebSocket
//! endpoint (duplex's own, spoken to as a stranger's) is measured by its templates; a scenario asking a stack
//! for a transport it lacks is refused before any load.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::CancellationToken;
use loadgen::conn::Connector;
use loadgen::netem::NetworkConditions;
use loadgen::probe::Probe;
use loadgen::runner::{PhaseSetup, run_phase};
use loadgen::scenario::{Overrides, ProtocolChoice, Scenario};
use loadgen::target::{ServerChoice, Target, TargetError};
use wire::Transport;

fn peers_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../peers")
}

fn scenario(target: &str, extra: &str) -> Scenario {
    let text = format!(
        "name = \"t\"\ndescription = \"test\"\nduration = \"2s\"\nwarmup = \"500ms\"\ndrain = \"1s\"\n\
         {extra}\n[clients]\ncount = 6\nconnect_rate = 1000\n[chat]\nsenders = 2\nrate = 4.0\n\
         [short_poll]\ninterval = \"200ms\"\n[long_poll]\ntimeout = \"2s\"\n[target]\n{target}\n"
    );
    Scenario::parse(Path::new("test.toml"), &text, &Overrides::default()).unwrap()
}

/// Starts the scenario's peer and measures each of `transports` in a fresh room.
async fn phases(
    s: &Scenario,
    transports: &[Transport],
) -> Vec<(Transport, report::results::Phase)> {
    let peer = s.stacks[0].target.peer.clone().expect("a peer scenario");
    let server = ServerChoice::Peer {
        peer,
        dir: peers_dir(),
    };
    let target = Target::start_speaking(&server, s.stacks[0].target.protocol)
        .await
        .unwrap();
    let abort = CancellationToken::new();
    let setup = PhaseSetup {
        connector: Arc::new(Connector::new(target.addr, NetworkConditions::IDEAL)),
        authority: target.addr.to_string(),
        protocol: s.stacks[0].target.adapter(),
        probe: Probe::with_metrics(target.addr, target.child_pid(), abort.clone(), false),
        abort,
        progress: loadgen::ProgressMode::Hidden,
        label: String::new(),
        cluster: None,
    };
    let mut out = Vec::new();
    for &t in transports {
        out.push((t, run_phase(s, t, format!("run-{t}"), &setup).await));
    }
    target.stop().await;
    out
}

fn assert_exact(stack: &str, results: &[(Transport, report::results::Phase)]) {
    for (t, phase) in results {
        let i = &phase.integrity;
        assert_eq!(
            phase.clients_connected, 6,
            "{stack} {t}: {:?}",
            phase.warnings
        );
        assert!(
            phase.messages_published >= 4,
            "{stack} {t}: {}",
            phase.messages_published
        );
        assert_eq!(
            i.deliveries_expected,
            6 * phase.messages_published,
            "{stack} {t}"
        );
        assert_eq!(
            (i.missing, i.duplicates),
            (0, 0),
            "{stack} {t}: {:?}",
            phase.warnings
        );
        assert!(
            phase.latency.quantile_ms(0.5).is_some(),
            "{stack} {t}: no latency recorded"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_delivers_every_message_once_on_all_four_transports() {
    let s = scenario("peer = \"nchan\"", "");
    assert_exact("nchan", &phases(&s, &Transport::ALL).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_delivers_every_message_once_by_polling_websocket_and_upgrade() {
    let s = scenario(
        "peer = \"socketio\"",
        "transports = [\"long_poll\", \"websocket\"]",
    );
    assert_exact(
        "socketio",
        &phases(&s, &[Transport::LongPoll, Transport::WebSocket]).await,
    );
    let s = scenario(
        "peer = \"socketio\"\nsocketio_websocket = \"upgrade\"",
        "transports = [\"websocket\"]",
    );
    assert_eq!(
        s.stacks[0].target.protocol,
        ProtocolChoice::SocketIo { upgrade: true }
    );
    assert_exact(
        "socketio upgrade",
        &phases(&s, &[Transport::WebSocket]).await,
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_polling_answers_gzipped_past_1_kb_are_read_like_any_other() {
    // Engine.IO gzips a polling answer of 1 KB or more for a client that accepts gzip (the
    // browser profile does): with 1.5 KB messages every answer that carries one is compressed.
    // Before the loadgen decoded them, each broke its session ("not UTF-8") and lost messages.
    let mut s = scenario("peer = \"socketio\"", "transports = [\"long_poll\"]");
    s.payload_bytes = 1500;
    let measured = phases(&s, &[Transport::LongPoll]).await;
    assert_eq!(
        measured[0].1.traffic.errors, 0,
        "{:?}",
        measured[0].1.warnings
    );
    assert_exact("socketio gzip", &measured);
    // What crossed the socket is the compressed answer: fewer bytes than the bodies it carried.
    let p = &measured[0].1;
    assert!(
        p.traffic.bytes_down < p.integrity.deliveries_received * 1500,
        "{} bytes down for {} deliveries of 1.5 KB",
        p.traffic.bytes_down,
        p.integrity.deliveries_received
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nchan_loses_a_backlog_longer_than_its_buffer_without_a_word() {
    // Interval polls every second while 2 senders publish 8/s each: each poll finds ~16 new
    // messages, of which nchan kept only the last 3.
    let s = scenario(
        "peer = \"nchan\"\nnchan_buffer = 3",
        "transports = [\"short_poll\"]",
    );
    let mut s = s;
    s.short_poll_interval = Duration::from_secs(1);
    s.rate = 8.0;
    let results = phases(&s, &[Transport::ShortPoll]).await;
    let i = &results[0].1.integrity;
    assert!(i.missing > 0, "{i:?}");
    assert_eq!(i.gaps_reported, 0, "nchan never says what it evicted");
    assert_eq!(i.duplicates, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_speaking_another_protocol_is_refused_in_one_sentence() {
    let (mut sio, url) = loadgen::peer::Peer::SocketIo {
        mode: loadgen::peer::RelayMode::All,
        ping_interval_ms: None,
    }
    .start(&peers_dir())
    .await
    .unwrap();
    for speaks in [ProtocolChoice::Duplex, ProtocolChoice::Nchan] {
        let started = Instant::now();
        let err = Target::start_speaking(&ServerChoice::External(url.clone()), speaks)
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, TargetError::Unreachable { .. }), "{text}");
        assert!(
            text.contains("should get") && text.contains("404"),
            "{text}"
        );
        assert!(text.len() < 400 && !text.contains('\n'), "{text}");
        assert!(started.elapsed() < Duration::from_secs(5));
    }
    // And it does speak Socket.IO.
    Target::start_speaking(
        &ServerChoice::External(url),
        ProtocolChoice::SocketIo { upgrade: false },
    )
    .await
    .unwrap();
    sio.stop().await;
}

#[test]
fn a_stack_without_the_transport_is_refused_before_any_load() {
    let text = "name = \"t\"\ndescription = \"d\"\ntransports = [\"sse\"]\n[target]\npeer = \"socketio\"\n";
    let err = Scenario::parse(Path::new("x.toml"), text, &Overrides::default()).unwrap_err();
    let e = err.to_string();
    assert!(
        e.contains("transports: socketio has no sse transport (it has long_poll, websocket)"),
        "{e}"
    );
    let text = "name = \"t\"\ndescription = \"d\"\n[target]\npeer = \"nchan\"\nurl = \"http://127.0.0.1:1\"\n";
    let e = Scenario::parse(Path::new("x.toml"), text, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target.url: give target.url or target.peer, not both"),
        "{e}"
    );
    let text = "name = \"t\"\ndescription = \"d\"\n[target]\npeer = \"redis\"\n";
    let e = Scenario::parse(Path::new("x.toml"), text, &Overrides::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target.peer: must be one of `\"nchan\"`, `\"socketio\"`"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generic_sse_and_websocket_find_the_stamp_in_another_servers_json() {
    // duplex's own endpoints, spoken to as a stranger's: its SSE data and WebSocket frames wrap
    // the body in message JSON, and its publish takes a JSON body.
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let s = scenario(
        &format!(
            "protocol = \"generic\"\nurl = \"{}\"\nsubscribe = \"/api/rooms/{{room}}/sse\"\n\
             publish = \"/api/rooms/{{room}}/messages\"\n\
             publish_body = '{{\"from\":\"{{from}}\",\"body\":\"{{stamp}}\"}}'",
            srv.url()
        ),
        "transports = [\"sse\", \"websocket\"]",
    );
    let mut results = Vec::new();
    for (t, path) in [
        (Transport::Sse, "/api/rooms/{room}/sse"),
        (Transport::WebSocket, "/api/rooms/{room}/ws"),
    ] {
        let mut s = s.clone();
        if let Some(g) = s.stacks[0].target.generic.as_mut() {
            g.subscribe = path.to_owned();
        }
        let target = Target::start_speaking(
            &ServerChoice::External(srv.url()),
            s.stacks[0].target.protocol,
        )
        .await
        .unwrap();
        let abort = CancellationToken::new();
        let setup = PhaseSetup {
            connector: Arc::new(Connector::new(target.addr, NetworkConditions::IDEAL)),
            authority: target.addr.to_string(),
            protocol: s.stacks[0].target.adapter(),
            probe: Probe::with_metrics(target.addr, None, abort.clone(), false),
            abort,
            progress: loadgen::ProgressMode::Hidden,
            label: String::new(),
            cluster: None,
        };
        results.push((t, run_phase(&s, t, format!("generic-{t}"), &setup).await));
    }
    assert_exact("generic", &results);
    srv.shutdown().await.unwrap();
}
