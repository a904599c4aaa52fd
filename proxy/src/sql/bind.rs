//! The binder: sqlparser AST + catalog + parameters -> [`Plan`].
//!
//! Types are checked as PostgreSQL does for the supported subset: untyped
//! string literals and parameters take the type their context expects,
//! integer literals are int4/int8/numeric by size, and comparing or assigning
//! across type families is an error (42883 / 42804).

use fortress_storage::schema::ColumnDef;
use fortress_storage::{BinaryOp, Catalog, DataType, Expr, SortKey, TableDef, Value};
use sqlparser::ast::{
    self, Ident, ObjectName, SelectItem, SetExpr, Spanned, Statement, TableFactor,
};
use sqlparser::tokenizer::Span;

use crate::error::{ProxyError, Result};
use crate::plan::{OutputColumn, Plan, SelectPlan};
use crate::session::{Session, SERVER_VERSION};
use crate::sql::types::{self, family, Family};

/// An expression with its type; `ty == None` marks an unknown-typed literal
/// or parameter whose type the context decides.
struct Typed {
    expr: Expr,
    ty: Option<DataType>,
    unknown: Option<Unknown>,
    name: Option<String>,
}

enum Unknown {
    Text(String, Span),
    Param(usize),
    Null,
}

impl Typed {
    fn known(expr: Expr, ty: DataType) -> Typed {
        Typed {
            expr,
            ty: Some(ty),
            unknown: None,
            name: None,
        }
    }
}

/// Binds statements for one session. `params` are the values of `$n` when
/// executing; when describing, they are absent and their types are inferred.
pub struct Binder<'a> {
    catalog: &'a Catalog,
    session: &'a Session,
    params: Option<&'a [Value]>,
    /// Types of `$1..$n` as given by the client or inferred from context.
    pub param_types: Vec<Option<DataType>>,
}

/// Folds an identifier as PostgreSQL does: unquoted names are lower-cased.
pub fn ident_name(id: &Ident) -> String {
    if id.quote_style.is_some() {
        id.value.clone()
    } else {
        id.value.to_lowercase()
    }
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

/// Result type of arithmetic between two numeric types.
fn arith_type(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (Float8, _) | (_, Float8) => Float8,
        (Numeric { .. }, _) | (_, Numeric { .. }) => Numeric {
            precision: None,
            scale: None,
        },
        (Int8, _) | (_, Int8) => Int8,
        (Int4, _) | (_, Int4) => Int4,
        _ => Int2,
    }
}

