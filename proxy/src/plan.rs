//! Bound statements: SQL resolved against the catalog, with types checked
//! and literals coerced. The executor turns these into shard fragments.

pub use fortress_storage::aggregate::{AggCall, AggFunc, Aggregate};
pub use fortress_storage::join::JoinKind;
use std::sync::Arc;

use fortress_storage::{DataType, Expr, Row, SortKey, TableDef};

/// One output column.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub ty: DataType,
}

/// Where a SELECT's rows come from. Rows of a join are the left row followed
/// by the right row.
#[derive(Clone, Debug, PartialEq)]
pub enum Source {
    Table(Arc<TableDef>),
    Join {
        left: Box<Source>,
        right: Box<Source>,
        kind: JoinKind,
        /// Over the joined row; `None` joins every pair.
        on: Option<Expr>,
    },
    /// `FROM (SELECT ...) alias`.
    Derived(Box<SelectPlan>),
    /// A system relation's rows, computed from the catalog at bind time.
    Rows {
        rows: Vec<Row>,
        width: usize,
    },
    /// `left UNION / INTERSECT / EXCEPT [ALL] right`.
    SetOp {
        op: SetOp,
        all: bool,
        left: Box<SelectPlan>,
        right: Box<SelectPlan>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SetOp {
    Union,
    Intersect,
    Except,
}

impl Source {
    /// Width of the rows this source produces.
    pub fn width(&self) -> usize {
        match self {
            Source::Table(t) => t.columns.len(),
            Source::Join { left, right, .. } => left.width() + right.width(),
            Source::Derived(p) => p.columns.len(),
            Source::SetOp { left, .. } => left.columns.len(),
            Source::Rows { width, .. } => *width,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubqueryKind {
    /// `(SELECT x ...)`: at most one row, one column.
    Scalar,
    /// `EXISTS (SELECT ...)`.
    Exists,
    /// `x IN (SELECT y ...)`: the column's values.
    List,
}

/// A subquery whose result fills `Expr::Slot(slot)`: before the statement
/// runs, or per outer row when it is correlated.
#[derive(Clone, Debug, PartialEq)]
pub struct Subquery {
    pub slot: u32,
    pub kind: SubqueryKind,
    pub plan: SelectPlan,
    /// Correlated references: (slot inside `plan`, column of the enclosing
    /// query's source row). Empty for an uncorrelated subquery, which runs
    /// once; a correlated one runs per outer row.
    pub outer_refs: Vec<(u32, usize)>,
}

/// A SELECT: source, filter, grouping, projection, DISTINCT, sort, limit.
#[derive(Clone, Debug, PartialEq)]
pub struct SelectPlan {
    /// `None` for `SELECT <exprs>` without FROM.
    pub source: Option<Source>,
    /// Over the source row.
    pub filter: Option<Expr>,
    pub aggregate: Option<Aggregate>,
    /// Over the aggregate's row.
    pub having: Option<Expr>,
    /// Over the source (or aggregate) row; columns past `columns.len()` are
    /// hidden sort keys.
    pub projection: Vec<Expr>,
    pub columns: Vec<OutputColumn>,
    pub distinct: bool,
    /// Over the projected row.
    pub order_by: Vec<SortKey>,
    pub limit: Option<u64>,
    pub offset: u64,
    pub subqueries: Vec<Subquery>,
    /// Output columns that are bare string literals: a set operation gives
    /// them the other side's type, as PostgreSQL resolves `unknown`.
    pub untyped: Vec<bool>,
}

impl SelectPlan {
    /// One table without grouping or DISTINCT: filter, sort and limit can
    /// run on the shards, merged at the proxy.
    pub fn runs_on_shards(&self) -> bool {
        matches!(self.source, Some(Source::Table(_))) && self.aggregate.is_none() && !self.distinct
    }
}

/// `RETURNING`: expressions over the written row.
#[derive(Clone, Debug, PartialEq)]
pub struct Returning {
    pub projection: Vec<Expr>,
    pub columns: Vec<OutputColumn>,
}

/// `ON CONFLICT` on the primary key.
#[derive(Clone, Debug, PartialEq)]
pub enum OnConflict {
    DoNothing,
    /// Assignments and filter over `[existing row.., excluded row..]`.
    DoUpdate {
        assignments: Vec<(usize, Expr)>,
        filter: Option<Expr>,
    },
}

/// One ALTER TABLE action.
#[derive(Clone, Debug, PartialEq)]
pub enum AlterOp {
    AddColumn {
        column: fortress_storage::ColumnDef,
        if_not_exists: bool,
    },
    DropColumn {
        name: String,
        if_exists: bool,
    },
    /// On a table created without one: the rows are re-keyed by `columns`.
    AddPrimaryKey {
        columns: Vec<usize>,
    },
}

/// A statement ready to execute.
#[derive(Clone, Debug, PartialEq)]
pub enum Plan {
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    DropTable {
        names: Vec<String>,
        if_exists: bool,
    },
    Truncate {
        names: Vec<String>,
    },
    AlterTable {
        table: String,
        ops: Vec<AlterOp>,
    },
    CreateIndex {
        table: String,
        name: String,
        columns: Vec<usize>,
        if_not_exists: bool,
    },
    DropIndex {
        names: Vec<String>,
        if_exists: bool,
    },
    Insert {
        table: Arc<TableDef>,
        rows: Vec<Row>,
        on_conflict: Option<OnConflict>,
        returning: Option<Returning>,
    },
    Select(SelectPlan),
    Update {
        table: Arc<TableDef>,
        filter: Option<Expr>,
        assignments: Vec<(usize, Expr)>,
        returning: Option<Returning>,
        subqueries: Vec<Subquery>,
    },
    Delete {
        table: Arc<TableDef>,
        filter: Option<Expr>,
        returning: Option<Returning>,
        subqueries: Vec<Subquery>,
    },
    /// COPY table [(cols)] FROM STDIN: the wire layer collects the data.
    CopyIn {
        table: Arc<TableDef>,
        columns: Vec<usize>,
        format: crate::copy::CopyFormat,
    },
    /// COPY table / (query) TO STDOUT.
    CopyOut {
        select: SelectPlan,
        format: crate::copy::CopyFormat,
    },
    /// `SHOW fortress.metrics`: routing and per-shard request counters.
    ShowMetrics,
    /// `SHOW fortress.replication`: the standbys streaming from this node,
    /// or on a standby its primary, with their lag.
    ShowReplication,
    /// `SELECT * FROM fortress_conflicts` (or `SHOW fortress.conflicts`):
    /// rows whose versions on two multi-master peers were written
    /// concurrently, with both versions, until a later write resolves them.
    ShowConflicts,
    /// EXPLAIN: the plan's description, not its execution.
    Explain(Box<Plan>),
    /// `SELECT pg_sleep(n)`: waits, cancellably.
    Sleep(std::time::Duration),
    /// VACUUM: collect the old versions of these trees (a table, its
    /// indexes and its UNIQUE index tables) on every shard now; every tree
    /// when empty.
    Vacuum {
        trees: Vec<fortress_storage::TableId>,
    },
    /// ANALYZE: the planner keeps no statistics, so once the tables are
    /// known to exist there is nothing left to do.
    Analyze,
    SetVariable {
        name: String,
        value: Option<String>,
    },
    ShowVariable {
        name: String,
    },
    /// BEGIN or START TRANSACTION (the command tag echoes which).
    Begin {
        tag: &'static str,
        /// `ISOLATION LEVEL ...`; otherwise the session's default.
        isolation: Option<crate::txn::Isolation>,
    },
    Commit,
    Rollback,
}

impl Plan {
    /// Whether the plan changes the catalog.
    pub fn is_ddl(&self) -> bool {
        matches!(
            self,
            Plan::CreateTable { .. }
                | Plan::DropTable { .. }
                | Plan::Truncate { .. }
                | Plan::AlterTable { .. }
                | Plan::CreateIndex { .. }
                | Plan::DropIndex { .. }
        )
    }

    /// The command a read-only node refuses (25006) for this plan, if it
    /// writes: rows, the catalog, or the store's own upkeep.
    pub fn write_command(&self) -> Option<&'static str> {
        Some(match self {
            Plan::Insert { .. } => "INSERT",
            Plan::Update { .. } => "UPDATE",
            Plan::Delete { .. } => "DELETE",
            Plan::CopyIn { .. } => "COPY FROM",
            Plan::Truncate { .. } => "TRUNCATE TABLE",
            Plan::CreateTable { .. } => "CREATE TABLE",
            Plan::DropTable { .. } => "DROP TABLE",
            Plan::AlterTable { .. } => "ALTER TABLE",
            Plan::CreateIndex { .. } => "CREATE INDEX",
            Plan::DropIndex { .. } => "DROP INDEX",
            Plan::Vacuum { .. } => "VACUUM",
            _ => return None,
        })
    }

    /// Columns of the rows this plan returns (empty for commands).
    pub fn output_columns(&self) -> Vec<OutputColumn> {
        match self {
            Plan::Select(s) => s.columns.clone(),
            Plan::ShowVariable { name } => vec![OutputColumn {
                name: name.clone(),
                ty: DataType::Text,
            }],
            Plan::ShowConflicts => [
                ("table_name", DataType::Text),
                ("key", DataType::Text),
                ("visible_node", DataType::Text),
                ("visible_commit_time", DataType::Timestamptz),
                ("visible_row", DataType::Text),
                ("sibling_node", DataType::Text),
                ("sibling_commit_time", DataType::Timestamptz),
                ("sibling_row", DataType::Text),
            ]
            .into_iter()
            .map(|(name, ty)| OutputColumn {
                name: name.into(),
                ty,
            })
            .collect(),
            Plan::ShowReplication => [
                ("name", DataType::Text),
                ("role", DataType::Text),
                ("state", DataType::Text),
                ("mode", DataType::Text),
                ("positions", DataType::Text),
                ("lag_bytes", DataType::Int8),
                ("lag_seconds", DataType::Float8),
            ]
            .into_iter()
            .map(|(name, ty)| OutputColumn {
                name: name.into(),
                ty,
            })
            .collect(),
            Plan::ShowMetrics => vec![
                OutputColumn {
                    name: "metric".into(),
                    ty: DataType::Text,
                },
                OutputColumn {
                    name: "value".into(),
                    ty: DataType::Text,
                },
            ],
            Plan::Explain(_) => vec![OutputColumn {
                name: "QUERY PLAN".into(),
                ty: DataType::Text,
            }],
            Plan::Sleep(_) => vec![OutputColumn {
                name: "pg_sleep".into(),
                ty: DataType::Text,
            }],
            Plan::Insert {
                returning: Some(r), ..
            }
            | Plan::Update {
                returning: Some(r), ..
            }
            | Plan::Delete {
                returning: Some(r), ..
            } => r.columns.clone(),
            _ => Vec::new(),
        }
    }
}
