//! Chooses shards for a statement. Equality on the shard key goes to the one
//! shard the ring names; anything else goes to every shard. Equalities on a
//! leading run of primary-key columns also become a key prefix, so the shard
//! does a prefix seek instead of a full scan.

use std::collections::HashMap;

use fortress_storage::keycodec::canonical;
use fortress_storage::{BinaryOp, Expr, Row, ShardId, TableDef, Value};

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
}

/// The shard owning a row with this shard-key value.
pub fn shard_for_value(ring: &Ring, v: &Value) -> ShardId {
    ring.shard_for_key(&canonical(v))
}

/// The shard owning `row` of `table` (for a replicated table: the first of
/// the shards that all hold it).
pub fn shard_for_row(ring: &Ring, table: &TableDef, row: &Row) -> ShardId {
    shard_for_value(ring, &row[table.shard_key])
}

/// Collects `column = constant` conjuncts whose constant converts exactly to
/// the column's type.
fn equalities(e: &Expr, table: &TableDef, out: &mut HashMap<usize, Value>) {
    match e {
        Expr::Binary(BinaryOp::And, l, r) => {
            equalities(l, table, out);
            equalities(r, table, out);
        }
        Expr::Binary(BinaryOp::Eq, l, r) => {
            let (col, lit) = match (l.as_ref(), r.as_ref()) {
                (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) => (c, v),
                _ => return,
            };
            let Some(def) = table.columns.get(*col) else {
                return;
            };
            if v_is_exact(lit, &def.ty) {
                if let Ok(v) = lit.clone().cast(&def.ty) {
                    out.insert(*col, v);
                }
            }
        }
        _ => {}
    }
}

/// True when `v` survives conversion to `ty` unchanged (so `int_col = 1.5`
/// is not turned into a lookup of 2).
fn v_is_exact(v: &Value, ty: &fortress_storage::DataType) -> bool {
    if v.is_null() {
        return false;
    }
    match v.clone().cast(ty) {
        Ok(c) => matches!(c.sql_cmp(v), Ok(Some(std::cmp::Ordering::Equal))),
        Err(_) => false,
    }
}

/// The shards owning the values of `shard_key IN (constants)` when that is
/// one of the filter's conjuncts (or the whole filter).
fn in_list_shards(ring: &Ring, table: &TableDef, f: &Expr) -> Option<Vec<ShardId>> {
    match f {
        Expr::Binary(BinaryOp::And, l, r) => {
            in_list_shards(ring, table, l).or_else(|| in_list_shards(ring, table, r))
        }
        Expr::In {
            expr,
            list,
            negated: false,
        } if matches!(expr.as_ref(), Expr::Column(c) if *c == table.shard_key) => {
            let ty = table.columns[table.shard_key].ty;
            let mut shards = Vec::new();
            for item in list {
                let Expr::Literal(v) = item else { return None };
                if v.is_null() {
                    continue;
                }
                if !v_is_exact(v, &ty) {
                    return None;
                }
                let v = v.clone().cast(&ty).ok()?;
                shards.push(shard_for_value(ring, &v));
            }
            shards.sort_unstable();
            shards.dedup();
            Some(shards)
        }
        _ => None,
    }
}

/// Routes a statement on `table` filtered by `filter`.
pub fn route(ring: &Ring, table: &TableDef, filter: Option<&Expr>) -> Route {
    let mut eq = HashMap::new();
    if let Some(f) = filter {
        equalities(f, table, &mut eq);
    }
    let target = match eq.get(&table.shard_key) {
        // Every shard holds a replicated table: any one can answer.
        _ if table.replicated => Target::One(0),
        Some(v) => Target::One(shard_for_value(ring, v)),
        None => match filter.and_then(|f| in_list_shards(ring, table, f)) {
            Some(shards) if shards.len() == 1 => Target::One(shards[0]),
            Some(shards) if shards.len() < ring.shards() as usize => Target::Some(shards),
            _ => Target::All,
        },
    };
    let key_prefix = table
        .primary_key
        .iter()
        .map_while(|c| eq.get(c).cloned())
        .collect();
    Route { target, key_prefix }
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let mut want: Vec<ShardId> = vals.iter().map(|v| shard_for_value(&ring, v)).collect();
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
    fn shard_key_equality_goes_to_one_shard() {
        let ring = Ring::new(4, 150);
        let t = table();
        let f = Expr::binary(BinaryOp::And, eq(0, Value::Int4(7)), eq(2, Value::Int8(1)));
        let r = route(&ring, &t, Some(&f));
        assert_eq!(
            r.target,
            Target::One(shard_for_value(&ring, &Value::Int8(7)))
        );
        assert_eq!(r.key_prefix, vec![Value::Int4(7)]);
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
}
