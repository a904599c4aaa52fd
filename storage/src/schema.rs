//! Table definitions and the catalog every shard keeps an identical copy of.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::StorageError;
use crate::value::{Row, Value};

/// Stable table identifier; never reused, so replaying old WAL records for a
/// dropped table can never touch a newer one.
pub type TableId = u32;

/// Column types fortress stores.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DataType {
    Bool,
    Int2,
    Int4,
    Int8,
    Float8,
    /// `numeric(p, s)`; `None` means unconstrained.
    Numeric {
        precision: Option<u8>,
        scale: Option<u8>,
    },
    Text,
    Varchar(Option<u32>),
    Date,
    Timestamp,
    /// `real`.
    Float4,
    /// `char(n)`: blank-padded to n characters.
    Char(Option<u32>),
    Bytea,
    /// Stored as UTC microseconds; shown in the session time zone (UTC).
    Timestamptz,
    Uuid,
    /// PostgreSQL's `name` (identifiers): text with its own type OID.
    Name,
}

impl DataType {
    /// PostgreSQL's name for the type, as used in error messages.
    pub fn pg_name(&self) -> &'static str {
        match self {
            DataType::Bool => "boolean",
            DataType::Int2 => "smallint",
            DataType::Int4 => "integer",
            DataType::Int8 => "bigint",
            DataType::Float8 => "double precision",
            DataType::Numeric { .. } => "numeric",
            DataType::Text => "text",
            DataType::Varchar(_) => "character varying",
            DataType::Date => "date",
            DataType::Timestamp => "timestamp without time zone",
            DataType::Float4 => "real",
            DataType::Char(_) => "character",
            DataType::Bytea => "bytea",
            DataType::Timestamptz => "timestamp with time zone",
            DataType::Uuid => "uuid",
            DataType::Name => "name",
        }
    }

    /// True for the integer, float and numeric types.
    pub fn is_numeric(&self) -> bool {
        matches!(
            self,
            DataType::Int2
                | DataType::Int4
                | DataType::Int8
                | DataType::Float8
                | DataType::Float4
                | DataType::Numeric { .. }
        )
    }

    /// True for text-like types.
    pub fn is_text(&self) -> bool {
        matches!(
            self,
            DataType::Text | DataType::Varchar(_) | DataType::Char(_)
        )
    }
}

/// One column of a table.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnDef {
    pub name: String,
    pub ty: DataType,
    pub nullable: bool,
    /// Default expression (a constant, or e.g. `now()`), coerced to `ty`;
    /// evaluated when a row is inserted.
    pub default: Option<crate::expr::Expr>,
    /// Value of this column in rows stored before it was added (ALTER TABLE
    /// ADD COLUMN); stored rows are shorter and are completed on read.
    pub missing: Option<Value>,
    /// Dropped by ALTER TABLE DROP COLUMN: the position stays (stored rows
    /// keep their shape) but the column is invisible and always NULL.
    pub dropped: bool,
}

impl ColumnDef {
    pub fn new(name: &str, ty: DataType) -> ColumnDef {
        ColumnDef {
            name: name.to_string(),
            ty,
            nullable: true,
            default: None,
            missing: None,
            dropped: false,
        }
    }
}

/// A secondary index, local to each shard: a tree of entries keyed by the
/// indexed columns, then the primary key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IndexDef {
    pub name: String,
    /// Tree id, from the same sequence as table ids.
    pub id: TableId,
    pub columns: Vec<usize>,
}

/// A UNIQUE constraint, enforced across shards by a hidden index table
/// whose primary key is the constrained columns.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UniqueDef {
    pub name: String,
    pub columns: Vec<usize>,
    /// Name of the hidden table in the catalog.
    pub index_table: String,
}

/// Time bucket width of the `time` strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TimeInterval {
    Day,
    Month,
    Year,
}

/// How a table's rows are placed on shards, by the shard-key value (data
/// only: the router in the proxy interprets it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub enum Strategy {
    /// The SHA-256 ring.
    #[default]
    Hash,
    /// Ascending split points: shard `i` holds `[splits[i-1], splits[i])`.
    Range { splits: Vec<Value> },
    /// Buckets of `interval` on a date or timestamp key, counted from 1970;
    /// bucket `n` lives on shard `n mod shards`.
    Time { interval: TimeInterval },
    /// Listed values on their shard; others on `default`, or rejected (23514).
    List {
        values: Vec<(Value, u32)>,
        default: Option<u32>,
    },
    /// The list value picks a group of shards, the hash of `hash_key`
    /// (a primary-key column) one shard in it.
    Hybrid {
        hash_key: usize,
        groups: Vec<(Value, Vec<u32>)>,
        default: Option<Vec<u32>>,
    },
}

impl Strategy {
    /// The name used in `WITH (strategy = ...)` and EXPLAIN.
    pub fn name(&self) -> &'static str {
        match self {
            Strategy::Hash => "hash",
            Strategy::Range { .. } => "range",
            Strategy::Time { .. } => "time",
            Strategy::List { .. } => "list",
            Strategy::Hybrid { .. } => "hybrid",
        }
    }
}

