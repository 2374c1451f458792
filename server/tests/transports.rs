//! The feed's promises, checked on all four transports: order, exactly-once, resume, gaps,
//! resets, broadcast modes, identical bytes.

use server::wire::{StreamItem, Transport};

use crate::helpers::{seqs, start_default, ws_next_reply, ws_send};

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
