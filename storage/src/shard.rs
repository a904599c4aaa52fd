//! A shard store: sled trees materialised from the shard's WAL.
//!
//! **Layout.** `DIR/wal/` holds the log, `DIR/db/` the sled database: a `meta`
//! tree (catalog, an applied LSN, the prepare floor) and one tree `t<id>` per
//! table whose keys are `pk ++ !ts` (see [`crate::keycodec`]) and whose
//! reserved key `[0x00]` holds an LSN through which the tree has every
//! record (and the newest version timestamp then), written with the meta
//! tree's every [`MARK_EVERY`] records, at open and at flush.
//!
//! **Write rule.** Under the shard's write lock a writer computes its
//! operations from the applied state, appends one WAL record and registers its
//! keys as pending; it then waits for the record to be durable and applies it.
//! Records are applied strictly in LSN order, so the per-tree LSN is a correct
//! replay watermark. A writer whose keys are pending waits for them to apply
//! and recomputes; pending entries are cleared only under the write lock, after
//! the apply, so no writer can plan from data a pending write is changing.
//! Readers only see applied, hence durable, data.
//!
//! **Recovery rule.** On open, replay the WAL from the lowest watermark (or
//! the prepare floor, if lower: prepared transactions are kept in memory and
//! rebuilt from their PREPARE records) and skip, per tree, records at or
//! below that tree's watermark; later ones are redone, whether or not GC
//! has collected over them. If sled cannot be opened, it is moved aside
//! and rebuilt from the whole log.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, RwLock};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::api::{Fragment, FragmentOutput, LoggedVote, PendingWrite, Shard, TableScan};
use crate::checkpoint::{ShardCut, TableFile};
use crate::clock::{HybridClock, Timestamp};
use crate::conflict::{resolve, Resolver, Stamp, Verdict};
use crate::durable::{fail_all, DurableQueue, Signal};
use crate::error::{EvalError, Result, StorageError};
use crate::expr::Expr;
use crate::fastmap::FastMap;
use crate::heads::{read_head, Head, HeadCache};
use crate::keycodec::{encode_key, versioned_key};
use crate::mvcc::{
    collect_garbage, collect_key_garbage, decode_version, encode_version, visible,
    visible_versions, Collected, SnapshotPins, LATEST,
};
use crate::schema::{Catalog, TableDef, TableId};
use crate::value::{Row, Value};
use crate::wal::{Lsn, Record, SyncMode, Wal, WalOptions};
use crate::{ShardId, TxnId};

pub(crate) const KIND_WRITE: u8 = 1;
pub(crate) const KIND_CATALOG: u8 = 2;
pub(crate) const KIND_PREPARE: u8 = 3;
pub(crate) const KIND_COMMIT_PREPARED: u8 = 4;
pub(crate) const KIND_ABORT_PREPARED: u8 = 5;
/// Rows loaded by a restore: `(timestamp, put)` pairs.
pub(crate) const KIND_LOAD: u8 = 6;
/// A PREPARE that names every participant of its transaction (see
/// [`PrepareRecord`]); [`KIND_PREPARE`] records come from older versions.
pub(crate) const KIND_PREPARE_ALL: u8 = 7;
/// Row versions a multi-master peer committed, applied here with their
/// stamps (see [`RemoteRecord`]); never sent back to peers.
pub(crate) const KIND_REMOTE: u8 = 8;
/// Meta-tree key prefix of prepared, undecided transactions.
const META_PREPARED: &[u8] = b"prepared/";
/// Rows per batch a streamed scan hands over.
const STREAM_BATCH: usize = 1024;

/// Rows a streamed sort takes in between checks that its reader is there.
const PROBE_EVERY: u64 = 4096;

/// How long a writer or reader waits for an in-doubt transaction.
const IN_DOUBT_WAIT: Duration = Duration::from_secs(5);
/// How long a peer's batch waits for its rows' logged writes to apply
/// before giving up (and coming again).
const REMOTE_BUSY_WAIT: Duration = Duration::from_secs(30);
/// Reserved key in every table and index tree: an LSN through which the
/// tree holds every record, and the newest version timestamp then.
const APPLIED_KEY: &[u8] = &[0x00];
const META_CATALOG: &[u8] = b"catalog";
const META_APPLIED: &[u8] = b"applied_lsn";
/// Meta key: an LSN at or below which every PREPARE record is resolved.
/// Replay on open starts no later than it, so it rebuilds the prepared set.
const META_PREPARE_FLOOR: &[u8] = b"prepare_floor";
/// Records applied between two writes of the applied marks (the meta
/// tree's and every tree's) and the prepare floor: at most what a restart
/// replays.
const MARK_EVERY: Lsn = 1024;

/// One physical change, as logged.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) enum WriteOp {
    Put {
        table: TableId,
        key: Vec<u8>,
        row: Row,
    },
    Delete {
        table: TableId,
        key: Vec<u8>,
    },
}

impl WriteOp {
    fn target(&self) -> (TableId, &[u8]) {
        match self {
            WriteOp::Put { table, key, .. } | WriteOp::Delete { table, key } => (*table, key),
        }
    }
}

/// A peer's version of one row, to apply here (see
/// [`ShardStore::apply_remote`]).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteChange {
    pub table: TableId,
    /// The encoded primary key.
    pub key: Vec<u8>,
    /// The row, or `None` for a deletion.
    pub row: Option<Row>,
    pub stamp: Stamp,
}

/// A version kept beside the visible one of its row because the two were
/// written concurrently (version vectors), until a later write covers it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Sibling {
    pub table: TableId,
    pub key: Vec<u8>,
    pub row: Option<Row>,
    pub stamp: Stamp,
    /// The version it lost to (node and commit time): the conflict is
    /// resolved once a later version covering it replaces that one.
    pub winner: (String, u64),
}

/// A stamp stored for the version of `key` at `at` (the record's own
/// timestamp when `None`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct StampAt {
    table: TableId,
    key: Vec<u8>,
    at: Option<u64>,
    stamp: Stamp,
}

/// Payload of a [`KIND_REMOTE`] record: the versions written and the
/// stamps and siblings stored with them.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct RemoteRecord {
    ops: Vec<WriteOp>,
    stamps: Vec<StampAt>,
    siblings: Vec<Sibling>,
}

impl RemoteRecord {
    /// The payload of a record that puts back stored `stamps` or
    /// `siblings` entries (a checkpoint's peer file, for a restore).
    pub(crate) fn encode_stored(kind: &str, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<Vec<u8>> {
        let mut record = RemoteRecord {
            ops: Vec::new(),
            stamps: Vec::new(),
            siblings: Vec::new(),
        };
        for (k, v) in entries {
            match kind {
                "stamps" => {
                    let (table, key, at) = split_stamp_key(k)
                        .ok_or_else(|| StorageError::Codec("a damaged stamp key".into()))?;
                    record.stamps.push(StampAt {
                        table,
                        key: key.to_vec(),
                        at: Some(at),
                        stamp: postcard::from_bytes(v).map_err(codec)?,
                    });
                }
                _ => record
                    .siblings
                    .push(postcard::from_bytes(v).map_err(codec)?),
            }
        }
        encode_record(&record)
    }

    /// Every row the record changes: a version, or a stamp (each version
    /// and sibling comes with its row's stamp).
    fn keys(&self) -> impl Iterator<Item = (TableId, Vec<u8>)> + '_ {
        self.stamps.iter().map(|s| (s.table, s.key.clone()))
    }
}

/// What [`ShardStore::apply_remote`] did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RemoteApplied {
    /// Peer versions that became their row's newest.
    pub taken: u64,
    /// Peer versions the version here won against (or already was).
    pub kept: u64,
    /// Concurrent versions kept as siblings (version vectors).
    pub conflicts: u64,
}

/// Payload of a [`KIND_PREPARE_ALL`] record. With every participant named,
/// a restart can tell a transaction whose every PREPARE is durable, which
/// is committed at the greatest of their timestamps even if the
/// coordinator's decision was lost (parallel commits).
#[derive(Deserialize)]
pub(crate) struct PrepareRecord {
    pub participants: Vec<ShardId>,
    pub ops: Vec<WriteOp>,
}

/// The change a PREPARE record (a [`PrepareRecord`] payload) stands for.
fn prepare_change(txid: TxnId, ts: u64, payload: &[u8]) -> Result<Change> {
    let p: PrepareRecord = postcard::from_bytes(payload).map_err(codec)?;
    Ok(Change::Prepare {
        txid,
        ts,
        ops: p.ops,
        participants: p.participants,
    })
}

/// True for a PREPARE whose vote goes out before it is durable.
fn is_logged_vote(out: &FragmentOutput) -> bool {
    matches!(out, FragmentOutput::Prepared { vote: Some(_), .. })
}

/// Encodes a [`PrepareRecord`] from borrowed parts (postcard writes a
/// struct as the tuple of its fields).
fn encode_prepare(participants: &[ShardId], ops: &[WriteOp]) -> Result<Vec<u8>> {
    encode_record(&(participants, ops))
}

/// A record's payload, in a buffer sized for a typical small write set up
/// front rather than grown from empty through several reallocations.
fn encode_record<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>> {
    postcard::to_extend(value, Vec::with_capacity(256)).map_err(codec)
}

/// A durable record waiting for its turn to be applied.
enum Change {
    Write {
        ts: u64,
        ops: Vec<WriteOp>,
    },
    Catalog(Catalog),
    /// Rows a restore loads from a checkpoint, each at its own timestamp.
    Load(Vec<(u64, WriteOp)>),
    Prepare {
        txid: TxnId,
        ts: u64,
        ops: Vec<WriteOp>,
        /// Empty for a record that does not name them.
        participants: Vec<ShardId>,
    },
    /// Carries the transaction's writes (from its PREPARE), so replay never
    /// depends on the prepared set having survived in sled.
    CommitPrepared {
        txid: TxnId,
        commit_ts: u64,
        ops: Vec<WriteOp>,
    },
    AbortPrepared {
        txid: TxnId,
    },
    /// A peer's versions (see [`KIND_REMOTE`]).
    Remote {
        ts: u64,
        record: RemoteRecord,
    },
}

/// A transaction prepared on this shard, waiting for its outcome.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct PreparedTxn {
    ts: u64,
    ops: Vec<WriteOp>,
    /// LSN of its PREPARE record; 0 for one loaded from the meta tree.
    #[serde(skip)]
    lsn: Lsn,
    /// Every shard it prepared on; empty if its record did not say.
    #[serde(skip)]
    participants: Vec<ShardId>,
}

/// What one shard knows of a two-phase transaction (see
/// [`ShardStore::txn_status`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TxnStatus {
    /// Prepared here at `ts`, outcome unknown. `participants` is empty if
    /// the PREPARE record did not name them.
    Prepared {
        ts: Timestamp,
        participants: Vec<ShardId>,
    },
    /// The log replayed at open holds its commit, at this timestamp.
    Committed(Timestamp),
    /// The log replayed at open holds its abort.
    Aborted,
    /// Nothing: never prepared here, or resolved before the replayed part
    /// of the log.
    Unknown,
}

/// Makes the coordinator's decisions logged so far durable. A shard of a
/// cluster calls it before its prepare floor moves past transactions it
/// resolved (see [`ShardOptions::decisions`]).
#[derive(Clone)]
pub struct DecisionLog(pub Arc<dyn Fn() -> Result<()> + Send + Sync>);

impl std::fmt::Debug for DecisionLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DecisionLog")
    }
}

/// Prepared transactions and the keys they lock.
///
/// The set lives in memory and is rebuilt on open by replaying the log
/// from the prepare floor (see [`Materialized::mark_applied`]). Earlier
/// versions stored each prepared transaction in the meta tree instead;
/// those entries are still loaded, and their keys removed once resolved.
#[derive(Default)]
struct PreparedSet {
    txns: BTreeMap<TxnId, PreparedTxn>,
    locks: FastMap<(TableId, Vec<u8>), TxnId>,
    /// PREPARE LSNs of the transactions in the set, oldest first.
    logged: BTreeSet<Lsn>,
    /// Transactions resolved by a record not yet durable, by that record's
    /// LSN: their PREPARE LSN. The floor stays below such a PREPARE until
    /// the resolution is durable, or a crash that lost it would leave this
    /// log a PREPARE that replay never sees again, and no outcome.
    resolving: BTreeMap<Lsn, Lsn>,
    /// Transactions whose entry is in the meta tree.
    stored: HashSet<TxnId>,
}

impl PreparedSet {
    fn add(&mut self, txid: TxnId, p: PreparedTxn) {
        if let Some(old) = self.txns.get(&txid) {
            self.logged.remove(&old.lsn);
        }
        for op in &p.ops {
            let (t, k) = op.target();
            self.locks.insert((t, k.to_vec()), txid);
        }
        if p.lsn > 0 {
            self.logged.insert(p.lsn);
        }
        self.txns.insert(txid, p);
    }

    /// Drops `txid`, resolved by the record at `resolved_at`, from the set;
    /// true if its entry is in the meta tree.
    fn remove(&mut self, txid: TxnId, resolved_at: Lsn) -> bool {
        if let Some(p) = self.txns.remove(&txid) {
            self.logged.remove(&p.lsn);
            if p.lsn > 0 {
                self.resolving.insert(resolved_at, p.lsn);
            }
            for op in &p.ops {
                let (t, k) = op.target();
                self.locks.remove(&(t, k.to_vec()));
            }
        }
        self.stored.remove(&txid)
    }

    /// The highest LSN at or below which every PREPARE is resolved, given
    /// that everything through `applied` is applied (and durable, but under
    /// `sync = off`), its resolution included.
    fn floor(&mut self, applied: Lsn) -> Lsn {
        self.resolving = self.resolving.split_off(&(applied + 1));
        let unresolved = self.resolving.values().copied();
        self.logged
            .first()
            .copied()
            .into_iter()
            .chain(unresolved)
            .min()
            .map_or(applied, |oldest| applied.min(oldest - 1))
    }
}

fn prepared_key(txid: TxnId) -> Vec<u8> {
    let mut k = META_PREPARED.to_vec();
    k.extend_from_slice(&txid.to_be_bytes());
    k
}

/// Guarded by the shard's write lock.
struct WriterState {
    /// Keys with a logged, not yet applied write, and that write's LSN.
    /// Entries leave only under this lock, so a writer that planned from
    /// stale data always finds the entry that made it stale.
    pending: FastMap<(TableId, Vec<u8>), Lsn>,
    /// LSN of the last record appended; ordered like its timestamp.
    last_appended: Lsn,
    /// LSN of the last catalog change appended: every read waits for it.
    last_catalog: Lsn,
}

impl WriterState {
    /// Drops `key`'s pending entry if it is still the one of the record at
    /// `lsn`, now applied (a later write may have replaced it).
    fn unpend(&mut self, key: (TableId, Vec<u8>), lsn: Lsn) {
        if let std::collections::hash_map::Entry::Occupied(e) = self.pending.entry(key) {
            if *e.get() == lsn {
                e.remove();
            }
        }
    }
}

/// The rows a read covers, so that it waits only for writes it could see.
enum ReadScope<'a> {
    /// One row, by its whole encoded primary key.
    Key { table: TableId, key: &'a [u8] },
    /// Every row of one table and of its indexes.
    Table(TableId),
    /// Everything on the shard.
    Shard,
}

/// Snapshots of running reads, and the horizon garbage collection used last.
#[derive(Default)]
struct Snapshots {
    active: BTreeMap<u64, usize>,
    horizon: u64,
}

