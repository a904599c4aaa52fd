//! Typed scalar expressions over a row, evaluated with SQL semantics
//! (three-valued logic, PostgreSQL's arithmetic errors). The proxy binds SQL
//! into these; shards evaluate them for filters and updates.

use std::cmp::Ordering;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::func::{numeric_div, Func};
use crate::schema::DataType;
use crate::value::{to_decimal, Row, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BinaryOp {
    Eq,
    NotEq,
    Lt,
    LtEq,
    Gt,
    GtEq,
    And,
    Or,
    Plus,
    Minus,
    Multiply,
    Divide,
    Modulo,
    Concat,
}

impl BinaryOp {
    pub fn symbol(&self) -> &'static str {
        match self {
            BinaryOp::Eq => "=",
            BinaryOp::NotEq => "<>",
            BinaryOp::Lt => "<",
            BinaryOp::LtEq => "<=",
            BinaryOp::Gt => ">",
            BinaryOp::GtEq => ">=",
            BinaryOp::And => "AND",
            BinaryOp::Or => "OR",
            BinaryOp::Plus => "+",
            BinaryOp::Minus => "-",
            BinaryOp::Multiply => "*",
            BinaryOp::Divide => "/",
            BinaryOp::Modulo => "%",
            BinaryOp::Concat => "||",
        }
    }
}

/// A scalar expression. Columns are positions in the row it is evaluated on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Expr {
    Column(usize),
    Literal(Value),
    Not(Box<Expr>),
    Negate(Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    IsNull {
        expr: Box<Expr>,
        negated: bool,
    },
    Cast(Box<Expr>, DataType),
    /// `expr [NOT] IN (list)` with SQL's NULL rules.
    In {
        expr: Box<Expr>,
        list: Vec<Expr>,
        negated: bool,
    },
    /// `expr [NOT] LIKE / ILIKE pattern` (escape character `\`).
    Like {
        expr: Box<Expr>,
        pattern: Box<Expr>,
        case_insensitive: bool,
        negated: bool,
    },
    /// `CASE [operand] WHEN .. THEN .. [ELSE ..] END`; only the chosen branch
    /// is evaluated.
    Case {
        operand: Option<Box<Expr>>,
        whens: Vec<(Expr, Expr)>,
        otherwise: Option<Box<Expr>>,
    },
    /// First non-NULL argument, evaluated lazily.
    Coalesce(Vec<Expr>),
    /// NULL if both sides are equal, else the first.
    NullIf(Box<Expr>, Box<Expr>),
    Func(Func, Vec<Expr>),
    /// A value the proxy fills in before evaluation (an aggregate's result or
    /// a subquery's); evaluating an unfilled slot is an error.
    Slot(u32),
    /// `expr [NOT] IN (list)` over a long list of integer or text constants,
    /// sorted and deduplicated without its NULLs (`null`: it held one), so
    /// that a row costs a binary search rather than a pass over the list.
    /// Made for evaluation by [`Expr::with_sorted_lists`]; never bound.
    InSorted {
        expr: Box<Expr>,
        list: Vec<Value>,
        null: bool,
        negated: bool,
    },
}

/// Whether `v` (not NULL) equals one of `items`, stopping at the first that
/// does, and whether an item compared before it was NULL.
fn find_in(
    v: &Value,
    items: impl IntoIterator<Item = Result<Value, EvalError>>,
) -> Result<(bool, bool), EvalError> {
    let mut saw_null = false;
    for item in items {
        match binary(BinaryOp::Eq, v.clone(), item?)? {
            Value::Bool(true) => return Ok((true, saw_null)),
            Value::Null => saw_null = true,
            _ => {}
        }
    }
    Ok((false, saw_null))
}

/// `[NOT] IN` by SQL's rules: a match decides it, else a NULL item makes
/// it NULL.
fn in_outcome(found: bool, saw_null: bool, negated: bool) -> Value {
    if found {
        Value::Bool(!negated)
    } else if saw_null {
        Value::Null
    } else {
        Value::Bool(negated)
    }
}

/// IN lists at least this long are sorted for evaluation over many rows.
const SORTED_IN_MIN: usize = 16;

