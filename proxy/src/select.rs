//! SELECT execution. A plain one-table query is pushed to the shards (filter,
//! sort, limit) and k-way merged; anything else (joins, grouping, DISTINCT,
//! derived tables) gathers the filtered table rows and finishes at the proxy:
//! join, filter, group, HAVING, project, DISTINCT, sort, OFFSET/LIMIT.

use std::collections::{BTreeSet, HashMap};

use fortress_storage::expr::{compare_keys, sort_values};
use fortress_storage::{
    Expr, Fragment, FragmentOutput, Row, ShardId, TableDef, TableScan, Timestamp, Value,
};
use futures::future::BoxFuture;
use futures::FutureExt;

use crate::cluster::Cluster;
use crate::error::{ProxyError, Result};
use crate::plan::{JoinKind, SelectPlan, SetOp, Source, Subquery, SubqueryKind};
use crate::pushdown::{colocation, split_for_join, Colocation};
use crate::route::router::{narrow_in_list, Target};
use crate::stream::{Finish, RowStream};
use crate::txn::Txn;
use fortress_storage::aggregate::{group, merge_partials, GroupKey};
use fortress_storage::join::{join, WorkLimit};

/// How a statement reads: one snapshot for every shard, plus the
/// transaction's own writes when it runs inside one.
pub struct Reader<'a> {
    pub cluster: &'a Cluster,
    pub snapshot: Timestamp,
    pub txn: Option<&'a Txn>,
}

/// The value a subquery gives its slot.
#[derive(Clone)]
pub enum SlotValue {
    Scalar(Value),
    List(Vec<Value>),
}

