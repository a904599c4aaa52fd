//! Values to and from the wire: text and binary formats, per column type.

use bytes::Bytes;
use fortress_storage::value::{date_to_naive, naive_to_date, timestamp_to_naive};
use fortress_storage::{DataType, Value};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo};
use pgwire::error::PgWireResult;
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;
use postgres_types::{FromSql, Type};
use rust_decimal::Decimal;

use crate::error::{ProxyError, Result};
use crate::plan::OutputColumn;
use crate::sql::types::{pg_type, type_modifier};

/// 2000-01-01 00:00:00 UTC in Unix microseconds: PostgreSQL's binary epoch.
const POSTGRES_EPOCH_MICROS: i64 = 946_684_800_000_000;

/// Bytes already in PostgreSQL's binary form for the column's type.
#[derive(Debug)]
struct Raw(Vec<u8>);

impl postgres_types::ToSql for Raw {
    fn to_sql(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
    ) -> std::result::Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(postgres_types::IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl pgwire::types::ToSqlText for Raw {
    fn to_sql_text(
        &self,
        _ty: &Type,
        out: &mut bytes::BytesMut,
        _opts: &FormatOptions,
    ) -> std::result::Result<postgres_types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(postgres_types::IsNull::No)
    }
}

/// RowDescription fields for `columns`, with per-column formats.
pub fn fields(columns: &[OutputColumn], format: impl Fn(usize) -> FieldFormat) -> Vec<FieldInfo> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            FieldInfo::new(c.name.clone(), None, None, pg_type(&c.ty), format(i))
                .with_type_modifier(type_modifier(&c.ty))
        })
        .collect()
}

/// Encodes one row according to `fields`.
pub fn encode_row(
    enc: &mut DataRowEncoder,
    fields: &[FieldInfo],
    columns: &[OutputColumn],
    row: &[Value],
) -> PgWireResult<DataRow> {
    let opts = FormatOptions::default();
    for ((f, c), v) in fields.iter().zip(columns).zip(row) {
        let ty = f.datatype();
        if f.format() == FieldFormat::Text || v.is_null() {
            enc.encode_field_with_type_and_format(&v.to_text(), ty, FieldFormat::Text, &opts)?;
            continue;
        }
        let v = conform(v, &c.ty);
        let fmt = FieldFormat::Binary;
        match &v {
            Value::Bool(b) => enc.encode_field_with_type_and_format(b, ty, fmt, &opts)?,
            Value::Int2(n) => enc.encode_field_with_type_and_format(n, ty, fmt, &opts)?,
            Value::Int4(n) => enc.encode_field_with_type_and_format(n, ty, fmt, &opts)?,
            Value::Int8(n) => enc.encode_field_with_type_and_format(n, ty, fmt, &opts)?,
            Value::Float8(n) => enc.encode_field_with_type_and_format(n, ty, fmt, &opts)?,
            Value::Numeric(d) => enc.encode_field_with_type_and_format(d, ty, fmt, &opts)?,
            Value::Text(s) => enc.encode_field_with_type_and_format(s, ty, fmt, &opts)?,
            Value::Date(d) => {
                enc.encode_field_with_type_and_format(&date_to_naive(*d), ty, fmt, &opts)?
            }
            Value::Timestamp(t) => {
                enc.encode_field_with_type_and_format(&timestamp_to_naive(*t), ty, fmt, &opts)?
            }
            Value::Float4(n) => enc.encode_field_with_type_and_format(n, ty, fmt, &opts)?,
            Value::Bytea(b) => enc.encode_field_with_type_and_format(b, ty, fmt, &opts)?,
            Value::Timestamptz(t) => {
                let since_2000 = t - POSTGRES_EPOCH_MICROS;
                enc.encode_field_with_type_and_format(
                    &Raw(since_2000.to_be_bytes().to_vec()),
                    ty,
                    fmt,
                    &opts,
                )?
            }
            Value::Uuid(u) => {
                enc.encode_field_with_type_and_format(&Raw(u.to_vec()), ty, fmt, &opts)?
            }
            Value::Null => {
                enc.encode_field_with_type_and_format(&None::<String>, ty, fmt, &opts)?
            }
        }
    }
    Ok(enc.take_row())
}

