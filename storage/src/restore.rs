//! Rebuilding one shard from a checkpoint and the WAL that follows it.
//!
//! The restored shard gets a fresh log, written here, that
//! [`crate::ShardStore::open`] then replays like any other: the checkpoint's
//! catalog, its rows (each version keeping its commit timestamp), then the
//! source log's records after the checkpoint up to the target. The source is
//! only read. Two-phase-commit records become plain writes at their commit
//! timestamp, so the restored shard has nothing in doubt. A transaction the
//! shard's log leaves prepared is decided once every shard's log is read
//! (see [`decide`]): by the coordinator's log, or, as a restart decides, by
//! whether every participant's log holds its PREPARE (then it committed at
//! the greatest of their timestamps). A commit within the target is
//! applied, anything else left out.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{read_file, Manifest, ShardCut, TableFile};
use crate::cipher::Cipher;
use crate::error::{Result, StorageError};
use crate::keycodec::split_versioned;
use crate::mvcc::decode_version;
use crate::shard::{
    PrepareRecord, RemoteRecord, WriteOp, KIND_ABORT_PREPARED, KIND_CATALOG, KIND_COMMIT_PREPARED,
    KIND_LOAD, KIND_PREPARE, KIND_PREPARE_ALL, KIND_REMOTE, KIND_WRITE,
};
use crate::wal::{read_from, Lsn, Record, Wal, WalOptions};
use crate::ShardId;
use crate::ShardStore;
use crate::TxnId;

/// Payload bytes gathered into one loaded-rows record.
const LOAD_RECORD_BYTES: usize = 1 << 20;

/// How far a shard's log is replayed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cutoff {
    /// The checkpoint alone.
    Checkpoint,
    /// Every record in the log.
    Latest,
    /// Records committed at or before this hybrid-clock timestamp.
    Time(u64),
    /// Records at or below this LSN of this shard's log.
    Lsn(Lsn),
}

impl Cutoff {
    fn keeps(&self, ts: u64) -> bool {
        match self {
            Cutoff::Time(t) => ts <= *t,
            _ => true,
        }
    }
}

/// What to rebuild one shard from.
pub struct ShardSource<'a> {
    /// Which shard this is (participants name each other by it).
    pub shard: ShardId,
    /// The checkpoint directory and this shard's part of it, if any.
    pub checkpoint: Option<(&'a Path, &'a ShardCut)>,
    /// The checkpoint's manifest (an empty one without a checkpoint).
    pub manifest: &'a Manifest,
    /// The source shard's log directory.
    pub wal: PathBuf,
    pub cutoff: Cutoff,
    /// The key the source was written with, which also seals the new log.
    pub cipher: Option<Arc<Cipher>>,
}

/// What a shard restore did.
#[derive(Clone, Copy, Debug, Default)]
pub struct RestoreStats {
    /// Rows loaded from the checkpoint.
    pub rows: u64,
    /// Source log records replayed.
    pub replayed: u64,
    /// Checkpoint and WAL bytes read.
    pub bytes: u64,
    /// Last source LSN replayed (the checkpoint's position without replay).
    pub last_lsn: Lsn,
}

/// A transaction the source log left prepared.
struct Prepared {
    /// Its write set, as a plain write's payload.
    ops: Vec<u8>,
    /// Every participant, if its PREPARE named them.
    participants: Vec<ShardId>,
}

impl Prepared {
    /// From the payload of a PREPARE naming its participants.
    fn from_record(payload: &[u8]) -> Result<Prepared> {
        let r: PrepareRecord = postcard::from_bytes(payload).map_err(codec)?;
        Ok(Prepared {
            ops: postcard::to_stdvec(&r.ops).map_err(codec)?,
            participants: r.participants,
        })
    }
}

/// A shard whose log is written but for the transactions its source log
/// left prepared, which wait for [`decide`].
pub struct PendingShard {
    shard: ShardId,
    wal: Wal,
    stats: RestoreStats,
    cutoff: Cutoff,
    /// Prepared write sets with no outcome in the source log.
    prepared: BTreeMap<TxnId, Prepared>,
    /// The timestamp of every PREPARE naming its participants that the
    /// source log holds, resolved or not: this shard's votes.
    votes: HashMap<TxnId, u64>,
    /// Transactions whose commit or abort the source log holds.
    resolved: HashSet<TxnId>,
    /// Where the replay of the source log started (the checkpoint's cut).
    after: Lsn,
}

