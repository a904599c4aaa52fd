//! SQL front end: sqlparser (PostgreSQL dialect) and the binder that resolves
//! statements against the catalog into [`crate::plan::Plan`]s.

pub mod bind;
pub mod expr;
pub mod lex;
pub mod query;
pub mod scope;
pub mod shape;
pub mod strategy;
pub mod template;
pub mod types;
pub mod virtual_tables;

use sqlparser::ast::Statement;
use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::parser::Parser;

use crate::error::{ProxyError, Result};

/// The longest statement text parsed (54000 beyond): sqlparser holds a
/// token of some 90 bytes per word or symbol and the tree on top, and a
/// multi-row INSERT was measured at about 180 bytes of memory per byte of
/// text in all, so this bounds one statement near 1.5 GiB (a query string
/// may hold many statements, each parsed only when its turn comes).
pub const MAX_STATEMENT_BYTES: usize = 8 << 20;

/// Parses a query string into statements (42601 on a syntax error; 54000
/// for a statement past [`MAX_STATEMENT_BYTES`], 54001 for one nesting or
/// chaining past what the stack allows, see [`lex`]).
pub fn parse(sql: &str) -> Result<Vec<Statement>> {
    if sql.len() > MAX_STATEMENT_BYTES {
        return Err(ProxyError::new(
            "54000",
            format!(
                "statement is too long: {} bytes, at most {MAX_STATEMENT_BYTES} \
                 (split it, or load rows with COPY)",
                sql.len()
            ),
        ));
    }
    if let Some(pieces) = with_maintenance(sql) {
        let mut out = Vec::new();
        for piece in pieces {
            match maintenance(&piece) {
                Some(stmts) => out.extend(stmts?),
                None => out.extend(parse_sql(&piece)?),
            }
        }
        return Ok(out);
    }
    parse_sql(sql)
}

/// When some statement of `sql` is VACUUM or ANALYZE: the text of each
/// statement, split at the top-level semicolons. Text without either word
/// is not tokenized here (every query passes through).
fn with_maintenance(sql: &str) -> Option<Vec<String>> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let mentions = sql.as_bytes().windows(6).any(|w| {
        w.eq_ignore_ascii_case(b"vacuum")
            || w.eq_ignore_ascii_case(b"analyz")
            || w.eq_ignore_ascii_case(b"analys")
    });
    if !mentions {
        return None;
    }
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut pieces = vec![Vec::new()];
    let mut found = false;
    for tok in tokens {
        if tok == Token::SemiColon {
            pieces.push(Vec::new());
            continue;
        }
        let piece = pieces.last_mut().expect("one piece");
        let first = piece.iter().all(|t| matches!(t, Token::Whitespace(_)));
        if let (true, Token::Word(w)) = (first, &tok) {
            found |= w.quote_style.is_none()
                && ["vacuum", "analyze", "analyse"]
                    .iter()
                    .any(|k| w.value.eq_ignore_ascii_case(k));
        }
        piece.push(tok);
    }
    found.then(|| {
        pieces
            .into_iter()
            .filter(|p| p.iter().any(|t| !matches!(t, Token::Whitespace(_))))
            .map(|p| p.iter().map(ToString::to_string).collect())
            .collect()
    })
}

/// Tokenizes `sql`, checks the tokens against the depth bound (see [`lex`])
/// and parses them: the bound is measured on what the parser reads.
fn parse_checked(sql: &str) -> std::result::Result<Vec<Statement>, ProxyError> {
    use sqlparser::tokenizer::Tokenizer;
    let dialect = PostgreSqlDialect {};
    let syntax =
        |e: sqlparser::parser::ParserError| ProxyError::syntax(syntax_message(&e.to_string()));
    let tokens = Tokenizer::new(&dialect, sql)
        .tokenize_with_location()
        .map_err(|e| syntax(e.into()))?;
    lex::check_depth(tokens.iter().map(|t| &t.token))?;
    Parser::new(&dialect)
        .with_tokens_with_locations(tokens)
        .parse_statements()
        .map_err(syntax)
}

