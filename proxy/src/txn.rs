//! Session transactions: snapshot isolation with writes buffered in the
//! session until COMMIT.
//!
//! BEGIN takes one snapshot timestamp from the cluster clock; every read in
//! the transaction reads all shards at it and then overlays the transaction's
//! own buffered writes (read-your-writes). COMMIT sends the buffer to the
//! owning shard, which applies it as one WAL record unless some key has a
//! version newer than the snapshot (first committer wins, 40001). A buffer
//! spanning several shards commits by two-phase commit.

use std::collections::BTreeMap;

use fortress_storage::keycodec::encode_key;
use std::sync::Arc;

use fortress_storage::{Expr, PinGuard, Row, TableDef, TableId, Timestamp, TxnWrite, Value};

use crate::error::Result;

/// An open transaction.
#[derive(Debug, Clone)]
pub struct Txn {
    pub snapshot: Timestamp,
    writes: BTreeMap<(TableId, Vec<u8>), TxnWrite>,
    /// Keeps garbage collection from removing what the snapshot can see,
    /// for as long as the transaction (or its session) lives.
    _pin: Arc<PinGuard>,
}

impl Txn {
    pub fn new(snapshot: Timestamp, pin: PinGuard) -> Txn {
        Txn {
            snapshot,
            writes: BTreeMap::new(),
            _pin: Arc::new(pin),
        }
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
                self.writes.insert(
                    slot,
                    TxnWrite {
                        table,
                        key,
                        row,
                        insert,
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