impl Reader<'_> {
    /// Rows of `table` passing `filter`, as this reader sees them.
    pub async fn table_rows(&self, table: &TableDef, filter: Option<&Expr>) -> Result<Vec<Row>> {
        let r = self.cluster.route(table, filter);
        let frag = Fragment::Scan {
            table: table.id,
            key_prefix: r.key_prefix,
            filter: filter.cloned(),
            projection: Vec::new(),
            order_by: Vec::new(),
            limit: None,
            snapshot: Some(self.snapshot),
        };
        let rows: Vec<Row> = self
            .scan(r.target, Some(table), frag)
            .await?
            .into_iter()
            .flatten()
            .collect();
        match self.txn {
            Some(txn) if txn.touches(table.id) => txn.overlay(table, rows, filter),
            _ => Ok(rows),
        }
    }

    /// The fragment for each shard `target` names. An IN-list route on
    /// `table` gives each shard only the list values it owns.
    fn parts(
        &self,
        target: Target,
        table: Option<&TableDef>,
        frag: Fragment,
    ) -> Vec<(ShardId, Fragment)> {
        self.cluster.metrics().record_route(&target);
        let split = matches!(target, Target::Some(_));
        let shards = match target {
            // One shard: the fragment moves there as it is.
            Target::One(s) => return vec![(s, frag)],
            Target::Some(s) => s,
            Target::All => self.cluster.all_shards(),
        };
        let narrow = |f: &Option<Expr>, t: &TableDef, shard| {
            f.as_ref()
                .map(|e| narrow_in_list(self.cluster.ring(), t, e, shard))
        };
        shards
            .into_iter()
            .map(|shard| {
                let mut own = frag.clone();
                if let (true, Some(t)) = (split, table) {
                    match &mut own {
                        Fragment::Scan { filter, .. } | Fragment::Aggregate { filter, .. } => {
                            *filter = narrow(filter, t, shard);
                        }
                        _ => {}
                    }
                }
                (shard, own)
            })
            .collect()
    }

    /// Runs a read on the shards `target` names; one row list per shard.
    async fn scan(
        &self,
        target: Target,
        table: Option<&TableDef>,
        frag: Fragment,
    ) -> Result<Vec<Vec<Row>>> {
        let mut parts = Vec::new();
        for o in self
            .cluster
            .scatter_each(self.parts(target, table, frag))
            .await
        {
            if let FragmentOutput::Rows(rows) = o? {
                parts.push(rows);
            }
        }
        Ok(parts)
    }

    /// Runs each (uncorrelated) subquery once and returns the values for
    /// their slots.
    pub async fn run_subqueries(&self, subs: Vec<Subquery>) -> Result<HashMap<u32, SlotValue>> {
        let mut values = HashMap::new();
        for s in subs {
            values.insert(s.slot, self.subquery_value(s.kind, s.plan).await?);
        }
        Ok(values)
    }

    /// The value one run of a subquery gives its slot.
    async fn subquery_value(&self, kind: SubqueryKind, plan: SelectPlan) -> Result<SlotValue> {
        let mut plan = plan;
        if kind == SubqueryKind::Exists {
            plan.limit = Some(1);
        }
        let rows = self.select(plan).await?;
        Ok(match kind {
            SubqueryKind::Exists => SlotValue::Scalar(Value::Bool(!rows.is_empty())),
            SubqueryKind::List => SlotValue::List(
                rows.into_iter()
                    .filter_map(|mut r| r.drain(..).next())
                    .collect(),
            ),
            SubqueryKind::Scalar => {
                if rows.len() > 1 {
                    return Err(ProxyError::new(
                        "21000",
                        "more than one row returned by a subquery used as an expression",
                    ));
                }
                SlotValue::Scalar(
                    rows.into_iter()
                        .next()
                        .and_then(|mut r| r.drain(..).next())
                        .unwrap_or(Value::Null),
                )
            }
        })
    }

    /// Keeps the rows passing `filter`, whose correlated subqueries run per
    /// row with that row's values (memoised per distinct outer values).
    async fn filter_correlated(
        &self,
        rows: Vec<Row>,
        filter: Expr,
        correlated: &[Subquery],
    ) -> Result<Vec<Row>> {
        let mut memo: std::collections::BTreeMap<(usize, GroupKey), SlotValue> = Default::default();
        let mut kept = Vec::new();
        for row in rows {
            let mut values = HashMap::new();
            for (k, sub) in correlated.iter().enumerate() {
                let key = GroupKey(
                    sub.outer_refs
                        .iter()
                        .map(|(_, c)| row[*c].clone())
                        .collect(),
                );
                let v = match memo.get(&(k, key.clone())) {
                    Some(v) => v.clone(),
                    None => {
                        let outer: HashMap<u32, SlotValue> = sub
                            .outer_refs
                            .iter()
                            .map(|(slot, c)| (*slot, SlotValue::Scalar(row[*c].clone())))
                            .collect();
                        let mut plan = sub.plan.clone();
                        fill_plan(&mut plan, &outer);
                        let v = self.subquery_value(sub.kind, plan).await?;
                        memo.insert((k, key), v.clone());
                        v
                    }
                };
                values.insert(sub.slot, v);
            }
            if fill(filter.clone(), &values).matches(&row)? {
                kept.push(row);
            }
        }
        Ok(kept)
    }

    /// Runs a SELECT and returns its visible rows.
    pub fn select(&self, plan: SelectPlan) -> BoxFuture<'_, Result<Vec<Row>>> {
        async move {
            let mut plan = plan;
            let (correlated, plain): (Vec<Subquery>, Vec<Subquery>) =
                std::mem::take(&mut plan.subqueries)
                    .into_iter()
                    .partition(|s| !s.outer_refs.is_empty());
            if !plain.is_empty() {
                let values = self.run_subqueries(plain).await?;
                fill_plan(&mut plan, &values);
            }
            if !correlated.is_empty() {
                // The filter needs per-row subqueries: it runs here, after
                // the source rows are gathered.
                let rows = match &plan.source {
                    None => vec![Vec::new()],
                    Some(src) => self.source_rows(src, None).await?,
                };
                within_budget(rows.len(), self.cluster.work_limit(), "a correlated subquery")?;
                let rows = match plan.filter.take() {
                    Some(f) => self.filter_correlated(rows, f, &correlated).await?,
                    None => rows,
                };
                return finish(plan, rows);
            }
            let overlaid = matches!(&plan.source, Some(Source::Table(t)) if self.txn.is_some_and(|x| x.touches(t.id)));
            let pushable = plan.runs_on_shards() && !overlaid;
            if pushable {
                return self.pushed_down(plan).await?.collect().await;
            }
            if !overlaid {
                if let Some(split) = SplitAggregate::of(&mut plan) {
                    return self.aggregated_on_shards(plan, split).await;
                }
            }
            let rows = match &plan.source {
                None => vec![Vec::new()],
                Some(Source::Table(t)) => {
                    let rows = self.table_rows(t, plan.filter.as_ref()).await?;
                    plan.filter = None;
                    rows
                }
                // The filter stays in the plan: parts of it only narrow
                // what the join sides read.
                Some(src) => self.source_rows(src, plan.filter.as_ref()).await?,
            };
            within_budget(rows.len(), self.cluster.work_limit(), "grouping or sorting")?;
            finish(plan, rows)
        }
        .boxed()
    }

    /// Runs a SELECT whose rows are streamed to the client: a one-table
    /// query without grouping is merged from the shards as it is read;
    /// anything else is computed first.
    pub async fn select_stream(&self, plan: SelectPlan) -> Result<RowStream> {
        let mut plan = plan;
        let overlaid = matches!(&plan.source, Some(Source::Table(t)) if self.txn.is_some_and(|x| x.touches(t.id)));
        let correlated = plan.subqueries.iter().any(|s| !s.outer_refs.is_empty());
        if !plan.runs_on_shards() || overlaid || correlated {
            return Ok(RowStream::ready(self.select(plan).await?));
        }
        let subs = std::mem::take(&mut plan.subqueries);
        if !subs.is_empty() {
            let values = self.run_subqueries(subs).await?;
            fill_plan(&mut plan, &values);
        }
        self.pushed_down(plan).await
    }

    /// One table, no grouping: filter, projection, sort and limit run on
    /// the shards, whose sorted streams are merged here as the rows are read.
    async fn pushed_down(&self, plan: SelectPlan) -> Result<RowStream> {
        let Some(Source::Table(t)) = &plan.source else {
            unreachable!("checked by the caller")
        };
        let wanted = plan.limit.map(|l| l.saturating_add(plan.offset));
        let r = self.cluster.route(t, plan.filter.as_ref());
        let full_key = r.key_prefix.len() == t.primary_key.len();
        // Sort keys are over the projected row (hidden keys included),
        // which the shards produce.
        let frag = Fragment::Scan {
            table: t.id,
            key_prefix: r.key_prefix,
            filter: plan.filter.clone(),
            projection: plan.projection,
            order_by: plan.order_by.clone(),
            limit: wanted,
            snapshot: Some(self.snapshot),
        };
        let small = full_key || wanted.is_some_and(|w| w <= SMALL_RESULT);
        let inputs = self
            .cluster
            .stream(self.parts(r.target, Some(t), frag), small)
            .await?;
        Ok(crate::stream::merge(
            inputs,
            Finish {
                order_by: plan.order_by,
                offset: plan.offset,
                limit: plan.limit,
                visible: plan.columns.len(),
            },
        ))
    }

    /// Grouping split in two: partial aggregates on the shards, merged here.
    async fn aggregated_on_shards(
        &self,
        plan: SelectPlan,
        split: SplitAggregate,
    ) -> Result<Vec<Row>> {
        let (Some(Source::Table(t)), Some(agg)) = (&plan.source, &plan.aggregate) else {
            unreachable!("checked by SplitAggregate::of")
        };
        let r = self.cluster.route(t, plan.filter.as_ref());
        let frag = Fragment::Aggregate {
            table: t.id,
            key_prefix: r.key_prefix,
            filter: plan.filter.clone(),
            aggregate: split.shard,
            snapshot: Some(self.snapshot),
        };
        let parts = self.scan(r.target, Some(t), frag).await?;
        let n: usize = parts.iter().map(Vec::len).sum();
        within_budget(n, self.cluster.work_limit(), "merging partial aggregates")?;
        let rows = merge_partials(
            agg,
            split.distinct_arg,
            parts.into_iter().flatten().collect(),
        )?;
        finish_grouped(plan, rows)
    }

    /// The rows of `src`. `filter` (over its rows) is applied later by the
    /// caller; parts of it may narrow what is read here.
    fn source_rows<'s>(
        &'s self,
        src: &'s Source,
        filter: Option<&'s Expr>,
    ) -> BoxFuture<'s, Result<Vec<Row>>> {
        async move {
            match src {
                Source::Table(t) => self.table_rows(t, filter).await,
                Source::Derived(p) => self.select((**p).clone()).await,
                Source::Rows { rows, .. } => Ok(rows.clone()),
                Source::SetOp {
                    op,
                    all,
                    left,
                    right,
                } => {
                    let l = self.select((**left).clone()).await?;
                    let r = self.select((**right).clone()).await?;
                    Ok(set_operation(*op, *all, l, r))
                }
                Source::Join {
                    left,
                    right,
                    kind,
                    on,
                } => {
                    let work = self.cluster.work_limit();
                    let (lf, rf) = split_for_join(filter, on.as_ref(), left.width(), *kind);
                    if let (Source::Table(lt), Source::Table(rt)) = (left.as_ref(), right.as_ref())
                    {
                        let overlaid = self
                            .txn
                            .is_some_and(|x| x.touches(lt.id) || x.touches(rt.id));
                        if let (Some(how), false) =
                            (colocation(lt, rt, on.as_ref(), *kind), overlaid)
                        {
                            let sides = [(&**lt, lf), (&**rt, rf)];
                            return self.join_on_shards(how, sides, *kind, on.clone()).await;
                        }
                    }
                    let l = self.source_rows(left, lf.as_ref()).await?;
                    let r = self.source_rows(right, rf.as_ref()).await?;
                    within_budget(l.len() + r.len(), work, "a join")?;
                    // A nested loop can run long: off the connection's
                    // thread, where its cancel and timeout can reach it.
                    let (lw, rw, kind, on) = (left.width(), right.width(), *kind, on.clone());
                    let interrupt = crate::stop::interrupt();
                    let joined = tokio::task::spawn_blocking(move || {
                        fortress_storage::interrupt::scope(interrupt, || {
                            join(l, r, lw, rw, kind, on.as_ref(), work)
                        })
                    })
                    .await
                    .map_err(|e| ProxyError::new("XX000", format!("join task failed: {e}")))?;
                    Ok(joined?)
                }
            }
        }
        .boxed()
    }

    /// A join of co-located tables, run by the shards that can hold its
    /// rows; each side is read with its own filter.
    async fn join_on_shards(
        &self,
        how: Colocation,
        sides: [(&TableDef, Option<Expr>); 2],
        kind: JoinKind,
        on: Option<Expr>,
    ) -> Result<Vec<Row>> {
        let [(lt, lf), (rt, rf)] = sides;
        let (lr, rr) = (
            self.cluster.route(lt, lf.as_ref()),
            self.cluster.route(rt, rf.as_ref()),
        );
        let target = join_target(how, kind, &lr.target, &rr.target, self.cluster.all_shards());
        let frag = Fragment::JoinScan {
            left: TableScan {
                table: lt.id,
                key_prefix: lr.key_prefix,
                filter: lf,
            },
            right: TableScan {
                table: rt.id,
                key_prefix: rr.key_prefix,
                filter: rf,
            },
            kind,
            on,
            limit: self.cluster.work_limit(),
            snapshot: Some(self.snapshot),
        };
        let parts = self.scan(target, None, frag).await?;
        let n: usize = parts.iter().map(Vec::len).sum();
        within_budget(n, self.cluster.work_limit(), "a join's result")?;
        Ok(parts.into_iter().flatten().collect())
    }
}

