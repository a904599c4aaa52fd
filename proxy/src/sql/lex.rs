//! A light lexer over query text that builds no tokens: it finds where each
//! statement of a query string ends, so a long string is parsed and run one
//! statement at a time. And the depth bound every statement is checked
//! against, on sqlparser's own tokens, before sqlparser parses them.
//!
//! Why the bound: sqlparser reads a chain of infix or postfix operators
//! (`a OR b OR ...`, `1 + 1 + ...`, `x::int::int`, `UNION` chains) in a loop,
//! building a tree as deep as the chain is long, and every later pass over
//! that tree (binder, planner, evaluator, clone, compare, and the drop of a
//! tree the parser gives up on half way) recurses once per level. Parentheses
//! and calls are bounded by sqlparser's own recursion limit; chains are not.
//! So a statement's tokens are measured first: within one comma-separated
//! item every token counts one, a bracket group starts from its item's count
//! and hands its largest count back when it closes. A tree's depth never
//! exceeds that count (each level of a chain is an operator token on the
//! path from root to leaf), so a statement within [`MAX_CHAIN`] parses into
//! a tree that fits the thread's stack, and one beyond it is refused with
//! 54001 before it is parsed. The measure runs on the very tokens the parser
//! then reads: no difference between two lexers can hide a chain from it.

use sqlparser::tokenizer::Token;

use crate::error::{ProxyError, Result};

/// The most tokens one comma-separated item may chain: 4 per term of an
/// `id = N OR ...` chain is 5,000 terms, a tree at most 20,000 levels deep
/// (what [`crate::limits::THREAD_STACK_BYTES`] is sized for).
pub const MAX_CHAIN: usize = 20_000;

/// Brackets deeper than this are refused at once (sqlparser refuses past 50).
const MAX_NESTING: usize = 1_000;

/// The most UNION, INTERSECT and EXCEPT one statement may hold. A chain of
/// them is a tree of whole query plans, each level a far larger frame in
/// every pass than an operator's, so it has a bound of its own.
pub const MAX_SET_OPERATIONS: usize = 1_000;

/// One statement of a query string.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Piece<'a> {
    /// Its text, without the `;` that ends it.
    pub text: &'a str,
    /// Characters of the query string before it (error positions count
    /// from the start of the query string).
    pub chars_before: usize,
}

/// The statements of `sql`, split at top-level semicolons; pieces holding
/// only blanks and comments are skipped.
pub fn statements(sql: &str) -> Statements<'_> {
    Statements {
        sql,
        at: 0,
        chars: 0,
    }
}

/// Iterator of [`statements`].
pub struct Statements<'a> {
    sql: &'a str,
    at: usize,
    chars: usize,
}

impl<'a> Iterator for Statements<'a> {
    type Item = Piece<'a>;

    fn next(&mut self) -> Option<Piece<'a>> {
        while self.at < self.sql.len() {
            let rest = &self.sql[self.at..];
            let mut scan = Scan::new(rest);
            let mut tokens = false;
            let end = loop {
                match scan.next() {
                    None => break rest.len(),
                    Some(Tok::Semicolon) => break scan.at - 1,
                    Some(_) => tokens = true,
                }
            };
            let piece = Piece {
                text: &rest[..end],
                chars_before: self.chars,
            };
            let taken = scan.at;
            self.chars += rest[..taken].chars().count();
            self.at += taken;
            if tokens {
                return Some(piece);
            }
        }
        None
    }
}