/// Integers compare with integers and text with text without error, in one
/// total order: a list of one of them can be binary searched for such a value.
fn same_kind(a: &Value, b: &Value) -> bool {
    use Value::*;
    matches!(
        (a, b),
        (Int2(_) | Int4(_) | Int8(_), Int2(_) | Int4(_) | Int8(_)) | (Text(_), Text(_))
    )
}

/// The constants of an IN list that [`Expr::InSorted`] can hold: literals,
/// NULL or all of one kind, at least one not NULL.
fn sortable(list: &[Expr]) -> bool {
    let mut first: Option<&Value> = None;
    list.iter().all(|e| match e {
        Expr::Literal(Value::Null) => true,
        Expr::Literal(v) => same_kind(first.get_or_insert(v), v),
        _ => false,
    }) && first.is_some()
}

impl Expr {
    pub fn binary(op: BinaryOp, l: Expr, r: Expr) -> Expr {
        Expr::Binary(op, Box::new(l), Box::new(r))
    }

    /// Evaluates against `row`.
    pub fn eval(&self, row: &Row) -> Result<Value, EvalError> {
        self.eval_at(row, 0)
    }

    /// [`Expr::eval`] of a node `depth` levels below the root. Every
    /// [`crate::stack::CHECK_EVERY`] levels the stack is checked (and grown
    /// if it runs low): a check per node cost a fifth of a small filter's
    /// evaluation.
    fn eval_at(&self, row: &Row, depth: u32) -> Result<Value, EvalError> {
        match self {
            Expr::Column(i) => Ok(row.get(*i).cloned().unwrap_or(Value::Null)),
            Expr::Literal(v) => Ok(v.clone()),
            _ if (depth + 1).is_multiple_of(crate::stack::CHECK_EVERY) => {
                crate::stack::deep(|| self.eval_node(row, depth + 1))
            }
            _ => self.eval_node(row, depth + 1),
        }
    }

