//! [`LogWriter`]: where `duplex serve`'s log lines go without ever making a handler wait. Lines
//! are handed to a bounded queue that one thread drains to stderr; when stderr is not being read
//! (a parent that never drains the pipe) and the queue is full, lines are dropped and counted
//! instead of blocking the task that logged, and the count is written once stderr moves again.
//!
//! Why not write to stderr directly: a write to a full pipe blocks the calling thread, and with
//! it every connection that tokio schedules there.

use std::io::{self, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};

/// Log lines waiting for stderr; past this many, new ones are dropped.
pub const QUEUED_LINES: usize = 4096;

/// A cloneable writer for `tracing_subscriber::fmt().with_writer(...)`.
#[derive(Debug, Clone)]
pub struct LogWriter {
    lines: SyncSender<Vec<u8>>,
    dropped: Arc<AtomicU64>,
}

impl LogWriter {
    /// Starts the thread that writes to stderr.
    pub fn stderr() -> Self {
        let (lines, queue) = mpsc::sync_channel::<Vec<u8>>(QUEUED_LINES);
        let dropped = Arc::new(AtomicU64::new(0));
        let lost = dropped.clone();
        std::thread::Builder::new()
            .name("duplex-log".into())
            .spawn(move || {
                let mut err = io::stderr();
                for line in queue {
                    let n = lost.swap(0, Ordering::Relaxed);
                    if n > 0 {
                        let _ = writeln!(err, "({n} log lines dropped: stderr was not read)");
                    }
                    let _ = err.write_all(&line);
                }
            })
            .expect("the log thread starts");
        LogWriter { lines, dropped }
    }

    /// Lines dropped so far because stderr was not read.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.lines.try_send(buf.to_vec()) {
            Ok(()) | Err(TrySendError::Disconnected(_)) => {}
            Err(TrySendError::Full(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_lines_instead_of_blocking() {
        // No thread drains this one: as if stderr were a pipe nobody reads.
        let (lines, _queue) = mpsc::sync_channel(2);
        let mut w = LogWriter {
            lines,
            dropped: Arc::new(AtomicU64::new(0)),
        };
        for _ in 0..5 {
            assert_eq!(w.write(b"line\n").unwrap(), 5);
        }
        assert_eq!(w.dropped(), 3);
    }
}
