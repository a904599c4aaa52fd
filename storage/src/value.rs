//! SQL values: the in-memory and on-disk (serde) form of every datum, with
//! PostgreSQL's text input/output rules and casts.

use std::cmp::Ordering;

use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime};
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::error::EvalError;
use crate::schema::DataType;

/// A row is the values of a table's columns, in column order.
pub type Row = Vec<Value>;

/// Bytes an allocation costs beyond its contents (allocator bookkeeping).
pub const ALLOC_OVERHEAD: usize = 16;

/// Memory a row held in a buffer costs: its vector, each value's slot and
/// what text and bytea values own. What memory bounds (sorts, the result
/// cache, statements' work memory) count rows by.
pub fn row_bytes(row: &[Value]) -> usize {
    std::mem::size_of::<Row>()
        + ALLOC_OVERHEAD
        + std::mem::size_of_val(row)
        + row.iter().map(Value::heap_bytes).sum::<usize>()
}

/// One SQL datum. Dates are days and timestamps microseconds since
/// 1970-01-01 (UTC, no zone).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Value {
    Null,
    Bool(bool),
    Int2(i16),
    Int4(i32),
    Int8(i64),
    Float8(f64),
    Numeric(#[serde(with = "decimal_bytes")] Decimal),
    Text(String),
    Date(i32),
    Timestamp(i64),
    Float4(f32),
    Bytea(Vec<u8>),
    Timestamptz(i64),
    Uuid([u8; 16]),
}

/// Decimals are stored as rust_decimal's fixed 16-byte form: compact and
/// lossless, and independent of any text format.
mod decimal_bytes {
    use rust_decimal::Decimal;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(d: &Decimal, s: S) -> Result<S::Ok, S::Error> {
        d.serialize().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Decimal, D::Error> {
        Ok(Decimal::deserialize(<[u8; 16]>::deserialize(d)?))
    }
}

const EPOCH: NaiveDate = match NaiveDate::from_ymd_opt(1970, 1, 1) {
    Some(d) => d,
    None => panic!("valid epoch"),
};

fn invalid(ty: &DataType, text: &str) -> EvalError {
    EvalError::InvalidText {
        ty: ty.pg_name().to_string(),
        text: text.to_string(),
    }
}

fn out_of_range(ty: &DataType) -> EvalError {
    EvalError::OutOfRange(format!("{} out of range", ty.pg_name()))
}

impl Value {
    /// Heap bytes the value owns beyond its slot.
    pub fn heap_bytes(&self) -> usize {
        match self {
            Value::Text(s) => ALLOC_OVERHEAD + s.len(),
            Value::Bytea(b) => ALLOC_OVERHEAD + b.len(),
            _ => 0,
        }
    }

    pub fn is_null(&self) -> bool {
        matches!(self, Value::Null)
    }

