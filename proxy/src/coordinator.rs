//! The two-phase-commit coordinator's decision log.
//!
//! A transaction that wrote to several shards is committed in two phases:
//! every participant durably PREPAREs (write set logged, keys locked); then
//! the coordinator logs a COMMIT decision with the commit timestamp and waits
//! for it to be durable; only then does it tell the participants to commit.
//! At start-up every in-doubt transaction on a shard is committed if this log
//! holds its decision and aborted otherwise (presumed abort).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Mutex;

use fortress_storage::wal::{Wal, WalOptions};
use fortress_storage::{StorageError, Timestamp, TxnId};

const KIND_COMMIT: u8 = 1;
const KIND_DONE: u8 = 2;

/// Durable commit decisions of multi-shard transactions.
pub struct Coordinator {
    wal: Wal,
    decisions: Mutex<HashMap<TxnId, Timestamp>>,
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

    /// Records that every participant has applied `txid`'s outcome.
    pub fn log_done(&self, txid: TxnId) -> Result<(), StorageError> {
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
