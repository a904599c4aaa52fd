//! Secondary indexes, local to each shard. An index is a sled tree of
//! versioned entries `encode(index values) ++ encode(pk) ++ !ts`, written in
//! the same apply as the row change, so a reader at snapshot `S` sees the
//! entries of exactly the row versions it sees. A lookup finds candidate
//! primary keys by the index, fetches each row at `S` and re-checks the
//! filter, so the index only narrows which rows are read.

use std::ops::Bound;

use crate::bounds::ColumnBounds;
use crate::error::Result;
use crate::expr::{BinaryOp, Expr};
use crate::keycodec::{encode_key, encoded_len, prefix_end, split_versioned, versioned_key};
use crate::mvcc::{decode_version, encode_version};
use crate::schema::{IndexDef, TableDef};
use crate::value::{Row, Value};

/// The entry key (without version) of `row` in `idx`.
pub fn entry_key(idx: &IndexDef, row: &Row, pk: &[u8]) -> Vec<u8> {
    let vals: Vec<Value> = idx
        .columns
        .iter()
        .map(|&c| row.get(c).cloned().unwrap_or(Value::Null))
        .collect();
    let mut k = encode_key(&vals);
    k.extend_from_slice(pk);
    k
}

/// The index entries a row change at `ts` writes: a tombstone for the old
/// row's entry and a live entry for the new row's, when they differ.
pub fn changes(
    idx: &IndexDef,
    pk: &[u8],
    old: Option<&Row>,
    new: Option<&Row>,
    ts: u64,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let old_key = old.map(|r| entry_key(idx, r, pk));
    let new_key = new.map(|r| entry_key(idx, r, pk));
    let mut out = Vec::new();
    if old_key == new_key {
        return Ok(out);
    }
    if let Some(k) = old_key {
        out.push((versioned_key(&k, ts), encode_version(None)?));
    }
    if let Some(k) = new_key {
        out.push((versioned_key(&k, ts), encode_version(Some(&Vec::new()))?));
    }
    Ok(out)
}

/// The newest version of `pk` in `tree` written before `ts` (`None` if the
/// key did not exist or was deleted).
pub fn row_before(tree: &sled::Tree, pk: &[u8], ts: u64) -> Result<Option<Row>> {
    for item in tree.scan_prefix(pk) {
        let (k, v) = item?;
        let Some((kp, vts)) = split_versioned(&k) else {
            continue;
        };
        if kp != pk || vts >= ts {
            continue;
        }
        return decode_version(&v);
    }
    Ok(None)
}

/// Builds `idx` from every version already in the table's tree, so old
/// snapshots see entries for the versions they can read.
pub fn backfill(table: &sled::Tree, index: &sled::Tree, idx: &IndexDef) -> Result<()> {
    let mut batch = sled::Batch::default();
    let mut pending = 0;
    let mut current: Option<Vec<u8>> = None;
    // (ts, row) of one primary key, newest first as the tree stores them.
    let mut versions: Vec<(u64, Option<Row>)> = Vec::new();
    let flush_key = |pk: &[u8],
                     versions: &mut Vec<(u64, Option<Row>)>,
                     batch: &mut sled::Batch|
     -> Result<usize> {
        let mut prev: Option<Row> = None;
        let mut n = 0;
        for (ts, row) in versions.drain(..).rev() {
            for (k, v) in changes(idx, pk, prev.as_ref(), row.as_ref(), ts)? {
                batch.insert(k, v);
                n += 1;
            }
            prev = row;
        }
        Ok(n)
    };
    for item in table.range(&[0x01u8][..]..) {
        let (k, v) = item?;
        let Some((pk, ts)) = split_versioned(&k) else {
            continue;
        };
        if current.as_deref() != Some(pk) {
            if let Some(prev_pk) = current.take() {
                pending += flush_key(&prev_pk, &mut versions, &mut batch)?;
            }
            current = Some(pk.to_vec());
        }
        versions.push((ts, decode_version(&v)?));
        if pending >= 1024 {
            index.apply_batch(std::mem::take(&mut batch))?;
            pending = 0;
        }
    }
    if let Some(pk) = current {
        flush_key(&pk, &mut versions, &mut batch)?;
    }
    index.apply_batch(batch)?;
    Ok(())
}

