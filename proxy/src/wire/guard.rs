//! A statement's guard: what stops it from outside. A cancel request or
//! `statement_timeout` raises its [`Stops`]; a statement that only reads is
//! then dropped at once, any other is told to stop and runs on until it
//! does, so a write stops before it commits or not at all.

use std::sync::Arc;

use fortress_storage::interrupt::Reason;

use crate::error::ProxyError;
use crate::session::{Session, Timeout};
use crate::stop::Stops;

/// A receiver of the connection's next cancel request. The handle lives in
/// the session, not where pgwire's default Execute would look for it: when
/// it finds one it drops the statement on a cancel (a write half way) or on
/// any new receiver taken; ours stop statements through [`Guard`].
pub(super) async fn cancel_receiver(
    session: &Session,
) -> Option<futures::channel::oneshot::Receiver<()>> {
    Some(session.cancels.get()?.start_query().await)
}

/// The cancel request, the statement timeout and the stops of the
/// statement running on a connection.
pub(crate) struct Guard<'a> {
    pub(crate) stops: Arc<Stops>,
    cancel: Option<&'a mut futures::channel::oneshot::Receiver<()>>,
    deadline: Option<tokio::time::Instant>,
    /// A statement that only reads is dropped at once when stopped (there
    /// is nothing to roll back); any other is told to stop and runs on
    /// until it does, so a write stops before it commits or not at all.
    droppable: bool,
    /// The session was in a transaction block when the statement began.
    in_block: bool,
    /// When the statement began (its latency is recorded when the guard
    /// goes, after its last row); `None` once it is known not to have been
    /// a statement (see [`Guard::not_a_statement`]).
    started: Option<std::time::Instant>,
}

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        if let Some(started) = self.started {
            crate::metrics::recorded().statement(
                started.elapsed(),
                self.stops.route(),
                self.stops.failed(),
            );
        }
    }
}

impl<'a> Guard<'a> {
    pub(crate) fn new(
        session: &Session,
        cancel: Option<&'a mut futures::channel::oneshot::Receiver<()>>,
        droppable: bool,
    ) -> Guard<'a> {
        Guard {
            stops: Stops::new(session.timeout(Timeout::Lock)),
            cancel,
            deadline: session
                .timeout(Timeout::Statement)
                .map(|t| tokio::time::Instant::now() + t),
            droppable,
            in_block: session.txn_status() != b'I',
            started: Some(std::time::Instant::now()),
        }
    }

    /// What the guard ran ran no statement (a query string only looked at
    /// before its statements run under guards of their own): it is not
    /// recorded as one.
    pub(crate) fn not_a_statement(&mut self) {
        self.started = None;
    }

    /// Runs `work` as the statement; `None` when it was stopped and
    /// dropped (see [`Guard::stopped`]).
    pub(crate) async fn run<T>(&mut self, work: impl std::future::Future<Output = T>) -> Option<T> {
        enum Event<T> {
            Done(T),
            Cancel(bool),
            Timeout,
        }
        let work = crate::stop::scope(self.stops.clone(), work);
        tokio::pin!(work);
        loop {
            let cancel = async {
                match self.cancel.as_deref_mut() {
                    Some(c) => c.await.is_ok(),
                    None => std::future::pending().await,
                }
            };
            let deadline = self.deadline;
            let timeout = async {
                match deadline {
                    Some(d) => tokio::time::sleep_until(d).await,
                    None => std::future::pending().await,
                }
            };
            let event = tokio::select! {
                r = &mut work => Event::Done(r),
                fired = cancel => Event::Cancel(fired),
                _ = timeout => Event::Timeout,
            };
            match event {
                Event::Done(r) => return Some(r),
                Event::Cancel(fired) => {
                    self.cancel = None;
                    if !fired {
                        continue;
                    }
                    self.stops.raise(Reason::Cancel);
                }
                Event::Timeout => {
                    self.deadline = None;
                    self.stops.raise(Reason::StatementTimeout);
                }
            }
            if self.droppable {
                return None;
            }
        }
    }

    /// The error of a statement stopped and dropped; the transaction block
    /// it ran in is aborted (the transaction went with the statement).
    pub(crate) fn stopped(&self, session: &Session) -> ProxyError {
        if self.in_block {
            session.replace_txn(crate::txn::TxnState::Failed);
        }
        crate::stop::error(self.stops.reason().unwrap_or(Reason::Cancel))
    }
}
