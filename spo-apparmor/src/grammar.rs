//! The accepted path grammar and how a path is written into a profile.
//!
//! A path of an AppArmorProfile becomes one token of a rule (`<path> r,`). Anything that
//! could end that token early, start another rule, open a comment or change what the glob
//! means is refused here, with the byte offset and a hint, before any text is generated.
//! The grammar (also in the crate README):
//!
//! ```text
//! path        = start element*                      at most 4096 bytes
//! start       = "/" | variable
//! element     = literal | "/" | "*" | "**" | "?" | class | alternation | variable
//! variable    = "@{" NAME "}"                       NAME one of VARIABLES (tunables/global)
//! class       = "[" ["^"] ["-"] (char | alnum "-" alnum)+ "]"   a literal - only first
//! alternation = "{" alt ("," alt)+ "}"              alt = element*, may be empty; nesting <= 8
//! literal     = ASCII letter or digit | one of . - _ + = ~ % : @ $ & ' ( ) < > ^ ! # and space
//!             | a non-ASCII letter or digit
//! ```
//!
//! Refused: control characters (newline, tab, NUL...), `"` and `\` (quoting and escapes),
//! backward class ranges such as `[z-a]` (apparmor_parser takes them and they match nothing),
//! `,` outside an alternation, unbalanced `{ } [ ]`, a single-alternative `{a}`, an
//! alternation that matches the empty string in more than one way (`{,,,}` makes
//! apparmor_parser 3.0 loop forever), unknown
//! variables, `.` and `..` components and `//` (the kernel matches canonical paths, so such a
//! rule would never match what it seems to name), non-ASCII characters that are not letters
//! or digits (Unicode spaces, format characters). A path holding a space, `#`, `!`, `,,` or any
//! character outside `A-Za-z0-9/._-+=~%:@*?[]{},^` is written in double quotes; inside
//! quotes AppArmor only interprets `\` and `"`, which cannot occur.

use std::borrow::Cow;
use std::fmt;

use spo_model::apparmor::MAX_PATH_LEN;
use spo_model::validate::did_you_mean;

/// The variables `#include <tunables/global>` defines in AppArmor 3.0 (the only ones a
/// generated profile can use; anything else fails to compile with "never declared").
pub const VARIABLES: &[&str] = &[
    "HOME",
    "HOMEDIRS",
    "PROC",
    "XDG_DESKTOP_DIR",
    "XDG_DOCUMENTS_DIR",
    "XDG_DOWNLOAD_DIR",
    "XDG_MUSIC_DIR",
    "XDG_PICTURES_DIR",
    "XDG_PUBLICSHARE_DIR",
    "XDG_TEMPLATES_DIR",
    "XDG_VIDEOS_DIR",
    "etc_ro",
    "etc_rw",
    "flatpak_exports_root",
    "multiarch",
    "pid",
    "pids",
    "run",
    "sys",
    "system_share_dirs",
    "tid",
    "uid",
    "uids",
    "user_share_dirs",
];

/// How deeply alternations may nest (`{a,{b,{c,d}}}` is depth 3).
pub const MAX_ALTERNATION_DEPTH: usize = 8;

/// ASCII punctuation accepted as a literal path character.
const LITERAL_PUNCTUATION: &str = ".-_+=~%:@$&'()<>^!# ";

/// Characters that may appear in a path written without quotes.
const PLAIN_PUNCTUATION: &str = "/._-+=~%:@*?[]{},^";

/// Why a path was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathError {
    /// Byte offset in the path where the problem is.
    pub offset: usize,
    /// What is wrong, lower case.
    pub reason: String,
    /// What to do about it.
    pub hint: &'static str,
}

impl fmt::Display for PathError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (byte {})", self.reason, self.offset)
    }
}

impl std::error::Error for PathError {}

fn refuse(offset: usize, reason: impl Into<String>, hint: &'static str) -> PathError {
    PathError {
        offset,
        reason: reason.into(),
        hint,
    }
}