    /// The natural type of a non-null value.
    pub fn data_type(&self) -> Option<DataType> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(_) => DataType::Bool,
            Value::Int2(_) => DataType::Int2,
            Value::Int4(_) => DataType::Int4,
            Value::Int8(_) => DataType::Int8,
            Value::Float8(_) => DataType::Float8,
            Value::Numeric(_) => DataType::Numeric {
                precision: None,
                scale: None,
            },
            Value::Text(_) => DataType::Text,
            Value::Date(_) => DataType::Date,
            Value::Timestamp(_) => DataType::Timestamp,
            Value::Float4(_) => DataType::Float4,
            Value::Bytea(_) => DataType::Bytea,
            Value::Timestamptz(_) => DataType::Timestamptz,
            Value::Uuid(_) => DataType::Uuid,
        })
    }

    /// Integer value of any integer width.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int2(v) => Some(*v as i64),
            Value::Int4(v) => Some(*v as i64),
            Value::Int8(v) => Some(*v),
            _ => None,
        }
    }

    /// Parses PostgreSQL text input for `ty` (22P02 / 22003 on bad input).
    pub fn parse(ty: &DataType, text: &str) -> Result<Value, EvalError> {
        let t = text.trim();
        let v = match ty {
            DataType::Bool => match t.to_ascii_lowercase().as_str() {
                "t" | "true" | "y" | "yes" | "on" | "1" => Value::Bool(true),
                "f" | "false" | "n" | "no" | "off" | "0" => Value::Bool(false),
                _ => return Err(invalid(ty, text)),
            },
            DataType::Int2 | DataType::Int4 | DataType::Int8 => {
                let n: i64 = match t.parse::<i64>() {
                    Ok(n) => n,
                    Err(e) => {
                        let overflow = matches!(
                            e.kind(),
                            std::num::IntErrorKind::PosOverflow
                                | std::num::IntErrorKind::NegOverflow
                        );
                        return Err(if overflow {
                            EvalError::OutOfRange(format!(
                                "value \"{text}\" is out of range for type {}",
                                ty.pg_name()
                            ))
                        } else {
                            invalid(ty, text)
                        });
                    }
                };
                Value::Int8(n).cast(ty).map_err(|_| {
                    EvalError::OutOfRange(format!(
                        "value \"{text}\" is out of range for type {}",
                        ty.pg_name()
                    ))
                })?
            }
            DataType::Float8 => {
                let f = match t.to_ascii_lowercase().as_str() {
                    "infinity" | "+infinity" | "inf" => f64::INFINITY,
                    "-infinity" | "-inf" => f64::NEG_INFINITY,
                    "nan" => f64::NAN,
                    _ => t.parse::<f64>().map_err(|_| invalid(ty, text))?,
                };
                if f.is_infinite() && !t.to_ascii_lowercase().contains("inf") {
                    return Err(EvalError::OutOfRange(format!(
                        "\"{text}\" is out of range for type double precision"
                    )));
                }
                Value::Float8(f)
            }
            DataType::Numeric { .. } => {
                let d = parse_decimal(t).ok_or_else(|| invalid(ty, text))?;
                Value::Numeric(d).cast(ty)?
            }
            DataType::Text | DataType::Varchar(_) | DataType::Name => {
                Value::Text(text.to_string()).cast(ty)?
            }
            DataType::Date => Value::Date(parse_date(t).ok_or_else(|| invalid(ty, text))?),
            DataType::Timestamp => {
                Value::Timestamp(parse_timestamp(t).ok_or_else(|| invalid(ty, text))?)
            }
            DataType::Timestamptz => {
                Value::Timestamptz(parse_timestamptz(t).ok_or_else(|| invalid(ty, text))?)
            }
            DataType::Float4 => match Value::parse(&DataType::Float8, text) {
                Ok(Value::Float8(f)) => {
                    let r = f as f32;
                    if r.is_infinite() && f.is_finite() {
                        return Err(EvalError::OutOfRange(format!(
                            "\"{text}\" is out of range for type real"
                        )));
                    }
                    Value::Float4(r)
                }
                Ok(_) | Err(_) => return Err(invalid(ty, text)),
            },
            DataType::Char(_) => Value::Text(text.to_string()).cast(ty)?,
            DataType::Bytea => Value::Bytea(parse_bytea(text).ok_or_else(|| {
                if text.starts_with("\\x") {
                    EvalError::Invalid("22023", "invalid hexadecimal data".into())
                } else {
                    invalid(ty, text)
                }
            })?),
            DataType::Uuid => Value::Uuid(parse_uuid(t).ok_or_else(|| invalid(ty, text))?),
        };
        Ok(v)
    }

    /// PostgreSQL's text output form (`None` for NULL).
    pub fn to_text(&self) -> Option<String> {
        Some(match self {
            Value::Null => return None,
            Value::Bool(b) => if *b { "t" } else { "f" }.to_string(),
            Value::Int2(v) => v.to_string(),
            Value::Int4(v) => v.to_string(),
            Value::Int8(v) => v.to_string(),
            Value::Float8(f) => format_float8(*f),
            Value::Numeric(d) => d.to_string(),
            Value::Text(s) => s.clone(),
            Value::Date(d) => format_date(*d),
            Value::Timestamp(t) => format_timestamp(*t),
            Value::Float4(f) => format_float4(*f),
            Value::Bytea(b) => {
                let mut s = String::with_capacity(2 + 2 * b.len());
                s.push_str("\\x");
                for byte in b {
                    s.push_str(&format!("{byte:02x}"));
                }
                s
            }
            Value::Timestamptz(t) => format!("{}+00", format_timestamp(*t)),
            Value::Uuid(u) => format_uuid(u),
        })
    }

    /// Converts to `ty` as an assignment or explicit cast would.
    pub fn cast(self, ty: &DataType) -> Result<Value, EvalError> {
        if self.is_null() {
            return Ok(Value::Null);
        }
        let cannot = |v: &Value| EvalError::CannotCast {
            from: v
                .data_type()
                .map(|t| t.pg_name())
                .unwrap_or("unknown")
                .to_string(),
            to: ty.pg_name().to_string(),
        };
        Ok(match (ty, self) {
            (DataType::Text | DataType::Name, Value::Text(s)) => Value::Text(s),
            (DataType::Varchar(max), Value::Text(s)) => {
                if let Some(max) = max {
                    if s.chars().count() > *max as usize {
                        // PostgreSQL allows trailing spaces beyond the limit.
                        let trimmed = s.trim_end_matches(' ');
                        if trimmed.chars().count() > *max as usize {
                            return Err(EvalError::TooLong(format!("character varying({max})")));
                        }
                        return Ok(Value::Text(s.chars().take(*max as usize).collect()));
                    }
                }
                Value::Text(s)
            }
            (DataType::Char(n), Value::Text(s)) => {
                let n = n.unwrap_or(1) as usize;
                let len = s.chars().count();
                if len > n {
                    let trimmed = s.trim_end_matches(' ');
                    if trimmed.chars().count() > n {
                        return Err(EvalError::TooLong(format!("character({n})")));
                    }
                    return Ok(Value::Text(s.chars().take(n).collect()));
                }
                let mut s = s;
                s.extend(std::iter::repeat_n(' ', n - len));
                Value::Text(s)
            }
            (_, Value::Text(s)) => Value::parse(ty, &s)?,
            (DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Name, v) => {
                Value::Text(v.to_text().unwrap_or_default()).cast(ty)?
            }
            (DataType::Bytea, Value::Bytea(b)) => Value::Bytea(b),
            (DataType::Uuid, Value::Uuid(u)) => Value::Uuid(u),
            (DataType::Timestamptz, Value::Timestamptz(t) | Value::Timestamp(t)) => {
                Value::Timestamptz(t)
            }
            (DataType::Timestamptz, Value::Date(d)) => {
                Value::Timestamptz(d as i64 * MICROS_PER_DAY)
            }
            (DataType::Timestamp, Value::Timestamptz(t)) => Value::Timestamp(t),
            (DataType::Date, Value::Timestamptz(t)) => {
                Value::Date(t.div_euclid(MICROS_PER_DAY) as i32)
            }
            (DataType::Float4, v) => match v.cast(&DataType::Float8)? {
                Value::Float8(f) => {
                    let r = f as f32;
                    if r.is_infinite() && f.is_finite() {
                        return Err(EvalError::OutOfRange("value out of range: overflow".into()));
                    }
                    Value::Float4(r)
                }
                other => return Err(cannot(&other)),
            },
            (DataType::Bool, Value::Bool(b)) => Value::Bool(b),
            (DataType::Bool, Value::Int4(n)) => Value::Bool(n != 0),
            (DataType::Int4, Value::Bool(b)) => Value::Int4(b as i32),
            (DataType::Int2 | DataType::Int4 | DataType::Int8, v) => {
                let n: i64 = match v {
                    Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => v.as_i64().unwrap_or(0),
                    Value::Float8(_) | Value::Float4(_) => {
                        let f = match v {
                            Value::Float4(f) => f as f64,
                            Value::Float8(f) => f,
                            _ => 0.0,
                        };
                        let r = f.round_ties_even();
                        if !r.is_finite() || r < i64::MIN as f64 || r >= i64::MAX as f64 {
                            return Err(out_of_range(ty));
                        }
                        r as i64
                    }
                    Value::Numeric(d) => d
                        .round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero)
                        .to_i64()
                        .ok_or_else(|| out_of_range(ty))?,
                    other => return Err(cannot(&other)),
                };
                match ty {
                    DataType::Int2 => Value::Int2(i16::try_from(n).map_err(|_| out_of_range(ty))?),
                    DataType::Int4 => Value::Int4(i32::try_from(n).map_err(|_| out_of_range(ty))?),
                    _ => Value::Int8(n),
                }
            }
            (DataType::Float8, v) => match v {
                Value::Float8(f) => Value::Float8(f),
                Value::Float4(f) => Value::Float8(f as f64),
                Value::Numeric(d) => Value::Float8(d.to_f64().unwrap_or(f64::NAN)),
                Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
                    Value::Float8(v.as_i64().unwrap_or(0) as f64)
                }
                other => return Err(cannot(&other)),
            },
            (DataType::Numeric { precision, scale }, v) => {
                let d = match v {
                    Value::Numeric(d) => d,
                    Value::Int2(_) | Value::Int4(_) | Value::Int8(_) => {
                        Decimal::from(v.as_i64().unwrap_or(0))
                    }
                    Value::Float8(_) | Value::Float4(_) => {
                        let f = match v {
                            Value::Float4(f) => f as f64,
                            Value::Float8(f) => f,
                            _ => 0.0,
                        };
                        if !f.is_finite() {
                            return Err(EvalError::NumericOverflow);
                        }
                        // Through the shortest decimal text, as PostgreSQL does.
                        let text = if matches!(v, Value::Float4(_)) {
                            format_float4(f as f32)
                        } else {
                            format_float8(f)
                        };
                        parse_decimal(&text).ok_or(EvalError::NumericOverflow)?
                    }
                    other => return Err(cannot(&other)),
                };
                Value::Numeric(apply_typmod(d, *precision, *scale)?)
            }
            (DataType::Date, Value::Date(d)) => Value::Date(d),
            (DataType::Date, Value::Timestamp(t)) => {
                Value::Date(t.div_euclid(MICROS_PER_DAY) as i32)
            }
            (DataType::Timestamp, Value::Timestamp(t)) => Value::Timestamp(t),
            (DataType::Timestamp, Value::Date(d)) => Value::Timestamp(d as i64 * MICROS_PER_DAY),
            (_, other) => return Err(cannot(&other)),
        })
    }

    /// SQL comparison: `None` when either side is NULL. Numeric types compare
    /// across widths; incomparable types are an operator error.
    pub fn sql_cmp(&self, other: &Value) -> Result<Option<Ordering>, EvalError> {
        use Value::*;
        Ok(Some(match (self, other) {
            (Null, _) | (_, Null) => return Ok(None),
            (Bool(a), Bool(b)) => a.cmp(b),
            (Text(a), Text(b)) => a.as_bytes().cmp(b.as_bytes()),
            (Date(a), Date(b)) => a.cmp(b),
            (Timestamp(a) | Timestamptz(a), Timestamp(b) | Timestamptz(b)) => a.cmp(b),
            (Date(a), Timestamptz(b)) => (*a as i64 * MICROS_PER_DAY).cmp(b),
            (Timestamptz(a), Date(b)) => a.cmp(&(*b as i64 * MICROS_PER_DAY)),
            (Bytea(a), Bytea(b)) => a.cmp(b),
            (Uuid(a), Uuid(b)) => a.cmp(b),
            (Float4(a), Float4(b)) => cmp_f64(*a as f64, *b as f64),
            (Date(a), Timestamp(b)) => (*a as i64 * MICROS_PER_DAY).cmp(b),
            (Timestamp(a), Date(b)) => a.cmp(&(*b as i64 * MICROS_PER_DAY)),
            (a, b) => match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => x.cmp(&y),
                _ => match (a, b) {
                    (Float8(_) | Float4(_), _) | (_, Float8(_) | Float4(_)) => {
                        let x = a.clone().cast(&DataType::Float8).map_err(|_| no_op(a, b))?;
                        let y = b.clone().cast(&DataType::Float8).map_err(|_| no_op(a, b))?;
                        match (x, y) {
                            (Float8(x), Float8(y)) => cmp_f64(x, y),
                            _ => return Err(no_op(a, b)),
                        }
                    }
                    (Numeric(_), _) | (_, Numeric(_)) => match (to_decimal(a), to_decimal(b)) {
                        (Some(x), Some(y)) => x.cmp(&y),
                        _ => return Err(no_op(a, b)),
                    },
                    _ => return Err(no_op(a, b)),
                },
            },
        }))
    }

    /// Total order used for sorting: NULLs compare equal to each other and
    /// greater than everything else (PostgreSQL's default NULLS LAST for ASC).
    pub fn sort_cmp(&self, other: &Value) -> Ordering {
        match (self.is_null(), other.is_null()) {
            (true, true) => Ordering::Equal,
            (true, false) => Ordering::Greater,
            (false, true) => Ordering::Less,
            _ => self
                .sql_cmp(other)
                .ok()
                .flatten()
                .unwrap_or(Ordering::Equal),
        }
    }
}

