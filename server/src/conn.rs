//! One accepted TCP connection, metered: the [`Tally`] behind the socket's
//! [`Metered`](wire::metered::Metered) wrapper, which counts the bytes read and written at the
//! socket (headers and framing included), and the connection slot held until the socket closes.
//! The slot and the meter travel inside the socket, so an upgraded WebSocket keeps both after
//! hyper hands the socket over.
//!
//! Which endpoint the bytes belong to is only known once a request is routed; the router's
//! middleware tells the [`ConnMeter`] (through a request extension). Bytes read are held back
//! until then, because on a keep-alive connection the next request's head is read while the
//! connection still belongs to the previous endpoint: they are credited when the request is
//! routed ([`ConnMeter::serve`]) and when its handler has finished reading the body
//! ([`ConnMeter::finish`]). Once a connection is a WebSocket, reads are frames and counted as
//! they come. Bytes written go to the endpoint being served (responses are written after their
//! request was routed and before the next one is).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};

use std::sync::{Arc, Mutex};

use crate::metrics::{Endpoint, Metrics, TcpSlot};
use wire::Transport;
use wire::metered::Tally;

const UNROUTED: u8 = u8::MAX;

/// The address a request came from, put in every request's extensions by the accept loop (absent
/// when a router is driven without a socket, as in `oneshot` tests).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer(pub std::net::SocketAddr);

/// Per-connection byte attribution, shared between the socket and the requests it carries.
#[derive(Debug)]
pub struct ConnMeter {
    metrics: Arc<Metrics>,
    endpoint: AtomicU8,
    pending_read: AtomicU64,
    pending_written: AtomicU64,
    /// Requests routed minus responses written: non-zero from routing until the response body
    /// has been written. At zero the socket is waiting for a head, which `guard` bounds in
    /// time. A count, not a flag: a keep-alive client may send its next request before hyper
    /// has dropped the previous response's body.
    in_request: AtomicU64,
    /// Requests routed on this connection so far: a head that was being timed has completed
    /// once this moves.
    routed: AtomicU64,
    /// The connection was upgraded (WebSocket): no more HTTP heads will come.
    upgraded: AtomicBool,
}

impl ConnMeter {
    pub(crate) fn new(metrics: Arc<Metrics>) -> Self {
        ConnMeter {
            metrics,
            endpoint: AtomicU8::new(UNROUTED),
            pending_read: AtomicU64::new(0),
            pending_written: AtomicU64::new(0),
            in_request: AtomicU64::new(0),
            routed: AtomicU64::new(0),
            upgraded: AtomicBool::new(false),
        }
    }

    /// From now on this connection's bytes count for `endpoint`; the bytes read so far (this
    /// request's head) are credited to it.
    pub fn serve(&self, endpoint: Endpoint) {
        self.in_request.fetch_add(1, Ordering::Relaxed);
        self.routed.fetch_add(1, Ordering::Relaxed);
        if self
            .endpoint
            .swap(endpoint.index() as u8, Ordering::Relaxed)
            == UNROUTED
        {
            self.metrics
                .record_sent(endpoint, self.pending_written.swap(0, Ordering::Relaxed));
        }
        self.metrics
            .record_received(endpoint, self.pending_read.swap(0, Ordering::Relaxed));
    }

    /// The handler has answered: what was read since [`ConnMeter::serve`] (the body) belongs to
    /// the endpoint being served.
    pub fn finish(&self) {
        if let Some(e) = self.current() {
            self.metrics
                .record_received(e, self.pending_read.swap(0, Ordering::Relaxed));
        }
    }

    /// The response's body has been written (or dropped): the socket waits for a head again.
    pub fn response_done(&self) {
        self.in_request.fetch_sub(1, Ordering::Relaxed);
    }

    /// The connection was switched to another protocol (`101`).
    pub fn upgrade(&self) {
        self.upgraded.store(true, Ordering::Relaxed);
    }

    /// Requests routed on this connection so far.
    pub(crate) fn routed(&self) -> u64 {
        self.routed.load(Ordering::Relaxed)
    }

    /// Whether the socket is between requests, waiting for the next head.
    pub(crate) fn awaiting_head(&self) -> bool {
        self.in_request.load(Ordering::Relaxed) == 0 && !self.upgraded.load(Ordering::Relaxed)
    }

    fn current(&self) -> Option<Endpoint> {
        Endpoint::from_index(self.endpoint.load(Ordering::Relaxed) as usize)
    }

    fn read(&self, n: usize) {
        match self.current() {
            Some(e @ Endpoint::Transport(Transport::WebSocket)) => {
                self.metrics.record_received(e, n as u64)
            }
            _ => {
                self.pending_read.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }

    fn written(&self, n: usize) {
        match self.current() {
            Some(e) => self.metrics.record_sent(e, n as u64),
            None => {
                self.pending_written.fetch_add(n as u64, Ordering::Relaxed);
            }
        }
    }
}

/// What an accepted socket reports to: its connection's [`ConnMeter`], plus the connection slot
/// the socket holds. The slot sits here rather than in the meter because requests keep clones of
/// the meter; the slot must be freed when the socket closes, not when the last clone drops.
#[derive(Debug)]
pub(crate) struct SocketTally {
    meter: Arc<ConnMeter>,
    _slot: TcpSlot,
    _address: Option<AddressSlot>,
}

impl SocketTally {
    pub(crate) fn new(meter: Arc<ConnMeter>, slot: TcpSlot, address: Option<AddressSlot>) -> Self {
        SocketTally {
            meter,
            _slot: slot,
            _address: address,
        }
    }
}

/// Open connections per peer address, for `--max-connections-per-address`. A std Mutex: taken
/// once per accept and once per close.
#[derive(Debug, Default)]
pub(crate) struct Addresses {
    open: Mutex<HashMap<IpAddr, usize>>,
}

impl Addresses {
    /// A slot for one more connection from `ip`, unless it has `limit` open already.
    pub(crate) fn take(self: &Arc<Self>, ip: IpAddr, limit: usize) -> Option<AddressSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(ip).or_default();
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(AddressSlot {
            addresses: self.clone(),
            ip,
        })
    }
}

/// One connection counted against its address until the socket closes.
#[derive(Debug)]
pub(crate) struct AddressSlot {
    addresses: Arc<Addresses>,
    ip: IpAddr,
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self
            .addresses
            .open
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

impl Tally for SocketTally {
    fn read(&self, n: usize) {
        self.meter.read(n);
    }

    fn written(&self, n: usize) {
        self.meter.written(n);
    }
}
