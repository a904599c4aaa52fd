//! The executor: turns a [`Plan`] into shard fragments, runs them (one shard
//! or all in parallel) and merges the results (k-way merge for ORDER BY, then
//! OFFSET/LIMIT, then projection).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use fortress_storage::fault;
use fortress_storage::{Expr, Fragment, FragmentOutput, Row, ShardId, TableDef, TxnWrite, Value};

use crate::cluster::Cluster;
use crate::copy::CopyFormat;
use crate::error::{ProxyError, Result};
use crate::locks::HeldLocks;
use crate::metrics::CommitKind;
use crate::plan::{OnConflict, OutputColumn, Plan, Returning, SelectPlan, Subquery};
use crate::route::placement::{ring_shard, shard_for_key, shard_for_row};
use crate::route::router::Target;
use crate::select::{fill, Reader};
use crate::session::Session;
use crate::stream::RowStream;
use crate::txn::{Isolation, Txn, TxnState};
use fortress_storage::aggregate::GroupKey;
use fortress_storage::keycodec::encode_key;

/// What a statement returns to the client.
#[derive(Debug)]
pub enum QueryResult {
    /// Rows, completed by `tag` plus the row count (`SELECT 3`,
    /// `INSERT 0 3` for INSERT ... RETURNING).
    Rows {
        tag: &'static str,
        columns: Vec<OutputColumn>,
        rows: Vec<Row>,
    },
    /// A SELECT's rows, produced as the client reads them.
    Stream {
        columns: Vec<OutputColumn>,
        rows: RowStream,
    },
    /// COPY FROM STDIN is ready for data: the wire layer collects it and
    /// calls [`copy_in`].
    CopyIn {
        table: Arc<TableDef>,
        columns: Vec<usize>,
        format: CopyFormat,
    },
    /// COPY TO STDOUT: one line per row (after an optional header line).
    CopyOut { lines: Vec<String>, columns: usize },
    /// A command tag such as `INSERT 0 3`, maybe with a notice.
    Command { tag: String, notice: Option<Notice> },
    /// BEGIN / START TRANSACTION (the tag): a transaction block starts.
    TxnStart {
        tag: &'static str,
        notice: Option<Notice>,
    },
    /// COMMIT or ROLLBACK (the tag says which): the block ends.
    TxnEnd { tag: String, notice: Option<Notice> },
}

impl QueryResult {
    /// Takes the notice to send ahead of the completion, if any.
    pub fn take_notice(&mut self) -> Option<Notice> {
        match self {
            QueryResult::Command { notice, .. }
            | QueryResult::TxnStart { notice, .. }
            | QueryResult::TxnEnd { notice, .. } => notice.take(),
            QueryResult::Rows { .. }
            | QueryResult::Stream { .. }
            | QueryResult::CopyIn { .. }
            | QueryResult::CopyOut { .. } => None,
        }
    }
}

/// A NOTICE or WARNING sent before the command completes.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub severity: &'static str,
    pub code: &'static str,
    pub message: String,
}

fn warning(code: &'static str, message: &str) -> Option<Notice> {
    Some(Notice {
        severity: "WARNING",
        code,
        message: message.into(),
    })
}

pub(crate) fn done(tag: impl Into<String>) -> QueryResult {
    QueryResult::Command {
        tag: tag.into(),
        notice: None,
    }
}

fn count(outputs: Vec<Result<FragmentOutput>>) -> Result<u64> {
    let mut n = 0;
    for o in outputs {
        if let FragmentOutput::Count(c) = o? {
            n += c;
        }
    }
    Ok(n)
}

/// Executes a bound plan in the session's transaction state. An error inside
/// a transaction block aborts the block.
pub async fn execute(cluster: &Cluster, session: &Session, plan: Plan) -> Result<QueryResult> {
    if let Some(command) = plan.write_command().filter(|_| cluster.is_standby()) {
        session.fail_txn();
        return Err(ProxyError::new(
            "25006",
            format!("cannot execute {command} in a read-only transaction (this node is a standby)"),
        ));
    }
    // A node without the write lease takes no writes: neither a statement
    // that writes nor the COMMIT of a block that wrote, which is rolled
    // back instead.
    let commits_writes = matches!(plan, Plan::Commit) && !session.written_tables().is_empty();
    let mut _writing = None;
    if plan.write_command().is_some() || commits_writes {
        let (writing, fenced) = cluster.begin_write();
        _writing = Some(writing);
        if let Some(why) = fenced {
            if commits_writes {
                session.replace_txn(TxnState::Idle);
            } else {
                session.fail_txn();
            }
            return Err(ProxyError::new(
                "25006",
                format!(
                    "cannot execute {}: this node takes no writes: {why}",
                    plan.write_command().unwrap_or("COMMIT")
                ),
            ));
        }
    }
    // Reads outside a transaction block may be answered from the cache;
    // the look-up happens before the read's snapshot is taken.
    let mut ticket = None;
    if let (Plan::Select(s), b'I') = (&plan, session.txn_status()) {
        match cluster.cache().lookup(s) {
            Ok((columns, cached)) => return Ok(rows("SELECT", columns, cached)),
            Err(t) => ticket = t,
        }
    }
    let written = match &plan {
        Plan::Insert { table, .. } | Plan::Update { table, .. } | Plan::Delete { table, .. } => {
            vec![table.id]
        }
        Plan::Commit => session.written_tables(),
        _ => Vec::new(),
    };
    let ddl = plan.is_ddl();
    // While a write runs the cache neither serves nor stores results of its
    // tables; when it ends (even failed: a commit's outcome may be unknown)
    // results read before it are stale.
    cluster.cache().begin_write(&written);
    let mut result = run_in_session(cluster, session, plan).await;
    cluster.cache().end_write(&written);
    if ddl {
        cluster.cache().invalidate_all();
    }
    // A write outside a transaction block, or a COMMIT that wrote, is
    // acknowledged only where the replication mode requires it.
    if result.is_ok() && (ddl || !written.is_empty()) && session.txn_status() == b'I' {
        // A cancel or statement_timeout ends the wait for a synchronous
        // standby, not the commit: as in PostgreSQL, it is reported done,
        // with a warning. The wait is polled first: one over at once is not
        // cut short by a stop raised while the write ran.
        let waited = tokio::select! {
            biased;
            r = cluster.replicated() => Some(r),
            _ = crate::stop::stopped() => None,
        };
        if let Some(Err(e)) = waited {
            result = Err(e);
        } else if let Some(why) = cluster.fenced_at_ack() {
            // Committed here, but the lease went meanwhile: a successor may
            // lack it, so it is not acknowledged.
            result = Err(ProxyError::new(
                "40003",
                format!("the transaction committed on this node, but this node lost the right to take writes before acknowledging it, and it may be lost: {why}"),
            ));
        } else if waited.is_none() {
            // Rows (RETURNING) carry no notice; they committed, and are
            // answered as such.
            if let Ok(QueryResult::Command { notice, .. } | QueryResult::TxnEnd { notice, .. }) =
                &mut result
            {
                *notice = warning(
                    "01000",
                    "canceling wait for synchronous replication: the transaction has already committed locally, but might not have been replicated to the standby",
                );
            }
        }
    }
    match (result, ticket) {
        (Err(e), _) => {
            session.fail_txn();
            Err(e)
        }
        (Ok(QueryResult::Stream { columns, rows }), Some(t)) => {
            cache_small(cluster, t, columns, rows).await
        }
        (Ok(r), t) => {
            if let (Some(t), QueryResult::Rows { columns, rows, .. }) = (t, &r) {
                cluster.cache().store(t, columns, rows);
            }
            Ok(r)
        }
    }
}