/// A table: its columns, primary key and shard key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TableDef {
    pub id: TableId,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Column positions of the primary key, in key order.
    pub primary_key: Vec<usize>,
    /// Column position of the shard key: the first primary-key column
    /// unless `WITH (shard_key = ...)` names another primary-key column.
    pub shard_key: usize,
    /// A reference table: every shard holds all of its rows.
    pub replicated: bool,
    pub uniques: Vec<UniqueDef>,
    /// Internal (a UNIQUE index table): not visible to SQL.
    pub hidden: bool,
    pub indexes: Vec<IndexDef>,
    /// Placement by the shard key; hash unless CREATE TABLE chose another.
    pub strategy: Strategy,
    /// A table created without a primary key: the position of its hidden
    /// row-id column (a fresh `Func::RowId` per row), which follows the
    /// shard key in the storage key so rows with equal values stay distinct.
    pub rowid: Option<usize>,
    /// While ALTER TABLE rewrites the table, shards refuse writes to it
    /// (55P03) so that what was checked is what gets rewritten.
    pub locked: bool,
    /// Set by ALTER TABLE ADD PRIMARY KEY: the table whose rows each shard
    /// re-keys into this table's new tree when it installs the catalog.
    pub rewritten_from: Option<TableId>,
    /// Multi-master: the column whose greater value wins between two
    /// peers' versions of a row (`WITH (conflict_resolver =
    /// 'greatest(COLUMN)')`); the node's resolver decides ties, deletions
    /// and NULLs.
    pub conflict_greatest: Option<usize>,
}

impl TableDef {
    /// A plain hash-sharded table: shard key = first primary-key column, no
    /// constraints beyond the key, no indexes.
    pub fn new(
        id: TableId,
        name: &str,
        columns: Vec<ColumnDef>,
        primary_key: Vec<usize>,
    ) -> TableDef {
        TableDef {
            id,
            name: name.to_string(),
            shard_key: primary_key.first().copied().unwrap_or(0),
            columns,
            primary_key,
            replicated: false,
            uniques: Vec::new(),
            hidden: false,
            indexes: Vec::new(),
            strategy: Strategy::Hash,
            rowid: None,
            locked: false,
            rewritten_from: None,
            conflict_greatest: None,
        }
    }

    /// True for a column SQL can name: not dropped and not the row id.
    pub fn is_visible(&self, i: usize) -> bool {
        !self.columns[i].dropped && self.rowid != Some(i)
    }

    /// Position of the (live) column named `name`.
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns
            .iter()
            .enumerate()
            .position(|(i, c)| c.name == name && self.is_visible(i))
    }

    /// Positions of the columns SQL sees, in order.
    pub fn visible_columns(&self) -> Vec<usize> {
        (0..self.columns.len())
            .filter(|&i| self.is_visible(i))
            .collect()
    }

    /// Where the shard key sits in the primary key (keys route by it).
    pub fn shard_key_in_pk(&self) -> usize {
        self.primary_key
            .iter()
            .position(|&c| c == self.shard_key)
            .unwrap_or(0)
    }

    /// Pads a stored row written before columns were added.
    pub fn complete_row(&self, row: &mut Row) {
        while row.len() < self.columns.len() {
            let c = &self.columns[row.len()];
            row.push(c.missing.clone().unwrap_or(Value::Null));
        }
    }

    /// PostgreSQL's name for the primary key constraint.
    pub fn pkey_name(&self) -> String {
        format!("{}_pkey", self.name)
    }

    /// The 23505 error for a row whose primary key already exists.
    pub fn duplicate_error(&self, row: &Row) -> StorageError {
        let cols: Vec<&str> = self
            .primary_key
            .iter()
            .map(|&i| self.columns[i].name.as_str())
            .collect();
        let vals: Vec<String> = self
            .primary_key
            .iter()
            .map(|&i| {
                row.get(i)
                    .and_then(Value::to_text)
                    .unwrap_or_else(|| "null".into())
            })
            .collect();
        StorageError::DuplicateKey {
            constraint: self.pkey_name(),
            detail: format!(
                "Key ({})=({}) already exists.",
                cols.join(", "),
                vals.join(", ")
            ),
        }
    }

    /// 23502 if `row` has NULL in a NOT NULL column.
    pub fn check_not_null(&self, row: &Row) -> Result<(), StorageError> {
        for (c, v) in self.columns.iter().zip(row) {
            if !c.nullable && v.is_null() {
                let values: Vec<String> = row
                    .iter()
                    .map(|v| v.to_text().unwrap_or_else(|| "null".into()))
                    .collect();
                return Err(StorageError::NotNull {
                    table: self.name.clone(),
                    column: c.name.clone(),
                    detail: format!("Failing row contains ({}).", values.join(", ")),
                });
            }
        }
        Ok(())
    }
}

/// The set of tables; versioned so shards that missed a DDL can be caught up.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Catalog {
    pub version: u64,
    pub next_table_id: TableId,
    pub tables: BTreeMap<String, TableDef>,
}

impl Catalog {
    pub fn get(&self, name: &str) -> Option<&TableDef> {
        self.tables.get(name)
    }

    pub fn by_id(&self, id: TableId) -> Option<&TableDef> {
        self.tables.values().find(|t| t.id == id)
    }
}
