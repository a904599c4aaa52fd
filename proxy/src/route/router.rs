//! Chooses shards for a statement. Equality or an IN list on the shard key
//! goes to the owning shards; range predicates prune shards of range and
//! time tables; anything else goes to every shard. Equalities on a
//! leading run of primary-key columns also become a key prefix, so the shard
//! does a prefix seek instead of a full scan.

use std::collections::BTreeSet;

use fortress_storage::bounds::{exact, ColumnBounds};
use fortress_storage::keycodec::canonical;
use fortress_storage::schema::Strategy;
use fortress_storage::{BinaryOp, Expr, ShardId, TableDef, Value};

use super::placement::{shard_for_row, shards_for_range, shards_for_value};
use super::ring::Ring;

/// Where a statement runs.
#[derive(Clone, Debug, PartialEq)]
pub enum Target {
    One(ShardId),
    /// The owners of an `IN` list's values (two or more shards).
    Some(Vec<ShardId>),
    All,
}

/// The route of a statement on one table.
#[derive(Clone, Debug, PartialEq)]
pub struct Route {
    pub target: Target,
    /// Values of the leading primary-key columns fixed by equalities.
    pub key_prefix: Vec<Value>,
    /// The ring vnode a hash table's shard-key equality lands on.
    pub vnode: Option<usize>,
}

/// Columns fixed by `column = constant` conjuncts: a handful at most, so a
/// list beats a hash map built per statement.
#[derive(Default)]
struct Equalities(Vec<(usize, Value)>);

impl Equalities {
    fn get(&self, col: &usize) -> Option<&Value> {
        self.0.iter().find(|(c, _)| c == col).map(|(_, v)| v)
    }

    /// The last equality on a column wins, as it always has.
    fn insert(&mut self, col: usize, v: Value) {
        match self.0.iter_mut().find(|(c, _)| *c == col) {
            Some(slot) => slot.1 = v,
            None => self.0.push((col, v)),
        }
    }
}

/// Collects `column = constant` conjuncts whose constant converts exactly to
/// the column's type.
fn equalities(e: &Expr, table: &TableDef, out: &mut Equalities) {
    match e {
        Expr::Binary(BinaryOp::And, l, r) => {
            equalities(l, table, out);
            equalities(r, table, out);
        }
        e => {
            if let Some((col, v)) = column_equality(e, table) {
                out.insert(col, v);
            }
        }
    }
}

/// `column = constant` (either way round), with the constant converted to
/// the column's type when it converts exactly.
fn column_equality(e: &Expr, table: &TableDef) -> Option<(usize, Value)> {
    let Expr::Binary(BinaryOp::Eq, l, r) = e else {
        return None;
    };
    let (&col, lit) = match (l.as_ref(), r.as_ref()) {
        (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) => (c, v),
        _ => return None,
    };
    let def = table.columns.get(col)?;
    Some((col, exact(lit, &def.ty)?))
}

/// True when `v` survives conversion to `ty` unchanged (so `int_col = 1.5`
/// is not turned into a lookup of 2).
fn v_is_exact(v: &Value, ty: &fortress_storage::DataType) -> bool {
    exact(v, ty).is_some()
}

/// The values of `shard_key IN (constants)` when that is one of the
/// filter's conjuncts (or the whole filter).
fn in_list_values(table: &TableDef, f: &Expr) -> Option<Vec<Value>> {
    match f {
        Expr::Binary(BinaryOp::And, l, r) => {
            in_list_values(table, l).or_else(|| in_list_values(table, r))
        }
        Expr::In {
            expr,
            list,
            negated: false,
        } if matches!(expr.as_ref(), Expr::Column(c) if *c == table.shard_key) => {
            let ty = table.columns[table.shard_key].ty;
            let mut values = Vec::new();
            for item in list {
                let Expr::Literal(v) = item else { return None };
                if v.is_null() {
                    continue;
                }
                if !v_is_exact(v, &ty) {
                    return None;
                }
                values.push(v.clone().cast(&ty).ok()?);
            }
            Some(values)
        }
        _ => None,
    }
}

