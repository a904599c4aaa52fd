//! The binder: sqlparser AST + catalog + parameters -> [`Plan`].
//!
//! Types are checked as PostgreSQL does for the supported subset: untyped
//! string literals and parameters take the type their context expects,
//! integer literals are int4/int8/numeric by size, and comparing or assigning
//! across type families is an error (42883 / 42804).

use std::sync::Arc;

use fortress_storage::schema::{ColumnDef, UniqueDef};
use fortress_storage::{Catalog, DataType, Expr, TableDef, Value};
use sqlparser::ast::{
    self, Ident, ObjectName, SelectItem, SetExpr, Spanned, Statement, TableFactor,
};

use crate::copy::CopyFormat;
use crate::error::{ProxyError, Result};
use crate::plan::{AggCall, AlterOp, OnConflict, Plan, Returning, Subquery};
use crate::session::Session;
use crate::sql::expr::constant;
use crate::sql::scope::Scope;
use crate::sql::types::{self, family, Family};

/// Binds statements for one session. `params` are the values of `$n` when
/// executing; when describing, they are absent and their types are inferred.
pub struct Binder<'a> {
    pub(crate) catalog: &'a Catalog,
    pub(crate) session: &'a Session,
    pub(crate) params: Option<&'a [Value]>,
    /// Types of `$1..$n` as given by the client or inferred from context.
    pub param_types: Vec<Option<DataType>>,
    /// Scopes of the enclosing queries (to recognise correlated references).
    pub(crate) outer: Vec<Scope>,
    /// Aggregate calls of the query being bound, by slot.
    pub(crate) aggs: Vec<(u32, AggCall)>,
    /// Set where aggregates are not allowed (WHERE, GROUP BY, ...).
    pub(crate) agg_forbidden: Option<&'static str>,
    /// Subqueries of the query being bound.
    pub(crate) subqueries: Vec<Subquery>,
    /// CTEs in scope, innermost last.
    pub(crate) ctes: Vec<(String, crate::plan::SelectPlan)>,
    /// References to the enclosing query's columns made by the subquery
    /// being bound: (slot, outer column, type).
    pub(crate) correlated_refs: Option<Vec<(u32, usize, DataType)>>,
    /// Set while binding a SELECT's WHERE, where correlated subqueries run.
    pub(crate) correlation_allowed: bool,
    /// now() for this statement: the transaction's start inside a block,
    /// else the statement's start, so every call in it agrees.
    now_micros: i64,
    /// Set while binding a column DEFAULT: now() stays a call, evaluated
    /// when a row is inserted.
    pub(crate) defer_now: bool,
    next_slot: u32,
    /// When binding a reusable plan: each parameter read becomes slot
    /// `PARAM_SLOT_BASE + i`, filled per execution from `sites[i]`.
    pub(crate) sites: Option<Vec<ParamSite>>,
    /// When binding a reusable plan: how many times now() became
    /// [`NOW_SLOT`], filled per execution with that execution's time.
    pub(crate) now_slots: std::cell::Cell<usize>,
    /// When binding a reusable INSERT: per VALUES row, the columns whose
    /// value each execution computes (see `computed`).
    pub(crate) insert_cells: Vec<Vec<(usize, Expr)>>,
    /// Set when the plan read the clock or a session setting: it holds
    /// for this execution only.
    pub(crate) volatile: std::cell::Cell<bool>,
}

/// First slot of parameter reads; subquery and aggregate slots count up
/// from 1 and stay below it.
pub const PARAM_SLOT_BASE: u32 = 1 << 31;

/// The slot of now() in a reusable plan.
pub const NOW_SLOT: u32 = PARAM_SLOT_BASE - 1;

/// One read of parameter `index` in a reusable plan: its value is cast
/// through `casts` in order, as binding with the value would have done.
#[derive(Clone, Debug)]
pub struct ParamSite {
    pub index: usize,
    pub casts: Vec<DataType>,
}

/// A parameter's value as a plan reads it at one site.
pub fn cast_param(value: Value, casts: &[DataType]) -> Result<Value> {
    casts.iter().try_fold(value, |v, ty| Ok(v.cast(ty)?))
}

/// COPY options: FORMAT text|csv, DELIMITER, NULL, HEADER, QUOTE, ESCAPE
/// (and the pre-9.0 spellings).
fn copy_format(
    options: &[ast::CopyOption],
    legacy: &[ast::CopyLegacyOption],
) -> Result<CopyFormat> {
    use ast::CopyOption as O;
    let csv = options
        .iter()
        .any(|o| matches!(o, O::Format(f) if f.value.eq_ignore_ascii_case("csv")))
        || legacy
            .iter()
            .any(|o| matches!(o, ast::CopyLegacyOption::Csv(_)));
    let mut f = if csv {
        CopyFormat::csv()
    } else {
        CopyFormat::text()
    };
    for o in options {
        match o {
            O::Format(name) => match name.value.to_lowercase().as_str() {
                "text" | "csv" => {}
                other => return Err(ProxyError::unsupported(format!("COPY format \"{other}\""))),
            },
            O::Freeze(_) | O::Encoding(_) => {}
            O::Delimiter(c) => f.delimiter = *c,
            O::Null(s) => f.null = s.clone(),
            O::Header(h) => f.header = *h,
            O::Quote(c) => f.quote = *c,
            O::Escape(c) => f.escape = *c,
            other => return Err(ProxyError::unsupported(format!("COPY option {other}"))),
        }
    }
    for o in legacy {
        match o {
            ast::CopyLegacyOption::Csv(opts) => {
                for c in opts {
                    match c {
                        ast::CopyLegacyCsvOption::Header => f.header = true,
                        ast::CopyLegacyCsvOption::Quote(q) => f.quote = *q,
                        ast::CopyLegacyCsvOption::Escape(e) => f.escape = *e,
                        other => {
                            return Err(ProxyError::unsupported(format!("COPY option {other}")))
                        }
                    }
                }
            }
            ast::CopyLegacyOption::Delimiter(c) => f.delimiter = *c,
            ast::CopyLegacyOption::Null(s) => f.null = s.clone(),
            other => return Err(ProxyError::unsupported(format!("COPY option {other}"))),
        }
    }
    Ok(f)
}