const HINT_LITERAL: &str = "paths may hold letters, digits, spaces and . - _ + = ~ % : @ $ & ' ( ) < > ^ ! #, \
                            plus the globs * ** ? [...] {a,b} and @{VARIABLE}";

/// An open alternation while scanning.
struct Group {
    /// Offset of its '{'.
    start: usize,
    /// Commas seen at its level.
    commas: usize,
    /// In how many ways its closed alternatives match the empty string.
    empty_ways: u32,
    /// The same for the alternative being read (1 until something non-empty is seen).
    alt_empty_ways: u32,
}

/// Checks a path against the grammar in the module documentation.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(refuse(0, "path is empty", "write an absolute path such as /etc/app/**"));
    }
    if path.len() > MAX_PATH_LEN {
        return Err(refuse(
            MAX_PATH_LEN,
            format!("path is {} bytes, longer than PATH_MAX ({MAX_PATH_LEN})", path.len()),
            "use a glob such as /dir/** for long paths",
        ));
    }
    if !(path.starts_with('/') || path.starts_with("@{")) {
        return Err(refuse(
            0,
            "path is not absolute",
            "AppArmor rules name absolute paths such as /var/log/app/** or @{PROC}/...",
        ));
    }
    let bytes = path.as_bytes();
    // Open alternations: (offset of '{', number of ',' seen at that level).
    let mut open: Vec<Group> = Vec::new();
    let mut segment_start = 0usize;
    let mut chars = path.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        let mut structural = false;
        match c {
            '/' => {
                check_segment(path, segment_start, i)?;
                segment_start = i + 1;
            }
            '{' => {
                if open.len() == MAX_ALTERNATION_DEPTH {
                    return Err(refuse(
                        i,
                        format!("alternations nest deeper than {MAX_ALTERNATION_DEPTH} levels"),
                        "flatten the alternation or split the path into several entries",
                    ));
                }
                open.push(Group {
                    start: i,
                    commas: 0,
                    empty_ways: 0,
                    alt_empty_ways: 1,
                });
                structural = true;
            }
            ',' => match open.last_mut() {
                Some(g) => {
                    g.commas += 1;
                    g.empty_ways = g.empty_ways.saturating_add(g.alt_empty_ways);
                    g.alt_empty_ways = 1;
                    structural = true;
                }
                None => {
                    return Err(refuse(
                        i,
                        "',' outside an alternation",
                        "a comma ends an AppArmor rule; list alternatives as {a,b} or use separate entries",
                    ));
                }
            },
            '}' => match open.pop() {
                Some(g) if g.commas == 0 => {
                    return Err(refuse(
                        g.start,
                        "alternation has a single alternative",
                        "AppArmor needs at least two alternatives: write {a,b}, or drop the braces",
                    ));
                }
                Some(g) => {
                    let ways = g.empty_ways.saturating_add(g.alt_empty_ways);
                    if ways > 1 {
                        return Err(refuse(
                            g.start,
                            format!("alternation matches the empty string in {ways} ways"),
                            "at most one alternative may be empty, as in lib{,32,64}; apparmor_parser 3.0 \
                             never finishes on some patterns with more (such as {,,,})",
                        ));
                    }
                    if let Some(parent) = open.last_mut() {
                        parent.alt_empty_ways = parent.alt_empty_ways.saturating_mul(ways);
                    }
                    structural = true;
                }
                None => {
                    return Err(refuse(
                        i,
                        "'}' without a matching '{'",
                        "balance the braces of the alternation",
                    ));
                }
            },
            '[' => {
                let end = check_class(path, i)?;
                // Skip the class body; check_class validated it.
                while chars.peek().is_some_and(|&(j, _)| j <= end) {
                    chars.next();
                }
            }
            ']' => {
                return Err(refuse(
                    i,
                    "']' without a matching '['",
                    "balance the brackets of the character class",
                ));
            }
            '@' if bytes.get(i + 1) == Some(&b'{') => {
                let end = check_variable(path, i)?;
                while chars.peek().is_some_and(|&(j, _)| j <= end) {
                    chars.next();
                }
            }
            '*' | '?' => {}
            c => check_literal(c, i)?,
        }
        // Anything but the alternation's own syntax makes the current alternative non-empty.
        if !structural && let Some(g) = open.last_mut() {
            g.alt_empty_ways = 0;
        }
    }
    // A trailing '/' names a directory.
    if segment_start < path.len() {
        check_segment(path, segment_start, path.len())?;
    }
    if let Some(g) = open.first() {
        return Err(refuse(
            g.start,
            "'{' is never closed",
            "balance the braces of the alternation",
        ));
    }
    Ok(())
}