/// How a shard reads through an index.
#[derive(Debug, PartialEq)]
pub enum IndexUse<'a> {
    /// Every column fixed by equality: the values in index order.
    Lookup(&'a IndexDef, Vec<Value>),
    /// The first column bounded on both sides.
    Range(&'a IndexDef, ColumnBounds),
}

impl IndexUse<'_> {
    pub fn index(&self) -> &IndexDef {
        match self {
            IndexUse::Lookup(i, _) | IndexUse::Range(i, _) => i,
        }
    }
}

/// The index a filter lets the shard read through: one whose columns it
/// fixes by equality, else one whose first column it bounds on both sides
/// (a one-sided range may cover most of the table, which a scan reads
/// faster).
pub fn choose<'a>(table: &'a TableDef, filter: Option<&Expr>) -> Option<IndexUse<'a>> {
    let f = filter?;
    let mut eq: Vec<(usize, Value)> = Vec::new();
    equalities(f, table, &mut eq);
    let lookup = table.indexes.iter().find_map(|idx| {
        let vals: Option<Vec<Value>> = idx
            .columns
            .iter()
            .map(|c| eq.iter().find(|(col, _)| col == c).map(|(_, v)| v.clone()))
            .collect();
        vals.map(|v| IndexUse::Lookup(idx, v))
    });
    lookup.or_else(|| {
        table.indexes.iter().find_map(|idx| {
            let col = *idx.columns.first()?;
            let b = ColumnBounds::of(f, col, &table.columns[col].ty);
            (b.lo.is_some() && b.hi.is_some()).then_some(IndexUse::Range(idx, b))
        })
    })
}

/// The key range of index entries whose first column lies within `b`.
pub fn entry_range(b: &ColumnBounds) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let enc = |v: &Value| encode_key(std::slice::from_ref(v));
    let start = match &b.lo {
        None => Bound::Unbounded,
        Some((v, true)) => Bound::Included(enc(v)),
        Some((v, false)) => prefix_end(&enc(v)).map_or(Bound::Unbounded, Bound::Included),
    };
    let end = match &b.hi {
        None => Bound::Unbounded,
        Some((v, true)) => prefix_end(&enc(v)).map_or(Bound::Unbounded, Bound::Excluded),
        Some((v, false)) => Bound::Excluded(enc(v)),
    };
    (start, end)
}

/// The primary-key bytes of an index entry (after its `columns` values).
pub fn entry_pk(entry: &[u8], columns: usize) -> Option<&[u8]> {
    let mut at = 0;
    for _ in 0..columns {
        at += encoded_len(&entry[at..])?;
    }
    Some(&entry[at..])
}

fn equalities(e: &Expr, table: &TableDef, out: &mut Vec<(usize, Value)>) {
    match e {
        Expr::Binary(BinaryOp::And, l, r) => {
            equalities(l, table, out);
            equalities(r, table, out);
        }
        Expr::Binary(BinaryOp::Eq, l, r) => {
            let (col, lit) = match (l.as_ref(), r.as_ref()) {
                (Expr::Column(c), Expr::Literal(v)) | (Expr::Literal(v), Expr::Column(c)) => {
                    (*c, v)
                }
                _ => return,
            };
            let Some(def) = table.columns.get(col) else {
                return;
            };
            // Only values that convert to the column's type unchanged, so the
            // entry bytes match what was stored.
            if lit.is_null() {
                return;
            }
            if let Ok(v) = lit.clone().cast(&def.ty) {
                if matches!(v.sql_cmp(lit), Ok(Some(std::cmp::Ordering::Equal))) {
                    out.push((col, v));
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn idx() -> IndexDef {
        IndexDef {
            name: "i".into(),
            id: 9,
            columns: vec![1],
        }
    }

    #[test]
    fn changed_values_move_the_entry() {
        let pk = encode_key(&[Value::Int4(1)]);
        let old = vec![Value::Int4(1), Value::Text("a".into())];
        let new = vec![Value::Int4(1), Value::Text("b".into())];
        let c = changes(&idx(), &pk, Some(&old), Some(&new), 5).unwrap();
        assert_eq!(c.len(), 2, "a tombstone for a, an entry for b");
        let same = changes(&idx(), &pk, Some(&old), Some(&old), 6).unwrap();
        assert!(same.is_empty(), "unchanged index values write nothing");
        let gone = changes(&idx(), &pk, Some(&old), None, 7).unwrap();
        assert_eq!(gone.len(), 1);
    }
}
