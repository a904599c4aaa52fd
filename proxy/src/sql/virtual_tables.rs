//! Read-only system relations computed from the catalog when a query names
//! them: `information_schema.tables/columns` and the parts of `pg_catalog`
//! (pg_tables, pg_namespace, pg_class, pg_type, pg_database) that tools and
//! drivers query. They join, filter and sort like any table.

use fortress_storage::{Catalog, DataType, TableDef, Value};

use crate::pgcatalog::{format_type, table_oid};
use crate::session::Session;
use crate::sql::types::pg_type;

/// A system relation: its columns and rows.
pub struct Relation {
    pub columns: Vec<(&'static str, DataType)>,
    pub rows: Vec<Vec<Value>>,
}

fn t(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn user_tables(catalog: &Catalog) -> Vec<&TableDef> {
    let mut v: Vec<&TableDef> = catalog.tables.values().filter(|t| !t.hidden).collect();
    v.sort_by(|a, b| a.name.cmp(&b.name));
    v
}

/// OIDs of the schemas fortress shows.
const PG_CATALOG_OID: i64 = 11;
const PUBLIC_OID: i64 = 2200;

/// Builtin types drivers look up by OID or name.
const TYPES: &[DataType] = &[
    DataType::Bool,
    DataType::Int2,
    DataType::Int4,
    DataType::Int8,
    DataType::Float4,
    DataType::Float8,
    DataType::Numeric {
        precision: None,
        scale: None,
    },
    DataType::Text,
    DataType::Varchar(None),
    DataType::Char(None),
    DataType::Name,
    DataType::Bytea,
    DataType::Date,
    DataType::Timestamp,
    DataType::Timestamptz,
    DataType::Uuid,
];

/// The relation `schema.name`, if it is one of the system relations.
pub fn lookup(schema: &str, name: &str, catalog: &Catalog, session: &Session) -> Option<Relation> {
    use DataType::{Bool, Int4, Int8, Name, Text};
    let rel = match (schema, name) {
        ("information_schema", "tables") => Relation {
            columns: vec![
                ("table_catalog", Name),
                ("table_schema", Name),
                ("table_name", Name),
                ("table_type", Text),
            ],
            rows: user_tables(catalog)
                .into_iter()
                .map(|tb| {
                    vec![
                        t(&session.database),
                        t("public"),
                        t(&tb.name),
                        t("BASE TABLE"),
                    ]
                })
                .collect(),
        },
        ("information_schema", "columns") => {
            let mut rows = Vec::new();
            for tb in user_tables(catalog) {
                for (pos, i) in tb.visible_columns().into_iter().enumerate() {
                    let c = &tb.columns[i];
                    let (len, prec, scale) = match c.ty {
                        DataType::Varchar(n) | DataType::Char(n) => {
                            (n.map(|n| Value::Int4(n as i32)), None, None)
                        }
                        DataType::Numeric { precision, scale } => (
                            None,
                            precision.map(|p| Value::Int4(p as i32)),
                            scale.map(|s| Value::Int4(s as i32)),
                        ),
                        DataType::Int2 => (None, Some(Value::Int4(16)), Some(Value::Int4(0))),
                        DataType::Int4 => (None, Some(Value::Int4(32)), Some(Value::Int4(0))),
                        DataType::Int8 => (None, Some(Value::Int4(64)), Some(Value::Int4(0))),
                        _ => (None, None, None),
                    };
                    let data_type = match c.ty {
                        DataType::Varchar(_) => "character varying".to_string(),
                        DataType::Char(_) => "character".to_string(),
                        DataType::Numeric { .. } => "numeric".to_string(),
                        other => format_type(&other),
                    };
                    rows.push(vec![
                        t(&session.database),
                        t("public"),
                        t(&tb.name),
                        t(&c.name),
                        Value::Int4(pos as i32 + 1),
                        Value::Null,
                        t(if c.nullable { "YES" } else { "NO" }),
                        t(&data_type),
                        len.unwrap_or(Value::Null),
                        prec.unwrap_or(Value::Null),
                        scale.unwrap_or(Value::Null),
                    ]);
                }
            }
            Relation {
                columns: vec![
                    ("table_catalog", Name),
                    ("table_schema", Name),
                    ("table_name", Name),
                    ("column_name", Name),
                    ("ordinal_position", Int4),
                    ("column_default", Text),
                    ("is_nullable", Text),
                    ("data_type", Text),
                    ("character_maximum_length", Int4),
                    ("numeric_precision", Int4),
                    ("numeric_scale", Int4),
                ],
                rows,
            }
        }
        ("pg_catalog", "pg_tables") => Relation {
            columns: vec![
                ("schemaname", Name),
                ("tablename", Name),
                ("tableowner", Name),
                ("hasindexes", Bool),
            ],
            rows: user_tables(catalog)
                .into_iter()
                .map(|tb| {
                    vec![
                        t("public"),
                        t(&tb.name),
                        t(&session.user),
                        Value::Bool(true),
                    ]
                })
                .collect(),
        },
        ("pg_catalog", "pg_namespace") => Relation {
            columns: vec![("oid", Int8), ("nspname", Name)],
            rows: vec![
                vec![Value::Int8(PG_CATALOG_OID), t("pg_catalog")],
                vec![Value::Int8(PUBLIC_OID), t("public")],
            ],
        },
        ("pg_catalog", "pg_class") => Relation {
            columns: vec![
                ("oid", Int8),
                ("relname", Name),
                ("relnamespace", Int8),
                ("relkind", Text),
            ],
            rows: user_tables(catalog)
                .into_iter()
                .map(|tb| {
                    vec![
                        Value::Int8(table_oid(tb) as i64),
                        t(&tb.name),
                        Value::Int8(PUBLIC_OID),
                        t("r"),
                    ]
                })
                .collect(),
        },
        ("pg_catalog", "pg_type") => Relation {
            columns: vec![
                ("oid", Int8),
                ("typname", Name),
                ("typnamespace", Int8),
                ("typtype", Text),
                ("typelem", Int8),
                ("typbasetype", Int8),
                ("typrelid", Int8),
            ],
            rows: TYPES
                .iter()
                .map(|ty| {
                    let pg = pg_type(ty);
                    vec![
                        Value::Int8(pg.oid() as i64),
                        t(pg.name()),
                        Value::Int8(PG_CATALOG_OID),
                        t("b"),
                        Value::Int8(0),
                        Value::Int8(0),
                        Value::Int8(0),
                    ]
                })
                .collect(),
        },
        ("pg_catalog", "pg_database") => Relation {
            columns: vec![("datname", Name), ("encoding", Int4)],
            rows: vec![vec![t(&session.database), Value::Int4(6)]],
        },
        _ => return None,
    };
    Some(rel)
}