/// Keeps a reader's snapshot registered while it reads.
struct SnapshotGuard<'a> {
    shard: &'a ShardStore,
    snapshot: u64,
}

impl Drop for SnapshotGuard<'_> {
    fn drop(&mut self) {
        let mut reg = self.shard.snapshots.lock().expect("snapshots");
        if let Some(n) = reg.active.get_mut(&self.snapshot) {
            *n -= 1;
            if *n == 0 {
                reg.active.remove(&self.snapshot);
            }
        }
    }
}

/// What [`ShardStore::log_write`] did with a write.
enum Logged {
    /// The write changes nothing.
    Nothing,
    /// Logged at `lsn`: durable and applied once `change` is; `out` is
    /// what the fragment returns then.
    Appended {
        lsn: Lsn,
        change: Change,
        out: FragmentOutput,
    },
    /// A row it writes is locked by a prepared transaction.
    Locked,
    /// A row it writes has a logged write still being applied, at this LSN.
    Applying(Lsn),
}

/// 40001 for a write to a row an in-doubt two-phase commit holds.
fn in_doubt_lock() -> StorageError {
    StorageError::SerializationFailure {
        reason: "a row locked by an in-doubt two-phase commit".into(),
    }
}

/// Transaction write sets up to this size are logged on the caller's
/// (async) thread by [`Shard::try_write`]; larger ones take long enough to
/// plan that they run where blocking is allowed.
const INLINE_WRITES: usize = 64;

/// Async writers' changes, waiting for the log to be durable through them.
type CommitQueue = DurableQueue<(Change, Arc<Signal>)>;

/// The waiting writers' signals of a batch taken from a [`CommitQueue`].
fn signals(batch: Vec<(Lsn, (Change, Arc<Signal>))>) -> impl Iterator<Item = Arc<Signal>> {
    batch.into_iter().map(|(_, (_, s))| s)
}

#[derive(Default)]
struct ApplyState {
    /// The lowest LSN not yet applied: everything below it is.
    next: Lsn,
    /// Logged changes waiting for the records before them, each with the
    /// signal of an async writer waiting for it, if any.
    ready: BTreeMap<Lsn, (Change, Option<Arc<Signal>>)>,
    /// Resolutions of prepared transactions applied ahead of `next` (see
    /// [`ShardStore::apply_resolution`]); `next` steps over them.
    ahead: BTreeSet<Lsn>,
    /// Threads asleep on `applied`. A notify costs a futex call even when
    /// no one sleeps, and most applies have no one to wake.
    sleepers: usize,
}

/// Options for opening a shard.
#[derive(Clone, Debug)]
pub struct ShardOptions {
    pub wal: WalOptions,
    /// sled page cache size in bytes.
    pub cache_bytes: u64,
    /// Bytes of rows' newest versions kept for point reads (0: none).
    pub head_cache_bytes: u64,
    /// Source of commit timestamps; one clock is shared by all shards.
    pub clock: Arc<HybridClock>,
    /// Versions younger than this stay even with no reader needing them, so
    /// a snapshot taken just before reaching the shard is still served.
    pub gc_grace: Duration,
    /// Snapshots of open transactions, shared by every shard.
    pub pins: Arc<SnapshotPins>,
    /// Bytes a streamed sort holds in memory before it spills to disk.
    pub sort_budget: usize,
    /// The coordinator's decision log, for a shard of a cluster: its
    /// prepare floor then holds until [`ShardStore::recovered`] and rises
    /// only past decisions this makes durable.
    pub decisions: Option<DecisionLog>,
    /// Bytes kept free on the shard's disk: a write is refused with 53100
    /// below it (0: never; see [`crate::space`]).
    pub disk_reserve: u64,
}

impl Default for ShardOptions {
    fn default() -> Self {
        ShardOptions {
            wal: WalOptions::default(),
            cache_bytes: 64 << 20,
            head_cache_bytes: 64 << 20,
            clock: Arc::new(HybridClock::default()),
            gc_grace: Duration::from_secs(10),
            pins: Arc::new(SnapshotPins::default()),
            sort_budget: crate::sort::DEFAULT_SORT_BUDGET,
            decisions: None,
            disk_reserve: 0,
        }
    }
}

/// Sled-backed state that the WAL is applied to.
struct Materialized {
    db: sled::Db,
    meta: sled::Tree,
    catalog: RwLock<Catalog>,
    /// The catalog's tables by id, shared: a write looks its table up
    /// without copying the definition.
    defs: RwLock<FastMap<TableId, Arc<TableDef>>>,
    trees: RwLock<FastMap<TableId, sled::Tree>>,
    /// Per tree, the LSN its applied mark held when it was opened or
    /// created: records up to it are already in the tree. Only a replay
    /// meets such records; marks are written every [`MARK_EVERY`] records,
    /// not per record, so a replay redoes the rest (every write is
    /// idempotent, and what it puts back under a newer version is garbage).
    held_through: RwLock<FastMap<TableId, Lsn>>,
    /// Largest version timestamp applied, written with the marks.
    newest: AtomicU64,
    prepared: Mutex<PreparedSet>,
    dirty: Mutex<DirtyKeys>,
    /// Each recently used row's newest version, for point reads.
    heads: HeadCache,
    /// The stamps of versions a peer wrote (see [`crate::conflict`]), by
    /// [`stamp_key`].
    stamps: sled::Tree,
    /// Concurrent versions kept as siblings, by [`sibling_key`].
    siblings: sled::Tree,
}

/// Key of the stamp of `table`'s row `key` at version `ts`: ordered by
/// row, then version.
fn stamp_key(table: TableId, key: &[u8], ts: u64) -> Vec<u8> {
    let mut k = stamp_prefix(table, key);
    k.extend_from_slice(&ts.to_be_bytes());
    k
}

/// The version timestamp a stamp key ends with.
fn stamp_version(k: &[u8]) -> Option<u64> {
    let at = k.len().checked_sub(8)?;
    Some(u64::from_be_bytes(k[at..].try_into().ok()?))
}

/// The row and version a stamp key names: (table, key, version).
pub(crate) fn split_stamp_key(k: &[u8]) -> Option<(TableId, &[u8], u64)> {
    let table = TableId::from_be_bytes(k.get(..4)?.try_into().ok()?);
    let len = u32::from_be_bytes(k.get(4..8)?.try_into().ok()?) as usize;
    let key = k.get(8..8 + len)?;
    let ts = u64::from_be_bytes(k.get(8 + len..16 + len)?.try_into().ok()?);
    Some((table, key, ts))
}

fn stamp_prefix(table: TableId, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 16);
    k.extend_from_slice(&table.to_be_bytes());
    k.extend_from_slice(&(key.len() as u32).to_be_bytes());
    k.extend_from_slice(key);
    k
}

/// Key of a sibling: its row, then the node and time that wrote it.
fn sibling_key(s: &Sibling) -> Vec<u8> {
    let mut k = stamp_prefix(s.table, &s.key);
    k.extend_from_slice(s.stamp.node.as_bytes());
    k.push(0);
    k.extend_from_slice(&s.stamp.ts.to_be_bytes());
    k
}

/// More keys than this written between two garbage collections, and the
/// next one walks every tree instead.
const MAX_DIRTY_KEYS: usize = crate::mvcc::MAX_YOUNG_KEYS;

/// Keys given a version since garbage collection last looked, by tree: only
/// they can hold new garbage, so a collection need not walk every row. Each
/// key carries the timestamp from which it can: the oldest version written
/// since, which supersedes the one before it. A collection whose horizon is
/// below that timestamp passes the key over without reading it.
struct DirtyKeys {
    trees: FastMap<TableId, FastMap<Vec<u8>, u64>>,
    len: usize,
    /// Too many keys, or a shard just opened: walk every tree but those in
    /// `walked`, which a VACUUM has walked since and whose keys are kept.
    everything: bool,
    walked: HashSet<TableId>,
}

impl DirtyKeys {
    fn new(everything: bool) -> DirtyKeys {
        DirtyKeys {
            trees: FastMap::default(),
            len: 0,
            everything,
            walked: HashSet::new(),
        }
    }

    fn add(&mut self, tree: TableId, pk: &[u8], ts: u64) {
        if self.everything && !self.walked.contains(&tree) {
            return;
        }
        let keys = self.trees.entry(tree).or_default();
        if let Some(from) = keys.get_mut(pk) {
            *from = (*from).min(ts);
            return;
        }
        keys.insert(pk.to_vec(), ts);
        self.len += 1;
        if self.len > MAX_DIRTY_KEYS {
            *self = DirtyKeys::new(true);
        }
    }

    /// The collection work that walking `whole` now takes over: their keys
    /// are forgotten, and an everything-walk no longer needs them.
    fn walking(&mut self, whole: &HashSet<TableId>, all: &HashSet<TableId>) {
        for id in whole {
            if let Some(keys) = self.trees.remove(id) {
                self.len -= keys.len();
            }
        }
        if self.everything {
            self.walked.extend(whole);
            if all.is_subset(&self.walked) {
                self.everything = false;
                self.walked.clear();
            }
        }
    }
}

/// The transactions a shard's log in `dir` commits after LSN `after`, as
/// `(txid, commit timestamp)` in log order: single-shard writes, commits
/// of prepared transactions, loads and catalog changes. A replaced
/// primary counts with this what it had that its successor lacks.
pub fn commits_after(
    dir: &Path,
    after: Lsn,
    cipher: Option<&crate::cipher::Cipher>,
) -> Result<Vec<(TxnId, u64)>> {
    let mut out = Vec::new();
    crate::wal::read_from(dir, after, cipher, |rec| {
        if matches!(
            rec.kind,
            KIND_WRITE | KIND_COMMIT_PREPARED | KIND_LOAD | KIND_CATALOG | KIND_REMOTE
        ) {
            out.push((rec.txid, rec.ts));
        }
        Ok(true)
    })?;
    Ok(out)
}

fn codec<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Codec(e.to_string())
}

fn defs_by_id(catalog: &Catalog) -> FastMap<TableId, Arc<TableDef>> {
    catalog
        .tables
        .values()
        .map(|t| (t.id, Arc::new(t.clone())))
        .collect()
}

/// The applied LSN stored under [`APPLIED_KEY`] (first 8 bytes).
fn lsn_of(v: Option<sled::IVec>) -> Lsn {
    v.and_then(|b| {
        b.get(..8)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes)
    })
    .unwrap_or(0)
}

/// The newest version timestamp stored under [`APPLIED_KEY`] (bytes 8..16).
fn ts_of(v: Option<sled::IVec>) -> u64 {
    v.and_then(|b| {
        b.get(8..16)
            .and_then(|s| s.try_into().ok())
            .map(u64::from_be_bytes)
    })
    .unwrap_or(0)
}

/// Value of [`APPLIED_KEY`]: applied LSN, then the newest version timestamp.
fn applied_value(lsn: Lsn, ts: u64) -> [u8; 16] {
    let mut v = [0u8; 16];
    v[..8].copy_from_slice(&lsn.to_be_bytes());
    v[8..].copy_from_slice(&ts.to_be_bytes());
    v
}

impl Materialized {
    fn open(path: &Path, cache_bytes: u64, head_bytes: u64) -> Result<Materialized> {
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(cache_bytes)
            .flush_every_ms(Some(1000))
            .open()?;
        let meta = db.open_tree("meta")?;
        let stamps = db.open_tree("stamps")?;
        let siblings = db.open_tree("siblings")?;
        let catalog: Catalog = match meta.get(META_CATALOG)? {
            Some(bytes) => postcard::from_bytes(&bytes).map_err(codec)?,
            None => Catalog::default(),
        };
        let mut trees = FastMap::default();
        let mut held_through = FastMap::default();
        let mut newest = 0;
        let ids = catalog
            .tables
            .values()
            .flat_map(|t| std::iter::once(t.id).chain(t.indexes.iter().map(|idx| idx.id)));
        for id in ids {
            let tree = db.open_tree(tree_name(id))?;
            let mark = tree.get(APPLIED_KEY)?;
            newest = newest.max(ts_of(mark.clone()));
            held_through.insert(id, lsn_of(mark));
            trees.insert(id, tree);
        }
        let mut prepared = PreparedSet::default();
        for item in meta.scan_prefix(META_PREPARED) {
            let (k, v) = item?;
            let txid = k
                .get(META_PREPARED.len()..)
                .and_then(|b| b.try_into().ok())
                .map(u64::from_be_bytes)
                .ok_or_else(|| StorageError::Codec("bad prepared-transaction key".into()))?;
            prepared.add(txid, postcard::from_bytes(&v).map_err(codec)?);
            prepared.stored.insert(txid);
        }
        Ok(Materialized {
            db,
            meta,
            defs: RwLock::new(defs_by_id(&catalog)),
            catalog: RwLock::new(catalog),
            trees: RwLock::new(trees),
            held_through: RwLock::new(held_through),
            newest: AtomicU64::new(newest),
            prepared: Mutex::new(prepared),
            dirty: Mutex::new(DirtyKeys::new(true)),
            heads: HeadCache::new(head_bytes),
            stamps,
            siblings,
        })
    }

    /// The last LSN any tree (or the meta tree) says it applied: records
    /// through it were durable when the marks were stored.
    fn applied_through(&self) -> Result<Lsn> {
        let mut high = lsn_of(self.meta.get(META_APPLIED)?);
        for &through in self.held_through.read().expect("held").values() {
            high = high.max(through);
        }
        Ok(high)
    }

    /// Lowest LSN every tree has applied: replay starts after it.
    fn watermark(&self) -> Result<Lsn> {
        let mut low = lsn_of(self.meta.get(META_APPLIED)?);
        for &through in self.held_through.read().expect("held").values() {
            low = low.min(through);
        }
        Ok(low)
    }

    /// Largest version timestamp applied: the marks' at open, raised by
    /// every write since.
    fn newest_version(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }

    fn tree(&self, table: TableId) -> Option<sled::Tree> {
        self.trees.read().expect("trees").get(&table).cloned()
    }

    /// The newest version of `pk` in `table`'s tree, through the cache. A
    /// table without a primary key is read from the tree: its keys end in
    /// a hidden row id that no statement can name, so no point read comes
    /// back for them, and each insert's check would otherwise cache a row
    /// (pushing out rows that are read).
    fn head(&self, table: &TableDef, tree: &sled::Tree, pk: &[u8]) -> Result<Head> {
        if table.rowid.is_some() {
            return read_head(tree, pk);
        }
        self.heads.head(table.id, pk, || read_head(tree, pk))
    }

    /// The version of `pk` visible at `snapshot`: the newest one when the
    /// snapshot covers it (the common case, answered from the cache), else
    /// a seek in the tree.
    fn visible_row(
        &self,
        table: &TableDef,
        tree: &sled::Tree,
        pk: &[u8],
        snapshot: u64,
    ) -> Result<Option<Row>> {
        let head = self.head(table, tree, pk)?;
        match &head.version {
            None => Ok(None),
            Some(v) if head.ts <= snapshot => decode_version(v),
            Some(_) => crate::mvcc::visible_at(tree, pk, snapshot),
        }
    }

    fn def(&self, table: TableId) -> Option<Arc<TableDef>> {
        self.defs.read().expect("defs").get(&table).cloned()
    }

    /// Lowers every tree's held mark to `last`, the log's end.
    fn held_through_at_most(&self, last: Lsn) {
        for through in self.held_through.write().expect("held").values_mut() {
            *through = (*through).min(last);
        }
    }

