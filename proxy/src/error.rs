//! Proxy errors: every variant knows the SQLSTATE it is reported with.

use fortress_storage::{EvalError, StorageError};

/// An error on the way from SQL text to rows.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    /// A front-end error with its SQLSTATE (syntax, binding, unsupported...).
    #[error("{message}")]
    Sql {
        code: &'static str,
        message: String,
        detail: Option<String>,
        /// 1-based (line, column) in the query text the error points at.
        position: Option<(u64, u64)>,
    },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Eval(#[from] EvalError),
}

impl ProxyError {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        ProxyError::Sql {
            code,
            message: message.into(),
            detail: None,
            position: None,
        }
    }

    /// Adds a DETAIL line.
    pub fn with_detail(self, text: impl Into<String>) -> Self {
        match self {
            ProxyError::Sql {
                code,
                message,
                position,
                ..
            } => ProxyError::Sql {
                code,
                message,
                detail: Some(text.into()),
                position,
            },
            other => other,
        }
    }

    /// Points the error at a place in the query (shown by psql as `LINE n:`).
    pub fn at(self, span: sqlparser::tokenizer::Span) -> Self {
        if span.start.line == 0 {
            return self;
        }
        let position = Some((span.start.line, span.start.column));
        match self {
            ProxyError::Sql {
                code,
                message,
                detail,
                position: None,
            } => ProxyError::Sql {
                code,
                message,
                detail,
                position,
            },
            e @ ProxyError::Sql { .. } => e,
            other => ProxyError::Sql {
                code: other.sql_state(),
                detail: other.detail().map(str::to_string),
                message: other.to_string(),
                position,
            },
        }
    }

    /// The 1-based character offset in `query` the error points at.
    pub fn position_in(&self, query: &str) -> Option<usize> {
        let ProxyError::Sql {
            position: Some((line, col)),
            ..
        } = self
        else {
            return None;
        };
        let mut offset = 0;
        for (i, l) in query.split('\n').enumerate() {
            if i as u64 + 1 == *line {
                return Some(offset + *col as usize);
            }
            offset += l.chars().count() + 1;
        }
        None
    }

    /// 42601
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::new("42601", message)
    }

    /// 0A000
    pub fn unsupported(what: impl std::fmt::Display) -> Self {
        Self::new("0A000", format!("{what} is not supported"))
    }

    /// 42P01
    pub fn undefined_table(name: &str) -> Self {
        Self::new("42P01", format!("relation \"{name}\" does not exist"))
    }

    /// 42703
    pub fn undefined_column(name: &str) -> Self {
        Self::new("42703", format!("column \"{name}\" does not exist"))
    }

    /// The SQLSTATE sent in the ErrorResponse.
    pub fn sql_state(&self) -> &'static str {
        match self {
            ProxyError::Sql { code, .. } => code,
            ProxyError::Storage(e) => e.sql_state(),
            ProxyError::Eval(e) => e.sql_state(),
        }
    }

    /// Optional DETAIL line.
    pub fn detail(&self) -> Option<&str> {
        match self {
            ProxyError::Sql { detail, .. } => detail.as_deref(),
            ProxyError::Storage(e) => e.detail(),
            ProxyError::Eval(_) => None,
        }
    }
}

pub type Result<T, E = ProxyError> = std::result::Result<T, E>;
