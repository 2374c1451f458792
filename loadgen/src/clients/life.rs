//! One client's life, the same for every transport and every target protocol: connect (a few
//! tries), follow the room until stopped, reconnecting from the last seq seen after each failure
//! (as a real client would), and hand back what it received. A protocol's
//! [`TargetProtocol::client`](crate::protocol::TargetProtocol::client) picks the
//! [`TransportClient`] and runs it through [`client_task`].

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use report::results::ClientTrace;
use tokio_util::sync::CancellationToken;

use super::{ClientHandle, TransportClient, pause};
use crate::ledger::Ledger;

/// Connect attempts per client before it is given up.
pub const CONNECT_TRIES: u32 = 3;
/// Wait between a client's first connect attempts.
const CONNECT_RETRY_AFTER: Duration = Duration::from_millis(500);
/// Wait after a connected client's connection failed, before it reconnects (so a dead server
/// is not hammered in a tight loop).
const RECONNECT_AFTER: Duration = Duration::from_millis(200);

/// What a finished client hands back.
#[derive(Debug)]
pub struct ClientReport {
    /// The client's index (senders are `0..senders`): which messages it was owed.
    pub index: usize,
    /// Whether it ever connected (only connected clients are owed deliveries).
    pub connected: bool,
    /// What it received.
    pub ledger: Ledger,
    /// Its events, when it was traced.
    pub trace: Option<ClientTrace>,
}

/// [`client_task_with`] for a client that needs no setup.
pub async fn client_task<C: TransportClient<Setup = ()>>(
    me: ClientHandle,
    stop: CancellationToken,
) -> ClientReport {
    client_task_with::<C>(me, stop, ()).await
}

/// One client's life: connect with `setup` (a few tries), follow the room until stopped
/// (reconnecting from its last seq after each failure, as a real client would), hand back its
/// ledger.
pub async fn client_task_with<C: TransportClient>(
    mut me: ClientHandle,
    stop: CancellationToken,
    setup: C::Setup,
) -> ClientReport {
    let meter = Arc::clone(&me.phase.meter);
    let mut client = None;
    for attempt in 1..=CONNECT_TRIES {
        let result = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            r = C::connect(&mut me, &setup) => r,
        };
        match result {
            Ok(c) => {
                client = Some(c);
                break;
            }
            Err(e) => {
                me.on_error(&e);
                if attempt == CONNECT_TRIES || !pause(CONNECT_RETRY_AFTER, &stop).await {
                    break;
                }
            }
        }
    }
    meter.clients_attempted.fetch_add(1, Relaxed);
    let connected = client.is_some();
    if let Some(c) = client {
        meter.clients_connected.fetch_add(1, Relaxed);
        follow(c, &mut me, &setup, &stop).await;
    }
    ClientReport {
        index: me.index,
        connected,
        trace: me.trace.take().map(|events| ClientTrace {
            client: me.id.clone(),
            events,
        }),
        ledger: me.ledger,
    }
}

/// Runs `client` until `stop`; after each failure, counts it, waits, and reconnects (until it
/// succeeds or `stop`).
async fn follow<C: TransportClient>(
    mut client: C,
    me: &mut ClientHandle,
    setup: &C::Setup,
    stop: &CancellationToken,
) {
    loop {
        let Err(e) = client.run(me, stop).await else {
            return;
        };
        me.on_error(&e);
        client = loop {
            if !pause(RECONNECT_AFTER, stop).await {
                return;
            }
            let reconnected = tokio::select! {
                biased;
                _ = stop.cancelled() => return,
                r = C::connect(me, setup) => r,
            };
            match reconnected {
                Ok(c) => {
                    me.phase.meter.reconnects.fetch_add(1, Relaxed);
                    break c;
                }
                Err(e) => me.on_error(&e),
            }
        };
    }
}
