//! The server a run measures: either a `duplex serve` child that this run starts on an
//! ephemeral port (so its CPU and memory are measured apart from the loadgen's) and stops at the
//! end, or a `--target` URL given by the user, checked with `/healthz` before any load.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::probe::http_get;

/// How long a child server may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a `--target` server may take to answer `/healthz`.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(3);
/// Lines of the child's stderr kept for error messages.
const STDERR_LINES: usize = 20;

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

/// A child server: its process and the tail of its stderr.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

/// The server under measurement.
#[derive(Debug)]
pub struct Target {
    /// Its address.
    pub addr: SocketAddr,
    /// Its base URL.
    pub url: String,
    /// The child, when we started it.
    pub child: Option<ChildServer>,
}

impl Target {
    /// Starts or checks the server.
    pub async fn start(choice: &ServerChoice) -> Result<Target, TargetError> {
        match choice {
            ServerChoice::Child {
                exe,
                max_connections,
            } => start_child(exe, *max_connections).await,
            ServerChoice::External(url) => {
                let addr = resolve(url).await?;
                match http_get(addr, &addr.to_string(), "/healthz", HEALTH_TIMEOUT).await {
                    Ok((200, _)) => Ok(Target {
                        addr,
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
        self.child.as_ref().and_then(|c| c.child.id())
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
        let child = self.child.as_mut()?;
        let status = child.child.try_wait().ok()??;
        let tail: Vec<String> = child
            .stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect();
        Some(format!(
            "exited with {status}; its last output: {}",
            tail.join(" | ")
        ))
    }

    /// Stops the child (if any) and waits for it.
    pub async fn stop(mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.child.start_kill();
            let _ = tokio::time::timeout(Duration::from_secs(5), child.child.wait()).await;
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
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        // Its own process group: the terminal's Ctrl-C is for the loadgen, which then stops
        // the server itself after writing what it measured.
        .process_group(0);
    let mut child = command.spawn().map_err(|e| fail(e.to_string()))?;
    let stdout = child.stdout.take().expect("piped");
    let stderr = child.stderr.take().expect("piped");

    // Keep the child's stderr drained (a full pipe would block it) and its tail for messages.
    let stderr_tail = Arc::new(Mutex::new(VecDeque::new()));
    let tail = Arc::clone(&stderr_tail);
    tokio::spawn(async move {
        let mut lines = BufReader::new(stderr).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut t = tail.lock().unwrap_or_else(|e| e.into_inner());
            if t.len() == STDERR_LINES {
                t.pop_front();
            }
            t.push_back(line);
        }
    });

    let mut lines = BufReader::new(stdout).lines();
    let found = tokio::time::timeout(START_TIMEOUT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Some(url) = line.trim().strip_prefix("duplex listening on ") {
                return Some(url.trim().to_owned());
            }
        }
        None
    })
    .await;
    let tail_text = || {
        stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    };
    let url = match found {
        Ok(Some(url)) => url,
        Ok(None) => {
            // Its stdout closed; it is exiting (or, oddly, lives on without stdout: bounded).
            let status = match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
                Ok(Ok(s)) => s.to_string(),
                _ => "still running".to_owned(),
            };
            return Err(fail(format!(
                "it exited ({status}) before listening: {}",
                tail_text()
            )));
        }
        Err(_) => {
            return Err(fail(format!(
                "it did not say where it listens within {START_TIMEOUT:?}: {}",
                tail_text()
            )));
        }
    };
    // Keep stdout drained too.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let addr = resolve(&url).await.map_err(|e| fail(e.to_string()))?;
    Ok(Target {
        addr,
        url,
        child: Some(ChildServer { child, stderr_tail }),
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
