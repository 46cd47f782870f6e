//! A byte scan that finds YAML nested too deep before the parser reads it.
//!
//! The YAML parser reads token-dense input at 6-10 MB/s, so 8 MiB of brackets that stays just
//! under the nesting limit and goes past it only at its end costs over a second before it is
//! refused. This scan refuses such input at memory speed.
//!
//! It follows the YAML rules that decide whether a `[` or `{` opens a collection: quoted
//! scalars, plain scalars (which may hold brackets in block context, and may go on over more
//! indented lines), comments, block scalars (`|`, `>`), tags, anchors and aliases. Where it
//! cannot be sure, it skips text rather than counting it, and it counts block nesting only as
//! far as indentation proves it. So it counts at most the collections the parser opens: it
//! never refuses input that the parser reads within the limit (a property test holds it to
//! that, with the parser as the oracle). What it does not refuse is left to the parser, which
//! enforces the limit exactly.

/// The byte offset of the first `[` or `{` in `text` (one YAML document) that opens a
/// collection nested deeper than `limit` (counting the block collections around it), if the
/// scan finds one.
pub(crate) fn too_deep(text: &str, limit: usize) -> Option<usize> {
    let mut scan = Scan {
        b: text.as_bytes(),
        limit,
        block: Vec::new(),
    };
    scan.run().err()
}

/// Whether the document ended or a too-deep opening was found (`Err(offset)`).
type Step<T> = Result<T, usize>;

/// What a block-context line leaves for the lines after it.
#[derive(Clone, Copy)]
enum Pending {
    Nothing,
    /// A block scalar or a plain scalar that may go on: lines indented more than this (or
    /// blank) are its text.
    Deeper(isize),
}

struct Scan<'a> {
    b: &'a [u8],
    limit: usize,
    /// Columns of the block collections that indentation proves open (a lower bound).
    block: Vec<usize>,
}

fn is_blank(c: u8) -> bool {
    matches!(c, b' ' | b'\t' | b'\r')
}

