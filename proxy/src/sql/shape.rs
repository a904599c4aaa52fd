//! A simple query's shape: its text with integer and string literals taken
//! out as parameters, so statements that differ only in constants (pgbench's,
//! an ORM's) share one bound plan per connection, as prepared ones do.

use std::collections::HashMap;
use std::sync::Arc;

use fortress_storage::{Catalog, DataType, Value};

use crate::sql::template::Template;

/// Longest query text worth a shape: longer ones are rarely repeated.
const MAX_TEXT: usize = 4096;
/// Shapes a connection remembers; past this the memory starts over.
const MAX_SHAPES: usize = 256;

/// A query's text with `$1..$n` in place of its literals, and the literals.
#[derive(Debug, PartialEq)]
pub struct Shape {
    /// The text the plan is bound from; with the literals' types, the key.
    pub text: String,
    /// Each parameter's value, typed as binding would type the literal.
    pub values: Vec<Value>,
}

impl Shape {
    /// The parameters' types as binding gives the literals: integers are
    /// int4 or int8, strings unknown until their context decides.
    pub fn declared(&self) -> Vec<Option<DataType>> {
        self.values
            .iter()
            .map(|v| match v {
                Value::Int4(_) => Some(DataType::Int4),
                Value::Int8(_) => Some(DataType::Int8),
                _ => None,
            })
            .collect()
    }

    fn key(&self) -> (String, Vec<Option<DataType>>) {
        (self.text.clone(), self.declared())
    }
}

fn ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b >= 0x80
}

/// Characters after which a `-` is a sign rather than a subtraction.
fn before_sign(b: Option<u8>) -> bool {
    matches!(
        b,
        None | Some(b'(' | b',' | b'=' | b'<' | b'>' | b'+' | b'-' | b'*' | b'/' | b'%')
    )
}

/// The shape of a single statement, or `None` when the text has what this
/// scanner leaves to the parser: comments, dollar quotes, prefixed strings
/// (E'', B'', U&''), parameters, or more than one statement.
pub fn of(sql: &str) -> Option<Shape> {
    let bytes = sql.as_bytes();
    if bytes.len() > MAX_TEXT {
        return None;
    }
    let mut text = String::with_capacity(sql.len());
    let mut values = Vec::new();
    // The last two non-blank bytes written, newest first.
    let mut recent: [Option<u8>; 2] = [None, None];
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let prev = i.checked_sub(1).map(|p| bytes[p]);
        match b {
            b'\'' => {
                if prev.is_some_and(|p| ident_byte(p) || p == b'&') {
                    return None;
                }
                let mut s = Vec::new();
                i += 1;
                loop {
                    match bytes.get(i)? {
                        b'\'' if bytes.get(i + 1) == Some(&b'\'') => {
                            s.push(b'\'');
                            i += 2;
                        }
                        b'\'' => break,
                        &c => {
                            s.push(c);
                            i += 1;
                        }
                    }
                }
                i += 1;
                values.push(Value::Text(String::from_utf8(s).ok()?));
                text.push_str(&format!("${}", values.len()));
                recent = [Some(b'$'), recent[0]];
                continue;
            }
            b'"' => {
                let end = i + 1 + sql[i + 1..].find('"')?;
                text.push_str(&sql[i..=end]);
                recent = [Some(b'"'), recent[0]];
                i = end + 1;
                continue;
            }
            b'0'..=b'9' if !prev.is_some_and(|p| ident_byte(p) || p == b'.') => {
                let end = bytes[i..]
                    .iter()
                    .position(|&c| !(ident_byte(c) || c == b'.'))
                    .map_or(bytes.len(), |n| i + n);
                let token = &sql[i..end];
                let signed = recent[0] == Some(b'-') && before_sign(recent[1]);
                let parsed = token.bytes().all(|c| c.is_ascii_digit()).then(|| {
                    let digits = if signed {
                        format!("-{token}")
                    } else {
                        token.to_string()
                    };
                    digits.parse::<i64>().ok()
                });
                match parsed.flatten() {
                    Some(n) => {
                        if signed {
                            // The sign joins the literal, as binding folds it.
                            let minus = text.rfind('-').expect("the sign was written");
                            text.truncate(minus);
                        }
                        values.push(match i32::try_from(n) {
                            Ok(v) => Value::Int4(v),
                            Err(_) => Value::Int8(n),
                        });
                        text.push_str(&format!("${}", values.len()));
                        recent = [Some(b'$'), if signed { recent[1] } else { recent[0] }];
                    }
                    None => {
                        text.push_str(token);
                        recent = [token.bytes().last(), recent[0]];
                    }
                }
                i = end;
                continue;
            }
            b'$' => return None,
            b'-' if bytes.get(i + 1) == Some(&b'-') => return None,
            b'/' if bytes.get(i + 1) == Some(&b'*') => return None,
            b';' => {
                if bytes[i..]
                    .iter()
                    .all(|c| *c == b';' || c.is_ascii_whitespace())
                {
                    break;
                }
                return None;
            }
            _ => {}
        }
        // Copy up to the next byte this scanner looks at.
        let end = bytes[i + 1..]
            .iter()
            .position(|&c| matches!(c, b'\'' | b'"' | b'0'..=b'9' | b'$' | b'-' | b'/' | b';'))
            .map_or(bytes.len(), |n| i + 1 + n);
        let run = &sql[i..end];
        text.push_str(run);
        for c in run.bytes().filter(|c| !c.is_ascii_whitespace()) {
            recent = [Some(c), recent[0]];
        }
        i = end;
    }
    Some(Shape { text, values })
}

