//! What can stop a running statement, and how far it reaches. A cancel
//! request or `statement_timeout` raises the statement's
//! [`Interrupt`](fortress_storage::interrupt::Interrupt): a shard's scan
//! running for it stops at its next check, a wait for a row lock or a
//! `pg_sleep` wakes at once. `lock_timeout` bounds each row-lock wait
//! (55P03). The statement's [`Stops`] are a tokio task-local of the
//! connection's task; the shard threads a statement starts are handed its
//! flag explicitly ([`interrupt`]).

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use fortress_storage::interrupt::{Interrupt, Reason};
use tokio::sync::Notify;

use crate::error::{ProxyError, Result};
use crate::metrics::Route;

/// The stops of one statement, and what it did so far (the shards it
/// addressed, whether it failed) for the metrics its guard records.
#[derive(Debug)]
pub struct Stops {
    interrupt: Arc<Interrupt>,
    raised: Notify,
    /// `lock_timeout`: the longest one row-lock wait may last.
    pub lock_timeout: Option<Duration>,
    /// The first shard a fragment went to (`u32::MAX`: none yet).
    first_shard: AtomicU32,
    /// Fragments went to more than one shard.
    several: AtomicBool,
    /// Shards addressed, by id modulo 64.
    shard_bits: AtomicU64,
    /// Shards in the cluster.
    shard_count: AtomicU32,
    /// The statement reported an error to its client.
    failed: AtomicBool,
}

impl Default for Stops {
    fn default() -> Stops {
        Stops {
            interrupt: Arc::default(),
            raised: Notify::new(),
            lock_timeout: None,
            first_shard: AtomicU32::new(u32::MAX),
            several: AtomicBool::new(false),
            shard_bits: AtomicU64::new(0),
            shard_count: AtomicU32::new(0),
            failed: AtomicBool::new(false),
        }
    }
}

impl Stops {
    pub fn new(lock_timeout: Option<Duration>) -> Arc<Stops> {
        Arc::new(Stops {
            lock_timeout,
            ..Stops::default()
        })
    }

    /// Stops the statement.
    pub fn raise(&self, reason: Reason) {
        self.interrupt.raise(reason);
        self.raised.notify_waiters();
    }

    /// Why the statement was stopped, if it was.
    pub fn reason(&self) -> Option<Reason> {
        self.interrupt.reason()
    }

    /// How the statement was routed, by the shards its fragments went to
    /// (clusters of more than 64 shards count every several-shard
    /// statement as multi-shard).
    pub fn route(&self) -> Route {
        if self.first_shard.load(Ordering::Relaxed) == u32::MAX {
            return Route::None;
        }
        if !self.several.load(Ordering::Relaxed) {
            return Route::SingleShard;
        }
        let count = self.shard_count.load(Ordering::Relaxed);
        let bits = self.shard_bits.load(Ordering::Relaxed).count_ones();
        if count <= 64 && bits == count {
            Route::AllShards
        } else {
            Route::MultiShard
        }
    }

    /// Whether the statement failed: an error reported or a stop.
    pub fn failed(&self) -> bool {
        self.failed.load(Ordering::Relaxed) || self.reason().is_some()
    }
}

tokio::task_local! {
    static CURRENT: Arc<Stops>;
}

/// Runs `f` as the statement `stops` belong to.
pub async fn scope<F: Future>(stops: Arc<Stops>, f: F) -> F::Output {
    CURRENT.scope(stops, f).await
}

/// The current statement's flag, to hand to the threads it starts.
pub fn interrupt() -> Option<Arc<Interrupt>> {
    CURRENT.try_with(|s| s.interrupt.clone()).ok()
}

/// Notes that the current statement sent a fragment to shard `id` of
/// `count` (nothing outside a statement).
pub fn note_shard(id: u32, count: u32) {
    let _ = CURRENT.try_with(|s| {
        s.shard_count.store(count, Ordering::Relaxed);
        s.shard_bits.fetch_or(1 << (id % 64), Ordering::Relaxed);
        if let Err(first) =
            s.first_shard
                .compare_exchange(u32::MAX, id, Ordering::Relaxed, Ordering::Relaxed)
        {
            if first != id {
                s.several.store(true, Ordering::Relaxed);
            }
        }
    });
}

