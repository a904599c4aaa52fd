//! Waiting for log records to become durable without holding a thread.
//!
//! A caller on an async runtime appends its record, queues it here with a
//! [`Signal`], and awaits the signal; one thread per log takes everything
//! queued, syncs the log once past all of it, and fires the signals. A
//! batch costs one wake-up of that thread instead of a thread hand-off per
//! caller, and the caller's runtime thread stays free meanwhile.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use crate::error::{Result, StorageError};
use crate::wal::Lsn;

/// A one-shot outcome fired by a storage thread and awaited by a task.
#[derive(Default)]
pub struct Signal {
    state: Mutex<SignalState>,
}

#[derive(Default)]
struct SignalState {
    outcome: Option<Result<()>>,
    waker: Option<Waker>,
}

impl Signal {
    pub fn new() -> Arc<Signal> {
        Arc::new(Signal::default())
    }

    /// Sets the outcome (the first one fired wins) and wakes the waiter.
    pub fn fire(&self, outcome: Result<()>) {
        let waker = {
            let mut st = self.state.lock().expect("signal");
            if st.outcome.is_none() {
                st.outcome = Some(outcome);
            }
            st.waker.take()
        };
        if let Some(w) = waker {
            w.wake();
        }
    }

    /// Resolves with the outcome once it is fired.
    pub fn wait(self: Arc<Self>) -> SignalWait {
        SignalWait(self)
    }
}

/// The future of [`Signal::wait`].
pub struct SignalWait(Arc<Signal>);

impl Future for SignalWait {
    type Output = Result<()>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<()>> {
        let mut st = self.0.state.lock().expect("signal");
        match st.outcome.take() {
            Some(outcome) => Poll::Ready(outcome),
            None => {
                st.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// Items waiting for the log to be durable through their LSN.
pub struct DurableQueue<I> {
    state: Mutex<Queued<I>>,
    queued: Condvar,
}

struct Queued<I> {
    items: Vec<(Lsn, I)>,
    /// The taker is asleep on `queued`. While it syncs, a push needs no
    /// wake-up (a futex call): its next take finds the item.
    asleep: bool,
}

impl<I> Default for DurableQueue<I> {
    fn default() -> Self {
        DurableQueue {
            state: Mutex::new(Queued {
                items: Vec::new(),
                asleep: false,
            }),
            queued: Condvar::new(),
        }
    }
}

impl<I> DurableQueue<I> {
    pub fn push(&self, lsn: Lsn, item: I) {
        let mut st = self.state.lock().expect("durable queue");
        st.items.push((lsn, item));
        if st.asleep {
            self.queued.notify_one();
        }
    }

    /// Everything queued, in LSN order, waiting up to `patience` for the
    /// first item (empty if none came). One thread takes from a queue.
    pub fn take(&self, patience: Duration) -> Vec<(Lsn, I)> {
        let mut st = self.state.lock().expect("durable queue");
        if st.items.is_empty() {
            st.asleep = true;
            st = self
                .queued
                .wait_timeout(st, patience)
                .expect("durable queue")
                .0;
            st.asleep = false;
        }
        let mut taken = std::mem::take(&mut st.items);
        drop(st);
        taken.sort_by_key(|(lsn, _)| *lsn);
        taken
    }
}

/// Fires each of `signals` with 58000: `shard` failed for `reason`.
pub fn fail_all(signals: impl IntoIterator<Item = Arc<Signal>>, shard: u32, reason: &str) {
    for s in signals {
        s.fire(Err(StorageError::Unavailable {
            shard,
            reason: reason.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signal_fired_before_or_after_the_wait_resolves_once() {
        let early = Signal::new();
        early.fire(Ok(()));
        early.fire(Err(StorageError::Codec("late".into())));
        assert!(futures::executor::block_on(early.wait()).is_ok());

        let late = Signal::new();
        let waiting = {
            let s = late.clone();
            std::thread::spawn(move || futures::executor::block_on(s.wait()))
        };
        std::thread::sleep(Duration::from_millis(20));
        late.fire(Err(StorageError::Codec("disk gone".into())));
        let got = waiting.join().unwrap();
        assert!(matches!(got, Err(StorageError::Codec(m)) if m == "disk gone"));
    }

    #[test]
    fn a_queue_hands_out_its_items_in_lsn_order() {
        let q = DurableQueue::default();
        q.push(7, "b");
        q.push(3, "a");
        assert_eq!(q.take(Duration::ZERO), vec![(3, "a"), (7, "b")]);
        assert!(q.take(Duration::from_millis(1)).is_empty());
    }
}
