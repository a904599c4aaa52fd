//! Answers the catalog queries psql sends for `\dt`, `\di`, `\d table` and
//! `\l`, computed from fortress's catalog. These queries use PostgreSQL's
//! system tables (pg_class, pg_attribute, pg_index, ...) with correlated
//! subqueries, regex operators and reg* casts that the general engine does
//! not run, so each known query shape is recognised and answered here.
//! Shapes for features fortress lacks (policies, publications, inheritance,
//! extended statistics) answer with no rows, which is the truth here.

use fortress_storage::{Catalog, DataType, Expr, Func, TableDef, Value};

use crate::exec::QueryResult;
use crate::plan::OutputColumn;
use crate::session::Session;

/// OIDs of user tables start where PostgreSQL's do.
const FIRST_OID: u32 = 16384;

/// The OID psql sees for a table.
pub fn table_oid(t: &TableDef) -> u32 {
    FIRST_OID + 2 * t.id
}

/// Answers `sql` if it is one of psql's describe queries.
pub fn answer(sql: &str, catalog: &Catalog, session: &Session) -> Option<QueryResult> {
    if !sql.contains("pg_catalog.") {
        return None;
    }
    let tables = || {
        let mut v: Vec<&TableDef> = catalog.tables.values().filter(|t| !t.hidden).collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    };
    let owner = session.user.clone();
    if sql.contains("FROM pg_catalog.pg_database d") {
        return Some(result(
            &[
                "Name",
                "Owner",
                "Encoding",
                "Collate",
                "Ctype",
                "ICU Locale",
                "Locale Provider",
                "Access privileges",
            ],
            vec![vec![
                text(&session.database),
                text(&owner),
                text("UTF8"),
                text("C"),
                text("C"),
                Value::Null,
                text("libc"),
                Value::Null,
            ]],
        ));
    }
    let pattern = name_pattern(sql);
    let matches = |name: &str| pattern.as_ref().is_none_or(|p| glob_match(p, name));
    if sql.contains("c.relkind IN ('r','p'") {
        let rows = tables()
            .into_iter()
            .filter(|t| matches(&t.name))
            .map(|t| vec![text("public"), text(&t.name), text("table"), text(&owner)])
            .collect();
        return Some(result(&["Schema", "Name", "Type", "Owner"], rows));
    }
    if sql.contains("c.relkind IN ('i','I'") {
        let mut rows: Vec<Vec<Value>> = Vec::new();
        for t in tables() {
            for idx in index_names(t) {
                if matches(&idx) {
                    rows.push(vec![
                        text("public"),
                        text(&idx),
                        text("index"),
                        text(&owner),
                        text(&t.name),
                    ]);
                }
            }
        }
        rows.sort_by(|a, b| a[1].sort_cmp(&b[1]));
        return Some(result(&["Schema", "Name", "Type", "Owner", "Table"], rows));
    }
    if sql.starts_with("SELECT c.oid,\n  n.nspname,\n  c.relname") {
        let rows = tables()
            .into_iter()
            .filter(|t| matches(&t.name))
            .map(|t| {
                vec![
                    text(&table_oid(t).to_string()),
                    text("public"),
                    text(&t.name),
                ]
            })
            .collect();
        return Some(result(&["oid", "nspname", "relname"], rows));
    }
    let target =
        oid_literal(sql).and_then(|oid| tables().into_iter().find(|t| table_oid(t) == oid));
    if sql.starts_with("SELECT c.relchecks, c.relkind, c.relhasindex") {
        let rows = target
            .map(|_| {
                vec![
                    text("0"),
                    text("r"),
                    text("t"),
                    text("f"),
                    text("f"),
                    text("f"),
                    text("f"),
                    text("f"),
                    text("f"),
                    text(""),
                    text("0"),
                    text(""),
                    text("p"),
                    text("d"),
                    text("heap"),
                ]
            })
            .into_iter()
            .collect();
        return Some(result(
            &[
                "relchecks",
                "relkind",
                "relhasindex",
                "relhasrules",
                "relhastriggers",
                "relrowsecurity",
                "relforcerowsecurity",
                "relhasoids",
                "relispartition",
                "?column?",
                "reltablespace",
                "reloftype",
                "relpersistence",
                "relreplident",
                "amname",
            ],
            rows,
        ));
    }
    if sql.contains("FROM pg_catalog.pg_attribute a\nWHERE a.attrelid") {
        let rows = target
            .map(|t| {
                t.visible_columns()
                    .into_iter()
                    .map(|i| {
                        let c = &t.columns[i];
                        vec![
                            text(&c.name),
                            text(&format_type(&c.ty)),
                            c.default
                                .as_ref()
                                .map(|d| text(&deparse_default(d, &c.ty)))
                                .unwrap_or(Value::Null),
                            text(if c.nullable { "f" } else { "t" }),
                            Value::Null,
                            text(""),
                            text(""),
                        ]
                    })
                    .collect()
            })
            .unwrap_or_default();
        return Some(result(
            &[
                "attname",
                "format_type",
                "pg_get_expr",
                "attnotnull",
                "attcollation",
                "attidentity",
                "attgenerated",
            ],
            rows,
        ));
    }
    if sql.contains("FROM pg_catalog.pg_class c, pg_catalog.pg_class c2, pg_catalog.pg_index i") {
        let rows = target.map(index_rows).unwrap_or_default();
        return Some(result(
            &[
                "relname",
                "indisprimary",
                "indisunique",
                "indisclustered",
                "indisvalid",
                "pg_get_indexdef",
                "pg_get_constraintdef",
                "contype",
                "condeferrable",
                "condeferred",
                "indisreplident",
                "reltablespace",
            ],
            rows,
        ));
    }
    // Describe queries about features fortress does not have: no rows.
    let empty: &[(&str, &[&str])] = &[
        (
            "FROM pg_catalog.pg_policy pol",
            &[
                "polname",
                "polpermissive",
                "array_to_string",
                "pg_get_expr",
                "pg_get_expr",
                "cmd",
            ],
        ),
        (
            "FROM pg_catalog.pg_statistic_ext",
            &[
                "oid",
                "stxrelid",
                "nsp",
                "stxname",
                "columns",
                "ndist_enabled",
                "deps_enabled",
                "mcv_enabled",
                "stxstattarget",
            ],
        ),
        (
            "FROM pg_catalog.pg_publication p",
            &["pubname", "?column?", "?column?"],
        ),
        ("i.inhrelid = '", &["oid"]),
        (
            "i.inhparent = '",
            &["oid", "relkind", "inhdetachpending", "pg_get_expr"],
        ),
        (
            "FROM pg_catalog.pg_trigger t",
            &["tgname", "pg_get_triggerdef", "tgenabled", "tgisinternal"],
        ),
        ("FROM pg_catalog.pg_constraint r", &["conname", "condef"]),
    ];
    for (needle, cols) in empty {
        if sql.contains(needle) {
            return Some(result(cols, Vec::new()));
        }
    }
    None
}

