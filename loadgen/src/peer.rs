//! The other stacks in `peers/` that a run can start itself: how to launch each one (its
//! command line, the line it prints when ready) and what it is told (nchan's buffer length,
//! the Socket.IO server's default broadcast form). Starting, watching and stopping the process
//! is [`ChildServer`]'s; speaking to it is the protocol adapter's.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::child::ChildServer;

/// How long a peer may take to print its ready line (nginx on a busy machine takes a second
/// or two; node about one).
pub const PEER_START_TIMEOUT: Duration = Duration::from_secs(15);

/// Who receives a Socket.IO chat message when the message itself does not say
/// (`peers/socketio/server.js --mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RelayMode {
    /// Everyone in the room, sender included (`io.to(room).emit`).
    #[default]
    All,
    /// Everyone but the sender (`socket.broadcast.to(room).emit`).
    Others,
    /// Only the addressed client (`socket.to(id).emit`).
    Direct,
}

impl RelayMode {
    /// The `--mode` value.
    pub fn id(self) -> &'static str {
        match self {
            RelayMode::All => "all",
            RelayMode::Others => "others",
            RelayMode::Direct => "direct",
        }
    }
}

/// A peer server and its settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// nginx + nchan (`peers/nchan/start.sh`).
    Nchan {
        /// Messages kept per channel (nchan_message_buffer_length).
        buffer: u64,
    },
    /// The Socket.IO chat server (`peers/socketio/server.js`).
    SocketIo {
        /// Its default broadcast form.
        mode: RelayMode,
        /// Engine.IO's pingInterval, ms (`None`: Socket.IO's 25 s).
        ping_interval_ms: Option<u64>,
    },
}

impl Peer {
    /// Its name in scenarios and messages.
    pub fn name(&self) -> &'static str {
        match self {
            Peer::Nchan { .. } => "nchan",
            Peer::SocketIo { .. } => "socketio",
        }
    }

    /// The command that starts it from `peers_dir`, or why it cannot be started (one sentence
    /// naming what to install).
    pub fn command(&self, peers_dir: &Path) -> Result<Command, String> {
        match self {
            Peer::Nchan { buffer } => {
                let script = peers_dir.join("nchan/start.sh");
                if !script.is_file() {
                    return Err(format!("{} not found", script.display()));
                }
                if !Path::new("/usr/sbin/nginx").exists() {
                    return Err(
                        "/usr/sbin/nginx not found: install nginx-light and libnginx-mod-nchan"
                            .to_owned(),
                    );
                }
                // nginx cannot listen on port 0: take a free port from the kernel and hand it
                // over. Another process could take it in between; nginx then says it cannot
                // bind, and the start fails with that sentence.
                let port = free_port().map_err(|e| format!("no free port: {e}"))?;
                let mut command = Command::new(script);
                command.args(["--port", &port.to_string(), "--buffer", &buffer.to_string()]);
                Ok(command)
            }
            Peer::SocketIo {
                mode,
                ping_interval_ms,
            } => {
                let dir = peers_dir.join("socketio");
                if !dir.join("node_modules/socket.io").is_dir() {
                    return Err(format!(
                        "socket.io is not installed: run `npm ci` in {}",
                        dir.display()
                    ));
                }
                let mut command = Command::new("node");
                command
                    .arg(dir.join("server.js"))
                    .args(["--port", "0", "--mode", mode.id()]);
                if let Some(ms) = ping_interval_ms {
                    command.args(["--ping-interval", &ms.to_string()]);
                }
                Ok(command)
            }
        }
    }

    /// Starts it and waits until it listens; returns the process and its base URL.
    pub async fn start(&self, peers_dir: &Path) -> Result<(ChildServer, String), String> {
        let command = self.command(peers_dir)?;
        let ready = match self {
            Peer::Nchan { .. } => "nchan listening on",
            Peer::SocketIo { .. } => "socketio listening on",
        };
        ChildServer::start(command, ready, PEER_START_TIMEOUT).await
    }
}

/// Where `peers/` is: `$DUPLEX_PEERS`, else `peers` under the current directory (`duplex run`
/// is run from the repository's top level, as the README says).
pub fn peers_dir() -> PathBuf {
    std::env::var_os("DUPLEX_PEERS").map_or_else(|| PathBuf::from("peers"), PathBuf::from)
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}
