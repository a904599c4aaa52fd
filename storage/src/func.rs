//! Scalar SQL functions with PostgreSQL's semantics. The binder has already
//! checked argument counts and types; NULL in gives NULL out unless a
//! function says otherwise.

use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::value::{to_decimal, Value};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Func {
    Lower,
    Upper,
    /// Characters, not bytes.
    Length,
    /// `substring(s, from [, for])`, 1-based like SQL.
    Substring,
    Abs,
    /// `round(numeric [, scale])` or `round(float8)` (ties to even for floats).
    Round,
    Ceil,
    Floor,
    Trim,
    LTrim,
    RTrim,
    Replace,
    /// `strpos(s, sub)` / `position(sub IN s)`: 1-based, 0 when absent.
    Position,
    Left,
    Right,
    Repeat,
    /// `concat(...)`: NULL arguments are skipped.
    Concat,
    /// `x ^ y` on double precision.
    Power,
    /// `now()`: the current time as timestamptz.
    Now,
    /// The row id of a table without a primary key: never repeated by this
    /// process, and past any id of an earlier run unless the wall clock
    /// went back (a repeat would be a 23505, never an overwrite).
    RowId,
}

/// Row ids follow wall time like commit timestamps do (microseconds and a
/// counter), so they need no state on disk.
static ROW_IDS: crate::clock::HybridClock =
    crate::clock::HybridClock::new(std::time::Duration::ZERO);

impl Func {
    /// True if a NULL argument makes the result NULL without evaluation.
    fn strict(self) -> bool {
        !matches!(self, Func::Concat)
    }

    pub fn eval(self, args: Vec<Value>) -> Result<Value, EvalError> {
        if self.strict() && args.iter().any(Value::is_null) {
            return Ok(Value::Null);
        }
        let text = |i: usize| -> String { args[i].to_text().unwrap_or_default() };
        let int = |i: usize| -> i64 { args[i].as_i64().unwrap_or(0) };
        Ok(match self {
            Func::Lower => Value::Text(text(0).to_lowercase()),
            Func::Upper => Value::Text(text(0).to_uppercase()),
            Func::Length => match &args[0] {
                Value::Bytea(b) => Value::Int4(b.len() as i32),
                _ => Value::Int4(text(0).chars().count() as i32),
            },
            Func::Substring => {
                let s = text(0);
                let from = int(1);
                let (start, end) = match args.get(2) {
                    Some(len) => {
                        let len = len.as_i64().unwrap_or(0);
                        if len < 0 {
                            return Err(EvalError::Invalid(
                                "22011",
                                "negative substring length not allowed".into(),
                            ));
                        }
                        (from, from.saturating_add(len))
                    }
                    None => (from, i64::MAX),
                };
                let start = start.max(1);
                if end <= start {
                    Value::Text(String::new())
                } else {
                    let skip = (start - 1) as usize;
                    let take = usize::try_from(end - start).unwrap_or(usize::MAX);
                    Value::Text(s.chars().skip(skip).take(take).collect())
                }
            }
            Func::Abs => match &args[0] {
                Value::Int2(n) => Value::Int2(n.checked_abs().ok_or_else(|| range("smallint"))?),
                Value::Int4(n) => Value::Int4(n.checked_abs().ok_or_else(|| range("integer"))?),
                Value::Int8(n) => Value::Int8(n.checked_abs().ok_or_else(|| range("bigint"))?),
                Value::Float8(f) => Value::Float8(f.abs()),
                Value::Float4(f) => Value::Float4(f.abs()),
                Value::Numeric(d) => Value::Numeric(d.abs()),
                other => return Err(no_function("abs", other)),
            },
            Func::Round => match &args[0] {
                Value::Float8(f) => Value::Float8(f.round_ties_even()),
                v => {
                    let d = to_decimal(v).ok_or_else(|| no_function("round", v))?;
                    let scale = args.get(1).and_then(Value::as_i64).unwrap_or(0);
                    Value::Numeric(round_decimal(d, scale))
                }
            },
            Func::Ceil | Func::Floor => match &args[0] {
                Value::Float8(f) => Value::Float8(if self == Func::Ceil {
                    f.ceil()
                } else {
                    f.floor()
                }),
                v => {
                    let d = to_decimal(v).ok_or_else(|| no_function("ceil", v))?;
                    Value::Numeric(if self == Func::Ceil {
                        d.ceil()
                    } else {
                        d.floor()
                    })
                }
            },
            Func::Trim | Func::LTrim | Func::RTrim => {
                let s = text(0);
                let chars: Vec<char> = match args.get(1) {
                    Some(v) => v.to_text().unwrap_or_default().chars().collect(),
                    None => vec![' '],
                };
                let pat = |c: char| chars.contains(&c);
                Value::Text(match self {
                    Func::Trim => s.trim_matches(pat).to_string(),
                    Func::LTrim => s.trim_start_matches(pat).to_string(),
                    _ => s.trim_end_matches(pat).to_string(),
                })
            }
            Func::Replace => {
                let from = text(1);
                if from.is_empty() {
                    Value::Text(text(0))
                } else {
                    Value::Text(text(0).replace(&from, &text(2)))
                }
            }
            Func::Position => {
                let (s, sub) = (text(0), text(1));
                match s.find(&sub) {
                    Some(byte) => Value::Int4(s[..byte].chars().count() as i32 + 1),
                    None => Value::Int4(0),
                }
            }
            Func::Left | Func::Right => {
                let s: Vec<char> = text(0).chars().collect();
                let n = int(1);
                let len = s.len() as i64;
                let keep = if n >= 0 { n.min(len) } else { (len + n).max(0) } as usize;
                Value::Text(if self == Func::Left {
                    s[..keep].iter().collect()
                } else {
                    s[s.len() - keep..].iter().collect()
                })
            }
            Func::Repeat => {
                let n = int(1).max(0) as usize;
                let s = text(0);
                if s.len().saturating_mul(n) > 1 << 28 {
                    return Err(EvalError::Invalid(
                        "54000",
                        "requested length too large".into(),
                    ));
                }
                Value::Text(s.repeat(n))
            }
            Func::Concat => Value::Text(args.iter().filter_map(Value::to_text).collect()),
            Func::Now => Value::Timestamptz(chrono::Utc::now().timestamp_micros()),
            Func::RowId => Value::Int8(ROW_IDS.now().0 as i64),
            Func::Power => {
                let (Value::Float8(x), Value::Float8(y)) = (&args[0], &args[1]) else {
                    return Err(no_function("power", &args[0]));
                };
                if *x == 0.0 && *y < 0.0 {
                    return Err(EvalError::Invalid(
                        "2201F",
                        "zero raised to a negative power is undefined".into(),
                    ));
                }
                if *x < 0.0 && y.fract() != 0.0 {
                    return Err(EvalError::Invalid(
                        "2201F",
                        "a negative number raised to a non-integer power yields a complex result"
                            .into(),
                    ));
                }
                let r = x.powf(*y);
                if r.is_infinite() && x.is_finite() && y.is_finite() {
                    return Err(EvalError::OutOfRange("value out of range: overflow".into()));
                }
                Value::Float8(r)
            }
        })
    }
}