/// The shards a co-located join runs on: where both sides can have rows
/// (an inner join on shard keys), where the left side can (a LEFT join, or
/// a replicated right side), or one shard when both are everywhere.
pub fn join_target(
    how: Colocation,
    kind: JoinKind,
    left: &Target,
    right: &Target,
    all: Vec<ShardId>,
) -> Target {
    let set = |t: &Target| -> BTreeSet<ShardId> {
        match t {
            Target::One(s) => [*s].into(),
            Target::Some(s) => s.iter().copied().collect(),
            Target::All => all.iter().copied().collect(),
        }
    };
    let shards: BTreeSet<ShardId> = match (how, kind) {
        (Colocation::BothReplicated, _) => return Target::One(0),
        (Colocation::ShardKeys, JoinKind::Inner) => {
            set(left).intersection(&set(right)).copied().collect()
        }
        (Colocation::ShardKeys | Colocation::RightReplicated, _) => set(left),
        (Colocation::LeftReplicated, _) => set(right),
    };
    match shards.len() {
        n if n == all.len() => Target::All,
        0 | 1 => Target::One(shards.first().copied().unwrap_or(0)),
        _ => Target::Some(shards.into_iter().collect()),
    }
}

/// Rows a LIMIT may ask for and still be read in one piece rather than
/// streamed.
const SMALL_RESULT: u64 = 1024;

