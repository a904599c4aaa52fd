//! Expression binding: SQL expressions to typed [`Expr`]s over a [`Scope`],
//! with PostgreSQL's rules for unknown-typed literals and parameters.

use fortress_storage::{BinaryOp, DataType, Expr, Func, Value};
use sqlparser::ast::{self, Spanned};
use sqlparser::tokenizer::Span;

use crate::error::{ProxyError, Result};
use crate::plan::{AggCall, AggFunc, Subquery, SubqueryKind};
use crate::session::SERVER_VERSION;
use crate::sql::bind::{ident_name, Binder};
use crate::sql::scope::Scope;
use crate::sql::types::{self, family, Family};

/// An expression with its type; `ty == None` marks an unknown-typed literal
/// or parameter whose type the context decides.
pub struct Typed {
    pub expr: Expr,
    pub ty: Option<DataType>,
    pub unknown: Option<Unknown>,
    pub name: Option<String>,
    /// The name is only a type's name (from a literal or cast): an outer
    /// cast replaces it, as PostgreSQL's column naming does.
    pub weak_name: bool,
}

pub enum Unknown {
    Text(String, Span),
    Param(usize),
    Null,
}

impl Typed {
    pub fn known(expr: Expr, ty: DataType) -> Typed {
        Typed {
            expr,
            ty: Some(ty),
            unknown: None,
            name: None,
            weak_name: false,
        }
    }

    fn named(mut self, name: &str) -> Typed {
        self.name = Some(name.to_string());
        self
    }
}

/// Result type of arithmetic between two numeric types.
pub fn arith_type(a: &DataType, b: &DataType) -> DataType {
    use DataType::*;
    match (a, b) {
        (Float4, Float4) => Float4,
        (Float8 | Float4, _) | (_, Float8 | Float4) => Float8,
        (Numeric { .. }, _) | (_, Numeric { .. }) => UNCONSTRAINED_NUMERIC,
        (Int8, _) | (_, Int8) => Int8,
        (Int4, _) | (_, Int4) => Int4,
        _ => Int2,
    }
}

pub const UNCONSTRAINED_NUMERIC: DataType = DataType::Numeric {
    precision: None,
    scale: None,
};

/// Evaluates a bound constant expression.
pub fn constant(e: &Expr) -> Result<Value> {
    Ok(e.eval(&Vec::new())?)
}

fn no_function(name: &str, args: &[&Typed]) -> ProxyError {
    let tys: Vec<&str> = args
        .iter()
        .map(|t| t.ty.map(|t| t.pg_name()).unwrap_or("unknown"))
        .collect();
    ProxyError::new(
        "42883",
        format!("function {name}({}) does not exist", tys.join(", ")),
    )
}

const AGGREGATES: [&str; 5] = ["count", "sum", "avg", "min", "max"];

