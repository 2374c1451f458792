//! The server a run measures: a `duplex serve` child that this run starts on an ephemeral port
//! (so its CPU and memory are measured apart from the loadgen's) and stops at the end; a peer
//! from `peers/` (nchan, Socket.IO) started and stopped the same way; or a URL given by the
//! user (`--target`, `target.url`), checked before any load with one request its protocol
//! must answer in its own way.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

pub use crate::child::ChildServer;
use crate::codec::CodecError;
use crate::peer::Peer;
use crate::probe::http_get;
use crate::scenario::ProtocolChoice;

/// How long a child server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `--target` server may take to answer `/healthz`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);

/// Which server to measure.
#[derive(Debug, Clone)]
pub enum ServerChoice {
    /// Start `<exe> serve --listen 127.0.0.1:0` as a child process.
    Child {
        /// The `duplex` binary.
        exe: PathBuf,
        /// Passed as `--max-connections`.
        max_connections: Option<usize>,
    },
    /// Measure this server, e.g. `http://127.0.0.1:8080`.
    External(String),
    /// Start this peer from `peers/` (`dir`).
    Peer {
        /// Which peer, with its settings.
        peer: Peer,
        /// The `peers/` folder.
        dir: PathBuf,
    },
}

/// The server could not be started or reached.
#[derive(Debug, thiserror::Error)]
pub enum TargetError {
    /// The child could not be started or did not come up.
    #[error("cannot start the server ({exe}): {why}")]
    Start {
        /// The binary.
        exe: String,
        /// Why, with its last stderr lines.
        why: String,
    },
    /// The URL is not `http://host:port`.
    #[error("bad --target URL {url:?}: {why}")]
    BadUrl {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// The server did not answer `/healthz`.
    #[error("cannot reach the server at {url}: {why}")]
    Unreachable {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
}

/// The processes of a cluster the lab started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPids {
    /// `redis-server`'s.
    pub redis: u32,
    /// Each node's, in the order of [`Target::nodes`].
    pub nodes: Vec<u32>,
}

/// The server under measurement.
#[derive(Debug)]
pub struct Target {
    /// Its address (a cluster's first node).
    pub addr: SocketAddr,
    /// Every node's address: `[addr]`, or a cluster's nodes, which clients are spread over.
    pub nodes: Vec<SocketAddr>,
    /// A cluster's processes, when the lab started one: Redis's pid and each node's, in the
    /// order of `nodes` (to measure each and to kill one).
    pub cluster: Option<ClusterPids>,
    /// Its base URL.
    pub url: String,
    /// The child, when we started it.
    pub child: Option<ChildServer>,
    /// The peer's name when the child is a peer from `peers/` (`nchan`, `socketio`).
    pub peer: Option<&'static str>,
}

impl Target {
    /// Starts or checks a server that speaks duplex's wire API.
    pub async fn start(choice: &ServerChoice) -> Result<Target, TargetError> {
        Target::start_speaking(choice, ProtocolChoice::Duplex).await
    }

    /// Starts the server (duplex's child, or a peer), or checks that the one at a URL speaks
    /// `speaks`: one request that the protocol must answer in its own way, or an error of one
    /// sentence saying what was expected and what came back.
    pub async fn start_speaking(
        choice: &ServerChoice,
        speaks: ProtocolChoice,
    ) -> Result<Target, TargetError> {
        match choice {
            ServerChoice::Child {
                exe,
                max_connections,
            } => start_child(exe, *max_connections).await,
            ServerChoice::Peer { peer, dir } => {
                let fail = |why: String| TargetError::Start {
                    exe: format!("the {} peer in {}", peer.name(), dir.display()),
                    why,
                };
                let (child, url) = peer.start(dir).await.map_err(fail)?;
                let addr = resolve(&url).await.map_err(|e| fail(e.to_string()))?;
                Ok(Target {
                    addr,
                    nodes: vec![addr],
                    cluster: None,
                    url,
                    child: Some(child),
                    peer: Some(peer.name()),
                })
            }
            ServerChoice::External(url) => {
                let addr = resolve(url).await?;
                let unreachable = |why: String| TargetError::Unreachable {
                    url: url.clone(),
                    why,
                };
                let (path, expected) = match speaks {
                    // /metrics, not /healthz: other stacks answer /healthz too (the peers do).
                    ProtocolChoice::Duplex => (
                        "/metrics",
                        "duplex's Prometheus text with duplex_messages_published_total",
                    ),
                    ProtocolChoice::Nchan => (
                        "/sub/poll/duplex-probe",
                        "an nchan interval-poll answer (304, or 200 with an Etag)",
                    ),
                    ProtocolChoice::SocketIo { .. } => (
                        "/socket.io/?EIO=4&transport=polling",
                        "an Engine.IO v4 open packet 0{\"sid\":...}",
                    ),
                    // Its endpoints are the scenario's; here only that it answers HTTP.
                    ProtocolChoice::Generic => ("/", "any HTTP answer"),
                };
                let (status, body) = http_get(addr, &addr.to_string(), path, HEALTH_TIMEOUT)
                    .await
                    .map_err(unreachable)?;
                let speaks_it = match speaks {
                    ProtocolChoice::Duplex => {
                        status == 200 && body.contains("duplex_messages_published_total")
                    }
                    ProtocolChoice::Nchan => status == 304 || status == 200,
                    ProtocolChoice::SocketIo { .. } => {
                        status == 200 && body.starts_with("0{\"sid\"")
                    }
                    ProtocolChoice::Generic => true,
                };
                if !speaks_it {
                    let got = CodecError::new("", body.trim()).got;
                    return Err(unreachable(format!(
                        "GET {path} should get {expected}, but it answered {status} {got:?}; \
                         is target.protocol = \"{}\" right?",
                        speaks.id()
                    )));
                }
                Ok(Target {
                    addr,
                    nodes: vec![addr],
                    cluster: None,
                    url: url.trim_end_matches('/').to_owned(),
                    child: None,
                    peer: None,
                })
            }
        }
    }

