//! Client connections: TCP connects spread over 127.0.0.x source addresses, a byte-counting
//! wrapper at the socket, and (when the scenario asks for a network) the netem delay proxy on
//! top. Every transport client opens its connections here, so bytes are counted in one place.
//!
//! Counting sits *beneath* the delay proxy (on the real socket), so the bytes are exactly those
//! that crossed the loopback interface for this client.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use wire::metered::{Metered, Tally};

use crate::meter::PhaseMeter;
use crate::netem::{DelayedStream, NetworkConditions, emulate_seeded};
use crate::seed::{Stream, derive};

/// Source addresses the clients are spread over: 127.0.0.2 ..= 127.0.0.(1 + this). Each gives
/// its own ~28k ephemeral ports, so connections in TIME_WAIT from earlier phases never run a
/// source address dry.
pub const SOURCE_ADDRESSES: u8 = 16;

/// Bytes read on one connection (a client compares before and after a request to know what one
/// answer cost; what a client writes is known from the phase's total alone).
#[derive(Debug, Default)]
pub struct ConnBytes {
    /// Bytes read so far.
    pub read: AtomicU64,
    /// The node it went to: its server's index in the connector's list (0 for one server).
    pub node: usize,
}

/// What a client socket reports to: bytes read go to its connection's and its phase's counters,
/// bytes written to its phase's.
#[derive(Debug)]
pub struct ClientTally {
    conn: Arc<ConnBytes>,
    meter: Arc<PhaseMeter>,
}

impl Tally for ClientTally {
    fn read(&self, n: usize) {
        self.conn.read.fetch_add(n as u64, Relaxed);
        self.meter.traffic.bytes_down.fetch_add(n as u64, Relaxed);
    }

    fn written(&self, n: usize) {
        self.meter.traffic.bytes_up.fetch_add(n as u64, Relaxed);
    }
}

/// A stream that counts what crosses it into its connection's and its phase's counters (the
/// server's [`Metered`] wrapper, so both ends count bytes the same way: at the socket, beneath
/// hyper and tungstenite).
pub type Counted<S> = Metered<S, ClientTally>;

/// A client's connection: counted, and delayed when the scenario emulates a network.
#[derive(Debug)]
pub enum ClientIo {
    /// Loopback as it is.
    Direct(Counted<TcpStream>),
    /// Through the netem delay proxy.
    Delayed(DelayedStream),
}

