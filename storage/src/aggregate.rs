//! Aggregates (count, sum, avg, min, max, with DISTINCT and FILTER) and
//! grouping, in one step or split in two: each shard turns its rows into
//! partial states per group, and the proxy merges them into final values.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::expr::Expr;
use crate::func::numeric_div;
use crate::schema::DataType;
use crate::value::{Row, Value};

type Result<T> = std::result::Result<T, EvalError>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AggFunc {
    Count,
    Sum,
    Avg,
    Min,
    Max,
}

/// One aggregate call; `arg == None` is `count(*)`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AggCall {
    pub func: AggFunc,
    pub arg: Option<Expr>,
    pub distinct: bool,
    /// Type of the argument (decides the accumulator).
    pub arg_ty: Option<DataType>,
    /// `FILTER (WHERE ...)`: only rows passing it are aggregated.
    pub filter: Option<Expr>,
}

/// GROUP BY: rows become `[keys.., aggregates..]`, one per group.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Aggregate {
    pub keys: Vec<Expr>,
    pub calls: Vec<AggCall>,
}

/// Values ordered for grouping and DISTINCT: NULLs equal each other, and
/// numbers compare by value.
#[derive(Clone, Debug)]
pub struct GroupKey(pub Vec<Value>);

impl PartialEq for GroupKey {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for GroupKey {}
impl PartialOrd for GroupKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for GroupKey {
    fn cmp(&self, other: &Self) -> Ordering {
        for (a, b) in self.0.iter().zip(&other.0) {
            let o = a.sort_cmp(b);
            if o != Ordering::Equal {
                return o;
            }
        }
        self.0.len().cmp(&other.0.len())
    }
}

enum Acc {
    Count(i64),
    /// Exact integer sum (sum of int2/int4, and of int8 as numeric).
    Int(Option<i128>),
    Dec(Option<Decimal>),
    Float(Option<f64>),
    Extreme(Option<Value>),
}

/// One aggregate's running state in one group.
struct State {
    acc: Acc,
    count: i64,
    seen: Option<BTreeSet<GroupKey>>,
}

fn overflow(ty: &str) -> EvalError {
    EvalError::OutOfRange(format!("{ty} out of range"))
}

impl State {
    fn new(call: &AggCall) -> State {
        let acc = match (call.func, call.arg_ty) {
            (AggFunc::Count, _) => Acc::Count(0),
            (AggFunc::Min | AggFunc::Max, _) => Acc::Extreme(None),
            (_, Some(DataType::Float8)) => Acc::Float(None),
            (_, Some(DataType::Numeric { .. })) => Acc::Dec(None),
            _ => Acc::Int(None),
        };
        State {
            acc,
            count: 0,
            seen: call.distinct.then(BTreeSet::new),
        }
    }

    fn update(&mut self, call: &AggCall, row: &Row) -> Result<()> {
        if let Some(f) = &call.filter {
            if !f.matches(row)? {
                return Ok(());
            }
        }
        let v = match &call.arg {
            None => Value::Bool(true),
            Some(e) => e.eval(row)?,
        };
        self.add(call, v)
    }

    /// Adds one argument value.
    fn add(&mut self, call: &AggCall, v: Value) -> Result<()> {
        if v.is_null() {
            return Ok(());
        }
        if let Some(seen) = &mut self.seen {
            if !seen.insert(GroupKey(vec![v.clone()])) {
                return Ok(());
            }
        }
        self.count += 1;
        match &mut self.acc {
            Acc::Count(n) => *n += 1,
            Acc::Int(s) => {
                let x = v.as_i64().unwrap_or(0) as i128;
                *s = Some(s.unwrap_or(0) + x);
            }
            Acc::Dec(s) => {
                let x = match v {
                    Value::Numeric(d) => d,
                    other => Decimal::from(other.as_i64().unwrap_or(0)),
                };
                let sum = match s {
                    Some(cur) => cur.checked_add(x).ok_or(EvalError::NumericOverflow)?,
                    None => x,
                };
                *s = Some(sum);
            }
            Acc::Float(s) => {
                let x = match v {
                    Value::Float8(f) => f,
                    _ => 0.0,
                };
                *s = Some(s.unwrap_or(0.0) + x);
            }
            Acc::Extreme(cur) => {
                let replace = match cur {
                    None => true,
                    Some(c) => {
                        let o = v.sort_cmp(c);
                        if call.func == AggFunc::Max {
                            o == Ordering::Greater
                        } else {
                            o == Ordering::Less
                        }
                    }
                };
                if replace {
                    *cur = Some(v);
                }
            }
        }
        Ok(())
    }

