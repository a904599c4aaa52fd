//! EXPLAIN: the plan as text lines, with each table's route (which shards,
//! single-shard or scatter-gather) and the steps done at the proxy.

use std::collections::BTreeSet;

use fortress_storage::index::IndexUse;
use fortress_storage::schema::Strategy;
use fortress_storage::{Expr, TableDef, Value};

use crate::cluster::Cluster;
use crate::plan::{JoinKind, Plan, SelectPlan, SetOp, Source};
use crate::pushdown::{colocation, split_for_join, Colocation};
use crate::route::placement::shard_for_row;
use crate::route::router::{route, Target};
use crate::select::{join_target, SplitAggregate};

/// The lines of `EXPLAIN <plan>`.
pub fn explain(cluster: &Cluster, plan: &Plan) -> Vec<String> {
    let mut out = Vec::new();
    match plan {
        Plan::Select(s) => select(cluster, s, 0, &mut out),
        Plan::Insert {
            table,
            rows,
            on_conflict,
            ..
        } => {
            let shards: BTreeSet<u32> = rows
                .iter()
                .filter_map(|r| shard_for_row(cluster.ring(), table, r).ok())
                .collect();
            let how = if table.replicated {
                format!("every shard ({}): replicated table", cluster.shard_count())
            } else {
                shard_list(cluster, &shards)
            };
            out.push(format!(
                "Insert on {}: {} row(s) to {how}",
                table.name,
                rows.len()
            ));
            if on_conflict.is_some() {
                out.push("  On conflict: primary key, checked in a transaction".into());
            }
            commit_line(cluster, table, shards.len(), &mut out);
        }
        Plan::Update { table, filter, .. } | Plan::Delete { table, filter, .. } => {
            let verb = if matches!(plan, Plan::Update { .. }) {
                "Update"
            } else {
                "Delete"
            };
            out.push(format!("{verb} on {}", table.name));
            let n = scan(cluster, table, filter.as_ref(), 1, &mut out);
            commit_line(cluster, table, n, &mut out);
        }
        other => out.push(format!("Utility statement: {}", utility_name(other))),
    }
    out
}

fn utility_name(p: &Plan) -> &'static str {
    match p {
        Plan::CreateTable { .. } => "CREATE TABLE (catalog change on every shard)",
        Plan::DropTable { .. } => "DROP TABLE (catalog change on every shard)",
        Plan::Truncate { .. } => "TRUNCATE (catalog change on every shard)",
        Plan::CopyIn { .. } => "COPY FROM STDIN",
        Plan::CopyOut { .. } => "COPY TO STDOUT",
        Plan::CreateIndex { .. } => "CREATE INDEX (built on every shard)",
        Plan::DropIndex { .. } => "DROP INDEX",
        _ => "session command",
    }
}

fn commit_line(cluster: &Cluster, table: &TableDef, shards: usize, out: &mut Vec<String>) {
    let multi = crate::exec::writes_need_transaction(table) || shards > 1;
    out.push(if multi {
        let why = if table.replicated {
            "writes go to every shard"
        } else if !table.uniques.is_empty() {
            "UNIQUE index entries may live on other shards"
        } else {
            "rows on several shards"
        };
        format!(
            "  Commit: implicit transaction, two-phase commit across up to {} shards ({why})",
            cluster.shard_count()
        )
    } else {
        "  Commit: one shard, one WAL record".into()
    });
}

fn shard_list(cluster: &Cluster, shards: &BTreeSet<u32>) -> String {
    if shards.len() == 1 {
        format!(
            "shard {} (single-shard)",
            shards.first().copied().unwrap_or(0)
        )
    } else {
        let list: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
        format!(
            "shards {} of {} (multi-shard)",
            list.join(", "),
            cluster.shard_count()
        )
    }
}

