//! The two-phase-commit coordinator's decision log.
//!
//! A transaction that wrote to several shards first has every participant
//! PREPARE: validate, log the write set with the list of participants, lock
//! its keys and take a prepare timestamp. It commits at the greatest one.
//!
//! Usually a participant votes as soon as its PREPARE is logged, before it
//! is durable, and hands the record back ([`LoggedVote`]); this log then
//! appends the decision with every vote in it, and one fsync, shared with
//! the commits around it, makes the whole transaction durable: one fsync
//! per commit instead of one per participant. The participant keeps such
//! a PREPARE, and the COMMIT PREPARED after it, in its log's memory until
//! its next write or sync (`Wal::append_unwritten`). A restart whose
//! participant lost such a PREPARE, to a crash of the process or of the
//! machine, logs it there again from here (see [`crate::recovery`]).
//! The committer thread that syncs this log runs phase two right after
//! the sync ([`Coordinator::durable`]): it is awake already, and the rows
//! stay locked only until their commit is applied, not until the
//! connection's thread wakes up.
//!
//! A bulk write set instead makes every PREPARE durable where it is logged,
//! which commits the transaction by itself (parallel commits, as
//! CockroachDB does); its decision is appended without waiting.
//!
//! A restart that finds a transaction prepared decides it by this log if
//! it holds the outcome, else commits it if every participant still holds
//! its PREPARE (or its commit), and aborts it otherwise. What keeps that
//! sound: an abort is logged here durably before any participant is told
//! to abort, and a shard's prepare floor (the point its restart replays
//! from) moves past a transaction it resolved only after this log is
//! synced (`ShardOptions::decisions`), so an outcome that only a
//! participant's log held is never lost to the others.
//!
//! A decision is forgotten (a DONE record) only once every participant's
//! commit record is durable.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use fortress_storage::durable::{DurableQueue, Signal, SignalWait};

use fortress_storage::wal::{Wal, WalOptions};
use fortress_storage::{LoggedVote, Shard, ShardId, StorageError, Timestamp, TxnId};

const KIND_COMMIT: u8 = 1;
const KIND_DONE: u8 = 2;
const KIND_ABORT: u8 = 3;
/// A commit carrying its participants' votes, which were not yet durable.
const KIND_COMMIT_VOTES: u8 = 4;

/// How often the retiring thread looks for decisions to forget.
const RETIRE_EVERY: Duration = Duration::from_millis(20);

/// A decision every participant has applied, with those participants.
type Retiring = (TxnId, Vec<Arc<dyn Shard>>);

/// A logged outcome: the commit timestamp, or `None` for an abort.
pub type Outcome = Option<Timestamp>;

/// A participant's vote as a commit decision carries it.
pub type Vote = (ShardId, LoggedVote);

/// What the committer runs once a commit's record is durable, before it
/// answers the commit's waiter (see [`Coordinator::durable`]).
pub type OnDurable = Box<dyn FnOnce() + Send>;

/// A commit waiting on the committer: its waiter's signal and what to run
/// first once the record is durable.
struct Waiter {
    signal: Arc<Signal>,
    then: Option<OnDurable>,
}

/// A decision this log holds, as a restore reads it.
#[derive(Clone, Debug, PartialEq)]
pub struct LoggedDecision {
    /// The commit timestamp, or `None` for an abort.
    pub commit_ts: Option<u64>,
    /// The votes logged with a commit not yet done (empty otherwise).
    pub votes: Vec<Vote>,
}

/// Encodes votes as: per vote, shard (u32), LSN (u64), record length (u32)
/// and the record, little-endian.
fn encode_votes(votes: &[Vote]) -> Vec<u8> {
    let len = votes.iter().map(|(_, v)| 16 + v.record.len()).sum();
    let mut out = Vec::with_capacity(len);
    for (shard, v) in votes {
        out.extend_from_slice(&shard.to_le_bytes());
        out.extend_from_slice(&v.lsn.to_le_bytes());
        out.extend_from_slice(&(v.record.len() as u32).to_le_bytes());
        out.extend_from_slice(&v.record);
    }
    out
}

fn decode_votes(mut buf: &[u8]) -> Result<Vec<Vote>, StorageError> {
    let mut votes = Vec::new();
    while !buf.is_empty() {
        let shard = u32::from_le_bytes(take(&mut buf)?);
        let lsn = u64::from_le_bytes(take(&mut buf)?);
        let len = u32::from_le_bytes(take(&mut buf)?) as usize;
        let (record, rest) = buf.split_at_checked(len).ok_or_else(short_votes)?;
        buf = rest;
        votes.push((
            shard,
            LoggedVote {
                lsn,
                record: record.to_vec(),
            },
        ));
    }
    Ok(votes)
}