/// The shards a filter on `table` can need, by its strategy: `None` is
/// every shard.
fn candidate_shards(
    ring: &Ring,
    table: &TableDef,
    filter: Option<&Expr>,
    eq: &Equalities,
) -> Option<BTreeSet<ShardId>> {
    let sk = table.shard_key;
    if let (Strategy::Hybrid { hash_key, .. }, Some(v)) = (&table.strategy, eq.get(&sk)) {
        if let Some(h) = eq.get(hash_key) {
            let mut key = vec![Value::Null; table.columns.len()];
            key[sk] = v.clone();
            key[*hash_key] = h.clone();
            return Some(shard_for_row(ring, table, &key).into_iter().collect());
        }
    }
    let f = filter?;
    let mut set: Option<BTreeSet<ShardId>> = None;
    let mut narrow = |shards: BTreeSet<ShardId>| {
        set = Some(match set.take() {
            None => shards,
            Some(s) => s.intersection(&shards).copied().collect(),
        });
    };
    if let Some(v) = eq.get(&sk) {
        narrow(shards_for_value(ring, table, v).into_iter().collect());
    } else if let Some(values) = in_list_values(table, f) {
        narrow(
            values
                .iter()
                .flat_map(|v| shards_for_value(ring, table, v))
                .collect(),
        );
    }
    let bounds = ColumnBounds::of(f, sk, &table.columns[sk].ty);
    if !bounds.is_unbounded() {
        if let Some(shards) = shards_for_range(ring, table, bounds.lo(), bounds.hi()) {
            narrow(shards.into_iter().collect());
        }
    }
    set
}

/// `filter` for one shard of an IN-list route: the shard-key IN list among
/// its top-level conjuncts keeps only the values that shard can hold, so
/// each shard looks up its own keys only.
pub fn narrow_in_list(ring: &Ring, table: &TableDef, filter: &Expr, shard: ShardId) -> Expr {
    match filter {
        Expr::Binary(BinaryOp::And, l, r) => Expr::binary(
            BinaryOp::And,
            narrow_in_list(ring, table, l, shard),
            narrow_in_list(ring, table, r, shard),
        ),
        Expr::In {
            expr,
            list,
            negated: false,
        } if matches!(expr.as_ref(), Expr::Column(c) if *c == table.shard_key) => {
            let ty = table.columns[table.shard_key].ty;
            let owned = |item: &Expr| match item {
                Expr::Literal(v) => match exact(v, &ty) {
                    Some(v) => shards_for_value(ring, table, &v).contains(&shard),
                    None => true,
                },
                _ => true,
            };
            Expr::In {
                expr: expr.clone(),
                list: list.iter().filter(|i| owned(i)).cloned().collect(),
                negated: false,
            }
        }
        other => other.clone(),
    }
}

/// True when `filter`'s equalities fix every primary-key column: the
/// statement reads at most one row, by one seek on its shard.
pub fn fixes_primary_key(table: &TableDef, filter: Option<&Expr>) -> bool {
    let Some(f) = filter else {
        return false;
    };
    !table.primary_key.is_empty() && table.primary_key.iter().all(|&c| fixes(f, table, c))
}

/// True when a conjunct of `e` is an equality [`equalities`] would collect
/// for column `col`.
fn fixes(e: &Expr, table: &TableDef, col: usize) -> bool {
    match e {
        Expr::Binary(BinaryOp::And, l, r) => fixes(l, table, col) || fixes(r, table, col),
        e => column_equality(e, table).is_some_and(|(c, _)| c == col),
    }
}