impl AsyncRead for ClientIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Direct(s) => Pin::new(s).poll_read(cx, buf),
            ClientIo::Delayed(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for ClientIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Direct(s) => Pin::new(s).poll_write(cx, buf),
            ClientIo::Delayed(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    // Both variants gather writes; forwarding keeps hyper from flattening its writes through us.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            ClientIo::Direct(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            ClientIo::Delayed(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            ClientIo::Direct(s) => s.is_write_vectored(),
            ClientIo::Delayed(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Direct(s) => Pin::new(s).poll_flush(cx),
            ClientIo::Delayed(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            ClientIo::Direct(s) => Pin::new(s).poll_shutdown(cx),
            ClientIo::Delayed(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}

/// Opens client connections to one server, or round-robin to the nodes of a cluster.
#[derive(Debug)]
pub struct Connector {
    servers: Vec<SocketAddr>,
    /// Nodes taken out of the rotation (killed by a fault), as a load balancer's health check
    /// would: a reconnect goes to a live node instead of failing on the dead one first.
    down: Vec<AtomicBool>,
    network: NetworkConditions,
    next_source: AtomicUsize,
    next_server: AtomicUsize,
    spread: bool,
    /// The run's seed, for each connection's jitter.
    seed: u64,
    /// Connections opened so far: the next one's jitter stream.
    opened: AtomicU64,
}

impl Connector {
    /// Connects to `server`; spreads source addresses when the server is on loopback.
    pub fn new(server: SocketAddr, network: NetworkConditions) -> Self {
        Self::across(vec![server], network)
    }

    /// Connects to each of `servers` in turn (the nodes of a cluster: one client's successive
    /// connections, a receiver's and a sender's, and a reconnect after a node died land on
    /// different nodes). Panics on an empty list.
    pub fn across(servers: Vec<SocketAddr>, network: NetworkConditions) -> Self {
        assert!(!servers.is_empty(), "a connector needs a server");
        Self {
            spread: servers.iter().all(|s| s.ip().is_loopback() && s.is_ipv4()),
            down: servers.iter().map(|_| AtomicBool::new(false)).collect(),
            servers,
            network,
            next_source: AtomicUsize::new(0),
            next_server: AtomicUsize::new(0),
            seed: 0,
            opened: AtomicU64::new(0),
        }
    }

    /// The same connector with its connections' jitter drawn from the run's `seed` (the n-th
    /// connection opened gets the n-th jitter stream).
    pub fn with_seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// A connector to the same servers over loopback as it is (no emulated network), with the
    /// same seed: for measurements the models add the network's trips to themselves.
    pub fn without_network(&self) -> Self {
        Self::across(self.servers.clone(), NetworkConditions::IDEAL).with_seed(self.seed)
    }

    /// Takes `server` out of the rotation: later connections go to the other nodes (all of them
    /// still, should every node be down).
    pub fn mark_down(&self, server: SocketAddr) {
        for (s, down) in self.servers.iter().zip(&self.down) {
            if *s == server {
                down.store(true, Relaxed);
            }
        }
    }

    /// The next server's index in turn, skipping those marked down.
    fn next_server(&self) -> usize {
        let n = self.servers.len();
        for _ in 0..n {
            let i = self.next_server.fetch_add(1, Relaxed) % n;
            if !self.down[i].load(Relaxed) {
                return i;
            }
        }
        self.next_server.fetch_add(1, Relaxed) % n
    }

    /// Nodes it spreads over (1 for one server).
    pub fn nodes(&self) -> usize {
        self.servers.len()
    }

    /// The node a sender's HTTP publishes go to: each sender has one, as a browser's keep-alive
    /// pool is held by one node behind a balancer, so every delivery's sender node is known from
    /// its stamp's sender alone. When that node is down, the next live one after it (the same
    /// for all the sender's new connections, so its pool does not straddle two nodes).
    pub fn home_of(&self, sender: usize) -> usize {
        let n = self.servers.len();
        (0..n)
            .map(|k| (sender + k) % n)
            .find(|&i| !self.down[i].load(Relaxed))
            .unwrap_or(sender % n)
    }

    /// Source addresses in use (1 when not spreading).
    pub fn source_addresses(&self) -> u32 {
        if self.spread {
            u32::from(SOURCE_ADDRESSES)
        } else {
            1
        }
    }

    /// Opens one counted (and maybe delayed) connection, charging the emulated handshake round
    /// trip when a network is emulated. Counts the connection in `meter`.
    pub async fn connect(&self, meter: &Arc<PhaseMeter>) -> io::Result<(ClientIo, Arc<ConnBytes>)> {
        self.connect_to(None, meter).await
    }

    /// [`Connector::connect`] to node `node` (an index into the servers) while it is up, or
    /// to the next in turn when `None` or down.
    pub async fn connect_to(
        &self,
        node: Option<usize>,
        meter: &Arc<PhaseMeter>,
    ) -> io::Result<(ClientIo, Arc<ConnBytes>)> {
        let node = node
            .filter(|&i| i < self.servers.len() && !self.down[i].load(Relaxed))
            .unwrap_or_else(|| self.next_server());
        let server = self.servers[node];
        let stream = if self.spread {
            let n = self.next_source.fetch_add(1, Relaxed) % usize::from(SOURCE_ADDRESSES);
            let source = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + n as u8));
            let socket = TcpSocket::new_v4()?;
            socket.bind(SocketAddr::new(source, 0))?;
            socket.connect(server).await?
        } else {
            TcpStream::connect(server).await?
        };
        // Chat frames are small; Nagle would add up to 40 ms to a poll that hyper writes in two
        // pieces.
        stream.set_nodelay(true)?;
        meter.traffic.connections_opened.fetch_add(1, Relaxed);
        let conn = Arc::new(ConnBytes {
            read: AtomicU64::new(0),
            node,
        });
        let counted = Counted::new(
            stream,
            ClientTally {
                conn: Arc::clone(&conn),
                meter: Arc::clone(meter),
            },
        );
        let io = if self.network.is_ideal() {
            ClientIo::Direct(counted)
        } else {
            let n = self.opened.fetch_add(1, Relaxed);
            let seed = derive(self.seed, Stream::Jitter, n);
            let delayed = emulate_seeded(counted, self.network, seed);
            tokio::time::sleep(self.network.connect_delay()).await;
            delayed.into()
        };
        Ok((io, conn))
    }
}

impl From<DelayedStream> for ClientIo {
    fn from(s: DelayedStream) -> Self {
        ClientIo::Delayed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sender_keeps_its_home_node_and_moves_to_the_next_live_one_when_it_dies() {
        let nodes: Vec<SocketAddr> = (10..13)
            .map(|i| format!("127.0.0.{i}:1").parse().unwrap())
            .collect();
        let c = Connector::across(nodes.clone(), NetworkConditions::IDEAL);
        assert_eq!(
            (0..4).map(|s| c.home_of(s)).collect::<Vec<_>>(),
            [0, 1, 2, 0]
        );
        c.mark_down(nodes[2]);
        assert_eq!(
            (0..4).map(|s| c.home_of(s)).collect::<Vec<_>>(),
            [0, 1, 0, 0]
        );
    }
}
