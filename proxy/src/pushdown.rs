//! What of a join the shards can do: the filter conjuncts each side may
//! apply before joining, and whether two tables are co-located (matching
//! rows always on the same shard) so that the shards join them.

use fortress_storage::schema::Strategy;
use fortress_storage::{BinaryOp, DataType, Expr, Func, TableDef};

use crate::plan::JoinKind;

/// The AND-ed parts of `e`.
pub fn conjuncts(e: &Expr) -> Vec<&Expr> {
    match e {
        Expr::Binary(BinaryOp::And, l, r) => {
            let mut out = conjuncts(l);
            out.extend(conjuncts(r));
            out
        }
        other => vec![other],
    }
}

/// The conjunction of `parts`, `None` when there are none.
pub fn and_all(parts: Vec<Expr>) -> Option<Expr> {
    parts
        .into_iter()
        .reduce(|a, b| Expr::binary(BinaryOp::And, a, b))
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Side {
    Left,
    Right,
}

/// The one side of a join whose columns `e` reads; `None` if it reads both,
/// neither, or something that must not be evaluated twice (a subquery slot,
/// the clock).
fn side(e: &Expr, left_width: usize) -> Option<Side> {
    let (mut left, mut right, mut pinned) = (false, false, false);
    e.visit(&mut |n| match n {
        Expr::Column(c) if *c < left_width => left = true,
        Expr::Column(_) => right = true,
        Expr::Slot(_) | Expr::Func(Func::Now, _) => pinned = true,
        _ => {}
    });
    match (left, right, pinned) {
        (true, false, false) => Some(Side::Left),
        (false, true, false) => Some(Side::Right),
        _ => None,
    }
}

/// Filters each side of a join may apply to its own rows before the join,
/// from the statement's filter (over joined rows) and the join condition.
/// Right-side parts come with columns counted from the right row. A LEFT
/// join keeps every left row, so only the condition's right-side parts
/// and the filter's left-side parts go down. The full filter and
/// condition still run on the joined rows.
pub fn split_for_join(
    filter: Option<&Expr>,
    on: Option<&Expr>,
    left_width: usize,
    kind: JoinKind,
) -> (Option<Expr>, Option<Expr>) {
    let (mut left, mut right) = (Vec::new(), Vec::new());
    let mut take = |e: &Expr, allow_left: bool, allow_right: bool| match side(e, left_width) {
        Some(Side::Left) if allow_left => left.push(e.clone()),
        Some(Side::Right) if allow_right => right.push(e.clone().rewrite(&mut |n| match n {
            Expr::Column(c) => Expr::Column(c - left_width),
            other => other,
        })),
        _ => {}
    };
    let inner = kind == JoinKind::Inner;
    for c in filter.map(conjuncts).unwrap_or_default() {
        take(c, true, inner);
    }
    for c in on.map(conjuncts).unwrap_or_default() {
        take(c, inner, true);
    }
    (and_all(left), and_all(right))
}

/// How a join of two tables can run on the shards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Colocation {
    /// Both sharded alike and joined on their shard keys: each shard joins
    /// its own rows.
    ShardKeys,
    /// The right table is on every shard: each shard of the left joins it.
    RightReplicated,
    /// The left table is on every shard (inner joins only).
    LeftReplicated,
    /// Both on every shard: one shard answers.
    BothReplicated,
}