    /// The record at `lsn` is already in `table`'s tree.
    fn holds(&self, table: TableId, lsn: Lsn) -> bool {
        let held = self.held_through.read().expect("held");
        held.get(&table).is_some_and(|&through| through >= lsn)
    }

    fn apply(&self, lsn: Lsn, change: &Change) -> Result<()> {
        match change {
            Change::Write { ts, ops } => self.apply_write(lsn, *ts, ops),
            Change::Load(versions) => {
                self.apply_versions(lsn, versions.iter().map(|(ts, op)| (*ts, op)))
            }
            Change::Catalog(c) => self.apply_catalog(lsn, c),
            // Memory only (see PreparedSet); commits carry their writes.
            Change::Prepare {
                txid,
                ts,
                ops,
                participants,
            } => {
                let p = PreparedTxn {
                    ts: *ts,
                    ops: ops.clone(),
                    lsn,
                    participants: participants.clone(),
                };
                self.prepared.lock().expect("prepared").add(*txid, p);
                Ok(())
            }
            Change::CommitPrepared {
                txid,
                commit_ts,
                ops,
            } => {
                let from_set = if ops.is_empty() {
                    self.prepared
                        .lock()
                        .expect("prepared")
                        .txns
                        .get(txid)
                        .map(|p| p.ops.clone())
                } else {
                    None
                };
                self.apply_write(lsn, *commit_ts, from_set.as_deref().unwrap_or(ops))?;
                self.forget_prepared(*txid, lsn)
            }
            Change::AbortPrepared { txid } => self.forget_prepared(*txid, lsn),
            Change::Remote { ts, record } => {
                self.apply_write(lsn, *ts, &record.ops)?;
                for s in &record.stamps {
                    let at = s.at.unwrap_or(*ts);
                    let v = postcard::to_stdvec(&s.stamp).map_err(codec)?;
                    self.stamps.insert(stamp_key(s.table, &s.key, at), v)?;
                }
                for sib in &record.siblings {
                    let v = postcard::to_stdvec(sib).map_err(codec)?;
                    self.siblings.insert(sibling_key(sib), v)?;
                }
                Ok(())
            }
        }
    }

    /// The stamp of the newest version of `key` at or below `ts` that a
    /// peer wrote (or whose stamp a conflict updated), with its version.
    fn stamp_at_or_below(
        &self,
        table: TableId,
        key: &[u8],
        ts: u64,
    ) -> Result<Option<(u64, Stamp)>> {
        let prefix = stamp_prefix(table, key);
        let last = self
            .stamps
            .range(prefix.clone()..=stamp_key(table, key, ts))
            .next_back()
            .transpose()?;
        let Some((k, v)) = last else {
            return Ok(None);
        };
        let at = k
            .get(prefix.len()..)
            .and_then(|b| b.try_into().ok())
            .map(u64::from_be_bytes)
            .ok_or_else(|| StorageError::Codec("bad stamp key".into()))?;
        Ok(Some((at, postcard::from_bytes(&v).map_err(codec)?)))
    }

    /// The stamp of the version of `key` committed at `ts` (see
    /// [`crate::conflict`]): stored if a peer wrote it, else this node's,
    /// following the newest peer version before it.
    fn stamp_of(&self, me: &str, table: TableId, key: &[u8], ts: u64) -> Result<Stamp> {
        Ok(match self.stamp_at_or_below(table, key, ts)? {
            Some((at, stamp)) if at == ts => stamp,
            before => Stamp::local(me, ts, before.as_ref().map(|(_, s)| s)),
        })
    }

    /// Drops a transaction resolved by the record at `lsn` from the
    /// prepared set, and from the meta tree if an earlier version stored it
    /// there.
    fn forget_prepared(&self, txid: TxnId, lsn: Lsn) -> Result<()> {
        if self.prepared.lock().expect("prepared").remove(txid, lsn) {
            self.meta.remove(prepared_key(txid))?;
        }
        Ok(())
    }

    /// Records in the meta tree that everything through `applied` is
    /// applied, and the prepare `floor`. Replay on open starts at the lower
    /// of the floor and the watermark, so every PREPARE still unresolved is
    /// replayed. Both only ever move up, and sled recovers a prefix of its
    /// writes, so a crash leaves older values that are still correct.
    fn mark_applied(&self, applied: Lsn, floor: Lsn) -> Result<()> {
        let mark = applied_value(applied, self.newest_version());
        for tree in self.trees.read().expect("trees").values() {
            tree.insert(APPLIED_KEY, &mark)?;
        }
        self.meta.insert(META_PREPARE_FLOOR, &floor.to_be_bytes())?;
        self.meta.insert(META_APPLIED, &applied.to_be_bytes())?;
        Ok(())
    }

    /// Where replay on open must start: after `watermark`, or earlier if a
    /// PREPARE below it may be unresolved. A meta tree without a floor
    /// comes from a version that stored the prepared set in it.
    fn replay_after(&self, watermark: Lsn) -> Result<Lsn> {
        Ok(match self.meta.get(META_PREPARE_FLOOR)? {
            Some(v) => watermark.min(lsn_of(Some(v))),
            None => watermark,
        })
    }

    fn apply_write(&self, lsn: Lsn, ts: u64, ops: &[WriteOp]) -> Result<()> {
        self.apply_versions(lsn, ops.iter().map(|op| (ts, op)))
    }

    /// Writes each op as a version at its own timestamp (one per record for
    /// ordinary writes; a restore's loaded rows keep their original ones).
    ///
    /// Plain inserts, not a sled batch: every batch makes sled write and
    /// sync its log buffer twice, which cost more than the whole commit.
    /// Atomicity is not needed from sled. Each write is idempotent and the
    /// applied marks come after it; sled recovers a prefix of its log, so
    /// a crash leaves the marks behind and replay redoes the record.
    /// Readers wait until the record's keys leave `pending` (or the
    /// prepared set), which happens once the whole record is applied.
    fn apply_versions<'a>(
        &self,
        lsn: Lsn,
        versions: impl IntoIterator<Item = (u64, &'a WriteOp)>,
    ) -> Result<()> {
        let mut by_table: BTreeMap<TableId, Vec<(u64, &WriteOp)>> = BTreeMap::new();
        for (ts, op) in versions {
            by_table.entry(op.target().0).or_default().push((ts, op));
        }
        for (table, ops) in by_table {
            // A table dropped later in the log: its writes no longer matter.
            let Some(tree) = self.tree(table) else {
                continue;
            };
            if self.holds(table, lsn) {
                continue;
            }
            let newest = ops.iter().map(|(ts, _)| *ts).max().unwrap_or(0);
            self.apply_index_writes(lsn, table, &tree, &ops)?;
            for &(ts, op) in &ops {
                let version = sled::IVec::from(match op {
                    WriteOp::Put { row, .. } => encode_version(Some(row))?,
                    WriteOp::Delete { .. } => encode_version(None)?,
                });
                let pk = op.target().1;
                tree.insert(versioned_key(pk, ts), version.clone())?;
                self.heads.wrote(table, pk, ts, &version);
            }
            self.newest.fetch_max(newest, Ordering::AcqRel);
            let mut dirty = self.dirty.lock().expect("dirty");
            for (ts, op) in &ops {
                dirty.add(table, op.target().1, *ts);
            }
        }
        Ok(())
    }

    /// Writes the entries of `table`'s secondary indexes for `ops`. Each
    /// index tree is skipped on its own: one built after the record (its
    /// backfill read the rows) already has it.
    fn apply_index_writes(
        &self,
        lsn: Lsn,
        table: TableId,
        tree: &sled::Tree,
        ops: &[(u64, &WriteOp)],
    ) -> Result<()> {
        let Some(def) = self.def(table) else {
            return Ok(());
        };
        for idx in &def.indexes {
            let Some(itree) = self.tree(idx.id) else {
                continue;
            };
            if self.holds(idx.id, lsn) {
                continue;
            }
            for &(ts, op) in ops {
                let (_, pk) = op.target();
                let old = crate::index::row_before(tree, pk, ts)?;
                let new = match op {
                    WriteOp::Put { row, .. } => Some(row),
                    WriteOp::Delete { .. } => None,
                };
                for (k, v) in crate::index::changes(idx, pk, old.as_ref(), new, ts)? {
                    if let Some((entry, _)) = crate::keycodec::split_versioned(&k) {
                        self.dirty.lock().expect("dirty").add(idx.id, entry, ts);
                    }
                    itree.insert(k, v)?;
                }
            }
        }
        Ok(())
    }

    fn apply_catalog(&self, lsn: Lsn, catalog: &Catalog) -> Result<()> {
        if lsn_of(self.meta.get(META_APPLIED)?) >= lsn {
            return Ok(());
        }
        let mut trees = self.trees.write().expect("trees");
        let mut held = self.held_through.write().expect("held");
        let live: HashSet<TableId> = catalog
            .tables
            .values()
            .flat_map(|t| std::iter::once(t.id).chain(t.indexes.iter().map(|i| i.id)))
            .collect();
        // Dropped, truncated and rewritten tables' rows must not hold memory,
        // nor crowd out the copies a rewrite is about to cache.
        self.heads.retain(|id| live.contains(&id));
        for t in catalog.tables.values() {
            if trees.contains_key(&t.id) {
                continue;
            }
            let tree = self.db.open_tree(tree_name(t.id))?;
            // A rewritten table's tree is complete only once its applied
            // LSN is set: a crash midway redoes the copy.
            if tree.get(APPLIED_KEY)?.is_none() {
                if let Some(from) = t.rewritten_from.and_then(|id| trees.get(&id)) {
                    rekey(from, &tree, t, &self.heads)?;
                }
                tree.insert(APPLIED_KEY, &applied_value(lsn, 0))?;
            }
            held.insert(t.id, lsn_of(tree.get(APPLIED_KEY)?));
            trees.insert(t.id, tree);
        }
        // New indexes are built from the versions already stored; the
        // tree's applied LSN is set only once the build is complete.
        for t in catalog.tables.values() {
            for idx in &t.indexes {
                if trees.contains_key(&idx.id) {
                    continue;
                }
                let itree = self.db.open_tree(tree_name(idx.id))?;
                if lsn_of(itree.get(APPLIED_KEY)?) < lsn {
                    if let Some(table_tree) = trees.get(&t.id) {
                        crate::index::backfill(table_tree, &itree, idx)?;
                    }
                    itree.insert(APPLIED_KEY, &applied_value(lsn, 0))?;
                }
                held.insert(idx.id, lsn_of(itree.get(APPLIED_KEY)?));
                trees.insert(idx.id, itree);
            }
        }
        let dropped: Vec<TableId> = trees
            .keys()
            .copied()
            .filter(|id| !live.contains(id))
            .collect();
        for id in dropped {
            trees.remove(&id);
            held.remove(&id);
            self.db.drop_tree(tree_name(id))?;
        }
        let mut batch = sled::Batch::default();
        batch.insert(META_CATALOG, postcard::to_stdvec(catalog).map_err(codec)?);
        batch.insert(META_APPLIED, &lsn.to_be_bytes());
        self.meta.apply_batch(batch)?;
        *self.defs.write().expect("defs") = defs_by_id(catalog);
        *self.catalog.write().expect("catalog") = catalog.clone();
        // Again for any row a reader cached meanwhile from a table now gone.
        self.heads.retain(|id| live.contains(&id));
        Ok(())
    }
}

/// Copies the newest version of every live row of `from` into `to`, keyed
/// by `def`'s primary key, keeping its commit timestamp; dropped columns
/// (the old row id among them) are cleared. Older versions are not copied:
/// like PostgreSQL's table rewrites, this is not MVCC-safe for snapshots
/// taken before it. The copies go into the head cache too (unless the new
/// table is keyless, see `Materialized::head`): nothing else can write the
/// new table before its catalog is applied.
fn rekey(from: &sled::Tree, to: &sled::Tree, def: &TableDef, heads: &HeadCache) -> Result<()> {
    let bad = || StorageError::Codec("bad stored version".into());
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    for item in crate::mvcc::visible_versions(from.range(&[0x01u8][..]..), LATEST) {
        let (k, v) = item?;
        let (_, ts) = crate::keycodec::split_versioned(&k).ok_or_else(bad)?;
        let mut row = crate::mvcc::decode_version(&v)?.ok_or_else(bad)?;
        def.complete_row(&mut row);
        for (value, c) in row.iter_mut().zip(&def.columns) {
            if c.dropped {
                *value = Value::Null;
            }
        }
        let pk: Vec<Value> = def.primary_key.iter().map(|&i| row[i].clone()).collect();
        let pk = encode_key(&pk);
        let version = sled::IVec::from(encode_version(Some(&row))?);
        batch.insert(versioned_key(&pk, ts), version.clone());
        if def.rowid.is_none() {
            heads.prime(
                def.id,
                &pk,
                Head {
                    ts,
                    version: Some(version),
                },
            );
        }
        pending += 1;
        if pending == 10_000 {
            to.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    to.apply_batch(batch)?;
    Ok(())
}

/// The values of `first_key_column IN (constants)` among the filter's
/// top-level conjuncts, sorted by their key encoding and deduplicated, with
/// that conjunct (true of every row the keys find).
fn key_in_list<'a>(def: &TableDef, filter: Option<&'a Expr>) -> Option<(Vec<Value>, &'a Expr)> {
    let col = *def.primary_key.first()?;
    let ty = def.columns[col].ty;
    let mut stack = vec![filter?];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Binary(crate::expr::BinaryOp::And, l, r) => {
                stack.push(l);
                stack.push(r);
            }
            found @ Expr::In {
                expr,
                list,
                negated: false,
            } if matches!(expr.as_ref(), Expr::Column(c) if *c == col) => {
                let mut keys = Vec::with_capacity(list.len());
                for item in list {
                    match item {
                        Expr::Literal(v) if v.is_null() => {}
                        Expr::Literal(v) => keys.push(crate::bounds::exact(v, &ty)?),
                        _ => return None,
                    }
                }
                keys.sort_by_cached_key(|k| encode_key(std::slice::from_ref(k)));
                keys.dedup_by(|a, b| matches!(a.sql_cmp(b), Ok(Some(std::cmp::Ordering::Equal))));
                return Some((keys, found));
            }
            _ => {}
        }
    }
    None
}

/// `filter` without the conjunct `skip` (found by address); `None` when
/// nothing is left. Rows known to pass `skip` need only this residue.
fn without_conjunct(filter: &Expr, skip: &Expr) -> Option<Expr> {
    if std::ptr::eq(filter, skip) {
        return None;
    }
    match filter {
        Expr::Binary(crate::expr::BinaryOp::And, l, r) => {
            match (without_conjunct(l, skip), without_conjunct(r, skip)) {
                (Some(l), Some(r)) => Some(Expr::binary(crate::expr::BinaryOp::And, l, r)),
                (one, other) => one.or(other),
            }
        }
        other => Some(other.clone()),
    }
}

/// A scan's output row: `projection` over `row`, or `row` itself when there
/// is none.
fn project(projection: &[Expr], row: Row) -> Result<Row> {
    if projection.is_empty() {
        return Ok(row);
    }
    Ok(projection
        .iter()
        .map(|e| e.eval(&row))
        .collect::<std::result::Result<_, _>>()?)
}

