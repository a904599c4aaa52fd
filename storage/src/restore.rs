//! Rebuilding one shard from a checkpoint and the WAL that follows it.
//!
//! The restored shard gets a fresh log, written here, that
//! [`crate::ShardStore::open`] then replays like any other: the checkpoint's
//! catalog, its rows (each version keeping its commit timestamp), then the
//! source log's records after the checkpoint up to the target. The source is
//! only read. Two-phase-commit records become plain writes at their commit
//! timestamp, so the restored shard has nothing in doubt: a transaction
//! prepared but not committed by the target is left out (presumed abort)
//! unless the coordinator's log holds a commit decision within the target.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::checkpoint::{read_file, ShardCut};
use crate::cipher::Cipher;
use crate::error::{Result, StorageError};
use crate::keycodec::split_versioned;
use crate::mvcc::decode_version;
use crate::schema::Catalog;
use crate::shard::{
    WriteOp, KIND_ABORT_PREPARED, KIND_CATALOG, KIND_COMMIT_PREPARED, KIND_LOAD, KIND_PREPARE,
    KIND_WRITE,
};
use crate::wal::{read_from, Lsn, Record, Wal, WalOptions};
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

/// What to rebuild one shard from.
pub struct ShardSource<'a> {
    /// The checkpoint directory and this shard's part of it, if any.
    pub checkpoint: Option<(&'a Path, &'a ShardCut)>,
    /// The catalog at the checkpoint (empty without one).
    pub catalog: &'a Catalog,
    /// The source shard's log directory.
    pub wal: PathBuf,
    pub cutoff: Cutoff,
    /// Multi-shard transactions the target cuts in half: left out everywhere.
    pub excluded: &'a HashSet<TxnId>,
    /// Commit decisions from the source's coordinator log.
    pub decisions: &'a HashMap<TxnId, u64>,
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
) -> Result<RestoreStats> {
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
        let payload = postcard::to_stdvec(src.catalog).map_err(codec)?;
        out.append(0, 0, KIND_CATALOG, &payload)?;
        for t in &cut.tables {
            load_table(&mut out, &dir.join(&t.file), t.table, src.cipher.as_deref())?;
        }
    }
    if src.cutoff != Cutoff::Checkpoint {
        replay(&mut out, src, after)?;
    }
    let last = out.wal.last_lsn();
    out.wal.wait_durable(last)?;
    Ok(out.stats)
}

/// Loads one table file as loaded-rows records.
fn load_table(
    out: &mut Output<'_>,
    path: &Path,
    table: crate::schema::TableId,
    cipher: Option<&Cipher>,
) -> Result<()> {
    let mut batch: Vec<(u64, WriteOp)> = Vec::new();
    let mut size = 0usize;
    let mut newest = 0u64;
    let flush = |out: &mut Output<'_>, batch: &mut Vec<(u64, WriteOp)>, newest: u64| {
        if batch.is_empty() {
            return Ok(());
        }
        let payload = postcard::to_stdvec(&*batch).map_err(codec)?;
        batch.clear();
        out.append(0, newest, KIND_LOAD, &payload)
    };
    let summary = read_file(path, cipher, |key, value| {
        let bad = || StorageError::Corruption {
            file: path.to_path_buf(),
            offset: 0,
            reason: "a row file entry is not a stored version".into(),
        };
        let (pk, ts) = split_versioned(key).ok_or_else(bad)?;
        let row = decode_version(value)?.ok_or_else(bad)?;
        size += key.len() + value.len();
        newest = newest.max(ts);
        batch.push((
            ts,
            WriteOp::Put {
                table,
                key: pk.to_vec(),
                row,
            },
        ));
        if size >= LOAD_RECORD_BYTES {
            flush(out, &mut batch, newest)?;
            size = 0;
        }
        out.stats.rows += 1;
        Ok(())
    })?;
    flush(out, &mut batch, newest)?;
    out.read(summary.bytes);
    Ok(())
}

/// Copies the source log's records after `after` that the cutoff keeps.
fn replay(out: &mut Output<'_>, src: &ShardSource<'_>, after: Lsn) -> Result<()> {
    let keeps_ts = |ts: u64| match src.cutoff {
        Cutoff::Time(t) => ts <= t,
        _ => true,
    };
    // Prepared write sets awaiting their outcome: (prepare ts, payload).
    let mut prepared: HashMap<TxnId, Vec<u8>> = HashMap::new();
    let mut stopped_by_lsn = false;
    read_from(&src.wal, after, src.cipher.as_deref(), |rec: &Record| {
        if let Cutoff::Lsn(n) = src.cutoff {
            if rec.lsn > n {
                stopped_by_lsn = true;
                return Ok(false);
            }
        }
        out.read(rec.payload.len() as u64 + 33);
        out.stats.last_lsn = rec.lsn;
        out.stats.replayed += 1;
        match rec.kind {
            KIND_WRITE | KIND_CATALOG if keeps_ts(rec.ts) => {
                out.append(rec.txid, rec.ts, rec.kind, &rec.payload)?;
            }
            KIND_WRITE | KIND_CATALOG => {}
            KIND_PREPARE => {
                prepared.insert(rec.txid, rec.payload.clone());
            }
            KIND_COMMIT_PREPARED => {
                let ops = prepared.remove(&rec.txid);
                if keeps_ts(rec.ts) && !src.excluded.contains(&rec.txid) {
                    let payload = match ops {
                        _ if !rec.payload.is_empty() => rec.payload.clone(),
                        Some(p) => p,
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
                prepared.remove(&rec.txid);
            }
            KIND_LOAD => out.append(rec.txid, rec.ts, rec.kind, &rec.payload)?,
            k => {
                return Err(StorageError::Codec(format!(
                    "unknown WAL record kind {k} at LSN {}",
                    rec.lsn
                )))
            }
        }
        Ok(true)
    })?;
    // Prepared when the log ends: committed only if the coordinator decided
    // so within the target. An LSN target cuts by position, not decisions.
    if !stopped_by_lsn && !matches!(src.cutoff, Cutoff::Lsn(_)) {
        let mut left: Vec<_> = prepared.into_iter().collect();
        left.sort_by_key(|(txid, _)| *txid);
        for (txid, payload) in left {
            match src.decisions.get(&txid) {
                Some(&ts) if keeps_ts(ts) && !src.excluded.contains(&txid) => {
                    out.append(txid, ts, KIND_WRITE, &payload)?;
                }
                _ => {}
            }
        }
    }
    Ok(())
}

/// For LSN targets: the multi-shard transactions whose commit record lies
/// within the target on some shard but not on another. `logs` gives each
/// shard's log, the LSN replay starts after, and its target.
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
                KIND_PREPARE => {
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
        // Prepared here with no commit record at all: cut off here.
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
