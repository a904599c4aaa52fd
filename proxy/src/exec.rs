//! The executor: turns a [`Plan`] into shard fragments, runs them (one shard
//! or all in parallel) and merges the results (k-way merge for ORDER BY, then
//! OFFSET/LIMIT, then projection).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap};

use fortress_storage::expr::{compare_keys, sort_values};
use fortress_storage::fault;
use fortress_storage::{
    Expr, Fragment, FragmentOutput, Row, ShardId, SortKey, TableDef, Timestamp, TxnWrite, Value,
};

use crate::cluster::Cluster;
use crate::error::{ProxyError, Result};
use crate::plan::{OutputColumn, Plan, SelectPlan};
use crate::route::router::{route, shard_for_row, shard_for_value, Target};
use crate::session::Session;
use crate::txn::{Txn, TxnState};

/// What a statement returns to the client.
#[derive(Debug)]
pub enum QueryResult {
    Rows {
        columns: Vec<OutputColumn>,
        rows: Vec<Row>,
    },
    /// A command tag such as `INSERT 0 3`, maybe with a notice.
    Command { tag: String, notice: Option<Notice> },
    /// BEGIN: a transaction block starts.
    TxnStart { notice: Option<Notice> },
    /// COMMIT or ROLLBACK (the tag says which): the block ends.
    TxnEnd { tag: String, notice: Option<Notice> },
}