/// A literal character outside classes and alternation syntax.
fn check_literal(c: char, offset: usize) -> Result<(), PathError> {
    if c.is_control() {
        return Err(refuse(
            offset,
            format!("contains the control character {c:?}"),
            "paths cannot contain newlines, tabs, NUL or other control characters",
        ));
    }
    if c == '"' {
        return Err(refuse(
            offset,
            "contains '\"'",
            "a double quote would end the quoted path; AppArmor paths cannot contain it",
        ));
    }
    if c == '\\' {
        return Err(refuse(
            offset,
            "contains '\\'",
            "escapes are not accepted; use ? to match a literal glob character",
        ));
    }
    if c.is_ascii_alphanumeric() || LITERAL_PUNCTUATION.contains(c) || (!c.is_ascii() && c.is_alphanumeric()) {
        return Ok(());
    }
    Err(refuse(offset, format!("character {c:?} is not accepted"), HINT_LITERAL))
}

/// The path component `path[start..end]`: not `.`, `..` or empty (`//`).
fn check_segment(path: &str, start: usize, end: usize) -> Result<(), PathError> {
    // The leading '/' produces an empty first segment.
    if end == 0 {
        return Ok(());
    }
    match &path[start..end] {
        "" => Err(refuse(
            start,
            "empty path component ('//')",
            "write a single '/'; the kernel matches canonical paths",
        )),
        "." | ".." => Err(refuse(
            start,
            format!("'{}' component", &path[start..end]),
            "the kernel matches canonical paths, so a rule with . or .. components never matches; write the resolved path",
        )),
        _ => Ok(()),
    }
}

/// A character class starting at `start` (the '['); returns the offset of its ']'.
///
/// Members are characters or ranges `a-z`; a literal `-` only as the first member.
fn check_class(path: &str, start: usize) -> Result<usize, PathError> {
    let mut members = 0usize;
    let mut chars = path[start + 1..]
        .char_indices()
        .map(|(k, c)| (start + 1 + k, c))
        .peekable();
    if chars.peek().is_some_and(|&(_, c)| c == '^') {
        chars.next();
    }
    let member = |at: usize, c: char| -> Result<(), PathError> {
        match c {
            '/' | '[' | '{' | '}' | ',' | '*' | '?' | '@' | '^' => Err(refuse(
                at,
                format!("{c:?} inside a character class"),
                "a class lists plain characters or ranges such as [a-z0-9._-]",
            )),
            c => check_literal(c, at),
        }
    };
    while let Some((at, c)) = chars.next() {
        match c {
            ']' if members > 0 => return Ok(at),
            ']' => {
                return Err(refuse(
                    start,
                    "empty character class",
                    "list at least one character, such as [0-9]",
                ));
            }
            '-' if members == 0 => members += 1,
            '-' => {
                return Err(refuse(
                    at,
                    "'-' in a character class that does not make a range",
                    "write a literal '-' first in the class, as in [-a-z]",
                ));
            }
            c => {
                member(at, c)?;
                members += 1;
                if chars.peek().is_some_and(|&(_, n)| n == '-') {
                    let (dash, _) = chars.next().unwrap_or((at, '-'));
                    match chars.next() {
                        Some((_, ']')) | None => {
                            return Err(refuse(
                                dash,
                                "range in a character class has no end",
                                "write ranges as a-z, and a literal '-' first in the class",
                            ));
                        }
                        Some((_, end)) if c.is_ascii_alphanumeric() && end.is_ascii_alphanumeric() && end < c => {
                            // apparmor_parser takes it and it matches nothing.
                            return Err(refuse(
                                dash,
                                format!("range {c}-{end} in a character class runs backwards and matches nothing"),
                                "write the lower end of a range first, as in a-z",
                            ));
                        }
                        Some((end_at, end)) if c.is_ascii_alphanumeric() && end.is_ascii_alphanumeric() => {
                            member(end_at, end)?
                        }
                        Some(_) => {
                            return Err(refuse(
                                dash,
                                "range in a character class between characters that are not letters or digits",
                                "write ranges such as a-z, A-F or 0-9; list other characters one by one",
                            ));
                        }
                    }
                }
            }
        }
    }
    Err(refuse(
        start,
        "'[' is never closed",
        "close the character class with ']'",
    ))
}