/// `filter` with its long constant IN lists sorted, when it has any: what a
/// pass over many rows evaluates (see [`Expr::InSorted`]).
fn sorted_lists(filter: Option<&Expr>) -> Option<Expr> {
    filter
        .filter(|e| e.has_long_lists())
        .map(|e| e.clone().with_sorted_lists())
}

fn tree_name(id: TableId) -> String {
    format!("t{id}")
}

fn decode_change(rec: &Record) -> Result<Change> {
    match rec.kind {
        KIND_WRITE => Ok(Change::Write {
            ts: rec.ts,
            ops: postcard::from_bytes(&rec.payload).map_err(codec)?,
        }),
        KIND_CATALOG => Ok(Change::Catalog(
            postcard::from_bytes(&rec.payload).map_err(codec)?,
        )),
        KIND_PREPARE => Ok(Change::Prepare {
            txid: rec.txid,
            ts: rec.ts,
            ops: postcard::from_bytes(&rec.payload).map_err(codec)?,
            participants: Vec::new(),
        }),
        KIND_PREPARE_ALL => prepare_change(rec.txid, rec.ts, &rec.payload),
        KIND_COMMIT_PREPARED => Ok(Change::CommitPrepared {
            txid: rec.txid,
            commit_ts: rec.ts,
            // Records written before the ops were carried have no payload.
            ops: if rec.payload.is_empty() {
                Vec::new()
            } else {
                postcard::from_bytes(&rec.payload).map_err(codec)?
            },
        }),
        KIND_ABORT_PREPARED => Ok(Change::AbortPrepared { txid: rec.txid }),
        KIND_LOAD => Ok(Change::Load(
            postcard::from_bytes(&rec.payload).map_err(codec)?,
        )),
        KIND_REMOTE => Ok(Change::Remote {
            ts: rec.ts,
            record: postcard::from_bytes(&rec.payload).map_err(codec)?,
        }),
        k => Err(StorageError::Codec(format!(
            "unknown WAL record kind {k} at LSN {}",
            rec.lsn
        ))),
    }
}

/// One shard: WAL, sled state and the write path between them.
pub struct ShardStore {
    id: ShardId,
    dir: PathBuf,
    state: Materialized,
    wal: Wal,
    writer: Mutex<WriterState>,
    clock: Arc<HybridClock>,
    snapshots: Mutex<Snapshots>,
    gc_grace: Duration,
    pins: Arc<SnapshotPins>,
    apply: Mutex<ApplyState>,
    applied: Condvar,
    failed: AtomicBool,
    sort_budget: usize,
    /// One garbage collection at a time: the background pass or a VACUUM.
    collecting: Mutex<()>,
    /// Served by the committer thread (see [`ShardStore::spawn_committer`]).
    committer: Arc<CommitQueue>,
    /// True once async writers can be served: the committer runs, or the
    /// log is never synced.
    committing: AtomicBool,
    /// The coordinator's log, when this shard is one of a cluster's.
    decisions: Option<DecisionLog>,
    /// Outcomes of two-phase transactions the open replayed, kept until
    /// recovery ends (see [`ShardStore::txn_status`]).
    recovering: Mutex<Option<HashMap<TxnId, Option<Timestamp>>>>,
    /// The prepare floor last written.
    floor: AtomicU64,
    /// Free space kept on the shard's disk.
    space: crate::space::Space,
}

