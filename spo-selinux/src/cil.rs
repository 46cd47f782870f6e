//! Our CIL s-expression reader and writer.
//!
//! The reader follows secilc's lexer (libsepol `cil_lexer.l`): symbols are runs of ASCII
//! letters, digits and ``[]. @=/*-_$%+!|&^:~`#{}'<>?,``; quoted strings run from `"` to the
//! next `"` on the same line; `;` starts a comment that ends at the line end; space and tab
//! separate tokens; every other character is an error, as it is for secilc. It never recurses,
//! so hostile nesting cannot exhaust the stack, and it refuses nesting deeper than
//! [`MAX_DEPTH`].
//!
//! The writer is the only way spo-selinux produces CIL. An [`Expr`] can only be built from
//! checked parts: a symbol is one lexer token, a string holds no `"` and no line break, so
//! whatever is written reads back as exactly the tree that was built. Wrapping a
//! RawSelinuxProfile therefore does not paste the user's text into a block: it reads the text
//! into a tree, checks the tree, and writes the tree.

use std::fmt;

/// The deepest nesting the reader accepts (refpolicy's own modules stay below 20).
pub const MAX_DEPTH: usize = 128;

/// One CIL expression with the line it starts on (1-based; 0 for built expressions).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Expr {
    kind: ExprKind,
    line: usize,
}

/// What an [`Expr`] is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExprKind {
    /// A bare token such as `allow` or `container_file_t`.
    Symbol(String),
    /// A quoted string (without its quotes).
    Quoted(String),
    /// A parenthesized list.
    List(Vec<Expr>),
}

/// Why text is not CIL, or why a part cannot be written as CIL.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct CilSyntaxError {
    /// The 1-based line.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

/// Whether `c` may appear in a CIL symbol (secilc's `symbol` rule).
pub fn is_symbol_char(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(
            c,
            '[' | ']'
                | '.'
                | '@'
                | '='
                | '/'
                | '*'
                | '-'
                | '_'
                | '$'
                | '%'
                | '+'
                | '!'
                | '|'
                | '&'
                | '^'
                | ':'
                | '~'
                | '`'
                | '#'
                | '{'
                | '}'
                | '\''
                | '<'
                | '>'
                | '?'
                | ','
        )
}

impl Expr {
    /// A symbol; fails unless `text` is exactly one symbol token.
    pub fn symbol(text: impl Into<String>) -> Result<Expr, CilSyntaxError> {
        let text = text.into();
        if text.is_empty() {
            return Err(CilSyntaxError {
                line: 0,
                message: "empty symbol".to_owned(),
            });
        }
        if let Some(c) = text.chars().find(|c| !is_symbol_char(*c)) {
            return Err(CilSyntaxError {
                line: 0,
                message: format!("{c:?} cannot appear in a CIL symbol ({text:?})"),
            });
        }
        Ok(Expr {
            kind: ExprKind::Symbol(text),
            line: 0,
        })
    }

    /// A quoted string; fails when `text` holds a `"` or a line break.
    pub fn quoted(text: impl Into<String>) -> Result<Expr, CilSyntaxError> {
        let text = text.into();
        if let Some(c) = text.chars().find(|c| matches!(c, '"' | '\n' | '\r')) {
            return Err(CilSyntaxError {
                line: 0,
                message: format!("{c:?} cannot appear in a CIL string"),
            });
        }
        Ok(Expr {
            kind: ExprKind::Quoted(text),
            line: 0,
        })
    }

    /// A list of expressions.
    pub fn list(items: Vec<Expr>) -> Expr {
        Expr {
            kind: ExprKind::List(items),
            line: 0,
        }
    }

    /// What this is.
    pub fn kind(&self) -> &ExprKind {
        &self.kind
    }

    /// The line the expression starts on in the text it was read from (0 when built).
    pub fn line(&self) -> usize {
        self.line
    }

    /// The symbol's text, when this is a symbol.
    pub fn as_symbol(&self) -> Option<&str> {
        match &self.kind {
            ExprKind::Symbol(s) => Some(s),
            _ => None,
        }
    }

    /// The items, when this is a list.
    pub fn as_list(&self) -> Option<&[Expr]> {
        match &self.kind {
            ExprKind::List(items) => Some(items),
            _ => None,
        }
    }

    /// The first item's symbol, when this is a list starting with a symbol (a statement).
    pub fn keyword(&self) -> Option<&str> {
        self.as_list()?.first()?.as_symbol()
    }

    /// How deeply lists nest in this expression (a symbol is 0, `()` is 1).
    pub fn depth(&self) -> usize {
        // Iterative, for the same reason the reader is.
        let mut max = 0;
        let mut stack = vec![(self, 0usize)];
        while let Some((e, d)) = stack.pop() {
            if let ExprKind::List(items) = &e.kind {
                max = max.max(d + 1);
                stack.extend(items.iter().map(|i| (i, d + 1)));
            }
        }
        max
    }
}

