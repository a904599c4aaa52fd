//! What a filter's top-level conjuncts fix about columns: equalities to
//! constants, an IN list of constants, and the tightest lower and upper
//! bound of `col < c`, `col >= c`, ... (BETWEEN binds to two of them). The
//! router routes and prunes with them, a shard picks keys and indexes.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::ops::Bound;

use crate::expr::{BinaryOp, Expr};
use crate::schema::{ColumnDef, DataType};
use crate::value::Value;

/// `v` converted to `ty`, if that changes nothing (so `int_col > 1.5` is
/// not taken as `> 2`).
pub fn exact(v: &Value, ty: &DataType) -> Option<Value> {
    if v.is_null() {
        return None;
    }
    let c = v.clone().cast(ty).ok()?;
    matches!(c.sql_cmp(v), Ok(Some(Ordering::Equal))).then_some(c)
}

/// `column = constant` conjuncts whose constant converts exactly to the
/// column's type: column position to value.
pub fn equalities(filter: &Expr, columns: &[ColumnDef]) -> HashMap<usize, Value> {
    let mut out = HashMap::new();
    let mut stack = vec![filter];
    while let Some(e) = stack.pop() {
        match e {
            Expr::Binary(BinaryOp::And, l, r) => {
                stack.push(r);
                stack.push(l);
            }
            Expr::Binary(BinaryOp::Eq, l, r) => {
                let (col, lit) = match (l.as_ref(), r.as_ref()) {
                    (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) => {
                        (*c, v)
                    }
                    _ => continue,
                };
                if let Some(v) = columns.get(col).and_then(|def| exact(lit, &def.ty)) {
                    out.insert(col, v);
                }
            }
            _ => {}
        }
    }
    out
}

/// The values of `col IN (constants)` when that is one of the filter's
/// conjuncts, NULLs left out; `None` if there is none or a value does not
/// convert exactly to `ty`.
pub fn in_list(filter: &Expr, col: usize, ty: &DataType) -> Option<Vec<Value>> {
    match filter {
        Expr::Binary(BinaryOp::And, l, r) => in_list(l, col, ty).or_else(|| in_list(r, col, ty)),
        Expr::In {
            expr,
            list,
            negated: false,
        } if matches!(expr.as_ref(), Expr::Column(c) if *c == col) => {
            let mut values = Vec::with_capacity(list.len());
            for item in list {
                match item {
                    Expr::Literal(v) if v.is_null() => {}
                    Expr::Literal(v) => values.push(exact(v, ty)?),
                    _ => return None,
                }
            }
            Some(values)
        }
        _ => None,
    }
}

/// Bounds on one column; `(value, inclusive)` per side.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ColumnBounds {
    pub lo: Option<(Value, bool)>,
    pub hi: Option<(Value, bool)>,
}

impl ColumnBounds {
    /// The bounds `filter` puts on column `col` of type `ty`.
    pub fn of(filter: &Expr, col: usize, ty: &DataType) -> ColumnBounds {
        let mut b = ColumnBounds::default();
        b.collect(filter, col, ty);
        b
    }

    pub fn is_unbounded(&self) -> bool {
        self.lo.is_none() && self.hi.is_none()
    }

    pub fn lo(&self) -> Bound<&Value> {
        side(&self.lo)
    }

    pub fn hi(&self) -> Bound<&Value> {
        side(&self.hi)
    }

    fn collect(&mut self, e: &Expr, col: usize, ty: &DataType) {
        let (op, l, r) = match e {
            Expr::Binary(BinaryOp::And, l, r) => {
                self.collect(l, col, ty);
                self.collect(r, col, ty);
                return;
            }
            Expr::Binary(op, l, r) => (*op, l.as_ref(), r.as_ref()),
            _ => return,
        };
        // Normalise to `col op literal`.
        let (op, lit) = match (l, r) {
            (Expr::Column(c), Expr::Literal(v)) if *c == col => (op, v),
            (Expr::Literal(v), Expr::Column(c)) if *c == col => match op {
                BinaryOp::Lt => (BinaryOp::Gt, v),
                BinaryOp::LtEq => (BinaryOp::GtEq, v),
                BinaryOp::Gt => (BinaryOp::Lt, v),
                BinaryOp::GtEq => (BinaryOp::LtEq, v),
                _ => return,
            },
            _ => return,
        };
        let Some(v) = exact(lit, ty) else { return };
        let tighter = |old: &Option<(Value, bool)>, inclusive: bool, want: Ordering| match old {
            None => true,
            Some((o, o_incl)) => match v.sql_cmp(o) {
                Ok(Some(Ordering::Equal)) => *o_incl && !inclusive,
                Ok(Some(ord)) => ord == want,
                _ => false,
            },
        };
        match op {
            BinaryOp::Gt | BinaryOp::GtEq => {
                let inclusive = op == BinaryOp::GtEq;
                if tighter(&self.lo, inclusive, Ordering::Greater) {
                    self.lo = Some((v, inclusive));
                }
            }
            BinaryOp::Lt | BinaryOp::LtEq => {
                let inclusive = op == BinaryOp::LtEq;
                if tighter(&self.hi, inclusive, Ordering::Less) {
                    self.hi = Some((v, inclusive));
                }
            }
            _ => {}
        }
    }
}

fn side(s: &Option<(Value, bool)>) -> Bound<&Value> {
    match s {
        None => Bound::Unbounded,
        Some((v, true)) => Bound::Included(v),
        Some((v, false)) => Bound::Excluded(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmp(op: BinaryOp, v: Value) -> Expr {
        Expr::binary(op, Expr::Column(0), Expr::Literal(v))
    }

    #[test]
    fn keeps_the_tightest_bound_of_each_side() {
        let f = Expr::binary(
            BinaryOp::And,
            Expr::binary(
                BinaryOp::And,
                cmp(BinaryOp::GtEq, Value::Int4(5)),
                cmp(BinaryOp::Gt, Value::Int4(5)),
            ),
            Expr::binary(
                BinaryOp::And,
                cmp(BinaryOp::LtEq, Value::Int8(9)),
                // `30 > col` is `col < 30`.
                Expr::binary(
                    BinaryOp::Gt,
                    Expr::Literal(Value::Int4(30)),
                    Expr::Column(0),
                ),
            ),
        );
        let b = ColumnBounds::of(&f, 0, &DataType::Int4);
        assert_eq!(b.lo(), Bound::Excluded(&Value::Int4(5)));
        assert_eq!(b.hi(), Bound::Included(&Value::Int4(9)));
        let inexact = cmp(BinaryOp::Gt, Value::Float8(1.5));
        assert!(ColumnBounds::of(&inexact, 0, &DataType::Int4).is_unbounded());
    }
}