impl ShardStore {
    /// Creates the store (`dir/db`) of a new copy of a shard from a
    /// checkpoint: its `catalog` and, through `load`, its rows, each
    /// version at its own commit timestamp. The caller provides the log
    /// (`dir/wal`), which must continue the checkpoint's source log after
    /// `after` (the cut's `wal_after`), LSN for LSN; an open replays it from
    /// there. Writes in it that the checkpoint already holds are put back
    /// as they were (replay is idempotent). No transaction in doubt at the
    /// cut has its PREPARE at or below `after`: the checkpoint's read waited
    /// for every one prepared before its snapshot, so a commit after the cut
    /// is a record after `after`, carrying its writes. Rows go in a batch at
    /// a time, so memory stays bounded.
    pub(crate) fn create_base(
        dir: &Path,
        catalog: &Catalog,
        after: Lsn,
        load: impl FnOnce(&mut crate::restore::RowSink<'_>) -> Result<()>,
        load_peer: impl FnOnce(&mut crate::restore::PeerSink<'_>) -> Result<()>,
    ) -> Result<()> {
        let db_path = dir.join("db");
        if db_path.exists() {
            return Err(StorageError::Codec(format!(
                "{} already holds a store",
                dir.display()
            )));
        }
        let opts = ShardOptions::default();
        let state = Materialized::open(&db_path, opts.cache_bytes, opts.head_cache_bytes)?;
        {
            let mut trees = state.trees.write().expect("trees");
            let mut held = state.held_through.write().expect("held");
            let ids = catalog
                .tables
                .values()
                .flat_map(|t| std::iter::once(t.id).chain(t.indexes.iter().map(|i| i.id)));
            for id in ids {
                // Its applied mark is written once the rows are in.
                let tree = state.db.open_tree(tree_name(id))?;
                held.insert(id, after);
                trees.insert(id, tree);
            }
        }
        state
            .meta
            .insert(META_CATALOG, postcard::to_stdvec(catalog).map_err(codec)?)?;
        *state.defs.write().expect("defs") = defs_by_id(catalog);
        *state.catalog.write().expect("catalog") = catalog.clone();
        // Loaded as if by the record after `after`: no tree holds it yet.
        load(&mut |batch| state.apply_versions(after + 1, batch.iter().map(|(ts, op)| (*ts, op))))?;
        load_peer(&mut |kind, k, v| {
            let tree = match kind {
                "stamps" => &state.stamps,
                _ => &state.siblings,
            };
            tree.insert(k, v)?;
            Ok(())
        })?;
        state.mark_applied(after, after)?;
        state.db.flush()?;
        Ok(())
    }

    /// Opens the shard in `dir`, replaying its WAL into sled.
    pub fn open(id: ShardId, dir: &Path, opts: ShardOptions) -> Result<ShardStore> {
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let db_path = dir.join("db");
        // sled is a cache of the WAL: one it cannot open (an error, or one
        // of its panics on a damaged file) is rebuilt from the whole log.
        let opened = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            Materialized::open(&db_path, opts.cache_bytes, opts.head_cache_bytes)
        }));
        let (state, damaged) = match opened {
            Ok(Ok(s)) => (s, false),
            // Not damage: a full disk, a permission, too many open files
            // (a file cut short or holding garbage is damage).
            Ok(Err(StorageError::Sled(sled::Error::Io(io))))
                if !matches!(
                    io.kind(),
                    std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::InvalidData
                ) =>
            {
                return Err(StorageError::Sled(sled::Error::Io(io)))
            }
            failed => {
                let why = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => "sled panicked opening it".to_string(),
                };
                // Rebuilding needs the whole log; recycled segments are in
                // an archive only.
                let segs = crate::wal::list_segments(&dir.join("wal")).unwrap_or_default();
                if let Some((first, _)) = segs.first().filter(|(f, _)| *f > 1) {
                    return Err(StorageError::Unavailable {
                        shard: id,
                        reason: format!(
                            "its store is damaged ({why}) and its WAL before LSN {first} was recycled, so it cannot be rebuilt here: restore the data directory from an archive (fortress restore --from URL)"
                        ),
                    });
                }
                let aside = dir.join("db.damaged");
                tracing::error!(shard = id, error = %why,
                    "the shard's store is damaged; rebuilding it from the WAL");
                if aside.exists() {
                    std::fs::remove_dir_all(&aside).map_err(|e| StorageError::io(&aside, e))?;
                }
                std::fs::rename(&db_path, &aside).map_err(|e| StorageError::io(&db_path, e))?;
                let state = Materialized::open(&db_path, opts.cache_bytes, opts.head_cache_bytes)?;
                (state, true)
            }
        };
        let start = state.replay_after(state.watermark()?)?;
        let wal_opts = WalOptions {
            known_durable: match opts.wal.sync {
                // Nothing is ever synced: marks may pass what a crash kept.
                SyncMode::Off => 0,
                _ => state.applied_through()?,
            },
            ..opts.wal.clone()
        };
        let mut replayed = 0u64;
        let clock = opts.clock.clone();
        let mut newest = 0u64;
        let mut outcomes = HashMap::new();
        let wal = Wal::open(&dir.join("wal"), wal_opts, start, |rec| {
            replayed += 1;
            newest = newest.max(rec.ts);
            let change = decode_change(rec)?;
            match &change {
                Change::CommitPrepared {
                    txid, commit_ts, ..
                } => {
                    outcomes.insert(*txid, Some(Timestamp(*commit_ts)));
                }
                Change::AbortPrepared { txid } => {
                    outcomes.insert(*txid, None);
                }
                _ => {}
            }
            state.apply(rec.lsn, &change)
        })?;
        // Commit timestamps never go backwards across a restart, even if the
        // wall clock did: the newest applied version also bounds the clock.
        clock.observe_own(Timestamp(newest.max(state.newest_version())));
        let next = wal.last_lsn() + 1;
        // A tree marked past the log's end (a tail lost after its marks
        // were stored) holds none of the records that will take those LSNs.
        state.held_through_at_most(next - 1);
        // Until recovery is over (see `recovered`) the floor stays where
        // this replay started, when a coordinator's log decides with it.
        let floor = match opts.decisions {
            Some(_) => start,
            None => state.prepared.lock().expect("prepared").floor(next - 1),
        };
        state.mark_applied(next - 1, floor)?;
        // Rebuilt whole: the damaged copy holds nothing the log does not
        // (nor does one that a rebuild cut short by a crash left).
        let aside = dir.join("db.damaged");
        if aside.exists() {
            std::fs::remove_dir_all(&aside).map_err(|e| StorageError::io(&aside, e))?;
        }
        if damaged {
            tracing::warn!(
                shard = id,
                replayed,
                "the shard's store was rebuilt from its WAL"
            );
        }
        tracing::info!(shard = id, replayed, last_lsn = next - 1, "shard open");
        Ok(ShardStore {
            id,
            dir: dir.to_path_buf(),
            state,
            wal,
            writer: Mutex::new(WriterState {
                pending: FastMap::default(),
                last_appended: next - 1,
                last_catalog: 0,
            }),
            snapshots: Mutex::new(Snapshots::default()),
            gc_grace: opts.gc_grace,
            pins: opts.pins.clone(),
            clock,
            apply: Mutex::new(ApplyState {
                next,
                ..ApplyState::default()
            }),
            applied: Condvar::new(),
            failed: AtomicBool::new(false),
            sort_budget: opts.sort_budget,
            collecting: Mutex::new(()),
            committer: Arc::new(CommitQueue::default()),
            committing: AtomicBool::new(false),
            decisions: opts.decisions,
            recovering: Mutex::new(Some(outcomes)),
            floor: AtomicU64::new(floor),
            space: crate::space::Space::new(dir, opts.disk_reserve),
        })
    }

    /// What this shard knows of two-phase transaction `txid`: prepared and
    /// undecided, or resolved by a record the open replayed (until
    /// [`ShardStore::recovered`]), or nothing.
    pub fn txn_status(&self, txid: TxnId) -> TxnStatus {
        if let Some(p) = self
            .state
            .prepared
            .lock()
            .expect("prepared")
            .txns
            .get(&txid)
        {
            return TxnStatus::Prepared {
                ts: Timestamp(p.ts),
                participants: p.participants.clone(),
            };
        }
        let recovering = self.recovering.lock().expect("recovering");
        match recovering.as_ref().and_then(|o| o.get(&txid)) {
            Some(Some(ts)) => TxnStatus::Committed(*ts),
            Some(None) => TxnStatus::Aborted,
            None => TxnStatus::Unknown,
        }
    }

    /// The oldest timestamp of a transaction prepared here and undecided: a
    /// standby reads below it, so a commit whose record has reached one
    /// participant's copy and not yet another's stays invisible on both.
    pub fn oldest_prepared_ts(&self) -> Option<Timestamp> {
        let prepared = self.state.prepared.lock().expect("prepared");
        prepared.txns.values().map(|p| Timestamp(p.ts)).min()
    }

    /// True if this shard's log holds a record of `txid` at `lsn`: whether
    /// a vote the coordinator logged (see [`crate::LoggedVote`]) is still
    /// here, or was lost with a tail the crash kept from the disk.
    pub fn holds_record(&self, lsn: Lsn, txid: TxnId) -> Result<bool> {
        if lsn == 0 || lsn > self.wal.last_lsn() {
            return Ok(false);
        }
        let mut held = false;
        let cipher = self.wal.cipher().map(|c| &**c);
        self.wal.write_unwritten()?;
        crate::wal::read_from(&self.dir.join("wal"), lsn - 1, cipher, |rec| {
            held = rec.lsn == lsn && rec.txid == txid;
            Ok(false)
        })?;
        Ok(held)
    }

    /// Logs again, durably, a PREPARE of `txid` this shard voted with and
    /// lost, from the `record` the coordinator logged, and locks its keys:
    /// recovery then resolves it like any transaction left prepared.
    pub fn restore_vote(&self, txid: TxnId, ts: Timestamp, record: &[u8]) -> Result<()> {
        let change = prepare_change(txid, ts.0, record)?;
        let mut w = self.writer.lock().expect("write lock");
        let lsn = self.wal.append(txid, ts.0, KIND_PREPARE_ALL, record)?;
        w.last_appended = lsn;
        drop(w);
        self.commit(lsn, change)
    }

    /// Ends recovery: every transaction a crash left prepared has its
    /// decision logged, so the prepare floor may rise past them again.
    pub fn recovered(&self) {
        *self.recovering.lock().expect("recovering") = None;
    }

    /// Writes the applied marks through `applied`. The prepare floor rises
    /// past a resolved transaction only once the coordinator's decisions
    /// are durable: a restart that no longer replays this shard's outcome
    /// then finds it in the coordinator's log.
    fn mark_applied(&self, applied: Lsn) -> Result<()> {
        // Records applied ahead of their fsync (PREPAREs whose vote the
        // coordinator logs, resolutions) may still be lost with the log's
        // tail: a mark past the durable end would then cover the LSNs the
        // next records reuse, and replay would skip them.
        let applied = match self.wal.sync_mode() {
            SyncMode::Off => applied,
            _ => applied.min(self.wal.durable_lsn()),
        };
        let want = self.state.prepared.lock().expect("prepared").floor(applied);
        let held = self.floor.load(Ordering::Acquire);
        let floor = if want <= held || self.may_raise_floor() {
            want
        } else {
            held
        };
        self.state.mark_applied(applied, floor)?;
        self.floor.store(floor, Ordering::Release);
        Ok(())
    }

    fn may_raise_floor(&self) -> bool {
        let Some(log) = &self.decisions else {
            return true;
        };
        if self.recovering.lock().expect("recovering").is_some() {
            return false;
        }
        match (log.0)() {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(shard = self.id, error = %e, "the coordinator's log did not sync; the prepare floor stays");
                false
            }
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The row (head) cache's lookups answered from memory, those that read
    /// the tree, and the bytes it holds.
    pub fn row_cache_stats(&self) -> (u64, u64, usize) {
        let (hits, misses) = self.state.heads.hits_and_misses();
        (hits, misses, self.state.heads.bytes())
    }

    /// Whether the shard takes writes: an error says why not (a failed
    /// write or WAL, which a restart recovers from).
    pub fn health(&self) -> Result<()> {
        self.check_failed()?;
        self.wal.check_failed()
    }

    /// The WAL's bytes appended and fdatasyncs made since the shard opened.
    pub fn wal_stats(&self) -> (u64, u64) {
        (self.wal.bytes_appended(), self.wal.sync_count())
    }

    /// The last LSN a restart no longer needs from this log: every record
    /// through it is applied to the store and flushed, and no PREPARE at
    /// or below it is unresolved. Segments wholly at or below it may go
    /// once archived. Flushes the store.
    pub fn flushed_through(&self) -> Result<Lsn> {
        self.flush()?;
        // Read before the flush that makes it durable: the marks only rise,
        // so what a crash leaves is at least this. As an open computes it,
        // from the marks stored in the meta tree and every tree (the
        // in-memory held marks are the ones the open read).
        let mut applied = lsn_of(self.state.meta.get(META_APPLIED)?);
        for tree in self.state.trees.read().expect("trees").values() {
            applied = applied.min(lsn_of(tree.get(APPLIED_KEY)?));
        }
        let start = self.state.replay_after(applied)?;
        self.state.db.flush()?;
        Ok(start)
    }

    /// Every log's end at one instant, and a clock reading from that
    /// instant: each shard's writer lock is held (in `stores` order) while
    /// they are read. A write takes its timestamp and is logged under its
    /// shard's writer lock, so every write or PREPARE logged before the
    /// instant is at or below its log's end and older than the time, and
    /// every one after is above it and newer. Copies of the logs through
    /// these ends are a consistent cut of the cluster.
    ///
    /// The locks are tried, not waited for, while a writer holds one (a
    /// long statement, a rotation's fsync): waiting for one while holding
    /// the others would stop every shard's writers behind the slowest.
    pub fn fence(stores: &[Arc<ShardStore>]) -> (Vec<Lsn>, Timestamp) {
        let mut tries = 0u32;
        let guards: Vec<_> = loop {
            let taken: Vec<_> = stores
                .iter()
                .map_while(|s| match s.writer.try_lock() {
                    Ok(g) => Some(g),
                    Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                    Err(std::sync::TryLockError::WouldBlock) => None,
                })
                .collect();
            if taken.len() == stores.len() {
                break taken;
            }
            drop(taken);
            tries += 1;
            if tries > 2000 {
                // Busy for seconds: queue for the locks after all.
                break stores
                    .iter()
                    .map(|s| s.writer.lock().unwrap_or_else(|p| p.into_inner()))
                    .collect();
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        };
        let ends = stores.iter().map(|s| s.wal.last_lsn()).collect();
        let now = stores.first().map_or(Timestamp(0), |s| s.clock.now());
        drop(guards);
        (ends, now)
    }

    /// Takes in records shipped from a primary's copy of this shard's log
    /// (their encoded bytes, the LSNs following this log's end), logs them
    /// byte for byte, makes them durable and applies them as a replay
    /// would: for a standby, which takes no writes of its own. Returns the
    /// last LSN. Records that do not follow on, or do not decode, are
    /// refused whole.
    pub fn follow(&self, bytes: &[u8]) -> Result<Lsn> {
        let last = self.follow_log(bytes)?;
        self.follow_apply()?;
        Ok(last)
    }

    /// The first half of [`ShardStore::follow`]: logs the records, makes
    /// them durable (a restart would replay them) and queues them for
    /// applying; returns the last LSN. Readers of the rows they write wait
    /// until they are applied, by [`ShardStore::follow_apply`] (this
    /// round's or a later one's).
    pub fn follow_log(&self, bytes: &[u8]) -> Result<Lsn> {
        self.check_failed()?;
        let cipher = self.wal.cipher().map(|c| &**c);
        let mut changes = Vec::new();
        for rec in crate::wal::decode_shipped(bytes, cipher, &self.dir)? {
            if matches!(
                rec.kind,
                KIND_WRITE | KIND_PREPARE | KIND_PREPARE_ALL | KIND_REMOTE
            ) {
                self.clock.observe_own(Timestamp(rec.ts));
            }
            changes.push((rec.lsn, decode_change(&rec)?));
        }
        let last = {
            let _w = self.writer.lock().expect("write lock");
            self.wal.append_encoded(bytes)?
        };
        self.wal.wait_durable(last)?;
        // Readers wait for these records only once they are sure to be
        // applied: a failed sync leaves them out, and the standby's check
        // that every logged record is applied (`applied_lsn`) stops it.
        let mut st = self.apply.lock().expect("apply");
        for (lsn, change) in changes {
            st.ready.insert(lsn, (change, None));
        }
        drop(st);
        let mut w = self.writer.lock().expect("write lock");
        w.last_appended = w.last_appended.max(last);
        Ok(last)
    }

    /// The second half of [`ShardStore::follow`]: applies every record
    /// [`ShardStore::follow_log`] queued, in order.
    pub fn follow_apply(&self) -> Result<()> {
        self.check_failed()?;
        let mut st = self.apply.lock().expect("apply");
        self.apply_ready(&mut st)
    }

    /// The last LSN applied: everything at or below it is.
    pub fn applied_lsn(&self) -> Lsn {
        self.apply.lock().expect("apply").next.saturating_sub(1)
    }

    /// The version of this shard's catalog (cheaper than
    /// [`Shard::catalog`], which copies it).
    pub fn catalog_version(&self) -> u64 {
        self.state.catalog.read().expect("catalog").version
    }

    /// This shard's log, for readers that ship it (see [`crate::tail`]).
    pub fn log(&self) -> &Wal {
        &self.wal
    }

    /// Last LSN in this shard's log.
    pub fn last_lsn(&self) -> Lsn {
        self.wal.last_lsn()
    }

    /// Flushes sled so the next start replays less. Not needed for durability.
    pub fn flush(&self) -> Result<()> {
        // Marks go no further than the durable log (see `mark_applied`).
        self.wal.wait_durable(self.wal.last_lsn())?;
        {
            let st = self.apply.lock().expect("apply");
            self.mark_applied(st.next - 1)?;
        }
        self.state.db.flush()?;
        Ok(())
    }

    fn check_failed(&self) -> Result<()> {
        if self.failed.load(Ordering::Acquire) {
            return Err(StorageError::Unavailable {
                shard: self.id,
                reason: "an earlier write failed; restart the server to recover".into(),
            });
        }
        Ok(())
    }

    fn table(&self, id: TableId) -> Result<Arc<TableDef>> {
        self.state
            .def(id)
            .ok_or_else(|| StorageError::UnknownTable(format!("table #{id}")))
    }

    /// The encoded primary key when `prefix` names a whole one.
    fn point_key(&self, table: TableId, prefix: &[Value]) -> Option<Vec<u8>> {
        let catalog = self.state.catalog.read().expect("catalog");
        let whole = catalog.by_id(table)?.primary_key.len() == prefix.len();
        whole.then(|| encode_key(prefix))
    }

    /// Visits every row of `table` under `prefix` as of `snapshot`.
    fn for_each_row(
        &self,
        table: TableId,
        prefix: &[Value],
        snapshot: u64,
        mut f: impl FnMut(&[u8], Row) -> Result<bool>,
    ) -> Result<()> {
        let def = self.table(table)?;
        let tree = self
            .state
            .tree(table)
            .ok_or_else(|| StorageError::UnknownTable(def.name.clone()))?;
        if prefix.len() == def.primary_key.len() {
            let pk = encode_key(prefix);
            if let Some(mut row) = self.state.visible_row(&def, &tree, &pk, snapshot)? {
                def.complete_row(&mut row);
                f(&pk, row)?;
            }
            return Ok(());
        }
        let iter = if prefix.is_empty() {
            tree.range(&[0x01u8][..]..)
        } else {
            tree.scan_prefix(encode_key(prefix))
        };
        for item in visible(iter, snapshot) {
            let (pk, mut row) = item?;
            def.complete_row(&mut row);
            if !f(&pk, row)? {
                break;
            }
        }
        Ok(())
    }

    /// Calls `f` on the rows visible at `snapshot` that the index use finds
    /// (equal index columns, or the first column in a range), read from
    /// the table tree.
    fn for_each_indexed_row(
        &self,
        def: &TableDef,
        how: &crate::index::IndexUse<'_>,
        snapshot: u64,
        mut f: impl FnMut(Row) -> Result<bool>,
    ) -> Result<()> {
        use crate::index::{entry_pk, entry_range, IndexUse};
        let idx = how.index();
        let (Some(itree), Some(tree)) = (self.state.tree(idx.id), self.state.tree(def.id)) else {
            return Err(StorageError::UnknownTable(def.name.clone()));
        };
        let entries = match how {
            IndexUse::Lookup(_, vals) => itree.scan_prefix(encode_key(vals)),
            IndexUse::Range(_, bounds) => itree.range(entry_range(bounds)),
        };
        for item in visible(entries, snapshot) {
            let (entry, _) = item?;
            let pk = entry_pk(&entry, idx.columns.len())
                .ok_or_else(|| StorageError::Codec(format!("bad entry in index {}", idx.name)))?;
            let Some(found) = visible(tree.scan_prefix(pk), snapshot).next() else {
                continue;
            };
            let (found_pk, mut row) = found?;
            if found_pk != pk {
                continue;
            }
            def.complete_row(&mut row);
            if !f(row)? {
                break;
            }
        }
        Ok(())
    }

    /// The LSN a read over `scope` must see applied first: the newest
    /// logged write to a row it covers, or any catalog change in flight.
    fn read_barrier(&self, scope: &ReadScope<'_>) -> Lsn {
        let w = self.writer.lock().expect("write lock");
        let rows = match scope {
            ReadScope::Shard => return w.last_appended,
            ReadScope::Key { table, key } => w.pending.get(&(*table, key.to_vec())).copied(),
            ReadScope::Table(t) => w
                .pending
                .iter()
                .filter(|((table, _), _)| table == t)
                .map(|(_, lsn)| *lsn)
                .max(),
        };
        rows.unwrap_or(0).max(w.last_catalog)
    }

    /// True if a read at `snapshot` over `scope` would find every write it
    /// must see applied and no prepared transaction it must wait for.
    fn read_ready(&self, snapshot: u64, scope: &ReadScope<'_>) -> bool {
        let barrier = self.read_barrier(scope);
        self.apply.lock().expect("apply").next > barrier
            && !self.prepared_at_or_below(snapshot, scope)
    }

    /// True if a transaction prepared at or below `snapshot` is undecided
    /// and writes inside `scope`: it may commit at a timestamp the snapshot
    /// covers.
    fn prepared_at_or_below(&self, snapshot: u64, scope: &ReadScope<'_>) -> bool {
        let prepared = self.state.prepared.lock().expect("prepared");
        let below = |p: &PreparedTxn| p.ts <= snapshot;
        match scope {
            ReadScope::Shard => prepared.txns.values().any(below),
            ReadScope::Key { table, key } => prepared
                .locks
                .get(&(*table, key.to_vec()))
                .and_then(|txid| prepared.txns.get(txid))
                .is_some_and(below),
            ReadScope::Table(t) => prepared
                .txns
                .values()
                .any(|p| below(p) && p.ops.iter().any(|op| op.target().0 == *t)),
        }
    }

    /// Registers a reader at `snapshot` and waits until every write inside
    /// `scope` that may carry a timestamp at or below it is applied, so the
    /// read is repeatable. Writes elsewhere on the shard, still waiting for
    /// their fsync, do not hold the read up.
    fn begin_read(&self, snapshot: u64, scope: &ReadScope<'_>) -> Result<SnapshotGuard<'_>> {
        let guard = self.register_reader(snapshot)?;
        if snapshot != LATEST {
            self.wait_applied(self.read_barrier(scope))?;
            // A prepared transaction below the snapshot may commit at a
            // timestamp the snapshot covers: wait for its outcome.
            let deadline = std::time::Instant::now() + IN_DOUBT_WAIT;
            while self.prepared_at_or_below(snapshot, scope) {
                if std::time::Instant::now() > deadline {
                    return Err(StorageError::SerializationFailure {
                        reason: "rows of an in-doubt two-phase commit".into(),
                    });
                }
                self.wait_for_change();
            }
        }
        Ok(guard)
    }

    /// Registers a reader at `snapshot`, so that garbage collection keeps
    /// what it may read, until the guard drops.
    fn register_reader(&self, snapshot: u64) -> Result<SnapshotGuard<'_>> {
        let mut reg = self.snapshots.lock().expect("snapshots");
        if snapshot < reg.horizon {
            return Err(StorageError::SnapshotTooOld { snapshot });
        }
        *reg.active.entry(snapshot).or_default() += 1;
        Ok(SnapshotGuard {
            shard: self,
            snapshot,
        })
    }

    /// A scan naming a whole primary key, when it can be answered without
    /// waiting: the row, filtered and projected. What [`Shard::stream`]
    /// does for it, with the key encoded once and the readiness checked
    /// once; `None` when the read would wait (or the table is unknown).
    fn point_read(&self, fragment: &Fragment) -> Option<Result<FragmentOutput>> {
        let Fragment::Scan {
            table,
            key_prefix,
            filter,
            projection,
            limit,
            snapshot,
            ..
        } = fragment
        else {
            return None;
        };
        let def = self.state.def(*table)?;
        if def.primary_key.len() != key_prefix.len() {
            return None;
        }
        let tree = self.state.tree(*table)?;
        let key = encode_key(key_prefix);
        let snapshot = snapshot.map_or(LATEST, |t| t.0);
        let _reader = match self.register_reader(snapshot) {
            Ok(r) => r,
            Err(e) => return Some(Err(e)),
        };
        // The checks `begin_read` waits on, made once: registered first,
        // then every write to the key that the snapshot may cover is
        // applied and no prepared one is undecided, or the caller takes
        // the path that waits.
        let scope = ReadScope::Key {
            table: *table,
            key: &key,
        };
        if snapshot != LATEST && !self.read_ready(snapshot, &scope) {
            return None;
        }
        let read = || -> Result<Vec<Row>> {
            if *limit == Some(0) {
                return Ok(Vec::new());
            }
            let Some(mut row) = self.state.visible_row(&def, &tree, &key, snapshot)? else {
                return Ok(Vec::new());
            };
            def.complete_row(&mut row);
            if let Some(f) = filter {
                if !f.matches(&row)? {
                    return Ok(Vec::new());
                }
            }
            Ok(vec![project(projection, row)?])
        };
        Some(read().map(FragmentOutput::Rows))
    }

    /// Writes this shard's part of a checkpoint into `dir`: for each table,
    /// the version of every row visible at `snapshot`, as stored, in key
    /// order. `wal_after` is an LSN read before the snapshot was taken (every
    /// record up to it carries an older timestamp). The caller pins
    /// `snapshot` against garbage collection.
    pub fn dump(&self, snapshot: u64, wal_after: Lsn, dir: &Path) -> Result<ShardCut> {
        let _read = self.begin_read(snapshot, &ReadScope::Shard)?;
        // Records appended after the read began carry later timestamps.
        let wal_through = self.writer.lock().expect("write lock").last_appended;
        std::fs::create_dir_all(dir).map_err(|e| StorageError::io(dir, e))?;
        let shard_dir = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let mut tables = Vec::new();
        for def in self.catalog().tables.values() {
            let Some(tree) = self.state.tree(def.id) else {
                continue;
            };
            let name = format!("t{}.rows", def.id);
            let label = format!("{shard_dir}/{name}");
            let mut out = crate::checkpoint::BlockWriter::create(
                &dir.join(&name),
                &label,
                self.wal.cipher().cloned(),
            )?;
            for item in visible_versions(tree.range(&[0x01u8][..]..), snapshot) {
                let (k, v) = item?;
                out.push(&k, &v)?;
            }
            let summary = out.finish()?;
            tables.push(TableFile {
                table: def.id,
                name: def.name.clone(),
                file: label,
                rows: summary.entries,
                bytes: summary.bytes,
                raw_bytes: summary.raw_bytes,
            });
        }
        // Multi-master stamps of versions the checkpoint holds, and siblings.
        let mut peer_files = Vec::new();
        for (tree, kind) in [
            (&self.state.stamps, "stamps"),
            (&self.state.siblings, "siblings"),
        ] {
            if tree.is_empty() {
                continue;
            }
            let name = format!("{kind}.peer");
            let label = format!("{shard_dir}/{name}");
            let mut out = crate::checkpoint::BlockWriter::create(
                &dir.join(&name),
                &label,
                self.wal.cipher().cloned(),
            )?;
            for item in tree.iter() {
                let (k, v) = item?;
                if kind == "stamps" && stamp_version(&k).is_some_and(|ts| ts > snapshot) {
                    continue;
                }
                out.push(&k, &v)?;
            }
            let summary = out.finish()?;
            peer_files.push(TableFile {
                table: 0,
                name: kind.into(),
                file: label,
                rows: summary.entries,
                bytes: summary.bytes,
                raw_bytes: summary.raw_bytes,
            });
        }
        crate::checkpoint::sync_dir(dir)?;
        Ok(ShardCut {
            shard: self.id,
            wal_after,
            wal_through,
            tables,
            peer_files,
        })
    }

    /// Drops versions no live or future snapshot can see. Returns the count.
    pub fn gc(&self) -> Result<u64> {
        self.collect(None)
    }

    /// VACUUM: collects the garbage of `trees` (every tree when empty) by
    /// walking each whole, now. This also ends the whole-shard walk a bulk
    /// load or a restart leaves to the next collection, for those trees.
    pub fn vacuum(&self, trees: &[TableId]) -> Result<u64> {
        self.collect(Some(trees))
    }

    /// The oldest snapshot a reader may still take: garbage is below it.
    fn horizon(&self) -> u64 {
        let mut reg = self.snapshots.lock().expect("snapshots");
        let grace = self.gc_grace.as_micros() as u64;
        let floor = Timestamp::from_wall(self.clock.now().wall_micros().saturating_sub(grace)).0;
        let oldest = reg
            .active
            .keys()
            .next()
            .copied()
            .unwrap_or(u64::MAX)
            .min(self.pins.oldest().unwrap_or(u64::MAX));
        let h = floor.min(oldest).max(reg.horizon);
        reg.horizon = h;
        h
    }

    /// One collection: the dirty keys (and any tree an everything-walk is
    /// owed) when `whole` is `None`, else the trees it names, walked whole.
    fn collect(&self, whole: Option<&[TableId]>) -> Result<u64> {
        let _one = self.collecting.lock().expect("collecting");
        let horizon = self.horizon();
        let trees = self.state.trees.read().expect("trees").clone();
        let all: HashSet<TableId> = trees.keys().copied().collect();
        let (walk, by_key) = {
            let mut dirty = self.state.dirty.lock().expect("dirty");
            match whole {
                None => {
                    let work = std::mem::replace(&mut *dirty, DirtyKeys::new(false));
                    let walk = match work.everything {
                        true => all.difference(&work.walked).copied().collect(),
                        false => HashSet::new(),
                    };
                    (walk, work.trees)
                }
                Some(ids) => {
                    let walk = match ids.is_empty() {
                        true => all.clone(),
                        false => ids.iter().copied().filter(|id| all.contains(id)).collect(),
                    };
                    dirty.walking(&walk, &all);
                    (walk, FastMap::default())
                }
            }
        };
        let mut removed = 0;
        let mut young = Vec::new();
        let mut overflow = false;
        let mut collect = || -> Result<()> {
            for id in &walk {
                let c = collect_garbage(&trees[id], horizon)?;
                removed += c.removed;
                overflow |= c.young_overflow;
                young.push((*id, c.young));
            }
            for (id, keys) in &by_key {
                let Some(tree) = trees.get(id) else { continue };
                let mut c = Collected::default();
                // Keys still too young are carried over unread; the rest
                // are read in key order, which keeps sled's path warm.
                let mut due = Vec::with_capacity(keys.len());
                for (k, &from) in keys {
                    if from > horizon {
                        c.young.push((k.clone(), from));
                    } else {
                        due.push(k);
                    }
                }
                due.sort_unstable();
                for k in due {
                    collect_key_garbage(tree, k, horizon, &mut c)?;
                }
                removed += c.removed;
                overflow |= c.young_overflow;
                young.push((*id, c.young));
            }
            Ok(())
        };
        let outcome = collect();
        let mut dirty = self.state.dirty.lock().expect("dirty");
        if outcome.is_err() || overflow {
            // Too many to remember (or a failed pass): walk everything next.
            *dirty = DirtyKeys::new(true);
        } else {
            for (id, keys) in young {
                for (k, from) in keys {
                    dirty.add(id, &k, from);
                }
            }
        }
        drop(dirty);
        outcome?;
        if removed > 0 {
            tracing::debug!(
                shard = self.id,
                removed,
                horizon,
                "garbage collected old versions"
            );
        }
        Ok(removed)
    }

    /// Runs [`ShardStore::gc`] every `every` until the shard is dropped.
    pub fn spawn_gc(self: &Arc<Self>, every: Duration) {
        let weak = Arc::downgrade(self);
        let spawned = std::thread::Builder::new()
            .name(format!("gc-shard-{}", self.id))
            .spawn(move || loop {
                std::thread::sleep(every);
                let Some(shard) = weak.upgrade() else { break };
                if let Err(e) = shard.gc() {
                    tracing::warn!(shard = shard.id, error = %e, "garbage collection failed");
                }
            });
        if let Err(e) = spawned {
            tracing::warn!(shard = self.id, error = %e, "could not start garbage collection");
        }
    }

    /// Calls `f` on each row of `table` under `prefix` that passes `filter`
    /// as of `snapshot`, through an index when one fits; `f` returns false
    /// to stop.
    fn visit_rows(
        &self,
        table: TableId,
        prefix: &[Value],
        filter: Option<&Expr>,
        snapshot: u64,
        mut f: impl FnMut(Row) -> Result<bool>,
    ) -> Result<()> {
        let def = self.table(table)?;
        if let (true, Some((keys, list))) = (prefix.is_empty(), key_in_list(&def, filter)) {
            // Point lookups of the listed leading key values, in key order.
            // The rows found are in the list: only the rest of the filter is
            // checked, or a long list would be searched once per row.
            let rest = filter
                .and_then(|e| without_conjunct(e, list))
                .map(Expr::with_sorted_lists);
            for k in keys {
                let mut more = true;
                self.for_each_row(table, &[k], snapshot, |_, row| {
                    more = match &rest {
                        Some(e) if !e.matches(&row)? => true,
                        _ => f(row)?,
                    };
                    Ok(more)
                })?;
                if !more {
                    break;
                }
            }
            return Ok(());
        }
        let sorted = sorted_lists(filter);
        let checked = sorted.as_ref().or(filter);
        let mut pass = |row: Row| match checked {
            Some(e) if !e.matches(&row)? => Ok(true),
            _ => f(row),
        };
        if let (true, Some(how)) = (prefix.is_empty(), crate::index::choose(&def, filter)) {
            self.for_each_indexed_row(&def, &how, snapshot, pass)
        } else {
            self.for_each_row(table, prefix, snapshot, |_, row| pass(row))
        }
    }

    /// The rows of one side of a join, and the table's width; more than
    /// `limit` of them is 53200.
    fn scan_rows(
        &self,
        scan: &TableScan,
        snapshot: u64,
        limit: usize,
    ) -> Result<(Vec<Row>, usize)> {
        let width = self.table(scan.table)?.columns.len();
        let mut rows = Vec::new();
        self.visit_rows(
            scan.table,
            &scan.key_prefix,
            scan.filter.as_ref(),
            snapshot,
            |row| {
                rows.push(row);
                Ok(rows.len() <= limit)
            },
        )?;
        if rows.len() > limit {
            return Err(EvalError::Invalid(
                "53200",
                format!("out of memory: a join side needs more than {limit} rows on a shard (FORTRESS_WORK_ROWS)"),
            )
            .into());
        }
        Ok((rows, width))
    }

    /// Partial aggregation of the rows a scan with the same arguments sees.
    fn aggregate(
        &self,
        table: TableId,
        prefix: &[Value],
        filter: Option<&Expr>,
        agg: &crate::aggregate::Aggregate,
        snapshot: u64,
    ) -> Result<Vec<Row>> {
        let _reader = self.begin_read(snapshot, &ReadScope::Table(table))?;
        let mut groups = crate::aggregate::PartialGroups::new(agg);
        self.visit_rows(table, prefix, filter, snapshot, |row| {
            groups.add_row(&row)?;
            Ok(true)
        })?;
        Ok(groups.finish()?)
    }

    /// Computes the operations of a write fragment from the applied state.
    fn plan_write(&self, fragment: &Fragment) -> Result<Vec<WriteOp>> {
        let mut ops = Vec::new();
        match fragment {
            Fragment::Insert { table, rows } => {
                let def = self.table(*table)?;
                let tree = self
                    .state
                    .tree(*table)
                    .ok_or_else(|| StorageError::UnknownTable(def.name.clone()))?;
                let mut seen = HashSet::new();
                for row in rows {
                    if row.len() != def.columns.len() {
                        return Err(StorageError::Codec(format!(
                            "row has {} values, table {} has {} columns",
                            row.len(),
                            def.name,
                            def.columns.len()
                        )));
                    }
                    def.check_not_null(row)?;
                    let pk: Vec<Value> = def.primary_key.iter().map(|&i| row[i].clone()).collect();
                    let key = encode_key(&pk);
                    if !seen.insert(key.clone()) || self.state.head(&def, &tree, &key)?.is_live() {
                        return Err(def.duplicate_error(row));
                    }
                    ops.push(WriteOp::Put {
                        table: *table,
                        key,
                        row: row.clone(),
                    });
                }
            }
            Fragment::Update {
                table,
                key_prefix,
                filter,
                assignments,
            } => {
                let def = self.table(*table)?;
                let sorted = sorted_lists(filter.as_ref());
                let filter = sorted.as_ref().or(filter.as_ref());
                self.for_each_row(*table, key_prefix, LATEST, |pk, row| {
                    if let Some(f) = filter {
                        if !f.matches(&row)? {
                            return Ok(true);
                        }
                    }
                    let mut new = row.clone();
                    for (col, e) in assignments {
                        new[*col] = e.eval(&row)?;
                    }
                    def.check_not_null(&new)?;
                    let new_pk: Vec<Value> =
                        def.primary_key.iter().map(|&i| new[i].clone()).collect();
                    if encode_key(&new_pk) != pk {
                        return Err(StorageError::Codec(
                            "updating a primary-key column is not supported yet".into(),
                        ));
                    }
                    ops.push(WriteOp::Put {
                        table: *table,
                        key: pk.to_vec(),
                        row: new,
                    });
                    Ok(true)
                })?;
            }
            Fragment::Delete {
                table,
                key_prefix,
                filter,
            } => {
                let sorted = sorted_lists(filter.as_ref());
                let filter = sorted.as_ref().or(filter.as_ref());
                self.for_each_row(*table, key_prefix, LATEST, |pk, row| {
                    if let Some(f) = filter {
                        if !f.matches(&row)? {
                            return Ok(true);
                        }
                    }
                    ops.push(WriteOp::Delete {
                        table: *table,
                        key: pk.to_vec(),
                    });
                    Ok(true)
                })?;
            }
            Fragment::CommitTxn { snapshot, writes }
            | Fragment::Prepare {
                snapshot, writes, ..
            } => {
                for wr in writes {
                    let def = self.table(wr.table)?;
                    let tree = self
                        .state
                        .tree(wr.table)
                        .ok_or_else(|| StorageError::UnknownTable(def.name.clone()))?;
                    let key = encode_key(&wr.key);
                    let head = self.state.head(&def, &tree, &key)?;
                    if head.ts > wr.read_ts.unwrap_or(*snapshot).0 {
                        return Err(StorageError::SerializationFailure {
                            reason: format!("a newer version in \"{}\"", def.name),
                        });
                    }
                    if wr.insert && head.is_live() {
                        let row = wr.row.clone().unwrap_or_default();
                        return Err(def.duplicate_error(&row));
                    }
                    match &wr.row {
                        Some(row) => {
                            def.check_not_null(row)?;
                            ops.push(WriteOp::Put {
                                table: wr.table,
                                key,
                                row: row.clone(),
                            });
                        }
                        None => ops.push(WriteOp::Delete {
                            table: wr.table,
                            key,
                        }),
                    }
                }
            }
            Fragment::Scan { .. }
            | Fragment::Aggregate { .. }
            | Fragment::JoinScan { .. }
            | Fragment::ApplyCatalog(_)
            | Fragment::FindKeyViolation { .. }
            | Fragment::CommitPrepared { .. }
            | Fragment::AbortPrepared { .. }
            | Fragment::Vacuum { .. } => {}
        }
        Ok(ops)
    }

    /// Validates, logs, waits for durability and applies one write (or, for
    /// `Prepare`, logs the write set and locks its keys).
    fn write(&self, txid: TxnId, fragment: &Fragment) -> Result<FragmentOutput> {
        let deadline = std::time::Instant::now() + IN_DOUBT_WAIT;
        loop {
            match self.log_write(txid, fragment)? {
                Logged::Nothing => return Ok(FragmentOutput::Count(0)),
                Logged::Appended { lsn, change, out } => {
                    if is_logged_vote(&out) {
                        self.lock_prepared(lsn, change)?;
                    } else {
                        self.commit(lsn, change)?;
                    }
                    return Ok(out);
                }
                Logged::Locked => {
                    if std::time::Instant::now() > deadline {
                        return Err(in_doubt_lock());
                    }
                    self.wait_for_change();
                }
                Logged::Applying(lsn) => self.wait_applied(lsn)?,
            }
        }
    }

    /// Validates a write fragment and logs it, or says what it must wait
    /// for first; nothing is changed unless it returns `Appended`.
    fn log_write(&self, txid: TxnId, fragment: &Fragment) -> Result<Logged> {
        let is_txn = matches!(
            fragment,
            Fragment::CommitTxn { .. } | Fragment::Prepare { .. }
        );
        self.check_failed()?;
        // Room to apply what is logged, and to open again, stays free.
        self.space.check()?;
        let mut w = self.writer.lock().expect("write lock");
        // Validation and the lock check see one state of the prepared
        // set: a commit being applied writes its versions before it
        // drops its locks, so holding the set across both means a key is
        // either still locked or already carries the committed version.
        let prepared = self.state.prepared.lock().expect("prepared");
        let ops = self.plan_write(fragment)?;
        // A PREPARE is logged even with nothing to write: a restart counts
        // its record as this participant's vote.
        if ops.is_empty() && !matches!(fragment, Fragment::Prepare { .. }) {
            return Ok(Logged::Nothing);
        }
        self.check_unlocked(&ops)?;
        let locked = ops.iter().any(|op| {
            let (t, k) = op.target();
            prepared.locks.contains_key(&(t, k.to_vec()))
        });
        drop(prepared);
        if locked {
            // A transaction snapshot older than the lock cannot win.
            if is_txn {
                return Err(in_doubt_lock());
            }
            return Ok(Logged::Locked);
        }
        let blocking = ops
            .iter()
            .filter_map(|op| {
                let (t, k) = op.target();
                w.pending.get(&(t, k.to_vec())).copied()
            })
            .max();
        if let Some(lsn) = blocking {
            return Ok(Logged::Applying(lsn));
        }
        let ts = self.clock.now().0;
        let (kind, rec_txid, payload) = match fragment {
            Fragment::Prepare {
                txid, participants, ..
            } => (KIND_PREPARE_ALL, *txid, encode_prepare(participants, &ops)?),
            _ => (KIND_WRITE, txid, encode_record(&ops)?),
        };
        // A vote the coordinator logs with its decision is durable there:
        // its PREPARE here waits in memory for the next write or sync.
        let lsn = match fragment {
            Fragment::Prepare {
                durable_vote: false,
                ..
            } => self.wal.append_unwritten(rec_txid, ts, kind, &payload)?,
            _ => self.wal.append(rec_txid, ts, kind, &payload)?,
        };
        w.last_appended = lsn;
        for op in &ops {
            let (t, k) = op.target();
            w.pending.insert((t, k.to_vec()), lsn);
        }
        drop(w);
        let (change, out) = match fragment {
            Fragment::Prepare {
                participants,
                durable_vote,
                ..
            } => (
                Change::Prepare {
                    txid: rec_txid,
                    ts,
                    ops,
                    participants: participants.clone(),
                },
                FragmentOutput::Prepared {
                    ts: Timestamp(ts),
                    vote: (!durable_vote).then_some(LoggedVote {
                        lsn,
                        record: payload,
                    }),
                },
            ),
            _ => {
                let rows = ops.len() as u64;
                (Change::Write { ts, ops }, FragmentOutput::Count(rows))
            }
        };
        Ok(Logged::Appended { lsn, change, out })
    }

    /// 55P03 if a write targets a table ALTER TABLE is rewriting.
    fn check_unlocked(&self, ops: &[WriteOp]) -> Result<()> {
        let catalog = self.state.catalog.read().expect("catalog");
        let mut last = None;
        for op in ops {
            let (t, _) = op.target();
            if last == Some(t) {
                continue;
            }
            last = Some(t);
            if let Some(def) = catalog.by_id(t).filter(|d| d.locked) {
                return Err(StorageError::Locked {
                    table: def.name.clone(),
                    reason: "ALTER TABLE is rewriting it".into(),
                });
            }
        }
        Ok(())
    }

    /// See [`Fragment::FindKeyViolation`]. The proxy has locked the table
    /// first, so once the writes already logged are applied the rows stay
    /// as checked.
    fn find_key_violation(&self, table: TableId, columns: &[usize]) -> Result<Vec<Row>> {
        let def = self.table(table)?;
        let last = {
            let w = self.writer.lock().expect("write lock");
            let prepared = self.state.prepared.lock().expect("prepared");
            let busy = prepared
                .txns
                .values()
                .any(|p| p.ops.iter().any(|op| op.target().0 == table));
            if busy {
                return Err(StorageError::Locked {
                    table: def.name.clone(),
                    reason: "a prepared transaction writes to it".into(),
                });
            }
            w.last_appended
        };
        self.wait_applied(last)?;
        // A NULL is reported before a duplicate, as PostgreSQL checks.
        let mut seen = HashSet::new();
        let mut duplicate = None;
        let mut null = None;
        self.for_each_row(table, &[], LATEST, |_, row| {
            let key: Vec<Value> = columns.iter().map(|&c| row[c].clone()).collect();
            if key.iter().any(Value::is_null) {
                null = Some(row);
                return Ok(false);
            }
            if !seen.insert(encode_key(&key)) && duplicate.is_none() {
                duplicate = Some(row);
            }
            Ok(true)
        })?;
        Ok(null.or(duplicate).into_iter().collect())
    }

    /// Applies versions of rows a multi-master peer committed, each
    /// stamped by it: each is decided against the newest version here by
    /// `resolver` (see [`crate::conflict`]), as `me`; the winners are
    /// logged in one record, with their stamps and any siblings, made
    /// durable and applied at a timestamp of this node's clock (which
    /// first observes theirs). Waits, as a write does, for rows a logged
    /// write or a prepared transaction holds.
    pub fn apply_remote(
        &self,
        me: &str,
        resolver: Resolver,
        changes: &[RemoteChange],
    ) -> Result<RemoteApplied> {
        for c in changes {
            self.clock
                .observe(Timestamp(c.stamp.ts))
                .map_err(|e| StorageError::Codec(format!("a peer's version: {e}")))?;
        }
        // Every row the batch names: its decision needs the newest
        // version of each, so none may have a write logged and not yet
        // applied, or be held by a prepared transaction.
        let rows: HashSet<(TableId, Vec<u8>)> =
            changes.iter().map(|c| (c.table, c.key.clone())).collect();
        let deadline = std::time::Instant::now() + IN_DOUBT_WAIT;
        let busy_deadline = std::time::Instant::now() + REMOTE_BUSY_WAIT;
        loop {
            self.check_failed()?;
            self.space.check()?;
            let mut w = self.writer.lock().expect("write lock");
            let prepared = self.state.prepared.lock().expect("prepared");
            let locked = rows.iter().any(|t| prepared.locks.contains_key(t));
            drop(prepared);
            if locked {
                drop(w);
                if std::time::Instant::now() > deadline {
                    return Err(in_doubt_lock());
                }
                self.wait_for_change();
                continue;
            }
            if let Some(lsn) = rows.iter().filter_map(|t| w.pending.get(t).copied()).max() {
                drop(w);
                // Rows written here without pause: the batch comes again.
                if std::time::Instant::now() > busy_deadline {
                    return Err(StorageError::SerializationFailure {
                        reason: "rows of a peer's batch kept being written here".into(),
                    });
                }
                self.wait_applied(lsn)?;
                continue;
            }
            let (record, done) = self.plan_remote(me, resolver, changes)?;
            if record.stamps.is_empty() {
                return Ok(done);
            }
            self.check_unlocked(&record.ops)?;
            let ts = self.clock.now().0;
            let payload = encode_record(&record)?;
            let lsn = self.wal.append(0, ts, KIND_REMOTE, &payload)?;
            w.last_appended = lsn;
            for key in record.keys() {
                w.pending.insert(key, lsn);
            }
            drop(w);
            self.commit(lsn, Change::Remote { ts, record })?;
            return Ok(done);
        }
    }

    /// Decides each of `changes` against the newest version of its row
    /// (under the writer lock): the record to log, and the counts.
    fn plan_remote(
        &self,
        me: &str,
        resolver: Resolver,
        changes: &[RemoteChange],
    ) -> Result<(RemoteRecord, RemoteApplied)> {
        let mut record = RemoteRecord {
            ops: Vec::new(),
            stamps: Vec::new(),
            siblings: Vec::new(),
        };
        let mut done = RemoteApplied::default();
        // Newest first: a row changed twice in one batch takes the last.
        let mut planned: HashSet<(TableId, Vec<u8>)> = HashSet::new();
        for c in changes.iter().rev() {
            let def = self.table(c.table)?;
            if let Some(row) = &c.row {
                if row.len() != def.columns.len() {
                    return Err(StorageError::Codec(format!(
                        "a peer's row of \"{}\" has {} columns, this node's table {}",
                        def.name,
                        row.len(),
                        def.columns.len()
                    )));
                }
            }
            if !planned.insert((c.table, c.key.clone())) {
                // An older version of a row the batch changes again: the
                // newer covers it, under every resolver.
                done.kept += 1;
                continue;
            }
            let tree = self
                .state
                .tree(c.table)
                .ok_or_else(|| StorageError::UnknownTable(def.name.clone()))?;
            let head = self.state.head(&def, &tree, &c.key)?;
            let here = match head.ts {
                0 => None,
                ts => Some(self.state.stamp_of(me, c.table, &c.key, ts)?),
            };
            let op = || match &c.row {
                Some(row) => WriteOp::Put {
                    table: c.table,
                    key: c.key.clone(),
                    row: row.clone(),
                },
                None => WriteOp::Delete {
                    table: c.table,
                    key: c.key.clone(),
                },
            };
            // The row here is decoded only when something needs it: a
            // table's own column, which decides first, or a sibling.
            let head_row = || match head.version.as_deref() {
                Some(v) => decode_version(v),
                None => Ok(None),
            };
            let greater = match (def.conflict_greatest, &c.row) {
                (Some(col), Some(theirs)) => head_row()?
                    .and_then(|ours| theirs.get(col)?.sql_cmp(ours.get(col)?).ok().flatten()),
                _ => None,
            };
            match resolve(resolver, here.as_ref(), &c.stamp, greater) {
                Verdict::Keep => done.kept += 1,
                Verdict::Take(stamp) => {
                    done.taken += 1;
                    record.ops.push(op());
                    record.stamps.push(StampAt {
                        table: c.table,
                        key: c.key.clone(),
                        at: None,
                        stamp,
                    });
                }
                Verdict::Siblings { take, merged } => {
                    done.conflicts += 1;
                    let here = here.expect("siblings need a version here");
                    let (winner, loser, loser_row) = match take {
                        true => (c.stamp.clone(), here, head_row()?),
                        false => (here, c.stamp.clone(), c.row.clone()),
                    };
                    record.siblings.push(Sibling {
                        table: c.table,
                        key: c.key.clone(),
                        row: loser_row,
                        stamp: loser,
                        winner: (winner.node.clone(), winner.ts),
                    });
                    let stamp = Stamp {
                        vv: merged,
                        ..winner
                    };
                    if take {
                        done.taken += 1;
                        record.ops.push(op());
                    }
                    record.stamps.push(StampAt {
                        table: c.table,
                        key: c.key.clone(),
                        // Kept: the version here gets the merged vector.
                        at: (!take).then_some(head.ts),
                        stamp,
                    });
                }
            }
        }
        Ok((record, done))
    }

    /// The stamp a peer gets with the version of `key` in `table` this
    /// node (`me`) committed at `ts`.
    pub fn stamp_for_peer(&self, me: &str, table: TableId, key: &[u8], ts: u64) -> Result<Stamp> {
        let before = self
            .state
            .stamp_at_or_below(table, key, ts.saturating_sub(1))?;
        Ok(Stamp::local(me, ts, before.as_ref().map(|(_, s)| s)))
    }

    /// The versions this node committed among `records` (decoded from
    /// this shard's log), stamped as `me`, for a multi-master peer:
    /// single-shard writes and commits of prepared transactions. A peer's
    /// own versions (never sent back), catalog changes and loads are not.
    pub fn changes_for_peer(&self, me: &str, records: &[Record]) -> Result<Vec<RemoteChange>> {
        let mut out = Vec::new();
        for rec in records {
            let ops: Vec<WriteOp> = match rec.kind {
                KIND_WRITE => postcard::from_bytes(&rec.payload).map_err(codec)?,
                KIND_COMMIT_PREPARED if !rec.payload.is_empty() => {
                    postcard::from_bytes(&rec.payload).map_err(codec)?
                }
                _ => continue,
            };
            for op in ops {
                let (table, key) = op.target();
                let stamp = self.stamp_for_peer(me, table, key, rec.ts)?;
                let (table, key, row) = match op {
                    WriteOp::Put { table, key, row } => (table, key, Some(row)),
                    WriteOp::Delete { table, key } => (table, key, None),
                };
                out.push(RemoteChange {
                    table,
                    key,
                    row,
                    stamp,
                });
            }
        }
        Ok(out)
    }

    /// The siblings no later version of their row covers yet (see
    /// [`crate::conflict`]), as `me` sees them, with the visible
    /// version's row and stamp.
    pub fn siblings(&self, me: &str) -> Result<Vec<(Sibling, Option<Row>, Stamp)>> {
        let mut out = Vec::new();
        for item in self.state.siblings.iter() {
            let (_, v) = item?;
            let sib: Sibling = postcard::from_bytes(&v).map_err(codec)?;
            let Some(def) = self.state.def(sib.table) else {
                continue;
            };
            let Some(tree) = self.state.tree(sib.table) else {
                continue;
            };
            let head = self.state.head(&def, &tree, &sib.key)?;
            if head.ts == 0 {
                continue;
            }
            let stamp = self.state.stamp_of(me, sib.table, &sib.key, head.ts)?;
            let later = (stamp.node.as_str(), stamp.ts) != (sib.winner.0.as_str(), sib.winner.1);
            if later && stamp.covers(&sib.stamp) {
                continue;
            }
            let row = head
                .version
                .as_deref()
                .map(decode_version)
                .transpose()?
                .flatten();
            out.push((sib, row, stamp));
        }
        Ok(out)
    }

    /// Logs and applies the outcome of a prepared transaction.
    fn resolve(&self, txid: TxnId, commit_ts: Option<Timestamp>) -> Result<u64> {
        self.check_failed()?;
        let mut w = self.writer.lock().expect("write lock");
        let prepared = self.state.prepared.lock().expect("prepared");
        let Some(ops) = prepared.txns.get(&txid).map(|p| p.ops.clone()) else {
            return Ok(0);
        };
        drop(prepared);
        let (kind, ts, payload, change) = match commit_ts {
            Some(c) => {
                self.clock.observe_own(c);
                let payload = encode_record(&ops)?;
                (
                    KIND_COMMIT_PREPARED,
                    c.0,
                    payload,
                    Change::CommitPrepared {
                        txid,
                        commit_ts: c.0,
                        ops,
                    },
                )
            }
            None => (
                KIND_ABORT_PREPARED,
                self.clock.now().0,
                Vec::new(),
                Change::AbortPrepared { txid },
            ),
        };
        // The outcome is durable already (the coordinator's decision, or
        // presumed abort): a crash before this record is synced resolves
        // the transaction the same way again, so it is applied at once, and
        // the record waits in memory for the next write or sync (the
        // coordinator syncs this log before it forgets the decision).
        let lsn = self.wal.append_unwritten(txid, ts, kind, &payload)?;
        w.last_appended = lsn;
        drop(w);
        self.apply_resolution(lsn, change)?;
        Ok(1)
    }

    /// Applies the outcome of a prepared transaction logged at `lsn` now,
    /// even while records before it still wait for their fsync. Its rows
    /// are locked by the prepared set since the PREPARE was applied, so no
    /// record between the two touches them and the order does not change
    /// what is stored; waiting would hold the transaction's locks for
    /// another transaction's fsync. `next` (what the applied mark and
    /// shard-wide reads go by) still advances in LSN order.
    fn apply_resolution(&self, lsn: Lsn, change: Change) -> Result<()> {
        let mut st = self.apply.lock().expect("apply");
        if st.next == lsn {
            drop(st);
            return self.apply_in_order(lsn, change);
        }
        if let Err(e) = self.state.apply(lsn, &change) {
            tracing::error!(shard = self.id, lsn, error = %e, "apply failed");
            self.fail_waiting(&mut st, &e, None);
            return Err(e);
        }
        st.ahead.insert(lsn);
        self.wake_sleepers(&st);
        Ok(())
    }

    /// Applies a PREPARE logged at `lsn` whose vote is given before it is
    /// durable (the coordinator logs it): its keys are locked at once, and
    /// no longer wait as pending for the in-order apply. The prepared set
    /// is memory only, so applying it ahead of earlier records changes
    /// nothing stored.
    fn lock_prepared(&self, lsn: Lsn, change: Change) -> Result<()> {
        let keys: Vec<(TableId, Vec<u8>)> = match &change {
            Change::Prepare { ops, .. } => ops
                .iter()
                .map(|op| {
                    let (t, k) = op.target();
                    (t, k.to_vec())
                })
                .collect(),
            _ => Vec::new(),
        };
        self.apply_resolution(lsn, change)?;
        let mut w = self.writer.lock().expect("write lock");
        for key in keys {
            w.unpend(key, lsn);
        }
        Ok(())
    }

    /// Sleeps until some record is applied (or a short timeout passes).
    fn wait_for_change(&self) {
        let st = self.apply.lock().expect("apply");
        drop(self.sleep_on_apply(st, Duration::from_millis(20)));
    }

    /// Waits for durability of `lsn`, then applies it in LSN order.
    fn commit(&self, lsn: Lsn, change: Change) -> Result<()> {
        if let Err(e) = self.wal.wait_durable(lsn) {
            let mut st = self.apply.lock().expect("apply");
            self.fail_waiting(&mut st, &e, None);
            return Err(e);
        }
        self.apply_in_order(lsn, change)
    }

    /// Starts the thread that makes async writers' records durable (one
    /// fdatasync per batch) and applies them; until it runs,
    /// [`Shard::try_write`] declines. It stops once the shard is dropped.
    pub fn spawn_committer(self: &Arc<Self>) {
        if self.wal.sync_mode() == SyncMode::Off {
            self.committing.store(true, Ordering::Release);
            return;
        }
        let weak = Arc::downgrade(self);
        let queue = self.committer.clone();
        let id = self.id;
        let spawned = std::thread::Builder::new()
            .name(format!("shard-{id}-commit"))
            .spawn(move || loop {
                let batch = queue.take(Duration::from_millis(100));
                let Some(shard) = weak.upgrade() else {
                    fail_all(signals(batch), id, "the shard was closed");
                    break;
                };
                if let Some(&(last, _)) = batch.last() {
                    match shard.wal.wait_durable(last) {
                        Ok(()) => shard.apply_batch(batch),
                        Err(e) => {
                            let mut st = shard.apply.lock().expect("apply");
                            fail_all(signals(batch), id, &e.to_string());
                            shard.fail_waiting(&mut st, &e, None);
                        }
                    }
                }
            });
        match spawned {
            Ok(_) => self.committing.store(true, Ordering::Release),
            Err(e) => {
                tracing::warn!(shard = id, error = %e, "no committer thread: writes take the blocking path")
            }
        }
    }

    /// Queues durable changes of async writers for apply, in LSN order
    /// with everything else, firing each writer's signal once applied.
    fn apply_batch(&self, batch: Vec<(Lsn, (Change, Arc<Signal>))>) {
        let mut st = self.apply.lock().expect("apply");
        if self.failed.load(Ordering::Acquire) {
            fail_all(signals(batch), self.id, "an earlier write failed");
            return;
        }
        for (lsn, (change, signal)) in batch {
            st.ready.insert(lsn, (change, Some(signal)));
        }
        // A failure has already failed every waiter.
        let _ = self.apply_ready(&mut st);
    }

    /// The rest of an async write logged at `lsn`: resolves once the
    /// record is durable and applied.
    fn finish_async(&self, lsn: Lsn, change: Change, out: FragmentOutput) -> PendingWrite {
        let signal = Signal::new();
        if self.wal.sync_mode() == SyncMode::Off {
            self.apply_batch(vec![(lsn, (change, signal.clone()))]);
        } else {
            self.committer.push(lsn, (change, signal.clone()));
        }
        Box::pin(async move { signal.wait().await.map(|()| out) })
    }

    /// Applies the change logged at `lsn` once every record before it is
    /// applied (records are applied in LSN order).
    fn apply_in_order(&self, lsn: Lsn, change: Change) -> Result<()> {
        {
            let mut st = self.apply.lock().expect("apply");
            st.ready.insert(lsn, (change, None));
            self.apply_ready(&mut st)?;
        }
        self.wait_applied(lsn)
    }

    /// Applies every ready change whose predecessors are all applied,
    /// firing the signals of the async writers among them. A failure fails
    /// the shard, and every writer still waiting gets the error.
    fn apply_ready(&self, st: &mut ApplyState) -> Result<()> {
        loop {
            let next = st.next;
            let (change, signal) = match st.ready.remove(&next) {
                Some((change, signal)) => (Some(change), signal),
                None if st.ahead.remove(&next) => (None, None),
                None => break,
            };
            let applied = match &change {
                Some(change) => self.state.apply(next, change),
                None => Ok(()),
            }
            .and_then(|()| {
                if next.is_multiple_of(MARK_EVERY) {
                    self.mark_applied(next)
                } else {
                    Ok(())
                }
            });
            if let Err(e) = applied {
                tracing::error!(shard = self.id, lsn = next, error = %e, "apply failed");
                self.fail_waiting(st, &e, signal);
                return Err(e);
            }
            if let Some(Change::Remote { record, .. }) = &change {
                let mut w = self.writer.lock().expect("write lock");
                for key in record.keys() {
                    w.unpend(key, next);
                }
            }
            if let Some(Change::Write { ops, .. } | Change::Prepare { ops, .. }) = &change {
                let mut w = self.writer.lock().expect("write lock");
                for op in ops {
                    let (t, k) = op.target();
                    w.unpend((t, k.to_vec()), next);
                }
            }
            st.next += 1;
            if let Some(signal) = signal {
                signal.fire(Ok(()));
            }
        }
        self.wake_sleepers(st);
        Ok(())
    }

    /// Marks the shard failed after `e` and fails every async writer still
    /// waiting for an apply (`first` among them).
    fn fail_waiting(&self, st: &mut ApplyState, e: &StorageError, first: Option<Arc<Signal>>) {
        self.failed.store(true, Ordering::Release);
        let waiting = first.into_iter().chain(
            std::mem::take(&mut st.ready)
                .into_values()
                .filter_map(|(_, s)| s),
        );
        fail_all(waiting, self.id, &e.to_string());
        self.wake_sleepers(st);
    }

    /// Wakes the threads asleep on an apply, if any.
    fn wake_sleepers(&self, st: &ApplyState) {
        if st.sleepers > 0 {
            self.applied.notify_all();
        }
    }

    /// Sleeps until an apply wakes it or `timeout` passes.
    fn sleep_on_apply<'a>(
        &self,
        mut st: MutexGuard<'a, ApplyState>,
        timeout: Duration,
    ) -> MutexGuard<'a, ApplyState> {
        st.sleepers += 1;
        let mut st = self.applied.wait_timeout(st, timeout).expect("apply").0;
        st.sleepers -= 1;
        st
    }

    fn wait_applied(&self, lsn: Lsn) -> Result<()> {
        let mut st = self.apply.lock().expect("apply");
        while st.next <= lsn {
            self.check_failed()?;
            st = self.sleep_on_apply(st, Duration::from_millis(100));
        }
        Ok(())
    }

    fn apply_catalog(&self, txid: TxnId, catalog: &Catalog) -> Result<u64> {
        self.check_failed()?;
        let mut w = self.writer.lock().expect("write lock");
        if catalog.version <= self.catalog().version {
            return Ok(0);
        }
        let payload = postcard::to_stdvec(catalog).map_err(codec)?;
        let lsn = self
            .wal
            .append(txid, self.clock.now().0, KIND_CATALOG, &payload)?;
        w.last_appended = lsn;
        w.last_catalog = lsn;
        drop(w);
        self.commit(lsn, Change::Catalog(catalog.clone()))?;
        Ok(1)
    }
}

