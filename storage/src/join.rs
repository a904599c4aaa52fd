//! Joins of two row sets: a hash join on an equality conjunct when the
//! condition has one, else nested loops; the full condition is checked on
//! every pair. The proxy joins gathered rows with it, and a shard joins
//! tables co-located on their shard keys.

use serde::{Deserialize, Serialize};

use crate::aggregate::GroupKey;
use crate::error::EvalError;
use crate::expr::{BinaryOp, Expr};
use crate::value::{Row, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinKind {
    Inner,
    Left,
}

/// The `left_col = right_col` conjunct of a join condition, if any, for a
/// hash join: (left column, right column counted from the right row).
pub fn equi_key(on: &Expr, left_width: usize) -> Option<(usize, usize)> {
    match on {
        Expr::Binary(BinaryOp::And, a, b) => {
            equi_key(a, left_width).or_else(|| equi_key(b, left_width))
        }
        Expr::Binary(BinaryOp::Eq, a, b) => match (a.as_ref(), b.as_ref()) {
            (Expr::Column(x), Expr::Column(y)) if *x < left_width && *y >= left_width => {
                Some((*x, *y - left_width))
            }
            (Expr::Column(y), Expr::Column(x)) if *x < left_width && *y >= left_width => {
                Some((*x, *y - left_width))
            }
            _ => None,
        },
        _ => None,
    }
}

/// What one statement may hold in memory for a join's result: rows, and
/// bytes as [`crate::value::row_bytes`] counts them (a few wide rows cost
/// as much as many narrow ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WorkLimit {
    pub rows: u64,
    pub bytes: u64,
}

impl WorkLimit {
    /// 53200 once `rows` rows of `bytes` bytes pass the limit.
    pub fn check(&self, rows: usize, bytes: usize, what: &str) -> Result<(), EvalError> {
        if rows as u64 > self.rows {
            return Err(EvalError::Invalid(
                "53200",
                format!(
                    "out of memory: {what} needs more than {} rows \
                     (FORTRESS_WORK_ROWS); add a filter or a shard-key condition",
                    self.rows
                ),
            ));
        }
        if bytes as u64 > self.bytes {
            return Err(EvalError::Invalid(
                "53200",
                format!(
                    "out of memory: {what} needs more than {} MiB (FORTRESS_WORK_MEM_MB); \
                     add a filter or a shard-key condition",
                    self.bytes >> 20
                ),
            ));
        }
        Ok(())
    }
}

/// Joins `left` and `right`: rows are `[left.., right..]`, NULL-extended
/// for unmatched left rows of a LEFT join. A result past `limit` is 53200,
/// found as it grows (a cross join is refused before it fills memory).
pub fn join(
    left: Vec<Row>,
    right: Vec<Row>,
    left_width: usize,
    right_width: usize,
    kind: JoinKind,
    on: Option<&Expr>,
    limit: WorkLimit,
) -> Result<Vec<Row>, EvalError> {
    let mut out = Vec::new();
    let mut bytes = 0;
    let key = on.and_then(|e| equi_key(e, left_width));
    let index: Option<std::collections::BTreeMap<GroupKey, Vec<usize>>> = key.map(|(_, rk)| {
        let mut m: std::collections::BTreeMap<GroupKey, Vec<usize>> = Default::default();
        for (i, r) in right.iter().enumerate() {
            if !r[rk].is_null() {
                m.entry(GroupKey(vec![r[rk].clone()])).or_default().push(i);
            }
        }
        m
    });
    let all: Vec<usize> = (0..right.len()).collect();
    let mut until_check = crate::interrupt::EVERY;
    for l in left {
        let candidates: &[usize] = match (&index, key) {
            (Some(ix), Some((lk, _))) => ix
                .get(&GroupKey(vec![l[lk].clone()]))
                .map(|v| v.as_slice())
                .unwrap_or(&[]),
            _ => &all,
        };
        let mut matched = false;
        for &ri in candidates {
            // A nested loop is where a cancelled statement may spend longest.
            until_check -= 1;
            if until_check == 0 {
                until_check = crate::interrupt::EVERY;
                if let Some(reason) = crate::interrupt::stopped() {
                    return Err(EvalError::Invalid("57014", reason.message().into()));
                }
            }
            let mut row = l.clone();
            row.extend(right[ri].iter().cloned());
            let pass = match on {
                Some(e) => e.matches(&row)?,
                None => true,
            };
            if pass {
                matched = true;
                bytes += crate::value::row_bytes(&row);
                out.push(row);
                limit.check(out.len(), bytes, "a join's result")?;
            }
        }
        if !matched && kind == JoinKind::Left {
            let mut row = l;
            row.extend(std::iter::repeat_n(Value::Null, right_width));
            bytes += crate::value::row_bytes(&row);
            out.push(row);
            limit.check(out.len(), bytes, "a join's result")?;
        }
    }
    Ok(out)
}