    /// The state as two values, `[accumulator, count]`, for [`State::merge`].
    fn partial(self) -> Result<[Value; 2]> {
        let acc = match self.acc {
            Acc::Count(c) => Value::Int8(c),
            Acc::Int(s) => match s {
                Some(s) => Value::Numeric(
                    Decimal::try_from_i128_with_scale(s, 0)
                        .map_err(|_| EvalError::NumericOverflow)?,
                ),
                None => Value::Null,
            },
            Acc::Dec(s) => s.map_or(Value::Null, Value::Numeric),
            Acc::Float(s) => s.map_or(Value::Null, Value::Float8),
            Acc::Extreme(v) => v.unwrap_or(Value::Null),
        };
        Ok([acc, Value::Int8(self.count)])
    }

    /// Folds in another state's partial (from [`State::partial`]).
    fn merge(&mut self, call: &AggCall, acc: &Value, count: &Value) -> Result<()> {
        self.count += count.as_i64().unwrap_or(0);
        if acc.is_null() {
            return Ok(());
        }
        match &mut self.acc {
            Acc::Count(n) => *n += acc.as_i64().unwrap_or(0),
            Acc::Int(s) => {
                let x = match acc {
                    Value::Numeric(d) => d.to_i128().ok_or(EvalError::NumericOverflow)?,
                    other => i128::from(other.as_i64().unwrap_or(0)),
                };
                *s = Some(s.unwrap_or(0) + x);
            }
            Acc::Dec(_) | Acc::Float(_) | Acc::Extreme(_) => {
                // Sums and extremes merge exactly like one more value.
                let counted = self.count;
                self.add(call, acc.clone())?;
                self.count = counted;
            }
        }
        Ok(())
    }

    fn finish(self, call: &AggCall) -> Result<Value> {
        let n = self.count;
        Ok(match (call.func, self.acc) {
            (_, Acc::Count(c)) => Value::Int8(c),
            (_, Acc::Extreme(v)) => v.unwrap_or(Value::Null),
            (AggFunc::Sum, Acc::Int(Some(s))) => match call.arg_ty {
                Some(DataType::Int8) => Value::Numeric(
                    Decimal::try_from_i128_with_scale(s, 0)
                        .map_err(|_| EvalError::NumericOverflow)?,
                ),
                _ => Value::Int8(i64::try_from(s).map_err(|_| overflow("bigint"))?),
            },
            (AggFunc::Sum, Acc::Dec(Some(d))) => Value::Numeric(d),
            (AggFunc::Sum, Acc::Float(Some(f))) => Value::Float8(f),
            (AggFunc::Avg, Acc::Int(Some(s))) => {
                let sum = Decimal::try_from_i128_with_scale(s, 0)
                    .map_err(|_| EvalError::NumericOverflow)?;
                Value::Numeric(numeric_div(sum, Decimal::from(n))?)
            }
            (AggFunc::Avg, Acc::Dec(Some(d))) => Value::Numeric(numeric_div(d, Decimal::from(n))?),
            (AggFunc::Avg, Acc::Float(Some(f))) => Value::Float8(f / n as f64),
            _ => Value::Null,
        })
    }
}

/// Groups in insertion order, each with one state per aggregate call.
struct Groups<'a> {
    agg: &'a Aggregate,
    states: BTreeMap<GroupKey, Vec<State>>,
    order: Vec<GroupKey>,
}

impl<'a> Groups<'a> {
    fn new(agg: &'a Aggregate) -> Self {
        let mut g = Groups {
            agg,
            states: BTreeMap::new(),
            order: Vec::new(),
        };
        // No keys: exactly one group, even over no input.
        if agg.keys.is_empty() {
            g.states(GroupKey(Vec::new()));
        }
        g
    }

    fn states(&mut self, key: GroupKey) -> &mut Vec<State> {
        if !self.states.contains_key(&key) {
            self.order.push(key.clone());
        }
        let calls = &self.agg.calls;
        self.states
            .entry(key)
            .or_insert_with(|| calls.iter().map(State::new).collect())
    }

    /// Adds one source row.
    fn add_row(&mut self, row: &Row) -> Result<()> {
        let key = GroupKey(
            self.agg
                .keys
                .iter()
                .map(|k| k.eval(row))
                .collect::<Result<_>>()?,
        );
        let agg = self.agg;
        for (s, call) in self.states(key).iter_mut().zip(&agg.calls) {
            s.update(call, row)?;
        }
        Ok(())
    }

    /// The groups in first-seen order, each as its key and states.
    fn into_groups(mut self) -> impl Iterator<Item = (Vec<Value>, Vec<State>)> {
        let order = std::mem::take(&mut self.order);
        order.into_iter().map(move |k| {
            let states = self.states.remove(&k).unwrap_or_default();
            (k.0, states)
        })
    }

    /// `[keys.., final values..]` per group.
    fn finish(self) -> Result<Vec<Row>> {
        let calls = &self.agg.calls;
        self.into_groups()
            .map(|(mut row, states)| {
                for (s, call) in states.into_iter().zip(calls) {
                    row.push(s.finish(call)?);
                }
                Ok(row)
            })
            .collect()
    }
}