/// A variable reference `@{NAME}` at `start`; returns the offset of its '}'.
fn check_variable(path: &str, start: usize) -> Result<usize, PathError> {
    let body = &path[start + 2..];
    let Some(len) = body.find('}') else {
        return Err(refuse(start, "'@{' is never closed", "write a variable as @{NAME}"));
    };
    let name = &body[..len];
    if VARIABLES.contains(&name) {
        return Ok(start + 2 + len);
    }
    let reason = match did_you_mean(name, VARIABLES.iter().copied()) {
        Some(close) => format!("unknown variable @{{{name}}} (did you mean @{{{close}}}?)"),
        None => format!("unknown variable @{{{name}}}"),
    };
    Err(refuse(
        start,
        reason,
        "only the variables of tunables/global can be used, such as @{PROC}, @{pid}, @{HOME}, @{run}",
    ))
}

/// Whether a path must be written in double quotes.
///
/// Besides characters outside the plain set, `,,` needs quotes: the unquoted lexer keeps a
/// comma in a token only when a token character follows it, so `{a,,b}` would end the rule
/// at the first comma (found by the apparmor_parser property test).
pub fn needs_quotes(path: &str) -> bool {
    path.contains(",,")
        || !path
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || PLAIN_PUNCTUATION.contains(c))
}

