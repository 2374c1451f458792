//! The runner against the real server (in-process, `server::spawn` on 127.0.0.1:0): every
//! transport delivers every message exactly once, and a server that is unreachable or dies
//! ends a run quickly with what was measured.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use loadgen::CancellationToken;
use loadgen::conn::Connector;
use loadgen::netem::NetworkConditions;
use loadgen::probe::Probe;
use loadgen::protocol::duplex::Duplex;
use loadgen::runner::{PhaseSetup, run_phase};
use loadgen::scenario::{Overrides, Scenario};
use loadgen::target::{ServerChoice, Target, TargetError};
use wire::Transport;

fn small_scenario(extra: &str) -> Scenario {
    let text = format!(
        "name = \"t\"\ndescription = \"test\"\nduration = \"2s\"\nwarmup = \"500ms\"\ndrain = \"1s\"\n\
         [clients]\ncount = 8\nconnect_rate = 1000\n[chat]\nsenders = 2\nrate = 4.0\n\
         [short_poll]\ninterval = \"200ms\"\n[long_poll]\ntimeout = \"2s\"\n{extra}"
    );
    Scenario::parse(Path::new("test.toml"), &text, &Overrides::default()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_delivers_every_message_exactly_once() {
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let s = small_scenario("");
    let abort = CancellationToken::new();
    let probe = Probe::new(srv.addr, None, abort.clone());
    let setup = PhaseSetup {
        connector: Arc::new(Connector::new(srv.addr, NetworkConditions::IDEAL)),
        authority: srv.addr.to_string(),
        protocol: Arc::new(Duplex),
        probe,
        abort,
        progress: loadgen::ProgressMode::Hidden,
        label: String::new(),
        cluster: None,
    };
    for transport in Transport::ALL {
        let phase = run_phase(&s, transport, format!("exact-{transport}"), &setup).await;
        let i = phase.integrity;
        assert_eq!(
            phase.clients_connected, 8,
            "{transport}: {:?}",
            phase.warnings
        );
        // Two senders, 4/s each, for 2 s: 16 on average (Poisson, seeded).
        assert!(
            phase.messages_published >= 5,
            "{transport}: {}",
            phase.messages_published
        );
        assert_eq!(
            i.deliveries_expected,
            8 * phase.messages_published,
            "{transport}"
        );
        assert_eq!(i.missing, 0, "{transport}: {:?}", phase.warnings);
        assert_eq!(i.duplicates, 0, "{transport}");
        assert_eq!(i.out_of_order, 0, "{transport}");
        assert_eq!(phase.latency.0.len(), i.deliveries_received, "{transport}");
        assert!(phase.traffic.payload_down > 0, "{transport}");
        assert!(
            phase.traffic.payload_down + phase.traffic.header_down + phase.traffic.empty_down
                <= phase.traffic.bytes_down,
            "{transport}: {:?}",
            phase.traffic
        );
        assert_eq!(phase.traces.len(), 2, "{transport}");
        // The server's floor, measured before the phase: a loopback delivery to one idle
        // subscriber takes well under 50 ms, and its samples scatter.
        let floor = phase.model_floor_ms.expect("the floor is measured");
        assert!(floor > 0.0 && floor < 50.0, "{transport}: floor {floor} ms");
        assert!(phase.model_floor_spread_ms.is_some(), "{transport}");
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_survives_an_emulated_network() {
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let s = small_scenario("[network]\nrtt = \"40ms\"\n");
    let abort = CancellationToken::new();
    let setup = PhaseSetup {
        connector: Arc::new(Connector::new(
            srv.addr,
            NetworkConditions::new(Duration::from_millis(40), Duration::ZERO),
        )),
        authority: srv.addr.to_string(),
        protocol: Arc::new(Duplex),
        probe: Probe::new(srv.addr, None, abort.clone()),
        abort,
        progress: loadgen::ProgressMode::Hidden,
        label: String::new(),
        cluster: None,
    };
    for transport in [Transport::LongPoll, Transport::WebSocket] {
        let phase = run_phase(&s, transport, format!("rtt-{transport}"), &setup).await;
        assert_eq!(
            phase.integrity.missing, 0,
            "{transport}: {:?}",
            phase.warnings
        );
        // Every delivery crossed the emulated link one way at least: 20 ms.
        let min_ms = phase.latency.0.min() as f64 / 1000.0;
        assert!(min_ms >= 19.0, "{transport}: min latency {min_ms} ms");
        // The floor is the server's time alone: measured over loopback as it is, since the
        // models add the emulated trips themselves.
        let floor = phase.model_floor_ms.expect("the floor is measured");
        assert!(floor < 19.0, "{transport}: floor {floor} ms");
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_sender_never_waits_behind_its_own_earlier_publish() {
    // One sender publishing 8 times a second over a 300 ms round trip: a publish takes longer
    // than the mean gap, so on a single connection each would queue behind the one before and
    // latency would grow through the window (2.4 s of round trips per second). On the sender's
    // pool each leaves on time and arrives about one round trip (in 150 ms, out 150 ms) after it
    // was scheduled.
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let text = "name = \"t\"\ndescription = \"test\"\nduration = \"3s\"\nwarmup = \"1500ms\"\n\
                drain = \"2s\"\n[clients]\ncount = 4\nconnect_rate = 1000\n\
                [chat]\nsenders = 1\nrate = 8.0\n[network]\nrtt = \"300ms\"\n";
    let s = Scenario::parse(Path::new("pool.toml"), text, &Overrides::default()).unwrap();
    let abort = CancellationToken::new();
    let setup = PhaseSetup {
        connector: Arc::new(Connector::new(
            srv.addr,
            NetworkConditions::new(Duration::from_millis(300), Duration::ZERO),
        )),
        authority: srv.addr.to_string(),
        protocol: Arc::new(Duplex),
        probe: Probe::new(srv.addr, None, abort.clone()),
        abort,
        progress: loadgen::ProgressMode::Hidden,
        label: String::new(),
        cluster: None,
    };
    let phase = run_phase(&s, Transport::Sse, "pool".to_owned(), &setup).await;
    assert_eq!(phase.integrity.missing, 0, "{:?}", phase.warnings);
    assert!(
        phase.messages_published >= 12,
        "{}",
        phase.messages_published
    );
    // Most publishes find an idle connection; one that opens a new one pays its handshake (a
    // round trip) once. Queued behind each other on one connection they would wait seconds.
    let p50_ms = phase.latency.quantile_ms(0.5).unwrap();
    let max_ms = phase.latency.0.max() as f64 / 1000.0;
    assert!(p50_ms < 400.0, "publishes waited: p50 latency {p50_ms} ms");
    assert!(max_ms < 1000.0, "a publish waited: max latency {max_ms} ms");
    srv.shutdown().await.unwrap();
}

#[tokio::test]
async fn unreachable_target_fails_fast_with_a_clear_error() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let err = Target::start(&ServerChoice::External(format!("http://127.0.0.1:{port}")))
        .await
        .unwrap_err();
    assert!(matches!(err, TargetError::Unreachable { .. }), "{err}");
    assert!(err.to_string().contains("cannot reach the server"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_dying_mid_run_ends_the_run_within_seconds_and_keeps_what_was_measured() {
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let mut s = small_scenario("");
    s.duration = Duration::from_secs(60);
    s.transports = vec![Transport::Sse, Transport::WebSocket];
    let url = srv.url();
    let run = tokio::spawn(loadgen::run(loadgen::RunOptions {
        scenario: s,
        server: ServerChoice::External(url),
        progress: loadgen::ProgressMode::Hidden,
        interrupt: CancellationToken::new(),
    }));
    tokio::time::sleep(Duration::from_secs(2)).await;
    let killed = Instant::now();
    srv.shutdown().await.unwrap();
    let results = tokio::time::timeout(Duration::from_secs(20), run)
        .await
        .expect("the run must end soon after the server died")
        .unwrap()
        .unwrap();
    assert!(killed.elapsed() < Duration::from_secs(15));
    assert!(!results.complete);
    assert!(
        results
            .warnings
            .iter()
            .any(|w| w.contains("stopped answering")),
        "{:?}",
        results.warnings
    );
    let phase = &results.runs[0].phases[0];
    assert!(!phase.complete);
    assert_eq!(phase.transport, "sse");
    assert_eq!(
        results.runs[0].phases.len(),
        1,
        "no phase after the server died"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sweep_runs_every_value_and_records_them_all() {
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let text = "name = \"sweep\"\ndescription = \"test\"\ntransports = [\"websocket\"]\n\
                duration = \"2s\"\nwarmup = \"200ms\"\ndrain = \"500ms\"\n\
                [clients]\ncount = 4\n[chat]\nsenders = 1\nrate = [4.0, 12.0]\n";
    let s = Scenario::parse(Path::new("sweep.toml"), text, &Overrides::default()).unwrap();
    let results = loadgen::run(loadgen::RunOptions {
        scenario: s,
        server: ServerChoice::External(srv.url()),
        progress: loadgen::ProgressMode::Hidden,
        interrupt: CancellationToken::new(),
    })
    .await
    .unwrap();
    assert!(results.complete, "{:?}", results.warnings);
    let sweep = results
        .scenario
        .sweep
        .as_ref()
        .expect("the sweep is recorded");
    assert_eq!(sweep.key, "chat.rate");
    assert_eq!(sweep.values, [4.0, 12.0]);
    assert_eq!(results.runs.len(), 2);
    for (run, rate) in results.runs.iter().zip([4.0, 12.0]) {
        assert_eq!(run.sweep_value, Some(rate));
        assert_eq!(run.rate_per_sender, rate);
        let phase = &run.phases[0];
        assert_eq!(phase.integrity.missing, 0);
        assert!(
            phase.messages_published > 0,
            "rate {rate}: nothing published"
        );
        assert_eq!(
            phase.integrity.deliveries_expected,
            4 * phase.messages_published
        );
    }
    srv.shutdown().await.unwrap();
}
