//! The server a run measures: either a `duplex serve` child that this run starts on an
//! ephemeral port (so its CPU and memory are measured apart from the loadgen's) and stops at the
//! end, or a `--target` URL given by the user, checked with `/healthz` before any load.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::process::Command;

pub use crate::child::ChildServer;
use crate::probe::http_get;

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

/// The server under measurement.
#[derive(Debug)]
pub struct Target {
    /// Its address (a cluster's first node).
    pub addr: SocketAddr,
    /// Every node's address: `[addr]`, or a cluster's nodes, which clients are spread over.
    pub nodes: Vec<SocketAddr>,
    /// Its base URL.
    pub url: String,
    /// The child, when we started it.
    pub child: Option<ChildServer>,
}

impl Target {
    /// Starts or checks the server: a child, or a cluster of `nodes` children on Redis.
    pub async fn start(choice: &ServerChoice, nodes: u64) -> Result<Target, TargetError> {
        match choice {
            ServerChoice::Child {
                exe,
                max_connections,
            } if nodes > 1 => start_cluster(exe, *max_connections, nodes).await,
            ServerChoice::Child {
                exe,
                max_connections,
            } => start_child(exe, *max_connections).await,
            ServerChoice::External(url) => {
                let addr = resolve(url).await?;
                match http_get(addr, &addr.to_string(), "/healthz", HEALTH_TIMEOUT).await {
                    Ok((200, _)) => Ok(Target {
                        addr,
                        nodes: vec![addr],
                        url: url.trim_end_matches('/').to_owned(),
                        child: None,
                    }),
                    Ok((status, body)) => Err(TargetError::Unreachable {
                        url: url.clone(),
                        why: format!("/healthz answered {status} {}", body.trim()),
                    }),
                    Err(why) => Err(TargetError::Unreachable {
                        url: url.clone(),
                        why,
                    }),
                }
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
            Some(pid) => format!("embedded child pid {pid} at {}", self.url),
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
        url,
        child: Some(child),
    })
}

/// Starts `peers/cluster/start.sh`: a `redis-server` and `nodes` duplex nodes on it, one process
/// tree (so the probe measures the cluster's CPU and RSS together, Redis included).
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
    let mut addrs = Vec::new();
    for url in urls.split_whitespace() {
        addrs.push(resolve(url).await.map_err(|e| fail(e.to_string()))?);
    }
    let (Some(&addr), Some(url)) = (addrs.first(), urls.split_whitespace().next()) else {
        return Err(fail(format!("it named no node: {urls:?}")));
    };
    Ok(Target {
        addr,
        nodes: addrs,
        url: url.to_owned(),
        child: Some(child),
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
