//! `chat.mode` against the real servers: duplex (in-process) on all four transports and the
//! Socket.IO peer on polling and WebSocket deliver each message to exactly the clients it is
//! for (everyone but the sender; one other client), so missing, duplicated and misdelivered are
//! all 0 and the deliveries owed follow the mode; nchan and generic targets, which can only
//! broadcast, are refused those modes before any load.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use loadgen::CancellationToken;
use loadgen::conn::Connector;
use loadgen::netem::NetworkConditions;
use loadgen::probe::Probe;
use loadgen::runner::{PhaseSetup, run_phase};
use loadgen::scenario::{Overrides, Scenario};
use loadgen::target::{ServerChoice, Target};
use wire::Transport;

const CLIENTS: u64 = 6;

/// A tiny scenario in `mode` against `target` (its `[target]` keys) on `transports`.
fn scenario(mode: &str, target: &str, transports: &[Transport]) -> Result<Scenario, String> {
    let list: Vec<String> = transports.iter().map(|t| format!("\"{t}\"")).collect();
    let text = format!(
        "name = \"t\"\ndescription = \"test\"\ntransports = [{}]\nduration = \"2s\"\nwarmup = \"500ms\"\ndrain = \"1s\"\n\
         [clients]\ncount = {CLIENTS}\nconnect_rate = 1000\n[chat]\nsenders = 2\nrate = 4.0\nmode = \"{mode}\"\n\
         [short_poll]\ninterval = \"200ms\"\n[long_poll]\ntimeout = \"2s\"\n[target]\n{target}\n",
        list.join(", ")
    );
    Scenario::parse(Path::new("test.toml"), &text, &Overrides::default()).map_err(|e| e.to_string())
}

/// Deliveries each message owes in `mode` with every client connected.
fn owed_per_message(mode: &str) -> u64 {
    match mode {
        "others" => CLIENTS - 1,
        _ => 1,
    }
}

fn assert_addressed(what: &str, mode: &str, phase: &report::results::Phase) {
    let i = &phase.integrity;
    assert_eq!(
        phase.clients_connected, CLIENTS,
        "{what}: {:?}",
        phase.warnings
    );
    assert!(
        phase.messages_published >= 4,
        "{what}: {}",
        phase.messages_published
    );
    assert_eq!(
        i.deliveries_expected,
        owed_per_message(mode) * phase.messages_published,
        "{what}"
    );
    assert_eq!(
        (i.missing, i.duplicates, i.misdelivered),
        (0, 0, 0),
        "{what}: {i:?} {:?}",
        phase.warnings
    );
}

fn setup(target: &Target, s: &Scenario) -> PhaseSetup {
    let abort = CancellationToken::new();
    PhaseSetup {
        connector: Arc::new(Connector::new(target.addr, NetworkConditions::IDEAL)),
        authority: target.addr.to_string(),
        protocol: s.stacks[0].target.adapter(),
        probe: Probe::new(target.addr, target.child_pid(), abort.clone()),
        abort,
        progress: loadgen::ProgressMode::Hidden,
        label: String::new(),
        cluster: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplex_delivers_others_and_direct_messages_to_exactly_their_recipients() {
    let srv = server::spawn(server::Config::default()).await.unwrap();
    let url = format!("http://{}", srv.addr);
    let target = Target::start(&ServerChoice::External(url)).await.unwrap();
    for mode in ["others", "direct"] {
        let s = scenario(mode, "", &Transport::ALL).unwrap();
        let setup = setup(&target, &s);
        for t in Transport::ALL {
            let phase = run_phase(&s, t, format!("{mode}-{t}"), &setup).await;
            assert_addressed(&format!("duplex {mode} {t}"), mode, &phase);
        }
    }
    srv.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socketio_delivers_others_and_direct_messages_to_exactly_their_recipients() {
    let dir: PathBuf = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../peers");
    let transports = [Transport::LongPoll, Transport::WebSocket];
    for mode in ["others", "direct"] {
        let s = scenario(mode, "peer = \"socketio\"", &transports).unwrap();
        let peer = s.stacks[0].target.peer.clone().unwrap();
        let target = Target::start_speaking(
            &ServerChoice::Peer {
                peer,
                dir: dir.clone(),
            },
            s.stacks[0].target.protocol,
        )
        .await
        .unwrap();
        let setup = setup(&target, &s);
        for t in transports {
            let phase = run_phase(&s, t, format!("{mode}-{t}"), &setup).await;
            assert_addressed(&format!("socketio {mode} {t}"), mode, &phase);
        }
        target.stop().await;
    }
}

#[test]
fn broadcast_only_targets_refuse_the_other_modes_in_one_sentence() {
    let e = scenario("others", "peer = \"nchan\"", &Transport::ALL).unwrap_err();
    assert!(
        e.starts_with("test.toml: chat.mode: nchan delivers every message to every subscriber"),
        "{e}"
    );
    let generic = "protocol = \"generic\"\nsubscribe = \"/e/{room}\"\npublish = \"/p/{room}\"";
    let e = scenario("direct", generic, &[Transport::Sse]).unwrap_err();
    assert!(e.contains("generic delivers every message"), "{e}");
    assert!(e.contains("cannot do \"direct\""), "{e}");
    assert!(scenario("all", "peer = \"nchan\"", &Transport::ALL).is_ok());
}
