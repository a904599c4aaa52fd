//! Differential test: every statement of `tests/compat/*.sql` runs on a
//! throwaway PostgreSQL 15 and on fortress, and the results must be the same:
//! column names and type OIDs, rows (as multisets unless the statement has
//! ORDER BY), command tags and SQLSTATEs. Error messages are not compared.
//!
//! Script format: statements end with `;` at the end of a line; `--` lines
//! between statements are comments; a `COPY ... FROM STDIN` statement is
//! followed by its data lines and a `\.` line, as in psql scripts. Text in
//! a `/*fortress: ... */` comment is fortress-only (sharding options of a
//! CREATE TABLE): PostgreSQL sees a comment, fortress the text.

mod common;

use std::path::{Path, PathBuf};

use common::postgres::Postgres;
use common::rawpg::{Outcome, RawClient};
use common::Server;

/// One statement of a script, with the line it starts on.
struct Statement {
    line: usize,
    sql: String,
    copy_data: Option<String>,
}

/// Splits a script into statements: a statement ends at a line ending in `;`
/// outside quotes.
fn split(script: &str) -> Vec<Statement> {
    let mut out = Vec::new();
    let mut lines = script.lines().enumerate();
    let mut current = String::new();
    let mut start = 0;
    let mut in_quote = false;
    while let Some((i, line)) = lines.next() {
        if current.is_empty() && (line.trim().is_empty() || line.trim_start().starts_with("--")) {
            continue;
        }
        if current.is_empty() {
            start = i + 1;
        }
        for c in line.chars() {
            if c == '\'' {
                in_quote = !in_quote;
            }
        }
        current.push_str(line);
        current.push('\n');
        if !in_quote && line.trim_end().ends_with(';') {
            let sql = std::mem::take(&mut current).trim().to_string();
            let lower = sql.to_lowercase();
            let copy_data = if lower.starts_with("copy") && lower.contains("from stdin") {
                let mut data = String::new();
                for (_, l) in lines.by_ref() {
                    if l == "\\." {
                        break;
                    }
                    data.push_str(l);
                    data.push('\n');
                }
                Some(data)
            } else {
                None
            };
            out.push(Statement {
                line: start,
                sql,
                copy_data,
            });
        }
    }
    assert!(
        current.trim().is_empty(),
        "unterminated statement: {current}"
    );
    out
}

/// Puts rows in a canonical order when the statement does not fix one.
fn normalize(mut outcomes: Vec<Outcome>, ordered: bool) -> Vec<Outcome> {
    for o in &mut outcomes {
        match o {
            Outcome::Rows { rows, .. } if !ordered => rows.sort(),
            Outcome::CopyOut { data, .. } if !ordered => {
                let mut lines: Vec<&str> = data.lines().collect();
                lines.sort_unstable();
                *data = lines.join("\n");
            }
            Outcome::Error { message, .. } => message.clear(),
            _ => {}
        }
    }
    outcomes
}

/// The statement fortress runs: `/*fortress: X */` becomes ` X `.
fn for_fortress(sql: &str) -> String {
    let mut out = String::new();
    let mut rest = sql;
    while let Some(at) = rest.find("/*fortress:") {
        out.push_str(&rest[..at]);
        let body = &rest[at + "/*fortress:".len()..];
        let end = body.find("*/").expect("unterminated /*fortress: comment");
        out.push(' ');
        out.push_str(&body[..end]);
        out.push(' ');
        rest = &body[end + 2..];
    }
    out.push_str(rest);
    out
}

fn scripts() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/compat");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("tests/compat")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sql"))
        .collect();
    files.sort();
    files
}

#[test]
fn compat_scripts_match_postgres_15() {
    let Some(pg) = Postgres::start() else {
        return;
    };
    let mut admin = RawClient::connect(pg.port, "postgres", "postgres");
    let (mut total, mut same) = (0usize, 0usize);
    let mut report = String::new();
    for (n, path) in scripts().iter().enumerate() {
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        let db = format!("compat_{n}");
        let created = admin.query(&format!("CREATE DATABASE {db}"), None);
        assert_eq!(created, vec![Outcome::Command("CREATE DATABASE".into())]);
        let mut pg_client = RawClient::connect(pg.port, "postgres", &db);
        let dir = tempfile::tempdir().unwrap();
        let server = Server::start(dir.path());
        let mut fortress = RawClient::connect(server.port, "fortress", "app");
        let script = std::fs::read_to_string(path).unwrap();
        let mut file_same = 0;
        let statements = split(&script);
        for st in &statements {
            let ordered = st.sql.to_lowercase().contains("order by");
            let want = normalize(pg_client.query(&st.sql, st.copy_data.as_deref()), ordered);
            let got = normalize(
                fortress.query(&for_fortress(&st.sql), st.copy_data.as_deref()),
                ordered,
            );
            total += 1;
            if want == got {
                same += 1;
                file_same += 1;
            } else {
                report.push_str(&format!(
                    "\n--- {name}:{} ---\n{}\n  postgres: {want:?}\n  fortress: {got:?}\n",
                    st.line, st.sql
                ));
            }
        }
        eprintln!("{name}: {file_same}/{} identical", statements.len());
    }
    eprintln!("compat: {same}/{total} statements identical to PostgreSQL 15");
    assert!(total > 0, "no statements in tests/compat");
    assert!(
        report.is_empty(),
        "{} of {total} statements differ from PostgreSQL 15:{report}",
        total - same
    );
}

#[test]
fn splitter_handles_quotes_comments_and_copy() {
    let s = split("-- c\nSELECT 'a;\nb';\nCOPY t FROM STDIN;\n1\t2\n\\.\nSELECT 1;\n");
    assert_eq!(s.len(), 3);
    assert_eq!(s[0].sql, "SELECT 'a;\nb';");
    assert_eq!(s[1].copy_data.as_deref(), Some("1\t2\n"));
    assert_eq!(s[2].line, 7);
    let f = for_fortress("CREATE TABLE t (a int) /*fortress: WITH (x = 1) */;");
    let words: Vec<&str> = f.split_whitespace().collect();
    assert_eq!(words.join(" "), "CREATE TABLE t (a int) WITH (x = 1) ;");
}