fn no_op(a: &Value, b: &Value) -> EvalError {
    let name = |v: &Value| v.data_type().map(|t| t.pg_name()).unwrap_or("unknown");
    EvalError::NoOperator(format!("{} = {}", name(a), name(b)))
}

/// Decimal view of an integer or numeric value.
pub(crate) fn to_decimal(v: &Value) -> Option<Decimal> {
    match v {
        Value::Numeric(d) => Some(*d),
        _ => v.as_i64().map(Decimal::from),
    }
}

/// PostgreSQL orders NaN above every other float and treats NaN = NaN.
pub(crate) fn cmp_f64(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        _ => a.partial_cmp(&b).unwrap_or(Ordering::Equal),
    }
}

pub const MICROS_PER_DAY: i64 = 86_400_000_000;

/// Rounds to the column's scale and checks its precision (22003 on overflow).
pub fn apply_typmod(
    d: Decimal,
    precision: Option<u8>,
    scale: Option<u8>,
) -> Result<Decimal, EvalError> {
    let mut d = d;
    if let Some(s) = scale {
        d = d.round_dp_with_strategy(s as u32, RoundingStrategy::MidpointAwayFromZero);
        d.rescale(s as u32);
    }
    if let Some(p) = precision {
        let s = scale.unwrap_or(0) as u32;
        let int_digits = p as i64 - s as i64;
        let limit = if (0..28).contains(&int_digits) {
            Decimal::from_i128_with_scale(10i128.pow(int_digits as u32), 0)
        } else {
            Decimal::MAX
        };
        if d.abs() >= limit {
            return Err(EvalError::NumericOverflow);
        }
    }
    Ok(d)
}

