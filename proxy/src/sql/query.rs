//! SELECT binding: FROM (tables, joins, derived tables), WHERE, GROUP BY
//! and aggregates, HAVING, DISTINCT, ORDER BY, LIMIT/OFFSET.

use std::sync::Arc;

use fortress_storage::{DataType, Expr, SortKey, Value};
use sqlparser::ast::{self, SelectItem, SetExpr, Spanned, TableFactor};

use crate::error::{ProxyError, Result};
use crate::plan::{AggCall, Aggregate, JoinKind, OutputColumn, SelectPlan, SetOp, Source};
use crate::sql::bind::{ident_name, Binder};
use crate::sql::expr::constant;
use crate::sql::scope::Scope;
use crate::sql::types::{family, Family};

/// Re-bases an expression over the source row onto the aggregate's row
/// `[keys.., aggregates..]`; a bare column outside every key is 42803.
fn regroup(e: Expr, keys: &[Expr], aggs: &[(u32, AggCall)], scope: &Scope) -> Result<Expr> {
    if let Some(k) = keys.iter().position(|k| *k == e) {
        return Ok(Expr::Column(k));
    }
    match e {
        Expr::Slot(s) => Ok(match aggs.iter().position(|(slot, _)| *slot == s) {
            Some(i) => Expr::Column(keys.len() + i),
            None => Expr::Slot(s),
        }),
        Expr::Column(i) => Err(ProxyError::new(
            "42803",
            format!(
                "column \"{}\" must appear in the GROUP BY clause or be used in an aggregate function",
                scope.display(i)
            ),
        )),
        other => other.try_map_children(&mut |c| regroup(c, keys, aggs, scope)),
    }
}