/// Reads CIL text into its top-level expressions.
pub fn parse(text: &str) -> Result<Vec<Expr>, CilSyntaxError> {
    let err = |line: usize, message: String| Err(CilSyntaxError { line, message });
    let mut top: Vec<Expr> = Vec::new();
    // Open lists: their items so far and the line of their '('.
    let mut open: Vec<(Vec<Expr>, usize)> = Vec::new();
    let mut line = 1;
    let mut chars = text.char_indices().peekable();
    while let Some((start, c)) = chars.next() {
        match c {
            '\n' => line += 1,
            ' ' | '\t' | '\r' => {}
            ';' => {
                while let Some(&(_, c)) = chars.peek() {
                    if c == '\n' || c == '\r' {
                        break;
                    }
                    chars.next();
                }
            }
            '(' => {
                if open.len() >= MAX_DEPTH {
                    return err(line, format!("lists nest deeper than {MAX_DEPTH} levels"));
                }
                open.push((Vec::new(), line));
            }
            ')' => {
                let Some((items, open_line)) = open.pop() else {
                    return err(line, "')' closes more than was opened".to_owned());
                };
                let list = Expr {
                    kind: ExprKind::List(items),
                    line: open_line,
                };
                match open.last_mut() {
                    Some((parent, _)) => parent.push(list),
                    None => top.push(list),
                }
            }
            '"' => {
                let mut value = String::new();
                let mut closed = false;
                for (_, c) in chars.by_ref() {
                    match c {
                        '"' => {
                            closed = true;
                            break;
                        }
                        '\n' | '\r' => break,
                        c => value.push(c),
                    }
                }
                if !closed {
                    return err(line, "string is not closed on the line it starts".to_owned());
                }
                let Some((parent, _)) = open.last_mut() else {
                    return err(line, "string outside parentheses".to_owned());
                };
                parent.push(Expr {
                    kind: ExprKind::Quoted(value),
                    line,
                });
            }
            c if is_symbol_char(c) => {
                let mut end = start + c.len_utf8();
                while let Some(&(i, c)) = chars.peek() {
                    if !is_symbol_char(c) {
                        break;
                    }
                    end = i + c.len_utf8();
                    chars.next();
                }
                let Some((parent, _)) = open.last_mut() else {
                    return err(line, format!("{:?} outside parentheses", &text[start..end]));
                };
                parent.push(Expr {
                    kind: ExprKind::Symbol(text[start..end].to_owned()),
                    line,
                });
            }
            c => return err(line, format!("invalid character {c:?}")),
        }
    }
    if let Some((_, open_line)) = open.last() {
        return err(
            *open_line,
            format!("'(' is never closed ({} list(s) still open at the end)", open.len()),
        );
    }
    Ok(top)
}

/// Writes CIL, remembering which output line each statement starts on.
#[derive(Debug, Default)]
pub struct CilWriter {
    out: String,
    line: usize,
}

impl CilWriter {
    /// An empty text.
    pub fn new() -> Self {
        CilWriter {
            out: String::new(),
            line: 1,
        }
    }

    /// The line the next write starts on.
    pub fn line(&self) -> usize {
        self.line
    }

    /// Writes a comment line. Comments are ours, never user text; a line break inside would
    /// turn the rest into policy, so it is replaced.
    pub fn comment(&mut self, indent: usize, text: &str) {
        self.indent(indent);
        self.out.push_str("; ");
        self.out
            .extend(text.chars().map(|c| if c == '\n' || c == '\r' { ' ' } else { c }));
        self.newline();
    }

    /// Writes a line of our own making (a block's opening or closing), built from checked
    /// symbols by the caller.
    pub(crate) fn raw_line(&mut self, text: &str) {
        self.out.push_str(text);
        self.newline();
    }

    /// Writes one statement at `indent` levels and returns the line it starts on.
    pub fn statement(&mut self, indent: usize, e: &Expr) -> usize {
        let first = self.line;
        self.indent(indent);
        self.write(indent, e, true);
        self.newline();
        first
    }

    /// The text written so far.
    pub fn finish(self) -> String {
        self.out
    }

    fn indent(&mut self, indent: usize) {
        for _ in 0..indent {
            self.out.push_str("    ");
        }
    }

    fn newline(&mut self) {
        self.out.push('\n');
        self.line += 1;
    }

