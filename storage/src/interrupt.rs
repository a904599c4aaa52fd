//! Stopping a running statement from outside it. A cancel request or a
//! statement timeout raises the statement's [`Interrupt`]; the loops that
//! can run long (every MVCC scan, so every SELECT, UPDATE and DELETE on a
//! shard) check it every [`EVERY`] rows on whatever thread runs them, and
//! stop with 57014. A write fragment stopped this way returns before it
//! logged anything, so its statement is rolled back whole; one past that
//! point completes, as a PostgreSQL command does when the cancel comes too
//! late.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use crate::error::StorageError;

/// Rows between two checks.
pub const EVERY: u32 = 256;

/// Why a statement was stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// A CancelRequest from the client.
    Cancel = 1,
    /// `statement_timeout` passed.
    StatementTimeout = 2,
}

impl Reason {
    /// PostgreSQL's message for it (SQLSTATE 57014).
    pub fn message(self) -> &'static str {
        match self {
            Reason::Cancel => "canceling statement due to user request",
            Reason::StatementTimeout => "canceling statement due to statement timeout",
        }
    }
}

/// A statement's stop flag.
#[derive(Debug, Default)]
pub struct Interrupt(AtomicU8);

impl Interrupt {
    pub fn new() -> Arc<Interrupt> {
        Arc::default()
    }

    /// Stops the statement (the first reason given stands).
    pub fn raise(&self, reason: Reason) {
        let _ = self
            .0
            .compare_exchange(0, reason as u8, Ordering::AcqRel, Ordering::Acquire);
    }

    /// Why it was stopped, if it was.
    pub fn reason(&self) -> Option<Reason> {
        match self.0.load(Ordering::Acquire) {
            1 => Some(Reason::Cancel),
            2 => Some(Reason::StatementTimeout),
            _ => None,
        }
    }
}

thread_local! {
    static CURRENT: RefCell<Option<Arc<Interrupt>>> = const { RefCell::new(None) };
}

/// Runs `f` with `interrupt` as this thread's current statement's flag.
pub fn scope<R>(interrupt: Option<Arc<Interrupt>>, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Arc<Interrupt>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| *c.borrow_mut() = self.0.take());
        }
    }
    let previous = CURRENT.with(|c| c.replace(interrupt));
    let _restore = Restore(previous);
    f()
}

/// Why the current statement was stopped, if it was; `None` on threads
/// running no statement (a checkpoint, replay).
pub fn stopped() -> Option<Reason> {
    CURRENT.with(|c| c.borrow().as_ref().and_then(|i| i.reason()))
}

/// Err(57014) once the current statement's flag is raised.
pub fn check() -> Result<(), StorageError> {
    match stopped() {
        Some(reason) => Err(StorageError::Interrupted(reason)),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_raised_flag_stops_only_the_scope_it_is_given_to() {
        assert!(check().is_ok());
        let i = Interrupt::new();
        scope(Some(i.clone()), || {
            assert!(check().is_ok());
            i.raise(Reason::StatementTimeout);
            i.raise(Reason::Cancel);
            let e = check().unwrap_err();
            assert_eq!(e.sql_state(), "57014");
            assert_eq!(
                e.to_string(),
                "canceling statement due to statement timeout"
            );
        });
        assert!(check().is_ok(), "the scope ended");
    }
}
