//! COPY's text and CSV formats: parsing rows sent with COPY FROM STDIN and
//! printing rows for COPY TO STDOUT, as PostgreSQL does.

use std::sync::Arc;

use fortress_storage::{DataType, TableDef, Value};

use crate::error::{ProxyError, Result};

/// A COPY FROM STDIN waiting for its data, kept in the session.
#[derive(Debug)]
pub struct PendingCopy {
    pub table: Arc<TableDef>,
    pub columns: Vec<usize>,
    pub format: CopyFormat,
    pub data: Vec<u8>,
}

/// COPY data beyond this is refused (54000) rather than exhausting memory.
pub const MAX_COPY_BYTES: usize = 1 << 30;

/// The options of one COPY statement.
#[derive(Clone, Debug, PartialEq)]
pub struct CopyFormat {
    pub csv: bool,
    pub delimiter: char,
    /// How NULL is written: `\N` in text, empty in CSV.
    pub null: String,
    pub header: bool,
    pub quote: char,
    pub escape: char,
}

impl CopyFormat {
    pub fn text() -> CopyFormat {
        CopyFormat {
            csv: false,
            delimiter: '\t',
            null: "\\N".into(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }

    pub fn csv() -> CopyFormat {
        CopyFormat {
            csv: true,
            delimiter: ',',
            null: String::new(),
            header: false,
            quote: '"',
            escape: '"',
        }
    }

    /// One output line (with its newline) for `row`.
    pub fn format_row(&self, row: &[Value]) -> String {
        let mut line = String::new();
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                line.push(self.delimiter);
            }
            match v.to_text() {
                None => line.push_str(&self.null),
                Some(s) if self.csv => {
                    let needs_quotes = s.is_empty()
                        || s == self.null
                        || s.contains([self.delimiter, self.quote, '\n', '\r'])
                        || s.starts_with("\\.");
                    if needs_quotes {
                        line.push(self.quote);
                        for c in s.chars() {
                            if c == self.quote || c == self.escape {
                                line.push(self.escape);
                            }
                            line.push(c);
                        }
                        line.push(self.quote);
                    } else {
                        line.push_str(&s);
                    }
                }
                Some(s) => {
                    for c in s.chars() {
                        match c {
                            '\\' => line.push_str("\\\\"),
                            '\n' => line.push_str("\\n"),
                            '\r' => line.push_str("\\r"),
                            '\t' => line.push_str("\\t"),
                            c if c == self.delimiter => {
                                line.push('\\');
                                line.push(c);
                            }
                            c => line.push(c),
                        }
                    }
                }
            }
        }
        line.push('\n');
        line
    }

    /// The header line of CSV output.
    pub fn header_line(&self, names: &[String]) -> String {
        let row: Vec<Value> = names.iter().map(|n| Value::Text(n.clone())).collect();
        self.format_row(&row)
    }