fn is_flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl Scan<'_> {
    fn at(&self, i: usize) -> u8 {
        self.b.get(i).copied().unwrap_or(b'\n')
    }

    /// End of the input or a line break.
    fn is_eol(&self, i: usize) -> bool {
        i >= self.b.len() || self.b[i] == b'\n'
    }

    /// A blank, a line break or the end: what separates an indicator from what follows.
    fn separated(&self, i: usize) -> bool {
        self.is_eol(i) || is_blank(self.b[i])
    }

    fn skip_blanks(&self, mut i: usize) -> usize {
        while i < self.b.len() && is_blank(self.b[i]) {
            i += 1;
        }
        i
    }

    /// The start of the line after the one holding `i`.
    fn next_line(&self, i: usize) -> usize {
        match self.b.get(i..).and_then(|rest| rest.iter().position(|&c| c == b'\n')) {
            Some(n) => i + n + 1,
            None => self.b.len(),
        }
    }

    fn line_start(&self, i: usize) -> usize {
        self.b[..i].iter().rposition(|&c| c == b'\n').map_or(0, |n| n + 1)
    }

    fn run(&mut self) -> Step<()> {
        let mut pos = 0;
        let mut pending = Pending::Nothing;
        while pos < self.b.len() {
            if let Pending::Deeper(parent) = pending {
                // Blanks and tabs both count as indentation here: skipping more is safe.
                let text = self.skip_blanks(pos);
                if self.is_eol(text) || (text - pos) as isize > parent {
                    pos = self.next_line(pos);
                    continue;
                }
            }
            (pos, pending) = self.line(pos)?;
        }
        Ok(())
    }

    /// A line read in block context, from its first byte.
    fn line(&mut self, start: usize) -> Step<(usize, Pending)> {
        let mut indent = 0;
        while self.at(start + indent) == b' ' {
            indent += 1;
        }
        let p = self.skip_blanks(start + indent);
        if self.is_eol(p) || self.b[p] == b'#' || (indent == 0 && self.b[p] == b'%') {
            return Ok((self.next_line(p), Pending::Nothing));
        }
        while self.block.last().is_some_and(|&c| c > indent) {
            self.block.pop();
        }
        self.node(p, start, indent, false)
    }

    /// A block collection at `column`, its first token at `at`.
    fn push_block(&mut self, column: usize, at: usize) -> Step<()> {
        if self.block.last() != Some(&column) {
            self.block.push(column);
            if self.block.len() > self.limit {
                return Err(at);
            }
        }
        Ok(())
    }

    /// What lines a scalar that may go on over more indented lines leaves pending: after an
    /// indicator or key on its line, lines indented more than the line; alone on its line,
    /// lines indented more than the innermost block collection (any line, at the top).
    fn goes_on(&self, indent: usize, prefixed: bool) -> Pending {
        let parent = if prefixed {
            indent as isize
        } else {
            self.block.last().map_or(-1, |&c| c as isize)
        };
        Pending::Deeper(parent)
    }

    /// A node in block context at `p` (after any indicators); `line` starts its line.
    fn node(&mut self, mut p: usize, line: usize, indent: usize, mut prefixed: bool) -> Step<(usize, Pending)> {
        // Where the node starts, its tag or anchor included: a key's mapping is at that column.
        let mut node_col = None;
        loop {
            if self.is_eol(p) {
                return Ok((self.next_line(p), Pending::Nothing));
            }
            match self.b[p] {
                b'#' => return Ok((self.next_line(p), Pending::Nothing)),
                b'-' | b'?' | b':' if self.separated(p + 1) => {
                    if self.b[p] != b':' {
                        self.push_block(p - line, p)?;
                    }
                    prefixed = true;
                    node_col = None;
                    p = self.skip_blanks(p + 1);
                }
                b'!' | b'&' => {
                    node_col.get_or_insert(p - line);
                    p = self.skip_blanks(self.skip_property(p));
                }
                b'*' => {
                    let end = self.skip_property(p);
                    return self.after_node(end, line, indent);
                }
                b'[' | b'{' => {
                    let end = self.flow(p)?;
                    let line = self.line_start(end.min(self.b.len()));
                    return self.after_node(end, line, indent);
                }
                q @ (b'"' | b'\'') => {
                    let Some(end) = self.close_quote(p + 1, q) else {
                        return Ok((self.b.len(), Pending::Nothing));
                    };
                    let line = self.line_start(end);
                    return self.after_node(end, line, indent);
                }
                b'|' | b'>' => return Ok((self.next_line(p), self.goes_on(indent, prefixed))),
                _ => {
                    // A plain scalar: a key when `: ` follows on its line, else a value that
                    // may go on over more indented lines.
                    let mut q = p + 1;
                    loop {
                        if self.is_eol(q) {
                            return Ok((self.next_line(q), self.goes_on(indent, prefixed)));
                        }
                        match self.b[q] {
                            b':' if self.separated(q + 1) => break,
                            b'#' if is_blank(self.b[q - 1]) => {
                                return Ok((self.next_line(q), self.goes_on(indent, prefixed)));
                            }
                            _ => q += 1,
                        }
                    }
                    let column = node_col.take().unwrap_or(p - line);
                    self.push_block(column, p)?;
                    prefixed = true;
                    p = self.skip_blanks(q + 1);
                }
            }
        }
    }

    /// After a whole node in block context: a `:` makes it a key, and its value follows.
    fn after_node(&mut self, end: usize, line: usize, indent: usize) -> Step<(usize, Pending)> {
        let p = self.skip_blanks(end);
        if !self.is_eol(p) && self.b[p] == b':' && self.separated(p + 1) {
            let value = self.skip_blanks(p + 1);
            return self.node(value, line, indent, true);
        }
        Ok((self.next_line(p), Pending::Nothing))
    }

    /// The end of a tag, anchor or alias at `p`. A verbatim tag `!<…>` ends at `>`; others
    /// at a blank or a closing flow indicator. An opening bracket inside one is skipped, not
    /// counted (the parser may read it as part of the name).
    fn skip_property(&self, p: usize) -> usize {
        let mut q = p + 1;
        if self.b[p] == b'!' && self.at(q) == b'<' {
            while !self.is_eol(q) && self.b[q] != b'>' {
                q += 1;
            }
            return if self.is_eol(q) { q } else { q + 1 };
        }
        while !self.separated(q) && !matches!(self.b[q], b',' | b']' | b'}') {
            q += 1;
        }
        q
    }

    /// The byte after the quote closing a scalar whose text starts at `p`, or `None` at the
    /// end of the input.
    fn close_quote(&self, mut p: usize, quote: u8) -> Option<usize> {
        while p < self.b.len() {
            let c = self.b[p];
            if quote == b'"' && c == b'\\' {
                p += 2;
                continue;
            }
            if c == quote {
                if quote == b'\'' && self.at(p + 1) == b'\'' {
                    p += 2;
                    continue;
                }
                return Some(p + 1);
            }
            p += 1;
        }
        None
    }

    /// A flow collection opening at `p`, read to the byte after its close (or the end).
    fn flow(&mut self, p: usize) -> Step<usize> {
        let mut depth = 0usize;
        // At a place where a node may start (so a quote opens a quoted scalar).
        let mut node_start = true;
        let mut in_plain = false;
        let mut q = p;
        while q < self.b.len() {
            let c = self.b[q];
            match c {
                b'[' | b'{' => {
                    depth += 1;
                    if depth + self.block.len() > self.limit {
                        return Err(q);
                    }
                    node_start = true;
                    in_plain = false;
                }
                b']' | b'}' => {
                    depth = depth.saturating_sub(1);
                    if depth == 0 {
                        return Ok(q + 1);
                    }
                    node_start = false;
                    in_plain = false;
                }
                b',' => {
                    node_start = true;
                    in_plain = false;
                }
                b' ' | b'\t' | b'\r' | b'\n' => {}
                b'#' if !in_plain || q == 0 || matches!(self.b[q - 1], b' ' | b'\t' | b'\r' | b'\n') => {
                    in_plain = false;
                    q = self.next_line(q);
                    continue;
                }
                b':' if in_plain => {
                    let next = self.at(q + 1);
                    if self.separated(q + 1) || is_flow_indicator(next) {
                        in_plain = false;
                        node_start = true;
                    }
                }
                b':' => {
                    let next = self.at(q + 1);
                    if node_start && !self.separated(q + 1) && !is_flow_indicator(next) {
                        in_plain = true;
                        node_start = false;
                    } else {
                        node_start = true;
                    }
                }
                _ if in_plain => {}
                b'"' | b'\'' if node_start => {
                    match self.close_quote(q + 1, c) {
                        Some(end) => q = end,
                        None => return Ok(self.b.len()),
                    }
                    node_start = false;
                    continue;
                }
                b'!' | b'&' if node_start => {
                    q = self.skip_property(q);
                    continue;
                }
                b'*' if node_start => {
                    q = self.skip_property(q);
                    node_start = false;
                    continue;
                }
                b'?' | b'-' if node_start && self.separated(q + 1) => {}
                _ => {
                    in_plain = true;
                    node_start = false;
                }
            }
            q += 1;
        }
        Ok(q)
    }
}