    fn eval_node(&self, row: &Row, depth: u32) -> Result<Value, EvalError> {
        match self {
            Expr::Column(_) | Expr::Literal(_) => self.eval_at(row, depth),
            Expr::Not(e) => match e.eval_at(row, depth)? {
                Value::Null => Ok(Value::Null),
                Value::Bool(b) => Ok(Value::Bool(!b)),
                v => Err(not_bool("NOT", &v)),
            },
            Expr::Negate(e) => negate(e.eval_at(row, depth)?),
            Expr::IsNull { expr, negated } => {
                Ok(Value::Bool(expr.eval_at(row, depth)?.is_null() != *negated))
            }
            Expr::Cast(e, ty) => e.eval_at(row, depth)?.cast(ty),
            Expr::Binary(BinaryOp::And, l, r) => {
                let a = truth(l.eval_at(row, depth)?, "AND")?;
                if a == Some(false) {
                    return Ok(Value::Bool(false));
                }
                let b = truth(r.eval_at(row, depth)?, "AND")?;
                Ok(match (a, b) {
                    (_, Some(false)) => Value::Bool(false),
                    (Some(true), Some(true)) => Value::Bool(true),
                    _ => Value::Null,
                })
            }
            Expr::Binary(BinaryOp::Or, l, r) => {
                let a = truth(l.eval_at(row, depth)?, "OR")?;
                if a == Some(true) {
                    return Ok(Value::Bool(true));
                }
                let b = truth(r.eval_at(row, depth)?, "OR")?;
                Ok(match (a, b) {
                    (_, Some(true)) => Value::Bool(true),
                    (Some(false), Some(false)) => Value::Bool(false),
                    _ => Value::Null,
                })
            }
            Expr::Binary(op, l, r) => binary(*op, l.eval_at(row, depth)?, r.eval_at(row, depth)?),
            Expr::In {
                expr,
                list,
                negated,
            } => {
                let v = expr.eval_at(row, depth)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let (found, saw_null) =
                    find_in(&v, list.iter().map(|item| item.eval_at(row, depth)))?;
                Ok(in_outcome(found, saw_null, *negated))
            }
            Expr::Like {
                expr,
                pattern,
                case_insensitive,
                negated,
            } => {
                let (v, p) = (expr.eval_at(row, depth)?, pattern.eval_at(row, depth)?);
                let (Some(v), Some(p)) = (v.to_text(), p.to_text()) else {
                    return Ok(Value::Null);
                };
                let m = if *case_insensitive {
                    like(&v.to_lowercase(), &p.to_lowercase())?
                } else {
                    like(&v, &p)?
                };
                Ok(Value::Bool(m != *negated))
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                let subject = match operand {
                    Some(o) => Some(o.eval_at(row, depth)?),
                    None => None,
                };
                for (when, then) in whens {
                    let hit = match &subject {
                        Some(s) => binary(BinaryOp::Eq, s.clone(), when.eval_at(row, depth)?)?,
                        None => when.eval_at(row, depth)?,
                    };
                    if truth(hit, "CASE")? == Some(true) {
                        return then.eval_at(row, depth);
                    }
                }
                match otherwise {
                    Some(e) => e.eval_at(row, depth),
                    None => Ok(Value::Null),
                }
            }
            Expr::Coalesce(args) => {
                for a in args {
                    let v = a.eval_at(row, depth)?;
                    if !v.is_null() {
                        return Ok(v);
                    }
                }
                Ok(Value::Null)
            }
            Expr::NullIf(a, b) => {
                let x = a.eval_at(row, depth)?;
                let y = b.eval_at(row, depth)?;
                match binary(BinaryOp::Eq, x.clone(), y)? {
                    Value::Bool(true) => Ok(Value::Null),
                    _ => Ok(x),
                }
            }
            Expr::Func(f, args) => {
                let vals = args
                    .iter()
                    .map(|a| a.eval_at(row, depth))
                    .collect::<Result<_, _>>()?;
                f.eval(vals)
            }
            Expr::Slot(n) => Err(EvalError::Invalid(
                "XX000",
                format!("unfilled expression slot {n}"),
            )),
            Expr::InSorted {
                expr,
                list,
                null,
                negated,
            } => {
                let v = expr.eval_at(row, depth)?;
                if v.is_null() {
                    return Ok(Value::Null);
                }
                let found = match list.first() {
                    Some(first) if same_kind(first, &v) => list
                        .binary_search_by(|item| {
                            item.sql_cmp(&v).ok().flatten().unwrap_or(Ordering::Less)
                        })
                        .is_ok(),
                    // Another type: compared item by item, as IN does.
                    _ => find_in(&v, list.iter().cloned().map(Ok))?.0,
                };
                Ok(in_outcome(found, *null, *negated))
            }
        }
    }

    /// This expression with each long IN list of integer or text constants
    /// made an [`Expr::InSorted`]: the same results, faster over many rows.
    pub fn with_sorted_lists(self) -> Expr {
        self.rewrite(&mut |e| match e {
            Expr::In {
                expr,
                list,
                negated,
            } if list.len() >= SORTED_IN_MIN && sortable(&list) => {
                let null = list.iter().any(|e| matches!(e, Expr::Literal(Value::Null)));
                let mut values: Vec<Value> = list
                    .into_iter()
                    .filter_map(|e| match e {
                        Expr::Literal(v) if !v.is_null() => Some(v),
                        _ => None,
                    })
                    .collect();
                let order = |a: &Value, b: &Value| a.sql_cmp(b).ok().flatten();
                values.sort_by(|a, b| order(a, b).unwrap_or(Ordering::Equal));
                values.dedup_by(|a, b| order(a, b) == Some(Ordering::Equal));
                Expr::InSorted {
                    expr,
                    list: values,
                    null,
                    negated,
                }
            }
            other => other,
        })
    }

    /// True if [`Expr::with_sorted_lists`] would change something.
    pub fn has_long_lists(&self) -> bool {
        let mut long = false;
        self.visit(&mut |e| {
            long |=
                matches!(e, Expr::In { list, .. } if list.len() >= SORTED_IN_MIN && sortable(list));
        });
        long
    }