/// How a one-table GROUP BY (or DISTINCT) runs split in two: the aggregate
/// each shard computes partially, grouping also on the one argument the
/// DISTINCT calls share so that the proxy can count its distinct values.
pub struct SplitAggregate {
    pub shard: fortress_storage::aggregate::Aggregate,
    pub distinct_arg: bool,
}

impl SplitAggregate {
    /// The split for `plan`, if it has one. A `SELECT DISTINCT` without
    /// aggregates becomes a grouping on its output columns first.
    pub fn of(plan: &mut SelectPlan) -> Option<SplitAggregate> {
        if !matches!(plan.source, Some(Source::Table(_))) {
            return None;
        }
        if plan.aggregate.is_none() && plan.distinct && plan.projection.len() == plan.columns.len()
        {
            let keys = std::mem::take(&mut plan.projection);
            plan.projection = (0..keys.len()).map(Expr::Column).collect();
            plan.aggregate = Some(fortress_storage::aggregate::Aggregate {
                keys,
                calls: Vec::new(),
            });
        }
        let agg = plan.aggregate.as_ref()?;
        let mut distinct = agg.calls.iter().filter(|c| c.distinct);
        let arg = match distinct.next() {
            None => None,
            Some(first) => {
                let same = |c: &&fortress_storage::aggregate::AggCall| {
                    c.arg == first.arg && c.filter.is_none()
                };
                if first.filter.is_some() || !distinct.all(|c| same(&c)) {
                    return None;
                }
                first.arg.clone()
            }
        };
        let mut keys = agg.keys.clone();
        keys.extend(arg.clone());
        Some(SplitAggregate {
            shard: fortress_storage::aggregate::Aggregate {
                keys,
                calls: agg.calls.iter().filter(|c| !c.distinct).cloned().collect(),
            },
            distinct_arg: arg.is_some(),
        })
    }
}

