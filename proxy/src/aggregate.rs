//! Aggregate accumulators (count, sum, avg, min, max, with DISTINCT) and the
//! grouping step that turns source rows into `[keys.., aggregates..]` rows.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};

use fortress_storage::func::numeric_div;
use fortress_storage::{DataType, EvalError, Row, Value};
use rust_decimal::Decimal;

use crate::error::Result;
use crate::plan::{AggCall, AggFunc, Aggregate};

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

/// Groups `rows` and computes the aggregates: one output row per group, or
/// exactly one row when there are no keys (even over no input).
pub fn group(agg: &Aggregate, rows: Vec<Row>) -> Result<Vec<Row>> {
    let mut groups: BTreeMap<GroupKey, Vec<State>> = BTreeMap::new();
    let mut order: Vec<GroupKey> = Vec::new();
    let fresh = || agg.calls.iter().map(State::new).collect::<Vec<_>>();
    if agg.keys.is_empty() {
        groups.insert(GroupKey(Vec::new()), fresh());
        order.push(GroupKey(Vec::new()));
    }
    for row in rows {
        let key = GroupKey(
            agg.keys
                .iter()
                .map(|k| k.eval(&row))
                .collect::<std::result::Result<_, _>>()?,
        );
        let states = match groups.get_mut(&key) {
            Some(s) => s,
            None => {
                order.push(key.clone());
                groups.entry(key).or_insert_with(fresh)
            }
        };
        for (s, call) in states.iter_mut().zip(&agg.calls) {
            s.update(call, &row)?;
        }
    }
    let mut out = Vec::with_capacity(order.len());
    for key in order {
        let states = groups.remove(&key).unwrap_or_default();
        let mut row = key.0;
        for (s, call) in states.into_iter().zip(&agg.calls) {
            row.push(s.finish(call)?);
        }
        out.push(row);
    }
    Ok(out)
}
