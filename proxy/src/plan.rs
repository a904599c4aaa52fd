//! Bound statements: SQL resolved against the catalog, with types checked
//! and literals coerced. The executor turns these into shard fragments.

use fortress_storage::{DataType, Expr, Row, SortKey, TableDef};

/// One output column.
#[derive(Clone, Debug, PartialEq)]
pub struct OutputColumn {
    pub name: String,
    pub ty: DataType,
}

/// A SELECT: scan (or no table), filter, sort, limit, project.
#[derive(Clone, Debug)]
pub struct SelectPlan {
    /// `None` for `SELECT <exprs>` without FROM.
    pub table: Option<TableDef>,
    pub filter: Option<Expr>,
    pub projection: Vec<Expr>,
    pub columns: Vec<OutputColumn>,
    pub order_by: Vec<SortKey>,
    pub limit: Option<u64>,
    pub offset: u64,
}

/// A statement ready to execute.
#[derive(Clone, Debug)]
pub enum Plan {
    CreateTable {
        table: TableDef,
        if_not_exists: bool,
    },
    DropTable {
        names: Vec<String>,
        if_exists: bool,
    },
    Insert {
        table: TableDef,
        rows: Vec<Row>,
    },
    Select(SelectPlan),
    Update {
        table: TableDef,
        filter: Option<Expr>,
        assignments: Vec<(usize, Expr)>,
    },
    Delete {
        table: TableDef,
        filter: Option<Expr>,
    },
    SetVariable {
        name: String,
        value: Option<String>,
    },
    ShowVariable {
        name: String,
    },
    Begin,
    Commit,
    Rollback,
}

impl Plan {
    /// Columns of the rows this plan returns (empty for commands).
    pub fn output_columns(&self) -> Vec<OutputColumn> {
        match self {
            Plan::Select(s) => s.columns.clone(),
            Plan::ShowVariable { name } => vec![OutputColumn {
                name: name.clone(),
                ty: DataType::Text,
            }],
            _ => Vec::new(),
        }
    }
}
