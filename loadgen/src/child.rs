//! A server process the run starts itself (duplex's own `serve`, or a peer from `peers/`):
//! spawned in its own process group, waited for until it prints its ready line
//! (`<name> listening on http://HOST:PORT`), its stderr drained and its last lines kept for
//! error messages, and stopped with SIGTERM (then SIGKILL) at the end.
//!
//! Its own process group, because the terminal's Ctrl-C is for the loadgen, which then stops
//! the server itself after writing what it measured; and so that stopping a peer's start script
//! also reaches the processes it started (nginx's master and worker).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// Lines of the child's stderr kept for error messages.
const STDERR_LINES: usize = 20;
/// How long a stopped child may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(3);

/// A started server: its process and the tail of its stderr.
#[derive(Debug)]
pub struct ChildServer {
    child: Child,
    stderr_tail: Arc<Mutex<VecDeque<String>>>,
}

impl ChildServer {
    /// Spawns `command` and waits up to `timeout` for the stdout line `<ready> <url>`
    /// (e.g. `ready` = `"nchan listening on"`); returns the child and the URL. The error is
    /// one sentence with the child's last stderr lines.
    pub async fn start(
        mut command: Command,
        ready: &str,
        timeout: Duration,
    ) -> Result<(ChildServer, String), String> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .process_group(0);
        let mut child = command.spawn().map_err(|e| e.to_string())?;
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
        let found = tokio::time::timeout(timeout, async {
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(url) = line.trim().strip_prefix(ready) {
                    return Some(url.trim().to_owned());
                }
            }
            None
        })
        .await;
        let mut server = ChildServer { child, stderr_tail };
        let url = match found {
            Ok(Some(url)) => url,
            Ok(None) => {
                // Its stdout closed; it is exiting (or, oddly, lives on without stdout: bounded).
                let status = match tokio::time::timeout(timeout, server.child.wait()).await {
                    Ok(Ok(s)) => s.to_string(),
                    _ => "still running".to_owned(),
                };
                // Give the stderr task a moment to read the last lines.
                tokio::time::sleep(Duration::from_millis(50)).await;
                return Err(format!(
                    "it exited ({status}) before listening: {}",
                    server.stderr_text()
                ));
            }
            Err(_) => {
                let why = format!(
                    "it did not say where it listens within {timeout:?}: {}",
                    server.stderr_text()
                );
                server.stop().await;
                return Err(why);
            }
        };
        // Keep stdout drained too.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((server, url))
    }

    /// Its pid (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Its last stderr lines, joined with ` | `.
    pub fn stderr_text(&self) -> String {
        self.stderr_tail
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect::<Vec<_>>()
            .join(" | ")
    }

    /// Its exit status if it has exited, with its last stderr lines.
    pub fn exit(&mut self) -> Option<String> {
        let status = self.child.try_wait().ok()??;
        Some(format!(
            "exited with {status}; its last output: {}",
            self.stderr_text()
        ))
    }

    /// Stops it: SIGTERM to its process group (so a start script's children hear it too),
    /// SIGKILL after a grace period; waits for it.
    pub async fn stop(&mut self) {
        if let Some(pid) = self.child.id() {
            // The group id is the child's pid (process_group(0) above). `kill` is the portable
            // way to signal a group without unsafe code.
            let _ = Command::new("kill")
                .args(["-TERM", "--", &format!("-{pid}")])
                .status()
                .await;
            if tokio::time::timeout(STOP_GRACE, self.child.wait())
                .await
                .is_ok()
            {
                return;
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status()
                .await;
        }
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(STOP_GRACE, self.child.wait()).await;
    }
}
