//! Name resolution: the columns a FROM clause makes visible, each with the
//! table (or alias) that qualifies it, in the order of the source row.

use fortress_storage::{DataType, TableDef};

use crate::error::{ProxyError, Result};

/// Name prefix of the columns SQL cannot see (dropped ones, the row id of
/// a table without a primary key); `*` skips them.
pub const HIDDEN_PREFIX: &str = "........";

#[derive(Clone, Debug)]
pub struct ScopeColumn {
    /// Table name or alias; `None` for unnamed derived columns.
    pub qualifier: Option<String>,
    pub name: String,
    pub ty: DataType,
}

/// Columns visible to expressions; a column's index is its position in the
/// source row.
#[derive(Clone, Debug, Default)]
pub struct Scope {
    pub columns: Vec<ScopeColumn>,
}

impl Scope {
    /// The columns of `table`, qualified by `alias` or the table's name.
    pub fn table(table: &TableDef, alias: Option<&str>) -> Scope {
        let q = alias.unwrap_or(&table.name).to_string();
        Scope {
            columns: table
                .columns
                .iter()
                .enumerate()
                .map(|(i, c)| ScopeColumn {
                    qualifier: Some(q.clone()),
                    // A dropped column keeps its place in the row, under a
                    // name no query can write (PostgreSQL's own spelling).
                    name: if c.dropped {
                        format!("{HIDDEN_PREFIX}pg.dropped.{}........", i + 1)
                    } else if table.rowid == Some(i) {
                        format!("{HIDDEN_PREFIX}fortress.rowid........")
                    } else {
                        c.name.clone()
                    },
                    ty: c.ty,
                })
                .collect(),
        }
    }

    /// Named columns under one qualifier (derived tables, `excluded`).
    pub fn named(qualifier: &str, cols: impl IntoIterator<Item = (String, DataType)>) -> Scope {
        Scope {
            columns: cols
                .into_iter()
                .map(|(name, ty)| ScopeColumn {
                    qualifier: Some(qualifier.to_string()),
                    name,
                    ty,
                })
                .collect(),
        }
    }

    /// The scope of `self` joined with `other`: left columns then right.
    pub fn join(mut self, other: Scope) -> Scope {
        self.columns.extend(other.columns);
        self
    }

    pub fn has_qualifier(&self, q: &str) -> bool {
        self.columns
            .iter()
            .any(|c| c.qualifier.as_deref() == Some(q))
    }

    /// Finds `[qualifier.]name`: `Ok(None)` when absent, 42702 when ambiguous,
    /// 42P01 when the qualifier names no table in scope.
    pub fn resolve(&self, qualifier: Option<&str>, name: &str) -> Result<Option<usize>> {
        if let Some(q) = qualifier {
            if !self.has_qualifier(q) {
                return Err(ProxyError::new(
                    "42P01",
                    format!("missing FROM-clause entry for table \"{q}\""),
                ));
            }
        }
        let mut found = None;
        for (i, c) in self.columns.iter().enumerate() {
            let q_ok = qualifier.is_none_or(|q| c.qualifier.as_deref() == Some(q));
            if q_ok && c.name == name {
                if found.is_some() {
                    return Err(ProxyError::new(
                        "42702",
                        format!("column reference \"{name}\" is ambiguous"),
                    ));
                }
                found = Some(i);
            }
        }
        Ok(found)
    }

    /// Display name of column `i` for messages: `table.column`.
    pub fn display(&self, i: usize) -> String {
        let c = &self.columns[i];
        match &c.qualifier {
            Some(q) => format!("{q}.{}", c.name),
            None => c.name.clone(),
        }
    }
}