impl Shard for ShardStore {
    fn id(&self) -> ShardId {
        self.id
    }

    fn try_read(&self, fragment: &Fragment) -> Option<Result<FragmentOutput>> {
        // Only a point read (the whole primary key): it stays short.
        self.point_read(fragment)
    }

    fn try_write(&self, txid: TxnId, fragment: &Fragment) -> Option<Result<PendingWrite>> {
        if !self.committing.load(Ordering::Acquire) {
            return None;
        }
        let done = |n: Result<u64>| -> Option<Result<PendingWrite>> {
            Some(n.map(|n| -> PendingWrite {
                Box::pin(std::future::ready(Ok(FragmentOutput::Count(n))))
            }))
        };
        match fragment {
            Fragment::CommitTxn { writes, .. } | Fragment::Prepare { writes, .. }
                if writes.len() <= INLINE_WRITES => {}
            // Applied at once, never waiting for another record.
            Fragment::CommitPrepared { txid, commit_ts } => {
                return done(self.resolve(*txid, Some(*commit_ts)))
            }
            Fragment::AbortPrepared { txid } => return done(self.resolve(*txid, None)),
            _ => return None,
        }
        match self.log_write(txid, fragment) {
            Err(e) => Some(Err(e)),
            Ok(Logged::Nothing) => done(Ok(0)),
            Ok(Logged::Appended { lsn, change, out }) if is_logged_vote(&out) => Some(
                self.lock_prepared(lsn, change)
                    .map(|()| -> PendingWrite { Box::pin(std::future::ready(Ok(out))) }),
            ),
            Ok(Logged::Appended { lsn, change, out }) => {
                Some(Ok(self.finish_async(lsn, change, out)))
            }
            Ok(Logged::Locked | Logged::Applying(_)) => None,
        }
    }