#[cfg(test)]
mod tests {
    use granit_parser::{Event, Options, Parser};
    use proptest::prelude::*;

    use super::too_deep;

    /// The deepest nesting the parser reaches, or `None` when it refuses the input.
    fn parser_depth(text: &str) -> Option<usize> {
        let mut options = Options::default();
        options.flow_nesting_limit = 10_000;
        options.block_nesting_limit = 10_000;
        let mut parser = Parser::new_from_str_with_options(text, options);
        let (mut depth, mut max) = (0usize, 0usize);
        while let Some(next) = parser.next_event() {
            match next.ok()?.0 {
                Event::SequenceStart(..) | Event::MappingStart(..) => {
                    depth += 1;
                    max = max.max(depth);
                }
                Event::SequenceEnd | Event::MappingEnd => depth = depth.saturating_sub(1),
                _ => {}
            }
        }
        Some(max)
    }

    fn deep(n: usize) -> String {
        format!("{}{}", "[".repeat(n), "]".repeat(n))
    }

    #[test]
    fn finds_flow_nesting_past_the_limit() {
        assert_eq!(too_deep(&deep(4), 4), None);
        assert_eq!(too_deep(&deep(5), 4), Some(4));
        // The document's own mapping counts: `a:` is level 1.
        assert_eq!(too_deep(&format!("a: {}", deep(3)), 4), None);
        assert_eq!(too_deep(&format!("a: {}", deep(4)), 4), Some(6));
        // Block collections proved by indentation count too.
        let text = format!("a:\n  b:\n  - c: {}\n", deep(2));
        assert_eq!(too_deep(&text, 4), text.find('[').map(|i| i + 1));
        assert_eq!(too_deep(&text, 5), None);
        // Deep only at the end, after many shallow siblings.
        let text = format!("a: [{}{}]", format!("{}, ", deep(2)).repeat(1000), deep(4));
        assert!(too_deep(&text, 4).is_some());
        assert!(too_deep("{a: {b: {c: {d: {}}}}}", 4).is_some());
        // Block nesting alone, deep only at the end.
        assert_eq!(too_deep("- - - - x\n", 4), None);
        assert_eq!(
            too_deep(&format!("{}- - - - - x\n", "- - - x\n".repeat(100)), 4),
            Some(808)
        );
        assert_eq!(too_deep("a:\n b:\n  c:\n   d:\n    e: x\n", 4), Some(22));
    }