/// 54001 when some item of the statements `tokens` spell chains more than
/// [`MAX_CHAIN`] tokens, nests brackets past [`MAX_NESTING`] or holds more
/// than [`MAX_SET_OPERATIONS`]; see the module doc.
pub fn check_depth<'a>(tokens: impl IntoIterator<Item = &'a Token>) -> Result<()> {
    // Per open bracket: the item's count when it opened, and the most any
    // item inside it reached.
    let mut open: Vec<(usize, usize)> = Vec::new();
    let (mut base, mut count, mut most) = (0usize, 0usize, 0usize);
    let too_deep = || {
        ProxyError::new(
            "54001",
            "stack depth limit exceeded: the statement nests or chains operators too deeply",
        )
    };
    let mut set_operations = 0;
    for tok in tokens {
        match tok {
            Token::Whitespace(_) => continue,
            Token::LParen | Token::LBracket => {
                // A subscript or call still adds a level to its chain.
                count += 1;
                if open.len() == MAX_NESTING {
                    return Err(too_deep());
                }
                open.push((base, most));
                base = count;
                most = count;
            }
            Token::RParen | Token::RBracket => {
                let inner = most.max(count);
                match open.pop() {
                    Some((b, m)) => {
                        base = b;
                        most = m;
                        count = inner;
                    }
                    // Unbalanced: the parser will say so.
                    None => count = inner,
                }
            }
            Token::Comma => {
                most = most.max(count);
                count = base;
            }
            Token::SemiColon => {
                open.clear();
                (base, count, most, set_operations) = (0, 0, 0, 0);
            }
            Token::Word(w) => {
                count += 1;
                if w.quote_style.is_none()
                    && ["union", "intersect", "except"]
                        .iter()
                        .any(|k| w.value.eq_ignore_ascii_case(k))
                {
                    set_operations += 1;
                    if set_operations > MAX_SET_OPERATIONS {
                        return Err(too_deep());
                    }
                }
            }
            _ => count += 1,
        }
        if count > MAX_CHAIN {
            return Err(too_deep());
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tok {
    Semicolon,
    /// Anything else: a word, number, string, bracket or operator.
    Other,
}

/// Walks text as PostgreSQL's lexer would, to find statement ends: comments
/// and blanks are skipped, quoted strings and identifiers are one token.
/// (A text it reads otherwise than sqlparser splits where it should not and
/// fails to parse; it is never what the depth bound is measured on.)
struct Scan<'a> {
    b: &'a [u8],
    at: usize,
}

impl<'a> Scan<'a> {
    fn new(text: &'a str) -> Scan<'a> {
        Scan {
            b: text.as_bytes(),
            at: 0,
        }
    }

    fn peek(&self, ahead: usize) -> Option<u8> {
        self.b.get(self.at + ahead).copied()
    }

    /// Skips to just past the closing `quote`; `backslash` escapes (E'').
    /// A doubled quote stands for itself. Unterminated: to the end.
    fn quoted(&mut self, quote: u8, backslash: bool) {
        while let Some(c) = self.peek(0) {
            self.at += 1;
            if backslash && c == b'\\' {
                self.at += 1;
            } else if c == quote {
                if self.peek(0) == Some(quote) {
                    self.at += 1;
                } else {
                    return;
                }
            }
        }
        self.at = self.at.min(self.b.len());
    }

    fn skip_while(&mut self, f: impl Fn(u8) -> bool) {
        while self.peek(0).is_some_and(&f) {
            self.at += 1;
        }
    }
}

fn ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c >= 0x80
}

fn ident_byte(c: u8) -> bool {
    ident_start(c) || c.is_ascii_digit() || c == b'$'
}

fn operator_byte(c: u8) -> bool {
    b"+-*/<>=~!@#%^&|`?:.".contains(&c)
}

impl Iterator for Scan<'_> {
    type Item = Tok;

    fn next(&mut self) -> Option<Tok> {
        loop {
            let c = self.peek(0)?;
            match c {
                b' ' | b'\t' | b'\n' | b'\r' | b'\x0c' => self.at += 1,
                b'-' if self.peek(1) == Some(b'-') => {
                    self.skip_while(|c| c != b'\n' && c != b'\r');
                }
                b'/' if self.peek(1) == Some(b'*') => {
                    // Comments nest in PostgreSQL.
                    self.at += 2;
                    let mut depth = 1usize;
                    while depth > 0 {
                        match (self.peek(0), self.peek(1)) {
                            (None, _) => break,
                            (Some(b'/'), Some(b'*')) => {
                                depth += 1;
                                self.at += 2;
                            }
                            (Some(b'*'), Some(b'/')) => {
                                depth -= 1;
                                self.at += 2;
                            }
                            _ => self.at += 1,
                        }
                    }
                }
                _ => break,
            }
        }
        let c = self.peek(0)?;
        self.at += 1;
        let tok = match c {
            b';' => Tok::Semicolon,
            b'\'' => {
                self.quoted(b'\'', false);
                Tok::Other
            }
            b'"' => {
                self.quoted(b'"', false);
                Tok::Other
            }
            b'e' | b'E' if self.peek(0) == Some(b'\'') => {
                self.at += 1;
                self.quoted(b'\'', true);
                Tok::Other
            }
            b'$' => {
                if self.peek(0).is_some_and(|c| c.is_ascii_digit()) {
                    // A parameter, $1.
                    self.skip_while(|c| c.is_ascii_digit());
                } else {
                    // A dollar quote: $$...$$ or $tag$...$tag$.
                    let start = self.at - 1;
                    self.skip_while(|c| c.is_ascii_alphanumeric() || c == b'_' || c >= 0x80);
                    if self.peek(0) == Some(b'$') {
                        self.at += 1;
                        let tag = &self.b[start..self.at];
                        match find(&self.b[self.at..], tag) {
                            Some(i) => self.at += i + tag.len(),
                            None => self.at = self.b.len(),
                        }
                    }
                }
                Tok::Other
            }
            c if ident_start(c) => {
                self.skip_while(ident_byte);
                Tok::Other
            }
            c if c.is_ascii_digit() => {
                self.skip_while(|c| c.is_ascii_alphanumeric() || c == b'.' || c == b'_');
                Tok::Other
            }
            // `-` and `/` do not start a run that holds a comment.
            c if operator_byte(c) => {
                while let Some(c) = self.peek(0) {
                    let comment =
                        matches!((c, self.peek(1)), (b'-', Some(b'-')) | (b'/', Some(b'*')));
                    if !operator_byte(c) || comment {
                        break;
                    }
                    self.at += 1;
                }
                Tok::Other
            }
            _ => Tok::Other,
        };
        Some(tok)
    }
}

/// Where `needle` first occurs in `hay`.
fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(sql: &str) -> Vec<&str> {
        statements(sql).map(|p| p.text).collect()
    }

    #[test]
    fn statements_split_at_top_level_semicolons_only() {
        assert_eq!(texts("select 1; select 2"), ["select 1", " select 2"]);
        assert_eq!(texts("select ';'; select 2;"), ["select ';'", " select 2"]);
        assert_eq!(texts("select 'it''s;'"), ["select 'it''s;'"]);
        assert_eq!(texts("select E'\\';'; x"), ["select E'\\';'", " x"]);
        assert_eq!(texts("select \"a;b\" from t"), ["select \"a;b\" from t"]);
        assert_eq!(texts("select $$a;b$$; x"), ["select $$a;b$$", " x"]);
        assert_eq!(
            texts("select $fn$ $$ ; $fn$; x"),
            ["select $fn$ $$ ; $fn$", " x"]
        );
        assert_eq!(texts("select $1; x"), ["select $1", " x"]);
        assert_eq!(texts("select 1 -- a; b\n; x"), ["select 1 -- a; b\n", " x"]);
        assert_eq!(
            texts("select /* a /* ; */ ; */ 1; x"),
            ["select /* a /* ; */ ; */ 1", " x"]
        );
        // Blank and comment-only pieces are no statements.
        assert_eq!(texts("  ;; -- c\n ; /* x */ ;"), Vec::<&str>::new());
        assert_eq!(texts(";select 1;;"), ["select 1"]);
        // Unterminated quotes run to the end (the parser reports them).
        assert_eq!(texts("select 'a; b"), ["select 'a; b"]);
    }

    #[test]
    fn pieces_know_how_many_characters_come_before_them() {
        let p: Vec<Piece> = statements("select 'é';\nselect x").collect();
        assert_eq!(p[1].chars_before, 11);
        assert_eq!(p[1].text, "\nselect x");
    }

    /// [`check_depth`] over sqlparser's tokens of `sql`.
    fn depth(sql: &str) -> Result<()> {
        let dialect = sqlparser::dialect::PostgreSqlDialect {};
        let tokens = sqlparser::tokenizer::Tokenizer::new(&dialect, sql)
            .tokenize()
            .unwrap();
        check_depth(&tokens)
    }

    #[test]
    fn long_chains_are_refused_and_wide_statements_are_not() {
        let chain = |n: usize, op: &str| {
            let terms: Vec<String> = (0..n).map(|i| format!("id = {i}")).collect();
            format!("select 1 from t where {}", terms.join(op))
        };
        assert!(depth(&chain(1_300, " OR ")).is_ok());
        let e = depth(&chain(100_000, " OR ")).unwrap_err();
        assert_eq!(e.sql_state(), "54001");
        let sum = format!("select {}", vec!["1"; 100_000].join("+"));
        assert_eq!(depth(&sum).unwrap_err().sql_state(), "54001");
        let casts = format!("select 1{}", "::int".repeat(20_000));
        assert!(depth(&casts).is_err());
        let subscripts = format!("select a{}", "[1]".repeat(20_000));
        assert!(depth(&subscripts).is_err());
        // The chain hidden in a group still counts after the group closes.
        let grouped = format!(
            "select ({}) {}",
            vec!["1"; 12_000].join("+"),
            "+ 1".repeat(5_000)
        );
        assert!(depth(&grouped).is_err());
        // Wide is fine: a long VALUES list or IN list is flat.
        let rows: Vec<String> = (0..50_000).map(|i| format!("({i}, 'x', -1)")).collect();
        assert!(depth(&format!("insert into t values {}", rows.join(", "))).is_ok());
        let list: Vec<String> = (0..100_000).map(|i| i.to_string()).collect();
        assert!(depth(&format!("select 1 where x in ({})", list.join(","))).is_ok());
        // Each statement counts alone.
        assert!(depth(&"select 1 + 1 + 1;".repeat(10_000)).is_ok());
        assert!(depth(&"(".repeat(2_000)).is_err());
        let unions = |n: usize| format!("select 1{}", " UNION ALL select 1".repeat(n));
        assert!(depth(&unions(MAX_SET_OPERATIONS)).is_ok());
        assert!(depth(&unions(MAX_SET_OPERATIONS + 1)).is_err());
        // What another lexer might read as a comment or a string is counted
        // as the parser reads it.
        let tail = "+1".repeat(30_000);
        for hidden in [
            format!("select 1 --\r{tail}"),
            format!("select X'\\'' {tail} + X'\\''"),
            format!("select $\u{20ac}$, {tail}, $\u{20ac}$"),
            format!("select 1 -+-- 1{tail}"),
        ] {
            let dialect = sqlparser::dialect::PostgreSqlDialect {};
            let tokens = sqlparser::tokenizer::Tokenizer::new(&dialect, &hidden).tokenize();
            if let Ok(tokens) = tokens {
                assert!(check_depth(&tokens).is_err(), "{}", &hidden[..20]);
            }
        }
    }
}
