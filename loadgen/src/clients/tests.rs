//! The delivery arithmetic of [`ClientHandle`] in a cluster: each first delivery's latency goes
//! to the same-node or the across-nodes histogram by its receiver's node and its stamp's
//! sender's, and to neither while either is unknown.

use std::net::SocketAddr;

use super::*;
use crate::netem::NetworkConditions;
use crate::protocol::duplex::Duplex;

fn phase(senders: usize) -> Arc<PhaseCtx> {
    let nodes: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("127.0.0.{i}:1").parse().unwrap())
        .collect();
    Arc::new(PhaseCtx {
        transport: Transport::WebSocket,
        authority: "127.0.0.1:1".into(),
        room: "r".into(),
        protocol: Arc::new(Duplex),
        connector: Arc::new(Connector::across(nodes, NetworkConditions::IDEAL)),
        meter: Arc::default(),
        start: Instant::now(),
        short_poll_interval: Duration::from_secs(1),
        long_poll_timeout: Duration::from_secs(1),
        payload_bytes: 64,
        seed: 1,
        profile: profile::ClientProfile::default(),
        senders,
        clients: 8,
        mode: crate::recipients::ChatMode::All,
        published: Mutex::default(),
        sender_nodes: (0..senders).map(|_| AtomicUsize::new(0)).collect(),
    })
}

fn body(sender: u32, n: u32) -> String {
    Stamp {
        sender,
        n,
        scheduled_ns: clock::ns_at(std::time::Instant::now()),
    }
    .encode(64)
}

#[test]
fn locality_needs_both_nodes_and_compares_them() {
    assert_eq!(locality(Some(1), Some(1)), Some(Locality::SameNode));
    assert_eq!(locality(Some(0), Some(2)), Some(Locality::AcrossNodes));
    assert_eq!(locality(None, Some(2)), None);
    assert_eq!(locality(Some(0), None), None);
}

#[test]
fn first_deliveries_split_by_the_receiver_and_sender_nodes() {
    let phase = phase(2);
    phase.sender_on_node(0, 1);
    phase.sender_on_node(1, 2);
    let mut receiver = ClientHandle::new(5, Arc::clone(&phase), false);
    receiver.on_node(1);
    let now = Instant::now();
    receiver.on_message(1, &body(0, 0), now);
    receiver.on_message(2, &body(1, 0), now);
    receiver.on_message(3, &body(1, 1), now);
    // A duplicate is no second delivery.
    receiver.on_message(3, &body(1, 1), now);
    let meter = &phase.meter;
    assert_eq!(meter.latency.merged().0.len(), 3);
    assert_eq!(meter.latency_same_node.merged().0.len(), 1);
    assert_eq!(meter.latency_across_nodes.merged().0.len(), 2);
}

#[test]
fn a_receiver_on_no_known_node_splits_nothing() {
    let phase = phase(1);
    phase.sender_on_node(0, 0);
    let mut receiver = ClientHandle::new(3, Arc::clone(&phase), false);
    receiver.on_message(1, &body(0, 0), Instant::now());
    assert_eq!(phase.meter.latency.merged().0.len(), 1);
    assert_eq!(phase.meter.latency_same_node.merged().0.len(), 0);
    assert_eq!(phase.meter.latency_across_nodes.merged().0.len(), 0);
}

#[test]
fn a_websocket_sender_publishes_through_its_own_socket_s_node() {
    let phase = phase(1);
    let mut sender = ClientHandle::new(0, Arc::clone(&phase), false);
    let (_tx, rx) = mpsc::unbounded_channel();
    sender.orders = Some(rx);
    sender.on_node(2);
    assert_eq!(phase.node_of_sender(0), Some(2));
    assert_eq!(phase.node_of_sender(1), None);
}