/// Reads a streamed result far enough to know whether the cache keeps it:
/// a result that ends within the cache's row limit is stored and sent from
/// memory, a longer one streams on from where the look-ahead stopped.
async fn cache_small(
    cluster: &Cluster,
    ticket: crate::cache::Ticket,
    columns: Vec<OutputColumn>,
    rows: RowStream,
) -> Result<QueryResult> {
    use futures::StreamExt;
    let mut rows = rows.0;
    let mut head = Vec::new();
    // The look-ahead stops where the cache would not keep the result.
    let mut bytes = 0;
    while head.len() <= crate::cache::MAX_ROWS && bytes <= crate::cache::MAX_ENTRY_BYTES {
        match rows.next().await {
            Some(r) => {
                let r = r?;
                bytes += fortress_storage::value::row_bytes(&r);
                head.push(r);
            }
            None => {
                cluster.cache().store(ticket, &columns, &head);
                return Ok(self::rows("SELECT", columns, head));
            }
        }
    }
    let rest = futures::stream::iter(head.into_iter().map(Ok)).chain(rows);
    Ok(QueryResult::Stream {
        columns,
        rows: RowStream(rest.boxed()),
    })
}

/// Runs `plan` in the session's state. A read outside a transaction block,
/// the common statement, is awaited in place and everything else boxed:
/// the wire boxes each statement's future, copying all of it, and unboxed
/// it would be as large as the largest path (14 KiB where a read needs 7).
async fn run_in_session(cluster: &Cluster, session: &Session, plan: Plan) -> Result<QueryResult> {
    match plan {
        Plan::Select(s) if session.txn_status() == b'I' => select_autocommit(cluster, s).await,
        plan => Box::pin(execute_in_session(cluster, session, plan)).await,
    }
}

/// A SELECT outside any transaction block, streamed from its own snapshot.
async fn select_autocommit(cluster: &Cluster, plan: SelectPlan) -> Result<QueryResult> {
    let reader = Reader {
        cluster,
        snapshot: cluster.snapshot(),
        txn: None,
    };
    let columns = plan.columns.clone();
    let rows = reader.select_stream(plan).await?;
    Ok(QueryResult::Stream { columns, rows })
}

