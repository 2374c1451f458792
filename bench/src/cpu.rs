//! A thread's own CPU time, read while a measurement window is open: the bench's client threads
//! and the bare-socket writers meter themselves this way, so their warm-up and the sleeps between
//! messages do not count, and no other thread of the bench does.

use std::sync::atomic::{AtomicBool, Ordering};

/// This thread's run time so far, nanoseconds: the first field of its schedstat, which counts
/// everything the kernel did on the thread's behalf, the loopback receive path in its system
/// calls included (as `/proc/<pid>/stat`'s ticks do for the servers, at a finer grain).
pub fn thread_ns() -> Result<u64, String> {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat")
        .map_err(|e| format!("/proc/thread-self/schedstat: {e}"))?;
    text.split(' ')
        .next()
        .and_then(|f| f.parse().ok())
        .ok_or_else(|| format!("unreadable /proc/thread-self/schedstat {text:?}"))
}

/// Adds up this thread's CPU between each opening and closing of a window it checks.
#[derive(Default)]
pub struct Meter {
    open_at: Option<u64>,
    /// CPU nanoseconds spent while the window was open.
    pub ns: u64,
}

impl Meter {
    /// Whether `window` is open now, starting or stopping the meter when it changed since the
    /// last call.
    pub fn counting(&mut self, window: &AtomicBool) -> Result<bool, String> {
        let open = window.load(Ordering::Relaxed);
        self.set(open)?;
        Ok(open)
    }

    /// Stops the meter if it runs (the thread is done).
    pub fn stop(&mut self) -> Result<(), String> {
        self.set(false)
    }

    fn set(&mut self, open: bool) -> Result<(), String> {
        match (open, self.open_at) {
            (true, None) => self.open_at = Some(thread_ns()?),
            (false, Some(at)) => {
                self.ns += thread_ns()?.saturating_sub(at);
                self.open_at = None;
            }
            _ => {}
        }
        Ok(())
    }
}
