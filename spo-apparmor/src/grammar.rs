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
//! class       = "[" ["^"] class-char+ "]"           ranges such as a-z allowed
//! alternation = "{" alt ("," alt)+ "}"              alt = element*, may be empty; nesting <= 8
//! literal     = ASCII letter or digit | one of . - _ + = ~ % : @ $ & ' ( ) < > ^ ! # and space
//!             | a non-ASCII letter or digit
//! ```
//!
//! Refused: control characters (newline, tab, NUL...), `"` and `\` (quoting and escapes),
//! `,` outside an alternation, unbalanced `{ } [ ]`, a single-alternative `{a}`, unknown
//! variables, `.` and `..` components and `//` (the kernel matches canonical paths, so such a
//! rule would never match what it seems to name), non-ASCII characters that are not letters
//! or digits (Unicode spaces, format characters). A path holding a space, `#`, `!` or any
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
    let mut open: Vec<(usize, usize)> = Vec::new();
    let mut segment_start = 0usize;
    let mut chars = path.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
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
                open.push((i, 0));
            }
            ',' => match open.last_mut() {
                Some((_, commas)) => *commas += 1,
                None => {
                    return Err(refuse(
                        i,
                        "',' outside an alternation",
                        "a comma ends an AppArmor rule; list alternatives as {a,b} or use separate entries",
                    ));
                }
            },
            '}' => match open.pop() {
                Some((start, 0)) => {
                    return Err(refuse(
                        start,
                        "alternation has a single alternative",
                        "AppArmor needs at least two alternatives: write {a,b}, or drop the braces",
                    ));
                }
                Some(_) => {}
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
    }
    // A trailing '/' names a directory.
    if segment_start < path.len() {
        check_segment(path, segment_start, path.len())?;
    }
    if let Some((start, _)) = open.first() {
        return Err(refuse(
            *start,
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
fn check_class(path: &str, start: usize) -> Result<usize, PathError> {
    let body = &path[start + 1..];
    let mut members = 0usize;
    for (k, c) in body.char_indices() {
        let at = start + 1 + k;
        match c {
            ']' if members > 0 => return Ok(at),
            ']' => {
                return Err(refuse(
                    start,
                    "empty character class",
                    "list at least one character, such as [0-9]",
                ));
            }
            '^' if k == 0 => {}
            '/' | '[' | '{' | '}' | ',' | '*' | '?' | '@' => {
                return Err(refuse(
                    at,
                    format!("{c:?} inside a character class"),
                    "a class lists plain characters or ranges such as [a-z0-9._-]",
                ));
            }
            c => {
                check_literal(c, at)?;
                members += 1;
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
pub fn needs_quotes(path: &str) -> bool {
    !path
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
            "/x/{{a,b},c}",
            "/dev/pts/[0-9]*",
            "/dev/[^t]ty",
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
            ("/a[bc", 2, "never closed"),
            ("/a]", 2, "without a matching '['"),
            ("/a[]", 2, "empty character class"),
            ("/a[/]", 3, "inside a character class"),
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