/// What a connection learned about a shape's plan.
#[derive(Debug)]
enum Learned {
    /// Seen once: a second sighting binds a plan for it.
    Seen,
    Plan(Arc<Template>),
    /// Its plan cannot be reused, under this catalog.
    Never(Arc<Catalog>),
}

/// A connection's shapes and their plans.
#[derive(Debug, Default)]
pub struct ShapeCache {
    shapes: HashMap<(String, Vec<Option<DataType>>), Learned>,
}

/// What the cache says to do with a shape.
pub enum Lookup {
    /// Instantiate this plan with the shape's values.
    Reuse(Arc<Template>),
    /// Bind the query as usual.
    Bind,
    /// Bind the query as usual and offer the result with [`ShapeCache::learn`].
    Learn,
}

impl ShapeCache {
    pub fn lookup(&mut self, shape: &Shape, catalog: &Arc<Catalog>) -> Lookup {
        let key = shape.key();
        match self.shapes.get(&key) {
            Some(Learned::Plan(t)) if t.fits(catalog) => Lookup::Reuse(t.clone()),
            Some(Learned::Never(c)) if Arc::ptr_eq(c, catalog) => Lookup::Bind,
            Some(_) => Lookup::Learn,
            None => {
                if self.shapes.len() >= MAX_SHAPES {
                    self.shapes.clear();
                }
                self.shapes.insert(key, Learned::Seen);
                Lookup::Bind
            }
        }
    }

    /// Records `template` (or that there is none) for `shape`.
    pub fn learn(&mut self, shape: &Shape, catalog: &Arc<Catalog>, template: Option<Template>) {
        let learned = match template {
            Some(t) => Learned::Plan(Arc::new(t)),
            None => Learned::Never(catalog.clone()),
        };
        self.shapes.insert(shape.key(), learned);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(sql: &str) -> Option<(String, Vec<Value>)> {
        of(sql).map(|s| (s.text, s.values))
    }

    #[test]
    fn literals_become_parameters() {
        assert_eq!(
            shape("SELECT abalance FROM pgbench_accounts WHERE aid = 4711;"),
            Some((
                "SELECT abalance FROM pgbench_accounts WHERE aid = $1".into(),
                vec![Value::Int4(4711)]
            ))
        );
        assert_eq!(
            shape("UPDATE t SET a = a + -12, b = 'it''s' WHERE k = 5000000000"),
            Some((
                "UPDATE t SET a = a + $1, b = $2 WHERE k = $3".into(),
                vec![
                    Value::Int4(-12),
                    Value::Text("it's".into()),
                    Value::Int8(5_000_000_000)
                ]
            ))
        );
    }

    #[test]
    fn names_and_other_numbers_stay_as_written() {
        assert_eq!(
            shape(
                r#"SELECT t1.c2, "x 1" FROM t1 WHERE a - 1 > 1.5e3 AND b = 99999999999999999999"#
            ),
            Some((
                r#"SELECT t1.c2, "x 1" FROM t1 WHERE a - $1 > 1.5e3 AND b = 99999999999999999999"#
                    .into(),
                vec![Value::Int4(1)]
            ))
        );
        assert_eq!(shape("BEGIN;"), Some(("BEGIN".into(), vec![])));
    }

    proptest::proptest! {
        /// Any text: no panic, and each literal taken out leaves one `$n`.
        #[test]
        fn any_text_is_scanned_without_panic(sql in "[a-z0-9 '\"$;.,=()+*/<>-]{0,40}|\\PC{0,40}") {
            if let Some(shape) = of(&sql) {
                if !sql.contains('"') {
                    proptest::prop_assert_eq!(shape.text.matches('$').count(), shape.values.len());
                }
            }
        }
    }

    #[test]
    fn what_the_parser_should_see_is_refused() {
        for sql in [
            "SELECT 1; SELECT 2",
            "SELECT E'a\\n'",
            "SELECT X'ff'",
            "SELECT $1",
            "SELECT $$x$$",
            "SELECT 1 -- note",
            "SELECT /* hint */ 1",
            "SELECT 'unterminated",
            "SELECT \"unterminated",
        ] {
            assert_eq!(of(sql), None, "{sql}");
        }
    }
}
