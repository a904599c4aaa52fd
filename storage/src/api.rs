//! The shard interface: typed plan fragments in, rows or counts out.
//!
//! Fragments are values, not SQL text, so a remote shard (another fortress
//! node, or a PostgreSQL server) can later implement [`Shard`] too. This file
//! has no sled dependency.

use serde::{Deserialize, Serialize};

use crate::aggregate::Aggregate;
use crate::clock::Timestamp;
use crate::error::Result;
use crate::expr::{Expr, SortKey};
use crate::join::JoinKind;
use crate::schema::{Catalog, TableId};
use crate::value::{Row, Value};
use crate::wal::Lsn;
use crate::{ShardId, TxnId};

/// Work for one shard.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Fragment {
    /// Rows of `table` whose leading primary-key columns equal `key_prefix`
    /// (empty: all rows) and that pass `filter`, each turned into
    /// `projection`'s values (empty: the whole row), sorted by `order_by`
    /// (over the projected row), at most `limit` of them.
    Scan {
        table: TableId,
        key_prefix: Vec<Value>,
        filter: Option<Expr>,
        projection: Vec<Expr>,
        order_by: Vec<SortKey>,
        limit: Option<u64>,
        /// Read as of this timestamp (waiting for writes below it to apply);
        /// `None` reads the latest applied state.
        snapshot: Option<Timestamp>,
    },
    /// Partial aggregation of the rows a `Scan` with the same fields would
    /// see: `[keys.., (accumulator, count) per call..]` per group, merged
    /// at the proxy by [`crate::aggregate::merge_partials`].
    Aggregate {
        table: TableId,
        key_prefix: Vec<Value>,
        filter: Option<Expr>,
        aggregate: Aggregate,
        snapshot: Option<Timestamp>,
    },
    /// `left JOIN right ON on`, computed on this shard for tables whose
    /// matching rows live on the same shard (co-located on their shard keys,
    /// or `right` replicated): `[left.., right..]` rows, each side read as
    /// its scan says. More than `limit` result rows is 53200.
    JoinScan {
        left: TableScan,
        right: TableScan,
        kind: JoinKind,
        on: Option<Expr>,
        limit: crate::join::WorkLimit,
        snapshot: Option<Timestamp>,
    },
    /// Inserts whole rows (already coerced and defaulted); 23505 if a key exists.
    Insert { table: TableId, rows: Vec<Row> },
    /// Sets `assignments` (column, expression over the old row) on matching rows.
    Update {
        table: TableId,
        key_prefix: Vec<Value>,
        filter: Option<Expr>,
        assignments: Vec<(usize, Expr)>,
    },
    /// Deletes matching rows.
    Delete {
        table: TableId,
        key_prefix: Vec<Value>,
        filter: Option<Expr>,
    },
    /// Installs a new catalog version (DDL); creates and drops table trees.
    ApplyCatalog(Catalog),
    /// The first row of `table` (latest state) with a NULL in `columns`, or
    /// whose `columns` equal another row's: what must not exist before they
    /// become the primary key. 55P03 while a prepared transaction writes
    /// to the table.
    FindKeyViolation { table: TableId, columns: Vec<usize> },
    /// Commits a transaction's buffered writes to this shard as one WAL
    /// record. First committer wins: any key with a version newer than
    /// `snapshot` fails the whole commit with 40001.
    CommitTxn {
        snapshot: Timestamp,
        writes: Vec<TxnWrite>,
    },
    /// Two-phase commit, phase one: validate like `CommitTxn`, then log the
    /// write set and lock its keys until the outcome is known. Returns
    /// [`FragmentOutput::Prepared`].
    Prepare {
        txid: TxnId,
        snapshot: Timestamp,
        writes: Vec<TxnWrite>,
        /// Every shard the transaction prepares on, logged with the write
        /// set: a restart that finds all their PREPAREs durable commits it.
        participants: Vec<ShardId>,
        /// True: the vote is given once the PREPARE is durable. False: it
        /// is given at once, with the record ([`LoggedVote`]), and the
        /// coordinator makes it durable by logging it with its decision, so
        /// a commit waits for one fsync instead of one per participant.
        durable_vote: bool,
    },
    /// Phase two: apply a prepared transaction's writes at `commit_ts`.
    /// Unknown (already resolved) transactions are a no-op.
    CommitPrepared { txid: TxnId, commit_ts: Timestamp },
    /// Phase two: drop a prepared transaction. Unknown ones are a no-op.
    AbortPrepared { txid: TxnId },
    /// VACUUM: drops the versions no snapshot can see from these trees
    /// (tables and their index trees; every tree when empty). Counts them.
    Vacuum { trees: Vec<TableId> },
}

