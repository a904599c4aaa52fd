//! Placement: which shard holds a row, by its table's strategy (hash ring,
//! range split points, time buckets, value list, or list then hash).

use std::ops::Bound;

use chrono::Datelike;
use fortress_storage::keycodec::canonical;
use fortress_storage::schema::{Strategy, TimeInterval};
use fortress_storage::value::{date_to_naive, MICROS_PER_DAY};
use fortress_storage::{Row, ShardId, TableDef, Value};

use super::ring::{key_hash, Ring};
use crate::error::{ProxyError, Result};

/// The shard owning a row with this shard-key value on the hash ring.
pub fn ring_shard(ring: &Ring, v: &Value) -> ShardId {
    ring.shard_for_key(&canonical(v))
}

/// The shard holding `row` of `table` (for a replicated table: shard 0,
/// the first of the shards that all hold it).
pub fn shard_for_row(ring: &Ring, table: &TableDef, row: &Row) -> Result<ShardId> {
    let hash = match &table.strategy {
        Strategy::Hybrid { hash_key, .. } => row.get(*hash_key),
        _ => None,
    };
    place(ring, table, &row[table.shard_key], hash)
}

/// The shard holding the row whose primary-key values are `key` (in key
/// order).
pub fn shard_for_key(ring: &Ring, table: &TableDef, key: &[Value]) -> Result<ShardId> {
    let at = |col: usize| table.primary_key.iter().position(|&c| c == col);
    let hash = match &table.strategy {
        Strategy::Hybrid { hash_key, .. } => at(*hash_key).and_then(|i| key.get(i)),
        _ => None,
    };
    place(ring, table, &key[table.shard_key_in_pk()], hash)
}

fn place(ring: &Ring, table: &TableDef, v: &Value, hash: Option<&Value>) -> Result<ShardId> {
    if table.replicated {
        return Ok(0);
    }
    let n = ring.shards();
    let shard = match &table.strategy {
        Strategy::Hash => ring_shard(ring, v),
        Strategy::Range { splits } => range_shard(splits, v),
        Strategy::Time { interval } => bucket_shard(time_bucket(*interval, v), n),
        Strategy::List { values, default } => values
            .iter()
            .find(|(x, _)| same(x, v))
            .map(|(_, s)| *s)
            .or(*default)
            .ok_or_else(|| unlisted(table, v))?,
        Strategy::Hybrid { .. } => {
            let group = hybrid_group(table, v).ok_or_else(|| unlisted(table, v))?;
            let h = hash.map_or(0, |h| key_hash(&canonical(h)));
            group[(h % group.len() as u64) as usize]
        }
    };
    Ok(shard)
}

/// The shards that may hold rows whose shard key equals `v`: one, or a
/// hybrid table's group (none for a value no shard is listed for).
pub fn shards_for_value(ring: &Ring, table: &TableDef, v: &Value) -> Vec<ShardId> {
    match &table.strategy {
        Strategy::Hybrid { .. } => hybrid_group(table, v)
            .map(<[_]>::to_vec)
            .unwrap_or_default(),
        _ => place(ring, table, v, None).into_iter().collect(),
    }
}

/// The shards that may hold shard-key values between `lo` and `hi`, when
/// the strategy orders values (range, time); `None` means every shard.
pub fn shards_for_range(
    ring: &Ring,
    table: &TableDef,
    lo: Bound<&Value>,
    hi: Bound<&Value>,
) -> Option<Vec<ShardId>> {
    match &table.strategy {
        Strategy::Range { splits } => {
            let first = match lo {
                Bound::Unbounded => 0,
                Bound::Included(v) | Bound::Excluded(v) => range_shard(splits, v),
            };
            let last = match hi {
                Bound::Unbounded => splits.len() as ShardId,
                Bound::Included(v) => range_shard(splits, v),
                // `< split` ends in the range before the split.
                Bound::Excluded(v) => {
                    let s = range_shard(splits, v);
                    if s > 0 && same(&splits[s as usize - 1], v) {
                        s - 1
                    } else {
                        s
                    }
                }
            };
            Some((first..=last.max(first)).collect())
        }
        Strategy::Time { interval } => {
            let (Bound::Included(lo) | Bound::Excluded(lo)) = lo else {
                return None;
            };
            let b = match hi {
                Bound::Unbounded => return None,
                Bound::Included(hi) => time_bucket(*interval, hi),
                // `< t` ends at the instant before t.
                Bound::Excluded(hi) => time_bucket(*interval, &just_before(hi)),
            };
            let a = time_bucket(*interval, lo);
            let n = ring.shards();
            if b < a {
                return Some(Vec::new());
            }
            if b - a + 1 >= i64::from(n) {
                return None;
            }
            let mut shards: Vec<ShardId> = (a..=b).map(|k| bucket_shard(k, n)).collect();
            shards.sort_unstable();
            shards.dedup();
            Some(shards)
        }
        _ => None,
    }
}

