//! Mapping between SQL type names, fortress types and PostgreSQL type OIDs.

use fortress_storage::DataType;
use postgres_types::Type;
use sqlparser::ast::{self, CharacterLength, ExactNumberInfo, TimezoneInfo};

use crate::error::{ProxyError, Result};

/// Resolves a type named in SQL.
pub fn from_ast(t: &ast::DataType) -> Result<DataType> {
    use ast::DataType as A;
    Ok(match t {
        A::Bool | A::Boolean => DataType::Bool,
        A::SmallInt(_) | A::Int2(_) => DataType::Int2,
        A::Int(_) | A::Integer(_) | A::Int4(_) => DataType::Int4,
        A::BigInt(_) | A::Int8(_) => DataType::Int8,
        A::Float8 | A::DoublePrecision | A::Double(ExactNumberInfo::None) => DataType::Float8,
        A::Text | A::String(None) => DataType::Text,
        A::Varchar(len) | A::CharacterVarying(len) => {
            DataType::Varchar(match len {
                None => None,
                Some(CharacterLength::IntegerLength { length, .. }) => {
                    if *length == 0 || *length > 10_485_760 {
                        return Err(ProxyError::new(
                        "22023",
                        format!("length for type varchar must be between 1 and 10485760, got {length}"),
                    ));
                    }
                    Some(*length as u32)
                }
                Some(CharacterLength::Max) => None,
            })
        }
        A::Numeric(info) | A::Decimal(info) => {
            let (precision, scale) = match info {
                ExactNumberInfo::None => (None, None),
                ExactNumberInfo::Precision(p) => (Some(*p), Some(0)),
                ExactNumberInfo::PrecisionAndScale(p, s) => (Some(*p), Some(*s)),
            };
            if let Some(p) = precision {
                if !(1..=28).contains(&p) {
                    return Err(ProxyError::new(
                        "0A000",
                        format!(
                            "NUMERIC precision {p} is not supported (fortress supports 1 to 28)"
                        ),
                    ));
                }
                let s = scale.unwrap_or(0);
                if s < 0 || s > p as i64 {
                    return Err(ProxyError::new(
                        "22023",
                        format!("NUMERIC scale {s} must be between 0 and precision {p}"),
                    ));
                }
            }
            DataType::Numeric {
                precision: precision.map(|p| p as u8),
                scale: scale.map(|s| s as u8),
            }
        }
        A::Date => DataType::Date,
        A::Timestamp(_, TimezoneInfo::None | TimezoneInfo::WithoutTimeZone) => DataType::Timestamp,
        A::Timestamp(_, TimezoneInfo::WithTimeZone | TimezoneInfo::Tz) => DataType::Timestamptz,
        A::Real | A::Float4 => DataType::Float4,
        A::Float(ExactNumberInfo::Precision(p)) if *p <= 24 => DataType::Float4,
        A::Float(_) => DataType::Float8,
        A::Char(len) | A::Character(len) => DataType::Char(Some(match len {
            None => 1,
            Some(CharacterLength::IntegerLength { length, .. }) => {
                if *length == 0 || *length > 10_485_760 {
                    return Err(ProxyError::new(
                        "22023",
                        format!(
                            "length for type char must be between 1 and 10485760, got {length}"
                        ),
                    ));
                }
                *length as u32
            }
            Some(CharacterLength::Max) => {
                return Err(ProxyError::syntax("syntax error at or near \"max\""))
            }
        })),
        A::Bytea => DataType::Bytea,
        A::Uuid => DataType::Uuid,
        A::Custom(name, mods) if mods.is_empty() => {
            match name.to_string().to_lowercase().as_str() {
                "bpchar" => DataType::Char(None),
                "name" => DataType::Name,
                "float4" => DataType::Float4,
                "timestamptz" => DataType::Timestamptz,
                _ => {
                    return Err(ProxyError::new(
                        "42704",
                        format!("type \"{name}\" does not exist"),
                    ))
                }
            }
        }
        other => return Err(ProxyError::unsupported(format!("type {other}"))),
    })
}

/// True if PostgreSQL has a cast from `from` to `to` (explicit or implicit).
pub fn can_cast(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let (f, t) = (family(from), family(to));
    f == t
        || f == Family::Text
        || t == Family::Text
        || matches!((from, to), (Int4, Bool) | (Bool, Int4))
}

/// The PostgreSQL type reported on the wire.
pub fn pg_type(t: &DataType) -> Type {
    match t {
        DataType::Bool => Type::BOOL,
        DataType::Int2 => Type::INT2,
        DataType::Int4 => Type::INT4,
        DataType::Int8 => Type::INT8,
        DataType::Float8 => Type::FLOAT8,
        DataType::Numeric { .. } => Type::NUMERIC,
        DataType::Text => Type::TEXT,
        DataType::Varchar(_) => Type::VARCHAR,
        DataType::Date => Type::DATE,
        DataType::Timestamp => Type::TIMESTAMP,
        DataType::Float4 => Type::FLOAT4,
        DataType::Char(_) => Type::BPCHAR,
        DataType::Bytea => Type::BYTEA,
        DataType::Timestamptz => Type::TIMESTAMPTZ,
        DataType::Uuid => Type::UUID,
        DataType::Name => Type::NAME,
    }
}

/// The fortress type for a parameter type a client declared.
pub fn from_pg(t: &Type) -> Option<DataType> {
    Some(match *t {
        Type::BOOL => DataType::Bool,
        Type::INT2 => DataType::Int2,
        Type::INT4 => DataType::Int4,
        Type::INT8 => DataType::Int8,
        Type::FLOAT8 => DataType::Float8,
        Type::FLOAT4 => DataType::Float4,
        Type::BYTEA => DataType::Bytea,
        Type::TIMESTAMPTZ => DataType::Timestamptz,
        Type::UUID => DataType::Uuid,
        Type::NUMERIC => DataType::Numeric {
            precision: None,
            scale: None,
        },
        Type::TEXT | Type::BPCHAR | Type::NAME | Type::UNKNOWN => DataType::Text,
        Type::VARCHAR => DataType::Varchar(None),
        Type::DATE => DataType::Date,
        Type::TIMESTAMP => DataType::Timestamp,
        _ => return None,
    })
}

/// `atttypmod` for RowDescription: varchar(n) and numeric(p,s) carry one.
pub fn type_modifier(t: &DataType) -> i32 {
    match t {
        DataType::Varchar(Some(n)) | DataType::Char(Some(n)) => *n as i32 + 4,
        DataType::Numeric {
            precision: Some(p),
            scale,
        } => (((*p as i32) << 16) | scale.unwrap_or(0) as i32) + 4,
        _ => -1,
    }
}

/// Broad type families: values of one family compare and convert implicitly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Bool,
    Number,
    Text,
    Time,
    Bytes,
    Uuid,
}

pub fn family(t: &DataType) -> Family {
    match t {
        DataType::Bool => Family::Bool,
        DataType::Int2
        | DataType::Int4
        | DataType::Int8
        | DataType::Float8
        | DataType::Float4
        | DataType::Numeric { .. } => Family::Number,
        DataType::Text | DataType::Varchar(_) | DataType::Char(_) | DataType::Name => Family::Text,
        DataType::Date | DataType::Timestamp | DataType::Timestamptz => Family::Time,
        DataType::Bytea => Family::Bytes,
        DataType::Uuid => Family::Uuid,
    }
}