    fn execute(&self, txid: TxnId, fragment: &Fragment) -> Result<FragmentOutput> {
        match fragment {
            Fragment::Scan { .. } => {
                let mut rows = Vec::new();
                self.stream(fragment, &mut |batch| {
                    rows.extend(batch);
                    true
                })?;
                Ok(FragmentOutput::Rows(rows))
            }
            Fragment::Aggregate {
                table,
                key_prefix,
                filter,
                aggregate,
                snapshot,
            } => Ok(FragmentOutput::Rows(self.aggregate(
                *table,
                key_prefix,
                filter.as_ref(),
                aggregate,
                snapshot.map_or(LATEST, |t| t.0),
            )?)),
            Fragment::JoinScan {
                left,
                right,
                kind,
                on,
                limit,
                snapshot,
            } => {
                let snapshot = snapshot.map_or(LATEST, |t| t.0);
                let _left = self.begin_read(snapshot, &ReadScope::Table(left.table))?;
                let _right = self.begin_read(snapshot, &ReadScope::Table(right.table))?;
                let rows = usize::try_from(limit.rows).unwrap_or(usize::MAX);
                let (l, lw) = self.scan_rows(left, snapshot, rows)?;
                let (r, rw) = self.scan_rows(right, snapshot, rows)?;
                let joined = crate::join::join(l, r, lw, rw, *kind, on.as_ref(), *limit)?;
                Ok(FragmentOutput::Rows(joined))
            }
            Fragment::ApplyCatalog(c) => Ok(FragmentOutput::Count(self.apply_catalog(txid, c)?)),
            Fragment::FindKeyViolation { table, columns } => Ok(FragmentOutput::Rows(
                self.find_key_violation(*table, columns)?,
            )),
            Fragment::CommitPrepared { txid, commit_ts } => Ok(FragmentOutput::Count(
                self.resolve(*txid, Some(*commit_ts))?,
            )),
            Fragment::AbortPrepared { txid } => {
                Ok(FragmentOutput::Count(self.resolve(*txid, None)?))
            }
            Fragment::Vacuum { trees } => Ok(FragmentOutput::Count(self.vacuum(trees)?)),
            _ => self.write(txid, fragment),
        }
    }

