//! The two-phase-commit coordinator's decision log.
//!
//! A transaction that wrote to several shards is committed in two phases:
//! every participant durably PREPAREs (write set logged, keys locked); then
//! the coordinator logs a COMMIT decision with the commit timestamp and waits
//! for it to be durable; only then does it tell the participants to commit.
//! At start-up every in-doubt transaction on a shard is committed if this log
//! holds its decision and aborted otherwise (presumed abort).
//!
//! A decision is forgotten (a DONE record) only once every participant's
//! commit record is durable: participants apply a decided commit before
//! syncing it, and a decision gone while a participant's commit is lost
//! would have presumed abort undo an acknowledged transaction.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use std::sync::atomic::{AtomicBool, Ordering};

use fortress_storage::durable::{fail_all, DurableQueue, Signal};
use fortress_storage::wal::{Wal, WalOptions};
use fortress_storage::{Shard, ShardId, StorageError, SyncMode, Timestamp, TxnId};

const KIND_COMMIT: u8 = 1;
const KIND_DONE: u8 = 2;

/// How often the retiring thread looks for decisions to forget.
const RETIRE_EVERY: Duration = Duration::from_millis(20);

/// A decision every participant has applied, with those participants.
type Retiring = (TxnId, Vec<Arc<dyn Shard>>);

/// Durable commit decisions of multi-shard transactions.
pub struct Coordinator {
    wal: Wal,
    decisions: Mutex<HashMap<TxnId, Timestamp>>,
    /// Decisions every participant has applied, with those participants,
    /// waiting for their commit records to be durable.
    retiring: Mutex<Vec<Retiring>>,
    /// Decisions waiting for their fdatasync, served by the flusher thread.
    flushing: Arc<DurableQueue<Arc<Signal>>>,
    /// True once [`Coordinator::log_commit_async`] can be served.
    flusher: AtomicBool,
}

/// Every commit decision in the log in `dir`, read without changing it (the
/// log may belong to a running server): what a restore consults for
/// transactions a shard's log leaves prepared.
pub fn read_decisions(
    dir: &Path,
    cipher: Option<&fortress_storage::cipher::Cipher>,
) -> Result<HashMap<TxnId, u64>, StorageError> {
    let mut decisions = HashMap::new();
    if !dir.exists() {
        return Ok(decisions);
    }
    fortress_storage::wal::read_from(dir, 0, cipher, |rec| {
        if rec.kind == KIND_COMMIT {
            decisions.insert(rec.txid, rec.ts);
        }
        Ok(true)
    })?;
    Ok(decisions)
}

impl Coordinator {
    /// Opens the decision log in `dir`, reading every decision not yet done.
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Coordinator, StorageError> {
        let mut decisions = HashMap::new();
        let wal = Wal::open(dir, opts, 0, |rec| {
            match rec.kind {
                KIND_COMMIT => {
                    decisions.insert(rec.txid, Timestamp(rec.ts));
                }
                KIND_DONE => {
                    decisions.remove(&rec.txid);
                }
                k => {
                    return Err(StorageError::Codec(format!(
                        "unknown coordinator record kind {k} at LSN {}",
                        rec.lsn
                    )))
                }
            }
            Ok(())
        })?;
        Ok(Coordinator {
            wal,
            decisions: Mutex::new(decisions),
            retiring: Mutex::new(Vec::new()),
            flushing: Arc::new(DurableQueue::default()),
            flusher: AtomicBool::new(false),
        })
    }

    /// Logs the decision to commit `txid` at `commit_ts`; durable on return.
    pub fn log_commit(&self, txid: TxnId, commit_ts: Timestamp) -> Result<(), StorageError> {
        let lsn = self.wal.append(txid, commit_ts.0, KIND_COMMIT, &[])?;
        self.wal.wait_durable(lsn)?;
        self.decisions
            .lock()
            .expect("decisions")
            .insert(txid, commit_ts);
        Ok(())
    }

