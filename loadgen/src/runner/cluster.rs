//! What a phase does with a cluster the lab started (`[cluster] nodes` above 1): it reads each
//! process's CPU and memory at the measured window's edges (Redis and every node, beside the
//! process tree's total that the probe measures), and, with `[faults] kill_node`, kills one node
//! inside the window. Starting and stopping the cluster is `crate::target`'s; reconnecting the
//! dead node's clients is their own life's (`crate::clients::life`), as it would be without a lab.

use std::net::SocketAddr;
use std::time::Duration;

use report::results::ProcessCost;

use crate::probe::{ServerReading, proc_reading};
use crate::target::Target;

/// A cluster's processes and the fault to inject, as the run hands them to each phase.
#[derive(Debug, Clone)]
pub struct ClusterWatch {
    /// Redis first, then every node, each with the pid the lab started it with.
    pub processes: Vec<ClusterProcess>,
    /// The node to kill, if the scenario asks.
    pub kill: Option<KillNode>,
}

/// One process of the cluster.
#[derive(Debug, Clone)]
pub struct ClusterProcess {
    /// `redis-server` or `node 1 (127.0.0.11:PORT)`.
    pub name: String,
    /// Its pid.
    pub pid: u32,
}

/// `[faults] kill_node`: which node, and when in the measured window.
#[derive(Debug, Clone)]
pub struct KillNode {
    /// Time after the window starts.
    pub at: Duration,
    /// Its index in [`ClusterWatch::processes`].
    pub process: usize,
    /// Its address, taken out of the connector's rotation once it is dead.
    pub addr: SocketAddr,
}

/// Each process's readings: at the window's start, and the latest one taken.
#[derive(Debug)]
pub(super) struct Readings {
    before: Vec<Option<ServerReading>>,
    last: Vec<Option<ServerReading>>,
    killed: Option<usize>,
}

impl ClusterWatch {
    /// What to watch of `target` when the lab started it as a cluster (`None` otherwise), with
    /// the scenario's `kill_node` time: the fault kills the last node, so the first, which the
    /// probe scrapes for `/metrics`, lives on.
    pub fn of(target: &Target, kill_node: Option<Duration>) -> Option<ClusterWatch> {
        let pids = target.cluster.as_ref()?;
        let mut processes = vec![ClusterProcess {
            name: "redis-server".into(),
            pid: pids.redis,
        }];
        for (i, (pid, addr)) in pids.nodes.iter().zip(&target.nodes).enumerate() {
            processes.push(ClusterProcess {
                name: format!("node {i} ({addr})"),
                pid: *pid,
            });
        }
        let kill = kill_node
            .zip(target.nodes.last())
            .filter(|_| target.nodes.len() > 1)
            .map(|(at, addr)| KillNode {
                at,
                process: processes.len() - 1,
                addr: *addr,
            });
        Some(ClusterWatch { processes, kill })
    }

    /// Reads every process now: the window's start.
    pub(super) fn start(&self) -> Readings {
        let now = self.read();
        Readings {
            last: now.clone(),
            before: now,
            killed: None,
        }
    }

    fn read(&self) -> Vec<Option<ServerReading>> {
        self.processes
            .iter()
            .map(|p| proc_reading(p.pid as i32))
            .collect()
    }

    /// Kills the fault's node with SIGKILL, by the pid the lab started it with, after a last
    /// reading of its cost. Returns its name, or why it could not be killed.
    pub(super) fn kill(&self, readings: &mut Readings) -> Result<String, String> {
        let Some(kill) = &self.kill else {
            return Err("no node to kill".into());
        };
        let process = &self.processes[kill.process];
        readings.last[kill.process] = proc_reading(process.pid as i32);
        // `kill(1)` rather than a signal call: the workspace forbids `unsafe`, and a SIGKILL
        // sent a millisecond later changes nothing here.
        let status = std::process::Command::new("kill")
            .args(["-KILL", &process.pid.to_string()])
            .status()
            .map_err(|e| format!("kill -KILL {}: {e}", process.pid))?;
        if !status.success() {
            return Err(format!("kill -KILL {} failed: {status}", process.pid));
        }
        readings.killed = Some(kill.process);
        Ok(process.name.clone())
    }

    /// Reads every live process again (the window's end) and returns each one's cost over the
    /// window: a killed node's up to its last reading before it died.
    pub(super) fn finish(&self, mut readings: Readings) -> Vec<ProcessCost> {
        for (i, now) in self.read().into_iter().enumerate() {
            if readings.killed != Some(i) {
                readings.last[i] = now;
            }
        }
        self.processes
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let (before, last) = (readings.before[i], readings.last[i]);
                ProcessCost {
                    name: p.name.clone(),
                    cpu_s: match (before, last) {
                        (Some(a), Some(b)) => (b.cpu_s - a.cpu_s).max(0.0),
                        _ => 0.0,
                    },
                    rss_bytes: last.map_or(0, |r| r.rss_bytes),
                    killed: readings.killed == Some(i),
                }
            })
            .collect()
    }
}