/// Fails with 53200 when the proxy would hold more than the statement's
/// work rows (join inputs and outputs, rows to group or sort), rather than
/// growing without bound; the one message is [`WorkLimit::check`]'s.
fn within_budget(rows: usize, limit: WorkLimit, what: &str) -> Result<()> {
    Ok(limit.check(rows, 0, what)?)
}

fn project(projection: &[Expr], row: &Row) -> Result<Row> {
    Ok(projection
        .iter()
        .map(|e| e.eval(row))
        .collect::<std::result::Result<Row, _>>()?)
}

/// The proxy-side pipeline after the source rows are gathered.
pub fn finish(plan: SelectPlan, rows: Vec<Row>) -> Result<Vec<Row>> {
    let mut rows = match &plan.filter {
        Some(f) => {
            let mut kept = Vec::with_capacity(rows.len());
            for r in rows {
                if f.matches(&r)? {
                    kept.push(r);
                }
            }
            kept
        }
        None => rows,
    };
    if let Some(agg) = &plan.aggregate {
        rows = group(agg, rows)?;
    }
    finish_grouped(plan, rows)
}

/// The pipeline after grouping: HAVING, projection, DISTINCT, sort,
/// OFFSET/LIMIT.
fn finish_grouped(plan: SelectPlan, mut rows: Vec<Row>) -> Result<Vec<Row>> {
    if let (Some(_), Some(h)) = (&plan.aggregate, &plan.having) {
        let mut kept = Vec::with_capacity(rows.len());
        for r in rows {
            if h.matches(&r)? {
                kept.push(r);
            }
        }
        rows = kept;
    }
    let mut out: Vec<Row> = rows
        .iter()
        .map(|r| project(&plan.projection, r))
        .collect::<Result<_>>()?;
    if plan.distinct {
        let mut seen = BTreeSet::new();
        out.retain(|r| seen.insert(GroupKey(r.clone())));
    }
    if !plan.order_by.is_empty() {
        let mut keyed = out
            .into_iter()
            .map(|r| Ok((sort_values(&plan.order_by, &r)?, r)))
            .collect::<Result<Vec<_>>>()?;
        keyed.sort_by(|a, b| compare_keys(&plan.order_by, &a.0, &b.0));
        out = keyed.into_iter().map(|(_, r)| r).collect();
    }
    let visible = plan.columns.len();
    Ok(out
        .into_iter()
        .skip(plan.offset as usize)
        .take(plan.limit.map_or(usize::MAX, |l| l as usize))
        .map(|mut r| {
            r.truncate(visible);
            r
        })
        .collect())
}