/// The next `N` bytes of `buf`, consumed.
fn take<const N: usize>(buf: &mut &[u8]) -> Result<[u8; N], StorageError> {
    let (head, rest) = buf.split_first_chunk::<N>().ok_or_else(short_votes)?;
    *buf = rest;
    Ok(*head)
}

fn short_votes() -> StorageError {
    StorageError::Codec("a commit record's votes are cut short".into())
}

/// Decisions of multi-shard transactions.
pub struct Coordinator {
    wal: Wal,
    /// Each decision not yet done, with the LSN it was logged at.
    decisions: Mutex<HashMap<TxnId, (Outcome, u64)>>,
    /// Decisions every participant has applied, with those participants,
    /// waiting for their commit records to be durable.
    retiring: Mutex<Vec<Retiring>>,
    /// The votes of the commits the open found not done, as logged (see
    /// [`Coordinator::logged_votes`]).
    votes: Mutex<BTreeMap<TxnId, (Timestamp, Vec<u8>)>>,
    /// Commits waiting for their record to be durable, and whether a
    /// thread serves them (see [`Coordinator::spawn_committer`]).
    committer: Arc<DurableQueue<Waiter>>,
    committing: AtomicBool,
    dir: PathBuf,
    /// The replay start last stored in [`FLOOR_FILE`].
    floor: Mutex<u64>,
}

/// Holds the LSN an open replays after: every decision at or below it is
/// done, so a restart reads the decisions still held, not the whole log.
const FLOOR_FILE: &str = "FLOOR";

/// How often the retiring thread stores a risen floor.
const FLOOR_EVERY: Duration = Duration::from_secs(1);

/// The floor stored in `dir`, 0 (replay everything) without one.
fn read_floor(dir: &Path) -> u64 {
    std::fs::read(dir.join(FLOOR_FILE))
        .ok()
        .and_then(|b| b.try_into().ok())
        .map(u64::from_le_bytes)
        .unwrap_or(0)
}

/// Stores `floor` in `dir` durably: written aside, synced, renamed over.
fn write_floor(dir: &Path, floor: u64) -> Result<(), StorageError> {
    use std::io::Write;
    let tmp = dir.join(format!("{FLOOR_FILE}.tmp"));
    let io = |e| StorageError::io(&tmp, e);
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(&floor.to_le_bytes()).map_err(io)?;
    f.sync_all().map_err(io)?;
    std::fs::rename(&tmp, dir.join(FLOOR_FILE)).map_err(io)?;
    fortress_storage::checkpoint::sync_dir(dir)
}

/// Every outcome in the log in `dir` (txid to commit timestamp, `None` for
/// an abort), read without changing it (the log may belong to a running
/// server): what a restore consults for transactions a shard's log leaves
/// prepared.
pub fn read_decisions(
    dir: &Path,
    cipher: Option<&fortress_storage::cipher::Cipher>,
) -> Result<HashMap<TxnId, LoggedDecision>, StorageError> {
    let mut decisions = HashMap::new();
    if !dir.exists() {
        return Ok(decisions);
    }
    let decided = |commit_ts, votes| LoggedDecision { commit_ts, votes };
    fortress_storage::wal::read_from(dir, 0, cipher, |rec| {
        match rec.kind {
            KIND_COMMIT => {
                decisions.insert(rec.txid, decided(Some(rec.ts), Vec::new()));
            }
            KIND_COMMIT_VOTES => {
                let votes = decode_votes(&rec.payload)?;
                decisions.insert(rec.txid, decided(Some(rec.ts), votes));
            }
            KIND_ABORT => {
                decisions.insert(rec.txid, decided(None, Vec::new()));
            }
            // Done: every participant's log holds the outcome durably.
            KIND_DONE => {
                if let Some(d) = decisions.get_mut(&rec.txid) {
                    d.votes = Vec::new();
                }
            }
            _ => {}
        }
        Ok(true)
    })?;
    Ok(decisions)
}

/// The commit decisions the log in `dir` holds after LSN `after`, as
/// `(txid, commit timestamp)`.
pub fn commits_after(
    dir: &Path,
    after: u64,
    cipher: Option<&fortress_storage::cipher::Cipher>,
) -> Result<Vec<(TxnId, u64)>, StorageError> {
    let mut out = Vec::new();
    fortress_storage::wal::read_from(dir, after, cipher, |rec| {
        if matches!(rec.kind, KIND_COMMIT | KIND_COMMIT_VOTES) {
            out.push((rec.txid, rec.ts));
        }
        Ok(true)
    })?;
    Ok(out)
}