fn parse_decimal(t: &str) -> Option<Decimal> {
    if t.is_empty() || t.contains(['_', ' ']) {
        return None;
    }
    if t.contains(['e', 'E']) {
        Decimal::from_scientific(t).ok()
    } else {
        t.parse::<Decimal>().ok()
    }
}

/// float8 output as PostgreSQL 15 prints it: shortest round-trip digits,
/// exponent form below 1e-4 and from 1e15.
pub fn format_float8(f: f64) -> String {
    format_float(f, 15, || format!("{f:e}"), || format!("{f}"))
}

/// real output: shortest round-trip digits, exponent form below 1e-4 and
/// from 1e6 (PostgreSQL 15's float4out).
pub fn format_float4(f: f32) -> String {
    format_float(f as f64, 6, || format!("{f:e}"), || format!("{f}"))
}

/// Shared by float4 and float8: `x` classifies the value, `sci` and `plain`
/// print it at its own precision; exponent form outside `1e-4..1e{max_exp}`.
fn format_float(
    x: f64,
    max_exp: i32,
    sci: impl FnOnce() -> String,
    plain: impl FnOnce() -> String,
) -> String {
    if x.is_nan() {
        return "NaN".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if x == 0.0 {
        return if x.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let sci = sci();
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    if !(-4..max_exp).contains(&exp) {
        let sign = if exp < 0 { '-' } else { '+' };
        format!("{mantissa}e{sign}{:02}", exp.abs())
    } else {
        plain()
    }
}

fn format_uuid(u: &[u8; 16]) -> String {
    let hex: String = u.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// uuid input: 32 hex digits, optionally hyphenated in groups of four and
/// wrapped in braces.
fn parse_uuid(t: &str) -> Option<[u8; 16]> {
    let t = t
        .strip_prefix('{')
        .and_then(|x| x.strip_suffix('}'))
        .unwrap_or(t);
    let hex: String = t.chars().filter(|&c| c != '-').collect();
    if hex.len() != 32 || t.starts_with('-') || t.ends_with('-') || t.contains("--") {
        return None;
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// bytea input: `\x` hex, or the escape format (`\\`, `\ooo` octal).
fn parse_bytea(t: &str) -> Option<Vec<u8>> {
    if let Some(hex) = t.strip_prefix("\\x") {
        let digits: Vec<u8> = hex.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
        if !digits.len().is_multiple_of(2) {
            return None;
        }
        return digits
            .chunks(2)
            .map(|p| u8::from_str_radix(std::str::from_utf8(p).ok()?, 16).ok())
            .collect();
    }
    let bytes = t.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] != b'\\' {
            out.push(bytes[i]);
            i += 1;
        } else if bytes.get(i + 1) == Some(&b'\\') {
            out.push(b'\\');
            i += 2;
        } else {
            let oct = std::str::from_utf8(bytes.get(i + 1..i + 4)?).ok()?;
            out.push(u8::from_str_radix(oct, 8).ok()?);
            i += 4;
        }
    }
    Some(out)
}

/// timestamptz input: a timestamp with an optional `+hh[:mm]`, `-hh` or `Z`
/// offset; without one, the session time zone (UTC) applies.
fn parse_timestamptz(t: &str) -> Option<i64> {
    let t = t.trim();
    match split_offset(t) {
        Some((body, offset)) if body.len() >= 10 => {
            Some(parse_timestamp(body)? - offset * 1_000_000)
        }
        _ => parse_timestamp(t),
    }
}

fn format_date(days: i32) -> String {
    match EPOCH.checked_add_signed(chrono::Duration::days(days as i64)) {
        Some(d) => d.format("%Y-%m-%d").to_string(),
        None => "infinity".into(),
    }
}

fn format_timestamp(micros: i64) -> String {
    match DateTime::from_timestamp_micros(micros) {
        Some(dt) => {
            let dt = dt.naive_utc();
            let mut s = dt.format("%Y-%m-%d %H:%M:%S").to_string();
            let frac = micros.rem_euclid(1_000_000);
            if frac != 0 {
                let f = format!(".{frac:06}");
                s.push_str(f.trim_end_matches('0'));
            }
            s
        }
        None => "infinity".into(),
    }
}

/// Date input: `YYYY-MM-DD`, optionally followed by a time or a time-zone
/// offset, which a date ignores (drivers such as pgjdbc send `2024-02-29 +00`).
fn parse_date(t: &str) -> Option<i32> {
    let t = t.trim();
    let (day, rest) = match t.find([' ', 'T']) {
        Some(i) => (&t[..i], t[i + 1..].trim()),
        None => (t, ""),
    };
    let d = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
    let rest_ok = rest.is_empty()
        || split_offset(rest).is_some_and(|(time, _)| time.is_empty() || parse_time(time))
        || parse_time(rest);
    rest_ok.then(|| (d - EPOCH).num_days() as i32)
}

fn parse_time(t: &str) -> bool {
    NaiveTime::parse_from_str(t.trim(), "%H:%M:%S%.f").is_ok()
        || NaiveTime::parse_from_str(t.trim(), "%H:%M").is_ok()
}

/// Splits a trailing UTC offset (`+hh`, `-hh:mm`, `+hhmm`, `Z`) off a
/// date-time text: (the rest, offset seconds east of UTC).
fn split_offset(t: &str) -> Option<(&str, i64)> {
    let t = t.trim_end();
    if let Some(b) = t.strip_suffix(['Z', 'z']) {
        return Some((b.trim_end(), 0));
    }
    if let Some(b) = t.strip_suffix(" UTC") {
        return Some((b.trim_end(), 0));
    }
    let i = t.rfind(['+', '-'])?;
    let (body, off) = t.split_at(i);
    // A '-' inside the date part is not an offset.
    if body.trim_end().len() < 8
        && !body.trim().is_empty()
        && !body.contains(':')
        && body.contains('-')
    {
        return None;
    }
    let sign = if off.starts_with('-') { -1 } else { 1 };
    let digits = &off[1..];
    if digits.is_empty() || !digits.chars().all(|c| c.is_ascii_digit() || c == ':') {
        return None;
    }
    let (h, m) = match digits.split_once(':') {
        Some((h, m)) => (h.parse::<i64>().ok()?, m.parse::<i64>().ok()?),
        None if digits.len() == 4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        None if digits.len() <= 2 => (digits.parse().ok()?, 0),
        None => return None,
    };
    Some((body.trim_end(), sign * (h * 3600 + m * 60)))
}

fn parse_timestamp(t: &str) -> Option<i64> {
    // `timestamp without time zone` ignores an offset, as PostgreSQL does.
    let t = t.trim();
    let t = match split_offset(t) {
        Some((body, _)) if body.len() >= 10 => body,
        _ => t,
    };
    let t = t.replace('T', " ");
    let dt = NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(&t, "%Y-%m-%d %H:%M"))
        .ok()
        .or_else(|| {
            NaiveDate::parse_from_str(&t, "%Y-%m-%d")
                .ok()
                .map(|d| d.and_time(NaiveTime::MIN))
        })?;
    Some(dt.and_utc().timestamp_micros())
}

/// Converts fortress's date representation to chrono's.
pub fn date_to_naive(days: i32) -> Option<NaiveDate> {
    EPOCH.checked_add_signed(chrono::Duration::days(days as i64))
}

/// Converts chrono's date to fortress's representation.
pub fn naive_to_date(d: NaiveDate) -> i32 {
    (d - EPOCH).num_days() as i32
}

/// Converts fortress's timestamp representation to chrono's.
pub fn timestamp_to_naive(micros: i64) -> Option<NaiveDateTime> {
    DateTime::from_timestamp_micros(micros).map(|d| d.naive_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_output_matches_postgres() {
        assert_eq!(format_float8(1.5), "1.5");
        assert_eq!(format_float8(0.1), "0.1");
        assert_eq!(format_float8(1e15), "1e+15");
        assert_eq!(format_float8(123456789012345.0), "123456789012345");
        assert_eq!(format_float8(0.0001), "0.0001");
        assert_eq!(format_float8(0.00001), "1e-05");
        assert_eq!(format_float8(-2.5e-7), "-2.5e-07");
    }

    #[test]
    fn parse_and_print_round_trip() {
        let ts = Value::parse(&DataType::Timestamp, "2024-02-29 13:45:01.25").unwrap();
        assert_eq!(ts.to_text().unwrap(), "2024-02-29 13:45:01.25");
        let d = Value::parse(&DataType::Date, "1999-12-31").unwrap();
        assert_eq!(d.to_text().unwrap(), "1999-12-31");
        let n = Value::parse(
            &DataType::Numeric {
                precision: Some(6),
                scale: Some(2),
            },
            "12.345",
        )
        .unwrap();
        assert_eq!(n.to_text().unwrap(), "12.35");
    }

    #[test]
    fn dates_and_timestamps_accept_what_drivers_send() {
        let d = Value::parse(&DataType::Date, "2024-02-29 +00").unwrap();
        assert_eq!(d.to_text().unwrap(), "2024-02-29");
        let d = Value::parse(&DataType::Date, "2024-02-29 13:45:01").unwrap();
        assert_eq!(d.to_text().unwrap(), "2024-02-29");
        let ts = Value::parse(&DataType::Timestamp, "2024-02-29 13:45:01.25+00").unwrap();
        assert_eq!(ts.to_text().unwrap(), "2024-02-29 13:45:01.25");
        let tz = Value::parse(&DataType::Timestamptz, "2024-01-01 10:00:00-05:30").unwrap();
        assert_eq!(tz.to_text().unwrap(), "2024-01-01 15:30:00+00");
        assert!(Value::parse(&DataType::Date, "2024-02-30").is_err());
        assert!(Value::parse(&DataType::Date, "2024-02-28 junk").is_err());
    }

    #[test]
    fn bad_input_is_22p02_and_overflow_22003() {
        let e = Value::parse(&DataType::Int4, "12x").unwrap_err();
        assert_eq!(e.sql_state(), "22P02");
        let e = Value::parse(&DataType::Int2, "40000").unwrap_err();
        assert_eq!(e.sql_state(), "22003");
        let ty = DataType::Numeric {
            precision: Some(3),
            scale: Some(1),
        };
        assert_eq!(Value::parse(&ty, "100.0").unwrap_err().sql_state(), "22003");
        let e = Value::Text("abcdef".into())
            .cast(&DataType::Varchar(Some(3)))
            .unwrap_err();
        assert_eq!(e.sql_state(), "22001");
    }

    #[test]
    fn cross_width_comparison() {
        let a = Value::Int2(5);
        let b = Value::Numeric(Decimal::new(50, 1));
        assert_eq!(a.sql_cmp(&b).unwrap(), Some(Ordering::Equal));
        assert_eq!(a.sql_cmp(&Value::Null).unwrap(), None);
        assert!(a.sql_cmp(&Value::Text("x".into())).is_err());
    }
}
