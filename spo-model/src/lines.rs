//! Where each field of a document is written: the source's mappings and sequences with the
//! line of every entry, so that a problem's [`FieldPath`] can be shown at its line.

use std::sync::Arc;

use crate::validate::FieldPath;

/// The nodes of one parsed source, in one arena: a few bytes per node, no allocation per
/// node. Aliases point at the anchored node, so the arena is as large as the source.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct LineArena {
    pub(crate) nodes: Vec<LineNode>,
    /// Items of the sequences, as node indexes (each sequence a contiguous run).
    pub(crate) items: Vec<u32>,
    /// Entries of the mappings, each mapping a run sorted by key: (key, line of the key, node).
    pub(crate) entries: Vec<(Box<str>, u32, u32)>,
}

/// One node: its line, and where its items or entries are.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct LineNode {
    /// 1-based line where the node starts.
    pub(crate) line: u32,
    pub(crate) kind: LineKind,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum LineKind {
    Scalar,
    /// `items[start..start + len]`.
    Seq {
        start: u32,
        len: u32,
    },
    /// `entries[start..start + len]`.
    Map {
        start: u32,
        len: u32,
    },
}

/// The source line of every field of one document (1-based), built while parsing; its size is
/// proportional to the input.
///
/// Look a path up with [`FieldLines::line_of`] or, with the fallback to the document's first
/// line, [`crate::Document::line_of`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FieldLines {
    arena: Option<Arc<LineArena>>,
    root: u32,
}

impl FieldLines {
    /// No lines known (every lookup falls back to the document's line).
    pub fn none() -> Self {
        FieldLines::default()
    }

    pub(crate) fn new(arena: Arc<LineArena>, root: u32) -> Self {
        FieldLines {
            arena: Some(arena),
            root,
        }
    }

    /// The lines of item `index` of the list at `field` (the document itself when `None`), as
    /// a document of their own: `List` items and the objects of a top-level JSON array.
    pub(crate) fn item(&self, field: Option<&str>, index: usize) -> FieldLines {
        let Some(arena) = &self.arena else {
            return FieldLines::none();
        };
        let mut node = Some(self.root);
        if let Some(field) = field {
            node = node.and_then(|n| arena.entry(n, field)).map(|(_, child)| child);
        }
        match node.and_then(|n| arena.item(n, index)) {
            Some(root) => FieldLines::new(arena.clone(), root),
            None => FieldLines::none(),
        }
    }

    /// The line of the field at `path`: the line of its key (or of its list item), or, when the
    /// field is not written in the source (a missing required field, say), the line of the
    /// nearest parent that is; `None` when not even the first step of the path is written.
    /// Map keys may hold `.`, `[` and `]`: each step is matched against the keys present.
    pub fn line_of(&self, path: &FieldPath) -> Option<usize> {
        let arena = self.arena.as_deref()?;
        let mut node = self.root;
        let mut rest = path.as_str();
        let mut found = None;
        while !rest.is_empty() {
            let Some((line, child, after)) = arena.step(node, rest) else {
                break;
            };
            found = Some(line as usize);
            node = child;
            rest = after.strip_prefix('.').unwrap_or(after);
        }
        found
    }
}

impl LineArena {
    fn node(&self, n: u32) -> Option<&LineNode> {
        self.nodes.get(n as usize)
    }

    fn item(&self, n: u32, index: usize) -> Option<u32> {
        match self.node(n)?.kind {
            LineKind::Seq { start, len } if index < len as usize => self.items.get(start as usize + index).copied(),
            _ => None,
        }
    }

    fn entry(&self, n: u32, key: &str) -> Option<(u32, u32)> {
        let LineKind::Map { start, len } = self.node(n)?.kind else {
            return None;
        };
        let run = self.entries.get(start as usize..(start + len) as usize)?;
        let i = run.binary_search_by(|(k, _, _)| (**k).cmp(key)).ok()?;
        run.get(i).map(|&(_, line, child)| (line, child))
    }

    /// Follows the first step of `rest` from node `n`: (line of the entry, its node, what is
    /// left).
    fn step<'p>(&self, n: u32, rest: &'p str) -> Option<(u32, u32, &'p str)> {
        match self.node(n)?.kind {
            LineKind::Scalar => None,
            LineKind::Seq { .. } => {
                let inner = rest.strip_prefix('[')?;
                let close = inner.find(']')?;
                let child = self.item(n, inner[..close].parse().ok()?)?;
                Some((self.node(child)?.line, child, &inner[close + 1..]))
            }
            LineKind::Map { .. } => {
                // The key ends at a delimiter; try each possible end, shortest first, since a
                // key may itself hold the delimiters.
                let (body, bracketed) = match rest.strip_prefix('[') {
                    Some(inner) => (inner, true),
                    None => (rest, false),
                };
                let ends = body
                    .char_indices()
                    .filter(|&(_, c)| if bracketed { c == ']' } else { c == '.' || c == '[' })
                    .map(|(i, _)| i)
                    .chain((!bracketed).then_some(body.len()));
                for end in ends {
                    let after = if bracketed { &body[end + 1..] } else { &body[end..] };
                    if !(after.is_empty() || after.starts_with('.') || after.starts_with('[')) {
                        continue;
                    }
                    if let Some((line, child)) = self.entry(n, &body[..end]) {
                        return Some((line, child, after));
                    }
                }
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_with_dots_and_brackets_in_keys() {
        let scalar = |line| LineNode {
            line,
            kind: LineKind::Scalar,
        };
        // 0 root {a.b, items, labels}; 1 labels {a.b/c, x]y}; 2 items [7, 8].
        let arena = LineArena {
            nodes: vec![
                LineNode {
                    line: 1,
                    kind: LineKind::Map { start: 0, len: 3 },
                },
                LineNode {
                    line: 3,
                    kind: LineKind::Map { start: 3, len: 2 },
                },
                LineNode {
                    line: 6,
                    kind: LineKind::Seq { start: 0, len: 2 },
                },
                scalar(4),
                scalar(5),
                scalar(7),
                scalar(8),
                scalar(9),
            ],
            items: vec![5, 6],
            entries: vec![
                ("a.b".into(), 9, 7),
                ("items".into(), 6, 2),
                ("labels".into(), 3, 1),
                ("a.b/c".into(), 4, 3),
                ("x]y".into(), 5, 4),
            ],
        };
        let lines = FieldLines::new(Arc::new(arena), 0);
        let at = |p: &str| lines.line_of(&FieldPath::root().field(p));
        assert_eq!(at("labels[a.b/c]"), Some(4));
        assert_eq!(at("labels[x]y]"), Some(5));
        assert_eq!(at("labels[nope]"), Some(3));
        assert_eq!(at("a.b"), Some(9));
        assert_eq!(at("items[1]"), Some(8));
        assert_eq!(at("items[2]"), Some(6));
        assert_eq!(at("other"), None);
        assert_eq!(
            lines.item(Some("items"), 1).line_of(&FieldPath::root().field("x")),
            None
        );
        assert_eq!(FieldLines::none().line_of(&FieldPath::root().field("a")), None);
    }
}