    /// Rewrites every node bottom-up with `f` (which sees children already
    /// rewritten). Used to fill slots and to re-base column references.
    pub fn rewrite(self, f: &mut impl FnMut(Expr) -> Expr) -> Expr {
        let node = self
            .try_map_children(&mut |c| Ok::<_, std::convert::Infallible>(c.rewrite(f)))
            .unwrap_or_else(|never| match never {});
        f(node)
    }

    /// Replaces each direct child with `f(child)`, keeping the node.
    pub fn try_map_children<E>(
        self,
        f: &mut impl FnMut(Expr) -> Result<Expr, E>,
    ) -> Result<Expr, E> {
        Ok(match self {
            Expr::Not(e) => Expr::Not(bx(*e, f)?),
            Expr::Negate(e) => Expr::Negate(bx(*e, f)?),
            Expr::Binary(op, x, y) => Expr::Binary(op, bx(*x, f)?, bx(*y, f)?),
            Expr::IsNull { expr, negated } => Expr::IsNull {
                expr: bx(*expr, f)?,
                negated,
            },
            Expr::Cast(e, ty) => Expr::Cast(bx(*e, f)?, ty),
            Expr::In {
                expr,
                list,
                negated,
            } => Expr::In {
                expr: bx(*expr, f)?,
                list: list.into_iter().map(&mut *f).collect::<Result<_, _>>()?,
                negated,
            },
            Expr::Like {
                expr,
                pattern,
                case_insensitive,
                negated,
            } => Expr::Like {
                expr: bx(*expr, f)?,
                pattern: bx(*pattern, f)?,
                case_insensitive,
                negated,
            },
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => Expr::Case {
                operand: operand.map(|o| bx(*o, f)).transpose()?,
                whens: whens
                    .into_iter()
                    .map(|(w, t)| Ok((f(w)?, f(t)?)))
                    .collect::<Result<_, E>>()?,
                otherwise: otherwise.map(|o| bx(*o, f)).transpose()?,
            },
            Expr::Coalesce(args) => {
                Expr::Coalesce(args.into_iter().map(&mut *f).collect::<Result<_, _>>()?)
            }
            Expr::NullIf(x, y) => Expr::NullIf(bx(*x, f)?, bx(*y, f)?),
            Expr::Func(func, args) => Expr::Func(
                func,
                args.into_iter().map(&mut *f).collect::<Result<_, _>>()?,
            ),
            Expr::InSorted {
                expr,
                list,
                null,
                negated,
            } => Expr::InSorted {
                expr: bx(*expr, f)?,
                list,
                null,
                negated,
            },
            leaf @ (Expr::Column(_) | Expr::Literal(_) | Expr::Slot(_)) => leaf,
        })
    }

    /// Calls `f` on every node, parents before children.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Negate(e) | Expr::Cast(e, _) | Expr::InSorted { expr: e, .. } => {
                e.visit(f)
            }
            Expr::IsNull { expr, .. } => expr.visit(f),
            Expr::Binary(_, a, b) | Expr::NullIf(a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::In { expr, list, .. } => {
                expr.visit(f);
                list.iter().for_each(|e| e.visit(f));
            }
            Expr::Like { expr, pattern, .. } => {
                expr.visit(f);
                pattern.visit(f);
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.visit(f);
                }
                for (w, t) in whens {
                    w.visit(f);
                    t.visit(f);
                }
                if let Some(o) = otherwise {
                    o.visit(f);
                }
            }
            Expr::Coalesce(args) | Expr::Func(_, args) => args.iter().for_each(|e| e.visit(f)),
            Expr::Column(_) | Expr::Literal(_) | Expr::Slot(_) => {}
        }
    }

    /// Calls `f` on every node, parents before children, in place: filling
    /// slots this way rebuilds no boxes.
    pub fn visit_mut(&mut self, f: &mut impl FnMut(&mut Expr)) {
        f(self);
        match self {
            Expr::Not(e) | Expr::Negate(e) | Expr::Cast(e, _) | Expr::InSorted { expr: e, .. } => {
                e.visit_mut(f)
            }
            Expr::IsNull { expr, .. } => expr.visit_mut(f),
            Expr::Binary(_, a, b) | Expr::NullIf(a, b) => {
                a.visit_mut(f);
                b.visit_mut(f);
            }
            Expr::In { expr, list, .. } => {
                expr.visit_mut(f);
                list.iter_mut().for_each(|e| e.visit_mut(f));
            }
            Expr::Like { expr, pattern, .. } => {
                expr.visit_mut(f);
                pattern.visit_mut(f);
            }
            Expr::Case {
                operand,
                whens,
                otherwise,
            } => {
                if let Some(o) = operand {
                    o.visit_mut(f);
                }
                for (w, t) in whens {
                    w.visit_mut(f);
                    t.visit_mut(f);
                }
                if let Some(o) = otherwise {
                    o.visit_mut(f);
                }
            }
            Expr::Coalesce(args) | Expr::Func(_, args) => {
                args.iter_mut().for_each(|e| e.visit_mut(f))
            }
            Expr::Column(_) | Expr::Literal(_) | Expr::Slot(_) => {}
        }
    }

    /// Evaluates a predicate: only TRUE passes (NULL and FALSE filter out).
    pub fn matches(&self, row: &Row) -> Result<bool, EvalError> {
        Ok(truth(self.eval(row)?, "WHERE")? == Some(true))
    }
}