/// Makes a value's representation match the column type before binary
/// encoding (e.g. an int4 computed into a bigint column).
fn conform(v: &Value, ty: &DataType) -> Value {
    let same = matches!(
        (v, ty),
        (Value::Bool(_), DataType::Bool)
            | (Value::Int2(_), DataType::Int2)
            | (Value::Int4(_), DataType::Int4)
            | (Value::Int8(_), DataType::Int8)
            | (Value::Float8(_), DataType::Float8)
            | (Value::Numeric(_), DataType::Numeric { .. })
            | (Value::Text(_), DataType::Text | DataType::Varchar(_))
            | (Value::Date(_), DataType::Date)
            | (Value::Timestamp(_), DataType::Timestamp)
            | (Value::Float4(_), DataType::Float4)
            | (Value::Text(_), DataType::Char(_) | DataType::Name)
            | (Value::Bytea(_), DataType::Bytea)
            | (Value::Timestamptz(_), DataType::Timestamptz)
            | (Value::Uuid(_), DataType::Uuid)
    );
    if same {
        return v.clone();
    }
    let target = match ty {
        DataType::Varchar(_) | DataType::Char(_) | DataType::Name => DataType::Text,
        DataType::Numeric { .. } => DataType::Numeric {
            precision: None,
            scale: None,
        },
        t => *t,
    };
    v.clone().cast(&target).unwrap_or_else(|_| v.clone())
}

fn bad_binary(ty: &Type, e: impl std::fmt::Display) -> ProxyError {
    ProxyError::new(
        "22P03",
        format!("incorrect binary data format in bind parameter of type {ty}: {e}"),
    )
}

/// Decodes one bind parameter of type `ty` sent as `pg_ty` in text or binary.
pub fn decode_param(
    bytes: Option<&Bytes>,
    binary: bool,
    ty: &DataType,
    pg_ty: &Type,
) -> Result<Value> {
    let Some(b) = bytes else {
        return Ok(Value::Null);
    };
    if !binary {
        let s = std::str::from_utf8(b)
            .map_err(|_| ProxyError::new("22021", "invalid byte sequence for encoding \"UTF8\""))?;
        return Ok(Value::parse(ty, s)?);
    }
    let v = match *pg_ty {
        Type::BOOL => Value::Bool(bool::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::INT2 => Value::Int2(i16::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::INT4 => Value::Int4(i32::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::INT8 => Value::Int8(i64::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::FLOAT4 => Value::Float4(f32::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::BYTEA => Value::Bytea(b.to_vec()),
        Type::UUID => Value::Uuid(
            b.as_ref()
                .try_into()
                .map_err(|_| bad_binary(pg_ty, "a uuid is 16 bytes"))?,
        ),
        Type::TIMESTAMPTZ => {
            let raw: [u8; 8] = b
                .as_ref()
                .try_into()
                .map_err(|_| bad_binary(pg_ty, "a timestamptz is 8 bytes"))?;
            Value::Timestamptz(i64::from_be_bytes(raw) + POSTGRES_EPOCH_MICROS)
        }
        Type::FLOAT8 => Value::Float8(f64::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?),
        Type::NUMERIC => {
            Value::Numeric(Decimal::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?)
        }
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN => {
            Value::Text(String::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?)
        }
        Type::DATE => Value::Date(naive_to_date(
            chrono::NaiveDate::from_sql(pg_ty, b).map_err(|e| bad_binary(pg_ty, e))?,
        )),
        Type::TIMESTAMP => Value::Timestamp(
            chrono::NaiveDateTime::from_sql(pg_ty, b)
                .map_err(|e| bad_binary(pg_ty, e))?
                .and_utc()
                .timestamp_micros(),
        ),
        _ => {
            return Err(ProxyError::new(
                "0A000",
                format!("binary parameters of type {pg_ty} are not supported"),
            ))
        }
    };
    Ok(v.cast(ty)?)
}