/// Notes that the current statement reported an error to its client.
pub fn note_failure() {
    let _ = CURRENT.try_with(|s| s.failed.store(true, Ordering::Relaxed));
}

/// The current statement's `lock_timeout`.
pub fn lock_timeout() -> Option<Duration> {
    CURRENT.try_with(|s| s.lock_timeout).ok().flatten()
}

/// The error of a stopped statement.
pub fn error(reason: Reason) -> ProxyError {
    ProxyError::new("57014", reason.message())
}

/// Resolves (to the 57014 error) once the current statement is stopped;
/// never outside a statement.
pub async fn stopped() -> ProxyError {
    let Ok(stops) = CURRENT.try_with(Arc::clone) else {
        return std::future::pending().await;
    };
    loop {
        let raised = stops.raised.notified();
        if let Some(reason) = stops.reason() {
            return error(reason);
        }
        raised.await;
    }
}

/// Runs `work` until it ends or the current statement is stopped.
pub async fn unless_stopped<T>(work: impl Future<Output = Result<T>>) -> Result<T> {
    tokio::select! {
        r = work => r,
        e = stopped() => Err(e),
    }
}

/// Reads a duration setting as PostgreSQL does: a number in milliseconds,
/// or with a unit (`us`, `ms`, `s`, `min`, `h`, `d`); 0 is off (`None`).
pub fn parse_setting(text: &str) -> std::result::Result<Option<Duration>, String> {
    let t = text.trim().trim_matches('\'').trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid value for a duration: \"{text}\""))?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "us" => n / 1000.0,
        "s" => n * 1000.0,
        "min" => n * 60_000.0,
        "h" => n * 3_600_000.0,
        "d" => n * 86_400_000.0,
        other => {
            return Err(format!(
                "invalid unit \"{other}\" for a duration: valid units are \"us\", \"ms\", \"s\", \"min\", \"h\" and \"d\""
            ))
        }
    };
    if !(0.0..=i32::MAX as f64).contains(&ms) {
        return Err(format!("{text} is outside the valid range for a duration"));
    }
    Ok((ms >= 1.0).then(|| Duration::from_micros((ms * 1000.0) as u64)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_statement_is_routed_by_the_shards_it_addressed() {
        let route = |shards: &'static [u32]| async move {
            let stops = Stops::new(None);
            scope(stops.clone(), async {
                for &id in shards {
                    note_shard(id, 4);
                }
            })
            .await;
            stops.route()
        };
        assert_eq!(route(&[]).await, Route::None);
        assert_eq!(route(&[2, 2, 2]).await, Route::SingleShard);
        assert_eq!(route(&[0, 3]).await, Route::MultiShard);
        assert_eq!(route(&[3, 1, 0, 2, 1]).await, Route::AllShards);
        // Outside a statement, nothing is noted and nothing breaks.
        note_shard(1, 4);
        note_failure();
    }

    #[test]
    fn durations_read_like_postgres_settings() {
        assert_eq!(parse_setting("0"), Ok(None));
        assert_eq!(parse_setting("1500"), Ok(Some(Duration::from_millis(1500))));
        assert_eq!(parse_setting("'2s'"), Ok(Some(Duration::from_secs(2))));
        assert_eq!(parse_setting("1min"), Ok(Some(Duration::from_secs(60))));
        assert_eq!(parse_setting("250ms"), Ok(Some(Duration::from_millis(250))));
        assert!(parse_setting("soon").is_err());
        assert!(parse_setting("5 weeks").is_err());
        assert!(parse_setting("-1").is_err());
    }

    #[tokio::test]
    async fn a_stopped_statement_wakes_its_waits() {
        let stops = Stops::new(None);
        let s = stops.clone();
        let waiting = scope(stops.clone(), async {
            unless_stopped(async {
                tokio::time::sleep(Duration::from_secs(60)).await;
                Ok(())
            })
            .await
        });
        let raise = async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            s.raise(Reason::Cancel);
        };
        let (r, ()) = tokio::join!(waiting, raise);
        assert_eq!(r.unwrap_err().sql_state(), "57014");
        assert!(interrupt().is_none(), "outside the scope");
    }
}