impl Binder<'_> {
    /// Gives an unknown-typed expression the type `ty`.
    pub(crate) fn coerce(&mut self, t: Typed, ty: &DataType) -> Result<Typed> {
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
                self.param(*n, &[pty, *ty])?
            }
        };
        Ok(Typed {
            expr,
            ty: Some(*ty),
            unknown: None,
            weak_name: false,
            name: t.name,
        })
    }

    /// Resolves any remaining unknown type to text, as PostgreSQL does.
    pub(crate) fn finalize(&mut self, t: Typed) -> Result<Typed> {
        if t.unknown.is_some() {
            let name = t.name.clone();
            let mut r = self.coerce(t, &DataType::Text)?;
            r.name = name;
            return Ok(r);
        }
        Ok(t)
    }

    /// Resolves a column in the current scope; a name found only in an
    /// enclosing query's scope is a correlated reference, which is not built.
    fn column(&mut self, qualifier: Option<&str>, name: &str, scope: &Scope) -> Result<Typed> {
        let found = match scope.resolve(qualifier, name) {
            Ok(f) => f,
            Err(e) if e.sql_state() == "42P01" && self.outer_has(qualifier, name) => None,
            Err(e) => return Err(e),
        };
        if let Some(i) = found {
            return Ok(Typed {
                expr: Expr::Column(i),
                ty: Some(scope.columns[i].ty),
                unknown: None,
                weak_name: false,
                name: Some(name.to_string()),
            });
        }
        // A column of the immediately enclosing query: a correlated
        // reference, filled per outer row.
        let direct = self.outer.last().and_then(|s| {
            s.resolve(qualifier, name)
                .ok()
                .flatten()
                .map(|i| (i, s.columns[i].ty))
        });
        if let (Some((i, ty)), true) = (direct, self.correlated_refs.is_some()) {
            let existing = self
                .correlated_refs
                .as_ref()
                .and_then(|refs| refs.iter().find(|(_, c, _)| *c == i).map(|(s, _, _)| *s));
            let slot = match existing {
                Some(s) => s,
                None => {
                    let s = self.new_slot();
                    if let Some(refs) = self.correlated_refs.as_mut() {
                        refs.push((s, i, ty));
                    }
                    s
                }
            };
            let mut t = Typed::known(Expr::Slot(slot), ty);
            t.name = Some(name.to_string());
            return Ok(t);
        }
        if self.outer_has(qualifier, name) {
            return Err(ProxyError::unsupported(format!(
                "a reference to column \"{name}\" of a query more than one level out"
            )));
        }
        Err(match qualifier {
            Some(q) => ProxyError::new("42703", format!("column {q}.{name} does not exist")),
            None => ProxyError::undefined_column(name),
        })
    }

    fn outer_has(&self, qualifier: Option<&str>, name: &str) -> bool {
        self.outer
            .iter()
            .any(|s| matches!(s.resolve(qualifier, name), Ok(Some(_))))
    }

    fn special_identifier(&self, name: &str) -> Option<Typed> {
        let v = match name {
            "current_user" | "session_user" | "user" => self.session.user.clone(),
            "current_catalog" => self.session.database.clone(),
            "current_schema" => "public".into(),
            _ => return None,
        };
        let mut t = Typed::known(Expr::Literal(Value::Text(v)), DataType::Name);
        t.name = Some(name.to_string());
        Some(t)
    }

    /// Binds an expression over `scope`'s columns.
    pub(crate) fn expr(&mut self, e: &ast::Expr, scope: &Scope) -> Result<Typed> {
        // One level of a chain is a large frame here (see `stack`).
        fortress_storage::stack::deep(|| self.expr_level(e, scope))
    }

    fn expr_level(&mut self, e: &ast::Expr, scope: &Scope) -> Result<Typed> {
        use ast::Expr as A;
        match e {
            A::Identifier(id) => {
                let n = ident_name(id);
                match self.column(None, &n, scope) {
                    Ok(t) => Ok(t),
                    Err(err) if err.sql_state() == "42703" => {
                        self.special_identifier(&n).ok_or(err.at(id.span))
                    }
                    Err(err) => Err(err.at(id.span)),
                }
            }
            A::CompoundIdentifier(parts) => {
                let [tbl, col] = parts.as_slice() else {
                    return Err(ProxyError::unsupported(format!("qualified name {e}")));
                };
                self.column(Some(&ident_name(tbl)), &ident_name(col), scope)
                    .map_err(|e| e.at(tbl.span))
            }
            A::Nested(inner) => self.expr(inner, scope),
            A::Value(v) => self.literal(&v.value, v.span),
            A::TypedString(ts) => {
                let ty = types::from_ast(&ts.data_type)?;
                let text = match &ts.value.value {
                    ast::Value::SingleQuotedString(s) => s.clone(),
                    other => other.to_string(),
                };
                let mut t =
                    Typed::known(Expr::Literal(Value::parse(&ty, &text)?), ty).named(&ty_name(&ty));
                t.weak_name = true;
                Ok(t)
            }
            A::Cast {
                expr, data_type, ..
            } => {
                let ty = types::from_ast(data_type)?;
                let inner = self.expr(expr, scope)?;
                let name = if inner.weak_name {
                    None
                } else {
                    inner.name.clone()
                };
                let literal_target = match ty {
                    DataType::Varchar(Some(_)) | DataType::Char(_) => DataType::Text,
                    other => other,
                };
                let inner = self.coerce(inner, &literal_target)?;
                if let Some(from) = inner.ty {
                    if !types::can_cast(&from, &ty) {
                        return Err(ProxyError::new(
                            "42846",
                            format!("cannot cast type {} to {}", from.pg_name(), ty.pg_name()),
                        ));
                    }
                }
                // An explicit cast to varchar(n) truncates instead of failing.
                let inner_expr = match ty {
                    DataType::Varchar(Some(n)) | DataType::Char(Some(n)) => Expr::Func(
                        Func::Left,
                        vec![
                            Expr::Cast(Box::new(inner.expr), DataType::Text),
                            Expr::Literal(Value::Int4(n as i32)),
                        ],
                    ),
                    _ => inner.expr,
                };
                let mut t = Typed::known(Expr::Cast(Box::new(inner_expr), ty), ty);
                t.weak_name = name.is_none();
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
                    let t = self.coerce(t, &UNCONSTRAINED_NUMERIC)?;
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
            A::IsTrue(inner) | A::IsNotTrue(inner) | A::IsFalse(inner) | A::IsNotFalse(inner) => {
                let t = self.expr(inner, scope)?;
                let t = self.coerce(t, &DataType::Bool)?;
                self.expect_bool(&t, "IS TRUE")?;
                let want = matches!(e, A::IsTrue(_) | A::IsNotFalse(_));
                let eq = Expr::binary(BinaryOp::Eq, t.expr, Expr::Literal(Value::Bool(want)));
                // `x IS TRUE` is never NULL: NULL counts as not true.
                let hit = Expr::Coalesce(vec![eq, Expr::Literal(Value::Bool(false))]);
                let e2 = if matches!(e, A::IsTrue(_) | A::IsFalse(_)) {
                    hit
                } else {
                    Expr::Not(Box::new(hit))
                };
                Ok(Typed::known(e2, DataType::Bool))
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
                let subject = self.expr(expr, scope)?;
                let mut items = vec![subject];
                for item in list {
                    items.push(self.expr(item, scope)?);
                }
                let (mut items, _) = self.common_type(items, "IN")?;
                let subject = items.remove(0);
                Ok(Typed::known(
                    Expr::In {
                        expr: Box::new(subject.expr),
                        list: items.into_iter().map(|t| t.expr).collect(),
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            A::InSubquery {
                expr,
                subquery,
                negated,
            } => {
                let subject = self.expr(expr, scope)?;
                let (slot, ty) = self.subquery(subquery, scope, SubqueryKind::List)?;
                let subject = self.coerce(subject, &ty)?;
                let sty = subject.ty.unwrap_or(ty);
                if family(&sty) != family(&ty) {
                    return Err(ProxyError::new(
                        "42883",
                        format!(
                            "operator does not exist: {} = {}",
                            sty.pg_name(),
                            ty.pg_name()
                        ),
                    ));
                }
                Ok(Typed::known(
                    Expr::In {
                        expr: Box::new(subject.expr),
                        list: vec![Expr::Slot(slot)],
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            A::Exists { subquery, negated } => {
                let (slot, _) = self.subquery(subquery, scope, SubqueryKind::Exists)?;
                if *negated {
                    return Ok(Typed::known(
                        Expr::Not(Box::new(Expr::Slot(slot))),
                        DataType::Bool,
                    ));
                }
                Ok(Typed::known(Expr::Slot(slot), DataType::Bool).named("exists"))
            }
            A::Subquery(q) => {
                let (slot, ty) = self.subquery(q, scope, SubqueryKind::Scalar)?;
                let name = self
                    .subqueries
                    .last()
                    .and_then(|s| s.plan.columns.first())
                    .map(|c| c.name.clone());
                let mut t = Typed::known(Expr::Slot(slot), ty);
                t.name = name;
                Ok(t)
            }
            A::Like {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            }
            | A::ILike {
                negated,
                any: false,
                expr,
                pattern,
                escape_char: None,
            } => {
                let mut sides = Vec::new();
                for side in [expr, pattern] {
                    let t = self.expr(side, scope)?;
                    let t = self.coerce(t, &DataType::Text)?;
                    if t.ty.is_some_and(|ty| family(&ty) != Family::Text) {
                        let op = if matches!(e, A::Like { .. }) {
                            "~~"
                        } else {
                            "~~*"
                        };
                        return Err(ProxyError::new(
                            "42883",
                            format!(
                                "operator does not exist: {} {op} unknown",
                                t.ty.map(|t| t.pg_name()).unwrap_or("unknown")
                            ),
                        ));
                    }
                    sides.push(t.expr);
                }
                let pattern = sides.pop().unwrap_or(Expr::Literal(Value::Null));
                let subject = sides.pop().unwrap_or(Expr::Literal(Value::Null));
                Ok(Typed::known(
                    Expr::Like {
                        expr: Box::new(subject),
                        pattern: Box::new(pattern),
                        case_insensitive: matches!(e, A::ILike { .. }),
                        negated: *negated,
                    },
                    DataType::Bool,
                ))
            }
            A::Case {
                operand,
                conditions,
                else_result,
                ..
            } => {
                let subject = match operand {
                    Some(o) => Some(self.expr(o, scope)?),
                    None => None,
                };
                let mut whens = Vec::new();
                let mut results = Vec::new();
                let mut subject_ty = subject.as_ref().and_then(|s| s.ty);
                for cw in conditions {
                    let w = self.expr(&cw.condition, scope)?;
                    let w = match &subject_ty {
                        Some(ty) => self.coerce(w, ty)?,
                        None if subject.is_some() => {
                            let w = self.finalize(w)?;
                            subject_ty = w.ty;
                            w
                        }
                        None => {
                            let w = self.coerce(w, &DataType::Bool)?;
                            self.expect_bool(&w, "CASE/WHEN")?;
                            w
                        }
                    };
                    whens.push(w.expr);
                    results.push(self.expr(&cw.result, scope)?);
                }
                let has_else = else_result.is_some();
                if let Some(e) = else_result {
                    results.push(self.expr(e, scope)?);
                }
                let (results, ty) = self.common_type(results, "CASE")?;
                let mut results: Vec<Expr> = results.into_iter().map(|t| t.expr).collect();
                let otherwise = if has_else {
                    results.pop().map(Box::new)
                } else {
                    None
                };
                let operand = match subject {
                    Some(s) => {
                        let s = match &subject_ty {
                            Some(ty) => self.coerce(s, ty)?,
                            None => self.finalize(s)?,
                        };
                        Some(Box::new(s.expr))
                    }
                    None => None,
                };
                Ok(Typed::known(
                    Expr::Case {
                        operand,
                        whens: whens.into_iter().zip(results).collect(),
                        otherwise,
                    },
                    ty,
                )
                .named("case"))
            }
            A::Substring {
                expr,
                substring_from,
                substring_for,
                shorthand,
                ..
            } => {
                let mut args = vec![expr.as_ref()];
                let one = ast::Expr::value(ast::Value::Number("1".into(), false));
                args.push(substring_from.as_deref().unwrap_or(&one));
                if let Some(f) = substring_for {
                    args.push(f);
                }
                let mut t = self.scalar_function("substring", &args, scope)?;
                if *shorthand {
                    t.name = Some("substr".into());
                }
                Ok(t)
            }
            A::Trim {
                expr,
                trim_where,
                trim_what,
                trim_characters: None,
            } => {
                let name = match trim_where {
                    Some(ast::TrimWhereField::Leading) => "ltrim",
                    Some(ast::TrimWhereField::Trailing) => "rtrim",
                    _ => "btrim",
                };
                let mut args = vec![expr.as_ref()];
                if let Some(w) = trim_what {
                    args.push(w);
                }
                let mut t = self.scalar_function(name, &args, scope)?;
                t.name = Some(name.to_string());
                Ok(t)
            }
            A::Position { expr, r#in } => {
                let mut t = self.scalar_function("strpos", &[r#in, expr], scope)?;
                t.name = Some("position".into());
                Ok(t)
            }
            A::Ceil {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            } => self.scalar_function("ceil", &[expr], scope),
            A::Floor {
                expr,
                field: ast::CeilFloorKind::DateTimeField(ast::DateTimeField::NoDateTime),
            } => self.scalar_function("floor", &[expr], scope),
            A::Function(f) => self.function(f, scope),
            A::Collate { expr, collation } => {
                let c = collation.to_string().trim_matches('"').to_lowercase();
                if !matches!(
                    c.as_str(),
                    "c" | "posix" | "default" | "pg_catalog.default" | "ucs_basic"
                ) {
                    return Err(ProxyError::unsupported(format!(
                        "collation {collation} (text compares bytewise, as COLLATE \"C\")"
                    )));
                }
                self.expr(expr, scope)
            }
            other => Err(ProxyError::unsupported(format!("expression {other}"))),
        }
    }

    /// Binds an uncorrelated subquery into a new slot of the current
    /// statement; returns the slot and the type of its (single) column.
    fn subquery(
        &mut self,
        q: &ast::Query,
        scope: &Scope,
        kind: SubqueryKind,
    ) -> Result<(u32, DataType)> {
        self.outer.push(scope.clone());
        let saved_refs = self.correlated_refs.replace(Vec::new());
        let allowed = std::mem::replace(&mut self.correlation_allowed, false);
        let plan = self.bind_subquery(q);
        let refs = std::mem::replace(&mut self.correlated_refs, saved_refs).unwrap_or_default();
        self.correlation_allowed = allowed;
        self.outer.pop();
        let plan = plan?;
        if !refs.is_empty() && !self.correlation_allowed {
            return Err(ProxyError::unsupported(
                "a correlated subquery outside a SELECT's WHERE clause",
            ));
        }
        if kind != SubqueryKind::Exists && plan.columns.len() != 1 {
            return Err(ProxyError::syntax(if plan.columns.len() > 1 {
                "subquery has too many columns"
            } else {
                "subquery must return only one column"
            }));
        }
        let ty = match kind {
            SubqueryKind::Exists => DataType::Bool,
            _ => plan.columns[0].ty,
        };
        let slot = self.new_slot();
        self.subqueries.push(Subquery {
            slot,
            kind,
            plan,
            outer_refs: refs.iter().map(|(s, c, _)| (*s, *c)).collect(),
        });
        Ok((slot, ty))
    }

    /// Unifies the types of `items` as CASE, COALESCE and IN do: one type
    /// family, numbers widened, unknowns taking the common type.
    pub(crate) fn common_type(
        &mut self,
        items: Vec<Typed>,
        context: &str,
    ) -> Result<(Vec<Typed>, DataType)> {
        let mut ty: Option<DataType> = None;
        for t in &items {
            let Some(next) = t.ty else { continue };
            ty = Some(match ty {
                None => next,
                Some(cur) if cur == next => cur,
                Some(cur) if family(&cur) != family(&next) => {
                    return Err(ProxyError::new(
                        "42804",
                        format!(
                            "{context} types {} and {} cannot be matched",
                            cur.pg_name(),
                            next.pg_name()
                        ),
                    ))
                }
                Some(cur) => match family(&cur) {
                    Family::Number => arith_type(&cur, &next),
                    Family::Text => DataType::Text,
                    _ if cur == DataType::Date || next == DataType::Date => DataType::Timestamp,
                    _ => cur,
                },
            });
        }
        let ty = ty.unwrap_or(DataType::Text);
        let mut out = Vec::with_capacity(items.len());
        for t in items {
            let t = self.coerce(t, &ty)?;
            let same = t.ty.is_none_or(|t| {
                t == ty || family(&t) == Family::Text && family(&ty) == Family::Text
            });
            if same {
                out.push(t);
            } else {
                let name = t.name.clone();
                let mut c = Typed::known(Expr::Cast(Box::new(t.expr), ty), ty);
                c.name = name;
                out.push(c);
            }
        }
        Ok((out, ty))
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
                weak_name: false,
                name: None,
            }),
            ast::Value::DollarQuotedString(d) => Ok(Typed {
                expr: Expr::Literal(Value::Text(d.value.clone())),
                ty: None,
                unknown: Some(Unknown::Text(d.value.clone(), span)),
                weak_name: false,
                name: None,
            }),
            ast::Value::Boolean(b) => {
                let mut t = Typed::known(Expr::Literal(Value::Bool(*b)), DataType::Bool);
                t.name = Some("bool".into());
                t.weak_name = true;
                Ok(t)
            }
            ast::Value::Null => Ok(Typed {
                expr: Expr::Literal(Value::Null),
                ty: None,
                unknown: Some(Unknown::Null),
                weak_name: false,
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
                    return Ok(Typed::known(self.param(n - 1, &[ty])?, ty));
                }
                Ok(Typed {
                    expr: Expr::Literal(Value::Null),
                    ty: None,
                    unknown: Some(Unknown::Param(n - 1)),
                    weak_name: false,
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
        match Value::parse(&ty, n) {
            Ok(v) => Ok(Typed::known(Expr::Literal(v), ty)),
            // Beyond the 28 digits fortress's numeric holds: keep the value
            // as a double rather than fail (PostgreSQL would say numeric).
            Err(_) => match Value::parse(&DataType::Float8, n) {
                Ok(v) => Ok(Typed::known(Expr::Literal(v), DataType::Float8)),
                Err(_) => Err(ProxyError::new(
                    "22003",
                    format!("numeric literal {n} is out of range"),
                )),
            },
        }
    }

    /// Binds `l op r` for a comparison, unifying unknown sides.
    fn compare(
        &mut self,
        l: &ast::Expr,
        op: BinaryOp,
        r: &ast::Expr,
        scope: &Scope,
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
        scope: &Scope,
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
            B::PGExp => {
                let mut t = self.scalar_function("power", &[l, r], scope)?;
                t.name = None;
                return Ok(t);
            }
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
                let a = as_text(self.finalize(a)?);
                let b = as_text(self.finalize(b)?);
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

    fn args<'e>(
        &self,
        f: &'e ast::Function,
        name: &str,
    ) -> Result<(Vec<&'e ast::Expr>, bool, bool)> {
        let mut star = false;
        let mut distinct = false;
        let args = match &f.args {
            ast::FunctionArguments::None => Vec::new(),
            ast::FunctionArguments::List(l) => {
                distinct = matches!(
                    l.duplicate_treatment,
                    Some(ast::DuplicateTreatment::Distinct)
                );
                if !l.clauses.is_empty() {
                    return Err(ProxyError::unsupported(format!("clauses inside {name}()")));
                }
                let mut v = Vec::new();
                for a in &l.args {
                    match a {
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(e)) => v.push(e),
                        ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Wildcard) => star = true,
                        _ => {
                            return Err(ProxyError::unsupported(format!(
                                "argument form in {name}()"
                            )))
                        }
                    }
                }
                v
            }
            ast::FunctionArguments::Subquery(_) => {
                return Err(ProxyError::unsupported("subquery argument"))
            }
        };
        if f.over.is_some() || !f.within_group.is_empty() {
            return Err(ProxyError::unsupported(format!(
                "OVER / WITHIN GROUP on {name}()"
            )));
        }
        if f.filter.is_some() && !AGGREGATES.contains(&name) {
            return Err(ProxyError::syntax(format!(
                "FILTER specified, but {name} is not an aggregate function"
            )));
        }
        Ok((args, star, distinct))
    }

    fn function(&mut self, f: &ast::Function, scope: &Scope) -> Result<Typed> {
        let name = f
            .name
            .0
            .last()
            .and_then(|p| p.as_ident())
            .map(ident_name)
            .unwrap_or_default();
        let (args, star, distinct) = self.args(f, &name)?;
        if AGGREGATES.contains(&name.as_str()) {
            return self
                .aggregate(&name, &args, star, distinct, f.filter.as_deref(), scope)
                .map_err(|e| e.at(f.name.span()));
        }
        if star || distinct {
            return Err(ProxyError::syntax(format!(
                "{name}(*) or DISTINCT specified, but {name} is not an aggregate function"
            )));
        }
        let text = |v: String| Typed::known(Expr::Literal(Value::Text(v)), DataType::Text);
        let ident = |v: String| Typed::known(Expr::Literal(Value::Text(v)), DataType::Name);
        let t = match (name.as_str(), args.as_slice()) {
            ("version", []) => text(format!(
                "PostgreSQL {SERVER_VERSION} on {}-linux, compiled by rustc, 64-bit",
                std::env::consts::ARCH
            )),
            ("current_database", []) => ident(self.session.database.clone()),
            ("current_schema", []) => ident("public".into()),
            ("current_user" | "session_user", []) => ident(self.session.user.clone()),
            ("current_setting", [arg]) => {
                let a = self.expr(arg, &Scope::default())?;
                let a = self.coerce(a, &DataType::Text)?;
                let key = match constant(&a.expr)? {
                    Value::Text(s) => s,
                    _ => return Err(ProxyError::new("22004", "setting name must not be null")),
                };
                self.volatile.set(true);
                let v = self.session.get(&key).ok_or_else(|| {
                    ProxyError::new(
                        "42704",
                        format!("unrecognized configuration parameter \"{key}\""),
                    )
                })?;
                text(v)
            }
            ("now" | "current_timestamp" | "transaction_timestamp", []) => {
                let e = if self.defer_now {
                    Expr::Func(Func::Now, Vec::new())
                } else {
                    self.now_expr()
                };
                Typed::known(e, DataType::Timestamptz)
            }
            ("statement_timestamp" | "clock_timestamp", []) => {
                Typed::known(Expr::Func(Func::Now, Vec::new()), DataType::Timestamptz)
            }
            ("localtimestamp", []) => Typed::known(
                Expr::Literal(Value::Timestamp(self.now_micros())),
                DataType::Timestamp,
            ),
            ("current_date", []) => {
                let day = self.now_micros().div_euclid(86_400_000_000) as i32;
                Typed::known(Expr::Literal(Value::Date(day)), DataType::Date)
            }
            ("coalesce", _) if !args.is_empty() => {
                let mut items = Vec::new();
                for a in &args {
                    items.push(self.expr(a, scope)?);
                }
                let (items, ty) = self.common_type(items, "COALESCE")?;
                Typed::known(
                    Expr::Coalesce(items.into_iter().map(|t| t.expr).collect()),
                    ty,
                )
            }
            ("nullif", [a, b]) => {
                let x = self.expr(a, scope)?;
                let y = self.expr(b, scope)?;
                let (x, y) = self.unify(x, y)?;
                let ty = x.ty.unwrap_or(DataType::Text);
                if y.ty.is_some_and(|t| family(&t) != family(&ty)) {
                    return Err(no_function("nullif", &[&x, &y]));
                }
                Typed::known(Expr::NullIf(Box::new(x.expr), Box::new(y.expr)), ty)
            }
            _ => return self.scalar_function(&name, &args, scope),
        };
        Ok(t.named(&name))
    }

    /// Scalar functions evaluated by [`Func`]: checks the argument types and
    /// picks the result type as PostgreSQL's overloads do.
    fn scalar_function(&mut self, name: &str, args: &[&ast::Expr], scope: &Scope) -> Result<Typed> {
        let mut bound = Vec::new();
        for a in args {
            bound.push(self.expr(a, scope)?);
        }
        use Family::{Number, Text};
        // (function, argument families, result type; None = first argument's)
        let sig: Option<(Func, Vec<Family>, Option<DataType>)> = match (name, bound.len()) {
            ("lower", 1) => Some((Func::Lower, vec![Text], Some(DataType::Text))),
            ("upper", 1) => Some((Func::Upper, vec![Text], Some(DataType::Text))),
            ("length" | "char_length" | "character_length", 1) => {
                Some((Func::Length, vec![Text], Some(DataType::Int4)))
            }
            ("substring" | "substr", 2 | 3) => Some((
                Func::Substring,
                [Text, Number, Number][..bound.len()].to_vec(),
                Some(DataType::Text),
            )),
            ("btrim" | "trim", 1 | 2) => {
                Some((Func::Trim, vec![Text; bound.len()], Some(DataType::Text)))
            }
            ("ltrim", 1 | 2) => Some((Func::LTrim, vec![Text; bound.len()], Some(DataType::Text))),
            ("rtrim", 1 | 2) => Some((Func::RTrim, vec![Text; bound.len()], Some(DataType::Text))),
            ("replace", 3) => Some((Func::Replace, vec![Text; 3], Some(DataType::Text))),
            ("strpos", 2) => Some((Func::Position, vec![Text; 2], Some(DataType::Int4))),
            ("left", 2) => Some((Func::Left, vec![Text, Number], Some(DataType::Text))),
            ("right", 2) => Some((Func::Right, vec![Text, Number], Some(DataType::Text))),
            ("repeat", 2) => Some((Func::Repeat, vec![Text, Number], Some(DataType::Text))),
            ("abs", 1) => Some((Func::Abs, vec![Number], None)),
            ("round", 1) | ("ceil" | "ceiling" | "floor", 1) => {
                let f = match name {
                    "round" => Func::Round,
                    "floor" => Func::Floor,
                    _ => Func::Ceil,
                };
                Some((f, vec![Number], None))
            }
            ("round", 2) => Some((
                Func::Round,
                vec![Number, Number],
                Some(UNCONSTRAINED_NUMERIC),
            )),
            ("power" | "pow", 2) => {
                Some((Func::Power, vec![Number, Number], Some(DataType::Float8)))
            }
            _ => None,
        };
        let concat = name == "concat" && !bound.is_empty();
        let Some((func, families, result)) =
            sig.or_else(|| concat.then(|| (Func::Concat, Vec::new(), Some(DataType::Text))))
        else {
            let refs: Vec<&Typed> = bound.iter().collect();
            return Err(no_function(name, &refs));
        };
        let mut exprs = Vec::new();
        let mut first_ty = None;
        for (i, t) in bound.into_iter().enumerate() {
            let want = families.get(i).copied();
            let target = match want {
                Some(Number) if i > 0 => DataType::Int4,
                Some(Number) => t.ty.unwrap_or(UNCONSTRAINED_NUMERIC),
                _ => DataType::Text,
            };
            let t = if want.is_some() || t.unknown.is_some() {
                self.coerce(t, &target)?
            } else {
                t
            };
            let t = as_text(t);
            let ty = t.ty.unwrap_or(target);
            let bytes_ok = func == Func::Length && ty == DataType::Bytea;
            if let Some(w) = want {
                if family(&ty) != w && !bytes_ok {
                    return Err(no_function(name, &[&t]));
                }
            }
            let mut e = t.expr;
            // round/ceil/floor of an integer resolve to the float8 overload,
            // round(x, n) to the numeric one; extra integer arguments are int4.
            if i == 0 && matches!(func, Func::Round | Func::Ceil | Func::Floor) {
                let target = if result.is_some() {
                    UNCONSTRAINED_NUMERIC
                } else if matches!(ty, DataType::Int2 | DataType::Int4 | DataType::Int8) {
                    DataType::Float8
                } else {
                    ty
                };
                if target != ty {
                    e = Expr::Cast(Box::new(e), target);
                }
                first_ty = Some(target);
            } else if func == Func::Power {
                if ty != DataType::Float8 {
                    e = Expr::Cast(Box::new(e), DataType::Float8);
                }
            } else if i > 0 && w_is_number(want) && ty != DataType::Int4 {
                e = Expr::Cast(Box::new(e), DataType::Int4);
            }
            if first_ty.is_none() {
                first_ty = Some(ty);
            }
            exprs.push(e);
        }
        let ty = result.or(first_ty).unwrap_or(DataType::Text);
        let ty = if matches!(ty, DataType::Numeric { .. }) {
            UNCONSTRAINED_NUMERIC
        } else {
            ty
        };
        Ok(Typed::known(Expr::Func(func, exprs), ty).named(name))
    }

    /// An aggregate call: its argument is bound over the query's source row,
    /// and the call becomes a slot the grouping step fills.
    fn aggregate(
        &mut self,
        name: &str,
        args: &[&ast::Expr],
        star: bool,
        distinct: bool,
        filter: Option<&ast::Expr>,
        scope: &Scope,
    ) -> Result<Typed> {
        if let Some(context) = self.agg_forbidden {
            return Err(ProxyError::new(
                "42803",
                format!("aggregate functions are not allowed in {context}"),
            ));
        }
        let func = match name {
            "count" => AggFunc::Count,
            "sum" => AggFunc::Sum,
            "avg" => AggFunc::Avg,
            "min" => AggFunc::Min,
            _ => AggFunc::Max,
        };
        let (arg, arg_ty) = match (star, args) {
            (true, []) if func == AggFunc::Count => (None, None),
            (false, [a]) => {
                self.agg_forbidden = Some("aggregate function calls");
                let t = self.expr(a, scope);
                self.agg_forbidden = None;
                let t = self.finalize(t.map_err(|e| {
                    if e.sql_state() == "42803" {
                        ProxyError::new("42803", "aggregate function calls cannot be nested")
                    } else {
                        e
                    }
                })?)?;
                (Some(t.expr), t.ty)
            }
            _ => {
                return Err(ProxyError::new(
                    "42883",
                    format!("function {name}() with these arguments does not exist"),
                ))
            }
        };
        let bad = |ty: Option<DataType>| {
            ProxyError::new(
                "42883",
                format!(
                    "function {name}({}) does not exist",
                    ty.map(|t| t.pg_name()).unwrap_or("unknown")
                ),
            )
        };
        let ty = match (func, arg_ty) {
            (AggFunc::Count, _) => DataType::Int8,
            (AggFunc::Sum, Some(DataType::Int2 | DataType::Int4)) => DataType::Int8,
            (AggFunc::Sum | AggFunc::Avg, Some(DataType::Int8 | DataType::Numeric { .. })) => {
                UNCONSTRAINED_NUMERIC
            }
            (AggFunc::Avg, Some(DataType::Int2 | DataType::Int4)) => UNCONSTRAINED_NUMERIC,
            (AggFunc::Sum | AggFunc::Avg, Some(DataType::Float8)) => DataType::Float8,
            (AggFunc::Sum | AggFunc::Avg, other) => return Err(bad(other)),
            (AggFunc::Min | AggFunc::Max, Some(DataType::Bool)) => return Err(bad(arg_ty)),
            // There is no max(varchar): PostgreSQL uses max(text).
            (AggFunc::Min | AggFunc::Max, Some(DataType::Varchar(_))) => DataType::Text,
            (AggFunc::Min | AggFunc::Max, Some(t)) => t,
            (AggFunc::Min | AggFunc::Max, None) => return Err(bad(None)),
        };
        let filter = match filter {
            Some(f) => {
                self.agg_forbidden = Some("FILTER");
                let p = self.predicate(Some(f), scope, "FILTER");
                self.agg_forbidden = None;
                p?
            }
            None => None,
        };
        let slot = self.new_slot();
        self.aggs.push((
            slot,
            AggCall {
                func,
                arg,
                distinct,
                arg_ty,
                filter,
            },
        ));
        Ok(Typed::known(Expr::Slot(slot), ty).named(name))
    }
}

/// A char(n) value used as text loses its trailing blanks, as PostgreSQL's
/// bpchar-to-text conversion does.
fn as_text(t: Typed) -> Typed {
    if !matches!(t.ty, Some(DataType::Char(_))) {
        return t;
    }
    let name = t.name.clone();
    let mut r = Typed::known(Expr::Func(Func::RTrim, vec![t.expr]), DataType::Text);
    r.name = name;
    r
}

fn w_is_number(f: Option<Family>) -> bool {
    f == Some(Family::Number)
}

pub fn ty_name(ty: &DataType) -> String {
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
        DataType::Float4 => "float4",
        DataType::Char(_) => "bpchar",
        DataType::Bytea => "bytea",
        DataType::Timestamptz => "timestamptz",
        DataType::Uuid => "uuid",
        DataType::Name => "name",
    }
    .to_string()
}