/// A checked path as it is written in a rule: as is, or in double quotes when it holds a
/// space or other character the unquoted token would not carry (see [`needs_quotes`]).
/// Call [`check_path`] first; this does not check again.
pub fn quote_path(path: &str) -> Cow<'_, str> {
    if needs_quotes(path) {
        Cow::Owned(format!("\"{path}\""))
    } else {
        Cow::Borrowed(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_documented_forms() {
        for ok in [
            "/",
            "/usr/bin/nginx",
            "/var/log/**",
            "/etc/nginx/conf.d/*.conf",
            "/lib/tls/i686/cmov/lib*.so?",
            "/opt/my-app/v1.2+3/run_app",
            "/My Documents/test file",
            "@{PROC}/@{pid}/status",
            "/proc/@{pid}/cgroup",
            "@{HOME}/.bashrc",
            "/var/{a,b}/c",
            "/i/{,j}",
            "/usr/lib{,32,64}/**",
            "/a/{a{,b},c{,d}}",
            "/a/{,{a,b}}",
            "/x/{{a,b},c}",
            "/dev/pts/[0-9]*",
            "/dev/[^t]ty",
            "/a/[-a-z0-9_]",
            "/a/[^-]",
            "/a/[!#']",
            "/run/systemd/user@1000.service",
            "/a/#b",
            "/a/x!y",
            "/données/été",
            "/a/",
            "/a/x^y",
        ] {
            assert_eq!(check_path(ok), Ok(()), "{ok:?}");
        }
    }

    #[test]
    fn refuses_with_offsets() {
        let cases: &[(&str, usize, &str)] = &[
            ("", 0, "empty"),
            ("usr/bin", 0, "not absolute"),
            ("/a\nb", 2, "control character"),
            ("/a\tb", 2, "control character"),
            ("/a\0", 2, "control character"),
            ("/a\"b", 2, "'\"'"),
            ("/a\\*", 2, "'\\'"),
            ("/a,b", 2, "outside an alternation"),
            ("/a{b,c", 2, "never closed"),
            ("/a}", 2, "without a matching '{'"),
            ("/a/{b}", 3, "single alternative"),
            ("/a/{,,,}", 3, "empty string in 4 ways"),
            ("/a/{,a,}", 3, "empty string in 2 ways"),
            ("/a/{x,{,},{,}}", 6, "empty string in 2 ways"),
            ("/a/{x,{,b},{,c}}", 3, "empty string in 2 ways"),
            ("/a/{{a,},{b,}}", 3, "empty string in 2 ways"),
            ("/a/{,{,}}", 5, "empty string in 2 ways"),
            ("/a/{,{,b}}", 3, "empty string in 2 ways"),
            ("/a[bc", 2, "never closed"),
            ("/a]", 2, "without a matching '['"),
            ("/a[]", 2, "empty character class"),
            ("/a[/]", 3, "inside a character class"),
            ("/a[a-]", 4, "range in a character class has no end"),
            ("/a[a-b-c]", 6, "does not make a range"),
            ("/a[#--]", 4, "not letters or digits"),
            ("/a[z-a]", 4, "range z-a in a character class runs backwards"),
            ("/a[^^]", 4, "inside a character class"),
            ("/@{nope}/x", 1, "unknown variable @{nope}"),
            ("/@{PID}/x", 1, "did you mean @{pid}?"),
            ("/@{pid", 1, "never closed"),
            ("/usr/bin/../etc/shadow", 9, "'..' component"),
            ("/a/./b", 3, "'.' component"),
            ("/a//b", 3, "empty path component"),
            ("/a/;b", 3, "is not accepted"),
            ("/a/\u{a0}b", 3, "is not accepted"),
            ("/a/\u{2028}", 3, "is not accepted"),
            ("/a/\u{85}", 3, "control character"),
        ];
        for (path, offset, reason) in cases {
            let err = check_path(path).expect_err(path);
            assert_eq!(err.offset, *offset, "{path:?}: {err}");
            assert!(err.reason.contains(reason), "{path:?}: {err}");
        }
    }

    #[test]
    fn quoting_only_when_needed() {
        assert_eq!(quote_path("/usr/bin/{a,b}*"), "/usr/bin/{a,b}*");
        assert_eq!(quote_path("/My Documents/x"), "\"/My Documents/x\"");
        assert_eq!(quote_path("/a/#b"), "\"/a/#b\"");
        assert_eq!(quote_path("/a/x!y"), "\"/a/x!y\"");
        assert_eq!(quote_path("/été"), "\"/été\"");
        assert_eq!(quote_path("/a/{,,b}"), "\"/a/{,,b}\"");
    }

    #[test]
    fn long_paths_and_deep_nesting() {
        let long = format!("/{}", "a".repeat(MAX_PATH_LEN));
        assert!(check_path(&long).expect_err("long").reason.contains("PATH_MAX"));
        let deep = format!("/{}{}", "{a,".repeat(9), "b}".repeat(9));
        assert!(check_path(&deep).expect_err("deep").reason.contains("nest deeper"));
        let ok = format!("/{}{}", "{a,".repeat(8), "b}".repeat(8));
        assert_eq!(check_path(&ok), Ok(()));
    }
}