/// UNION / INTERSECT / EXCEPT with SQL's multiset rules for ALL and
/// duplicate removal without it.
fn set_operation(op: SetOp, all: bool, left: Vec<Row>, right: Vec<Row>) -> Vec<Row> {
    use std::collections::BTreeMap;
    let dedup = |rows: Vec<Row>| {
        let mut seen = BTreeSet::new();
        rows.into_iter()
            .filter(|r| seen.insert(GroupKey(r.clone())))
            .collect::<Vec<_>>()
    };
    match op {
        SetOp::Union => {
            let mut out = left;
            out.extend(right);
            if all {
                out
            } else {
                dedup(out)
            }
        }
        SetOp::Intersect | SetOp::Except => {
            let mut counts: BTreeMap<GroupKey, usize> = BTreeMap::new();
            for r in right {
                *counts.entry(GroupKey(r)).or_default() += 1;
            }
            let left = if all { left } else { dedup(left) };
            let mut out = Vec::new();
            for r in left {
                let key = GroupKey(r);
                let n = counts.get_mut(&key);
                let in_right = n.as_ref().is_some_and(|n| **n > 0);
                if in_right && all {
                    if let Some(n) = n {
                        *n -= 1;
                    }
                }
                if in_right == (op == SetOp::Intersect) {
                    out.push(key.0);
                }
            }
            out
        }
    }
}

/// Replaces subquery slots with their values.
pub fn fill(e: Expr, values: &HashMap<u32, SlotValue>) -> Expr {
    e.rewrite(&mut |node| match node {
        Expr::Slot(n) => match values.get(&n) {
            Some(SlotValue::Scalar(v)) => Expr::Literal(v.clone()),
            _ => Expr::Slot(n),
        },
        Expr::In {
            expr,
            list,
            negated,
        } => {
            let list = match list.as_slice() {
                [Expr::Slot(n)] => match values.get(n) {
                    Some(SlotValue::List(vs)) => vs.iter().cloned().map(Expr::Literal).collect(),
                    _ => list,
                },
                _ => list,
            };
            Expr::In {
                expr,
                list,
                negated,
            }
        }
        other => other,
    })
}

fn fill_opt(e: &mut Option<Expr>, values: &HashMap<u32, SlotValue>) {
    if let Some(x) = e.take() {
        *e = Some(fill(x, values));
    }
}

fn fill_source(src: &mut Source, values: &HashMap<u32, SlotValue>) {
    if let Source::Join {
        left, right, on, ..
    } = src
    {
        fill_source(left, values);
        fill_source(right, values);
        fill_opt(on, values);
    }
}

/// Fills every expression of a plan (not of its derived tables, which carry
/// their own subqueries).
fn fill_plan(plan: &mut SelectPlan, values: &HashMap<u32, SlotValue>) {
    fill_opt(&mut plan.filter, values);
    fill_opt(&mut plan.having, values);
    if let Some(src) = &mut plan.source {
        fill_source(src, values);
    }
    plan.projection = std::mem::take(&mut plan.projection)
        .into_iter()
        .map(|e| fill(e, values))
        .collect();
    if let Some(agg) = &mut plan.aggregate {
        agg.keys = std::mem::take(&mut agg.keys)
            .into_iter()
            .map(|e| fill(e, values))
            .collect();
        for c in &mut agg.calls {
            fill_opt(&mut c.arg, values);
            fill_opt(&mut c.filter, values);
        }
    }
}