/// Whether `left JOIN right ON on` can run on the shards, and how.
pub fn colocation(
    left: &TableDef,
    right: &TableDef,
    on: Option<&Expr>,
    kind: JoinKind,
) -> Option<Colocation> {
    match (left.replicated, right.replicated) {
        (true, true) => return Some(Colocation::BothReplicated),
        (false, true) => return Some(Colocation::RightReplicated),
        // Each shard would add the left rows it finds no match for.
        (true, false) if kind == JoinKind::Inner => return Some(Colocation::LeftReplicated),
        (true, false) => return None,
        (false, false) => {}
    }
    let on = on?;
    let lw = left.columns.len();
    let equal = |l: usize, r: usize| {
        conjuncts(on).iter().any(|c| match c {
            Expr::Binary(BinaryOp::Eq, a, b) => matches!(
                (a.as_ref(), b.as_ref()),
                (Expr::Column(x), Expr::Column(y)) | (Expr::Column(y), Expr::Column(x))
                    if *x == l && *y == lw + r
            ),
            _ => false,
        })
    };
    let same_placement = left.strategy == right.strategy
        && same_key_type(
            &left.columns[left.shard_key].ty,
            &right.columns[right.shard_key].ty,
        );
    let hash_keys_match = match (&left.strategy, &right.strategy) {
        (Strategy::Hybrid { hash_key: l, .. }, Strategy::Hybrid { hash_key: r, .. }) => {
            equal(*l, *r) && same_key_type(&left.columns[*l].ty, &right.columns[*r].ty)
        }
        _ => true,
    };
    (same_placement && hash_keys_match && equal(left.shard_key, right.shard_key))
        .then_some(Colocation::ShardKeys)
}

/// True when equal values of the two types always land on the same shard:
/// the key encoding treats all integer widths alike, and all text types.
fn same_key_type(a: &DataType, b: &DataType) -> bool {
    let int = |t: &DataType| matches!(t, DataType::Int2 | DataType::Int4 | DataType::Int8);
    (int(a) && int(b))
        || (a.is_text()
            && b.is_text()
            && !matches!(a, DataType::Char(_))
            && !matches!(b, DataType::Char(_)))
        || a == b
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::schema::ColumnDef;
    use fortress_storage::Value;

    fn table(id: u32, cols: &[(&str, DataType)]) -> TableDef {
        let columns = cols.iter().map(|(n, t)| ColumnDef::new(n, *t)).collect();
        TableDef::new(id, "t", columns, vec![0])
    }

    fn eq(a: usize, b: usize) -> Expr {
        Expr::binary(BinaryOp::Eq, Expr::Column(a), Expr::Column(b))
    }

    fn gt(c: usize, v: i32) -> Expr {
        Expr::binary(BinaryOp::Gt, Expr::Column(c), Expr::Literal(Value::Int4(v)))
    }

    #[test]
    fn filters_split_by_side_and_join_kind() {
        // left (a, b), right (c, d): columns 0, 1 | 2, 3.
        let filter = and_all(vec![gt(1, 5), gt(3, 7), eq(0, 2)]).unwrap();
        let on = and_all(vec![eq(0, 2), gt(2, 1)]).unwrap();
        let (l, r) = split_for_join(Some(&filter), Some(&on), 2, JoinKind::Inner);
        assert_eq!(l, Some(gt(1, 5)));
        assert_eq!(r, and_all(vec![gt(1, 7), gt(0, 1)]));
        // A LEFT join keeps left rows: the filter's right parts stay above it.
        let (l, r) = split_for_join(Some(&filter), Some(&on), 2, JoinKind::Left);
        assert_eq!(l, Some(gt(1, 5)));
        assert_eq!(r, Some(gt(0, 1)));
    }

    #[test]
    fn joins_on_shard_keys_or_with_replicated_tables_are_colocated() {
        let orders = table(1, &[("cust", DataType::Int8), ("n", DataType::Int4)]);
        let custs = table(2, &[("id", DataType::Int4), ("name", DataType::Text)]);
        let on = eq(0, 2);
        assert_eq!(
            colocation(&orders, &custs, Some(&on), JoinKind::Inner),
            Some(Colocation::ShardKeys)
        );
        let off_key = eq(1, 2);
        assert_eq!(
            colocation(&orders, &custs, Some(&off_key), JoinKind::Inner),
            None
        );
        let mut ranged = custs.clone();
        ranged.strategy = Strategy::Range {
            splits: vec![Value::Int4(10)],
        };
        assert_eq!(
            colocation(&orders, &ranged, Some(&on), JoinKind::Inner),
            None
        );
        let mut reference = custs.clone();
        reference.replicated = true;
        assert_eq!(
            colocation(&orders, &reference, Some(&off_key), JoinKind::Left),
            Some(Colocation::RightReplicated)
        );
        assert_eq!(
            colocation(&reference, &orders, Some(&on), JoinKind::Left),
            None
        );
    }
}
