//! What a filter says about one column: the tightest lower and upper bound
//! its `col < c`, `col >= c`, ... conjuncts give (BETWEEN binds to two of
//! them). The router prunes range and time shards with it, and a shard
//! scans an index range with it.

use std::cmp::Ordering;
use std::ops::Bound;

use crate::expr::{BinaryOp, Expr};
use crate::schema::DataType;
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
