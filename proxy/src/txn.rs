//! Session transactions, with writes buffered in the session until COMMIT.
//!
//! REPEATABLE READ (and SERIALIZABLE, served the same way) is snapshot
//! isolation: BEGIN takes one snapshot timestamp from the cluster clock and
//! every read reads all shards at it, then overlays the transaction's own
//! buffered writes (read-your-writes). READ COMMITTED, PostgreSQL's default,
//! takes a fresh snapshot per statement, and its UPDATEs and DELETEs lock
//! the rows they change ([`crate::locks`]) and work on the latest committed
//! version. COMMIT sends the buffer to the owning shard, which applies it as
//! one WAL record unless some key has a version newer than the one the
//! write was computed from (first committer wins, 40001). A buffer spanning
//! several shards commits by two-phase commit.

use std::collections::BTreeMap;

use fortress_storage::keycodec::encode_key;
use std::sync::Arc;

use fortress_storage::{Expr, PinGuard, Row, TableDef, TableId, Timestamp, TxnWrite, Value};

use crate::error::Result;
use crate::locks::HeldLocks;

/// The isolation a transaction block runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isolation {
    ReadCommitted,
    /// Snapshot isolation; also what SERIALIZABLE gets.
    RepeatableRead,
}

impl Isolation {
    /// From PostgreSQL's spelling (`transaction_isolation` values).
    pub fn parse(text: &str) -> Option<Isolation> {
        match text.to_lowercase().as_str() {
            "read committed" | "read uncommitted" => Some(Isolation::ReadCommitted),
            "repeatable read" | "serializable" => Some(Isolation::RepeatableRead),
            _ => None,
        }
    }
}

/// An open transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    /// What reads see: the transaction's snapshot, or under READ COMMITTED
    /// the current statement's.
    pub snapshot: Timestamp,
    /// When the transaction began: what now() returns throughout it.
    pub start: Timestamp,
    writes: BTreeMap<(TableId, Vec<u8>), TxnWrite>,
    /// Keeps garbage collection from removing what the snapshot can see,
    /// for as long as the transaction (or its session) lives.
    _pin: Arc<PinGuard>,
    /// Row locks (READ COMMITTED only), released when the transaction ends.
    locks: Option<Arc<HeldLocks>>,
}

impl Txn {
    /// A snapshot-isolation transaction.
    pub fn new(snapshot: Timestamp, pin: PinGuard) -> Txn {
        Txn {
            snapshot,
            start: snapshot,
            writes: BTreeMap::new(),
            _pin: Arc::new(pin),
            locks: None,
        }
    }

    /// A READ COMMITTED transaction locking rows in `locks`.
    pub fn read_committed(snapshot: Timestamp, pin: PinGuard, locks: HeldLocks) -> Txn {
        Txn {
            locks: Some(Arc::new(locks)),
            ..Txn::new(snapshot, pin)
        }
    }

    /// The row locks of a READ COMMITTED transaction.
    pub fn locks(&self) -> Option<&Arc<HeldLocks>> {
        self.locks.as_ref()
    }

    /// Primary-key values of `row`.
    pub fn key_of(table: &TableDef, row: &Row) -> Vec<Value> {
        table.primary_key.iter().map(|&i| row[i].clone()).collect()
    }

    /// The buffered write for this key, if any.
    pub fn get(&self, table: TableId, key: &[Value]) -> Option<&TxnWrite> {
        self.writes.get(&(table, encode_key(key)))
    }

    /// Buffers a new value (or a delete) for a key, keeping track of whether
    /// the key is new to the database (an insert) or not.
    pub fn put(&mut self, table: TableId, key: Vec<Value>, row: Option<Row>, insert: bool) {
        let slot = (table, encode_key(&key));
        match (self.writes.get(&slot).map(|w| w.insert), &row) {
            // Inserted and deleted in this transaction: nothing to write.
            (Some(true), None) => {
                self.writes.remove(&slot);
            }
            (prev, _) => {
                let insert = prev.unwrap_or(insert);
                // A READ COMMITTED write was computed from what this
                // statement read; conflicts are counted from then.
                let read_ts = self.locks.is_some().then_some(self.snapshot);
                self.writes.insert(
                    slot,
                    TxnWrite {
                        table,
                        key,
                        row,
                        insert,
                        read_ts,
                    },
                );
            }
        }
    }

    /// The tables the transaction has buffered writes to.
    pub fn tables(&self) -> Vec<TableId> {
        let mut v: Vec<TableId> = self.writes.keys().map(|(t, _)| *t).collect();
        v.dedup();
        v
    }

    /// True if the transaction has buffered writes to `table`.
    pub fn touches(&self, table: TableId) -> bool {
        self.writes.keys().any(|(t, _)| *t == table)
    }

    /// Replaces rows read at the snapshot with this transaction's own
    /// versions: buffered keys are dropped and buffered live rows that pass
    /// `filter` are added.
    pub fn overlay(
        &self,
        table: &TableDef,
        rows: Vec<Row>,
        filter: Option<&Expr>,
    ) -> Result<Vec<Row>> {
        let mut out: Vec<Row> = rows
            .into_iter()
            .filter(|r| self.get(table.id, &Self::key_of(table, r)).is_none())
            .collect();
        for ((t, _), w) in &self.writes {
            if *t != table.id {
                continue;
            }
            if let Some(row) = &w.row {
                let pass = match filter {
                    Some(f) => f.matches(row)?,
                    None => true,
                };
                if pass {
                    out.push(row.clone());
                }
            }
        }
        Ok(out)
    }

    /// The buffered writes, consumed for COMMIT.
    pub fn into_writes(self) -> Vec<TxnWrite> {
        self.writes.into_values().collect()
    }
}

/// Where a session stands.
#[derive(Debug, Clone, Default)]
pub enum TxnState {
    #[default]
    Idle,
    Active(Txn),
    /// An error happened inside the block: only ROLLBACK/COMMIT are accepted.
    Failed,
}

impl TxnState {
    /// The ReadyForQuery status byte this state is reported with.
    pub fn status(&self) -> u8 {
        match self {
            TxnState::Idle => b'I',
            TxnState::Active(_) => b'T',
            TxnState::Failed => b'E',
        }
    }
}