    #[test]
    fn brackets_in_text_are_not_counted() {
        for text in [
            format!("a: '{}'\n", "[".repeat(10)),
            format!("a: \"\\\"{}\"\n", "[".repeat(10)),
            format!("a: x{}\n", "[".repeat(10)),
            format!("a: x\n  {}\n", "[".repeat(10)),
            format!("x\n{}\n", "[".repeat(10)),
            format!("a: |\n  {}\n", "[".repeat(10)),
            format!("a:\n  |\n {}\n", "[".repeat(10)),
            format!("|\n{}\n", "[".repeat(10)),
            format!("a: 1 # {}\n", "[".repeat(10)),
            format!("# {}\n", "[".repeat(10)),
            format!("a: [x', '{}']\n", "[".repeat(10)),
            format!("a: [x\"y, \"{}\"]\n", "[".repeat(10)),
            format!("a: [a:'b, '{}']\n", "[".repeat(10)),
            format!("a: [b, 'c{}']\n", "[".repeat(10)),
            format!("a: [!<{}> x]\n", "[".repeat(10)),
            format!("a: ['it''s {}']\n", "[".repeat(10)),
            format!("a: [x # {}\n]\n", "[".repeat(10)),
            format!("a: \"multi\n  line {}\"\n", "[".repeat(10)),
        ] {
            assert_eq!(too_deep(&text, 4), None, "{text:?}");
            if let Some(depth) = parser_depth(&text) {
                assert!(depth <= 4, "{text:?} is {depth} deep");
            }
        }
    }

    /// Pieces that make the YAML constructs the scan must tell apart.
    fn piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "[", "[", "[", "{", "{", "]", "]", "}", ",", ", ", "'", "\"", "''", "\\\"", "#", " #", " ", "  ", "\n",
            "\n  ", "\n ", "- ", ": ", ":", "a", "b: ", "x", "|", ">", "|\n", "!t ", "!<[> ", "&a ", "*a", "? ", "\t",
            "\r\n", "--", "%", "-1",
        ])
    }

    /// Fewer pieces, for flow collections holding scalars of every kind.
    fn flow_piece() -> impl Strategy<Value = &'static str> {
        prop::sample::select(vec![
            "[", "[", "]", "{", "}", "'", "\"", "x", ", ", ": ", ":", " #", "\n", " ", "!t",
        ])
    }

    fn holds(text: &str, limit: usize) -> Result<(), TestCaseError> {
        if too_deep(text, limit).is_some()
            && let Some(depth) = parser_depth(text)
        {
            prop_assert!(
                depth > limit,
                "{text:?}: the scan refused it at limit {limit}, the parser read it {depth} deep"
            );
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 20_000, ..ProptestConfig::default() })]

        /// The scan never refuses input the parser reads within the limit.
        #[test]
        fn never_refuses_what_the_parser_accepts(pieces in prop::collection::vec(piece(), 0..40), limit in 1usize..5) {
            holds(&pieces.concat(), limit)?;
        }

        #[test]
        fn never_refuses_flow_collections_the_parser_accepts(pieces in prop::collection::vec(flow_piece(), 0..30), limit in 1usize..4) {
            holds(&format!("a: [{}", pieces.concat()), limit)?;
        }
    }
}