    /// The child's pid, when we started it.
    pub fn child_pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(ChildServer::pid)
    }

    /// How the results document names the server.
    pub fn describe(&self) -> String {
        match self.child_pid() {
            Some(pid) => match self.peer {
                Some(name) => format!("{name} peer, child pid {pid} at {}", self.url),
                None if self.nodes.len() > 1 => format!(
                    "a cluster of {} nodes on one Redis, child pid {pid} at {} and the others",
                    self.nodes.len(),
                    self.url
                ),
                None => format!("embedded child pid {pid} at {}", self.url),
            },
            None => self.url.clone(),
        }
    }

    /// The child's exit status if it has exited, with its last stderr lines.
    pub fn child_exit(&mut self) -> Option<String> {
        self.child.as_mut()?.exit()
    }

    /// Stops the child (if any) and waits for it.
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            child.stop().await;
        }
    }
}

async fn start_child(exe: &PathBuf, max_connections: Option<usize>) -> Result<Target, TargetError> {
    let fail = |why: String| TargetError::Start {
        exe: exe.display().to_string(),
        why,
    };
    let mut command = Command::new(exe);
    command.args(["serve", "--listen", "127.0.0.1:0"]);
    if let Some(n) = max_connections {
        command.args(["--max-connections", &n.to_string()]);
    }
    let (child, url) = ChildServer::start(command, "duplex listening on", START_TIMEOUT)
        .await
        .map_err(fail)?;
    let addr = resolve(&url).await.map_err(|e| fail(e.to_string()))?;
    Ok(Target {
        addr,
        nodes: vec![addr],
        cluster: None,
        url,
        child: Some(child),
        peer: None,
    })
}

impl Target {
    /// Starts `peers/cluster/start.sh` with duplex binary `exe`: a `redis-server` and `nodes`
    /// duplex nodes on it, one process tree (so the probe measures the cluster's CPU and RSS
    /// together, Redis included).
    pub async fn start_cluster(
        exe: &std::path::Path,
        max_connections: Option<usize>,
        nodes: u64,
    ) -> Result<Target, TargetError> {
        start_cluster(exe, max_connections, nodes).await
    }
}

async fn start_cluster(
    exe: &std::path::Path,
    max_connections: Option<usize>,
    nodes: u64,
) -> Result<Target, TargetError> {
    let script = crate::peer::peers_dir().join("cluster/start.sh");
    let fail = |why: String| TargetError::Start {
        exe: script.display().to_string(),
        why,
    };
    let redis_port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| fail(format!("no free port for Redis: {e}")))?
        .port();
    let mut command = Command::new(&script);
    command
        .arg("--exe")
        .arg(exe)
        .args(["--nodes", &nodes.to_string()])
        .args(["--redis-port", &redis_port.to_string()]);
    if let Some(n) = max_connections {
        // Each node gets the whole limit: the per-process open-file bound it protects.
        command.args(["--", "--max-connections", &n.to_string()]);
    }
    let (child, urls) = ChildServer::start(command, "cluster listening on", START_TIMEOUT)
        .await
        .map_err(fail)?;
    let (urls, pids) = urls
        .split_once(" pids ")
        .ok_or_else(|| fail(format!("it named no pids: {urls:?}")))?;
    let pids: Vec<u32> = pids
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|e| fail(format!("a pid in {pids:?}: {e}")))?;
    let mut addrs = Vec::new();
    for url in urls.split_whitespace() {
        addrs.push(resolve(url).await.map_err(|e| fail(e.to_string()))?);
    }
    let (Some(&addr), Some(url)) = (addrs.first(), urls.split_whitespace().next()) else {
        return Err(fail(format!("it named no node: {urls:?}")));
    };
    let Some((&redis, node_pids)) = pids.split_first().filter(|(_, n)| n.len() == addrs.len())
    else {
        return Err(fail(format!(
            "{} pids for {} nodes and Redis",
            pids.len(),
            addrs.len()
        )));
    };
    Ok(Target {
        addr,
        cluster: Some(ClusterPids {
            redis,
            nodes: node_pids.to_vec(),
        }),
        nodes: addrs,
        url: url.to_owned(),
        child: Some(child),
        peer: None,
    })
}

/// `http://host:port[/]` -> a socket address.
async fn resolve(url: &str) -> Result<SocketAddr, TargetError> {
    let bad = |why: &str| TargetError::BadUrl {
        url: url.to_owned(),
        why: why.to_owned(),
    };
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| bad("must start with http://"))?;
    let authority = rest.split('/').next().unwrap_or(rest);
    let authority = if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    };
    tokio::net::lookup_host(&authority)
        .await
        .map_err(|e| bad(&e.to_string()))?
        .find(|a| a.is_ipv4())
        .ok_or_else(|| bad("resolves to no IPv4 address"))
}