    /// Writes `e`; `statement` says whether it stands where CIL reads a statement (only
    /// there does a container keyword start a container, and only there is it laid out on
    /// several lines).
    fn write(&mut self, indent: usize, e: &Expr, statement: bool) {
        match &e.kind {
            ExprKind::Symbol(s) => self.out.push_str(s),
            ExprKind::Quoted(s) => {
                self.out.push('"');
                self.out.push_str(s);
                self.out.push('"');
            }
            ExprKind::List(items) => {
                let header = if statement {
                    e.keyword().and_then(container_header)
                } else {
                    None
                };
                self.out.push('(');
                match header {
                    Some(header) if items.len() > header => {
                        for (i, item) in items[..header].iter().enumerate() {
                            if i > 0 {
                                self.out.push(' ');
                            }
                            self.write(indent, item, false);
                        }
                        for item in &items[header..] {
                            self.newline();
                            self.indent(indent + 1);
                            self.write(indent + 1, item, true);
                        }
                        self.newline();
                        self.indent(indent);
                    }
                    _ => {
                        for (i, item) in items.iter().enumerate() {
                            if i > 0 {
                                self.out.push(' ');
                            }
                            self.write(indent, item, false);
                        }
                    }
                }
                self.out.push(')');
            }
        }
    }
}

/// For a statement that holds statements, how many items come before them: the keyword and
/// the name (`block`, `optional`, `in`), the name and parameters (`macro`), or the condition
/// (`booleanif`, `tunableif`); `true` and `false` hold statements right after the keyword.
pub fn container_header(keyword: &str) -> Option<usize> {
    match keyword {
        "block" | "optional" | "in" | "booleanif" | "tunableif" => Some(2),
        "macro" => Some(3),
        "true" | "false" => Some(1),
        _ => None,
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut w = CilWriter::new();
        w.write(0, self, true);
        f.write_str(&w.finish())
    }
}

/// Shorthand for building statements in code: symbols must be valid (they are constants or
/// checked identifiers), so a failure is reported, not hidden.
pub fn sym(text: &str) -> Result<Expr, CilSyntaxError> {
    Expr::symbol(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) -> String {
        let exprs = parse(text).expect("parse");
        let mut w = CilWriter::new();
        for e in &exprs {
            w.statement(0, e);
        }
        w.finish()
    }

    #[test]
    fn reads_what_secilc_reads() {
        let text = "; comment with ) and (\n(allow process self (file (read open))) ; trailing\n(typeattributeset x \"a ) b\")\r\n(block b\n  (blockinherit container))\n";
        let exprs = parse(text).expect("parse");
        assert_eq!(exprs.len(), 3);
        assert_eq!(exprs[0].keyword(), Some("allow"));
        assert_eq!(exprs[0].line(), 2);
        assert_eq!(
            exprs[1].as_list().expect("list")[2].kind(),
            &ExprKind::Quoted("a ) b".into())
        );
        assert_eq!(exprs[2].line(), 4);
        assert_eq!(exprs[2].depth(), 2);
    }

    #[test]
    fn rejects_what_secilc_rejects() {
        for (text, line, needle) in [
            ("(a))\n(b)", 1, "closes more"),
            ("(a)\n(b\n", 2, "never closed"),
            ("(a \"b)\n\")", 1, "string"),
            ("abc", 1, "outside parentheses"),
            ("(a)\n\"x\"", 2, "outside parentheses"),
            ("(a\\b)", 1, "invalid character"),
            ("(a\u{0}b)", 1, "invalid character"),
            ("(é)", 1, "invalid character"),
            ("(a\u{b})", 1, "invalid character"),
        ] {
            let e = parse(text).expect_err(text);
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.message.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_a_stack_overflow() {
        let text = "(".repeat(100_000) + &")".repeat(100_000);
        let e = parse(&text).expect_err("too deep");
        assert!(e.message.contains("deeper"), "{e}");
        let ok = "(".repeat(MAX_DEPTH) + &")".repeat(MAX_DEPTH);
        assert_eq!(parse(&ok).expect("parse")[0].depth(), MAX_DEPTH);
    }

    #[test]
    fn writes_containers_one_statement_per_line() {
        let out = round_trip("(block b (blockinherit container) (optional o (allow process x (file (read)))))");
        assert_eq!(
            out,
            "(block b\n    (blockinherit container)\n    (optional o\n        (allow process x (file (read)))\n    )\n)\n"
        );
        assert_eq!(round_trip(&out), out, "writing is a fixed point");
    }

    #[test]
    fn built_parts_are_checked() {
        assert!(Expr::symbol("a)").is_err());
        assert!(Expr::symbol("a b").is_err());
        assert!(Expr::symbol("").is_err());
        assert!(Expr::quoted("a\"b").is_err());
        assert!(Expr::quoted("a\nb").is_err());
        assert_eq!(Expr::quoted("a b").expect("ok").to_string(), "\"a b\"");
    }
}