/// Folds an identifier as PostgreSQL does: unquoted names are lower-cased.
pub fn ident_name(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
}

/// Whether `e` must be evaluated per execution of a reusable plan: it reads
/// a slot (a parameter, now()) or calls a function.
fn computed(e: &Expr) -> bool {
    let mut found = false;
    e.visit(&mut |n| found |= matches!(n, Expr::Slot(_) | Expr::Func(..)));
    found
}

fn table_name(name: &ObjectName) -> Result<String> {
    let parts: Vec<String> = name
        .0
        .iter()
        .map(|p| match p.as_ident() {
            Some(id) => Ok(ident_name(id)),
            None => Err(ProxyError::syntax(format!("invalid name {name}"))),
        })
        .collect::<Result<_>>()?;
    match parts.as_slice() {
        [t] => Ok(t.clone()),
        [schema, t] if schema == "public" => Ok(t.clone()),
        [schema, t] => Err(ProxyError::new(
            "3F000",
            format!("schema \"{schema}\" does not exist (relation \"{t}\")"),
        )),
        _ => Err(ProxyError::syntax(format!(
            "improper qualified name: {name}"
        ))),
    }
}

fn mismatch(col: &ColumnDef, ty: &DataType) -> ProxyError {
    ProxyError::new(
        "42804",
        format!(
            "column \"{}\" is of type {} but expression is of type {}",
            col.name,
            col.ty.pg_name(),
            ty.pg_name()
        ),
    )
}

impl<'a> Binder<'a> {
    pub fn new(
        catalog: &'a Catalog,
        session: &'a Session,
        params: Option<&'a [Value]>,
        param_types: Vec<Option<DataType>>,
    ) -> Self {
        Binder {
            catalog,
            session,
            params,
            param_types,
            outer: Vec::new(),
            aggs: Vec::new(),
            agg_forbidden: None,
            subqueries: Vec::new(),
            ctes: Vec::new(),
            correlated_refs: None,
            correlation_allowed: false,
            now_micros: session.statement_now(),
            defer_now: false,
            next_slot: 0,
            sites: None,
            now_slots: std::cell::Cell::new(0),
            insert_cells: Vec::new(),
            volatile: std::cell::Cell::new(false),
        }
    }

    /// now() for this statement; a plan that reads it is not reusable.
    pub(crate) fn now_micros(&self) -> i64 {
        self.volatile.set(true);
        self.now_micros
    }

    /// Parameter `n` read at one site, cast through `casts`: a literal, or
    /// a slot when binding a reusable plan (NULL while describing).
    pub(crate) fn param(&mut self, n: usize, casts: &[DataType]) -> Result<Expr> {
        let Some(values) = self.params else {
            return Ok(Expr::Literal(Value::Null));
        };
        if let Some(sites) = &mut self.sites {
            // Reads alike share a slot, so equal expressions stay equal
            // (ORDER BY $1 + 1 matches the select list's $1 + 1).
            let at = match sites.iter().position(|s| s.index == n && s.casts == casts) {
                Some(at) => at,
                None => {
                    sites.push(ParamSite {
                        index: n,
                        casts: casts.to_vec(),
                    });
                    sites.len() - 1
                }
            };
            return Ok(Expr::Slot(PARAM_SLOT_BASE + at as u32));
        }
        cast_param(values.get(n).cloned().unwrap_or(Value::Null), casts).map(Expr::Literal)
    }

    /// now() for this statement as an expression: its time, or
    /// [`NOW_SLOT`] in a reusable plan, which each execution fills.
    pub(crate) fn now_expr(&self) -> Expr {
        match self.sites {
            Some(_) => {
                self.now_slots.set(self.now_slots.get() + 1);
                Expr::Slot(NOW_SLOT)
            }
            None => Expr::Literal(Value::Timestamptz(self.now_micros())),
        }
    }

    /// Replaces now() calls with this statement's time.
    pub(crate) fn stable_now(&self, e: Expr) -> Expr {
        e.rewrite(&mut |n| match n {
            Expr::Func(fortress_storage::Func::Now, _) => self.now_expr(),
            other => other,
        })
    }

    pub(crate) fn new_slot(&mut self) -> u32 {
        self.next_slot += 1;
        self.next_slot
    }

    pub(crate) fn table(&self, name: &ObjectName) -> Result<TableDef> {
        let n = table_name(name)?;
        self.catalog
            .get(&n)
            .filter(|t| !t.hidden)
            .cloned()
            .ok_or_else(|| ProxyError::undefined_table(&n).at(name.span()))
    }

