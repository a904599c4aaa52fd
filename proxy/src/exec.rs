//! The executor: turns a [`Plan`] into shard fragments, runs them (one shard
//! or all in parallel) and merges the results (k-way merge for ORDER BY, then
//! OFFSET/LIMIT, then projection).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap};

use fortress_storage::expr::{compare_keys, sort_values};
use fortress_storage::{Fragment, FragmentOutput, Row, ShardId, SortKey, Value};

use crate::cluster::Cluster;
use crate::error::{ProxyError, Result};
use crate::plan::{OutputColumn, Plan, SelectPlan};
use crate::route::router::{route, shard_for_row, Target};
use crate::session::Session;

/// What a statement returns to the client.
#[derive(Debug)]
pub enum QueryResult {
    Rows {
        columns: Vec<OutputColumn>,
        rows: Vec<Row>,
    },
    /// A command tag such as `INSERT 0 3`, maybe with a notice.
    Command { tag: String, notice: Option<Notice> },
}

/// A NOTICE sent before the command completes.
#[derive(Debug, Clone, PartialEq)]
pub struct Notice {
    pub code: &'static str,
    pub message: String,
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

/// Executes a bound plan.
pub async fn execute(cluster: &Cluster, session: &Session, plan: Plan) -> Result<QueryResult> {
    let txid = cluster.txid();
    match plan {
        Plan::Select(s) => select(cluster, txid, s).await,
        Plan::Insert { table, rows } => {
            let mut by_shard: BTreeMap<ShardId, Vec<Row>> = BTreeMap::new();
            let n = rows.len();
            // Checked here too so a multi-shard INSERT fails whole on NOT NULL.
            // Cross-shard all-or-nothing for key conflicts needs 2PC (not built).
            for row in &rows {
                table.check_not_null(row)?;
            }
            for row in rows {
                by_shard
                    .entry(shard_for_row(cluster.ring(), &table, &row))
                    .or_default()
                    .push(row);
            }
            let runs = by_shard.into_iter().map(|(shard, rows)| {
                cluster.run(
                    shard,
                    txid,
                    Fragment::Insert {
                        table: table.id,
                        rows,
                    },
                )
            });
            for r in futures::future::join_all(runs).await {
                r?;
            }
            Ok(done(format!("INSERT 0 {n}")))
        }
        Plan::Update {
            table,
            filter,
            assignments,
        } => {
            let r = route(cluster.ring(), &table, filter.as_ref());
            let frag = Fragment::Update {
                table: table.id,
                key_prefix: r.key_prefix,
                filter,
                assignments,
            };
            let n = count(
                cluster
                    .scatter(&targets(cluster, r.target), txid, &frag)
                    .await,
            )?;
            Ok(done(format!("UPDATE {n}")))
        }
        Plan::Delete { table, filter } => {
            let r = route(cluster.ring(), &table, filter.as_ref());
            let frag = Fragment::Delete {
                table: table.id,
                key_prefix: r.key_prefix,
                filter,
            };
            let n = count(
                cluster
                    .scatter(&targets(cluster, r.target), txid, &frag)
                    .await,
            )?;
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

async fn select(cluster: &Cluster, txid: u64, s: SelectPlan) -> Result<QueryResult> {
    let SelectPlan {
        table,
        filter,
        projection,
        columns,
        order_by,
        limit,
        offset,
    } = s;
    let wanted = limit.map(|l| l.saturating_add(offset));
    let rows: Vec<Row> = match &table {
        None => {
            let empty = Vec::new();
            let pass = match &filter {
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
            let r = route(cluster.ring(), t, filter.as_ref());
            let frag = Fragment::Scan {
                table: t.id,
                key_prefix: r.key_prefix,
                filter,
                order_by: order_by.clone(),
                limit: wanted,
                // One timestamp for every shard: a consistent cut of them all.
                snapshot: Some(cluster.snapshot()),
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
            if order_by.is_empty() {
                let mut all: Vec<Row> = parts.into_iter().flatten().collect();
                if let Some(c) = cap {
                    all.truncate(c);
                }
                all
            } else {
                merge_sorted(&order_by, parts, cap)?
            }
        }
    };
    let mut out = Vec::new();
    for row in rows.into_iter().skip(offset as usize) {
        if limit.is_some_and(|l| out.len() as u64 >= l) {
            break;
        }
        let projected = projection
            .iter()
            .map(|e| e.eval(&row))
            .collect::<Result<Row, _>>()?;
        out.push(projected);
    }
    Ok(QueryResult::Rows { columns, rows: out })
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