fn bx<E>(e: Expr, f: &mut impl FnMut(Expr) -> Result<Expr, E>) -> Result<Box<Expr>, E> {
    f(e).map(Box::new)
}

/// SQL LIKE: `%` matches any run, `_` one character, `\\` escapes.
fn like(s: &str, pattern: &str) -> Result<bool, EvalError> {
    #[derive(PartialEq)]
    enum P {
        Any,
        One,
        Char(char),
    }
    let mut pat = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        pat.push(match c {
            '%' => P::Any,
            '_' => P::One,
            '\\' => P::Char(chars.next().ok_or_else(|| {
                EvalError::Invalid(
                    "22025",
                    "LIKE pattern must not end with escape character".into(),
                )
            })?),
            c => P::Char(c),
        });
    }
    let text: Vec<char> = s.chars().collect();
    // Greedy match with backtracking to the last `%`: linear in practice.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < text.len() {
        match pat.get(pi) {
            Some(P::Any) => {
                star = Some((pi, ti));
                pi += 1;
            }
            Some(P::One) => {
                ti += 1;
                pi += 1;
            }
            Some(P::Char(c)) if *c == text[ti] => {
                ti += 1;
                pi += 1;
            }
            _ => match star {
                Some((sp, st)) => {
                    pi = sp + 1;
                    ti = st + 1;
                    star = Some((sp, st + 1));
                }
                None => return Ok(false),
            },
        }
    }
    Ok(pat[pi..].iter().all(|p| *p == P::Any))
}

fn not_bool(context: &str, v: &Value) -> EvalError {
    EvalError::NotBoolean {
        context: context.to_string(),
        ty: v
            .data_type()
            .map(|t| t.pg_name())
            .unwrap_or("unknown")
            .to_string(),
    }
}

fn truth(v: Value, context: &str) -> Result<Option<bool>, EvalError> {
    match v {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(b)),
        v => Err(not_bool(context, &v)),
    }
}

fn negate(v: Value) -> Result<Value, EvalError> {
    let range = |t: &str| EvalError::OutOfRange(format!("{t} out of range"));
    Ok(match v {
        Value::Null => Value::Null,
        Value::Int2(n) => Value::Int2(n.checked_neg().ok_or_else(|| range("smallint"))?),
        Value::Int4(n) => Value::Int4(n.checked_neg().ok_or_else(|| range("integer"))?),
        Value::Int8(n) => Value::Int8(n.checked_neg().ok_or_else(|| range("bigint"))?),
        Value::Float8(f) => Value::Float8(-f),
        Value::Float4(f) => Value::Float4(-f),
        Value::Numeric(d) => Value::Numeric(-d),
        v => {
            return Err(EvalError::NoOperator(format!(
                "- {}",
                v.data_type().map(|t| t.pg_name()).unwrap_or("unknown")
            )))
        }
    })
}