    /// Binds one statement.
    pub fn bind(&mut self, stmt: &Statement) -> Result<Plan> {
        match stmt {
            Statement::Query(q)
                if matches!(
                    q.body.as_ref(),
                    SetExpr::Update(_) | SetExpr::Insert(_) | SetExpr::Delete(_)
                ) =>
            {
                // `WITH ... UPDATE / INSERT / DELETE`.
                let (SetExpr::Update(inner) | SetExpr::Insert(inner) | SetExpr::Delete(inner)) =
                    q.body.as_ref()
                else {
                    unreachable!("matched above")
                };
                self.with_ctes(q.with.as_ref(), |b| b.bind(inner))
            }
            Statement::Query(q) => {
                if let Some(d) = self.sleep(q)? {
                    return Ok(Plan::Sleep(d));
                }
                if let Some(plan) = conflicts_query(q)? {
                    return Ok(plan);
                }
                Ok(Plan::Select(self.bind_query(q)?))
            }
            Statement::Insert(i) => self.bind_insert(i),
            Statement::Update {
                table,
                assignments,
                from,
                selection,
                returning,
                ..
            } => {
                if from.is_some() {
                    return Err(ProxyError::unsupported("UPDATE ... FROM"));
                }
                let (def, scope) = self.single_table(table)?;
                let sets = self.assignments(assignments, &def, &scope)?;
                self.agg_forbidden = Some("WHERE");
                let filter = self.predicate(selection.as_ref(), &scope, "WHERE");
                self.agg_forbidden = None;
                let filter = filter?;
                let returning = self.returning(returning.as_deref(), &scope)?;
                Ok(Plan::Update {
                    table: Arc::new(def),
                    filter,
                    assignments: sets,
                    returning,
                    subqueries: std::mem::take(&mut self.subqueries),
                })
            }
            Statement::Delete(d) => {
                if d.using.is_some() || !d.tables.is_empty() {
                    return Err(ProxyError::unsupported("DELETE ... USING"));
                }
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
                };
                let [t] = from.as_slice() else {
                    return Err(ProxyError::unsupported("DELETE from several tables"));
                };
                let (def, scope) = self.single_table(t)?;
                self.agg_forbidden = Some("WHERE");
                let filter = self.predicate(d.selection.as_ref(), &scope, "WHERE");
                self.agg_forbidden = None;
                let filter = filter?;
                let returning = self.returning(d.returning.as_deref(), &scope)?;
                Ok(Plan::Delete {
                    table: Arc::new(def),
                    filter,
                    returning,
                    subqueries: std::mem::take(&mut self.subqueries),
                })
            }
            Statement::CreateTable(c) => self.bind_create(c),
            Statement::CreateIndex(ci) => self.bind_create_index(ci),
            Statement::Drop {
                object_type: ast::ObjectType::Index,
                if_exists,
                names,
                ..
            } => Ok(Plan::DropIndex {
                names: names.iter().map(table_name).collect::<Result<_>>()?,
                if_exists: *if_exists,
            }),
            Statement::Drop {
                object_type,
                if_exists,
                names,
                ..
            } => {
                if *object_type != ast::ObjectType::Table {
                    return Err(ProxyError::unsupported(format!("DROP {object_type}")));
                }
                let names = names.iter().map(table_name).collect::<Result<_>>()?;
                Ok(Plan::DropTable {
                    names,
                    if_exists: *if_exists,
                })
            }
            Statement::Vacuum(v) => {
                let mut trees = Vec::new();
                if let Some(name) = &v.table_name {
                    let t = self.table(name)?;
                    let uniques = t
                        .uniques
                        .iter()
                        .filter_map(|u| self.catalog.get(&u.index_table));
                    for def in std::iter::once(&t).chain(uniques) {
                        trees.push(def.id);
                        trees.extend(def.indexes.iter().map(|i| i.id));
                    }
                }
                Ok(Plan::Vacuum { trees })
            }
            Statement::Analyze { table_name, .. } => {
                if !table_name.0.is_empty() {
                    self.table(table_name)?;
                }
                Ok(Plan::Analyze)
            }
            Statement::Truncate {
                table_names,
                partitions: None,
                identity: None,
                cascade: None,
                on_cluster: None,
                ..
            } => {
                let mut names = Vec::new();
                for t in table_names {
                    let def = self.table(&t.name)?;
                    names.push(def.name);
                }
                Ok(Plan::Truncate { names })
            }
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                values,
            } => {
                if !values.is_empty() {
                    return Err(ProxyError::unsupported("inline COPY data"));
                }
                let format = copy_format(options, legacy_options)?;
                match (to, target) {
                    (false, ast::CopyTarget::Stdin) => {
                        let ast::CopySource::Table {
                            table_name,
                            columns,
                        } = source
                        else {
                            return Err(ProxyError::syntax("COPY FROM needs a table"));
                        };
                        let table = self.table(table_name)?;
                        let columns = if columns.is_empty() {
                            table.visible_columns()
                        } else {
                            columns
                                .iter()
                                .map(|c| {
                                    let n = ident_name(c);
                                    table.column_index(&n).ok_or_else(|| {
                                        ProxyError::new(
                                            "42703",
                                            format!(
                                                "column \"{n}\" of relation \"{}\" does not exist",
                                                table.name
                                            ),
                                        )
                                    })
                                })
                                .collect::<Result<_>>()?
                        };
                        Ok(Plan::CopyIn {
                            table: Arc::new(table),
                            columns,
                            format,
                        })
                    }
                    (true, ast::CopyTarget::Stdout) => {
                        let select = match source {
                            ast::CopySource::Query(q) => self.bind_query(q)?,
                            ast::CopySource::Table {
                                table_name,
                                columns,
                            } => {
                                let cols = if columns.is_empty() {
                                    "*".to_string()
                                } else {
                                    columns
                                        .iter()
                                        .map(|c| c.to_string())
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                };
                                let q =
                                    crate::sql::parse(&format!("SELECT {cols} FROM {table_name}"))?;
                                let Some(Statement::Query(q)) = q.first() else {
                                    return Err(ProxyError::syntax("COPY source"));
                                };
                                self.bind_query(q)?
                            }
                        };
                        Ok(Plan::CopyOut { select, format })
                    }
                    _ => Err(ProxyError::new(
                        "42501",
                        "COPY to or from a file or program is not allowed; use STDIN / STDOUT",
                    )),
                }
            }
            Statement::Explain {
                analyze: false,
                statement,
                ..
            } => Ok(Plan::Explain(Box::new(self.bind(statement)?))),
            Statement::Explain { analyze: true, .. } => {
                Err(ProxyError::unsupported("EXPLAIN ANALYZE"))
            }
            Statement::AlterTable {
                name,
                if_exists,
                operations,
                ..
            } => self.bind_alter(name, *if_exists, operations),
            Statement::Set(set) => self.bind_set(set),
            Statement::ShowVariable { variable } => {
                let name = variable
                    .iter()
                    .map(ident_name)
                    .collect::<Vec<_>>()
                    .join(" ");
                let name = match name.as_str() {
                    "transaction isolation level" => "transaction_isolation".to_string(),
                    "time zone" => "timezone".to_string(),
                    _ => name,
                };
                if matches!(
                    name.as_str(),
                    "fortress.metrics" | "fortress metrics" | "fortress_metrics"
                ) {
                    return Ok(Plan::ShowMetrics);
                }
                if matches!(
                    name.as_str(),
                    "fortress.replication" | "fortress replication" | "fortress_replication"
                ) {
                    return Ok(Plan::ShowReplication);
                }
                if matches!(
                    name.as_str(),
                    "fortress.conflicts" | "fortress conflicts" | "fortress_conflicts"
                ) {
                    return Ok(Plan::ShowConflicts);
                }
                if self.session.get(&name).is_none() {
                    return Err(ProxyError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
                Ok(Plan::ShowVariable { name })
            }
            Statement::StartTransaction { begin, modes, .. } => Ok(Plan::Begin {
                tag: if *begin { "BEGIN" } else { "START TRANSACTION" },
                isolation: modes.iter().find_map(|m| match m {
                    ast::TransactionMode::IsolationLevel(l) => {
                        crate::txn::Isolation::parse(&l.to_string())
                    }
                    _ => None,
                }),
            }),
            Statement::Commit { chain: false, .. } => Ok(Plan::Commit),
            Statement::Rollback {
                chain: false,
                savepoint: None,
            } => Ok(Plan::Rollback),
            Statement::Commit { .. } | Statement::Rollback { .. } => {
                Err(ProxyError::unsupported("AND CHAIN and savepoints"))
            }
            other => {
                let text = other.to_string();
                let head: String = text
                    .split_whitespace()
                    .take(2)
                    .collect::<Vec<_>>()
                    .join(" ");
                Err(ProxyError::unsupported(format!("statement {head}")))
            }
        }
    }

