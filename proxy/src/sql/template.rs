//! Plans bound once per prepared statement and reused by its executions.
//! Parameters are bound as slots that each execution fills; binding the
//! statement again would resolve every name and type anew for the same plan.

use std::collections::HashSet;
use std::sync::Arc;

use fortress_storage::{Catalog, DataType, Expr, Value};
use sqlparser::ast::Statement;

use crate::error::Result;
use crate::plan::{OnConflict, Plan, Returning, SelectPlan, Source};
use crate::session::Session;
use crate::sql::bind::{cast_param, Binder, ParamSite, NOW_SLOT, PARAM_SLOT_BASE};
use crate::sql::expr::constant;

/// A plan with parameter slots, good while the catalog it was bound
/// against is the current one.
#[derive(Debug)]
pub struct Template {
    catalog: Arc<Catalog>,
    plan: Plan,
    sites: Vec<ParamSite>,
    /// An INSERT's values computed per execution: per VALUES row, (column,
    /// expression).
    cells: Vec<Vec<(usize, Expr)>>,
    /// Whether the plan reads now() (its slot is filled per execution).
    reads_now: bool,
}

impl Template {
    /// Binds `stmt` for reuse. now() becomes a slot, and an INSERT's values
    /// that read a parameter or now() or call a function are computed per
    /// execution. `None` when the plan holds for one execution only (it read
    /// a setting, localtimestamp or current_date, or a parameter went into a
    /// bind-time constant such as LIMIT), or reads a parameter or now() in a
    /// part [`Template::instantiate`] does not fill. The caller then binds
    /// with the values as literals, which also reports any error.
    pub fn bind(
        catalog: &Arc<Catalog>,
        session: &Session,
        stmt: &Statement,
        params: &[Value],
        declared: Vec<Option<DataType>>,
    ) -> Option<Template> {
        let mut binder = Binder::new(catalog, session, Some(params), declared);
        binder.sites = Some(Vec::new());
        let mut plan = binder.bind(stmt).ok()?;
        if binder.volatile.get() {
            return None;
        }
        let sites = binder.sites.take().unwrap_or_default();
        let mut cells = std::mem::take(&mut binder.insert_cells);
        if cells.iter().all(Vec::is_empty) {
            // Only constants: an execution has nothing to compute.
            cells.clear();
        }
        let mut reached = HashSet::new();
        let mut nows = 0;
        let mut count = |e: &mut Expr| {
            e.visit(&mut |n| match n {
                Expr::Slot(NOW_SLOT) => nows += 1,
                Expr::Slot(s) if *s >= PARAM_SLOT_BASE => {
                    reached.insert(*s);
                }
                _ => {}
            })
        };
        let walked = each_expr(&mut plan, &mut count);
        cells.iter_mut().flatten().for_each(|(_, e)| count(e));
        let whole = walked && reached.len() == sites.len() && nows == binder.now_slots.get();
        whole.then(|| Template {
            catalog: catalog.clone(),
            plan,
            sites,
            cells,
            reads_now: nows > 0,
        })
    }

    /// Whether the plan was bound against `catalog`.
    pub fn fits(&self, catalog: &Arc<Catalog>) -> bool {
        Arc::ptr_eq(&self.catalog, catalog)
    }

    /// The plan with `params` in its slots, cast as binding would cast them,
    /// and now() at `now` (a timestamptz in microseconds, asked for only if
    /// the plan reads it).
    pub fn instantiate(&self, params: &[Value], now: impl FnOnce() -> i64) -> Result<Plan> {
        let values = self
            .sites
            .iter()
            .map(|s| {
                cast_param(
                    params.get(s.index).cloned().unwrap_or(Value::Null),
                    &s.casts,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        let now = self.reads_now.then(|| Value::Timestamptz(now()));
        let mut plan = self.plan.clone();
        if values.is_empty() && now.is_none() && self.cells.is_empty() {
            return Ok(plan);
        }
        let mut fill = |e: &mut Expr| {
            e.visit_mut(&mut |n| {
                if let Expr::Slot(s) = *n {
                    let v = match s {
                        NOW_SLOT => now.as_ref(),
                        s => s
                            .checked_sub(PARAM_SLOT_BASE)
                            .and_then(|i| values.get(i as usize)),
                    };
                    if let Some(v) = v {
                        *n = Expr::Literal(v.clone());
                    }
                }
            })
        };
        each_expr(&mut plan, &mut fill);
        if let Plan::Insert { rows, .. } = &mut plan {
            for (row, cells) in rows.iter_mut().zip(&self.cells) {
                for (col, e) in cells {
                    let mut e = e.clone();
                    fill(&mut e);
                    row[*col] = constant(&e)?;
                }
            }
        }
        Ok(plan)
    }
}

/// Calls `f` on every expression of the plan kinds a template may hold.
/// False for any other plan, or one with subqueries or derived tables,
/// whose expressions it does not reach.
fn each_expr(plan: &mut Plan, f: &mut impl FnMut(&mut Expr)) -> bool {
    match plan {
        Plan::Select(s) => select_exprs(s, f),
        Plan::Insert {
            on_conflict,
            returning,
            ..
        } => {
            if let Some(OnConflict::DoUpdate {
                assignments,
                filter,
            }) = on_conflict
            {
                assignments.iter_mut().for_each(|(_, e)| f(e));
                filter.iter_mut().for_each(&mut *f);
            }
            returning_exprs(returning, f);
            true
        }
        Plan::Update {
            filter,
            assignments,
            returning,
            subqueries,
            ..
        } => {
            filter.iter_mut().for_each(&mut *f);
            assignments.iter_mut().for_each(|(_, e)| f(e));
            returning_exprs(returning, f);
            subqueries.is_empty()
        }
        Plan::Delete {
            filter,
            returning,
            subqueries,
            ..
        } => {
            filter.iter_mut().for_each(&mut *f);
            returning_exprs(returning, f);
            subqueries.is_empty()
        }
        _ => false,
    }
}

fn returning_exprs(returning: &mut Option<Returning>, f: &mut impl FnMut(&mut Expr)) {
    if let Some(r) = returning {
        r.projection.iter_mut().for_each(f);
    }
}

fn select_exprs(s: &mut SelectPlan, f: &mut impl FnMut(&mut Expr)) -> bool {
    if let Some(src) = &mut s.source {
        if !source_exprs(src, f) {
            return false;
        }
    }
    s.filter.iter_mut().for_each(&mut *f);
    s.having.iter_mut().for_each(&mut *f);
    s.projection.iter_mut().for_each(&mut *f);
    s.order_by.iter_mut().for_each(|k| f(&mut k.expr));
    if let Some(agg) = &mut s.aggregate {
        agg.keys.iter_mut().for_each(&mut *f);
        for c in &mut agg.calls {
            c.arg.iter_mut().for_each(&mut *f);
            c.filter.iter_mut().for_each(&mut *f);
        }
    }
    s.subqueries.is_empty()
}

fn source_exprs(src: &mut Source, f: &mut impl FnMut(&mut Expr)) -> bool {
    match src {
        Source::Table(_) => true,
        Source::Join {
            left, right, on, ..
        } => {
            let sides = source_exprs(left, f) && source_exprs(right, f);
            on.iter_mut().for_each(f);
            sides
        }
        Source::Derived(_) | Source::Rows { .. } | Source::SetOp { .. } => false,
    }
}
