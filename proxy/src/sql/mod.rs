//! SQL front end: sqlparser (PostgreSQL dialect) and the binder that resolves
//! statements against the catalog into [`crate::plan::Plan`]s.

pub mod bind;
pub mod expr;
pub mod query;
pub mod scope;
pub mod strategy;
pub mod types;
pub mod virtual_tables;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{ProxyError, Result};

/// Parses a query string into statements (42601 on a syntax error).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    Parser::parse_sql(&PostgreSqlDialect {}, sql).or_else(|e| {
        // sqlparser reads inline data after `COPY ... FROM STDIN` up to a
        // `;`; drivers send the statement alone, without one.
        let t = sql.trim_end();
        let copy = t.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("copy"));
        if copy && !t.ends_with(';') {
            if let Ok(stmts) = Parser::parse_sql(&PostgreSqlDialect {}, &format!("{t};")) {
                return Ok(stmts);
            }
        }
        Err(ProxyError::syntax(syntax_message(&e.to_string())))
    })
}

/// Phrases a parser error the way PostgreSQL does: `syntax error at or near
/// "token"` or `syntax error at end of input`.
fn syntax_message(raw: &str) -> String {
    let msg = raw.strip_prefix("sql parser error: ").unwrap_or(raw);
    if let Some(found) = msg.split(", found: ").nth(1) {
        let token = found.split(" at Line:").next().unwrap_or(found).trim();
        if token == "EOF" {
            return "syntax error at end of input".into();
        }
        return format!("syntax error at or near \"{token}\"");
    }
    format!("syntax error: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_read_like_postgres() {
        let e = parse("selec 1").unwrap_err();
        assert_eq!(e.sql_state(), "42601");
        assert_eq!(e.to_string(), "syntax error at or near \"selec\"");
        let e = parse("select * from").unwrap_err();
        assert_eq!(e.to_string(), "syntax error at end of input");
    }
}