fn range(ty: &str) -> EvalError {
    EvalError::OutOfRange(format!("{ty} out of range"))
}

fn no_function(name: &str, v: &Value) -> EvalError {
    EvalError::NoOperator(format!(
        "{name}({})",
        v.data_type().map(|t| t.pg_name()).unwrap_or("unknown")
    ))
}

/// `round(numeric, s)`: half away from zero; a negative `s` rounds to tens,
/// hundreds, ... The result keeps `s` digits after the point (at least 0).
pub fn round_decimal(d: Decimal, scale: i64) -> Decimal {
    if scale >= 0 {
        let s = scale.min(28) as u32;
        let mut r = d.round_dp_with_strategy(s, RoundingStrategy::MidpointAwayFromZero);
        r.rescale(s);
        r
    } else {
        let p = Decimal::from(10i64.pow((-scale).min(18) as u32));
        let mut r = (d / p).round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero) * p;
        r.rescale(0);
        r
    }
}

/// PostgreSQL's result scale for numeric division (`select_div_scale`): at
/// least 16 significant digits, and never less than either input's scale.
pub fn div_scale(x: Decimal, y: Decimal) -> u32 {
    let (w1, f1) = base10000_head(x);
    let (w2, f2) = base10000_head(y);
    let mut qweight = w1 - w2;
    if f1 <= f2 {
        qweight -= 1;
    }
    let rscale = (16 - qweight * 4)
        .max(x.scale() as i64)
        .max(y.scale() as i64)
        .max(0);
    rscale.min(28) as u32
}

/// Weight and first digit of `d` in base 10000, as PostgreSQL stores numerics.
fn base10000_head(d: Decimal) -> (i64, i64) {
    let mut a = d.abs();
    if a.is_zero() {
        return (0, 0);
    }
    let base = Decimal::from(10_000);
    let mut weight = 0i64;
    while a >= base {
        a /= base;
        weight += 1;
    }
    while a < Decimal::ONE {
        a *= base;
        weight -= 1;
    }
    (weight, a.trunc().to_i64().unwrap_or(0))
}

/// Divides numerics with PostgreSQL's result scale, rounding half away from zero.
pub fn numeric_div(x: Decimal, y: Decimal) -> Result<Decimal, EvalError> {
    if y.is_zero() {
        return Err(EvalError::DivisionByZero);
    }
    let scale = div_scale(x, y);
    let q = x.checked_div(y).ok_or(EvalError::NumericOverflow)?;
    let mut r = q.round_dp_with_strategy(scale, RoundingStrategy::MidpointAwayFromZero);
    r.rescale(scale);
    Ok(r)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn dec(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn division_scale_matches_postgres() {
        // Figures printed by PostgreSQL 15.
        assert_eq!(
            numeric_div(dec("7.0"), dec("3")).unwrap().to_string(),
            "2.3333333333333333"
        );
        assert_eq!(
            numeric_div(dec("1"), dec("3.0")).unwrap().to_string(),
            "0.33333333333333333333"
        );
        assert_eq!(
            numeric_div(dec("10"), dec("4")).unwrap().to_string(),
            "2.5000000000000000"
        );
        assert_eq!(
            numeric_div(dec("3"), dec("2")).unwrap().to_string(),
            "1.5000000000000000"
        );
    }

    #[test]
    fn round_and_substring() {
        assert_eq!(round_decimal(dec("2.5"), 0).to_string(), "3");
        assert_eq!(round_decimal(dec("1.2345"), 2).to_string(), "1.23");
        assert_eq!(round_decimal(dec("1250"), -2).to_string(), "1300");
        let sub = Func::Substring
            .eval(vec![
                Value::Text("héllo".into()),
                Value::Int4(2),
                Value::Int4(3),
            ])
            .unwrap();
        assert_eq!(sub, Value::Text("éll".into()));
        let before = Func::Substring
            .eval(vec![
                Value::Text("hello".into()),
                Value::Int4(-1),
                Value::Int4(3),
            ])
            .unwrap();
        assert_eq!(before, Value::Text("h".into()));
    }
}