impl Binder<'_> {
    /// Binds a nested query with its own aggregates and subqueries.
    pub(crate) fn bind_subquery(&mut self, q: &ast::Query) -> Result<SelectPlan> {
        let aggs = std::mem::take(&mut self.aggs);
        let subs = std::mem::take(&mut self.subqueries);
        let forbid = self.agg_forbidden.take();
        let r = self.bind_query(q);
        self.aggs = aggs;
        self.subqueries = subs;
        self.agg_forbidden = forbid;
        r
    }

    /// Binds a SELECT query, with its WITH list (non-recursive CTEs are
    /// bound once and read as derived tables wherever they are named).
    pub fn bind_query(&mut self, q: &ast::Query) -> Result<SelectPlan> {
        self.with_ctes(q.with.as_ref(), |b| b.bind_query_body(q))
    }

    /// Runs `f` with the CTEs of `with` in scope (non-recursive CTEs are
    /// bound once and read as derived tables wherever they are named).
    pub(crate) fn with_ctes<T>(
        &mut self,
        with: Option<&ast::With>,
        f: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let Some(with) = with else {
            return f(self);
        };
        if with.recursive {
            return Err(ProxyError::unsupported("WITH RECURSIVE"));
        }
        let depth = self.ctes.len();
        let result = (|| {
            for cte in &with.cte_tables {
                let name = ident_name(&cte.alias.name);
                if self.ctes[depth..].iter().any(|(n, _)| *n == name) {
                    return Err(ProxyError::new(
                        "42712",
                        format!("WITH query name \"{name}\" specified more than once"),
                    ));
                }
                let mut plan = self.bind_subquery(&cte.query)?;
                if cte.alias.columns.len() > plan.columns.len() {
                    return Err(ProxyError::new(
                        "42P10",
                        format!(
                            "WITH query \"{name}\" has {} columns available but {} columns specified",
                            plan.columns.len(),
                            cte.alias.columns.len()
                        ),
                    ));
                }
                for (c, a) in plan.columns.iter_mut().zip(&cte.alias.columns) {
                    c.name = ident_name(&a.name);
                }
                self.ctes.push((name, plan));
            }
            f(self)
        })();
        self.ctes.truncate(depth);
        result
    }

    fn bind_query_body(&mut self, q: &ast::Query) -> Result<SelectPlan> {
        if q.fetch.is_some() || !q.locks.is_empty() {
            return Err(ProxyError::unsupported("FETCH / FOR UPDATE"));
        }
        let select = match q.body.as_ref() {
            SetExpr::Select(s) => s,
            SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.bind_query(inner)
            }
            SetExpr::SetOperation { .. } => return self.bind_set_query(q),
            SetExpr::Values(_) => return Err(ProxyError::unsupported("VALUES as a query")),
            _ => return Err(ProxyError::unsupported("this query form")),
        };
        self.bind_select(select, q)
    }

    /// `a UNION b ORDER BY .. LIMIT ..`: the set operation is the source;
    /// ORDER BY may name output columns by name or position.
    fn bind_set_query(&mut self, q: &ast::Query) -> Result<SelectPlan> {
        let (source, columns) = self.set_operand(&q.body)?;
        let scope = Scope {
            columns: columns
                .iter()
                .map(|c| crate::sql::scope::ScopeColumn {
                    qualifier: None,
                    name: c.name.clone(),
                    ty: c.ty,
                })
                .collect(),
        };
        let projection: Vec<Expr> = (0..columns.len()).map(Expr::Column).collect();
        let mut plan = SelectPlan {
            source: Some(source),
            filter: None,
            aggregate: None,
            having: None,
            projection,
            columns,
            distinct: false,
            order_by: Vec::new(),
            limit: None,
            offset: 0,
            subqueries: Vec::new(),
            untyped: Vec::new(),
        };
        if let Some(ob) = &q.order_by {
            let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
                return Err(ProxyError::unsupported("ORDER BY ALL"));
            };
            for o in exprs {
                let e = match self.output_reference(
                    &o.expr,
                    &plan.projection,
                    &plan.columns,
                    &scope,
                    false,
                )? {
                    Some(e) => e,
                    None => return Err(ProxyError::unsupported(
                        "ORDER BY on a UNION/INTERSECT/EXCEPT result other than a result column",
                    )),
                };
                let descending = o.options.asc == Some(false);
                plan.order_by.push(SortKey {
                    expr: e,
                    descending,
                    nulls_first: o.options.nulls_first.unwrap_or(descending),
                });
            }
        }
        (plan.limit, plan.offset) = self.limit_offset(q)?;
        Ok(plan)
    }

    /// One side of a set operation, with its columns.
    fn set_operand(&mut self, e: &SetExpr) -> Result<(Source, Vec<OutputColumn>)> {
        // A chain of set operations is a level of recursion per operand.
        fortress_storage::stack::deep(|| self.set_operand_level(e))
    }

    fn set_operand_level(&mut self, e: &SetExpr) -> Result<(Source, Vec<OutputColumn>)> {
        let SetExpr::SetOperation {
            op,
            set_quantifier,
            left,
            right,
        } = e
        else {
            let plan = match e {
                SetExpr::Select(s) => {
                    let aggs = std::mem::take(&mut self.aggs);
                    let subs = std::mem::take(&mut self.subqueries);
                    let r = self.bind_select(
                        s,
                        &ast::Query {
                            with: None,
                            body: Box::new(SetExpr::Select(s.clone())),
                            order_by: None,
                            limit_clause: None,
                            fetch: None,
                            locks: Vec::new(),
                            for_clause: None,
                            settings: None,
                            format_clause: None,
                            pipe_operators: Vec::new(),
                        },
                    );
                    self.aggs = aggs;
                    self.subqueries = subs;
                    r?
                }
                SetExpr::Query(q) => self.bind_subquery(q)?,
                _ => return Err(ProxyError::unsupported("this set operand")),
            };
            let columns = plan.columns.clone();
            return Ok((Source::Derived(Box::new(plan)), columns));
        };
        let op = match op {
            ast::SetOperator::Union => SetOp::Union,
            ast::SetOperator::Intersect => SetOp::Intersect,
            ast::SetOperator::Except => SetOp::Except,
            other => return Err(ProxyError::unsupported(format!("{other}"))),
        };
        let all = match set_quantifier {
            ast::SetQuantifier::All => true,
            ast::SetQuantifier::Distinct | ast::SetQuantifier::None => false,
            other => return Err(ProxyError::unsupported(format!("{op:?} {other}"))),
        };
        let (l, lcols) = self.set_operand(left)?;
        let (r, rcols) = self.set_operand(right)?;
        if lcols.len() != rcols.len() {
            return Err(ProxyError::new(
                "42601",
                format!(
                    "each {} query must have the same number of columns",
                    format!("{op:?}").to_uppercase()
                ),
            ));
        }
        let mut left_plan = as_plan(l, &lcols);
        let mut right_plan = as_plan(r, &rcols);
        let mut columns = Vec::new();
        for (i, (a, b)) in lcols.iter().zip(&rcols).enumerate() {
            // An untyped literal takes the other side's type.
            let l_untyped = left_plan.untyped.get(i).copied().unwrap_or(false);
            let r_untyped = right_plan.untyped.get(i).copied().unwrap_or(false);
            for (p, untyped, target) in [
                (&mut left_plan, l_untyped && !r_untyped, b.ty),
                (&mut right_plan, r_untyped && !l_untyped, a.ty),
            ] {
                if untyped {
                    if let Expr::Literal(Value::Text(text)) = &p.projection[i] {
                        p.projection[i] = Expr::Literal(Value::parse(&target, text)?);
                        p.columns[i].ty = target;
                    }
                }
            }
            let (a, b) = (
                &left_plan.columns[i].clone(),
                &right_plan.columns[i].clone(),
            );
            let ty = if a.ty == b.ty {
                a.ty
            } else if family(&a.ty) != family(&b.ty) {
                return Err(ProxyError::new(
                    "42804",
                    format!(
                        "{} types {} and {} cannot be matched",
                        format!("{op:?}").to_uppercase(),
                        a.ty.pg_name(),
                        b.ty.pg_name()
                    ),
                ));
            } else if family(&a.ty) == Family::Number {
                crate::sql::expr::arith_type(&a.ty, &b.ty)
            } else {
                DataType::Text
            };
            for (p, t) in [(&mut left_plan, a.ty), (&mut right_plan, b.ty)] {
                if t != ty {
                    let e = std::mem::replace(&mut p.projection[i], Expr::Literal(Value::Null));
                    p.projection[i] = Expr::Cast(Box::new(e), ty);
                }
            }
            columns.push(OutputColumn {
                name: a.name.clone(),
                ty,
            });
        }
        Ok((
            Source::SetOp {
                op,
                all,
                left: Box::new(left_plan),
                right: Box::new(right_plan),
            },
            columns,
        ))
    }

    /// Binds one SELECT block with the query's ORDER BY and LIMIT.
    fn bind_select(&mut self, select: &ast::Select, q: &ast::Query) -> Result<SelectPlan> {
        let distinct = match &select.distinct {
            None => false,
            Some(ast::Distinct::Distinct) => true,
            Some(ast::Distinct::On(_)) => return Err(ProxyError::unsupported("DISTINCT ON")),
        };
        if select.into.is_some() {
            return Err(ProxyError::unsupported("SELECT INTO"));
        }
        let (source, scope) = self.bind_from(&select.from)?;

        self.agg_forbidden = Some("WHERE");
        self.correlation_allowed = true;
        let filter = self.predicate(select.selection.as_ref(), &scope, "WHERE");
        self.correlation_allowed = false;
        self.agg_forbidden = None;
        let filter = filter?;

        let (mut projection, columns, untyped) =
            self.select_items_typed(&select.projection, &scope)?;

        let group_exprs = match &select.group_by {
            ast::GroupByExpr::Expressions(e, mods) if mods.is_empty() => e.clone(),
            _ => return Err(ProxyError::unsupported("GROUP BY ALL / ROLLUP / CUBE")),
        };
        let mut keys = Vec::new();
        for g in &group_exprs {
            let k = self.output_reference(g, &projection, &columns, &scope, true)?;
            let k = match k {
                Some(e) => e,
                None => {
                    self.agg_forbidden = Some("GROUP BY");
                    let t = self.expr(g, &scope);
                    self.agg_forbidden = None;
                    self.finalize(t?)?.expr
                }
            };
            let mut has_agg = false;
            k.visit(&mut |e| {
                if let Expr::Slot(s) = e {
                    has_agg |= self.aggs.iter().any(|(a, _)| a == s);
                }
            });
            if has_agg {
                return Err(ProxyError::new(
                    "42803",
                    "aggregate functions are not allowed in GROUP BY",
                ));
            }
            keys.push(k);
        }

        let having = match &select.having {
            Some(h) => self.predicate(Some(h), &scope, "HAVING")?,
            None => None,
        };

        let mut order_by = Vec::new();
        if let Some(ob) = &q.order_by {
            let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
                return Err(ProxyError::unsupported("ORDER BY ALL"));
            };
            for o in exprs {
                let e =
                    match self.output_reference(&o.expr, &projection, &columns, &scope, false)? {
                        Some(e) => e,
                        None => {
                            let t = self.expr(&o.expr, &scope)?;
                            self.finalize(t)?.expr
                        }
                    };
                let idx =
                    match projection.iter().position(|p| *p == e) {
                        Some(i) => i,
                        None if distinct => return Err(ProxyError::new(
                            "42P10",
                            "for SELECT DISTINCT, ORDER BY expressions must appear in select list",
                        )),
                        None => {
                            projection.push(e);
                            projection.len() - 1
                        }
                    };
                let descending = o.options.asc == Some(false);
                order_by.push(SortKey {
                    expr: Expr::Column(idx),
                    descending,
                    nulls_first: o.options.nulls_first.unwrap_or(descending),
                });
            }
        }

        let grouped = !keys.is_empty() || !self.aggs.is_empty() || having.is_some();
        let (aggregate, having) = if grouped {
            let aggs = std::mem::take(&mut self.aggs);
            projection = projection
                .into_iter()
                .map(|e| regroup(e, &keys, &aggs, &scope))
                .collect::<Result<_>>()?;
            let having = having
                .map(|h| regroup(h, &keys, &aggs, &scope))
                .transpose()?;
            let calls = aggs.into_iter().map(|(_, c)| c).collect();
            (Some(Aggregate { keys, calls }), having)
        } else {
            (None, None)
        };

        let (limit, offset) = self.limit_offset(q)?;
        Ok(SelectPlan {
            source,
            filter,
            aggregate,
            having,
            projection,
            columns,
            distinct,
            order_by,
            limit,
            offset,
            subqueries: std::mem::take(&mut self.subqueries),
            untyped,
        })
    }

    /// A WHERE / HAVING / ON condition: must be boolean.
    pub(crate) fn predicate(
        &mut self,
        e: Option<&ast::Expr>,
        scope: &Scope,
        context: &str,
    ) -> Result<Option<Expr>> {
        let Some(e) = e else { return Ok(None) };
        let t = self.expr(e, scope)?;
        let t = self.coerce(t, &DataType::Bool)?;
        match t.ty {
            Some(DataType::Bool) | None => Ok(Some(t.expr)),
            Some(other) => Err(ProxyError::new(
                "42804",
                format!(
                    "argument of {context} must be type boolean, not type {}",
                    other.pg_name()
                ),
            )),
        }
    }

    /// Binds a select list (or RETURNING list) over `scope`.
    pub(crate) fn select_items(
        &mut self,
        items: &[SelectItem],
        scope: &Scope,
    ) -> Result<(Vec<Expr>, Vec<OutputColumn>)> {
        self.select_items_typed(items, scope)
            .map(|(p, c, _)| (p, c))
    }

    /// Like [`Self::select_items`], also telling which items are untyped
    /// string literals.
    fn select_items_typed(
        &mut self,
        items: &[SelectItem],
        scope: &Scope,
    ) -> Result<(Vec<Expr>, Vec<OutputColumn>, Vec<bool>)> {
        let mut untyped = Vec::new();
        let mut projection = Vec::new();
        let mut columns = Vec::new();
        for item in items {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    let qualifier = match item {
                        SelectItem::QualifiedWildcard(
                            ast::SelectItemQualifiedWildcardKind::ObjectName(n),
                            _,
                        ) => {
                            let q =
                                n.0.last()
                                    .and_then(|p| p.as_ident())
                                    .map(ident_name)
                                    .unwrap_or_default();
                            if !scope.has_qualifier(&q) {
                                return Err(ProxyError::new(
                                    "42P01",
                                    format!("missing FROM-clause entry for table \"{q}\""),
                                ));
                            }
                            Some(q)
                        }
                        SelectItem::Wildcard(_) => None,
                        _ => return Err(ProxyError::unsupported("this wildcard form")),
                    };
                    if scope.columns.is_empty() {
                        return Err(ProxyError::syntax(
                            "SELECT * with no tables specified is not valid",
                        ));
                    }
                    for (i, c) in scope.columns.iter().enumerate() {
                        if qualifier.is_some() && c.qualifier != qualifier {
                            continue;
                        }
                        if c.name.starts_with(crate::sql::scope::HIDDEN_PREFIX) {
                            continue;
                        }
                        projection.push(Expr::Column(i));
                        untyped.push(false);
                        columns.push(OutputColumn {
                            name: c.name.clone(),
                            ty: c.ty,
                        });
                    }
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let t = self.expr(e, scope)?;
                    untyped.push(matches!(
                        t.unknown,
                        Some(crate::sql::expr::Unknown::Text(..))
                    ));
                    let t = self.finalize(t)?;
                    let name = match item {
                        SelectItem::ExprWithAlias { alias, .. } => ident_name(alias),
                        _ => t.name.clone().unwrap_or_else(|| "?column?".into()),
                    };
                    columns.push(OutputColumn {
                        name,
                        ty: t.ty.unwrap_or(DataType::Text),
                    });
                    projection.push(t.expr);
                }
            }
        }
        Ok((projection, columns, untyped))
    }

    /// GROUP BY and ORDER BY may name an output column by position or by
    /// alias (an alias loses to a source column of the same name in GROUP BY).
    fn output_reference(
        &mut self,
        e: &ast::Expr,
        projection: &[Expr],
        columns: &[OutputColumn],
        scope: &Scope,
        prefer_input: bool,
    ) -> Result<Option<Expr>> {
        if let ast::Expr::Value(v) = e {
            if let ast::Value::Number(n, _) = &v.value {
                let pos: usize = n.parse().unwrap_or(0);
                if pos == 0 || pos > columns.len() {
                    return Err(ProxyError::new(
                        "42P10",
                        format!("position {n} is not in select list"),
                    )
                    .at(e.span()));
                }
                return Ok(Some(projection[pos - 1].clone()));
            }
        }
        if let ast::Expr::Identifier(id) = e {
            let n = ident_name(id);
            let hits: Vec<usize> = (0..columns.len())
                .filter(|&i| columns[i].name == n)
                .collect();
            if hits.len() > 1 && hits.iter().any(|&i| projection[i] != projection[hits[0]]) {
                return Err(ProxyError::new(
                    "42702",
                    format!("ORDER BY \"{n}\" is ambiguous"),
                ));
            }
            let input_wins = prefer_input && matches!(scope.resolve(None, &n), Ok(Some(_)));
            if let (Some(&i), false) = (hits.first(), input_wins) {
                return Ok(Some(projection[i].clone()));
            }
        }
        Ok(None)
    }

    fn limit_offset(&mut self, q: &ast::Query) -> Result<(Option<u64>, u64)> {
        let (mut limit, mut offset) = (None, 0);
        if let Some(lc) = &q.limit_clause {
            let (l, o) = match lc {
                ast::LimitClause::LimitOffset {
                    limit,
                    offset,
                    limit_by,
                } => {
                    if !limit_by.is_empty() {
                        return Err(ProxyError::unsupported("LIMIT BY"));
                    }
                    (limit.as_ref(), offset.as_ref().map(|o| &o.value))
                }
                ast::LimitClause::OffsetCommaLimit { offset, limit } => (Some(limit), Some(offset)),
            };
            if let Some(l) = l {
                limit = self.count_clause(l, "LIMIT")?;
            }
            if let Some(o) = o {
                offset = self.count_clause(o, "OFFSET")?.unwrap_or(0);
            }
        }
        Ok((limit, offset))
    }

    fn count_clause(&mut self, e: &ast::Expr, what: &str) -> Result<Option<u64>> {
        let t = self.expr(e, &Scope::default())?;
        let t = self.coerce(t, &DataType::Int8)?;
        match constant(&Expr::Cast(Box::new(t.expr), DataType::Int8))? {
            Value::Null => Ok(None),
            Value::Int8(n) if n < 0 => Err(ProxyError::new(
                "2201W",
                format!("{what} must not be negative"),
            )),
            Value::Int8(n) => Ok(Some(n as u64)),
            _ => Err(ProxyError::new(
                "42804",
                format!("argument of {what} must be an integer"),
            )),
        }
    }

    /// FROM: tables, joins and derived tables, left to right.
    fn bind_from(&mut self, from: &[ast::TableWithJoins]) -> Result<(Option<Source>, Scope)> {
        let mut acc: Option<(Source, Scope)> = None;
        for twj in from {
            let (mut src, mut scope) = self.table_factor(&twj.relation)?;
            for j in &twj.joins {
                let (rsrc, rscope) = self.table_factor(&j.relation)?;
                let joined = merge_scopes(scope, rscope)?;
                use ast::JoinOperator as J;
                let (kind, constraint) = match &j.join_operator {
                    J::Inner(c) | J::Join(c) => (JoinKind::Inner, Some(c)),
                    J::LeftOuter(c) | J::Left(c) => (JoinKind::Left, Some(c)),
                    J::CrossJoin(_) => (JoinKind::Inner, None),
                    other => {
                        return Err(ProxyError::unsupported(format!(
                            "join type {}",
                            format!("{other:?}").split('(').next().unwrap_or("")
                        )))
                    }
                };
                let on = match constraint {
                    Some(ast::JoinConstraint::On(e)) => {
                        self.agg_forbidden = Some("JOIN conditions");
                        let p = self.predicate(Some(e), &joined, "JOIN/ON");
                        self.agg_forbidden = None;
                        p?
                    }
                    Some(ast::JoinConstraint::None) | None => None,
                    Some(_) => {
                        return Err(ProxyError::unsupported("JOIN ... USING / NATURAL JOIN"))
                    }
                };
                src = Source::Join {
                    left: Box::new(src),
                    right: Box::new(rsrc),
                    kind,
                    on,
                };
                scope = joined;
            }
            acc = Some(match acc {
                None => (src, scope),
                Some((lsrc, lscope)) => (
                    Source::Join {
                        left: Box::new(lsrc),
                        right: Box::new(src),
                        kind: JoinKind::Inner,
                        on: None,
                    },
                    merge_scopes(lscope, scope)?,
                ),
            });
        }
        Ok(match acc {
            Some((s, scope)) => (Some(s), scope),
            None => (None, Scope::default()),
        })
    }

    fn table_factor(&mut self, t: &TableFactor) -> Result<(Source, Scope)> {
        match t {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                if let Some(plan) = self.cte(name) {
                    let q = alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or_else(|| name.to_string().to_lowercase());
                    let scope =
                        Scope::named(&q, plan.columns.iter().map(|c| (c.name.clone(), c.ty)));
                    return Ok((Source::Derived(Box::new(plan)), scope));
                }
                if let Some((rel_name, rel)) = self.system_relation(name) {
                    let q = alias
                        .as_ref()
                        .map(|a| ident_name(&a.name))
                        .unwrap_or(rel_name);
                    let scope =
                        Scope::named(&q, rel.columns.iter().map(|(n, ty)| (n.to_string(), *ty)));
                    let width = rel.columns.len();
                    return Ok((
                        Source::Rows {
                            rows: rel.rows,
                            width,
                        },
                        scope,
                    ));
                }
                let def = self.table(name)?;
                if alias.as_ref().is_some_and(|a| !a.columns.is_empty()) {
                    return Err(ProxyError::unsupported("column aliases on a table"));
                }
                let alias = alias.as_ref().map(|a| ident_name(&a.name));
                let scope = Scope::table(&def, alias.as_deref());
                Ok((Source::Table(Arc::new(def)), scope))
            }
            TableFactor::Derived {
                lateral: false,
                subquery,
                alias,
            } => {
                let Some(alias) = alias else {
                    return Err(ProxyError::syntax("subquery in FROM must have an alias"));
                };
                let plan = self.bind_subquery(subquery)?;
                let mut names: Vec<String> = plan.columns.iter().map(|c| c.name.clone()).collect();
                for (n, a) in names.iter_mut().zip(&alias.columns) {
                    *n = ident_name(&a.name);
                }
                let scope = Scope::named(
                    &ident_name(&alias.name),
                    names.into_iter().zip(plan.columns.iter().map(|c| c.ty)),
                );
                Ok((Source::Derived(Box::new(plan)), scope))
            }
            TableFactor::NestedJoin {
                table_with_joins,
                alias: None,
            } => {
                let (src, scope) = self.bind_from(std::slice::from_ref(table_with_joins))?;
                Ok((src.expect("one table"), scope))
            }
            other => Err(ProxyError::unsupported(format!("FROM {other}"))),
        }
    }
}