/// A non-hash table's strategy, as EXPLAIN shows it.
fn sharding(table: &TableDef) -> Option<String> {
    let key = &table.columns[table.shard_key].name;
    let text = |v: &Value| v.to_text().unwrap_or_default();
    let shards = |g: &[u32]| g.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
    Some(match &table.strategy {
        Strategy::Hash => return None,
        Strategy::Range { splits } => {
            let points: Vec<String> = splits.iter().map(text).collect();
            format!("range on {key}, split points {}", points.join(", "))
        }
        Strategy::Time { interval } => {
            let width = format!("{interval:?}").to_lowercase();
            format!("time on {key}, {width} buckets")
        }
        Strategy::List { values, default } => {
            let mut items: Vec<String> = values
                .iter()
                .map(|(v, s)| format!("{}:{s}", text(v)))
                .collect();
            items.extend(default.map(|d| format!("default:{d}")));
            format!("list on {key} ({})", items.join("; "))
        }
        Strategy::Hybrid {
            hash_key,
            groups,
            default,
        } => {
            let mut items: Vec<String> = groups
                .iter()
                .map(|(v, g)| format!("{}:{}", text(v), shards(g)))
                .collect();
            items.extend(default.as_deref().map(|d| format!("default:{}", shards(d))));
            format!(
                "hybrid: list on {key} ({}), then hash of {}",
                items.join("; "),
                table.columns[*hash_key].name
            )
        }
    })
}

/// Describes one table scan; returns how many shards it reads.
fn scan(
    cluster: &Cluster,
    table: &TableDef,
    filter: Option<&Expr>,
    depth: usize,
    out: &mut Vec<String>,
) -> usize {
    let pad = "  ".repeat(depth);
    let r = route(cluster.ring(), table, filter);
    let pruned = match &table.strategy {
        Strategy::Hash => "IN list on the shard key".to_string(),
        s => format!("{} strategy: pruned by the shard key", s.name()),
    };
    let (where_, n) = match r.target {
        Target::One(s) if table.replicated => (
            format!("shard {s} (replicated table: any one shard answers)"),
            1,
        ),
        Target::One(s) if table.strategy == Strategy::Hash => {
            (format!("shard {s} (single-shard: shard key equality)"), 1)
        }
        Target::One(s) => (format!("shard {s} (single-shard: {pruned})"), 1),
        Target::Some(shards) => {
            let n = shards.len();
            let list: Vec<String> = shards.iter().map(|s| s.to_string()).collect();
            (format!("shards {} ({pruned})", list.join(", ")), n)
        }
        Target::All => (
            format!("all {} shards (scatter-gather)", cluster.shard_count()),
            cluster.shard_count() as usize,
        ),
    };
    out.push(format!("{pad}-> Scan on {} at {where_}", table.name));
    if let Some(how) = sharding(table) {
        out.push(format!("{pad}     Sharding: {how}"));
    }
    if !r.key_prefix.is_empty() {
        out.push(format!(
            "{pad}     Key prefix: {} primary-key column(s)",
            r.key_prefix.len()
        ));
    }
    if let (true, Some(how)) = (
        r.key_prefix.is_empty(),
        fortress_storage::index::choose(table, filter),
    ) {
        let kind = match how {
            IndexUse::Lookup(..) => "lookup",
            IndexUse::Range(..) => "range scan",
        };
        out.push(format!(
            "{pad}     Index {kind}: {} (local to each shard)",
            how.index().name
        ));
    }
    if filter.is_some() {
        out.push(format!("{pad}     Filter: evaluated on the shards"));
    }
    n
}

fn select(cluster: &Cluster, s: &SelectPlan, depth: usize, out: &mut Vec<String>) {
    let pad = "  ".repeat(depth);
    if let Some(l) = s.limit {
        out.push(format!("{pad}Limit {l} offset {} (at the proxy)", s.offset));
    } else if s.offset > 0 {
        out.push(format!("{pad}Offset {} (at the proxy)", s.offset));
    }
    let pushed = s.runs_on_shards();
    if !s.order_by.is_empty() {
        if pushed {
            out.push(format!(
                "{pad}Merge: k-way merge of per-shard sorted runs ({} key(s)){}",
                s.order_by.len(),
                if s.limit.is_some() {
                    "; LIMIT+OFFSET pushed to each shard"
                } else {
                    ""
                }
            ));
        } else {
            out.push(format!(
                "{pad}Sort at the proxy ({} key(s))",
                s.order_by.len()
            ));
        }
    } else if pushed {
        out.push(format!("{pad}Gather: concatenate shard results"));
    }
    let split = (!s.subqueries.iter().any(|q| !q.outer_refs.is_empty()))
        .then(|| SplitAggregate::of(&mut s.clone()))
        .flatten();
    if let Some(split) = &split {
        let what = match &s.aggregate {
            None => "Distinct: grouped on each shard, merged at the proxy".to_string(),
            Some(agg) => format!(
                "Aggregate: partial on each shard, final at the proxy: {} group key(s), {} aggregate(s){}{}",
                agg.keys.len(),
                agg.calls.len(),
                if split.distinct_arg {
                    ", DISTINCT by grouping on its argument"
                } else {
                    ""
                },
                if s.having.is_some() { ", HAVING" } else { "" }
            ),
        };
        out.push(format!("{pad}{what}"));
    } else if s.distinct {
        out.push(format!("{pad}Distinct at the proxy"));
    }
    if let (Some(agg), None) = (&s.aggregate, &split) {
        out.push(format!(
            "{pad}Aggregate at the proxy: {} group key(s), {} aggregate(s){}",
            agg.keys.len(),
            agg.calls.len(),
            if s.having.is_some() { ", HAVING" } else { "" }
        ));
    }
    if !s.subqueries.is_empty() {
        out.push(format!(
            "{pad}Subqueries: {} run first, results inlined",
            s.subqueries.len()
        ));
    }
    match &s.source {
        None => out.push(format!("{pad}-> Result (no table)")),
        Some(src) => {
            // A join's sides apply the parts of the filter they can; the
            // whole filter runs at the proxy on the joined rows.
            if s.filter.is_some() && !matches!(src, Source::Table(_)) {
                out.push(format!("{pad}Filter at the proxy"));
            }
            let filter = s.filter.as_ref();
            source(cluster, src, filter, depth, out);
        }
    }
}