fn text(s: &str) -> Value {
    Value::Text(s.to_string())
}

fn result(names: &[&str], rows: Vec<Vec<Value>>) -> QueryResult {
    QueryResult::Rows {
        tag: "SELECT",
        columns: names
            .iter()
            .map(|n| OutputColumn {
                name: n.to_string(),
                ty: DataType::Text,
            })
            .collect(),
        rows,
    }
}

/// The relation-name pattern of a psql query, `'^(pattern)$'`.
fn name_pattern(sql: &str) -> Option<String> {
    let i = sql.find("relname OPERATOR(pg_catalog.~) '^(")?;
    let rest = &sql[i + "relname OPERATOR(pg_catalog.~) '^(".len()..];
    Some(rest[..rest.find(")$'")?].to_string())
}

/// The `'12345'` OID a describe query asks about.
fn oid_literal(sql: &str) -> Option<u32> {
    for marker in ["c.oid = '", "a.attrelid = '"] {
        if let Some(i) = sql.find(marker) {
            let rest = &sql[i + marker.len()..];
            return rest[..rest.find('\'')?].parse().ok();
        }
    }
    None
}

/// psql turns `\dt t*` into the regex `t.*`; fortress matches that subset:
/// literal characters, `.`, `.*` and alternatives with `|`.
fn glob_match(pattern: &str, name: &str) -> bool {
    pattern
        .split('|')
        .any(|alt| regex_lite(alt.as_bytes(), name.as_bytes()))
}

fn regex_lite(p: &[u8], s: &[u8]) -> bool {
    match p {
        [] => s.is_empty(),
        [b'.', b'*', rest @ ..] => (0..=s.len()).any(|k| regex_lite(rest, &s[k..])),
        [b'.', rest @ ..] => !s.is_empty() && regex_lite(rest, &s[1..]),
        [b'\\', c, rest @ ..] => s.first() == Some(c) && regex_lite(rest, &s[1..]),
        [c, rest @ ..] => s.first() == Some(c) && regex_lite(rest, &s[1..]),
    }
}

fn index_names(t: &TableDef) -> Vec<String> {
    let mut v: Vec<String> = t
        .rowid
        .is_none()
        .then(|| t.pkey_name())
        .into_iter()
        .collect();
    v.extend(t.uniques.iter().map(|u| u.name.clone()));
    v.extend(t.indexes.iter().map(|i| i.name.clone()));
    v
}