fn parse_sql(sql: &str) -> Result<Vec<Statement>> {
    parse_checked(sql).or_else(|e| {
        if e.sql_state() != "42601" {
            return Err(e);
        }
        // sqlparser reads inline data after `COPY ... FROM STDIN` up to a
        // `;`; drivers send the statement alone, without one.
        let t = sql.trim_end();
        let copy = t.get(..4).is_some_and(|h| h.eq_ignore_ascii_case("copy"));
        if copy {
            let t = copy_booleans(t).unwrap_or_else(|| t.to_string());
            let t = if t.ends_with(';') { t } else { format!("{t};") };
            if let Ok(stmts) = parse_checked(&t) {
                return Ok(stmts);
            }
        }
        Err(e)
    })
}

/// PostgreSQL's `VACUUM [(options)] [FULL] [FREEZE] [VERBOSE] [ANALYZE]
/// [table [(columns)], ...]` and `ANALYZE [VERBOSE] [table, ...]`, which
/// sqlparser reads in other dialects' grammars: one `Statement::Vacuum` (or
/// `Statement::Analyze`) per table named. `None` if `sql` is not one of them.
fn maintenance(sql: &str) -> Option<Result<Vec<Statement>>> {
    use sqlparser::ast::{Ident, ObjectName, VacuumStatement};
    use sqlparser::tokenizer::{Token, Tokenizer};
    let tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut toks = tokens
        .into_iter()
        .filter(|t| !matches!(t, Token::Whitespace(_)))
        .peekable();
    let word = |t: &Token| match t {
        Token::Word(w) if w.quote_style.is_none() => Some(w.value.to_lowercase()),
        _ => None,
    };
    let vacuum = match word(toks.peek()?)?.as_str() {
        "vacuum" => true,
        "analyze" | "analyse" => false,
        _ => return None,
    };
    toks.next();
    let syntax = |t: Option<Token>| {
        Some(Err(ProxyError::syntax(match t {
            None => "syntax error at end of input".to_string(),
            Some(t) => format!("syntax error at or near \"{t}\""),
        })))
    };
    let mut full = false;
    if toks.peek() == Some(&Token::LParen) {
        // An option list: nothing in it changes what fortress does.
        for t in toks.by_ref() {
            if t == Token::RParen {
                break;
            }
        }
    }
    while let Some(w) = toks.peek().and_then(word) {
        match w.as_str() {
            "full" if vacuum => full = true,
            "freeze" | "analyze" | "analyse" if vacuum => {}
            "verbose" => {}
            _ => break,
        }
        toks.next();
    }
    let mut tables: Vec<ObjectName> = Vec::new();
    loop {
        let mut parts = Vec::new();
        loop {
            match toks.next() {
                Some(Token::Word(w)) => parts.push(Ident {
                    value: w.value,
                    quote_style: w.quote_style,
                    span: sqlparser::tokenizer::Span::empty(),
                }),
                None if parts.is_empty() && tables.is_empty() => break,
                other => return syntax(other),
            }
            if toks.peek() != Some(&Token::Period) {
                break;
            }
            toks.next();
        }
        if parts.is_empty() {
            break;
        }
        tables.push(ObjectName::from(parts));
        if toks.peek() == Some(&Token::LParen) {
            for t in toks.by_ref() {
                if t == Token::RParen {
                    break;
                }
            }
        }
        match toks.next() {
            Some(Token::Comma) => continue,
            None | Some(Token::SemiColon) => break,
            other => return syntax(other),
        }
    }
    if let Some(t) = toks.find(|t| *t != Token::SemiColon) {
        return syntax(Some(t));
    }
    let statement = |table: Option<ObjectName>| {
        if vacuum {
            Statement::Vacuum(VacuumStatement {
                full,
                sort_only: false,
                delete_only: false,
                reindex: false,
                recluster: false,
                table_name: table,
                threshold: None,
                boost: false,
            })
        } else {
            Statement::Analyze {
                table_name: table.unwrap_or_else(|| ObjectName(Vec::new())),
                partitions: None,
                for_columns: false,
                columns: Vec::new(),
                cache_metadata: false,
                noscan: false,
                compute_statistics: false,
                has_table_keyword: false,
            }
        }
    };
    Some(Ok(if tables.is_empty() {
        vec![statement(None)]
    } else {
        tables.into_iter().map(|t| statement(Some(t))).collect()
    }))
}

