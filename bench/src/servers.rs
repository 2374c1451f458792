//! The two servers under comparison, each started fresh as a child process for every
//! measurement, and what is read about them from `/proc`: the resident memory and CPU time of the
//! whole process tree (nginx's master and worker; duplex's one process).
//!
//! Nothing is installed here: when nginx or the nchan module is missing, [`check_nchan`] says
//! which Debian packages provide them and the bench stops.

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `nginx-light` and `libnginx-mod-nchan` put nginx and the module.
const NGINX: &str = "/usr/sbin/nginx";
const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";
/// Linux reports CPU time in `/proc/<pid>/stat` in USER_HZ ticks, 100 per second on every
/// architecture Linux supports (`getconf CLK_TCK`).
const TICKS_PER_SECOND: f64 = 100.0;
/// How long a server may take to answer its first `/healthz`.
const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Which server; the order is the table's column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stack {
    Nchan,
    Duplex,
    /// Another duplex binary (`--baseline`): the before of a before/after in one run.
    Baseline,
}

impl Stack {
    pub fn name(self) -> &'static str {
        match self {
            Stack::Duplex => "duplex",
            Stack::Nchan => "nchan",
            Stack::Baseline => "before",
        }
    }

    /// Whether this is a duplex binary (duplex's wire API).
    pub fn is_duplex(self) -> bool {
        matches!(self, Stack::Duplex | Stack::Baseline)
    }
}

/// Says what is missing for the nchan side and how to install it, or `Ok`.
pub fn check_nchan() -> Result<(), String> {
    let mut missing = Vec::new();
    if !Path::new(NGINX).exists() {
        missing.push(format!("{NGINX} (package nginx-light)"));
    }
    if !Path::new(NCHAN_MODULE).exists() {
        missing.push(format!("{NCHAN_MODULE} (package libnginx-mod-nchan)"));
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(format!(
        "nginx+nchan is not installed: missing {}.\n  install it with: sudo apt-get install \
         nginx-light libnginx-mod-nchan\n  (this bench installs nothing itself)",
        missing.join(" and ")
    ))
}

/// A server child, stopped (SIGKILL, then reaped) when dropped.
pub struct Server {
    pub addr: SocketAddr,
    child: Child,
}

/// Paths the servers are started from.
pub struct Paths {
    pub duplex: PathBuf,
    pub baseline: Option<PathBuf>,
    pub nchan_start: PathBuf,
}

impl Server {
    /// Starts `stack` on a free loopback port and waits until `/healthz` answers.
    pub fn start(stack: Stack, paths: &Paths) -> Result<Server, String> {
        let port = free_port()?;
        let mut command = match stack {
            Stack::Duplex | Stack::Baseline => {
                let path = match (stack, &paths.baseline) {
                    (Stack::Baseline, Some(before)) => before,
                    _ => &paths.duplex,
                };
                let mut c = Command::new(path);
                c.args(["serve", "--listen", &format!("127.0.0.1:{port}")]);
                c
            }
            Stack::Nchan => {
                let mut c = Command::new(&paths.nchan_start);
                c.args(["--port", &port.to_string()]);
                c
            }
        };
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("starting {}: {e}", command.get_program().display()))?;
        // Both print a ready line and duplex the classroom's addresses: read and drop them so
        // the pipe never fills; readiness is `/healthz` answering.
        let stdout = child.stdout.take().expect("stdout is piped");
        std::thread::spawn(
            move || for _ in BufReader::new(stdout).lines().map_while(Result::ok) {},
        );
        let server = Server {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            child,
        };
        let started = Instant::now();
        while !healthy(server.addr) {
            if started.elapsed() > START_TIMEOUT {
                return Err(format!(
                    "{} did not answer /healthz on {} within {START_TIMEOUT:?}",
                    stack.name(),
                    server.addr
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(server)
    }

    /// The process tree's resident memory, bytes.
    pub fn rss(&self) -> u64 {
        tree(self.child.id())
            .iter()
            .filter_map(|pid| status_kib(*pid, "VmRSS:"))
            .sum::<u64>()
            * 1024
    }

    /// The process tree's CPU time so far (user + system), seconds.
    pub fn cpu(&self) -> f64 {
        tree(self.child.id())
            .iter()
            .filter_map(|pid| cpu_ticks(*pid))
            .sum::<u64>() as f64
            / TICKS_PER_SECOND
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // nginx's worker would outlive its master when only the master is killed, and a master
        // that sees its worker die starts a new one: so the tree is listed first, then the master
        // is killed before its workers (killing workers first left respawned ones running,
        // holding the bench's stdout open).
        for pid in tree(self.child.id()) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = self.child.wait();
    }
}

fn free_port() -> Result<u16, String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("finding a port: {e}"))?;
    Ok(listener.local_addr().map_err(|e| e.to_string())?.port())
}

fn healthy(addr: SocketAddr) -> bool {
    use std::io::{Read, Write};
    let Ok(mut tcp) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200))
    else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(1)));
    if tcp
        .write_all(b"GET /healthz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 13];
    // nginx answers an HTTP/1.0 request as 1.1, hyper as 1.0.
    tcp.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && head.ends_with(b" 200 ")
}

/// `pid` and its descendants, parents first.
fn tree(pid: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for entry in dir.flatten() {
            let Some(p) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                continue;
            };
            if let Some(ppid) = stat_field(p, 1) {
                parents.push((p, ppid as u32));
            }
        }
    }
    let mut out = vec![pid];
    let mut i = 0;
    while i < out.len() {
        let parent = out[i];
        out.extend(
            parents
                .iter()
                .filter(|(_, pp)| *pp == parent)
                .map(|(p, _)| *p),
        );
        i += 1;
    }
    out
}

/// Field `n` after the command name in `/proc/<pid>/stat` (0 = state, 1 = ppid, 11 = utime).
fn stat_field(pid: u32, n: usize) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may hold spaces: split after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(n)?.parse().ok()
}

fn cpu_ticks(pid: u32) -> Option<u64> {
    Some(stat_field(pid, 11)? + stat_field(pid, 12)?)
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

/// The 1-minute load average, for printing beside every figure (this machine is shared).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split(' ').next().map(str::to_owned))
        .unwrap_or_else(|| "?".into())
}