fn int_rank(v: &Value) -> Option<u8> {
    match v {
        Value::Int2(_) => Some(2),
        Value::Int4(_) => Some(4),
        Value::Int8(_) => Some(8),
        _ => None,
    }
}

/// Applies a non-logical binary operator with PostgreSQL's typing rules.
pub fn binary(op: BinaryOp, a: Value, b: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    if a.is_null() || b.is_null() {
        return Ok(Value::Null);
    }
    let ord = |o: Ordering| -> bool {
        match op {
            Eq => o == Ordering::Equal,
            NotEq => o != Ordering::Equal,
            Lt => o == Ordering::Less,
            LtEq => o != Ordering::Greater,
            Gt => o == Ordering::Greater,
            _ => o != Ordering::Less,
        }
    };
    match op {
        Eq | NotEq | Lt | LtEq | Gt | GtEq => {
            let o = a.sql_cmp(&b).map_err(|_| no_operator(op, &a, &b))?;
            Ok(o.map(|o| Value::Bool(ord(o))).unwrap_or(Value::Null))
        }
        Concat => Ok(Value::Text(format!(
            "{}{}",
            a.to_text().unwrap_or_default(),
            b.to_text().unwrap_or_default()
        ))),
        Plus | Minus | Multiply | Divide | Modulo => arith(op, a, b),
        And | Or => Err(EvalError::NoOperator(format!(
            "{} outside a predicate",
            op.symbol()
        ))),
    }
}

fn no_operator(op: BinaryOp, a: &Value, b: &Value) -> EvalError {
    let name = |v: &Value| v.data_type().map(|t| t.pg_name()).unwrap_or("unknown");
    EvalError::NoOperator(format!("{} {} {}", name(a), op.symbol(), name(b)))
}

fn arith(op: BinaryOp, a: Value, b: Value) -> Result<Value, EvalError> {
    use BinaryOp::*;
    if let (Some(ra), Some(rb)) = (int_rank(&a), int_rank(&b)) {
        let (x, y) = (a.as_i64().unwrap_or(0), b.as_i64().unwrap_or(0));
        let rank = ra.max(rb);
        let name = match rank {
            2 => "smallint",
            4 => "integer",
            _ => "bigint",
        };
        let r = match op {
            Plus => x.checked_add(y),
            Minus => x.checked_sub(y),
            Multiply => x.checked_mul(y),
            Divide => {
                if y == 0 {
                    return Err(EvalError::DivisionByZero);
                }
                x.checked_div(y)
            }
            _ => {
                if y == 0 {
                    return Err(EvalError::DivisionByZero);
                }
                Some(x.checked_rem(y).unwrap_or(0))
            }
        };
        let r = r.ok_or_else(|| EvalError::OutOfRange(format!("{name} out of range")))?;
        let out = match rank {
            2 => i16::try_from(r).ok().map(Value::Int2),
            4 => i32::try_from(r).ok().map(Value::Int4),
            _ => Some(Value::Int8(r)),
        };
        return out.ok_or_else(|| EvalError::OutOfRange(format!("{name} out of range")));
    }
    let is_float = |v: &Value| matches!(v, Value::Float8(_) | Value::Float4(_));
    if is_float(&a) || is_float(&b) {
        let both_real = matches!((&a, &b), (Value::Float4(_), Value::Float4(_)));
        let x = a
            .clone()
            .cast(&DataType::Float8)
            .map_err(|_| no_operator(op, &a, &b))?;
        let y = b
            .clone()
            .cast(&DataType::Float8)
            .map_err(|_| no_operator(op, &a, &b))?;
        let (Value::Float8(x), Value::Float8(y)) = (x, y) else {
            return Err(no_operator(op, &a, &b));
        };
        let r = match op {
            Plus => x + y,
            Minus => x - y,
            Multiply => x * y,
            Divide => {
                if y == 0.0 {
                    return Err(EvalError::DivisionByZero);
                }
                x / y
            }
            _ => return Err(no_operator(op, &a, &b)),
        };
        let overflow = || EvalError::OutOfRange("value out of range: overflow".to_string());
        if r.is_infinite() && x.is_finite() && y.is_finite() {
            return Err(overflow());
        }
        if both_real {
            let r4 = r as f32;
            if r4.is_infinite() && r.is_finite() {
                return Err(overflow());
            }
            return Ok(Value::Float4(r4));
        }
        return Ok(Value::Float8(r));
    }
    let (Some(x), Some(y)) = (to_decimal(&a), to_decimal(&b)) else {
        return Err(no_operator(op, &a, &b));
    };
    let r: Option<Decimal> = match op {
        Plus => x.checked_add(y),
        Minus => x.checked_sub(y),
        Multiply => x.checked_mul(y),
        Divide => return numeric_div(x, y).map(Value::Numeric),
        _ => {
            if y.is_zero() {
                return Err(EvalError::DivisionByZero);
            }
            x.checked_rem(y)
        }
    };
    let mut r = r.ok_or(EvalError::NumericOverflow)?;
    // PostgreSQL's result scale: max of the inputs for + and -, their sum for *.
    let scale = match op {
        Plus | Minus => x.scale().max(y.scale()),
        Multiply => (x.scale() + y.scale()).min(28),
        _ => r.scale(),
    };
    if r.scale() < scale {
        r.rescale(scale);
    }
    Ok(Value::Numeric(r))
}