    /// `SELECT pg_sleep(seconds)` on its own: a cancellable wait.
    fn sleep(&mut self, q: &ast::Query) -> Result<Option<std::time::Duration>> {
        let SetExpr::Select(sel) = q.body.as_ref() else {
            return Ok(None);
        };
        let [SelectItem::UnnamedExpr(ast::Expr::Function(f))] = sel.projection.as_slice() else {
            return Ok(None);
        };
        if !sel.from.is_empty() || f.name.to_string().to_lowercase() != "pg_sleep" {
            return Ok(None);
        }
        let ast::FunctionArguments::List(l) = &f.args else {
            return Ok(None);
        };
        let [ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e))] = l.args.as_slice() else {
            return Ok(None);
        };
        let t = self.expr(e, &Scope::default())?;
        let t = self.coerce(t, &DataType::Float8)?;
        let secs = match constant(&Expr::Cast(Box::new(t.expr), DataType::Float8))? {
            Value::Float8(f) if f.is_finite() => f.clamp(0.0, 86_400.0),
            _ => 0.0,
        };
        Ok(Some(std::time::Duration::from_secs_f64(secs)))
    }

    fn bind_set(&mut self, set: &ast::Set) -> Result<Plan> {
        match set {
            ast::Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = variable
                    .0
                    .iter()
                    .filter_map(|p| p.as_ident())
                    .map(ident_name)
                    .collect::<Vec<_>>()
                    .join(".");
                let mut parts = Vec::new();
                for v in values {
                    match v {
                        ast::Expr::Identifier(id) if id.value.eq_ignore_ascii_case("default") => {
                            return Ok(Plan::SetVariable { name, value: None });
                        }
                        ast::Expr::Identifier(id) => parts.push(id.value.clone()),
                        ast::Expr::Value(v) => match &v.value {
                            ast::Value::SingleQuotedString(s) => parts.push(s.clone()),
                            other => parts.push(other.to_string()),
                        },
                        other => parts.push(other.to_string()),
                    }
                }
                Ok(Plan::SetVariable {
                    name,
                    value: Some(parts.join(", ")),
                })
            }
            ast::Set::SetTimeZone { value, .. } => {
                let v = match value {
                    ast::Expr::Value(v) => match &v.value {
                        ast::Value::SingleQuotedString(s) => s.clone(),
                        other => other.to_string(),
                    },
                    other => other.to_string(),
                };
                Ok(Plan::SetVariable {
                    name: "timezone".into(),
                    value: Some(v),
                })
            }
            ast::Set::SetNames { charset_name, .. } => Ok(Plan::SetVariable {
                name: "client_encoding".into(),
                value: Some(charset_name.value.clone()),
            }),
            // Every level is served with snapshot isolation.
            ast::Set::SetTransaction { .. } => Ok(Plan::SetVariable {
                name: "transaction_isolation".into(),
                value: None,
            }),
            other => Err(ProxyError::unsupported(format!("{other}"))),
        }
    }

    /// The one table an UPDATE or DELETE names, and its scope.
    fn single_table(&self, t: &ast::TableWithJoins) -> Result<(TableDef, Scope)> {
        if !t.joins.is_empty() {
            return Err(ProxyError::unsupported("JOIN in UPDATE or DELETE"));
        }
        match &t.relation {
            TableFactor::Table {
                name,
                alias,
                args: None,
                ..
            } => {
                let def = self.table(name)?;
                let alias = alias.as_ref().map(|a| ident_name(&a.name));
                let scope = Scope::table(&def, alias.as_deref());
                Ok((def, scope))
            }
            other => Err(ProxyError::unsupported(format!("FROM {other}"))),
        }
    }

    /// `SET col = expr, ...` over `scope`; primary-key columns are fixed.
    fn assignments(
        &mut self,
        assignments: &[ast::Assignment],
        def: &TableDef,
        scope: &Scope,
    ) -> Result<Vec<(usize, Expr)>> {
        let mut sets = Vec::new();
        for a in assignments {
            let ast::AssignmentTarget::ColumnName(cn) = &a.target else {
                return Err(ProxyError::unsupported("multi-column assignment"));
            };
            let col_name =
                cn.0.last()
                    .and_then(|p| p.as_ident())
                    .map(ident_name)
                    .unwrap_or_default();
            let idx = def.column_index(&col_name).ok_or_else(|| {
                ProxyError::new(
                    "42703",
                    format!(
                        "column \"{col_name}\" of relation \"{}\" does not exist",
                        def.name
                    ),
                )
                .at(cn.span())
            })?;
            if sets.iter().any(|(i, _)| *i == idx) {
                return Err(ProxyError::new(
                    "42601",
                    format!("multiple assignments to same column \"{col_name}\""),
                ));
            }
            self.agg_forbidden = Some("UPDATE");
            let e = self.assignment(&a.value, scope, &def.columns[idx]);
            self.agg_forbidden = None;
            sets.push((idx, e?));
        }
        Ok(sets)
    }

    fn returning(
        &mut self,
        items: Option<&[SelectItem]>,
        scope: &Scope,
    ) -> Result<Option<Returning>> {
        let Some(items) = items else { return Ok(None) };
        self.agg_forbidden = Some("RETURNING");
        let r = self.select_items(items, scope);
        self.agg_forbidden = None;
        let (projection, columns) = r?;
        Ok(Some(Returning {
            projection,
            columns,
        }))
    }

    /// Binds a value assigned to `col`, cast to the column's type.
    fn assignment(&mut self, e: &ast::Expr, scope: &Scope, col: &ColumnDef) -> Result<Expr> {
        let t = self.expr(e, scope)?;
        let t = self.coerce(t, &col.ty)?;
        if let Some(ty) = &t.ty {
            let ok = family(ty) == family(&col.ty)
                || (family(&col.ty) == Family::Text && t.unknown.is_some());
            if !ok {
                return Err(mismatch(col, ty));
            }
        }
        Ok(Expr::Cast(Box::new(t.expr), col.ty))
    }

    fn bind_insert(&mut self, ins: &ast::Insert) -> Result<Plan> {
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(ProxyError::unsupported("INSERT INTO a table function"));
        };
        let def = self.table(name)?;
        let targets: Vec<usize> = if ins.columns.is_empty() {
            def.visible_columns()
        } else {
            let mut v = Vec::new();
            for c in &ins.columns {
                let n = ident_name(c);
                let i = def.column_index(&n).ok_or_else(|| {
                    ProxyError::new(
                        "42703",
                        format!("column \"{n}\" of relation \"{}\" does not exist", def.name),
                    )
                    .at(c.span)
                })?;
                if v.contains(&i) {
                    return Err(ProxyError::new(
                        "42701",
                        format!("column \"{n}\" specified more than once"),
                    ));
                }
                v.push(i);
            }
            v
        };
        let Some(source) = &ins.source else {
            return Err(ProxyError::unsupported("INSERT without VALUES"));
        };
        let SetExpr::Values(values) = source.body.as_ref() else {
            return Err(ProxyError::unsupported("INSERT ... SELECT"));
        };
        let mut rows = Vec::with_capacity(values.rows.len());
        for exprs in &values.rows {
            if exprs.len() > targets.len() {
                return Err(ProxyError::syntax(
                    "INSERT has more expressions than target columns",
                ));
            }
            if exprs.len() < targets.len() && !ins.columns.is_empty() {
                return Err(ProxyError::syntax(
                    "INSERT has more target columns than expressions",
                ));
            }
            // The given values first, in the order written; then each
            // other column's default (only those: PostgreSQL does not
            // evaluate the default of a column it is given).
            let mut given: Vec<Option<Expr>> = vec![None; def.columns.len()];
            for (e, &i) in exprs.iter().zip(&targets) {
                if matches!(e, ast::Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
                {
                    continue;
                }
                given[i] = Some(self.assignment(e, &Scope::default(), &def.columns[i])?);
            }
            let mut cells = Vec::new();
            let mut row = Vec::with_capacity(def.columns.len());
            for (i, c) in def.columns.iter().enumerate() {
                let e = match (given[i].take(), &c.default) {
                    (Some(e), _) => e,
                    (None, Some(d)) => self.stable_now(d.clone()),
                    (None, None) => Expr::Literal(Value::Null),
                };
                // A reusable plan leaves each execution what reads a
                // parameter or now() or calls a function (a row id).
                if self.sites.is_some() && computed(&e) {
                    cells.push((i, e));
                    row.push(Value::Null);
                } else {
                    row.push(constant(&e)?);
                }
            }
            if self.sites.is_some() {
                self.insert_cells.push(cells);
            }
            rows.push(row);
        }
        let alias = ins.table_alias.as_ref().map(ident_name);
        let scope = Scope::table(&def, alias.as_deref());
        let on_conflict = match &ins.on {
            None => None,
            Some(ast::OnInsert::OnConflict(oc)) => Some(self.on_conflict(oc, &def, &scope)?),
            Some(other) => return Err(ProxyError::unsupported(format!("{other}"))),
        };
        let returning = self.returning(ins.returning.as_deref(), &scope)?;
        Ok(Plan::Insert {
            table: Arc::new(def),
            rows,
            on_conflict,
            returning,
        })
    }

    /// ON CONFLICT on the primary key; DO UPDATE sees the existing row and
    /// `excluded`, the row that was proposed.
    fn on_conflict(
        &mut self,
        oc: &ast::OnConflict,
        def: &TableDef,
        scope: &Scope,
    ) -> Result<OnConflict> {
        let no_match = || {
            ProxyError::new(
                "42P10",
                "there is no unique or exclusion constraint matching the ON CONFLICT specification",
            )
        };
        match &oc.conflict_target {
            None => {}
            Some(ast::ConflictTarget::Columns(cols)) => {
                let mut idx = Vec::new();
                for c in cols {
                    let n = ident_name(c);
                    let i = def.column_index(&n).ok_or_else(|| {
                        ProxyError::new("42703", format!("column \"{n}\" does not exist"))
                    })?;
                    idx.push(i);
                }
                idx.sort_unstable();
                idx.dedup();
                let mut pk = def.primary_key.clone();
                pk.sort_unstable();
                if idx != pk {
                    return Err(no_match());
                }
            }
            Some(ast::ConflictTarget::OnConstraint(name)) => {
                let n = name.to_string();
                if n != format!("{}_pkey", def.name) || def.rowid.is_some() {
                    return Err(ProxyError::new(
                        "42704",
                        format!(
                            "constraint \"{n}\" for table \"{}\" does not exist",
                            def.name
                        ),
                    ));
                }
            }
        }
        match &oc.action {
            ast::OnConflictAction::DoNothing => Ok(OnConflict::DoNothing),
            ast::OnConflictAction::DoUpdate(du) => {
                if oc.conflict_target.is_none() {
                    return Err(ProxyError::syntax(
                        "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                    ));
                }
                let excluded = Scope::named(
                    "excluded",
                    def.columns.iter().map(|c| (c.name.clone(), c.ty)),
                );
                let both = scope.clone().join(excluded);
                let assignments = self.assignments(&du.assignments, def, &both)?;
                let filter = self.predicate(du.selection.as_ref(), &both, "WHERE")?;
                Ok(OnConflict::DoUpdate {
                    assignments,
                    filter,
                })
            }
        }
    }

    /// One column definition: its type, NULL-ness and default, and whether it
    /// is declared PRIMARY KEY or UNIQUE.
    fn column_def(&mut self, col: &ast::ColumnDef) -> Result<(ColumnDef, bool, bool)> {
        let ty = types::from_ast(&col.data_type)?;
        let mut def = ColumnDef::new(&ident_name(&col.name), ty);
        let (mut primary, mut unique) = (false, false);
        for opt in &col.options {
            match &opt.option {
                ast::ColumnOption::Null => def.nullable = true,
                ast::ColumnOption::NotNull => def.nullable = false,
                ast::ColumnOption::Default(e) => {
                    self.defer_now = true;
                    let bound = self.assignment(e, &Scope::default(), &def);
                    self.defer_now = false;
                    let bound = bound?;
                    // Check it evaluates now; volatile ones (now()) run per row.
                    constant(&bound)?;
                    def.default = Some(bound);
                }
                ast::ColumnOption::Unique {
                    is_primary: true, ..
                } => primary = true,
                ast::ColumnOption::Unique {
                    is_primary: false, ..
                } => unique = true,
                other => {
                    return Err(ProxyError::unsupported(format!(
                        "column constraint {other}"
                    )))
                }
            }
        }
        Ok((def, primary, unique))
    }

    /// CREATE INDEX: a secondary index local to each shard.
    fn bind_create_index(&mut self, ci: &ast::CreateIndex) -> Result<Plan> {
        if ci.unique {
            return Err(ProxyError::unsupported(
                "CREATE UNIQUE INDEX (declare UNIQUE on the table: it is enforced across shards)",
            ));
        }
        if ci.predicate.is_some() || !ci.include.is_empty() {
            return Err(ProxyError::unsupported("partial or covering indexes"));
        }
        let table = self.table(&ci.table_name)?;
        let mut columns = Vec::new();
        for ic in &ci.columns {
            let ast::Expr::Identifier(id) = &ic.column.expr else {
                return Err(ProxyError::unsupported("expression indexes"));
            };
            let n = ident_name(id);
            let i = table.column_index(&n).ok_or_else(|| {
                ProxyError::new("42703", format!("column \"{n}\" does not exist"))
            })?;
            columns.push(i);
        }
        let name = match &ci.name {
            Some(n) => table_name(n)?,
            None => {
                let cols: Vec<&str> = columns
                    .iter()
                    .map(|&c| table.columns[c].name.as_str())
                    .collect();
                format!("{}_{}_idx", table.name, cols.join("_"))
            }
        };
        Ok(Plan::CreateIndex {
            table: table.name,
            name,
            columns,
            if_not_exists: ci.if_not_exists,
        })
    }

    fn bind_alter(
        &mut self,
        name: &ObjectName,
        if_exists: bool,
        operations: &[ast::AlterTableOperation],
    ) -> Result<Plan> {
        let table = match self.table(name) {
            Ok(t) => t,
            Err(_) if if_exists => {
                return Ok(Plan::AlterTable {
                    table: table_name(name)?,
                    ops: Vec::new(),
                })
            }
            Err(e) => return Err(e),
        };
        let mut ops = Vec::new();
        for op in operations {
            match op {
                ast::AlterTableOperation::AddColumn {
                    if_not_exists,
                    column_def,
                    column_position: None,
                    ..
                } => {
                    let (def, primary, unique) = self.column_def(column_def)?;
                    if primary || unique {
                        return Err(ProxyError::unsupported(
                            "PRIMARY KEY or UNIQUE on an added column",
                        ));
                    }
                    ops.push(AlterOp::AddColumn {
                        column: def,
                        if_not_exists: *if_not_exists,
                    });
                }
                ast::AlterTableOperation::AddConstraint {
                    constraint: ast::TableConstraint::PrimaryKey { columns: cols, .. },
                    ..
                } => {
                    let mut columns = Vec::new();
                    for ic in cols {
                        let ast::Expr::Identifier(id) = &ic.column.expr else {
                            return Err(ProxyError::unsupported("expression in a key"));
                        };
                        let n = ident_name(id);
                        let i = table.column_index(&n).ok_or_else(|| {
                            ProxyError::new(
                                "42703",
                                format!(
                                    "column \"{n}\" of relation \"{}\" does not exist",
                                    table.name
                                ),
                            )
                        })?;
                        if columns.contains(&i) {
                            return Err(ProxyError::new(
                                "42701",
                                format!("column \"{n}\" appears twice in primary key constraint"),
                            ));
                        }
                        columns.push(i);
                    }
                    ops.push(AlterOp::AddPrimaryKey { columns });
                }
                ast::AlterTableOperation::DropColumn {
                    column_names,
                    if_exists,
                    ..
                } => {
                    for c in column_names {
                        ops.push(AlterOp::DropColumn {
                            name: ident_name(c),
                            if_exists: *if_exists,
                        });
                    }
                }
                other => return Err(ProxyError::unsupported(format!("ALTER TABLE {other}"))),
            }
        }
        Ok(Plan::AlterTable {
            table: table.name,
            ops,
        })
    }

    fn bind_create(&mut self, c: &ast::CreateTable) -> Result<Plan> {
        if c.temporary {
            return Err(ProxyError::unsupported("CREATE TEMPORARY TABLE"));
        }
        if c.query.is_some() {
            return Err(ProxyError::unsupported("CREATE TABLE ... AS"));
        }
        if c.like.is_some() || c.clone.is_some() {
            return Err(ProxyError::unsupported("CREATE TABLE ... LIKE"));
        }
        let name = table_name(&c.name)?;
        let mut columns: Vec<ColumnDef> = Vec::new();
        let mut pk: Vec<usize> = Vec::new();
        let multiple_pk = || {
            ProxyError::new(
                "42P16",
                format!("multiple primary keys for table \"{name}\" are not allowed"),
            )
        };
        let mut unique_cols: Vec<Vec<usize>> = Vec::new();
        for (i, col) in c.columns.iter().enumerate() {
            let cname = ident_name(&col.name);
            if columns.iter().any(|c| c.name == cname) {
                return Err(ProxyError::new(
                    "42701",
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            let (def, primary, unique) = self.column_def(col)?;
            if primary {
                if !pk.is_empty() {
                    return Err(multiple_pk());
                }
                pk.push(i);
            }
            if unique {
                unique_cols.push(vec![i]);
            }
            columns.push(def);
        }
        let resolve = |cols: &[ast::IndexColumn], columns: &[ColumnDef]| -> Result<Vec<usize>> {
            let mut out = Vec::new();
            for ic in cols {
                let ast::Expr::Identifier(id) = &ic.column.expr else {
                    return Err(ProxyError::unsupported("expression in a key"));
                };
                let n = ident_name(id);
                let idx = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                    ProxyError::new(
                        "42703",
                        format!("column \"{n}\" named in key does not exist"),
                    )
                })?;
                out.push(idx);
            }
            Ok(out)
        };
        for constraint in &c.constraints {
            match constraint {
                ast::TableConstraint::PrimaryKey { columns: cols, .. } => {
                    if !pk.is_empty() {
                        return Err(multiple_pk());
                    }
                    pk = resolve(cols, &columns)?;
                }
                ast::TableConstraint::Unique { columns: cols, .. } => {
                    unique_cols.push(resolve(cols, &columns)?);
                }
                other => return Err(ProxyError::unsupported(format!("table constraint {other}"))),
            }
        }
        if columns.is_empty() {
            return Err(ProxyError::unsupported("a table without columns"));
        }
        // Without a primary key the table is sharded on its first column (or
        // `shard_key`), and a hidden row id keeps equal rows apart.
        let keyless = pk.is_empty();
        if keyless {
            pk.push(0);
        } else {
            for &i in &pk {
                columns[i].nullable = false;
            }
        }
        let (mut shard_key, mut replicated) = (pk[0], false);
        let mut conflict_greatest = None;
        let mut sharding = super::strategy::StrategyOptions::default();
        let with: &[ast::SqlOption] = match &c.table_options {
            ast::CreateTableOptions::None => &[],
            ast::CreateTableOptions::With(o) => o,
            other => return Err(ProxyError::unsupported(format!("table options {other}"))),
        };
        for opt in with {
            let ast::SqlOption::KeyValue { key, value } = opt else {
                return Err(ProxyError::unsupported(format!("table option {opt}")));
            };
            let text = match value {
                ast::Expr::Value(v) => match &v.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                },
                other => other.to_string(),
            };
            let key = ident_name(key);
            if sharding.take(&key, text.clone()) {
                continue;
            }
            match key.as_str() {
                "shard_key" => {
                    let col = text.to_lowercase();
                    let i = columns.iter().position(|c| c.name == col).ok_or_else(|| {
                        ProxyError::new(
                            "42703",
                            format!("shard key column \"{col}\" does not exist"),
                        )
                    })?;
                    if keyless {
                        pk[0] = i;
                    } else if !pk.contains(&i) {
                        return Err(ProxyError::new(
                            "0A000",
                            format!("shard key \"{col}\" must be a primary-key column, so every row has one home shard"),
                        ));
                    }
                    shard_key = i;
                }
                "replicated" => {
                    replicated = matches!(text.to_lowercase().as_str(), "true" | "on" | "1" | "yes")
                }
                "conflict_resolver" => {
                    let lower = text.trim().to_lowercase();
                    let col = lower
                        .strip_prefix("greatest(")
                        .and_then(|r| r.strip_suffix(')'))
                        .map(str::trim)
                        .ok_or_else(|| {
                            ProxyError::new(
                                "22023",
                                format!("conflict_resolver {text:?} is not greatest(COLUMN)"),
                            )
                        })?;
                    let i = columns.iter().position(|c| c.name == col).ok_or_else(|| {
                        ProxyError::new(
                            "42703",
                            format!("conflict_resolver column \"{col}\" does not exist"),
                        )
                    })?;
                    conflict_greatest = Some(i);
                }
                // PostgreSQL storage parameters: accepted, no effect here.
                "fillfactor" | "autovacuum_enabled" | "toast_tuple_target" => {}
                other => {
                    return Err(ProxyError::new(
                        "22023",
                        format!("unrecognized parameter \"{other}\""),
                    ))
                }
            }
        }
        let strategy = sharding.build(&columns, &pk, shard_key)?;
        let rowid = keyless.then(|| {
            columns.push(ColumnDef {
                nullable: false,
                default: Some(Expr::Func(fortress_storage::Func::RowId, Vec::new())),
                ..ColumnDef::new("rowid", DataType::Int8)
            });
            pk.push(columns.len() - 1);
            columns.len() - 1
        });
        if replicated && strategy != fortress_storage::schema::Strategy::Hash {
            return Err(ProxyError::new(
                "22023",
                "a replicated table is on every shard and takes no sharding strategy",
            ));
        }
        let mut uniques: Vec<UniqueDef> = Vec::new();
        for cols in unique_cols {
            let mut sorted_pk = pk.clone();
            sorted_pk.sort_unstable();
            let mut sorted = cols.clone();
            sorted.sort_unstable();
            // UNIQUE on exactly the primary key adds nothing.
            if sorted == sorted_pk || uniques.iter().any(|u| u.columns == cols) {
                continue;
            }
            let names: Vec<&str> = cols.iter().map(|&i| columns[i].name.as_str()).collect();
            let cname = format!("{name}_{}_key", names.join("_"));
            uniques.push(UniqueDef {
                index_table: format!("__unique_{cname}"),
                name: cname,
                columns: cols,
            });
        }
        Ok(Plan::CreateTable {
            table: TableDef {
                id: 0,
                name,
                columns,
                shard_key,
                primary_key: pk,
                replicated,
                uniques,
                hidden: false,
                indexes: Vec::new(),
                strategy,
                rowid,
                locked: false,
                rewritten_from: None,
                conflict_greatest,
            },
            if_not_exists: c.if_not_exists,
        })
    }
}

/// `SELECT * FROM fortress_conflicts`: [`Plan::ShowConflicts`]. Any other
/// query of that relation is 0A000; a query of anything else, `None`.
fn conflicts_query(q: &ast::Query) -> Result<Option<Plan>> {
    let SetExpr::Select(select) = q.body.as_ref() else {
        return Ok(None);
    };
    let [from] = select.from.as_slice() else {
        return Ok(None);
    };
    let ast::TableFactor::Table { name, .. } = &from.relation else {
        return Ok(None);
    };
    if !name.to_string().eq_ignore_ascii_case("fortress_conflicts") {
        return Ok(None);
    }
    let plain = from.joins.is_empty()
        && select.selection.is_none()
        && matches!(select.projection.as_slice(), [ast::SelectItem::Wildcard(_)])
        && q.order_by.is_none()
        && q.limit_clause.is_none();
    if !plain {
        return Err(ProxyError::unsupported(
            "fortress_conflicts answers SELECT * FROM fortress_conflicts only",
        ));
    }
    Ok(Some(Plan::ShowConflicts))
}