fn column_list(t: &TableDef, cols: &[usize]) -> String {
    cols.iter()
        .map(|&c| t.columns[c].name.clone())
        .collect::<Vec<_>>()
        .join(", ")
}

/// One row per index, primary key first, as psql's `\d` footer reads them.
fn index_rows(t: &TableDef) -> Vec<Vec<Value>> {
    let pk = column_list(t, &t.primary_key);
    let mut rows = vec![vec![
        text(&t.pkey_name()),
        text("t"),
        text("t"),
        text("f"),
        text("t"),
        text(&format!(
            "CREATE UNIQUE INDEX {} ON public.{} USING btree ({pk})",
            t.pkey_name(),
            t.name
        )),
        text(&format!("PRIMARY KEY ({pk})")),
        text("p"),
        text("f"),
        text("f"),
        text("f"),
        text("0"),
    ]];
    let mut others: Vec<Vec<Value>> = Vec::new();
    for idx in &t.indexes {
        let cols = column_list(t, &idx.columns);
        others.push(vec![
            text(&idx.name),
            text("f"),
            text("f"),
            text("f"),
            text("t"),
            text(&format!(
                "CREATE INDEX {} ON public.{} USING btree ({cols})",
                idx.name, t.name
            )),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            text("f"),
            text("0"),
        ]);
    }
    let mut uniques: Vec<_> = t.uniques.iter().collect();
    uniques.sort_by(|a, b| a.name.cmp(&b.name));
    for u in uniques {
        let cols = column_list(t, &u.columns);
        rows.push(vec![
            text(&u.name),
            text("f"),
            text("t"),
            text("f"),
            text("t"),
            text(&format!(
                "CREATE UNIQUE INDEX {} ON public.{} USING btree ({cols})",
                u.name, t.name
            )),
            text(&format!("UNIQUE ({cols})")),
            text("u"),
            text("f"),
            text("f"),
            text("f"),
            text("0"),
        ]);
    }
    rows.extend(others);
    // psql orders by primary first, then name; a keyless table has none.
    if t.rowid.is_some() {
        rows.remove(0);
        rows.sort_by(|a, b| a[0].sort_cmp(&b[0]));
    } else {
        rows[1..].sort_by(|a, b| a[0].sort_cmp(&b[0]));
    }
    rows
}

/// `format_type(typid, typmod)`.
pub fn format_type(ty: &DataType) -> String {
    match ty {
        DataType::Varchar(Some(n)) => format!("character varying({n})"),
        DataType::Char(Some(n)) => format!("character({n})"),
        DataType::Numeric {
            precision: Some(p),
            scale,
        } => format!("numeric({p},{})", scale.unwrap_or(0)),
        other => other.pg_name().to_string(),
    }
}

/// `pg_get_expr` of a column default, as PostgreSQL prints it.
fn deparse_default(e: &Expr, ty: &DataType) -> String {
    match e {
        Expr::Cast(inner, _) => deparse_default(inner, ty),
        Expr::Func(Func::Now, _) => "now()".into(),
        Expr::Literal(v) => {
            let s = v.to_text().unwrap_or_else(|| "NULL".into());
            match v {
                Value::Null => "NULL".into(),
                Value::Bool(b) => b.to_string(),
                Value::Int2(_) | Value::Int4(_) | Value::Int8(_) | Value::Numeric(_)
                    if !s.starts_with('-') =>
                {
                    s
                }
                _ => format!("'{}'::{}", s.replace('\'', "''"), cast_name(ty)),
            }
        }
        _ => "?".into(),
    }
}

/// A type as written in a cast of a deparsed constant (no modifiers).
fn cast_name(ty: &DataType) -> &'static str {
    match ty {
        DataType::Varchar(_) => "character varying",
        DataType::Char(_) => "bpchar",
        DataType::Numeric { .. } => "numeric",
        other => other.pg_name(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_patterns_match_like_its_regexes() {
        assert!(glob_match("t.*", "t2"));
        assert!(glob_match("t", "t"));
        assert!(!glob_match("t", "t2"));
        assert!(glob_match("a|b.*", "bee"));
    }

    #[test]
    fn defaults_print_as_postgres_does() {
        let lit = |v| Expr::Cast(Box::new(Expr::Literal(v)), DataType::Int4);
        assert_eq!(
            deparse_default(&lit(Value::Int4(18)), &DataType::Int4),
            "18"
        );
        assert_eq!(
            deparse_default(&lit(Value::Int4(-1)), &DataType::Int4),
            "'-1'::integer"
        );
        assert_eq!(
            deparse_default(&Expr::Literal(Value::Text("x".into())), &DataType::Text),
            "'x'::text"
        );
    }
}
