//! Polling several futures inside one client's task without the wake-ups they give each other.
//!
//! An SSE client reads its body through hyper's channel from hyper's connection future. Run as
//! two tasks, every delivery woke the connection's task (the socket), which woke the client's
//! (the chunk), which woke the connection's again (the channel's slot free): three task wake-ups
//! and polls per delivery. Driven in the client's own task with the task's waker, the same
//! hand-offs would still wake the task from inside its own poll, and tokio polls it once more
//! for nothing. [`InlineWaker`] gives the inner futures a waker of its own: fired while the
//! client's task is polling them, it only marks that they are to be polled again, and the poll
//! repeats at once (a few rounds at most, then the wake-up goes to the task after all); fired
//! from anywhere else (the I/O driver, the stop token) it wakes the task. One delivery is then
//! one wake-up and one poll of the client's task.
//!
//! It also serves a wait that is rarely ready, the phase's stop ([`Stopped`]): polled only after
//! its own waker fired, where a `select!` beside the socket polled it (a mutex on the token and
//! one on its `Notify`) on every delivery.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::SeqCst;
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// Rounds of polling one call makes while its futures keep waking each other, before the
/// wake-up is handed to the task (tokio's cooperative budget wakes a task from inside its poll
/// to make it yield; that must reach the scheduler, not loop here).
const ROUNDS: usize = 4;

/// What the inner futures' waker shares with the poller.
#[derive(Debug, Default)]
struct Flag {
    /// The inner futures asked to be polled since the last round began.
    woken: AtomicBool,
    /// A round is under way: a wake-up now is the poller's to serve, not the task's.
    polling: AtomicBool,
    /// The task's waker, from the latest poll.
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // SeqCst on both sides (here: woken then polling; the poller: polling then woken) so
        // that one of the two always sees the other's store and no wake-up is lost.
        self.woken.store(true, SeqCst);
        if !self.polling.load(SeqCst) {
            self.task.wake();
        }
    }
}

/// A waker for futures polled inside a client's task (see the module's doc).
#[derive(Debug)]
pub struct InlineWaker {
    flag: Arc<Flag>,
    /// Made once: the inner futures' registrations see the same waker every poll and keep it
    /// (`will_wake`) instead of cloning a new one.
    waker: Waker,
}

impl Default for InlineWaker {
    fn default() -> Self {
        let flag = Arc::new(Flag {
            // Never polled yet: the first call polls.
            woken: AtomicBool::new(true),
            ..Flag::default()
        });
        InlineWaker {
            waker: Waker::from(Arc::clone(&flag)),
            flag,
        }
    }
}

impl InlineWaker {
    /// Polls `step` with this waker, and again at once for as long as `step` woke it during
    /// the call (up to a few rounds). A wake-up during a call that returns `Ready` is kept for
    /// the next call, which polls `step` in any case: callers poll again after a `Ready`.
    pub fn poll_inline<T>(
        &self,
        cx: &mut Context<'_>,
        mut step: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        let mut inner = Context::from_waker(&self.waker);
        for _ in 0..ROUNDS {
            self.flag.polling.store(true, SeqCst);
            self.flag.woken.store(false, SeqCst);
            let polled = step(&mut inner);
            self.flag.polling.store(false, SeqCst);
            if polled.is_ready() {
                // Served by the caller's next call, which polls anyway.
                return polled;
            }
            if !self.flag.woken.load(SeqCst) {
                return Poll::Pending;
            }
        }
        // Still waking itself: let the scheduler decide when to come back.
        cx.waker().wake_by_ref();
        Poll::Pending
    }

    /// Polls `step` with this waker only if it fired since the last poll (or was never
    /// polled); otherwise `Pending` without touching it.
    pub fn poll_if_woken<T>(
        &self,
        cx: &mut Context<'_>,
        step: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, SeqCst) {
            return Poll::Pending;
        }
        step(&mut Context::from_waker(&self.waker))
    }
}

/// One connection's wait for the phase's stop, made once (a `cancelled()` made anew for each
/// frame would register with the token and unregister again on every delivery) and polled only
/// when the token woke it, so a `select!` may poll it first on every delivery for the price of
/// an atomic swap.
#[derive(Debug)]
pub struct Stopped<'a> {
    wait: Pin<Box<WaitForCancellationFuture<'a>>>,
    gate: InlineWaker,
}

impl<'a> Stopped<'a> {
    /// The wait for `stop`.
    pub fn new(stop: &'a CancellationToken) -> Self {
        Stopped {
            wait: Box::pin(stop.cancelled()),
            gate: InlineWaker::default(),
        }
    }
}

impl Future for Stopped<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        let wait = &mut this.wait;
        this.gate.poll_if_woken(cx, |cx| wait.as_mut().poll(cx))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    /// Counts the task's wake-ups.
    #[derive(Default)]
    struct Count(AtomicUsize);

    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, SeqCst);
        }
    }

    #[test]
    fn wakes_during_a_poll_repoll_instead_of_waking_the_task() {
        let count = Arc::new(Count::default());
        let task = Waker::from(Arc::clone(&count));
        let mut cx = Context::from_waker(&task);
        let inline = InlineWaker::default();
        let mut calls = 0;
        // Wakes itself on its first round (a hand-off to a future polled beside it), then is
        // pending: two rounds, no wake-up of the task.
        let polled: Poll<()> = inline.poll_inline(&mut cx, |cx| {
            calls += 1;
            if calls == 1 {
                cx.waker().wake_by_ref();
            }
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(calls, 2);
        assert_eq!(count.0.load(SeqCst), 0);
        // Its waker, kept by the future and fired later (from the I/O driver, say), wakes the
        // task.
        let mut kept = None;
        let _: Poll<()> = inline.poll_inline(&mut cx, |cx| {
            kept = Some(cx.waker().clone());
            Poll::Pending
        });
        kept.unwrap().wake();
        assert_eq!(count.0.load(SeqCst), 1);
        // Always waking itself (tokio's budget spent): a few rounds, then the task is woken.
        calls = 0;
        let _: Poll<()> = inline.poll_inline(&mut cx, |cx| {
            calls += 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        });
        assert_eq!(calls, ROUNDS);
        assert_eq!(count.0.load(SeqCst), 2);
    }

    #[tokio::test]
    async fn stopped_ends_when_the_token_is_cancelled_after_it_was_polled() {
        let stop = CancellationToken::new();
        let mut stopped = Stopped::new(&stop);
        let polled = std::future::poll_fn(|cx| Poll::Ready(Pin::new(&mut stopped).poll(cx))).await;
        assert!(polled.is_pending());
        stop.cancel();
        tokio::time::timeout(std::time::Duration::from_secs(5), &mut stopped)
            .await
            .expect("woken by the cancel");
    }

    #[test]
    fn a_rare_wait_is_polled_first_and_then_only_when_woken() {
        let task = Waker::from(Arc::new(Count::default()));
        let mut cx = Context::from_waker(&task);
        let gate = InlineWaker::default();
        let mut polls = 0;
        let mut kept = None;
        for _ in 0..3 {
            let _: Poll<()> = gate.poll_if_woken(&mut cx, |cx| {
                polls += 1;
                kept = Some(cx.waker().clone());
                Poll::Pending
            });
        }
        assert_eq!(polls, 1);
        kept.take().unwrap().wake();
        let polled = gate.poll_if_woken(&mut cx, |_| {
            polls += 1;
            Poll::Ready(())
        });
        assert!(polled.is_ready());
        assert_eq!(polls, 2);
    }
}