/// Wraps a set operand as a plan whose projection can take casts.
fn as_plan(src: Source, columns: &[OutputColumn]) -> SelectPlan {
    match src {
        Source::Derived(p) => *p,
        other => SelectPlan {
            source: Some(other),
            filter: None,
            aggregate: None,
            having: None,
            projection: (0..columns.len()).map(Expr::Column).collect(),
            columns: columns.to_vec(),
            distinct: false,
            order_by: Vec::new(),
            limit: None,
            offset: 0,
            subqueries: Vec::new(),
            untyped: Vec::new(),
        },
    }
}

impl Binder<'_> {
    /// The plan of the innermost CTE called `name`, if any.
    fn cte(&self, name: &ast::ObjectName) -> Option<SelectPlan> {
        let [part] = name.0.as_slice() else {
            return None;
        };
        let n = ident_name(part.as_ident()?);
        self.ctes
            .iter()
            .rev()
            .find(|(c, _)| *c == n)
            .map(|(_, p)| p.clone())
    }

    /// `information_schema.x` / `pg_catalog.x` (and `pg_x` unqualified when
    /// no user table has that name): a system relation built from the catalog.
    fn system_relation(
        &self,
        name: &ast::ObjectName,
    ) -> Option<(String, crate::sql::virtual_tables::Relation)> {
        let parts: Vec<String> = name
            .0
            .iter()
            .filter_map(|p| p.as_ident())
            .map(ident_name)
            .collect();
        let (schema, rel) = match parts.as_slice() {
            [s, r] if s == "information_schema" || s == "pg_catalog" => (s.as_str(), r.as_str()),
            [r] if r.starts_with("pg_") && self.catalog.get(r).is_none() => {
                ("pg_catalog", r.as_str())
            }
            _ => return None,
        };
        // Their rows are the catalog and session as of this execution.
        self.volatile.set(true);
        crate::sql::virtual_tables::lookup(schema, rel, self.catalog, self.session)
            .map(|r| (rel.to_string(), r))
    }
}

/// Joins two scopes; the same table name or alias twice is 42712.
fn merge_scopes(left: Scope, right: Scope) -> Result<Scope> {
    for c in &right.columns {
        if let Some(q) = &c.qualifier {
            if left.has_qualifier(q) {
                return Err(ProxyError::new(
                    "42712",
                    format!("table name \"{q}\" specified more than once"),
                ));
            }
        }
    }
    Ok(left.join(right))
}