/// COPY's boolean options (`FREEZE on`, `HEADER 1`, as pgbench sends them)
/// spelled `true`/`false`, the only spellings sqlparser takes there.
fn copy_booleans(sql: &str) -> Option<String> {
    use sqlparser::tokenizer::{Token, Tokenizer};
    let mut tokens = Tokenizer::new(&PostgreSqlDialect {}, sql).tokenize().ok()?;
    let mut changed = false;
    let mut option = false;
    for tok in &mut tokens {
        let spelled = match tok {
            Token::Whitespace(_) => continue,
            Token::Word(w) if option => match w.value.to_lowercase().as_str() {
                "on" => Some(true),
                "off" => Some(false),
                _ => None,
            },
            Token::Number(n, _) if option && (n == "0" || n == "1") => Some(n == "1"),
            _ => None,
        };
        if let Some(b) = spelled {
            *tok = Token::make_keyword(if b { "TRUE" } else { "FALSE" });
            changed = true;
        }
        option = matches!(tok, Token::Word(w)
            if w.value.eq_ignore_ascii_case("freeze") || w.value.eq_ignore_ascii_case("header"));
    }
    changed.then(|| tokens.iter().map(ToString::to_string).collect())
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
    fn vacuum_and_analyze_read_postgres_grammar() {
        let tables = |sql: &str| -> Vec<Option<String>> {
            parse(sql)
                .unwrap()
                .into_iter()
                .map(|s| match s {
                    Statement::Vacuum(v) => v.table_name.map(|n| n.to_string()),
                    Statement::Analyze { table_name, .. } if table_name.0.is_empty() => None,
                    Statement::Analyze { table_name, .. } => Some(table_name.to_string()),
                    other => panic!("{other}"),
                })
                .collect()
        };
        assert_eq!(
            tables("vacuum analyze pgbench_branches"),
            [Some("pgbench_branches".into())]
        );
        assert_eq!(tables("VACUUM"), [None]);
        assert_eq!(
            tables("vacuum (verbose, analyze) public.a (x, y), b;"),
            [Some("public.a".into()), Some("b".into())]
        );
        assert_eq!(tables("analyze verbose t"), [Some("t".into())]);
        assert_eq!(
            tables("vacuum a; analyze b;"),
            [Some("a".into()), Some("b".into())]
        );
        assert_eq!(parse("select ';'; vacuum t").unwrap().len(), 2);
        assert_eq!(tables("ANALYZE"), [None]);
        for bad in ["vacuum a b", "vacuum a,", "analyze 1", "vacuum full ,"] {
            assert_eq!(parse(bad).unwrap_err().sql_state(), "42601", "{bad}");
        }
    }

    #[test]
    fn copy_boolean_options_take_postgres_spellings() {
        for sql in [
            "copy t from stdin with (freeze on)",
            "COPY t FROM STDIN WITH (FORMAT csv, HEADER 1)",
            "copy t from stdin (freeze off);",
        ] {
            assert!(parse(sql).is_ok(), "{sql}");
        }
        assert_eq!(
            copy_booleans("copy t from stdin with (freeze on, header 0)").as_deref(),
            Some("copy t from stdin with (freeze TRUE, header FALSE)")
        );
        assert!(parse("copy t from stdin with (freeze maybe)").is_err());
    }

    #[test]
    fn syntax_errors_read_like_postgres() {
        let e = parse("selec 1").unwrap_err();
        assert_eq!(e.sql_state(), "42601");
        assert_eq!(e.to_string(), "syntax error at or near \"selec\"");
        let e = parse("select * from").unwrap_err();
        assert_eq!(e.to_string(), "syntax error at end of input");
    }
}