    /// Logs the decision to commit `txid` at `commit_ts` without blocking:
    /// the future resolves once it is durable, its fdatasync shared with
    /// the decisions logged meanwhile. `None` until the flusher runs (see
    /// [`Coordinator::spawn_threads`]): then use [`Coordinator::log_commit`].
    pub fn log_commit_async(
        self: &Arc<Self>,
        txid: TxnId,
        commit_ts: Timestamp,
    ) -> Option<impl std::future::Future<Output = Result<(), StorageError>> + Send + 'static> {
        if !self.flusher.load(Ordering::Acquire) {
            return None;
        }
        let appended = self.wal.append(txid, commit_ts.0, KIND_COMMIT, &[]);
        let signal = Signal::new();
        if let Ok(lsn) = appended {
            if self.wal.sync_mode() == SyncMode::Off {
                signal.fire(Ok(()));
            } else {
                self.flushing.push(lsn, signal.clone());
            }
        }
        let me = self.clone();
        Some(async move {
            appended?;
            signal.wait().await?;
            me.decisions
                .lock()
                .expect("decisions")
                .insert(txid, commit_ts);
            Ok(())
        })
    }

    /// Queues `txid`, which every one of `participants` has applied, to be
    /// forgotten once their logs hold its commit durably.
    pub fn retire(&self, txid: TxnId, participants: Vec<Arc<dyn Shard>>) {
        self.retiring
            .lock()
            .expect("retiring")
            .push((txid, participants));
    }

    /// Forgets the queued decisions: syncs each participant's log once, then
    /// logs DONE for every decision whose participants all synced. One whose
    /// participant could not sync stays decided (a restart commits it
    /// again). Returns how many were forgotten.
    pub fn retire_queued(&self) -> usize {
        let queued = std::mem::take(&mut *self.retiring.lock().expect("retiring"));
        if queued.is_empty() {
            return 0;
        }
        let mut shards: BTreeMap<ShardId, Arc<dyn Shard>> = BTreeMap::new();
        for (_, participants) in &queued {
            for s in participants {
                shards.entry(s.id()).or_insert_with(|| s.clone());
            }
        }
        let synced: HashMap<ShardId, bool> = shards
            .iter()
            .map(|(&id, s)| {
                let ok = s.sync_log().map_err(|e| {
                    tracing::warn!(shard = id, error = %e, "could not sync a participant; its decisions are kept");
                });
                (id, ok.is_ok())
            })
            .collect();
        let mut retired = 0;
        for (txid, participants) in queued {
            if participants.iter().all(|s| synced[&s.id()]) {
                match self.log_done(txid) {
                    Ok(()) => retired += 1,
                    Err(e) => {
                        tracing::warn!(txid, error = %e, "could not log the end of a transaction")
                    }
                }
            }
        }
        retired
    }

    /// Starts the coordinator's threads: the flusher, which syncs the log
    /// for [`Coordinator::log_commit_async`], and the retirer (see
    /// [`Coordinator::retire_queued`]). Both stop once it is dropped.
    pub fn spawn_threads(self: &Arc<Self>) {
        self.spawn_flusher();
        self.spawn_retirer();
    }

    fn spawn_flusher(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let queue = self.flushing.clone();
        let spawned = std::thread::Builder::new()
            .name("2pc-flush".into())
            .spawn(move || loop {
                let batch = queue.take(Duration::from_millis(100));
                let Some(c) = weak.upgrade() else {
                    let signals = batch.into_iter().map(|(_, s)| s);
                    fail_all(signals, u32::MAX, "the coordinator was closed");
                    break;
                };
                let Some(&(last, _)) = batch.last() else {
                    continue;
                };
                let synced = c.wal.wait_durable(last);
                let signals = batch.into_iter().map(|(_, s)| s);
                match synced {
                    Ok(()) => signals.for_each(|s| s.fire(Ok(()))),
                    Err(e) => fail_all(signals, u32::MAX, &e.to_string()),
                }
            });
        match spawned {
            Ok(_) => self.flusher.store(true, Ordering::Release),
            Err(e) => tracing::warn!(error = %e, "could not start the 2PC flusher thread"),
        }
    }

    /// Runs [`Coordinator::retire_queued`] every few milliseconds until the
    /// coordinator is dropped.
    fn spawn_retirer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("2pc-retire".into())
            .spawn(move || loop {
                std::thread::sleep(RETIRE_EVERY);
                let Some(c) = weak.upgrade() else { break };
                c.retire_queued();
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the 2PC retiring thread");
        }
    }

    fn log_done(&self, txid: TxnId) -> Result<(), StorageError> {
        self.wal.append(txid, 0, KIND_DONE, &[])?;
        self.decisions.lock().expect("decisions").remove(&txid);
        Ok(())
    }

    /// The logged commit timestamp of `txid`, if it was decided to commit.
    pub fn decision(&self, txid: TxnId) -> Option<Timestamp> {
        self.decisions
            .lock()
            .expect("decisions")
            .get(&txid)
            .copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::{Catalog, Fragment, FragmentOutput, Row};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A participant that only syncs its log (or fails to).
    struct Participant {
        id: ShardId,
        fails: bool,
        syncs: AtomicUsize,
    }

    impl Participant {
        fn new(id: ShardId, fails: bool) -> Arc<Participant> {
            Arc::new(Participant {
                id,
                fails,
                syncs: AtomicUsize::new(0),
            })
        }
    }

    impl Shard for Participant {
        fn id(&self) -> ShardId {
            self.id
        }
        fn execute(&self, _: TxnId, _: &Fragment) -> Result<FragmentOutput, StorageError> {
            unreachable!("retiring only syncs")
        }
        fn sync_log(&self) -> Result<(), StorageError> {
            self.syncs.fetch_add(1, Ordering::SeqCst);
            if self.fails {
                return Err(StorageError::Unavailable {
                    shard: self.id,
                    reason: "disk gone".into(),
                });
            }
            Ok(())
        }
        fn stream(
            &self,
            _: &Fragment,
            _: &mut dyn FnMut(Vec<Row>) -> bool,
        ) -> Result<(), StorageError> {
            unreachable!("retiring only syncs")
        }
        fn catalog(&self) -> Catalog {
            Catalog::default()
        }
        fn in_doubt(&self) -> Vec<TxnId> {
            Vec::new()
        }
    }

    #[test]
    fn an_async_decision_is_durable_when_its_future_resolves() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Coordinator::open(dir.path(), WalOptions::default()).unwrap());
        assert!(
            c.log_commit_async(1, Timestamp(10)).is_none(),
            "no flusher yet: the caller must block"
        );
        c.spawn_threads();
        let decided: Vec<_> = (1..=8u64)
            .map(|txid| c.log_commit_async(txid, Timestamp(100 + txid)).unwrap())
            .collect();
        for d in decided {
            futures::executor::block_on(d).unwrap();
        }
        assert_eq!(c.decision(3), Some(Timestamp(103)));
        // Each decision is in the log a restart reads.
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        for txid in 1..=8u64 {
            assert_eq!(c.decision(txid), Some(Timestamp(100 + txid)));
        }
    }

    #[test]
    fn a_decision_is_forgotten_only_once_its_participants_have_synced() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        c.log_commit(1, Timestamp(10)).unwrap();
        c.log_commit(2, Timestamp(11)).unwrap();
        let healthy = Participant::new(0, false);
        let broken = Participant::new(1, true);
        c.retire(1, vec![healthy.clone()]);
        c.retire(2, vec![healthy.clone(), broken.clone()]);
        // Queued, not yet forgotten: nothing has synced the participants.
        assert_eq!(c.decision(1), Some(Timestamp(10)));
        assert_eq!(healthy.syncs.load(Ordering::SeqCst), 0);

        assert_eq!(c.retire_queued(), 1);
        // One sync per participant covers every queued decision.
        assert_eq!(healthy.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(broken.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(c.decision(1), None);
        assert_eq!(c.decision(2), Some(Timestamp(11)));
        assert_eq!(c.retire_queued(), 0);

        // The DONE record is in the log: a restart keeps only decision 2.
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.decision(1), None);
        assert_eq!(c.decision(2), Some(Timestamp(11)));
    }
}