    fn stream(&self, fragment: &Fragment, sink: &mut dyn FnMut(Vec<Row>) -> bool) -> Result<()> {
        let Fragment::Scan {
            table,
            key_prefix,
            filter,
            projection,
            order_by,
            limit,
            snapshot,
        } = fragment
        else {
            return match self.execute(0, fragment)? {
                FragmentOutput::Rows(rows) => {
                    sink(rows);
                    Ok(())
                }
                FragmentOutput::Count(_) | FragmentOutput::Prepared { .. } => Ok(()),
            };
        };
        if *limit == Some(0) {
            return Ok(());
        }
        let snapshot = snapshot.map_or(LATEST, |t| t.0);
        let point = self.point_key(*table, key_prefix);
        let scope = match &point {
            Some(key) => ReadScope::Key { table: *table, key },
            None => ReadScope::Table(*table),
        };
        let _reader = self.begin_read(snapshot, &scope)?;
        let mut left = limit.unwrap_or(u64::MAX);
        // A point read or a small limit needs no full batch's room.
        let room = if point.is_some() {
            1
        } else {
            left.min(STREAM_BATCH as u64) as usize
        };
        let mut batch = Vec::with_capacity(room);
        let project = |row: Row| project(projection, row);
        // Adds a row to the batch, handing full batches over; false once
        // the limit is reached or the reader is gone.
        let mut emit = |sink: &mut dyn FnMut(Vec<Row>) -> bool, row: Row| {
            batch.push(row);
            left -= 1;
            let more = batch.len() < STREAM_BATCH || sink(std::mem::take(&mut batch));
            more && left > 0
        };
        if order_by.is_empty() {
            self.visit_rows(*table, key_prefix, filter.as_ref(), snapshot, |row| {
                Ok(emit(sink, project(row)?))
            })?;
        } else {
            let mut sorter =
                crate::sort::Sorter::new(order_by, *limit, self.sort_budget, &self.dir);
            let (mut sorted, mut alive) = (0u64, true);
            self.visit_rows(*table, key_prefix, filter.as_ref(), snapshot, |row| {
                sorter.push(project(row)?)?;
                sorted += 1;
                // Sorting sends nothing: ask now and then whether anyone
                // still waits for the result.
                if sorted % PROBE_EVERY == 0 {
                    alive = sink(Vec::new());
                }
                Ok(alive)
            })?;
            if !alive {
                return Ok(());
            }
            sorter.finish(|row| Ok(emit(sink, row)))?;
        }
        if !batch.is_empty() {
            sink(batch);
        }
        Ok(())
    }

    fn catalog(&self) -> Catalog {
        self.state.catalog.read().expect("catalog").clone()
    }

    fn sync_log(&self) -> Result<()> {
        self.check_failed()?;
        self.wal.wait_durable(self.wal.last_lsn())
    }

    fn in_doubt(&self) -> Vec<TxnId> {
        self.state
            .prepared
            .lock()
            .expect("prepared")
            .txns
            .keys()
            .copied()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prepared_at(lsn: Lsn) -> PreparedTxn {
        PreparedTxn {
            ts: lsn * 10,
            ops: Vec::new(),
            lsn,
            participants: Vec::new(),
        }
    }

    #[test]
    fn the_prepare_floor_waits_for_a_resolution_to_be_durable() {
        let mut set = PreparedSet::default();
        set.add(1, prepared_at(10));
        set.add(2, prepared_at(12));
        assert_eq!(set.floor(20), 9, "below the oldest PREPARE");
        // Transaction 1 is committed by the record at 30, not yet durable:
        // a crash could lose it, so replay must still see its PREPARE.
        set.remove(1, 30);
        assert_eq!(set.floor(20), 9);
        // Once the log is durable through 30, only transaction 2 holds it.
        assert_eq!(set.floor(30), 11);
        set.remove(2, 31);
        assert_eq!(set.floor(30), 11);
        assert_eq!(set.floor(40), 40);
    }
}