/// The rows of one table a fragment reads: under `key_prefix` (leading
/// primary-key values; empty: all) and passing `filter`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableScan {
    pub table: TableId,
    pub key_prefix: Vec<Value>,
    pub filter: Option<Expr>,
}

/// One buffered write of a transaction: the row's new value, or `None` to
/// delete it. `insert` writes must not find a live row (23505).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TxnWrite {
    pub table: TableId,
    pub key: Vec<Value>,
    pub row: Option<Row>,
    pub insert: bool,
    /// When the row this write was computed from was read, if later than
    /// the transaction's snapshot (READ COMMITTED reads each statement
    /// afresh): a version newer than this is a conflict.
    pub read_ts: Option<Timestamp>,
}

impl Fragment {
    /// True if the fragment only reads.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Fragment::Scan { .. } | Fragment::Aggregate { .. } | Fragment::JoinScan { .. }
        )
    }
}

/// What a fragment returns.
#[derive(Clone, Debug, PartialEq)]
pub enum FragmentOutput {
    Rows(Vec<Row>),
    Count(u64),
    /// A `Prepare` is logged; the transaction commits at the greatest
    /// `ts` of its participants. `vote` holds the PREPARE when it is not
    /// durable yet (`durable_vote: false`).
    Prepared {
        ts: Timestamp,
        vote: Option<LoggedVote>,
    },
}

/// A PREPARE given before it is durable: where it sits in the
/// participant's log and its payload. The coordinator logs it with the
/// commit decision; a restart whose participant lost it logs it there again.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedVote {
    pub lsn: Lsn,
    pub record: Vec<u8>,
}

impl FragmentOutput {
    /// The rows of a read; a write's output has none.
    pub fn into_rows(self) -> Vec<Row> {
        match self {
            FragmentOutput::Rows(rows) => rows,
            FragmentOutput::Count(_) | FragmentOutput::Prepared { .. } => Vec::new(),
        }
    }
}

/// A write a shard has logged, resolving once it is durable and applied.
pub type PendingWrite =
    std::pin::Pin<Box<dyn std::future::Future<Output = Result<FragmentOutput>> + Send>>;

/// A shard: executes fragments against its own data.
pub trait Shard: Send + Sync {
    fn id(&self) -> ShardId;
    /// Runs one fragment; writes are durable when this returns `Ok`, except
    /// the outcome of a prepared transaction (`CommitPrepared`,
    /// `AbortPrepared`), applied at once because it is durable elsewhere
    /// already: [`Shard::sync_log`] waits for its record.
    fn execute(&self, txid: TxnId, fragment: &Fragment) -> Result<FragmentOutput>;
    /// Makes every record this shard has logged so far durable.
    fn sync_log(&self) -> Result<()>;
    /// Runs a point read (a `Scan` of one whole primary key) at once if it
    /// has nothing to wait for (writes below its snapshot still being
    /// applied, prepared transactions); `None` asks the caller to `execute`
    /// it where blocking is allowed. Spares short reads a thread hand-off.
    fn try_read(&self, _fragment: &Fragment) -> Option<Result<FragmentOutput>> {
        None
    }
    /// Starts a transaction's write (`CommitTxn`, `Prepare`, or the outcome
    /// of a prepared one) without blocking: validated and logged now, the
    /// returned future resolves as `execute` would return. `None` asks the
    /// caller to `execute` it where blocking is allowed (it would have to
    /// wait for another write first, or is too large to plan in passing).
    fn try_write(&self, _txid: TxnId, _fragment: &Fragment) -> Option<Result<PendingWrite>> {
        None
    }
    /// Runs a `Scan`, handing its rows to `sink` in order, in batches as
    /// they are produced; `sink` returns false to stop early. An empty
    /// batch only asks whether to go on (a long sort sends nothing for a
    /// while). Memory stays bounded: a sort past its budget spills to
    /// temporary files.
    fn stream(&self, fragment: &Fragment, sink: &mut dyn FnMut(Vec<Row>) -> bool) -> Result<()>;
    /// This shard's copy of the catalog.
    fn catalog(&self) -> Catalog;
    /// Transactions prepared here whose outcome this shard does not know.
    fn in_doubt(&self) -> Vec<TxnId>;
}