/// What one decision record does to the decisions and votes held: an
/// open's replay and a standby's stream take records alike.
fn hold(
    decisions: &mut HashMap<TxnId, (Outcome, u64)>,
    votes: &mut BTreeMap<TxnId, (Timestamp, Vec<u8>)>,
    rec: &fortress_storage::wal::Record,
) -> Result<(), StorageError> {
    match rec.kind {
        KIND_COMMIT => {
            decisions.insert(rec.txid, (Some(Timestamp(rec.ts)), rec.lsn));
        }
        KIND_COMMIT_VOTES => {
            decisions.insert(rec.txid, (Some(Timestamp(rec.ts)), rec.lsn));
            votes.insert(rec.txid, (Timestamp(rec.ts), rec.payload.clone()));
        }
        KIND_ABORT => {
            decisions.insert(rec.txid, (None, rec.lsn));
        }
        KIND_DONE => {
            decisions.remove(&rec.txid);
            votes.remove(&rec.txid);
        }
        k => {
            return Err(StorageError::Codec(format!(
                "unknown coordinator record kind {k} at LSN {}",
                rec.lsn
            )))
        }
    }
    Ok(())
}

impl Coordinator {
    /// A standby's copy of the log takes records shipped from its
    /// primary's: logged byte for byte, made durable, and held as an open
    /// would hold them, so that a promotion in place decides the
    /// transactions left prepared from them. Returns the last LSN.
    pub fn follow(&self, bytes: &[u8]) -> Result<u64, StorageError> {
        let cipher = self.wal.cipher().map(|c| &**c);
        let records = fortress_storage::wal::decode_shipped(bytes, cipher, &self.dir)?;
        let last = self.wal.append_encoded(bytes)?;
        self.wal.wait_durable(last)?;
        let mut decisions = self.decisions.lock().expect("decisions");
        let mut votes = self.votes.lock().expect("votes");
        for rec in &records {
            hold(&mut decisions, &mut votes, rec)?;
        }
        Ok(last)
    }

    /// Opens the decision log in `dir`, reading every decision not yet done
    /// (the log after its stored floor).
    pub fn open(dir: &Path, opts: WalOptions) -> Result<Coordinator, StorageError> {
        let mut decisions = HashMap::new();
        let mut votes = BTreeMap::new();
        let floor = read_floor(dir);
        let wal = Wal::open(dir, opts, floor, |rec| {
            hold(&mut decisions, &mut votes, rec)
        })?;
        // A floor past the log's end (never, as it is stored no further
        // than the durable log) would hide the decisions logged next.
        let floor = if floor > wal.last_lsn() {
            write_floor(dir, wal.last_lsn())?;
            wal.last_lsn()
        } else {
            floor
        };
        Ok(Coordinator {
            wal,
            decisions: Mutex::new(decisions),
            retiring: Mutex::new(Vec::new()),
            votes: Mutex::new(votes),
            committer: Arc::new(DurableQueue::default()),
            committing: AtomicBool::new(false),
            dir: dir.to_path_buf(),
            floor: Mutex::new(floor),
        })
    }

    /// Logs a decision, under the lock of the held ones so the floor never
    /// passes one logged but not yet held; returns its LSN. The record
    /// waits in memory for the sync that makes it durable (the committer
    /// writes a whole batch of them in one write), or for the next one
    /// when nothing waits on it.
    fn log_decision(
        &self,
        txid: TxnId,
        outcome: Outcome,
        kind: u8,
        payload: &[u8],
    ) -> Result<u64, StorageError> {
        let mut held = self.decisions.lock().expect("decisions");
        let ts = outcome.map_or(0, |t| t.0);
        let lsn = self.wal.append_unwritten(txid, ts, kind, payload)?;
        held.insert(txid, (outcome, lsn));
        Ok(lsn)
    }

    /// The decision log itself, for readers that ship it.
    pub fn log(&self) -> &Wal {
        &self.wal
    }

