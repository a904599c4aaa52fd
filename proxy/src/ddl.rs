//! DDL: catalog changes installed on every shard (CREATE / DROP / TRUNCATE /
//! ALTER TABLE). Each is one new catalog version, serialised by the
//! cluster's DDL lock.

use fortress_storage::{Catalog, Fragment, FragmentOutput, Row, TableDef};

use crate::cluster::Cluster;
use crate::error::{ProxyError, Result};
use crate::exec::{done, Notice, QueryResult};
use crate::plan::{AlterOp, Plan};

/// Runs one DDL plan.
pub async fn run(cluster: &Cluster, txid: u64, plan: Plan) -> Result<QueryResult> {
    let _ddl = cluster.ddl.lock().await;
    let mut catalog = (*cluster.catalog()).clone();
    match plan {
        Plan::Truncate { names } => {
            // A fresh table id gives the table a new, empty tree on every
            // shard; the old tree is dropped with the old id.
            for n in &names {
                let mut renew = vec![n.clone()];
                if let Some(t) = catalog.tables.get(n) {
                    renew.extend(t.uniques.iter().map(|u| u.index_table.clone()));
                }
                for name in renew {
                    catalog.next_table_id += 1;
                    let id = catalog.next_table_id;
                    if let Some(t) = catalog.tables.get_mut(&name) {
                        t.id = id;
                        // Its indexes start empty too.
                        for idx in &mut t.indexes {
                            catalog.next_table_id += 1;
                            idx.id = catalog.next_table_id;
                        }
                    }
                }
            }
            catalog.version += 1;
            apply_catalog(cluster, txid, catalog).await?;
            Ok(done("TRUNCATE TABLE"))
        }
        Plan::CreateTable {
            mut table,
            if_not_exists,
        } => {
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
            if let Some(s) = crate::sql::strategy::highest_shard(&table.strategy) {
                if s >= cluster.shard_count() {
                    return Err(ProxyError::new(
                        "22023",
                        format!(
                            "strategy \"{}\" places rows on shard {s}, but there are {} shards (0 to {})",
                            table.strategy.name(),
                            cluster.shard_count(),
                            cluster.shard_count() - 1
                        ),
                    ));
                }
            }
            catalog.next_table_id += 1;
            table.id = catalog.next_table_id;
            catalog.version += 1;
            for u in &table.uniques {
                let mut idx = unique_index_table(&table, u);
                catalog.next_table_id += 1;
                idx.id = catalog.next_table_id;
                catalog.tables.insert(idx.name.clone(), idx);
            }
            catalog.tables.insert(table.name.clone(), table);
            apply_catalog(cluster, txid, catalog).await?;
            Ok(done("CREATE TABLE"))
        }
        Plan::DropTable { names, if_exists } => {
            let mut dropped = false;
            let mut notice = None;
            for n in &names {
                if let Some(t) = catalog.tables.remove(n) {
                    for u in &t.uniques {
                        catalog.tables.remove(&u.index_table);
                    }
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
        Plan::AlterTable { table, ops } => alter(cluster, txid, catalog, &table, ops).await,
        Plan::CreateIndex {
            table,
            name,
            columns,
            if_not_exists,
        } => {
            if relation_exists(&catalog, &name) {
                if if_not_exists {
                    return Ok(QueryResult::Command {
                        tag: "CREATE INDEX".into(),
                        notice: Some(Notice {
                            severity: "NOTICE",
                            code: "42P07",
                            message: format!("relation \"{name}\" already exists, skipping"),
                        }),
                    });
                }
                return Err(ProxyError::new(
                    "42P07",
                    format!("relation \"{name}\" already exists"),
                ));
            }
            catalog.next_table_id += 1;
            let id = catalog.next_table_id;
            let Some(t) = catalog.tables.get_mut(&table) else {
                return Err(ProxyError::undefined_table(&table));
            };
            t.indexes
                .push(fortress_storage::IndexDef { name, id, columns });
            catalog.version += 1;
            apply_catalog(cluster, txid, catalog).await?;
            Ok(done("CREATE INDEX"))
        }
        Plan::DropIndex { names, if_exists } => {
            let mut notice = None;
            let mut changed = false;
            for n in &names {
                let owner = catalog
                    .tables
                    .values_mut()
                    .find(|t| t.indexes.iter().any(|i| &i.name == n));
                match owner {
                    Some(t) => {
                        t.indexes.retain(|i| &i.name != n);
                        changed = true;
                    }
                    None if if_exists => {
                        notice = Some(Notice {
                            severity: "NOTICE",
                            code: "00000",
                            message: format!("index \"{n}\" does not exist, skipping"),
                        })
                    }
                    None => {
                        return Err(ProxyError::new(
                            "42704",
                            format!("index \"{n}\" does not exist"),
                        ))
                    }
                }
            }
            if changed {
                catalog.version += 1;
                apply_catalog(cluster, txid, catalog).await?;
            }
            Ok(QueryResult::Command {
                tag: "DROP INDEX".into(),
                notice,
            })
        }
        other => Err(ProxyError::new("XX000", format!("{other:?} is not DDL"))),
    }
}

/// Tables, indexes and constraint indexes share one namespace.
fn relation_exists(catalog: &Catalog, name: &str) -> bool {
    catalog.tables.values().any(|t| {
        t.name == name
            || t.pkey_name() == name
            || t.indexes.iter().any(|i| i.name == name)
            || t.uniques.iter().any(|u| u.name == name)
    })
}

/// ALTER TABLE: added columns are appended (stored rows are completed with
/// the default on read); dropped ones keep their place but vanish from SQL.
async fn alter(
    cluster: &Cluster,
    txid: u64,
    mut catalog: Catalog,
    name: &str,
    ops: Vec<AlterOp>,
) -> Result<QueryResult> {
    let Some(mut t) = catalog.get(name).cloned() else {
        return Ok(QueryResult::Command {
            tag: "ALTER TABLE".into(),
            notice: Some(Notice {
                severity: "NOTICE",
                code: "00000",
                message: format!("relation \"{name}\" does not exist, skipping"),
            }),
        });
    };
    if let Some(columns) = ops.iter().find_map(|op| match op {
        AlterOp::AddPrimaryKey { columns } => Some(columns.clone()),
        _ => None,
    }) {
        if ops.len() > 1 {
            return Err(ProxyError::unsupported(
                "ADD PRIMARY KEY together with other ALTER TABLE actions",
            ));
        }
        add_primary_key(cluster, txid, catalog, t, columns).await?;
        return Ok(done("ALTER TABLE"));
    }
    let mut notice = None;
    let mut changed = false;
    for op in ops {
        match op {
            AlterOp::AddColumn {
                mut column,
                if_not_exists,
            } => {
                if t.column_index(&column.name).is_some() {
                    if if_not_exists {
                        notice = Some(Notice {
                            severity: "NOTICE",
                            code: "42701",
                            message: format!(
                                "column \"{}\" of relation \"{name}\" already exists, skipping",
                                column.name
                            ),
                        });
                        continue;
                    }
                    return Err(ProxyError::new(
                        "42701",
                        format!(
                            "column \"{}\" of relation \"{name}\" already exists",
                            column.name
                        ),
                    ));
                }
                // Existing rows get the default once, as PostgreSQL's
                // "missing value" does for constant defaults.
                column.missing = match &column.default {
                    Some(e) => Some(e.eval(&Vec::new())?).filter(|v| !v.is_null()),
                    None => None,
                };
                if !column.nullable && column.missing.is_none() && !is_empty(cluster, &t).await? {
                    return Err(ProxyError::new(
                        "23502",
                        format!(
                            "column \"{}\" of relation \"{name}\" contains null values",
                            column.name
                        ),
                    ));
                }
                t.columns.push(column);
                changed = true;
            }
            AlterOp::AddPrimaryKey { .. } => unreachable!("handled above"),
            AlterOp::DropColumn {
                name: col,
                if_exists,
            } => {
                let Some(i) = t.column_index(&col) else {
                    if if_exists {
                        notice = Some(Notice {
                            severity: "NOTICE",
                            code: "00000",
                            message: format!(
                                "column \"{col}\" of relation \"{name}\" does not exist, skipping"
                            ),
                        });
                        continue;
                    }
                    return Err(ProxyError::new(
                        "42703",
                        format!("column \"{col}\" of relation \"{name}\" does not exist"),
                    ));
                };
                if t.primary_key.contains(&i) {
                    return Err(ProxyError::unsupported(format!(
                        "dropping primary-key column \"{col}\" (rows are stored by their key)"
                    )));
                }
                if t.visible_columns().len() == 1 {
                    return Err(ProxyError::unsupported("dropping the last column"));
                }
                // A UNIQUE constraint on the column goes with it.
                let (gone, kept): (Vec<_>, Vec<_>) =
                    t.uniques.drain(..).partition(|u| u.columns.contains(&i));
                t.uniques = kept;
                for u in gone {
                    catalog.tables.remove(&u.index_table);
                }
                t.indexes.retain(|idx| !idx.columns.contains(&i));
                let c = &mut t.columns[i];
                c.dropped = true;
                c.nullable = true;
                c.default = None;
                c.missing = None;
                changed = true;
            }
        }
    }
    if changed {
        catalog.tables.insert(t.name.clone(), t);
        catalog.version += 1;
        apply_catalog(cluster, txid, catalog).await?;
    }
    Ok(QueryResult::Command {
        tag: "ALTER TABLE".into(),
        notice,
    })
}

/// ALTER TABLE ADD PRIMARY KEY on a table created without one. The table is
/// locked (shards refuse writes to it), checked for NULLs and duplicates,
/// then each shard re-keys its rows into a new tree as it installs the new
/// catalog. A key that contains the shard key keeps every row on its shard,
/// so equal keys can only meet on one shard and each shard's check covers
/// the whole table; the shard key may change only while the table is empty.
async fn add_primary_key(
    cluster: &Cluster,
    txid: u64,
    mut catalog: Catalog,
    mut t: TableDef,
    columns: Vec<usize>,
) -> Result<()> {
    let Some(rowid) = t.rowid else {
        return Err(ProxyError::new(
            "42P16",
            format!(
                "multiple primary keys for table \"{}\" are not allowed",
                t.name
            ),
        ));
    };
    if !t.uniques.is_empty() {
        return Err(ProxyError::unsupported(
            "ADD PRIMARY KEY on a table with UNIQUE constraints",
        ));
    }
    t.locked = true;
    catalog.tables.insert(t.name.clone(), t.clone());
    catalog.version += 1;
    apply_catalog(cluster, txid, catalog.clone()).await?;
    let checked = check_new_key(cluster, &t, &columns).await;
    t.locked = false;
    let mut next = catalog;
    next.version += 1;
    if let Err(e) = checked {
        next.tables.insert(t.name.clone(), t);
        apply_catalog(cluster, txid, next).await?;
        return Err(e);
    }
    let mut new = t.clone();
    next.next_table_id += 1;
    new.id = next.next_table_id;
    new.rewritten_from = Some(t.id);
    for idx in &mut new.indexes {
        next.next_table_id += 1;
        idx.id = next.next_table_id;
    }
    let gone = &mut new.columns[rowid];
    gone.dropped = true;
    gone.nullable = true;
    gone.default = None;
    new.rowid = None;
    for &c in &columns {
        new.columns[c].nullable = false;
    }
    if !columns.contains(&new.shard_key) {
        new.shard_key = columns[0];
    }
    new.primary_key = columns;
    next.tables.insert(new.name.clone(), new);
    apply_catalog(cluster, txid, next).await
}

/// The checks before `columns` become `t`'s primary key (`t` is locked).
async fn check_new_key(cluster: &Cluster, t: &TableDef, columns: &[usize]) -> Result<()> {
    if !columns.contains(&t.shard_key) && !is_empty(cluster, t).await? {
        return Err(ProxyError::new(
            "0A000",
            format!(
                "the primary key of \"{}\" must include its shard key \"{}\": rows are placed by it",
                t.name, t.columns[t.shard_key].name
            ),
        ));
    }
    if !columns.contains(&t.shard_key) && t.strategy != fortress_storage::schema::Strategy::Hash {
        return Err(ProxyError::unsupported(format!(
            "a primary key without the shard key on a {} table",
            t.strategy.name()
        )));
    }
    let frag = Fragment::FindKeyViolation {
        table: t.id,
        columns: columns.to_vec(),
    };
    // A prepared transaction that writes to the table is waited out.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut found: Vec<Row> = Vec::new();
    for shard in cluster.all_shards() {
        loop {
            match cluster
                .scatter(&[shard], cluster.txid(), &frag)
                .await
                .remove(0)
            {
                Err(e) if e.sql_state() == "55P03" && std::time::Instant::now() < deadline => {
                    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
                Ok(out) => {
                    found.extend(out.into_rows());
                    break;
                }
            }
        }
    }
    let null = |row: &Row| columns.iter().any(|&c| row[c].is_null());
    let Some(row) = found.iter().find(|r| null(r)).or(found.first()) else {
        return Ok(());
    };
    if let Some(&c) = columns.iter().find(|&&c| row[c].is_null()) {
        return Err(ProxyError::new(
            "23502",
            format!(
                "column \"{}\" of relation \"{}\" contains null values",
                t.columns[c].name, t.name
            ),
        ));
    }
    let names: Vec<&str> = columns
        .iter()
        .map(|&c| t.columns[c].name.as_str())
        .collect();
    let values: Vec<String> = columns
        .iter()
        .map(|&c| row[c].to_text().unwrap_or_default())
        .collect();
    Err(ProxyError::Sql {
        code: "23505",
        message: format!("could not create unique index \"{}\"", t.pkey_name()),
        detail: Some(format!(
            "Key ({})=({}) is duplicated.",
            names.join(", "),
            values.join(", ")
        )),
        position: None,
    })
}

/// True if no shard holds a live row of `t`.
async fn is_empty(cluster: &Cluster, t: &TableDef) -> Result<bool> {
    let frag = Fragment::Scan {
        table: t.id,
        key_prefix: Vec::new(),
        filter: None,
        projection: Vec::new(),
        order_by: Vec::new(),
        limit: Some(1),
        snapshot: Some(cluster.snapshot()),
    };
    for o in cluster
        .scatter(&cluster.all_shards(), cluster.txid(), &frag)
        .await
    {
        if let FragmentOutput::Rows(r) = o? {
            if !r.is_empty() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// The hidden table that enforces UNIQUE `u` of `base`: keyed by the
/// constrained columns (sharded by the first), pointing at the row's key.
pub fn unique_index_table(base: &TableDef, u: &fortress_storage::schema::UniqueDef) -> TableDef {
    let key_col = |name: &str, c: usize| fortress_storage::ColumnDef {
        nullable: false,
        ..fortress_storage::ColumnDef::new(name, base.columns[c].ty)
    };
    let columns = u
        .columns
        .iter()
        .map(|&c| key_col(&base.columns[c].name, c))
        .chain(
            // A keyless table's shard key may be NULL.
            base.primary_key
                .iter()
                .map(|&c| fortress_storage::ColumnDef {
                    nullable: base.columns[c].nullable,
                    ..key_col(&format!("pk_{}", base.columns[c].name), c)
                }),
        )
        .collect();
    TableDef {
        hidden: true,
        ..TableDef::new(0, &u.index_table, columns, (0..u.columns.len()).collect())
    }
}

/// Installs a new catalog on every shard, then in the proxy. If some shard
/// fails, the version is still adopted when any shard logged it: the newest
/// logged catalog is what every shard converges to at the next start, and a
/// later DDL must not reuse its version number.
pub(crate) async fn apply_catalog(cluster: &Cluster, txid: u64, catalog: Catalog) -> Result<()> {
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