/// Range `i` is `[splits[i-1], splits[i])`: the number of splits at or
/// below `v`.
fn range_shard(splits: &[Value], v: &Value) -> ShardId {
    splits
        .iter()
        .take_while(|s| matches!(s.sql_cmp(v), Ok(Some(o)) if o.is_le()))
        .count() as ShardId
}

fn bucket_shard(bucket: i64, shards: u32) -> ShardId {
    bucket.rem_euclid(i64::from(shards)) as ShardId
}

/// The bucket of a date or timestamp: days, months or years since 1970.
pub fn time_bucket(interval: TimeInterval, v: &Value) -> i64 {
    let days = match v {
        Value::Date(d) => i64::from(*d),
        Value::Timestamp(t) | Value::Timestamptz(t) => t.div_euclid(MICROS_PER_DAY),
        _ => 0,
    };
    let date = i32::try_from(days).ok().and_then(date_to_naive);
    match (interval, date) {
        (TimeInterval::Day, _) | (_, None) => days,
        (TimeInterval::Month, Some(d)) => i64::from(d.year() - 1970) * 12 + i64::from(d.month0()),
        (TimeInterval::Year, Some(d)) => i64::from(d.year() - 1970),
    }
}

/// The latest date or timestamp below `v`.
fn just_before(v: &Value) -> Value {
    match v {
        Value::Date(d) => Value::Date(d.saturating_sub(1)),
        Value::Timestamp(t) => Value::Timestamp(t.saturating_sub(1)),
        Value::Timestamptz(t) => Value::Timestamptz(t.saturating_sub(1)),
        other => other.clone(),
    }
}

fn hybrid_group<'a>(table: &'a TableDef, v: &Value) -> Option<&'a [ShardId]> {
    let Strategy::Hybrid {
        groups, default, ..
    } = &table.strategy
    else {
        return None;
    };
    groups
        .iter()
        .find(|(x, _)| same(x, v))
        .map(|(_, g)| g.as_slice())
        .or(default.as_deref())
        .filter(|g| !g.is_empty())
}

fn same(a: &Value, b: &Value) -> bool {
    matches!(a.sql_cmp(b), Ok(Some(std::cmp::Ordering::Equal)))
}