async fn execute_in_session(
    cluster: &Cluster,
    session: &Session,
    plan: Plan,
) -> Result<QueryResult> {
    if matches!(plan, Plan::SetVariable { .. } | Plan::ShowVariable { .. })
        && session.txn_status() != b'E'
    {
        return autocommit(cluster, session, plan).await;
    }
    if matches!(plan, Plan::ShowMetrics) && session.txn_status() != b'E' {
        let m = cluster.metrics();
        let mut out: Vec<Row> = m
            .snapshot()
            .into_iter()
            .map(|(k, v)| vec![Value::Text(k), Value::Text(v.to_string())])
            .collect();
        for (k, c) in [
            ("cache_hits", &cluster.cache().hits),
            ("cache_misses", &cluster.cache().misses),
        ] {
            let v = c.load(std::sync::atomic::Ordering::Relaxed);
            out.push(vec![Value::Text(k.into()), Value::Text(v.to_string())]);
        }
        let (hits, misses, bytes) = cluster.row_cache_stats();
        for (k, v) in [
            ("row_cache_hits", hits),
            ("row_cache_misses", misses),
            ("row_cache_bytes", bytes as u64),
            // Two-phase decisions logged and not yet forgotten.
            ("2pc_decisions_held", cluster.coordinator().held() as u64),
        ] {
            out.push(vec![Value::Text(k.into()), Value::Text(v.to_string())]);
        }
        // Each shard's last WAL position, in the form `fortress restore --lsn` takes.
        out.push(vec![
            Value::Text("wal_lsn".into()),
            Value::Text(cluster.wal_positions()),
        ]);
        let hot: Vec<String> = m
            .hot_shards(4.0, 1000)
            .iter()
            .map(|s| s.to_string())
            .collect();
        out.push(vec![
            Value::Text("hot_shards".into()),
            Value::Text(hot.join(",")),
        ]);
        let hot: Vec<String> = m
            .hot_vnodes(8.0, 1000)
            .iter()
            .map(|(token, shard)| format!("{token}@{shard}"))
            .collect();
        out.push(vec![
            Value::Text("hot_vnodes".into()),
            Value::Text(hot.join(",")),
        ]);
        return Ok(rows("SHOW", plan.output_columns(), out));
    }
    if matches!(plan, Plan::ShowConflicts) && session.txn_status() != b'E' {
        let text = |row: Option<Vec<Value>>| match row {
            None => Value::Text("(deleted)".into()),
            Some(r) => Value::Text(format!(
                "({})",
                r.iter()
                    .map(|v| v.to_text().unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(",")
            )),
        };
        let time = |t: fortress_storage::Timestamp| Value::Timestamptz(t.wall_micros() as i64);
        let out = cluster
            .conflicts()?
            .into_iter()
            .map(|c| {
                let key = c
                    .key
                    .iter()
                    .map(|v| v.to_text().unwrap_or_else(|| "NULL".into()))
                    .collect::<Vec<_>>()
                    .join(",");
                vec![
                    Value::Text(c.table),
                    Value::Text(key),
                    Value::Text(c.visible_node),
                    time(c.visible_ts),
                    text(c.visible),
                    Value::Text(c.sibling_node),
                    time(c.sibling_ts),
                    text(c.sibling),
                ]
            })
            .collect();
        return Ok(rows("SELECT", plan.output_columns(), out));
    }
    if matches!(plan, Plan::ShowReplication) && session.txn_status() != b'E' {
        let out = cluster
            .replication_rows()
            .into_iter()
            .map(|r| {
                vec![
                    Value::Text(r.name),
                    Value::Text(r.role),
                    Value::Text(r.state),
                    Value::Text(r.mode),
                    Value::Text(r.positions),
                    Value::Int8(r.lag_bytes.min(i64::MAX as u64) as i64),
                    Value::Float8(r.lag_seconds),
                ]
            })
            .collect();
        return Ok(rows("SHOW", plan.output_columns(), out));
    }
    if let (Plan::Explain(inner), false) = (&plan, session.txn_status() == b'E') {
        let lines = crate::explain::explain(cluster, inner);
        return Ok(rows(
            "EXPLAIN",
            plan.output_columns(),
            lines.into_iter().map(|l| vec![Value::Text(l)]).collect(),
        ));
    }
    match (session.replace_txn(TxnState::Idle), plan) {
        (TxnState::Idle, Plan::Begin { tag, isolation }) => {
            let isolation = isolation
                .or_else(|| {
                    session
                        .get("default_transaction_isolation")
                        .and_then(|s| Isolation::parse(&s))
                })
                .unwrap_or(Isolation::ReadCommitted);
            let (snapshot, pin) = cluster.pinned_snapshot();
            let txn = match isolation {
                Isolation::RepeatableRead => Txn::new(snapshot, pin),
                Isolation::ReadCommitted => Txn::read_committed(
                    snapshot,
                    pin,
                    HeldLocks::new(cluster.locks().clone(), cluster.txid()),
                ),
            };
            session.replace_txn(TxnState::Active(txn));
            Ok(QueryResult::TxnStart { tag, notice: None })
        }
        (state @ (TxnState::Active(_) | TxnState::Failed), Plan::Begin { tag, .. }) => {
            session.replace_txn(state);
            Ok(QueryResult::TxnStart {
                tag,
                notice: warning("25001", "there is already a transaction in progress"),
            })
        }
        (TxnState::Idle, p @ (Plan::Commit | Plan::Rollback)) => Ok(QueryResult::TxnEnd {
            tag: if matches!(p, Plan::Commit) {
                "COMMIT"
            } else {
                "ROLLBACK"
            }
            .into(),
            notice: warning("25P01", "there is no transaction in progress"),
        }),
        (TxnState::Failed, Plan::Commit | Plan::Rollback)
        | (TxnState::Active(_), Plan::Rollback) => Ok(QueryResult::TxnEnd {
            tag: "ROLLBACK".into(),
            notice: None,
        }),
        (TxnState::Active(txn), Plan::Commit) => {
            Box::pin(commit(cluster, txn)).await?;
            Ok(QueryResult::TxnEnd {
                tag: "COMMIT".into(),
                notice: None,
            })
        }
        (TxnState::Failed, _) => {
            session.replace_txn(TxnState::Failed);
            Err(ProxyError::new(
                "25P02",
                "current transaction is aborted, commands ignored until end of transaction block",
            ))
        }
        (TxnState::Active(mut txn), plan) => {
            // On error the block is aborted, so the buffer need not survive.
            let r = in_transaction(cluster, &mut txn, plan).await;
            session.replace_txn(TxnState::Active(txn));
            r
        }
        (TxnState::Idle, plan) => autocommit(cluster, session, plan).await,
    }
}

/// True if every write to `table` goes through a transaction: its rows live
/// on every shard (replicated) or its UNIQUE index entries on other shards.
pub(crate) fn writes_need_transaction(table: &TableDef) -> bool {
    table.replicated || !table.uniques.is_empty()
}

/// The shards that hold the row with primary key `key`: the shard-key
/// column's owner, or every shard for a replicated table.
fn key_shards(
    cluster: &Cluster,
    catalog: &fortress_storage::Catalog,
    table: fortress_storage::TableId,
    key: &[Value],
) -> Result<Vec<ShardId>> {
    Ok(match catalog.by_id(table) {
        Some(t) if t.replicated => cluster.all_shards(),
        Some(t) => vec![shard_for_key(cluster.ring(), t, key)?],
        None => vec![ring_shard(cluster.ring(), &key[0])],
    })
}

/// Past this many writes a transaction's participants prepare one at a
/// time: each shard applying its part holds copies of it, so one at a time
/// bounds the peak (phase two always runs shard by shard).
const BULK_WRITES: usize = 10_000;

/// Commits a transaction's buffered writes (see [`commit_writes`]),
/// recording how and how long.
async fn commit(cluster: &Cluster, txn: Txn) -> Result<()> {
    let started = std::time::Instant::now();
    let mut kind = None;
    let r = commit_writes(cluster, txn, &mut kind).await;
    if let Some(kind) = kind {
        crate::metrics::recorded().commit(kind, r.is_ok(), started.elapsed());
    }
    r
}

/// Commits a transaction's buffered writes: on its one shard directly, or
/// across shards by two-phase commit (see [`crate::coordinator`]); `kind`
/// says which was tried (nothing, for a transaction without writes).
async fn commit_writes(cluster: &Cluster, txn: Txn, kind: &mut Option<CommitKind>) -> Result<()> {
    let snapshot = txn.snapshot;
    // Row locks are held until the writes are applied everywhere.
    let locks = txn.locks().cloned();
    let mut by_shard: BTreeMap<ShardId, Vec<TxnWrite>> = BTreeMap::new();
    let catalog = cluster.catalog();
    for w in txn.into_writes() {
        // Moved to its shard; copied only for a replicated table's shards.
        let mut shards = key_shards(cluster, &catalog, w.table, &w.key)?;
        let last = shards.pop();
        for shard in shards {
            by_shard.entry(shard).or_default().push(w.clone());
        }
        if let Some(shard) = last {
            by_shard.entry(shard).or_default().push(w);
        }
    }
    if by_shard.len() <= 1 {
        if let Some((shard, writes)) = by_shard.into_iter().next() {
            *kind = Some(CommitKind::OneShard);
            let frag = Fragment::CommitTxn { snapshot, writes };
            cluster.run(shard, cluster.txid(), frag).await?;
        }
        return Ok(());
    }
    *kind = Some(CommitKind::TwoPhase);
    let txid = cluster.txid();
    let participants: Vec<ShardId> = by_shard.keys().copied().collect();
    let total_writes: usize = by_shard.values().map(Vec::len).sum();
    // A bulk write set is prepared shard by shard, like its second phase,
    // each PREPARE durable on its own: the decision does not carry it.
    let bulk = total_writes > BULK_WRITES;
    let prepares = by_shard.into_iter().map(|(shard, writes)| {
        let frag = Fragment::Prepare {
            txid,
            snapshot,
            writes,
            participants: participants.clone(),
            durable_vote: bulk,
        };
        cluster.run(shard, txid, frag)
    });
    let prepared = if bulk {
        let mut out = Vec::new();
        for p in prepares {
            out.push(p.await);
        }
        out
    } else {
        futures::future::join_all(prepares).await
    };
    // Every participant voted: it commits at the greatest prepare
    // timestamp once the votes are durable (see `Cluster::decide_commit`).
    let mut commit_ts = None;
    let mut failed = None;
    let mut votes = Vec::new();
    for (r, &shard) in prepared.into_iter().zip(&participants) {
        match r {
            Ok(FragmentOutput::Prepared { ts, vote }) => {
                commit_ts = commit_ts.max(Some(ts));
                votes.extend(vote.map(|v| (shard, v)));
            }
            Ok(other) => {
                failed = Some(ProxyError::new(
                    "XX000",
                    format!("a prepare answered {other:?}"),
                ))
            }
            Err(e) => failed = Some(e),
        }
    }
    let injected = fault::hit("2pc.after_prepare").err();
    let commit_ts = match (failed, injected, commit_ts) {
        (None, None, Some(ts)) => ts,
        (failed, injected, _) => {
            cluster.abort_prepared(txid, &participants).await?;
            return Err(match (failed, injected) {
                (Some(e), _) => e,
                (None, Some(f)) => ProxyError::new("XX000", f.to_string()),
                (None, None) => ProxyError::new("XX000", "a transaction with no participants"),
            });
        }
    };
    let results = cluster
        .decide_commit(txid, commit_ts, &participants, votes, locks.clone())
        .await?;
    for (r, shard) in results.into_iter().zip(&participants) {
        if let Err(e) = r {
            tracing::error!(txid, shard, error = %e, "commit of a decided transaction failed; restart applies it");
        }
    }
    Ok(())
}

fn rows(tag: &'static str, columns: Vec<OutputColumn>, rows: Vec<Row>) -> QueryResult {
    QueryResult::Rows { tag, columns, rows }
}

/// The result of a write: its rows under RETURNING, else its tag.
fn written(
    tag: &'static str,
    returning: Option<Returning>,
    written: Vec<Row>,
) -> Result<QueryResult> {
    match returning {
        Some(r) => {
            let out = written
                .iter()
                .map(|row| {
                    r.projection
                        .iter()
                        .map(|e| e.eval(row))
                        .collect::<std::result::Result<Row, _>>()
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            Ok(rows(tag, r.columns, out))
        }
        None => Ok(done(format!("{tag} {}", written.len()))),
    }
}

/// Fills subquery slots in a write's expressions.
async fn fill_write(
    reader: &Reader<'_>,
    subqueries: Vec<Subquery>,
    filter: &mut Option<Expr>,
    assignments: &mut [(usize, Expr)],
    returning: &mut Option<Returning>,
) -> Result<()> {
    if subqueries.is_empty() {
        return Ok(());
    }
    let values = reader.run_subqueries(subqueries).await?;
    if let Some(f) = filter.take() {
        *filter = Some(fill(f, &values));
    }
    for (_, e) in assignments.iter_mut() {
        *e = fill(std::mem::replace(e, Expr::Literal(Value::Null)), &values);
    }
    if let Some(r) = returning {
        r.projection = std::mem::take(&mut r.projection)
            .into_iter()
            .map(|e| fill(e, &values))
            .collect();
    }
    Ok(())
}

/// The live row with primary key `key` as the transaction sees it.
async fn txn_row(
    cluster: &Cluster,
    txn: &Txn,
    table: &TableDef,
    key: &[Value],
) -> Result<Option<Row>> {
    if let Some(w) = txn.get(table.id, key) {
        return Ok(w.row.clone());
    }
    let frag = Fragment::Scan {
        table: table.id,
        key_prefix: key.to_vec(),
        filter: None,
        projection: Vec::new(),
        order_by: Vec::new(),
        limit: Some(1),
        snapshot: Some(txn.snapshot),
    };
    let shard = shard_for_key(cluster.ring(), table, key)?;
    Ok(cluster
        .run(shard, cluster.txid(), frag)
        .await?
        .into_rows()
        .pop())
}

/// Keeps a table's UNIQUE index tables in step with one row change; a new
/// entry whose key is live is 23505. Rows with a NULL in the constrained
/// columns are not indexed (NULLs never conflict).
async fn maintain_uniques(
    cluster: &Cluster,
    txn: &mut Txn,
    table: &TableDef,
    old: Option<&Row>,
    new: Option<&Row>,
) -> Result<()> {
    if table.uniques.is_empty() {
        return Ok(());
    }
    let catalog = cluster.catalog();
    for u in &table.uniques {
        let idx = catalog.get(&u.index_table).ok_or_else(|| {
            ProxyError::new("XX000", format!("missing index table {}", u.index_table))
        })?;
        let key_of = |r: &Row| -> Option<Vec<Value>> {
            let k: Vec<Value> = u.columns.iter().map(|&c| r[c].clone()).collect();
            (!k.iter().any(Value::is_null)).then_some(k)
        };
        let (old_key, new_key) = (old.and_then(key_of), new.and_then(key_of));
        if old_key.clone().map(GroupKey) == new_key.clone().map(GroupKey) {
            continue;
        }
        if let Some(k) = old_key {
            txn.put(idx.id, k, None, false);
        }
        if let (Some(k), Some(row)) = (new_key, new) {
            if txn_row(cluster, txn, idx, &k).await?.is_some() {
                let names: Vec<&str> = u
                    .columns
                    .iter()
                    .map(|&c| table.columns[c].name.as_str())
                    .collect();
                let vals: Vec<String> = k.iter().map(|v| v.to_text().unwrap_or_default()).collect();
                return Err(fortress_storage::StorageError::DuplicateKey {
                    constraint: u.name.clone(),
                    detail: format!(
                        "Key ({})=({}) already exists.",
                        names.join(", "),
                        vals.join(", ")
                    ),
                }
                .into());
            }
            let mut entry = k.clone();
            entry.extend(table.primary_key.iter().map(|&c| row[c].clone()));
            let was_deleted_here = txn.get(idx.id, &k).is_some();
            txn.put(idx.id, k, Some(entry), !was_deleted_here);
        }
    }
    Ok(())
}

/// INSERT in a transaction, with ON CONFLICT on the primary key.
async fn txn_insert(
    cluster: &Cluster,
    txn: &mut Txn,
    table: Arc<TableDef>,
    new_rows: Vec<Row>,
    on_conflict: Option<OnConflict>,
    returning: Option<Returning>,
) -> Result<QueryResult> {
    let mut out = Vec::new();
    let mut count = 0usize;
    let mut affected = BTreeSet::new();
    // A keyless table's key ends in a fresh row id: there is nothing to look
    // up (a repeat would still fail the commit with 23505).
    let fresh_keys = table.rowid.is_some() && on_conflict.is_none();
    for row in new_rows {
        table.check_not_null(&row)?;
        let key = Txn::key_of(&table, &row);
        let first_touch = matches!(on_conflict, Some(OnConflict::DoUpdate { .. }))
            && affected.insert(GroupKey(key.clone()));
        let existing = if fresh_keys {
            None
        } else {
            txn_row(cluster, txn, &table, &key).await?
        };
        match (existing, &on_conflict) {
            (None, _) => {
                maintain_uniques(cluster, txn, &table, None, Some(&row)).await?;
                let was_deleted_here = txn.get(table.id, &key).is_some();
                count += 1;
                if returning.is_some() {
                    out.push(row.clone());
                }
                txn.put(table.id, key, Some(row), !was_deleted_here);
            }
            (Some(_), None) => return Err(table.duplicate_error(&row).into()),
            (Some(_), Some(OnConflict::DoNothing)) => {}
            (
                Some(old),
                Some(OnConflict::DoUpdate {
                    assignments,
                    filter,
                }),
            ) => {
                if !first_touch {
                    return Err(ProxyError::new(
                        "21000",
                        "ON CONFLICT DO UPDATE command cannot affect row a second time",
                    ));
                }
                let mut both = old.clone();
                both.extend(row.iter().cloned());
                if let Some(f) = filter {
                    if !f.matches(&both)? {
                        continue;
                    }
                }
                let mut new = old.clone();
                for (col, e) in assignments {
                    new[*col] = e.eval(&both)?;
                }
                table.check_not_null(&new)?;
                maintain_uniques(cluster, txn, &table, Some(&old), Some(&new)).await?;
                txn.put(table.id, key, Some(new.clone()), false);
                count += 1;
                out.push(new);
            }
        }
    }
    match returning {
        Some(_) => written("INSERT 0", returning, out),
        None => Ok(done(format!("INSERT 0 {count}"))),
    }
}

/// A statement inside a transaction block: reads at the transaction's
/// snapshot plus its own writes; writes go to the buffer.
async fn in_transaction(cluster: &Cluster, txn: &mut Txn, plan: Plan) -> Result<QueryResult> {
    // READ COMMITTED: each statement sees what is committed when it starts.
    if txn.locks().is_some() {
        txn.snapshot = cluster.snapshot();
    }
    match plan {
        Plan::Select(s) => {
            let reader = Reader {
                cluster,
                snapshot: txn.snapshot,
                txn: Some(txn),
            };
            let columns = s.columns.clone();
            let rows = reader.select_stream(s).await?;
            Ok(QueryResult::Stream { columns, rows })
        }
        Plan::Insert {
            table,
            rows: new_rows,
            on_conflict,
            returning,
        } => txn_insert(cluster, txn, table, new_rows, on_conflict, returning).await,
        Plan::Update {
            table,
            mut filter,
            mut assignments,
            mut returning,
            subqueries,
        } => {
            let reader = Reader {
                cluster,
                snapshot: txn.snapshot,
                txn: Some(txn),
            };
            fill_write(
                &reader,
                subqueries,
                &mut filter,
                &mut assignments,
                &mut returning,
            )
            .await?;
            let old_rows = target_rows(cluster, txn, &table, filter.as_ref()).await?;
            let mut out = Vec::with_capacity(old_rows.len());
            let mut moved = Vec::new();
            for row in old_rows {
                let mut new = row.clone();
                for (col, e) in &assignments {
                    new[*col] = e.eval(&row)?;
                }
                table.check_not_null(&new)?;
                maintain_uniques(cluster, txn, &table, Some(&row), Some(&new)).await?;
                let (old_key, new_key) = (Txn::key_of(&table, &row), Txn::key_of(&table, &new));
                if GroupKey(old_key.clone()) == GroupKey(new_key) {
                    txn.put(table.id, old_key, Some(new.clone()), false);
                } else {
                    // A changed key is a delete plus an insert: the row may
                    // move to another shard. Inserts go last so that keys
                    // swapped within the statement do not collide.
                    txn.put(table.id, old_key, None, false);
                    moved.push(new.clone());
                }
                out.push(new);
            }
            for new in moved {
                let key = Txn::key_of(&table, &new);
                if txn_row(cluster, txn, &table, &key).await?.is_some() {
                    return Err(table.duplicate_error(&new).into());
                }
                let was_deleted_here = txn.get(table.id, &key).is_some();
                txn.put(table.id, key, Some(new), !was_deleted_here);
            }
            written("UPDATE", returning, out)
        }
        Plan::Delete {
            table,
            mut filter,
            mut returning,
            subqueries,
        } => {
            let reader = Reader {
                cluster,
                snapshot: txn.snapshot,
                txn: Some(txn),
            };
            fill_write(&reader, subqueries, &mut filter, &mut [], &mut returning).await?;
            let old_rows = target_rows(cluster, txn, &table, filter.as_ref()).await?;
            delete_rows(cluster, txn, &table, &old_rows).await?;
            written("DELETE", returning, old_rows)
        }
        Plan::Truncate { names } => {
            // Inside a block TRUNCATE deletes the rows as part of the
            // transaction, so it commits or rolls back with the rest.
            for name in names {
                let table = cluster
                    .catalog()
                    .get(&name)
                    .cloned()
                    .ok_or_else(|| ProxyError::undefined_table(&name))?;
                let rows = Reader {
                    cluster,
                    snapshot: txn.snapshot,
                    txn: Some(txn),
                }
                .table_rows(&table, None)
                .await?;
                delete_rows(cluster, txn, &table, &rows).await?;
            }
            Ok(done("TRUNCATE TABLE"))
        }
        Plan::CopyIn { .. } | Plan::CopyOut { .. } | Plan::Sleep(_) => {
            let reader = Reader {
                cluster,
                snapshot: txn.snapshot,
                txn: Some(txn),
            };
            read_only(&reader, plan).await
        }
        Plan::SetVariable { .. } | Plan::ShowVariable { .. } => Err(ProxyError::new(
            "XX000",
            "session commands are handled before the transaction",
        )),
        Plan::CreateTable { .. }
        | Plan::DropTable { .. }
        | Plan::AlterTable { .. }
        | Plan::CreateIndex { .. }
        | Plan::DropIndex { .. } => Err(ProxyError::unsupported("DDL inside a transaction block")),
        Plan::Vacuum { .. } => Err(ProxyError::new(
            "25001",
            "VACUUM cannot run inside a transaction block",
        )),
        Plan::Analyze => Ok(done("ANALYZE")),
        Plan::Explain(_) | Plan::ShowMetrics | Plan::ShowReplication | Plan::ShowConflicts => {
            Err(ProxyError::new("XX000", "EXPLAIN reached the executor"))
        }
        Plan::Begin { .. } | Plan::Commit | Plan::Rollback => Err(ProxyError::new(
            "XX000",
            "transaction control reached the statement executor",
        )),
    }
}

/// The rows an UPDATE or DELETE in a block changes: read at the snapshot
/// under REPEATABLE READ, locked and read afresh under READ COMMITTED.
async fn target_rows(
    cluster: &Cluster,
    txn: &mut Txn,
    table: &TableDef,
    filter: Option<&Expr>,
) -> Result<Vec<Row>> {
    match txn.locks().cloned() {
        Some(locks) => lock_rows(cluster, txn, &locks, table, filter).await,
        None => {
            Reader {
                cluster,
                snapshot: txn.snapshot,
                txn: Some(txn),
            }
            .table_rows(table, filter)
            .await
        }
    }
}

/// READ COMMITTED: the rows `filter` selects for an UPDATE or DELETE,
/// locked, as last committed (or as this transaction wrote them). A filter
/// naming the whole primary key locks that row before reading it. Otherwise
/// the rows found are locked, then read again at a fresh snapshot and
/// checked against the filter anew, as PostgreSQL re-checks a row that
/// changed while it waited for its lock. Rows inserted meanwhile are not
/// picked up, as in PostgreSQL.
async fn lock_rows(
    cluster: &Cluster,
    txn: &mut Txn,
    locks: &crate::locks::HeldLocks,
    table: &TableDef,
    filter: Option<&Expr>,
) -> Result<Vec<Row>> {
    fn reader<'a>(cluster: &'a Cluster, txn: &'a Txn) -> Reader<'a> {
        Reader {
            cluster,
            snapshot: txn.snapshot,
            txn: Some(txn),
        }
    }
    let point = cluster.route(table, filter).key_prefix;
    if point.len() == table.primary_key.len() {
        locks.lock((table.id, encode_key(&point))).await?;
        txn.snapshot = cluster.snapshot();
        return reader(cluster, txn).table_rows(table, filter).await;
    }
    let found = reader(cluster, txn).table_rows(table, filter).await?;
    for row in &found {
        locks
            .lock((table.id, encode_key(&Txn::key_of(table, row))))
            .await?;
    }
    txn.snapshot = cluster.snapshot();
    let mut rows = Vec::with_capacity(found.len());
    for row in found {
        let key = Txn::key_of(table, &row);
        if let Some(now) = txn_row(cluster, txn, table, &key).await? {
            if filter.map_or(Ok(true), |f| f.matches(&now))? {
                rows.push(now);
            }
        }
    }
    Ok(rows)
}

/// Buffers the deletion of `rows` (and their UNIQUE index entries).
async fn delete_rows(
    cluster: &Cluster,
    txn: &mut Txn,
    table: &TableDef,
    rows: &[Row],
) -> Result<()> {
    for row in rows {
        maintain_uniques(cluster, txn, table, Some(row), None).await?;
        txn.put(table.id, Txn::key_of(table, row), None, false);
    }
    Ok(())
}

/// Statements that read (or wait) and hand the rest to the wire layer.
async fn read_only(reader: &Reader<'_>, plan: Plan) -> Result<QueryResult> {
    match plan {
        Plan::CopyIn {
            table,
            columns,
            format,
        } => Ok(QueryResult::CopyIn {
            table,
            columns,
            format,
        }),
        Plan::CopyOut { select, format } => {
            let names: Vec<String> = select.columns.iter().map(|c| c.name.clone()).collect();
            let columns = names.len();
            let rows = reader.select(select).await?;
            let mut lines: Vec<String> = rows.iter().map(|r| format.format_row(r)).collect();
            if format.header {
                // The header shares the first row's CopyData message: the
                // COPY tag counts messages and must count only rows.
                let header = format.header_line(&names);
                match lines.first_mut() {
                    Some(first) => first.insert_str(0, &header),
                    None => lines.push(header),
                }
            }
            Ok(QueryResult::CopyOut { lines, columns })
        }
        Plan::Sleep(d) => {
            crate::stop::unless_stopped(async {
                tokio::time::sleep(d).await;
                Ok(())
            })
            .await?;
            Ok(rows(
                "SELECT",
                vec![OutputColumn {
                    name: "pg_sleep".into(),
                    ty: fortress_storage::DataType::Text,
                }],
                vec![vec![Value::Text(String::new())]],
            ))
        }
        other => Err(ProxyError::new(
            "XX000",
            format!("{other:?} is not a read-only statement"),
        )),
    }
}

/// Inserts the rows of a finished COPY FROM STDIN as one statement (so it
/// is all-or-nothing), filling unlisted columns with their defaults.
pub async fn copy_in(
    cluster: &Cluster,
    session: &Session,
    table: Arc<TableDef>,
    columns: &[usize],
    format: &CopyFormat,
    data: &str,
) -> Result<u64> {
    let types: Vec<_> = columns.iter().map(|&i| table.columns[i].ty).collect();
    let parsed = format.parse(data, &types)?;
    let n = parsed.len() as u64;
    let mut full = Vec::with_capacity(parsed.len());
    for values in parsed {
        let mut row: Row = table
            .columns
            .iter()
            .map(|c| match &c.default {
                Some(e)
                    if !columns.contains(&table.column_index(&c.name).unwrap_or(usize::MAX)) =>
                {
                    e.eval(&Vec::new())
                }
                _ => Ok(Value::Null),
            })
            .collect::<std::result::Result<_, _>>()?;
        for (v, &i) in values.into_iter().zip(columns) {
            row[i] = v;
        }
        full.push(row);
    }
    let plan = Plan::Insert {
        table,
        rows: full,
        on_conflict: None,
        returning: None,
    };
    execute(cluster, session, plan).await?;
    Ok(n)
}

/// A write statement outside a block that may touch several shards runs as
/// its own transaction, committed by two-phase commit so it is all-or-nothing.
/// The client has seen nothing of it yet, so a 40001 is retried a few times.
async fn implicit_transaction(cluster: &Cluster, plan: Plan) -> Result<QueryResult> {
    let mut attempt = 0u32;
    loop {
        let (snapshot, pin) = cluster.pinned_snapshot();
        let mut txn = Txn::new(snapshot, pin);
        let result = match in_transaction(cluster, &mut txn, plan.clone()).await {
            Ok(r) => commit(cluster, txn).await.map(|_| r),
            Err(e) => Err(e),
        };
        match result {
            Err(e) if e.sql_state() == "40001" && attempt < 8 => {
                attempt += 1;
                tokio::time::sleep(std::time::Duration::from_millis(1 << attempt.min(6))).await;
            }
            other => return other,
        }
    }
}

/// A statement outside any transaction block.
async fn autocommit(cluster: &Cluster, session: &Session, plan: Plan) -> Result<QueryResult> {
    let txid = cluster.txid();
    let reader = Reader {
        cluster,
        snapshot: cluster.snapshot(),
        txn: None,
    };
    match plan {
        Plan::Select(s) => select_autocommit(cluster, s).await,
        Plan::Insert {
            table,
            rows: new_rows,
            on_conflict,
            returning,
        } => {
            let shards: BTreeSet<ShardId> = new_rows
                .iter()
                .map(|row| {
                    cluster.count_row(&table, row);
                    shard_for_row(cluster.ring(), &table, row)
                })
                .collect::<Result<_>>()?;
            if shards.len() > 1 || on_conflict.is_some() || writes_need_transaction(&table) {
                let plan = Plan::Insert {
                    table,
                    rows: new_rows,
                    on_conflict,
                    returning,
                };
                return Box::pin(implicit_transaction(cluster, plan)).await;
            }
            let n = new_rows.len();
            // Only RETURNING needs the rows after they are sent.
            let kept = returning.as_ref().map(|_| new_rows.clone());
            if let Some(&shard) = shards.first() {
                let frag = Fragment::Insert {
                    table: table.id,
                    rows: new_rows,
                };
                cluster.run(shard, txid, frag).await?;
            }
            match kept {
                Some(rows) => written("INSERT 0", returning, rows),
                None => Ok(done(format!("INSERT 0 {n}"))),
            }
        }
        Plan::Update {
            table,
            mut filter,
            mut assignments,
            mut returning,
            subqueries,
        } => {
            fill_write(
                &reader,
                subqueries,
                &mut filter,
                &mut assignments,
                &mut returning,
            )
            .await?;
            let r = cluster.route(&table, filter.as_ref());
            let moves_key = assignments
                .iter()
                .any(|(c, _)| table.primary_key.contains(c))
                || writes_need_transaction(&table);
            let (Target::One(shard), None, false) = (r.target, &returning, moves_key) else {
                let plan = Plan::Update {
                    table,
                    filter,
                    assignments,
                    returning,
                    subqueries: Vec::new(),
                };
                return Box::pin(implicit_transaction(cluster, plan)).await;
            };
            let frag = Fragment::Update {
                table: table.id,
                key_prefix: r.key_prefix,
                filter,
                assignments,
            };
            let n = count(cluster.scatter(&[shard], txid, &frag).await)?;
            Ok(done(format!("UPDATE {n}")))
        }
        Plan::Delete {
            table,
            mut filter,
            mut returning,
            subqueries,
        } => {
            fill_write(&reader, subqueries, &mut filter, &mut [], &mut returning).await?;
            let r = cluster.route(&table, filter.as_ref());
            let in_txn = writes_need_transaction(&table);
            let (Target::One(shard), None, false) = (r.target, &returning, in_txn) else {
                let plan = Plan::Delete {
                    table,
                    filter,
                    returning,
                    subqueries: Vec::new(),
                };
                return Box::pin(implicit_transaction(cluster, plan)).await;
            };
            let frag = Fragment::Delete {
                table: table.id,
                key_prefix: r.key_prefix,
                filter,
            };
            let n = count(cluster.scatter(&[shard], txid, &frag).await)?;
            Ok(done(format!("DELETE {n}")))
        }
        Plan::CopyIn { .. } | Plan::CopyOut { .. } | Plan::Sleep(_) => {
            read_only(&reader, plan).await
        }
        Plan::Vacuum { trees } => {
            let frag = Fragment::Vacuum { trees };
            for r in cluster.scatter(&cluster.all_shards(), 0, &frag).await {
                r?;
            }
            Ok(done("VACUUM"))
        }
        Plan::Analyze => Ok(done("ANALYZE")),
        p @ (Plan::CreateTable { .. }
        | Plan::DropTable { .. }
        | Plan::Truncate { .. }
        | Plan::AlterTable { .. }
        | Plan::CreateIndex { .. }
        | Plan::DropIndex { .. }) => Box::pin(crate::ddl::run(cluster, txid, p)).await,
        Plan::SetVariable { name, value } => {
            let lower = name.to_ascii_lowercase();
            if let (true, Some(v)) = (
                crate::session::DURATION_SETTINGS.contains(&lower.as_str()),
                &value,
            ) {
                crate::stop::parse_setting(v).map_err(|why| {
                    ProxyError::new(
                        "22023",
                        format!("invalid value for parameter \"{lower}\": \"{v}\""),
                    )
                    .with_detail(why)
                })?;
            }
            session.set(&name, value);
            Ok(done("SET"))
        }
        Plan::Begin { .. }
        | Plan::Commit
        | Plan::Rollback
        | Plan::Explain(_)
        | Plan::ShowMetrics
        | Plan::ShowReplication
        | Plan::ShowConflicts => Err(ProxyError::new(
            "XX000",
            "transaction control reached the statement executor",
        )),
        Plan::ShowVariable { name } => {
            let v = session.get(&name).unwrap_or_default();
            Ok(rows(
                "SHOW",
                vec![OutputColumn {
                    name: crate::session::display_name(&name),
                    ty: fortress_storage::DataType::Text,
                }],
                vec![vec![Value::Text(v)]],
            ))
        }
    }
}