/// One ORDER BY key: an expression over the row, direction and NULL placement.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SortKey {
    pub expr: Expr,
    pub descending: bool,
    pub nulls_first: bool,
}

/// Compares two rows' precomputed sort-key values under `keys`.
pub fn compare_keys(keys: &[SortKey], a: &[Value], b: &[Value]) -> Ordering {
    for (k, (x, y)) in keys.iter().zip(a.iter().zip(b.iter())) {
        let o = match (x.is_null(), y.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => {
                if k.nulls_first {
                    Ordering::Less
                } else {
                    Ordering::Greater
                }
            }
            (false, true) => {
                if k.nulls_first {
                    Ordering::Greater
                } else {
                    Ordering::Less
                }
            }
            _ => {
                let o = x.sort_cmp(y);
                if k.descending {
                    o.reverse()
                } else {
                    o
                }
            }
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// Evaluates the sort keys of `row`.
pub fn sort_values(keys: &[SortKey], row: &Row) -> Result<Vec<Value>, EvalError> {
    keys.iter().map(|k| k.expr.eval(row)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn lit(v: Value) -> Expr {
        Expr::Literal(v)
    }

    /// A small integer of a random width, NULL, or text: lists mixing
    /// widths stay sortable, lists mixing kinds do not.
    fn value() -> impl Strategy<Value = Value> {
        prop_oneof![
            (-20i64..20).prop_map(|i| Value::Int2(i as i16)),
            (-20i64..20).prop_map(|i| Value::Int4(i as i32)),
            (-20i64..20).prop_map(Value::Int8),
            Just(Value::Null),
            "[a-c]{0,2}".prop_map(Value::Text),
        ]
    }

    proptest! {
        /// A sorted list answers every row as the written one does: TRUE,
        /// FALSE, NULL or an error of the same kind.
        #[test]
        fn sorted_in_lists_agree_with_in(
            items in prop::collection::vec(value(), 0..40),
            kind in 0usize..3,
            subject in prop_oneof![value(), (-20.0f64..20.0).prop_map(|f| Value::Float8(f.round()))],
            negated: bool,
        ) {
            // Mostly one kind, so the list can be sorted; sometimes mixed.
            let items: Vec<Value> = items
                .into_iter()
                .filter(|v| kind == 2 || v.is_null() || matches!((kind, v), (0, Value::Int2(_) | Value::Int4(_) | Value::Int8(_)) | (1, Value::Text(_))))
                .collect();
            let plain = Expr::In {
                expr: Box::new(Expr::Column(0)),
                list: items.into_iter().map(Expr::Literal).collect(),
                negated,
            };
            let sorted = plain.clone().with_sorted_lists();
            let row = vec![subject];
            match (plain.eval(&row), sorted.eval(&row)) {
                (Ok(a), Ok(b)) => prop_assert_eq!(a, b),
                // The message may name another width of integer.
                (Err(a), Err(b)) => prop_assert_eq!(std::mem::discriminant(&a), std::mem::discriminant(&b)),
                (a, b) => prop_assert!(false, "{:?} against {:?}", a, b),
            }
        }
    }

    #[test]
    fn only_long_constant_lists_are_sorted() {
        let ints = |n: i64| Expr::In {
            expr: Box::new(Expr::Column(0)),
            list: (0..n).rev().map(|i| lit(Value::Int8(i))).collect(),
            negated: false,
        };
        assert!(!ints(15).has_long_lists());
        assert!(matches!(ints(15).with_sorted_lists(), Expr::In { .. }));
        let long = ints(40);
        assert!(long.has_long_lists());
        let Expr::InSorted { list, null, .. } = long.with_sorted_lists() else {
            panic!("a 40-integer list is sorted")
        };
        assert_eq!(list, (0..40).map(Value::Int8).collect::<Vec<_>>());
        assert!(!null);
        let mut with_column = ints(40);
        if let Expr::In { list, .. } = &mut with_column {
            list.push(Expr::Column(1));
        }
        assert!(!with_column.has_long_lists());
    }

    #[test]
    fn like_patterns() {
        assert!(like("hello", "h%o").unwrap());
        assert!(like("hello", "_ello").unwrap());
        assert!(!like("hello", "h_o").unwrap());
        assert!(like("a%b", "a\\%b").unwrap());
        assert!(!like("axb", "a\\%b").unwrap());
        assert!(like("", "%").unwrap());
        assert!(like("abcabc", "%abc").unwrap());
        assert!(like("mississippi", "%iss%pi").unwrap());
        assert_eq!(like("x", "x\\").unwrap_err().sql_state(), "22025");
    }

    #[test]
    fn three_valued_logic() {
        let row = vec![];
        let null_and_false = Expr::binary(BinaryOp::And, lit(Value::Null), lit(Value::Bool(false)));
        assert_eq!(null_and_false.eval(&row).unwrap(), Value::Bool(false));
        let null_or_true = Expr::binary(BinaryOp::Or, lit(Value::Null), lit(Value::Bool(true)));
        assert_eq!(null_or_true.eval(&row).unwrap(), Value::Bool(true));
        let null_eq = Expr::binary(BinaryOp::Eq, lit(Value::Null), lit(Value::Int4(1)));
        assert_eq!(null_eq.eval(&row).unwrap(), Value::Null);
        assert!(!null_eq.matches(&row).unwrap());
    }

    #[test]
    fn integer_arithmetic_follows_postgres() {
        let row = vec![];
        let div = Expr::binary(BinaryOp::Divide, lit(Value::Int4(7)), lit(Value::Int4(2)));
        assert_eq!(div.eval(&row).unwrap(), Value::Int4(3));
        let by_zero = Expr::binary(BinaryOp::Divide, lit(Value::Int4(7)), lit(Value::Int4(0)));
        assert_eq!(by_zero.eval(&row).unwrap_err().sql_state(), "22012");
        let overflow = Expr::binary(
            BinaryOp::Plus,
            lit(Value::Int4(i32::MAX)),
            lit(Value::Int4(1)),
        );
        assert_eq!(overflow.eval(&row).unwrap_err().sql_state(), "22003");
        let mixed = Expr::binary(BinaryOp::Plus, lit(Value::Int2(1)), lit(Value::Int8(2)));
        assert_eq!(mixed.eval(&row).unwrap(), Value::Int8(3));
    }

    #[test]
    fn numeric_result_scale_follows_postgres() {
        let row = vec![];
        let sum = Expr::binary(
            BinaryOp::Plus,
            lit(Value::Numeric(Decimal::new(0, 2))),
            lit(Value::Int4(1)),
        );
        assert_eq!(sum.eval(&row).unwrap().to_text().unwrap(), "1.00");
        let product = Expr::binary(
            BinaryOp::Multiply,
            lit(Value::Numeric(Decimal::new(150, 2))),
            lit(Value::Numeric(Decimal::new(20, 1))),
        );
        assert_eq!(product.eval(&row).unwrap().to_text().unwrap(), "3.000");
    }
}