fn unlisted(table: &TableDef, v: &Value) -> ProxyError {
    let col = &table.columns[table.shard_key].name;
    let shown = v.to_text().unwrap_or_else(|| "null".into());
    ProxyError::new(
        "23514",
        format!(
            "no shard of table \"{}\" is listed for {col} = {shown}",
            table.name
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use fortress_storage::schema::ColumnDef;
    use fortress_storage::DataType;

    fn table(strategy: Strategy, ty: DataType) -> TableDef {
        let mut t = TableDef::new(
            1,
            "t",
            vec![
                ColumnDef::new("k", ty),
                ColumnDef::new("id", DataType::Int4),
            ],
            vec![0, 1],
        );
        t.strategy = strategy;
        t
    }

    fn ints(v: &[i32]) -> Vec<Value> {
        v.iter().map(|&i| Value::Int4(i)).collect()
    }

    #[test]
    fn range_places_by_split_points_and_prunes_bounds() {
        let ring = Ring::new(4, 16);
        let t = table(
            Strategy::Range {
                splits: ints(&[100, 200, 300]),
            },
            DataType::Int4,
        );
        let at = |k| shard_for_row(&ring, &t, &vec![Value::Int4(k), Value::Int4(0)]).unwrap();
        assert_eq!(
            [at(-5), at(99), at(100), at(250), at(300), at(10_000)],
            [0, 0, 1, 2, 3, 3]
        );
        let (v150, v200, v300) = (Value::Int4(150), Value::Int4(200), Value::Int4(300));
        let r = |lo, hi| shards_for_range(&ring, &t, lo, hi);
        assert_eq!(
            r(Bound::Included(&v150), Bound::Excluded(&v200)),
            Some(vec![1])
        );
        assert_eq!(
            r(Bound::Included(&v150), Bound::Included(&v200)),
            Some(vec![1, 2])
        );
        assert_eq!(
            r(Bound::Excluded(&v200), Bound::Unbounded),
            Some(vec![2, 3])
        );
        assert_eq!(
            r(Bound::Unbounded, Bound::Excluded(&v300)),
            Some(vec![0, 1, 2])
        );
    }

    #[test]
    fn time_buckets_are_months_round_robin() {
        let ring = Ring::new(4, 16);
        let t = table(
            Strategy::Time {
                interval: TimeInterval::Month,
            },
            DataType::Date,
        );
        let d = |s: &str| Value::parse(&DataType::Date, s).unwrap();
        let at = |s: &str| shard_for_row(&ring, &t, &vec![d(s), Value::Int4(0)]).unwrap();
        assert_eq!(at("1970-01-31"), 0);
        assert_eq!(at("1970-02-01"), 1);
        assert_eq!(at("2024-01-15"), at("2024-01-01"));
        assert_ne!(at("2024-01-15"), at("2024-02-01"));
        let (a, b) = (d("2024-01-10"), d("2024-02-20"));
        let two = shards_for_range(&ring, &t, Bound::Included(&a), Bound::Included(&b)).unwrap();
        assert_eq!(two.len(), 2);
        let (mar, apr) = (d("2024-03-01"), d("2024-04-01"));
        let one = shards_for_range(&ring, &t, Bound::Included(&mar), Bound::Excluded(&apr));
        assert_eq!(one.map(|s| s.len()), Some(1));
        let far = d("2024-09-01");
        assert_eq!(
            shards_for_range(&ring, &t, Bound::Included(&a), Bound::Included(&far)),
            None
        );
    }

    #[test]
    fn list_and_hybrid_follow_the_list() {
        let ring = Ring::new(4, 16);
        let text = |s: &str| Value::Text(s.into());
        let list = table(
            Strategy::List {
                values: vec![(text("eu"), 2), (text("us"), 1)],
                default: None,
            },
            DataType::Text,
        );
        let row = |k: &str, id| vec![text(k), Value::Int4(id)];
        assert_eq!(shard_for_row(&ring, &list, &row("eu", 1)).unwrap(), 2);
        let err = shard_for_row(&ring, &list, &row("mars", 1)).unwrap_err();
        assert_eq!(err.sql_state(), "23514");
        let hybrid = table(
            Strategy::Hybrid {
                hash_key: 1,
                groups: vec![(text("eu"), vec![0, 1]), (text("us"), vec![2, 3])],
                default: None,
            },
            DataType::Text,
        );
        let eu: std::collections::BTreeSet<ShardId> = (0..200)
            .map(|id| shard_for_row(&ring, &hybrid, &row("eu", id)).unwrap())
            .collect();
        assert_eq!(eu.into_iter().collect::<Vec<_>>(), vec![0, 1]);
        let key = shard_for_key(&ring, &hybrid, &[text("us"), Value::Int4(7)]).unwrap();
        assert_eq!(key, shard_for_row(&ring, &hybrid, &row("us", 7)).unwrap());
        assert_eq!(shards_for_value(&ring, &hybrid, &text("us")), vec![2, 3]);
    }
}
