//! Hybrid logical clock: commit and snapshot timestamps that follow wall time
//! but never go backwards, even if the wall clock does, and that order causally
//! related events across shards (and, later, across nodes and mirrors).
//!
//! A timestamp is `wall_micros << 8 | logical`. `now` returns a value greater
//! than every value it returned or observed before; `observe` merges a
//! timestamp seen elsewhere (a replayed WAL record, a remote node), refusing
//! one further ahead of local wall time than the configured maximum offset.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Bits of a timestamp holding the logical counter.
const LOGICAL_BITS: u32 = 8;

/// A hybrid logical clock timestamp.
#[derive(
    Clone,
    Copy,
    Debug,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
pub struct Timestamp(pub u64);

impl Timestamp {
    /// The wall-clock part, in microseconds since the Unix epoch.
    pub fn wall_micros(self) -> u64 {
        self.0 >> LOGICAL_BITS
    }

    /// The logical counter.
    pub fn logical(self) -> u64 {
        self.0 & ((1 << LOGICAL_BITS) - 1)
    }

    /// The first timestamp at wall time `micros`.
    pub fn from_wall(micros: u64) -> Timestamp {
        Timestamp(micros << LOGICAL_BITS)
    }
}

/// A timestamp from elsewhere is too far ahead of this clock's wall time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("timestamp {remote:?} is {ahead:?} ahead of the local clock (max offset {max:?})")]
pub struct ClockSkewError {
    pub remote: Timestamp,
    pub ahead: Duration,
    pub max: Duration,
}

/// The clock shared by every shard of a process.
#[derive(Debug)]
pub struct HybridClock {
    last: AtomicU64,
    /// Offset added to the wall clock, in microseconds: chaos clock skew and
    /// tests move time with it.
    skew_micros: AtomicI64,
    max_offset: Duration,
}

impl Default for HybridClock {
    fn default() -> Self {
        HybridClock::new(Duration::from_millis(500))
    }
}

impl HybridClock {
    /// A clock that refuses remote timestamps more than `max_offset` ahead.
    pub const fn new(max_offset: Duration) -> HybridClock {
        HybridClock {
            last: AtomicU64::new(0),
            skew_micros: AtomicI64::new(0),
            max_offset,
        }
    }

    /// Shifts this clock's view of wall time (may be negative).
    pub fn set_skew(&self, skew_micros: i64) {
        self.skew_micros.store(skew_micros, Ordering::Relaxed);
    }

    fn wall(&self) -> Timestamp {
        let micros = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_micros() as i64;
        let skewed = micros.saturating_add(self.skew_micros.load(Ordering::Relaxed));
        Timestamp::from_wall(skewed.max(0) as u64)
    }

    /// A timestamp greater than any returned or observed so far.
    pub fn now(&self) -> Timestamp {
        let wall = self.wall().0;
        let mut prev = self.last.load(Ordering::Acquire);
        loop {
            let next = wall.max(prev + 1);
            match self
                .last
                .compare_exchange_weak(prev, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Timestamp(next),
                Err(actual) => prev = actual,
            }
        }
    }

    /// Merges a timestamp seen elsewhere: later `now` calls exceed it.
    pub fn observe(&self, remote: Timestamp) -> Result<(), ClockSkewError> {
        let wall = self.wall();
        if remote > wall {
            let ahead = Duration::from_micros(remote.wall_micros() - wall.wall_micros());
            if ahead > self.max_offset {
                return Err(ClockSkewError {
                    remote,
                    ahead,
                    max: self.max_offset,
                });
            }
        }
        self.last.fetch_max(remote.0, Ordering::AcqRel);
        Ok(())
    }

    /// Merges a timestamp from this process's own durable history (WAL replay):
    /// accepted however far ahead, since it was issued by this clock earlier.
    pub fn observe_own(&self, ts: Timestamp) {
        self.last.fetch_max(ts.0, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn now_is_strictly_increasing_across_threads() {
        let clock = Arc::new(HybridClock::default());
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let c = clock.clone();
                std::thread::spawn(move || (0..10_000).map(|_| c.now()).collect::<Vec<_>>())
            })
            .collect();
        let mut all: Vec<Timestamp> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect();
        let n = all.len();
        for w in all.chunks(10_000) {
            assert!(w.windows(2).all(|p| p[0] < p[1]));
        }
        all.sort();
        all.dedup();
        assert_eq!(all.len(), n, "no timestamp is handed out twice");
    }

    #[test]
    fn wall_clock_going_backwards_does_not_move_time_back() {
        let clock = HybridClock::default();
        let before = clock.now();
        clock.set_skew(-10_000_000);
        let after = clock.now();
        assert!(after > before);
        assert_eq!(
            after.wall_micros(),
            before.wall_micros(),
            "logical ticks carry it"
        );
        assert_eq!(after.logical(), before.logical() + 1);
    }

    #[test]
    fn observed_timestamps_are_exceeded_and_far_future_ones_refused() {
        let clock = HybridClock::new(Duration::from_millis(100));
        let ahead = Timestamp(clock.now().0 + (50_000 << LOGICAL_BITS));
        clock.observe(ahead).unwrap();
        assert!(clock.now() > ahead);
        let too_far = Timestamp(clock.now().0 + (10_000_000 << LOGICAL_BITS));
        assert!(clock.observe(too_far).is_err());
        assert!(clock.now() < too_far);
        clock.observe_own(too_far);
        assert!(clock.now() > too_far);
    }
}