fn source(
    cluster: &Cluster,
    src: &Source,
    filter: Option<&Expr>,
    depth: usize,
    out: &mut Vec<String>,
) {
    let pad = "  ".repeat(depth);
    match src {
        Source::Table(t) => {
            scan(cluster, t, filter, depth, out);
        }
        Source::Join {
            left,
            right,
            kind,
            on,
        } => {
            let (lf, rf) = split_for_join(filter, on.as_ref(), left.width(), *kind);
            let name = match kind {
                JoinKind::Inner => "Inner",
                JoinKind::Left => "Left",
            };
            let method = if on.is_some() {
                "hash join when the condition has an equality, else nested loop"
            } else {
                "nested loop (cross product)"
            };
            if let (Source::Table(lt), Source::Table(rt)) = (left.as_ref(), right.as_ref()) {
                if let Some(how) = colocation(lt, rt, on.as_ref(), *kind) {
                    let why = match how {
                        Colocation::ShardKeys => "co-located on their shard keys",
                        Colocation::RightReplicated | Colocation::LeftReplicated => {
                            "one side replicated"
                        }
                        Colocation::BothReplicated => "both replicated",
                    };
                    let (lr, rr) = (
                        route(cluster.ring(), lt, lf.as_ref()),
                        route(cluster.ring(), rt, rf.as_ref()),
                    );
                    let target =
                        join_target(how, *kind, &lr.target, &rr.target, cluster.all_shards());
                    let at = match target {
                        Target::One(s) => format!("shard {s}"),
                        Target::Some(s) => format!(
                            "shards {}",
                            s.iter().map(u32::to_string).collect::<Vec<_>>().join(", ")
                        ),
                        Target::All => format!("all {} shards", cluster.shard_count()),
                    };
                    out.push(format!(
                        "{pad}-> {name} join on the shards ({why}) at {at}: {method}"
                    ));
                    scan(cluster, lt, lf.as_ref(), depth + 1, out);
                    scan(cluster, rt, rf.as_ref(), depth + 1, out);
                    return;
                }
            }
            out.push(format!("{pad}-> {name} join at the proxy: {method}"));
            source(cluster, left, lf.as_ref(), depth + 1, out);
            source(cluster, right, rf.as_ref(), depth + 1, out);
        }
        Source::Rows { rows, .. } => {
            out.push(format!(
                "{pad}-> System relation ({} rows, from the catalog)",
                rows.len()
            ));
        }
        Source::Derived(p) => {
            out.push(format!("{pad}-> Subquery in FROM"));
            select(cluster, p, depth + 1, out);
        }
        Source::SetOp {
            op,
            all,
            left,
            right,
        } => {
            let name = match op {
                SetOp::Union => "Union",
                SetOp::Intersect => "Intersect",
                SetOp::Except => "Except",
            };
            out.push(format!(
                "{pad}-> {name}{} at the proxy",
                if *all { " All" } else { "" }
            ));
            select(cluster, left, depth + 1, out);
            select(cluster, right, depth + 1, out);
        }
    }
}