/// Groups `rows` and computes the aggregates: one output row per group, or
/// exactly one row when there are no keys (even over no input).
pub fn group(agg: &Aggregate, rows: Vec<Row>) -> Result<Vec<Row>> {
    let mut groups = Groups::new(agg);
    for row in &rows {
        groups.add_row(row)?;
    }
    groups.finish()
}

/// Partial aggregation over one shard's rows: `[keys.., (acc, count) per
/// call..]` per group. `agg` must have no DISTINCT calls (their values
/// are grouped on instead, see [`merge_partials`]).
pub struct PartialGroups<'a>(Groups<'a>);

impl<'a> PartialGroups<'a> {
    pub fn new(agg: &'a Aggregate) -> Self {
        PartialGroups(Groups::new(agg))
    }

    pub fn add_row(&mut self, row: &Row) -> Result<()> {
        self.0.add_row(row)
    }

    /// Groups seen so far.
    pub fn len(&self) -> usize {
        self.0.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.order.is_empty()
    }

    pub fn finish(self) -> Result<Vec<Row>> {
        self.0
            .into_groups()
            .map(|(mut row, states)| {
                for s in states {
                    row.extend(s.partial()?);
                }
                Ok(row)
            })
            .collect()
    }
}

/// Final aggregation at the proxy over the shards' partial rows.
///
/// `final_agg` is the statement's aggregate. The shards grouped by its keys
/// followed by `distinct_arg` when that is set (the one argument all its
/// DISTINCT calls share), and computed partials of its other calls: partial
/// rows are `[keys.., distinct value?, (acc, count) per non-DISTINCT call..]`.
/// Returns `[keys.., final values..]` per group, as [`group`] does.
pub fn merge_partials(
    final_agg: &Aggregate,
    distinct_arg: bool,
    rows: Vec<Row>,
) -> Result<Vec<Row>> {
    let nkeys = final_agg.keys.len();
    let first_partial = nkeys + usize::from(distinct_arg);
    let mut groups = Groups::new(final_agg);
    for row in rows {
        let key = GroupKey(row[..nkeys].to_vec());
        let mut next = first_partial;
        for (s, call) in groups.states(key).iter_mut().zip(&final_agg.calls) {
            if call.distinct {
                s.add(call, row[nkeys].clone())?;
            } else {
                s.merge(call, &row[next], &row[next + 1])?;
                next += 2;
            }
        }
    }
    groups.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(func: AggFunc, col: usize, ty: DataType, distinct: bool) -> AggCall {
        AggCall {
            func,
            arg: Some(Expr::Column(col)),
            distinct,
            arg_ty: Some(ty),
            filter: None,
        }
    }

    /// Splitting rows over "shards", aggregating partially and merging gives
    /// what one pass over all rows gives.
    #[test]
    fn partial_then_merge_equals_one_pass() {
        let rows: Vec<Row> = (0..100i32)
            .map(|i| {
                vec![
                    Value::Int4(i % 3),
                    if i % 7 == 0 {
                        Value::Null
                    } else {
                        Value::Int4(i)
                    },
                    Value::Int4(i % 5),
                ]
            })
            .collect();
        let plain = vec![
            AggCall {
                func: AggFunc::Count,
                arg: None,
                distinct: false,
                arg_ty: None,
                filter: None,
            },
            call(AggFunc::Count, 1, DataType::Int4, false),
            call(AggFunc::Sum, 1, DataType::Int4, false),
            call(AggFunc::Avg, 1, DataType::Int4, false),
            call(AggFunc::Min, 1, DataType::Int4, false),
            call(AggFunc::Max, 1, DataType::Int4, false),
        ];
        let mut calls = plain.clone();
        calls.push(call(AggFunc::Count, 2, DataType::Int4, true));
        let full = Aggregate {
            keys: vec![Expr::Column(0)],
            calls,
        };
        let want = group(&full, rows.clone()).unwrap();
        // Shards group by the key and the DISTINCT argument.
        let shard_agg = Aggregate {
            keys: vec![Expr::Column(0), Expr::Column(2)],
            calls: plain,
        };
        let mut partials = Vec::new();
        for shard in rows.chunks(17) {
            let mut g = PartialGroups::new(&shard_agg);
            for r in shard {
                g.add_row(r).unwrap();
            }
            partials.extend(g.finish().unwrap());
        }
        let mut got = merge_partials(&full, true, partials).unwrap();
        let mut want = want;
        got.sort_by_key(|a| GroupKey(a.clone()));
        want.sort_by_key(|a| GroupKey(a.clone()));
        assert_eq!(got, want);
    }

    #[test]
    fn no_keys_over_no_rows_is_one_row() {
        let agg = Aggregate {
            keys: vec![],
            calls: vec![call(AggFunc::Sum, 0, DataType::Int8, false)],
        };
        let partial = PartialGroups::new(&agg).finish().unwrap();
        assert_eq!(
            merge_partials(&agg, false, partial).unwrap(),
            vec![vec![Value::Null]]
        );
    }
}