    /// Parses all data of a COPY FROM into rows of `types` (one value per
    /// listed column). Errors carry the line number, as PostgreSQL's do.
    pub fn parse(&self, data: &str, types: &[DataType]) -> Result<Vec<Vec<Value>>> {
        let mut rows = Vec::new();
        let records = if self.csv {
            self.csv_records(data)?
        } else {
            text_records(data, self.delimiter, &self.null)?
        };
        for (n, fields) in records.into_iter().enumerate() {
            let line = n + 1;
            if n == 0 && self.header {
                continue;
            }
            if fields.len() == 1 && fields[0].as_deref() == Some("\\.") {
                break;
            }
            if fields.len() != types.len() {
                let what = if fields.len() < types.len() {
                    "missing data for column"
                } else {
                    "extra data after last expected column"
                };
                return Err(ProxyError::new(
                    "22P04",
                    format!("{what} (COPY line {line})"),
                ));
            }
            let mut row = Vec::with_capacity(types.len());
            for (f, ty) in fields.into_iter().zip(types) {
                row.push(match f {
                    None => Value::Null,
                    Some(s) => Value::parse(ty, &s).map_err(|e| {
                        ProxyError::new(e.sql_state(), format!("{e} (COPY line {line})"))
                    })?,
                });
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// CSV records: quoted fields may span lines; an unquoted empty field or
    /// one equal to the NULL string is NULL.
    fn csv_records(&self, data: &str) -> Result<Vec<Vec<Option<String>>>> {
        let mut out = Vec::new();
        let mut fields = Vec::new();
        let mut field = String::new();
        let (mut quoted, mut in_quotes, mut at_start) = (false, false, true);
        let mut chars = data.chars().peekable();
        let end_field = |field: &mut String, quoted: bool, fields: &mut Vec<Option<String>>| {
            let f = std::mem::take(field);
            fields.push(if !quoted && f == self.null {
                None
            } else {
                Some(f)
            });
        };
        while let Some(c) = chars.next() {
            if in_quotes {
                if c == self.escape
                    && chars.peek() == Some(&self.quote)
                    && self.escape != self.quote
                {
                    field.push(self.quote);
                    chars.next();
                } else if c == self.quote {
                    if self.escape == self.quote && chars.peek() == Some(&self.quote) {
                        field.push(self.quote);
                        chars.next();
                    } else {
                        in_quotes = false;
                    }
                } else {
                    field.push(c);
                }
                continue;
            }
            match c {
                c if c == self.quote => {
                    in_quotes = true;
                    quoted = true;
                    at_start = false;
                }
                c if c == self.delimiter => {
                    end_field(&mut field, quoted, &mut fields);
                    quoted = false;
                    at_start = false;
                }
                '\r' if chars.peek() == Some(&'\n') => {}
                '\n' => {
                    end_field(&mut field, quoted, &mut fields);
                    out.push(std::mem::take(&mut fields));
                    quoted = false;
                    at_start = true;
                }
                c => {
                    field.push(c);
                    at_start = false;
                }
            }
        }
        if in_quotes {
            return Err(ProxyError::new("22P04", "unterminated CSV quoted field"));
        }
        if !at_start {
            end_field(&mut field, quoted, &mut fields);
            out.push(fields);
        }
        Ok(out)
    }
}

/// Text-format records: one per line, fields split on the delimiter, with
/// backslash escapes; the NULL string (unescaped) is NULL.
fn text_records(data: &str, delimiter: char, null: &str) -> Result<Vec<Vec<Option<String>>>> {
    let mut out = Vec::new();
    for line in data.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            continue;
        }
        // The end-of-data marker older clients (and pgbench) still send.
        if line == "\\." {
            break;
        }
        let mut fields = Vec::new();
        let mut raw = String::new();
        let mut field = String::new();
        let mut chars = line.chars();
        let finish = |raw: &mut String, field: &mut String, fields: &mut Vec<Option<String>>| {
            let r = std::mem::take(raw);
            let f = std::mem::take(field);
            fields.push(if r == null { None } else { Some(f) });
        };
        while let Some(c) = chars.next() {
            if c == delimiter {
                finish(&mut raw, &mut field, &mut fields);
                continue;
            }
            raw.push(c);
            if c != '\\' {
                field.push(c);
                continue;
            }
            let Some(e) = chars.next() else {
                field.push('\\');
                break;
            };
            raw.push(e);
            field.push(match e {
                'n' => '\n',
                'r' => '\r',
                't' => '\t',
                'b' => '\u{8}',
                'f' => '\u{c}',
                'v' => '\u{b}',
                other => other,
            });
        }
        finish(&mut raw, &mut field, &mut fields);
        out.push(fields);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_round_trip_with_escapes_and_nulls() {
        let f = CopyFormat::text();
        let row = vec![
            Value::Int4(1),
            Value::Text("a\tb\\c\nd".into()),
            Value::Null,
        ];
        let line = f.format_row(&row);
        assert_eq!(line, "1\ta\\tb\\\\c\\nd\t\\N\n");
        let back = f
            .parse(&line, &[DataType::Int4, DataType::Text, DataType::Text])
            .unwrap();
        assert_eq!(back, vec![row]);
    }

    #[test]
    fn csv_quotes_nulls_and_header() {
        let f = CopyFormat {
            header: true,
            ..CopyFormat::csv()
        };
        let data = "id,name\n1,\"x, \"\"y\"\"\"\n2,\n3,\"\"\n";
        let rows = f.parse(data, &[DataType::Int4, DataType::Text]).unwrap();
        assert_eq!(rows[0][1], Value::Text("x, \"y\"".into()));
        assert_eq!(rows[1][1], Value::Null);
        assert_eq!(rows[2][1], Value::Text(String::new()));
        assert_eq!(
            CopyFormat::csv().format_row(&[Value::Text(String::new()), Value::Null]),
            "\"\",\n"
        );
    }

    #[test]
    fn text_data_ends_at_the_end_marker() {
        let rows = CopyFormat::text()
            .parse("1\ta\n2\t\\.\n\\.\n", &[DataType::Int4, DataType::Text])
            .unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1][1], Value::Text(".".into()));
    }

    #[test]
    fn wrong_field_count_names_the_line() {
        let e = CopyFormat::text()
            .parse("1\t2\n3\n", &[DataType::Int4, DataType::Int4])
            .unwrap_err();
        assert_eq!(e.sql_state(), "22P04");
        assert!(e.to_string().contains("line 2"), "{e}");
    }
}