/// Evaluates a bound constant expression.
fn constant(e: &Expr) -> Result<Value> {
    Ok(e.eval(&Vec::new())?)
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
        }
    }

    fn table(&self, name: &ObjectName) -> Result<TableDef> {
        let n = table_name(name)?;
        self.catalog
            .get(&n)
            .cloned()
            .ok_or_else(|| ProxyError::undefined_table(&n).at(name.span()))
    }

    /// Binds one statement.
    pub fn bind(&mut self, stmt: &Statement) -> Result<Plan> {
        match stmt {
            Statement::Query(q) => Ok(Plan::Select(self.bind_query(q)?)),
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
                if returning.is_some() {
                    return Err(ProxyError::unsupported("UPDATE ... RETURNING"));
                }
                let def = self.single_table(table)?;
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
                    if def.primary_key.contains(&idx) {
                        return Err(ProxyError::unsupported(format!(
                            "updating primary-key column \"{col_name}\""
                        )));
                    }
                    let e = self.assignment(&a.value, Some(&def), &def.columns[idx])?;
                    sets.push((idx, e));
                }
                let filter = self.filter(selection.as_ref(), &def)?;
                Ok(Plan::Update {
                    table: def,
                    filter,
                    assignments: sets,
                })
            }
            Statement::Delete(d) => {
                if d.using.is_some() || !d.tables.is_empty() {
                    return Err(ProxyError::unsupported("DELETE ... USING"));
                }
                if d.returning.is_some() {
                    return Err(ProxyError::unsupported("DELETE ... RETURNING"));
                }
                let from = match &d.from {
                    ast::FromTable::WithFromKeyword(f) | ast::FromTable::WithoutKeyword(f) => f,
                };
                let [t] = from.as_slice() else {
                    return Err(ProxyError::unsupported("DELETE from several tables"));
                };
                let def = self.single_table(t)?;
                let filter = self.filter(d.selection.as_ref(), &def)?;
                Ok(Plan::Delete { table: def, filter })
            }
            Statement::CreateTable(c) => self.bind_create(c),
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
                if self.session.get(&name).is_none() {
                    return Err(ProxyError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    ));
                }
                Ok(Plan::ShowVariable { name })
            }
            Statement::StartTransaction { .. } => Ok(Plan::Begin),
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

    fn single_table(&self, t: &ast::TableWithJoins) -> Result<TableDef> {
        if !t.joins.is_empty() {
            return Err(ProxyError::unsupported("JOIN"));
        }
        match &t.relation {
            TableFactor::Table {
                name, args: None, ..
            } => self.table(name),
            other => Err(ProxyError::unsupported(format!("FROM {other}"))),
        }
    }

    fn filter(&mut self, selection: Option<&ast::Expr>, def: &TableDef) -> Result<Option<Expr>> {
        let Some(sel) = selection else {
            return Ok(None);
        };
        let t = self.expr(sel, Some(def))?;
        let t = self.coerce(t, &DataType::Bool)?;
        match t.ty {
            Some(DataType::Bool) => Ok(Some(t.expr)),
            Some(other) => Err(ProxyError::new(
                "42804",
                format!(
                    "argument of WHERE must be type boolean, not type {}",
                    other.pg_name()
                ),
            )),
            None => Ok(Some(t.expr)),
        }
    }

    /// Binds a value assigned to `col`, cast to the column's type.
    fn assignment(
        &mut self,
        e: &ast::Expr,
        scope: Option<&TableDef>,
        col: &ColumnDef,
    ) -> Result<Expr> {
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
        if ins.on.is_some() {
            return Err(ProxyError::unsupported("INSERT ... ON CONFLICT"));
        }
        if ins.returning.is_some() {
            return Err(ProxyError::unsupported("INSERT ... RETURNING"));
        }
        let ast::TableObject::TableName(name) = &ins.table else {
            return Err(ProxyError::unsupported("INSERT INTO a table function"));
        };
        let def = self.table(name)?;
        let targets: Vec<usize> = if ins.columns.is_empty() {
            (0..def.columns.len()).collect()
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
            let mut row: Vec<Value> = def
                .columns
                .iter()
                .map(|c| c.default.clone().unwrap_or(Value::Null))
                .collect();
            for (e, &i) in exprs.iter().zip(&targets) {
                let col = &def.columns[i];
                if matches!(e, ast::Expr::Identifier(id) if id.quote_style.is_none() && id.value.eq_ignore_ascii_case("default"))
                {
                    continue;
                }
                let bound = self.assignment(e, None, col)?;
                row[i] = constant(&bound)?;
            }
            rows.push(row);
        }
        Ok(Plan::Insert { table: def, rows })
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
        for (i, col) in c.columns.iter().enumerate() {
            let cname = ident_name(&col.name);
            if columns.iter().any(|c| c.name == cname) {
                return Err(ProxyError::new(
                    "42701",
                    format!("column \"{cname}\" specified more than once"),
                ));
            }
            let ty = types::from_ast(&col.data_type)?;
            let mut def = ColumnDef {
                name: cname,
                ty,
                nullable: true,
                default: None,
            };
            for opt in &col.options {
                match &opt.option {
                    ast::ColumnOption::Null => def.nullable = true,
                    ast::ColumnOption::NotNull => def.nullable = false,
                    ast::ColumnOption::Default(e) => {
                        let bound = self.assignment(e, None, &def)?;
                        def.default = Some(constant(&bound)?);
                    }
                    ast::ColumnOption::Unique {
                        is_primary: true, ..
                    } => {
                        if !pk.is_empty() {
                            return Err(multiple_pk());
                        }
                        pk.push(i);
                    }
                    other => {
                        return Err(ProxyError::unsupported(format!(
                            "column constraint {other}"
                        )))
                    }
                }
            }
            columns.push(def);
        }
        for constraint in &c.constraints {
            match constraint {
                ast::TableConstraint::PrimaryKey { columns: cols, .. } => {
                    if !pk.is_empty() {
                        return Err(multiple_pk());
                    }
                    for ic in cols {
                        let ast::Expr::Identifier(id) = &ic.column.expr else {
                            return Err(ProxyError::unsupported("expression in PRIMARY KEY"));
                        };
                        let n = ident_name(id);
                        let idx = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                            ProxyError::new(
                                "42703",
                                format!("column \"{n}\" named in key does not exist"),
                            )
                        })?;
                        pk.push(idx);
                    }
                }
                other => return Err(ProxyError::unsupported(format!("table constraint {other}"))),
            }
        }
        if columns.is_empty() {
            return Err(ProxyError::unsupported("a table without columns"));
        }
        if pk.is_empty() {
            return Err(ProxyError::new(
                "0A000",
                format!("table \"{name}\" needs a PRIMARY KEY: its first column is the shard key"),
            ));
        }
        for &i in &pk {
            columns[i].nullable = false;
        }
        Ok(Plan::CreateTable {
            table: TableDef {
                id: 0,
                name,
                columns,
                shard_key: pk[0],
                primary_key: pk,
            },
            if_not_exists: c.if_not_exists,
        })
    }

    /// Binds a SELECT query.
    pub fn bind_query(&mut self, q: &ast::Query) -> Result<SelectPlan> {
        if q.with.is_some() {
            return Err(ProxyError::unsupported("WITH"));
        }
        if q.fetch.is_some() || !q.locks.is_empty() {
            return Err(ProxyError::unsupported("FETCH / FOR UPDATE"));
        }
        let select = match q.body.as_ref() {
            SetExpr::Select(s) => s,
            SetExpr::Query(inner) if q.order_by.is_none() && q.limit_clause.is_none() => {
                return self.bind_query(inner)
            }
            SetExpr::Values(_) => return Err(ProxyError::unsupported("VALUES as a query")),
            _ => return Err(ProxyError::unsupported("UNION / INTERSECT / EXCEPT")),
        };
        if select.distinct.is_some() {
            return Err(ProxyError::unsupported("DISTINCT"));
        }
        if select.having.is_some()
            || !matches!(&select.group_by, ast::GroupByExpr::Expressions(e, _) if e.is_empty())
        {
            return Err(ProxyError::unsupported("GROUP BY / HAVING"));
        }
        if select.into.is_some() {
            return Err(ProxyError::unsupported("SELECT INTO"));
        }
        let table = match select.from.as_slice() {
            [] => None,
            [t] => Some(self.single_table(t)?),
            _ => return Err(ProxyError::unsupported("several tables in FROM (joins)")),
        };
        let scope = table.as_ref();
        let mut projection = Vec::new();
        let mut columns = Vec::new();
        for item in &select.projection {
            match item {
                SelectItem::Wildcard(_) | SelectItem::QualifiedWildcard(..) => {
                    let Some(t) = scope else {
                        return Err(ProxyError::syntax(
                            "SELECT * with no tables specified is not valid",
                        ));
                    };
                    for (i, c) in t.columns.iter().enumerate() {
                        projection.push(Expr::Column(i));
                        columns.push(OutputColumn {
                            name: c.name.clone(),
                            ty: c.ty,
                        });
                    }
                }
                SelectItem::UnnamedExpr(e) | SelectItem::ExprWithAlias { expr: e, .. } => {
                    let t = self.expr(e, scope)?;
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
        let filter = match (&select.selection, scope) {
            (Some(_), Some(t)) => self.filter(select.selection.as_ref(), t)?,
            (Some(sel), None) => {
                let t = self.expr(sel, None)?;
                Some(self.coerce(t, &DataType::Bool)?.expr)
            }
            (None, _) => None,
        };
        let mut order_by = Vec::new();
        if let Some(ob) = &q.order_by {
            let ast::OrderByKind::Expressions(exprs) = &ob.kind else {
                return Err(ProxyError::unsupported("ORDER BY ALL"));
            };
            for o in exprs {
                let expr = self.order_key(&o.expr, scope, &projection, &columns)?;
                let descending = o.options.asc == Some(false);
                order_by.push(SortKey {
                    expr,
                    descending,
                    nulls_first: o.options.nulls_first.unwrap_or(descending),
                });
            }
        }
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
        Ok(SelectPlan {
            table,
            filter,
            projection,
            columns,
            order_by,
            limit,
            offset,
        })
    }

    fn count_clause(&mut self, e: &ast::Expr, what: &str) -> Result<Option<u64>> {
        let t = self.expr(e, None)?;
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

    /// ORDER BY accepts an output ordinal, an output name, or an expression.
    fn order_key(
        &mut self,
        e: &ast::Expr,
        scope: Option<&TableDef>,
        projection: &[Expr],
        columns: &[OutputColumn],
    ) -> Result<Expr> {
        if let ast::Expr::Value(v) = e {
            if let ast::Value::Number(n, _) = &v.value {
                let pos: usize = n.parse().unwrap_or(0);
                return projection.get(pos.wrapping_sub(1)).cloned().ok_or_else(|| {
                    ProxyError::new(
                        "42P10",
                        format!("ORDER BY position {n} is not in select list"),
                    )
                });
            }
        }
        if let ast::Expr::Identifier(id) = e {
            let n = ident_name(id);
            if let Some(i) = columns.iter().position(|c| c.name == n) {
                return Ok(projection[i].clone());
            }
        }
        let t = self.expr(e, scope)?;
        Ok(self.finalize(t)?.expr)
    }

    /// Gives an unknown-typed expression the type `ty`.
    fn coerce(&mut self, t: Typed, ty: &DataType) -> Result<Typed> {
        let Some(u) = &t.unknown else { return Ok(t) };
        let expr = match u {
            Unknown::Text(s, span) => Expr::Literal(Value::parse(ty, s).map_err(|e| {
                // PostgreSQL points at literals it cannot read, not at ones
                // that fail a later length or range check.
                let bad_syntax = e.sql_state() == "22P02";
                let e = ProxyError::from(e);
                if bad_syntax {
                    e.at(*span)
                } else {
                    e
                }
            })?),
            Unknown::Null => Expr::Literal(Value::Null),
            Unknown::Param(n) => {
                let slot = &mut self.param_types[*n];
                let pty = *slot.get_or_insert(*ty);
                match self.params {
                    Some(values) => Expr::Literal(
                        values
                            .get(*n)
                            .cloned()
                            .unwrap_or(Value::Null)
                            .cast(&pty)?
                            .cast(ty)?,
                    ),
                    None => Expr::Literal(Value::Null),
                }
            }
        };
        Ok(Typed {
            expr,
            ty: Some(*ty),
            unknown: None,
            name: t.name,
        })
    }

    /// Resolves any remaining unknown type to text, as PostgreSQL does.
    fn finalize(&mut self, t: Typed) -> Result<Typed> {
        if t.unknown.is_some() {
            let name = t.name.clone();
            let mut r = self.coerce(t, &DataType::Text)?;
            r.name = name;
            return Ok(r);
        }
        Ok(t)
    }

    fn column(&self, name: &str, scope: Option<&TableDef>) -> Result<Typed> {
        let t = scope.ok_or_else(|| ProxyError::undefined_column(name))?;
        let i = t
            .column_index(name)
            .ok_or_else(|| ProxyError::undefined_column(name))?;
        Ok(Typed {
            expr: Expr::Column(i),
            ty: Some(t.columns[i].ty),
            unknown: None,
            name: Some(name.to_string()),
        })
    }

    fn special_identifier(&self, name: &str) -> Option<Typed> {
        let v = match name {
            "current_user" | "session_user" | "user" => self.session.user.clone(),
            "current_catalog" => self.session.database.clone(),
            "current_schema" => "public".into(),
            _ => return None,
        };
        let mut t = Typed::known(Expr::Literal(Value::Text(v)), DataType::Text);
        t.name = Some(name.to_string());
        Some(t)
    }

    /// Binds an expression over `scope`'s columns.
    fn expr(&mut self, e: &ast::Expr, scope: Option<&TableDef>) -> Result<Typed> {
        use ast::Expr as A;
        match e {
            A::Identifier(id) => {
                let n = ident_name(id);
                match self.column(&n, scope) {
                    Ok(t) => Ok(t),
                    Err(err) => self.special_identifier(&n).ok_or(err.at(id.span)),
                }
            }
            A::CompoundIdentifier(parts) => {
                let [tbl, col] = parts.as_slice() else {
                    return Err(ProxyError::unsupported(format!("qualified name {e}")));
                };
                let tn = ident_name(tbl);
                match scope {
                    Some(t) if t.name == tn => self
                        .column(&ident_name(col), scope)
                        .map_err(|e| e.at(col.span)),
                    _ => Err(ProxyError::new(
                        "42P01",
                        format!("missing FROM-clause entry for table \"{tn}\""),
                    )
                    .at(tbl.span)),
                }
            }
            A::Nested(inner) => self.expr(inner, scope),
            A::Value(v) => self.literal(&v.value, v.span),
            A::TypedString(ts) => {
                let ty = types::from_ast(&ts.data_type)?;
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                Ok(Typed::known(Expr::Literal(Value::parse(&ty, &text)?), ty))
            }
            A::Cast {
                expr, data_type, ..
            } => {
                let ty = types::from_ast(data_type)?;
                let inner = self.expr(expr, scope)?;
                let name = inner.name.clone();
                let inner = self.coerce(inner, &ty)?;
                let mut t = Typed::known(Expr::Cast(Box::new(inner.expr), ty), ty);
                t.name = name.or_else(|| Some(ty_name(&ty)));
                Ok(t)
            }
            A::UnaryOp { op, expr } => match op {
                ast::UnaryOperator::Not => {
                    let t = self.expr(expr, scope)?;
                    let t = self.coerce(t, &DataType::Bool)?;
                    self.expect_bool(&t, "NOT")?;
                    Ok(Typed::known(Expr::Not(Box::new(t.expr)), DataType::Bool))
                }
                ast::UnaryOperator::Minus => {
                    if let A::Value(v) = expr.as_ref() {
                        if let ast::Value::Number(n, _) = &v.value {
                            return self.number(&format!("-{n}"));
                        }
                    }
                    let t = self.expr(expr, scope)?;
                    let t = self.coerce(
                        t,
                        &DataType::Numeric {
                            precision: None,
                            scale: None,
                        },
                    )?;
                    let ty = t.ty.unwrap_or(DataType::Int4);
                    if family(&ty) != Family::Number {
                        return Err(ProxyError::new(
                            "42883",
                            format!("operator does not exist: - {}", ty.pg_name()),
                        ));
                    }
                    Ok(Typed::known(Expr::Negate(Box::new(t.expr)), ty))
                }
                ast::UnaryOperator::Plus => self.expr(expr, scope),
                other => Err(ProxyError::unsupported(format!("operator {other}"))),
            },
            A::IsNull(inner) | A::IsNotNull(inner) => {
                let t = self.expr(inner, scope)?;
                let t = self.finalize(t)?;
                Ok(Typed::known(
                    Expr::IsNull {
                        expr: Box::new(t.expr),
                        negated: matches!(e, A::IsNotNull(_)),
                    },
                    DataType::Bool,
                ))
            }
            A::BinaryOp { left, op, right } => self.binary(left, op, right, scope),
            A::Between {
                expr,
                negated,
                low,
                high,
            } => {
                let ge = self.compare(expr, BinaryOp::GtEq, low, scope)?;
                let le = self.compare(expr, BinaryOp::LtEq, high, scope)?;
                let both = Expr::binary(BinaryOp::And, ge, le);
                let e = if *negated {
                    Expr::Not(Box::new(both))
                } else {
                    both
                };
                Ok(Typed::known(e, DataType::Bool))
            }
            A::InList {
                expr,
                list,
                negated,
            } => {
                let mut any: Option<Expr> = None;
                for item in list {
                    let eq = self.compare(expr, BinaryOp::Eq, item, scope)?;
                    any = Some(match any {
                        None => eq,
                        Some(prev) => Expr::binary(BinaryOp::Or, prev, eq),
                    });
                }
                let any = any.ok_or_else(|| ProxyError::syntax("empty IN list"))?;
                let e = if *negated {
                    Expr::Not(Box::new(any))
                } else {
                    any
                };
                Ok(Typed::known(e, DataType::Bool))
            }
            A::Function(f) => self.function(f),
            other => Err(ProxyError::unsupported(format!("expression {other}"))),
        }
    }

    fn expect_bool(&self, t: &Typed, context: &str) -> Result<()> {
        match &t.ty {
            Some(DataType::Bool) | None => Ok(()),
            Some(other) => Err(ProxyError::new(
                "42804",
                format!(
                    "argument of {context} must be type boolean, not type {}",
                    other.pg_name()
                ),
            )),
        }
    }

    fn literal(&mut self, v: &ast::Value, span: Span) -> Result<Typed> {
        match v {
            ast::Value::Number(n, _) => self.number(n),
            ast::Value::SingleQuotedString(s) | ast::Value::EscapedStringLiteral(s) => Ok(Typed {
                expr: Expr::Literal(Value::Text(s.clone())),
                ty: None,
                unknown: Some(Unknown::Text(s.clone(), span)),
                name: None,
            }),
            ast::Value::DollarQuotedString(d) => Ok(Typed {
                expr: Expr::Literal(Value::Text(d.value.clone())),
                ty: None,
                unknown: Some(Unknown::Text(d.value.clone(), span)),
                name: None,
            }),
            ast::Value::Boolean(b) => {
                let mut t = Typed::known(Expr::Literal(Value::Bool(*b)), DataType::Bool);
                t.name = Some("bool".into());
                Ok(t)
            }
            ast::Value::Null => Ok(Typed {
                expr: Expr::Literal(Value::Null),
                ty: None,
                unknown: Some(Unknown::Null),
                name: None,
            }),
            ast::Value::Placeholder(p) => {
                let n: usize = p
                    .strip_prefix('$')
                    .and_then(|d| d.parse().ok())
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| ProxyError::syntax(format!("invalid parameter {p}")))?;
                if n > 65535 {
                    return Err(ProxyError::syntax(format!("parameter ${n} out of range")));
                }
                if self.param_types.len() < n {
                    self.param_types.resize(n, None);
                }
                if let Some(values) = self.params {
                    if n > values.len() {
                        return Err(ProxyError::new(
                            "42P02",
                            format!("there is no parameter ${n}"),
                        ));
                    }
                }
                if let Some(ty) = self.param_types[n - 1] {
                    let v = match self.params {
                        Some(values) => values[n - 1].clone().cast(&ty)?,
                        None => Value::Null,
                    };
                    return Ok(Typed::known(Expr::Literal(v), ty));
                }
                Ok(Typed {
                    expr: Expr::Literal(Value::Null),
                    ty: None,
                    unknown: Some(Unknown::Param(n - 1)),
                    name: None,
                })
            }
            other => Err(ProxyError::unsupported(format!("literal {other}"))),
        }
    }

    fn number(&self, n: &str) -> Result<Typed> {
        if let Ok(i) = n.parse::<i64>() {
            return Ok(match i32::try_from(i) {
                Ok(v) => Typed::known(Expr::Literal(Value::Int4(v)), DataType::Int4),
                Err(_) => Typed::known(Expr::Literal(Value::Int8(i)), DataType::Int8),
            });
        }
        let ty = DataType::Numeric {
            precision: None,
            scale: None,
        };
        let v = Value::parse(&ty, n).map_err(|_| {
            ProxyError::new("22003", format!("numeric literal {n} is out of range"))
        })?;
        Ok(Typed::known(Expr::Literal(v), ty))
    }

    /// Binds `l op r` for a comparison, unifying unknown sides.
    fn compare(
        &mut self,
        l: &ast::Expr,
        op: BinaryOp,
        r: &ast::Expr,
        scope: Option<&TableDef>,
    ) -> Result<Expr> {
        let a = self.expr(l, scope)?;
        let b = self.expr(r, scope)?;
        let (a, b) = self.unify(a, b)?;
        let (ta, tb) = (
            a.ty.unwrap_or(DataType::Text),
            b.ty.unwrap_or(DataType::Text),
        );
        if family(&ta) != family(&tb) {
            return Err(ProxyError::new(
                "42883",
                format!(
                    "operator does not exist: {} {} {}",
                    ta.pg_name(),
                    op.symbol(),
                    tb.pg_name()
                ),
            ));
        }
        Ok(Expr::binary(op, a.expr, b.expr))
    }

    fn unify(&mut self, a: Typed, b: Typed) -> Result<(Typed, Typed)> {
        match (&a.ty, &b.ty) {
            (None, Some(t)) => {
                let t = *t;
                Ok((self.coerce(a, &t)?, b))
            }
            (Some(t), None) => {
                let t = *t;
                Ok((a, self.coerce(b, &t)?))
            }
            (None, None) => Ok((self.finalize(a)?, self.finalize(b)?)),
            _ => Ok((a, b)),
        }
    }

    fn binary(
        &mut self,
        l: &ast::Expr,
        op: &ast::BinaryOperator,
        r: &ast::Expr,
        scope: Option<&TableDef>,
    ) -> Result<Typed> {
        use ast::BinaryOperator as B;
        let cmp = match op {
            B::Eq => Some(BinaryOp::Eq),
            B::NotEq => Some(BinaryOp::NotEq),
            B::Lt => Some(BinaryOp::Lt),
            B::LtEq => Some(BinaryOp::LtEq),
            B::Gt => Some(BinaryOp::Gt),
            B::GtEq => Some(BinaryOp::GtEq),
            _ => None,
        };
        if let Some(c) = cmp {
            return Ok(Typed::known(self.compare(l, c, r, scope)?, DataType::Bool));
        }
        let bop = match op {
            B::And => BinaryOp::And,
            B::Or => BinaryOp::Or,
            B::Plus => BinaryOp::Plus,
            B::Minus => BinaryOp::Minus,
            B::Multiply => BinaryOp::Multiply,
            B::Divide => BinaryOp::Divide,
            B::Modulo => BinaryOp::Modulo,
            B::StringConcat => BinaryOp::Concat,
            other => return Err(ProxyError::unsupported(format!("operator {other}"))),
        };
        let a = self.expr(l, scope)?;
        let b = self.expr(r, scope)?;
        match bop {
            BinaryOp::And | BinaryOp::Or => {
                let a = self.coerce(a, &DataType::Bool)?;
                let b = self.coerce(b, &DataType::Bool)?;
                self.expect_bool(&a, bop.symbol())?;
                self.expect_bool(&b, bop.symbol())?;
                Ok(Typed::known(
                    Expr::binary(bop, a.expr, b.expr),
                    DataType::Bool,
                ))
            }
            BinaryOp::Concat => {
                let a = self.finalize(a)?;
                let b = self.finalize(b)?;
                Ok(Typed::known(
                    Expr::binary(bop, a.expr, b.expr),
                    DataType::Text,
                ))
            }
            _ => {
                let (a, b) = self.unify(a, b)?;
                let (ta, tb) = (
                    a.ty.unwrap_or(DataType::Text),
                    b.ty.unwrap_or(DataType::Text),
                );
                if family(&ta) != Family::Number || family(&tb) != Family::Number {
                    return Err(ProxyError::new(
                        "42883",
                        format!(
                            "operator does not exist: {} {} {}",
                            ta.pg_name(),
                            bop.symbol(),
                            tb.pg_name()
                        ),
                    ));
                }
                let ty = arith_type(&ta, &tb);
                Ok(Typed::known(Expr::binary(bop, a.expr, b.expr), ty))
            }
        }
    }

    fn function(&mut self, f: &ast::Function) -> Result<Typed> {
        let name = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident_name)
            .unwrap_or_default();
        let args: Vec<&ast::Expr> = match &f.args {
            ast::FunctionArguments::None => Vec::new(),
            ast::FunctionArguments::List(l) => l
                .args
                .iter()
                .map(|a| match a {
                    ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => Ok(e),
                    _ => Err(ProxyError::unsupported(format!(
                        "argument form in {name}()"
                    ))),
                })
                .collect::<Result<_>>()?,
            ast::FunctionArguments::Subquery(_) => {
                return Err(ProxyError::unsupported("subquery argument"))
            }
        };
        let text = |v: String| Typed::known(Expr::Literal(Value::Text(v)), DataType::Text);
        let mut t = match (name.as_str(), args.as_slice()) {
            ("version", []) => text(format!(
                "PostgreSQL {SERVER_VERSION} on {}-linux, compiled by rustc, 64-bit",
                std::env::consts::ARCH
            )),
            ("current_database", []) => text(self.session.database.clone()),
            ("current_schema", []) => text("public".into()),
            ("current_user" | "session_user", []) => text(self.session.user.clone()),
            ("current_setting", [arg]) => {
                let a = self.expr(arg, None)?;
                let a = self.coerce(a, &DataType::Text)?;
                let key = match constant(&a.expr)? {
                    Value::Text(s) => s,
                    _ => return Err(ProxyError::new("22004", "setting name must not be null")),
                };
                let v = self.session.get(&key).ok_or_else(|| {
                    ProxyError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{key}\""),
                    )
                })?;
                text(v)
            }
            ("count" | "sum" | "avg" | "min" | "max", _) => {
                return Err(ProxyError::unsupported(format!(
                    "aggregate function {name}()"
                )))
            }
            _ => {
                return Err(ProxyError::new(
                    "42883",
                    format!("function {name}() does not exist"),
                ))
            }
        };
        t.name = Some(name);
        Ok(t)
    }
}

fn ty_name(ty: &DataType) -> String {
    match ty {
        DataType::Bool => "bool",
        DataType::Int2 => "int2",
        DataType::Int4 => "int4",
        DataType::Int8 => "int8",
        DataType::Float8 => "float8",
        DataType::Numeric { .. } => "numeric",
        DataType::Text => "text",
        DataType::Varchar(_) => "varchar",
        DataType::Date => "date",
        DataType::Timestamp => "timestamp",
    }
    .to_string()
}