/// Routes a statement on `table` filtered by `filter`.
pub fn route(ring: &Ring, table: &TableDef, filter: Option<&Expr>) -> Route {
    let mut eq = Equalities::default();
    if let Some(f) = filter {
        equalities(f, table, &mut eq);
    }
    let key_prefix: Vec<Value> = table
        .primary_key
        .iter()
        .map_while(|c| eq.get(c).cloned())
        .collect();
    // The common point lookup: on a hash table the shard-key equality alone
    // decides (no bound narrows a hash further), and one hash gives both the
    // vnode and its shard.
    if let (Strategy::Hash, false, Some(v), true) = (
        &table.strategy,
        table.replicated,
        eq.get(&table.shard_key),
        ring.shards() > 1,
    ) {
        let (vnode, shard) = ring.vnode_for_key(&canonical(v));
        return Route {
            target: Target::One(shard),
            key_prefix,
            vnode: Some(vnode),
        };
    }
    let target = if table.replicated {
        // Every shard holds a replicated table: any one can answer.
        Target::One(0)
    } else {
        match candidate_shards(ring, table, filter, &eq) {
            None => Target::All,
            Some(s) if s.len() >= ring.shards() as usize => Target::All,
            // No shard can hold a match: one shard answers "no rows".
            Some(s) if s.len() <= 1 => Target::One(s.first().copied().unwrap_or(0)),
            Some(s) => Target::Some(s.into_iter().collect()),
        }
    };
    let vnode = match (&table.strategy, table.replicated, eq.get(&table.shard_key)) {
        (Strategy::Hash, false, Some(v)) => Some(ring.vnode_for_key(&canonical(v)).0),
        _ => None,
    };
    Route {
        target,
        key_prefix,
        vnode,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::route::placement::ring_shard;
    use fortress_storage::schema::ColumnDef;
    use fortress_storage::DataType;

    fn table() -> TableDef {
        let col = |n: &str, ty| ColumnDef {
            nullable: false,
            ..ColumnDef::new(n, ty)
        };
        TableDef::new(
            1,
            "t",
            vec![
                col("a", DataType::Int4),
                col("b", DataType::Text),
                col("c", DataType::Int8),
            ],
            vec![0, 1],
        )
    }

    fn eq(c: usize, v: Value) -> Expr {
        Expr::binary(BinaryOp::Eq, Expr::Column(c), Expr::Literal(v))
    }

    #[test]
    fn in_list_on_the_shard_key_goes_to_the_owners_only() {
        let ring = Ring::new(8, 16);
        let t = table();
        let vals: Vec<Value> = (0..3).map(Value::Int4).collect();
        let f = Expr::In {
            expr: Box::new(Expr::Column(0)),
            list: vals.iter().cloned().map(Expr::Literal).collect(),
            negated: false,
        };
        let mut want: Vec<ShardId> = vals.iter().map(|v| ring_shard(&ring, v)).collect();
        want.sort_unstable();
        want.dedup();
        let got = route(&ring, &t, Some(&f)).target;
        match got {
            Target::Some(s) => assert_eq!(s, want),
            Target::One(s) => assert_eq!(vec![s], want),
            Target::All => panic!("an IN list must not scatter to every shard"),
        }
        let not_in = Expr::In {
            expr: Box::new(Expr::Column(0)),
            list: vals.iter().cloned().map(Expr::Literal).collect(),
            negated: true,
        };
        assert_eq!(route(&ring, &t, Some(&not_in)).target, Target::All);
    }

    #[test]
    fn an_in_list_is_split_per_shard() {
        let ring = Ring::new(4, 16);
        let t = table();
        let vals: Vec<Value> = (0..40).map(Value::Int4).collect();
        let f = Expr::In {
            expr: Box::new(Expr::Column(0)),
            list: vals.iter().cloned().map(Expr::Literal).collect(),
            negated: false,
        };
        let mut seen = Vec::new();
        for shard in 0..4 {
            let Expr::In { list, .. } = narrow_in_list(&ring, &t, &f, shard) else {
                panic!("still an IN list");
            };
            for item in list {
                let Expr::Literal(v) = item else {
                    panic!("a literal")
                };
                assert_eq!(ring_shard(&ring, &v), shard);
                seen.push(v);
            }
        }
        seen.sort_by(|a, b| a.sort_cmp(b));
        assert_eq!(seen, vals, "every value goes to exactly one shard");
    }

    #[test]
    fn shard_key_equality_goes_to_one_shard() {
        let ring = Ring::new(4, 150);
        let t = table();
        let f = Expr::binary(BinaryOp::And, eq(0, Value::Int4(7)), eq(2, Value::Int8(1)));
        let r = route(&ring, &t, Some(&f));
        assert_eq!(r.target, Target::One(ring_shard(&ring, &Value::Int8(7))));
        assert_eq!(r.key_prefix, vec![Value::Int4(7)]);
    }

    #[test]
    fn a_point_lookup_lands_where_the_row_is_placed_and_counts_its_vnode() {
        let t = table();
        for shards in [1, 2, 4, 7] {
            let ring = Ring::new(shards, 150);
            for a in -50..50 {
                let r = route(&ring, &t, Some(&eq(0, Value::Int4(a))));
                let row = vec![Value::Int4(a), Value::Text("x".into()), Value::Int8(0)];
                let home = crate::route::placement::shard_for_row(&ring, &t, &row).unwrap();
                let expected = if shards == 1 {
                    Target::All
                } else {
                    Target::One(home)
                };
                assert_eq!(r.target, expected, "a = {a} on {shards} shards");
                let (vnode, owner) = ring.vnode_for_key(&canonical(&Value::Int4(a)));
                assert_eq!((r.vnode, owner), (Some(vnode), home));
            }
        }
    }

    #[test]
    fn other_predicates_scatter() {
        let ring = Ring::new(4, 150);
        let t = table();
        let f = Expr::binary(BinaryOp::Or, eq(0, Value::Int4(7)), eq(0, Value::Int4(8)));
        assert_eq!(route(&ring, &t, Some(&f)).target, Target::All);
        assert_eq!(route(&ring, &t, None).target, Target::All);
        let inexact = eq(0, Value::Float8(1.5));
        assert_eq!(route(&ring, &t, Some(&inexact)).target, Target::All);
    }

    #[test]
    fn full_key_becomes_full_prefix() {
        let ring = Ring::new(4, 150);
        let f = Expr::binary(
            BinaryOp::And,
            eq(1, Value::Text("x".into())),
            eq(0, Value::Int4(1)),
        );
        let r = route(&ring, &table(), Some(&f));
        assert_eq!(r.key_prefix, vec![Value::Int4(1), Value::Text("x".into())]);
    }

    #[test]
    fn the_whole_key_is_fixed_only_by_exact_equalities_on_every_column() {
        let ring = Ring::new(4, 150);
        let t = table();
        let a = eq(0, Value::Int4(1));
        let b = eq(1, Value::Text("x".into()));
        let and = |l: &Expr, r: &Expr| Expr::binary(BinaryOp::And, l.clone(), r.clone());
        let or = |l: &Expr, r: &Expr| Expr::binary(BinaryOp::Or, l.clone(), r.clone());
        let cases = [
            (and(&a, &b), true),
            (and(&b, &and(&eq(2, Value::Int8(3)), &a)), true),
            (
                and(
                    &b,
                    &Expr::binary(BinaryOp::Eq, Expr::Literal(Value::Int8(1)), Expr::Column(0)),
                ),
                true,
            ),
            (a.clone(), false),
            (or(&a, &b), false),
            (and(&b, &eq(0, Value::Float8(1.5))), false),
            (and(&b, &eq(0, Value::Null)), false),
            (and(&b, &eq(0, Value::Float8(2.0))), true),
        ];
        for (f, whole) in cases {
            assert_eq!(fixes_primary_key(&t, Some(&f)), whole, "{f:?}");
            // Agrees with the key prefix the router takes from the filter.
            let prefix = route(&ring, &t, Some(&f)).key_prefix;
            assert_eq!(prefix.len() == t.primary_key.len(), whole, "{f:?}");
        }
        assert!(!fixes_primary_key(&t, None));
    }
}