impl QueryResult {
    /// Takes the notice to send ahead of the completion, if any.
    pub fn take_notice(&mut self) -> Option<Notice> {
        match self {
            QueryResult::Command { notice, .. }
            | QueryResult::TxnStart { notice }
            | QueryResult::TxnEnd { notice, .. } => notice.take(),
            QueryResult::Rows { .. } => None,
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

fn done(tag: impl Into<String>) -> QueryResult {
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

fn targets(cluster: &Cluster, t: Target) -> Vec<ShardId> {
    match t {
        Target::One(s) => vec![s],
        Target::All => cluster.all_shards(),
    }
}

/// Executes a bound plan in the session's transaction state. An error inside
/// a transaction block aborts the block.
pub async fn execute(cluster: &Cluster, session: &Session, plan: Plan) -> Result<QueryResult> {
    let result = execute_in_session(cluster, session, plan).await;
    if result.is_err() {
        session.fail_txn();
    }
    result
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
    match (session.replace_txn(TxnState::Idle), plan) {
        (TxnState::Idle, Plan::Begin) => {
            let (snapshot, pin) = cluster.pinned_snapshot();
            session.replace_txn(TxnState::Active(Txn::new(snapshot, pin)));
            Ok(QueryResult::TxnStart { notice: None })
        }
        (state @ (TxnState::Active(_) | TxnState::Failed), Plan::Begin) => {
            session.replace_txn(state);
            Ok(QueryResult::TxnStart {
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
            commit(cluster, txn).await?;
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

/// Commits a transaction's buffered writes: on its one shard directly, or
/// across shards by two-phase commit (see [`crate::coordinator`]).
async fn commit(cluster: &Cluster, txn: Txn) -> Result<()> {
    let snapshot = txn.snapshot;
    let mut by_shard: BTreeMap<ShardId, Vec<TxnWrite>> = BTreeMap::new();
    for w in txn.into_writes() {
        let shard = shard_for_value(cluster.ring(), &w.key[0]);
        by_shard.entry(shard).or_default().push(w);
    }
    if by_shard.len() <= 1 {
        if let Some((shard, writes)) = by_shard.into_iter().next() {
            let frag = Fragment::CommitTxn { snapshot, writes };
            cluster.run(shard, cluster.txid(), frag).await?;
        }
        return Ok(());
    }
    let txid = cluster.txid();
    let participants: Vec<ShardId> = by_shard.keys().copied().collect();
    let prepares = by_shard.into_iter().map(|(shard, writes)| {
        let frag = Fragment::Prepare {
            txid,
            snapshot,
            writes,
        };
        cluster.run(shard, txid, frag)
    });
    let prepared = futures::future::join_all(prepares).await;
    let failed = prepared.into_iter().find_map(|r| r.err());
    let injected = fault::hit("2pc.after_prepare").err();
    if failed.is_some() || injected.is_some() {
        let abort = Fragment::AbortPrepared { txid };
        for r in cluster.scatter(&participants, txid, &abort).await {
            if let Err(e) = r {
                tracing::warn!(txid, error = %e, "abort after a failed prepare; restart resolves it");
            }
        }
        return Err(match (failed, injected) {
            (Some(e), _) => e,
            (None, Some(f)) => ProxyError::new("XX000", f.to_string()),
            (None, None) => unreachable!("checked above"),
        });
    }
    let commit_ts = cluster.snapshot();
    cluster.coordinator().log_commit(txid, commit_ts).map_err(|e| {
        ProxyError::new(
            "40003",
            format!("commit outcome unknown: the decision could not be logged ({e}); restart resolves it"),
        )
    })?;
    fault::hit("2pc.after_decision").map_err(|f| ProxyError::new("XX000", f.to_string()))?;
    // The transaction is committed now; phase two only publishes it.
    let mut all_applied = true;
    for (i, &shard) in participants.iter().enumerate() {
        if i == 1 {
            fault::hit("2pc.mid_phase_two").map_err(|f| ProxyError::new("XX000", f.to_string()))?;
        }
        let frag = Fragment::CommitPrepared { txid, commit_ts };
        if let Err(e) = cluster.run(shard, txid, frag).await {
            all_applied = false;
            tracing::error!(txid, shard, error = %e, "commit of a decided transaction failed; restart applies it");
        }
    }
    if all_applied {
        if let Err(e) = cluster.coordinator().log_done(txid) {
            tracing::warn!(txid, error = %e, "could not log the end of a transaction");
        }
    }
    Ok(())
}

/// Rows of `table` passing `filter` as the transaction sees them.
async fn txn_rows(
    cluster: &Cluster,
    txn: &Txn,
    table: &TableDef,
    filter: Option<&Expr>,
) -> Result<Vec<Row>> {
    let r = route(cluster.ring(), table, filter);
    let frag = Fragment::Scan {
        table: table.id,
        key_prefix: r.key_prefix,
        filter: filter.cloned(),
        order_by: Vec::new(),
        limit: None,
        snapshot: Some(txn.snapshot),
    };
    let mut rows = Vec::new();
    for o in cluster
        .scatter(&targets(cluster, r.target), cluster.txid(), &frag)
        .await
    {
        if let FragmentOutput::Rows(part) = o? {
            rows.extend(part);
        }
    }
    txn.overlay(table, rows, filter)
}

/// A statement inside a transaction block: reads at the transaction's
/// snapshot plus its own writes; writes go to the buffer.
async fn in_transaction(cluster: &Cluster, txn: &mut Txn, plan: Plan) -> Result<QueryResult> {
    match plan {
        Plan::Select(s) => match s.table.clone() {
            Some(t) if txn.touches(t.id) => {
                let rows = txn_rows(cluster, txn, &t, s.filter.as_ref()).await?;
                finish_select(s, rows, true)
            }
            _ => select(cluster, cluster.txid(), s, txn.snapshot).await,
        },
        Plan::Insert { table, rows } => {
            let n = rows.len();
            for row in rows {
                table.check_not_null(&row)?;
                let key = Txn::key_of(&table, &row);
                let exists = match txn.get(table.id, &key) {
                    Some(w) => w.row.is_some(),
                    None => {
                        let frag = Fragment::Scan {
                            table: table.id,
                            key_prefix: key.clone(),
                            filter: None,
                            order_by: Vec::new(),
                            limit: Some(1),
                            snapshot: Some(txn.snapshot),
                        };
                        let shard = shard_for_value(cluster.ring(), &key[0]);
                        matches!(cluster.run(shard, cluster.txid(), frag).await?, FragmentOutput::Rows(r) if !r.is_empty())
                    }
                };
                if exists {
                    return Err(table.duplicate_error(&row).into());
                }
                let was_deleted_here = txn.get(table.id, &key).is_some();
                txn.put(table.id, key, Some(row), !was_deleted_here);
            }
            Ok(done(format!("INSERT 0 {n}")))
        }
        Plan::Update {
            table,
            filter,
            assignments,
        } => {
            let rows = txn_rows(cluster, txn, &table, filter.as_ref()).await?;
            let n = rows.len();
            for row in rows {
                let mut new = row.clone();
                for (col, e) in &assignments {
                    new[*col] = e.eval(&row)?;
                }
                table.check_not_null(&new)?;
                txn.put(table.id, Txn::key_of(&table, &row), Some(new), false);
            }
            Ok(done(format!("UPDATE {n}")))
        }
        Plan::Delete { table, filter } => {
            let rows = txn_rows(cluster, txn, &table, filter.as_ref()).await?;
            let n = rows.len();
            for row in rows {
                txn.put(table.id, Txn::key_of(&table, &row), None, false);
            }
            Ok(done(format!("DELETE {n}")))
        }
        Plan::SetVariable { .. } | Plan::ShowVariable { .. } => Err(ProxyError::new(
            "XX000",
            "session commands are handled before the transaction",
        )),
        Plan::CreateTable { .. } | Plan::DropTable { .. } => {
            Err(ProxyError::unsupported("DDL inside a transaction block"))
        }
        Plan::Begin | Plan::Commit | Plan::Rollback => Err(ProxyError::new(
            "XX000",
            "transaction control reached the statement executor",
        )),
    }
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
    match plan {
        Plan::Select(s) => select(cluster, txid, s, cluster.snapshot()).await,
        Plan::Insert { table, rows } => {
            let n = rows.len();
            let shards: BTreeSet<ShardId> = rows
                .iter()
                .map(|row| shard_for_row(cluster.ring(), &table, row))
                .collect();
            if shards.len() > 1 {
                return implicit_transaction(cluster, Plan::Insert { table, rows }).await;
            }
            if let Some(&shard) = shards.first() {
                let frag = Fragment::Insert {
                    table: table.id,
                    rows,
                };
                cluster.run(shard, txid, frag).await?;
            }
            Ok(done(format!("INSERT 0 {n}")))
        }
        Plan::Update {
            table,
            filter,
            assignments,
        } => {
            let r = route(cluster.ring(), &table, filter.as_ref());
            let Target::One(shard) = r.target else {
                let plan = Plan::Update {
                    table,
                    filter,
                    assignments,
                };
                return implicit_transaction(cluster, plan).await;
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
        Plan::Delete { table, filter } => {
            let r = route(cluster.ring(), &table, filter.as_ref());
            let Target::One(shard) = r.target else {
                return implicit_transaction(cluster, Plan::Delete { table, filter }).await;
            };
            let frag = Fragment::Delete {
                table: table.id,
                key_prefix: r.key_prefix,
                filter,
            };
            let n = count(cluster.scatter(&[shard], txid, &frag).await)?;
            Ok(done(format!("DELETE {n}")))
        }
        Plan::CreateTable {
            mut table,
            if_not_exists,
        } => {
            let _ddl = cluster.ddl.lock().await;
            let mut catalog = (*cluster.catalog()).clone();
            if catalog.get(&table.name).is_some() {
                if if_not_exists {
                    return Ok(QueryResult::Command {
                        tag: "CREATE TABLE".into(),
                        notice: Some(Notice {
                            severity: "NOTICE",
                            code: "42P07",
                            message: format!(
                                "relation \"{}\" already exists, skipping",
                                table.name
                            ),
                        }),
                    });
                }
                return Err(ProxyError::new(
                    "42P07",
                    format!("relation \"{}\" already exists", table.name),
                ));
            }
            catalog.next_table_id += 1;
            table.id = catalog.next_table_id;
            catalog.version += 1;
            catalog.tables.insert(table.name.clone(), table);
            apply_catalog(cluster, txid, catalog).await?;
            Ok(done("CREATE TABLE"))
        }
        Plan::DropTable { names, if_exists } => {
            let _ddl = cluster.ddl.lock().await;
            let mut catalog = (*cluster.catalog()).clone();
            let mut dropped = false;
            let mut notice = None;
            for n in &names {
                if catalog.tables.remove(n).is_some() {
                    dropped = true;
                } else if !if_exists {
                    return Err(ProxyError::new(
                        "42P01",
                        format!("table \"{n}\" does not exist"),
                    ));
                } else {
                    notice = Some(Notice {
                        severity: "NOTICE",
                        code: "00000",
                        message: format!("table \"{n}\" does not exist, skipping"),
                    });
                }
            }
            if dropped {
                catalog.version += 1;
                apply_catalog(cluster, txid, catalog).await?;
            }
            Ok(QueryResult::Command {
                tag: "DROP TABLE".into(),
                notice,
            })
        }
        Plan::SetVariable { name, value } => {
            session.set(&name, value);
            Ok(done("SET"))
        }
        Plan::Begin | Plan::Commit | Plan::Rollback => Err(ProxyError::new(
            "XX000",
            "transaction control reached the statement executor",
        )),
        Plan::ShowVariable { name } => {
            let v = session.get(&name).unwrap_or_default();
            Ok(QueryResult::Rows {
                columns: vec![OutputColumn {
                    name,
                    ty: fortress_storage::DataType::Text,
                }],
                rows: vec![vec![Value::Text(v)]],
            })
        }
    }
}

/// Installs a new catalog on every shard, then in the proxy. If some shard
/// fails, the version is still adopted when any shard logged it: the newest
/// logged catalog is what every shard converges to at the next start, and a
/// later DDL must not reuse its version number.
async fn apply_catalog(
    cluster: &Cluster,
    txid: u64,
    catalog: fortress_storage::Catalog,
) -> Result<()> {
    let frag = Fragment::ApplyCatalog(catalog.clone());
    let results = cluster.scatter(&cluster.all_shards(), txid, &frag).await;
    if results.iter().any(|r| r.is_ok()) {
        cluster.set_catalog(catalog);
    }
    for r in results {
        r?;
    }
    Ok(())
}

/// One sorted run from a shard, for the k-way merge.
struct Run {
    keys: Vec<Value>,
    row: Row,
    source: usize,
}

struct HeapItem<'a> {
    run: Run,
    order: &'a [SortKey],
}

impl PartialEq for HeapItem<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for HeapItem<'_> {}
impl PartialOrd for HeapItem<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for HeapItem<'_> {
    /// Reversed, so the max-heap pops the smallest key; ties by shard order.
    fn cmp(&self, other: &Self) -> Ordering {
        compare_keys(self.order, &other.run.keys, &self.run.keys)
            .then(other.run.source.cmp(&self.run.source))
    }
}

/// Merges per-shard sorted row lists into one sorted list.
pub fn merge_sorted(
    order: &[SortKey],
    inputs: Vec<Vec<Row>>,
    limit: Option<usize>,
) -> Result<Vec<Row>> {
    let mut iters: Vec<std::vec::IntoIter<Row>> =
        inputs.into_iter().map(|v| v.into_iter()).collect();
    let mut heap = BinaryHeap::new();
    for (i, it) in iters.iter_mut().enumerate() {
        if let Some(row) = it.next() {
            heap.push(HeapItem {
                run: Run {
                    keys: sort_values(order, &row)?,
                    row,
                    source: i,
                },
                order,
            });
        }
    }
    let mut out = Vec::new();
    while let Some(top) = heap.pop() {
        if limit.is_some_and(|l| out.len() >= l) {
            break;
        }
        let src = top.run.source;
        out.push(top.run.row);
        if let Some(row) = iters[src].next() {
            heap.push(HeapItem {
                run: Run {
                    keys: sort_values(order, &row)?,
                    row,
                    source: src,
                },
                order,
            });
        }
    }
    Ok(out)
}

async fn select(
    cluster: &Cluster,
    txid: u64,
    s: SelectPlan,
    snapshot: Timestamp,
) -> Result<QueryResult> {
    let wanted = s.limit.map(|l| l.saturating_add(s.offset));
    let rows: Vec<Row> = match &s.table {
        None => {
            let empty = Vec::new();
            let pass = match &s.filter {
                Some(f) => f.matches(&empty)?,
                None => true,
            };
            if pass {
                vec![empty]
            } else {
                Vec::new()
            }
        }
        Some(t) => {
            let r = route(cluster.ring(), t, s.filter.as_ref());
            let frag = Fragment::Scan {
                table: t.id,
                key_prefix: r.key_prefix,
                filter: s.filter.clone(),
                order_by: s.order_by.clone(),
                limit: wanted,
                // One timestamp for every shard: a consistent cut of them all.
                snapshot: Some(snapshot),
            };
            let mut parts = Vec::new();
            for o in cluster
                .scatter(&targets(cluster, r.target), txid, &frag)
                .await
            {
                if let FragmentOutput::Rows(rows) = o? {
                    parts.push(rows);
                }
            }
            let cap = wanted.map(|w| w as usize);
            if s.order_by.is_empty() {
                let mut all: Vec<Row> = parts.into_iter().flatten().collect();
                if let Some(c) = cap {
                    all.truncate(c);
                }
                all
            } else {
                merge_sorted(&s.order_by, parts, cap)?
            }
        }
    };
    finish_select(s, rows, false)
}

/// Sorts (unless `rows` already are), applies OFFSET/LIMIT and projects.
fn finish_select(s: SelectPlan, rows: Vec<Row>, sort: bool) -> Result<QueryResult> {
    let rows = if sort && !s.order_by.is_empty() {
        let mut keyed = rows
            .into_iter()
            .map(|r| Ok((sort_values(&s.order_by, &r)?, r)))
            .collect::<Result<Vec<_>>>()?;
        keyed.sort_by(|a, b| compare_keys(&s.order_by, &a.0, &b.0));
        keyed.into_iter().map(|(_, r)| r).collect()
    } else {
        rows
    };
    let mut out = Vec::new();
    for row in rows.into_iter().skip(s.offset as usize) {
        if s.limit.is_some_and(|l| out.len() as u64 >= l) {
            break;
        }
        let projected = s
            .projection
            .iter()
            .map(|e| e.eval(&row))
            .collect::<Result<Row, _>>()?;
        out.push(projected);
    }
    Ok(QueryResult::Rows {
        columns: s.columns,
        rows: out,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::Expr;

    #[test]
    fn k_way_merge_is_sorted_and_limited() {
        let order = vec![SortKey {
            expr: Expr::Column(0),
            descending: false,
            nulls_first: false,
        }];
        let runs = vec![
            vec![
                vec![Value::Int4(1)],
                vec![Value::Int4(4)],
                vec![Value::Null],
            ],
            vec![vec![Value::Int4(2)], vec![Value::Int4(3)]],
            vec![],
        ];
        let out = merge_sorted(&order, runs.clone(), None).unwrap();
        let got: Vec<Value> = out.into_iter().map(|mut r| r.remove(0)).collect();
        assert_eq!(
            got,
            vec![
                Value::Int4(1),
                Value::Int4(2),
                Value::Int4(3),
                Value::Int4(4),
                Value::Null
            ]
        );
        assert_eq!(merge_sorted(&order, runs, Some(2)).unwrap().len(), 2);
    }
}