/// The commit timestamp of each transaction some shard left prepared and
/// that committed: by the coordinator's log (`logged`, txid to commit
/// timestamp, or `None` for an abort) if every participant's log holds
/// it, else if every participant's log voted for it, at the greatest of
/// their votes.
pub fn decide(
    shards: &[PendingShard],
    logged: &HashMap<TxnId, Option<u64>>,
) -> HashMap<TxnId, u64> {
    let by_id: HashMap<ShardId, &PendingShard> = shards.iter().map(|s| (s.shard, s)).collect();
    let mut out = HashMap::new();
    for (&txid, p) in shards.iter().flat_map(|s| s.prepared.iter()) {
        if let Some(outcome) = logged.get(&txid) {
            // Committed, but a participant's log ends before the
            // transaction reached it (a copy cut at an instant before the
            // decision, see `fortress::dr::ship`): left out everywhere,
            // never applied on some shards only.
            // (A participant outside this restore has no say.)
            let whole = p.participants.iter().all(|s| {
                by_id
                    .get(s)
                    .is_none_or(|s| s.prepared.contains_key(&txid) || s.resolved.contains(&txid))
            });
            if let (Some(ts), true) = (outcome, whole) {
                out.insert(txid, *ts);
            }
            continue;
        }
        let votes: Option<Vec<u64>> = p
            .participants
            .iter()
            .map(|s| by_id.get(s).and_then(|s| s.votes.get(&txid).copied()))
            .collect();
        if let Some(ts) = votes.and_then(|v| v.into_iter().max()) {
            out.insert(txid, ts);
        }
    }
    out
}

impl PendingShard {
    /// Takes in a PREPARE of `txid` that the coordinator's log carries as
    /// a vote (logged at `lsn` of this shard's source log) when the source
    /// log lost it with a tail never synced: the replay, which covers `lsn`,
    /// met no record of the transaction (its LSN may since hold another
    /// record). It then waits for [`decide`] like a PREPARE the log left
    /// undecided. An LSN target cuts by position, so there it is left out
    /// like any transaction without a commit record.
    pub fn adopt_vote(&mut self, txid: TxnId, lsn: Lsn, record: &[u8]) -> Result<()> {
        let within = matches!(self.cutoff, Cutoff::Latest | Cutoff::Time(_));
        let seen = self.votes.contains_key(&txid)
            || self.prepared.contains_key(&txid)
            || self.resolved.contains(&txid);
        if !within || seen || lsn <= self.after {
            return Ok(());
        }
        self.prepared.insert(txid, Prepared::from_record(record)?);
        Ok(())
    }

    /// Applies the prepared transactions that `decisions` (txid to commit
    /// timestamp, see [`decide`]) committed within the target, and makes
    /// the log durable.
    pub fn finish(mut self, decisions: &HashMap<TxnId, u64>) -> Result<RestoreStats> {
        for (txid, p) in std::mem::take(&mut self.prepared) {
            if let Some(&ts) = decisions.get(&txid) {
                if self.cutoff.keeps(ts) {
                    self.wal.append(txid, ts, KIND_WRITE, &p.ops)?;
                }
            }
        }
        let last = self.wal.last_lsn();
        self.wal.wait_durable(last)?;
        Ok(self.stats)
    }
}

/// Appends records to the new shard's log, reporting bytes read.
struct Output<'a> {
    wal: Wal,
    stats: RestoreStats,
    progress: &'a mut dyn FnMut(u64),
}

impl Output<'_> {
    fn append(&mut self, txid: u64, ts: u64, kind: u8, payload: &[u8]) -> Result<()> {
        self.wal.append(txid, ts, kind, payload)?;
        Ok(())
    }

    fn read(&mut self, bytes: u64) {
        self.stats.bytes += bytes;
        (self.progress)(bytes);
    }
}

fn codec<E: std::fmt::Display>(e: E) -> StorageError {
    StorageError::Codec(e.to_string())
}