    /// Stores the floor if it rose: just below the oldest decision held,
    /// and no further than the durable log. Returns the floor stored.
    pub fn store_floor(&self) -> Result<u64, StorageError> {
        let floor = {
            let held = self.decisions.lock().expect("decisions");
            let oldest = held.values().map(|&(_, lsn)| lsn - 1).min();
            oldest
                .unwrap_or_else(|| self.wal.last_lsn())
                .min(self.wal.durable_lsn())
        };
        let mut stored = self.floor.lock().expect("floor");
        if floor > *stored {
            write_floor(&self.dir, floor)?;
            *stored = floor;
        }
        Ok(*stored)
    }

    /// Starts the thread that makes commit records durable for
    /// [`Coordinator::durable`]: one fsync per batch of waiting commits.
    /// It stops once the coordinator is dropped.
    pub fn spawn_committer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let queue = self.committer.clone();
        let spawned = std::thread::Builder::new()
            .name("2pc-commit".into())
            .spawn(move || loop {
                let batch = queue.take(Duration::from_millis(100));
                let Some(c) = weak.upgrade() else {
                    let gone = || Err(StorageError::Codec("the coordinator was closed".into()));
                    batch.into_iter().for_each(|(_, w)| w.signal.fire(gone()));
                    break;
                };
                let Some(&(last, _)) = batch.last() else {
                    continue;
                };
                let synced = c.sync_through(last).map_err(|e| e.to_string());
                for (_, w) in batch {
                    if let (Ok(()), Some(then)) = (&synced, w.then) {
                        // A panic here would stop every later commit.
                        if std::panic::catch_unwind(std::panic::AssertUnwindSafe(then)).is_err() {
                            tracing::error!("the work after a durable commit panicked");
                        }
                    }
                    w.signal.fire(synced.clone().map_err(StorageError::Codec));
                }
            });
        match spawned {
            Ok(_) => self.committing.store(true, Ordering::Release),
            Err(e) => {
                tracing::warn!(error = %e, "no 2PC commit thread: commits wait on the blocking pool")
            }
        }
    }

    /// Resolves once the record at `lsn` is durable, on the committer
    /// thread, which first runs `then` (if the sync worked): work that
    /// should follow the sync at once, without waiting for the waiter's
    /// thread to wake. `None` if that thread is not running, with `then`
    /// dropped unrun (the caller then waits with
    /// [`Coordinator::sync_through`] where it may block).
    pub fn durable(&self, lsn: u64, then: Option<OnDurable>) -> Option<SignalWait> {
        if !self.committing.load(Ordering::Acquire) {
            return None;
        }
        let signal = Signal::new();
        let waiter = Waiter {
            signal: signal.clone(),
            then,
        };
        self.committer.push(lsn, waiter);
        Some(signal.wait())
    }

    /// Appends the commit of `txid` at `commit_ts` with its participants'
    /// votes, which are not durable yet; returns its LSN. The transaction
    /// is committed once that LSN is durable ([`Coordinator::sync_through`]).
    pub fn append_commit_votes(
        &self,
        txid: TxnId,
        commit_ts: Timestamp,
        votes: &[Vote],
    ) -> Result<u64, StorageError> {
        let votes = encode_votes(votes);
        self.log_decision(txid, Some(commit_ts), KIND_COMMIT_VOTES, &votes)
    }

    /// Waits until every record through `lsn` is durable; concurrent
    /// callers share one fsync.
    pub fn sync_through(&self, lsn: u64) -> Result<(), StorageError> {
        self.wal.wait_durable(lsn)
    }

    /// Takes the votes logged with the commits the open found not done:
    /// what a restart checks its participants still hold.
    pub fn logged_votes(&self) -> Result<Vec<(TxnId, Timestamp, Vec<Vote>)>, StorageError> {
        std::mem::take(&mut *self.votes.lock().expect("votes"))
            .into_iter()
            .map(|(txid, (ts, raw))| Ok((txid, ts, decode_votes(&raw)?)))
            .collect()
    }

    /// Forgets every decision held, durably: a restart's last step, once
    /// every participant has applied and synced its outcome.
    pub fn retire_all(&self) -> Result<(), StorageError> {
        let held: Vec<TxnId> = self
            .decisions
            .lock()
            .expect("decisions")
            .keys()
            .copied()
            .collect();
        for txid in held {
            self.log_done(txid)?;
        }
        self.sync()?;
        self.store_floor().map(|_| ())
    }

    /// Appends the commit of `txid` at `commit_ts`, without waiting for it
    /// to be durable: every PREPARE is, which already commits it.
    pub fn append_commit(&self, txid: TxnId, commit_ts: Timestamp) -> Result<(), StorageError> {
        self.log_decision(txid, Some(commit_ts), KIND_COMMIT, &[])?;
        Ok(())
    }

    /// Logs the decision to commit `txid` at `commit_ts`; durable on return.
    pub fn log_commit(&self, txid: TxnId, commit_ts: Timestamp) -> Result<(), StorageError> {
        self.append_commit(txid, commit_ts)?;
        self.sync()
    }

    /// Logs the abort of `txid`; durable on return, before any participant
    /// may drop its PREPARE.
    pub fn log_abort(&self, txid: TxnId) -> Result<(), StorageError> {
        self.log_decision(txid, None, KIND_ABORT, &[])?;
        self.sync()
    }

    /// Makes every decision appended so far durable.
    pub fn sync(&self) -> Result<(), StorageError> {
        self.wal.wait_durable(self.wal.last_lsn())
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

    /// Runs [`Coordinator::retire_queued`] every few milliseconds, and
    /// [`Coordinator::store_floor`] every second, until the coordinator is
    /// dropped.
    pub fn spawn_retirer(self: &Arc<Self>) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name("2pc-retire".into())
            .spawn(move || {
                let mut floor_stored = std::time::Instant::now();
                loop {
                    std::thread::sleep(RETIRE_EVERY);
                    let Some(c) = weak.upgrade() else { break };
                    c.retire_queued();
                    if floor_stored.elapsed() >= FLOOR_EVERY {
                        floor_stored = std::time::Instant::now();
                        if let Err(e) = c.store_floor() {
                            tracing::warn!(error = %e, "could not store the 2PC log's floor");
                        }
                    }
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the 2PC retiring thread");
        }
    }

    fn log_done(&self, txid: TxnId) -> Result<(), StorageError> {
        // Not waited for: a DONE lost to a crash only leaves a decision
        // that a restart carries out again, on participants that have it.
        self.wal.append_unwritten(txid, 0, KIND_DONE, &[])?;
        self.decisions.lock().expect("decisions").remove(&txid);
        Ok(())
    }

    /// How many decisions are held (logged and not yet done).
    pub fn held(&self) -> usize {
        self.decisions.lock().expect("decisions").len()
    }

    /// The logged outcome of `txid`, if one was logged and not yet done.
    pub fn outcome(&self, txid: TxnId) -> Option<Outcome> {
        self.decisions
            .lock()
            .expect("decisions")
            .get(&txid)
            .map(|&(outcome, _)| outcome)
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
    fn commits_aborts_and_their_end_are_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        c.append_commit(1, Timestamp(10)).unwrap();
        c.log_abort(2).unwrap();
        c.log_commit(3, Timestamp(12)).unwrap();
        c.retire(3, Vec::new());
        assert_eq!(c.retire_queued(), 1);
        c.sync().unwrap();
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.outcome(1), Some(Some(Timestamp(10))));
        assert_eq!(c.outcome(2), Some(None));
        assert_eq!(c.outcome(3), None, "done: forgotten");
        assert_eq!(c.outcome(4), None);
        let read = read_decisions(dir.path(), None).unwrap();
        assert_eq!(read[&1].commit_ts, Some(10));
        assert_eq!(read[&2].commit_ts, None);
    }

    /// The committer runs a commit's follow-up once its record is durable,
    /// and answers the waiter only after it.
    #[tokio::test]
    async fn work_after_a_durable_commit_runs_before_its_waiter_is_answered() {
        let dir = tempfile::tempdir().unwrap();
        let c = Arc::new(Coordinator::open(dir.path(), WalOptions::default()).unwrap());
        c.spawn_committer();
        let lsn = c.append_commit_votes(7, Timestamp(70), &votes()).unwrap();
        let seen = Arc::new(Mutex::new(None));
        let then: OnDurable = {
            let (c, seen) = (c.clone(), seen.clone());
            Box::new(move || *seen.lock().unwrap() = Some(c.wal.durable_lsn()))
        };
        let wait = c.durable(lsn, Some(then)).expect("a committer runs");
        wait.await.unwrap();
        let durable = seen.lock().unwrap().expect("ran before the answer");
        assert!(durable >= lsn, "ran at durable LSN {durable}, before {lsn}");
    }

    fn votes() -> Vec<Vote> {
        let vote = |lsn, record: &[u8]| LoggedVote {
            lsn,
            record: record.to_vec(),
        };
        vec![(0, vote(7, b"abc")), (3, vote(9, b""))]
    }

    #[test]
    fn votes_logged_with_a_commit_are_read_back_until_it_is_done() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        let lsn = c.append_commit_votes(5, Timestamp(50), &votes()).unwrap();
        c.sync_through(lsn).unwrap();
        assert_eq!(c.outcome(5), Some(Some(Timestamp(50))));
        c.append_commit_votes(6, Timestamp(60), &votes()[..1])
            .unwrap();
        c.retire(6, Vec::new());
        assert_eq!(c.retire_queued(), 1);
        c.sync().unwrap();
        drop(c);
        let read = read_decisions(dir.path(), None).unwrap();
        let decided = |ts, votes| LoggedDecision {
            commit_ts: Some(ts),
            votes,
        };
        assert_eq!(read[&5], decided(50, votes()));
        assert_eq!(read[&6], decided(60, Vec::new()), "done: votes dropped");
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.outcome(5), Some(Some(Timestamp(50))));
        assert_eq!(c.outcome(6), None);
        assert_eq!(c.logged_votes().unwrap(), vec![(5, Timestamp(50), votes())]);
        assert!(c.logged_votes().unwrap().is_empty(), "taken once");
        c.retire_all().unwrap();
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.outcome(5), None, "retired for good");
        assert!(c.logged_votes().unwrap().is_empty());
    }

    #[test]
    fn a_restart_reads_from_the_floor_and_keeps_every_decision_held() {
        let dir = tempfile::tempdir().unwrap();
        let opts = WalOptions {
            segment_bytes: 1024,
            ..WalOptions::default()
        };
        let c = Coordinator::open(dir.path(), opts.clone()).unwrap();
        c.log_commit(1, Timestamp(1)).unwrap();
        for txid in 2..200 {
            c.log_commit(txid, Timestamp(txid)).unwrap();
            c.retire(txid, Vec::new());
        }
        c.retire_queued();
        c.sync().unwrap();
        assert_eq!(c.store_floor().unwrap(), 0, "decision 1 is still held");
        c.retire(1, Vec::new());
        c.retire_queued();
        c.log_commit(500, Timestamp(500)).unwrap();
        let floor = c.store_floor().unwrap();
        assert_eq!(floor, c.wal.last_lsn() - 1, "just below decision 500");
        drop(c);
        // The segments wholly below the floor are not even read.
        let segments = fortress_storage::wal::list_segments(dir.path()).unwrap();
        assert!(segments.len() > 4, "{} segments", segments.len());
        for (_, path) in segments.iter().take_while(|(first, _)| *first <= floor / 2) {
            std::fs::remove_file(path).unwrap();
        }
        let c = Coordinator::open(dir.path(), opts.clone()).unwrap();
        assert_eq!(c.held(), 1);
        assert_eq!(c.outcome(500), Some(Some(Timestamp(500))));
        assert_eq!(c.outcome(1), None);
    }

    #[test]
    fn a_floor_past_the_logs_end_is_brought_back_before_anything_is_logged() {
        let dir = tempfile::tempdir().unwrap();
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        c.log_commit(1, Timestamp(1)).unwrap();
        drop(c);
        write_floor(dir.path(), 1000).unwrap();
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(read_floor(dir.path()), 1);
        c.log_commit(2, Timestamp(2)).unwrap();
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.outcome(2), Some(Some(Timestamp(2))));
    }

    #[test]
    fn votes_cut_short_are_an_error_not_a_panic() {
        let all = votes();
        let bytes = encode_votes(&all);
        let first = 16 + all[0].1.record.len();
        assert_eq!(decode_votes(&bytes).unwrap(), all);
        assert_eq!(decode_votes(&bytes[..first]).unwrap(), all[..1]);
        for n in (1..bytes.len()).filter(|&n| n != first) {
            assert!(decode_votes(&bytes[..n]).is_err(), "{n} bytes");
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
        assert_eq!(c.outcome(1), Some(Some(Timestamp(10))));
        assert_eq!(healthy.syncs.load(Ordering::SeqCst), 0);

        assert_eq!(c.retire_queued(), 1);
        // One sync per participant covers every queued decision.
        assert_eq!(healthy.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(broken.syncs.load(Ordering::SeqCst), 1);
        assert_eq!(c.outcome(1), None);
        assert_eq!(c.outcome(2), Some(Some(Timestamp(11))));
        assert_eq!(c.retire_queued(), 0);

        // The DONE record is in the log: a restart keeps only decision 2.
        drop(c);
        let c = Coordinator::open(dir.path(), WalOptions::default()).unwrap();
        assert_eq!(c.outcome(1), None);
        assert_eq!(c.outcome(2), Some(Some(Timestamp(11))));
    }
}