/// Writes the log of a restored shard into `new_dir/wal`. `progress` is
/// called with the bytes of each piece of input read.
pub fn restore_shard(
    src: &ShardSource<'_>,
    new_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<PendingShard> {
    let opts = WalOptions {
        cipher: src.cipher.clone(),
        ..WalOptions::default()
    };
    let wal = Wal::open(&new_dir.join("wal"), opts, 0, |_| {
        Err(StorageError::Codec(format!(
            "{} already holds a log",
            new_dir.display()
        )))
    })?;
    let mut out = Output {
        wal,
        stats: RestoreStats::default(),
        progress,
    };
    let mut after = 0;
    if let Some((dir, cut)) = src.checkpoint {
        after = cut.wal_after;
        out.stats.last_lsn = cut.wal_through;
        let payload = postcard::to_stdvec(&src.manifest.catalog).map_err(codec)?;
        out.append(0, src.manifest.snapshot, KIND_CATALOG, &payload)?;
        for t in &cut.tables {
            load_table(&mut out, dir, t, src)?;
        }
        // Stamps and siblings back as records that store them.
        for f in &cut.peer_files {
            let mut entries = Vec::new();
            let mut size = 0;
            let snapshot = src.manifest.snapshot;
            let wal = &out.wal;
            let bytes = read_peer_file(dir, f, src, &mut |kind, k, v| {
                size += k.len() + v.len();
                entries.push((k.to_vec(), v.to_vec()));
                if size >= LOAD_RECORD_BYTES {
                    let payload = RemoteRecord::encode_stored(kind, &entries)?;
                    wal.append(0, snapshot, KIND_REMOTE, &payload)?;
                    entries.clear();
                    size = 0;
                }
                Ok(())
            })?;
            if !entries.is_empty() {
                let payload = RemoteRecord::encode_stored(&f.name, &entries)?;
                out.wal.append(0, snapshot, KIND_REMOTE, &payload)?;
            }
            out.read(bytes);
        }
    }
    let mut replayed = Replayed::default();
    if src.cutoff != Cutoff::Checkpoint {
        replayed = replay(&mut out, src, after)?;
    }
    Ok(PendingShard {
        shard: src.shard,
        wal: out.wal,
        stats: out.stats,
        cutoff: src.cutoff,
        prepared: replayed.prepared,
        votes: replayed.votes,
        resolved: replayed.resolved,
        after,
    })
}

/// Loads one table file as loaded-rows records. Each record carries the
/// checkpoint's snapshot as its timestamp: no earlier point can be
/// recovered from a log that starts with them.
fn load_table(
    out: &mut Output<'_>,
    dir: &Path,
    file: &TableFile,
    src: &ShardSource<'_>,
) -> Result<()> {
    let wal = &out.wal;
    let (rows, bytes) = read_table(dir, file, src, &mut |batch| {
        let payload = postcard::to_stdvec(batch).map_err(codec)?;
        wal.append(0, src.manifest.snapshot, KIND_LOAD, &payload)?;
        Ok(())
    })?;
    out.stats.rows += rows;
    out.read(bytes);
    Ok(())
}

/// Takes rows as `(commit timestamp, put)` batches.
pub(crate) type RowSink<'a> = dyn FnMut(&[(u64, WriteOp)]) -> Result<()> + 'a;

/// Takes a checkpoint's peer file entries: its kind (`stamps` or
/// `siblings`), then each stored key and value.
pub(crate) type PeerSink<'a> = dyn FnMut(&str, &[u8], &[u8]) -> Result<()> + 'a;

/// Reads a checkpoint's peer file (see [`ShardCut::peer_files`]), checked
/// against its manifest, handing each entry to `sink`; the bytes read.
fn read_peer_file(
    dir: &Path,
    file: &TableFile,
    src: &ShardSource<'_>,
    sink: &mut PeerSink<'_>,
) -> Result<u64> {
    let path = &dir.join(&file.file);
    let summary = read_file(path, &file.file, src.cipher.as_deref(), |k, v| {
        sink(&file.name, k, v)
    })?;
    src.manifest.check_file(dir, file, &summary)?;
    Ok(summary.bytes)
}

/// Reads one table file of a checkpoint, checked against its manifest,
/// handing its rows to `sink` as `(commit timestamp, put)` batches of
/// about [`LOAD_RECORD_BYTES`]. Returns the rows and the bytes read.
fn read_table(
    dir: &Path,
    file: &TableFile,
    src: &ShardSource<'_>,
    sink: &mut RowSink<'_>,
) -> Result<(u64, u64)> {
    let path = &dir.join(&file.file);
    let table = file.table;
    let mut batch: Vec<(u64, WriteOp)> = Vec::new();
    let mut size = 0usize;
    let mut rows = 0u64;
    let summary = read_file(path, &file.file, src.cipher.as_deref(), |key, value| {
        let bad = |reason: String| StorageError::Corruption {
            file: path.to_path_buf(),
            offset: 0,
            reason,
        };
        let (pk, ts) =
            split_versioned(key).ok_or_else(|| bad("an entry's key has no version".into()))?;
        let row = decode_version(value)
            .map_err(|e| bad(format!("an entry is not a stored row: {e}")))?
            .ok_or_else(|| bad("an entry is a deletion".into()))?;
        size += key.len() + value.len();
        batch.push((
            ts,
            WriteOp::Put {
                table,
                key: pk.to_vec(),
                row,
            },
        ));
        if size >= LOAD_RECORD_BYTES {
            sink(&batch)?;
            batch.clear();
            size = 0;
        }
        rows += 1;
        Ok(())
    })?;
    if !batch.is_empty() {
        sink(&batch)?;
    }
    src.manifest.check_file(dir, file, &summary)?;
    Ok((rows, summary.bytes))
}

/// Makes `new_dir` the store of a copy of shard `src.shard` that continues
/// the source's own log: the checkpoint's catalog and rows become the store
/// (not records of a new log, as [`restore_shard`] writes), and the copy's
/// log must continue after the cut's `wal_after` with the source's
/// records, LSN for LSN. This is how a standby starts from an archive
/// rather than from its primary's first record. Returns the rows loaded
/// and checkpoint bytes read, and where the log must continue after.
pub fn install_base(
    src: &ShardSource<'_>,
    new_dir: &Path,
    progress: &mut dyn FnMut(u64),
) -> Result<(RestoreStats, Lsn)> {
    let Some((dir, cut)) = src.checkpoint else {
        return Err(StorageError::Codec(format!(
            "shard {} has no part in the checkpoint",
            src.shard
        )));
    };
    let mut stats = RestoreStats {
        last_lsn: cut.wal_after,
        ..RestoreStats::default()
    };
    let mut peer_bytes = 0;
    ShardStore::create_base(
        new_dir,
        &src.manifest.catalog,
        cut.wal_after,
        |apply| {
            for t in &cut.tables {
                let (rows, bytes) = read_table(dir, t, src, apply)?;
                stats.rows += rows;
                stats.bytes += bytes;
                progress(bytes);
            }
            Ok(())
        },
        |store| {
            for f in &cut.peer_files {
                peer_bytes += read_peer_file(dir, f, src, store)?;
            }
            Ok(())
        },
    )?;
    stats.bytes += peer_bytes;
    Ok((stats, cut.wal_after))
}

/// Copies the source log's records after `after` that the cutoff keeps;
/// returns what it met of two-phase transactions.
fn replay(out: &mut Output<'_>, src: &ShardSource<'_>, after: Lsn) -> Result<Replayed> {
    let mut prepared: BTreeMap<TxnId, Prepared> = BTreeMap::new();
    let mut votes = HashMap::new();
    let mut resolved = HashSet::new();
    let mut stopped_by_lsn = false;
    let end = read_from(&src.wal, after, src.cipher.as_deref(), |rec: &Record| {
        if let Cutoff::Lsn(n) = src.cutoff {
            if rec.lsn > n {
                if rec.kind == KIND_LOAD {
                    return Err(before_base(&src.wal, rec));
                }
                stopped_by_lsn = true;
                return Ok(false);
            }
        }
        out.read(rec.payload.len() as u64 + 33);
        out.stats.last_lsn = rec.lsn;
        out.stats.replayed += 1;
        match rec.kind {
            KIND_WRITE | KIND_CATALOG | KIND_REMOTE if src.cutoff.keeps(rec.ts) => {
                out.append(rec.txid, rec.ts, rec.kind, &rec.payload)?;
            }
            KIND_WRITE | KIND_CATALOG | KIND_REMOTE => {}
            KIND_LOAD if src.cutoff.keeps(rec.ts) => {
                out.append(rec.txid, rec.ts, rec.kind, &rec.payload)?;
            }
            KIND_LOAD => return Err(before_base(&src.wal, rec)),
            KIND_PREPARE => {
                let p = Prepared {
                    ops: rec.payload.clone(),
                    participants: Vec::new(),
                };
                prepared.insert(rec.txid, p);
            }
            KIND_PREPARE_ALL => {
                prepared.insert(rec.txid, Prepared::from_record(&rec.payload)?);
                votes.insert(rec.txid, rec.ts);
            }
            KIND_COMMIT_PREPARED => {
                resolved.insert(rec.txid);
                let ops = prepared.remove(&rec.txid);
                if src.cutoff.keeps(rec.ts) {
                    let payload = match ops {
                        _ if !rec.payload.is_empty() => rec.payload.clone(),
                        Some(p) => p.ops,
                        None => {
                            return Err(StorageError::Codec(format!(
                                "the commit of transaction {} at LSN {} carries no writes and its prepare is before the checkpoint",
                                rec.txid, rec.lsn
                            )))
                        }
                    };
                    out.append(rec.txid, rec.ts, KIND_WRITE, &payload)?;
                }
            }
            KIND_ABORT_PREPARED => {
                resolved.insert(rec.txid);
                prepared.remove(&rec.txid);
            }
            k => {
                return Err(StorageError::Codec(format!(
                    "unknown WAL record kind {k} at LSN {}",
                    rec.lsn
                )))
            }
        }
        Ok(true)
    })?;
    // A log that ends before the checkpoint's position is not the log the
    // checkpoint was taken from (or it lost records).
    if let Some((_, cut)) = src.checkpoint {
        if end < cut.wal_through {
            return Err(StorageError::Corruption {
                file: src.wal.clone(),
                offset: 0,
                reason: format!(
                    "the log ends at LSN {end}, before the checkpoint's LSN {}: the checkpoint belongs to another log, or records are missing",
                    cut.wal_through
                ),
            });
        }
    }
    if let Cutoff::Lsn(n) = src.cutoff {
        if !stopped_by_lsn && end < n {
            return Err(StorageError::Corruption {
                file: src.wal.clone(),
                offset: 0,
                reason: format!("the log ends at LSN {end}, before the target LSN {n}"),
            });
        }
        // Decided or not, an LSN target cuts by position.
        prepared.clear();
    }
    Ok(Replayed {
        prepared,
        votes,
        resolved,
    })
}

/// What a replay met of two-phase transactions (see [`PendingShard`]).
#[derive(Default)]
struct Replayed {
    prepared: BTreeMap<TxnId, Prepared>,
    votes: HashMap<TxnId, u64>,
    resolved: HashSet<TxnId>,
}

/// The target lies inside rows a previous restore loaded.
fn before_base(wal: &Path, rec: &Record) -> StorageError {
    StorageError::Corruption {
        file: wal.to_path_buf(),
        offset: 0,
        reason: format!(
            "this log starts from a restored checkpoint (LSN {} holds its rows); no point before that checkpoint can be recovered from it",
            rec.lsn
        ),
    }
}

/// For LSN targets: the multi-shard transactions whose commit record lies
/// within the target on some shard but not on another (or that are left
/// prepared on one). Restoring to such a target would keep half of each, so
/// the caller refuses it. `logs` gives each shard's log, the LSN replay
/// starts after, and its target.
pub fn split_transactions(
    logs: &[(PathBuf, Lsn, Lsn)],
    cipher: Option<&Cipher>,
) -> Result<HashSet<TxnId>> {
    // txid -> (committed within a target somewhere, cut off somewhere)
    let mut seen: HashMap<TxnId, (bool, bool)> = HashMap::new();
    for (dir, after, target) in logs {
        let mut open: HashSet<TxnId> = HashSet::new();
        read_from(dir, *after, cipher, |rec| {
            match rec.kind {
                KIND_PREPARE | KIND_PREPARE_ALL if rec.lsn <= *target => {
                    open.insert(rec.txid);
                }
                KIND_COMMIT_PREPARED => {
                    open.remove(&rec.txid);
                    let e = seen.entry(rec.txid).or_default();
                    if rec.lsn <= *target {
                        e.0 = true;
                    } else {
                        e.1 = true;
                    }
                }
                KIND_ABORT_PREPARED => {
                    open.remove(&rec.txid);
                }
                _ => {}
            }
            Ok(true)
        })?;
        // Prepared within the target with no outcome at all: cut off here.
        for txid in open {
            seen.entry(txid).or_default().1 = true;
        }
    }
    Ok(seen
        .into_iter()
        .filter(|(_, (within, cut))| *within && *cut)
        .map(|(txid, _)| txid)
        .collect())
}
