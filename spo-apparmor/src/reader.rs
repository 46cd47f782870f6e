//! Our own reader of profile text: the subset the renderer writes (includes, one profile
//! header, file, network and capability rules, `deny`), tokenized the way apparmor_parser's
//! lexer does it, so that tests can check that every field became exactly the rule it was
//! meant to be and nothing else.
//!
//! Tokens follow AppArmor's rules: whitespace separates; `#include` is a directive and any
//! other `#` at the start of a token starts a comment; `"..."` is a quoted piece with `\`
//! escapes; an unquoted piece runs until whitespace, `"`, `!` or a `,` that is not followed
//! by another piece character (so `{a,b}` stays in one token and `/x r,` ends at the comma);
//! quoted and unquoted pieces that touch form one token.

use std::fmt;

use spo_model::AppArmorProfile;
use spo_model::apparmor::AppArmorMode;

use crate::error::AppArmorError;
use crate::render::{ENFORCE_DENY_RULES, ProfileSource, path_lists, render_profile};

/// A rule read back from profile text.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Rule {
    /// `#include <x>` or `include <x>` inside the profile.
    Include(String),
    /// `[deny] <path> <perms>,`.
    File {
        /// Whether the rule starts with `deny`.
        deny: bool,
        /// The path, unquoted.
        path: String,
        /// The permission letters.
        perms: String,
    },
    /// `[deny] network <args>,`.
    Network {
        /// Whether the rule starts with `deny`.
        deny: bool,
        /// The words after `network`.
        args: Vec<String>,
    },
    /// `[deny] capability <names>,`.
    Capability {
        /// Whether the rule starts with `deny`.
        deny: bool,
        /// The capability names.
        names: Vec<String>,
    },
}

/// A profile read back.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReadProfile {
    /// Includes before the profile.
    pub preamble: Vec<String>,
    /// The profile name.
    pub name: String,
    /// The flags, such as `enforce`, `attach_disconnected`.
    pub flags: Vec<String>,
    /// The rules in order, each with its line (1-based).
    pub rules: Vec<(usize, Rule)>,
}

/// Why text could not be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReadError {
    /// 1-based line.
    pub line: usize,
    /// What was wrong.
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ReadError {}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// A word; `quoted` when any piece of it was quoted.
    Word {
        text: String,
        quoted: bool,
    },
    Comma,
    Open,
    Close,
    Include(String),
}

fn is_break(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\r' | '\n' | '"' | '!' | ',')
}

fn tokenize(text: &str) -> Result<Vec<(usize, Token)>, ReadError> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    let err = |line: usize, message: String| ReadError { line, message };
    while i < chars.len() {
        let c = chars[i];
        match c {
            '\n' => {
                line += 1;
                i += 1;
            }
            ' ' | '\t' | '\r' => i += 1,
            '#' => {
                let end = chars[i..]
                    .iter()
                    .position(|&c| c == '\n')
                    .map_or(chars.len(), |p| i + p);
                let comment: String = chars[i..end].iter().collect();
                if let Some(rest) = comment.strip_prefix("#include") {
                    out.push((line, Token::Include(rest.trim().to_owned())));
                }
                i = end;
            }
            ',' => {
                out.push((line, Token::Comma));
                i += 1;
            }
            '!' => return Err(err(line, "unexpected character '!'".into())),
            '{' | '}' if chars.get(i + 1).is_none_or(|n| n.is_whitespace()) => {
                out.push((line, if c == '{' { Token::Open } else { Token::Close }));
                i += 1;
            }
            _ => {
                let start_line = line;
                let mut word = String::new();
                let mut quoted = false;
                loop {
                    match chars.get(i) {
                        Some('"') => {
                            quoted = true;
                            i += 1;
                            loop {
                                match chars.get(i) {
                                    None => return Err(err(start_line, "unterminated quoted string".into())),
                                    Some('"') => {
                                        i += 1;
                                        break;
                                    }
                                    Some('\\') => {
                                        let Some(&n) = chars.get(i + 1) else {
                                            return Err(err(line, "escape at end of text".into()));
                                        };
                                        word.push(n);
                                        i += 2;
                                    }
                                    Some(&n) => {
                                        if n == '\n' {
                                            line += 1;
                                        }
                                        word.push(n);
                                        i += 1;
                                    }
                                }
                            }
                        }
                        Some(',') if chars.get(i + 1).is_some_and(|&n| !is_break(n)) && !word.is_empty() => {
                            word.push(',');
                            i += 1;
                        }
                        Some(&n) if !is_break(n) => {
                            word.push(n);
                            i += 1;
                        }
                        _ => break,
                    }
                }
                out.push((start_line, Token::Word { text: word, quoted }));
            }
        }
    }
    Ok(out)
}

/// Reads profile text into its preamble, header and rules.
pub fn read_profile(text: &str) -> Result<ReadProfile, ReadError> {
    let tokens = tokenize(text)?;
    let mut it = tokens.into_iter().peekable();
    let mut profile = ReadProfile::default();
    let last_line = text.lines().count().max(1);
    let unexpected = |line: usize, what: &str, t: Option<&Token>| ReadError {
        line,
        message: format!("expected {what}, found {t:?}"),
    };

    // Preamble.
    loop {
        match it.next() {
            Some((_, Token::Include(target))) => profile.preamble.push(target),
            Some((_, Token::Word { text, quoted: false })) if text == "profile" => break,
            Some((l, t)) => return Err(unexpected(l, "#include or profile", Some(&t))),
            None => return Err(unexpected(last_line, "profile", None)),
        }
    }
    match it.next() {
        Some((_, Token::Word { text, .. })) => profile.name = text,
        Some((l, t)) => return Err(unexpected(l, "a profile name", Some(&t))),
        None => return Err(unexpected(last_line, "a profile name", None)),
    }
    if let Some((_, Token::Word { text, quoted: false })) = it.peek()
        && let Some(list) = text.strip_prefix("flags=(").and_then(|f| f.strip_suffix(')'))
    {
        profile.flags = list.split(',').map(str::to_owned).collect();
        it.next();
    }
    match it.next() {
        Some((_, Token::Open)) => {}
        Some((l, t)) => return Err(unexpected(l, "'{'", Some(&t))),
        None => return Err(unexpected(last_line, "'{'", None)),
    }

    // Body.
    loop {
        let Some((line, token)) = it.next() else {
            return Err(unexpected(last_line, "'}'", None));
        };
        let (deny, first) = match token {
            Token::Close => break,
            Token::Include(target) => {
                profile.rules.push((line, Rule::Include(target)));
                continue;
            }
            Token::Word { text, quoted: false } if text == "deny" => match it.next() {
                Some((_, Token::Word { text, quoted })) => (true, (text, quoted)),
                other => return Err(unexpected(line, "a rule after deny", other.as_ref().map(|(_, t)| t))),
            },
            Token::Word { text, quoted } => (false, (text, quoted)),
            t => return Err(unexpected(line, "a rule", Some(&t))),
        };
        let mut words = Vec::new();
        loop {
            match it.next() {
                Some((_, Token::Comma)) => break,
                Some((_, Token::Word { text, .. })) => words.push(text),
                other => return Err(unexpected(line, "',' ending the rule", other.as_ref().map(|(_, t)| t))),
            }
        }
        let (text, quoted) = first;
        let rule = match text.as_str() {
            "network" if !quoted => Rule::Network { deny, args: words },
            "capability" if !quoted => Rule::Capability { deny, names: words },
            _ if text.starts_with('/') || text.starts_with('@') => {
                let [perms] = <[String; 1]>::try_from(words).map_err(|w| ReadError {
                    line,
                    message: format!("file rule {text:?} has {} words after the path, expected 1", w.len()),
                })?;
                if perms.is_empty() || !perms.chars().all(|c| "rwamlkixPUCpuc".contains(c)) {
                    return Err(ReadError {
                        line,
                        message: format!("{perms:?} are not file permissions"),
                    });
                }
                Rule::File {
                    deny,
                    path: text,
                    perms,
                }
            }
            _ => {
                return Err(ReadError {
                    line,
                    message: format!("unknown rule starting with {text:?}"),
                });
            }
        };
        profile.rules.push((line, rule));
    }
    if let Some((l, t)) = it.next() {
        return Err(unexpected(l, "nothing after the profile", Some(&t)));
    }
    Ok(profile)
}

/// The rules a checked profile must read back as, derived from the spec alone (the
/// fuzzing oracle; the integration tests keep their own).
fn intended_rules(profile: &AppArmorProfile) -> Vec<Rule> {
    let enforce = profile.spec.effective_mode() == AppArmorMode::Enforce;
    let abs = profile.spec.abstract_.clone().unwrap_or_default();
    let mut out = vec![Rule::Include("<abstractions/base>".into())];
    for list in path_lists(&abs) {
        for v in list.values {
            out.push(Rule::File {
                deny: list.deny,
                path: v.clone(),
                perms: list.perms.into(),
            });
        }
        if let (true, Some(c)) = (enforce, list.enforce_companion) {
            for v in list.values {
                out.push(Rule::File {
                    deny: true,
                    path: v.clone(),
                    perms: c.into(),
                });
            }
        }
    }
    if let Some(net) = &abs.network {
        let p = net.allowed_protocols.clone().unwrap_or_default();
        let mut net_rule = |deny: bool, what: &str| {
            out.push(Rule::Network {
                deny,
                args: vec![what.into()],
            })
        };
        if p.allow_tcp == Some(true) {
            net_rule(false, "tcp");
        }
        if p.allow_udp == Some(true) {
            net_rule(false, "udp");
        }
        match net.allow_raw {
            Some(true) => net_rule(false, "raw"),
            Some(false) if enforce => net_rule(true, "raw"),
            _ => {}
        }
    }
    for cap in abs.capability.and_then(|c| c.allowed_capabilities).unwrap_or_default() {
        out.push(Rule::Capability {
            deny: false,
            names: vec![cap],
        });
    }
    out
}

/// Renders `profile` and checks the result: refused with at least one error, or text our
/// reader reads back as exactly the intended header and rules (plus the enforce deny block).
pub fn check_round_trip(profile: &AppArmorProfile) -> Result<(), String> {
    let rendered = match render_profile(profile) {
        Err(AppArmorError::Invalid { problems, .. }) if problems.has_errors() => return Ok(()),
        Err(e) => return Err(format!("render failed without field errors: {e}")),
        Ok(r) => r,
    };
    if rendered.source == ProfileSource::Raw {
        // A raw policy is passed through; apparmor_parser judges it.
        let policy = profile.spec.policy.as_deref().unwrap_or_default();
        return match rendered.text.strip_prefix(policy) {
            Some("" | "\n") => Ok(()),
            _ => Err("a raw policy was not passed through unchanged".into()),
        };
    }
    let read = read_profile(&rendered.text).map_err(|e| format!("{e}\n{}", rendered.text))?;
    let mode = match rendered.mode {
        AppArmorMode::Enforce => "enforce",
        AppArmorMode::Complain => "complain",
    };
    if read.name != rendered.name.as_str() || read.flags != [mode, "attach_disconnected", "mediate_deleted"] {
        return Err(format!("header reads as {:?} {:?}", read.name, read.flags));
    }
    let mut rules: Vec<Rule> = read.rules.into_iter().map(|(_, r)| r).collect();
    if rendered.mode == AppArmorMode::Enforce {
        let tail = rules.len().saturating_sub(ENFORCE_DENY_RULES.len());
        rules.truncate(tail);
    }
    let want = intended_rules(profile);
    if rules != want {
        return Err(format!("rules {rules:?}\nexpected {want:?}\n{}", rendered.text));
    }
    Ok(())
}

/// The fuzz target's body: every valid AppArmorProfile in `data` (YAML or JSON), and `data`
/// itself as a read-only path, through [`check_round_trip`].
pub fn fuzz_render(data: &[u8]) -> Result<(), String> {
    let Ok(text) = spo_model::document::decode_source("fuzz", data) else {
        return Ok(());
    };
    let path_profile = AppArmorProfile::new(
        "fuzz",
        spo_model::AppArmorProfileSpec {
            state: Default::default(),
            disabled: None,
            mode: AppArmorMode::Enforce,
            complain_mode: None,
            policy: None,
            abstract_: Some(spo_model::apparmor::AppArmorAbstract {
                filesystem: Some(spo_model::apparmor::AppArmorFilesystem {
                    read_only_paths: Some(vec![text.to_owned()]),
                    ..Default::default()
                }),
                ..Default::default()
            }),
        },
    );
    check_round_trip(&path_profile)?;
    for doc in spo_model::parse_source("fuzz", text).unwrap_or_default() {
        if let spo_model::Outcome::Valid(spo_model::AnyObject::AppArmorProfile(p)) = doc.outcome {
            check_round_trip(&p)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_renderer_subset() {
        let text = "# comment\n#include <tunables/global>\n\nprofile web flags=(enforce,attach_disconnected) {\n  #include <abstractions/base>\n  /usr/bin/{a,b} ixr,\n  \"/My Docs/x\" r,\n  deny /etc/shadow rwmlkx,\n  network tcp,\n  deny network raw,\n  capability chown,\n}\n";
        let p = read_profile(text).expect("read");
        assert_eq!(p.preamble, vec!["<tunables/global>"]);
        assert_eq!(p.name, "web");
        assert_eq!(p.flags, vec!["enforce", "attach_disconnected"]);
        let rules: Vec<Rule> = p.rules.into_iter().map(|(_, r)| r).collect();
        assert_eq!(
            rules,
            vec![
                Rule::Include("<abstractions/base>".into()),
                Rule::File {
                    deny: false,
                    path: "/usr/bin/{a,b}".into(),
                    perms: "ixr".into()
                },
                Rule::File {
                    deny: false,
                    path: "/My Docs/x".into(),
                    perms: "r".into()
                },
                Rule::File {
                    deny: true,
                    path: "/etc/shadow".into(),
                    perms: "rwmlkx".into()
                },
                Rule::Network {
                    deny: false,
                    args: vec!["tcp".into()]
                },
                Rule::Network {
                    deny: true,
                    args: vec!["raw".into()]
                },
                Rule::Capability {
                    deny: false,
                    names: vec!["chown".into()]
                },
            ]
        );
    }

    #[test]
    fn fuzz_body_on_seeds() {
        let yaml = b"apiVersion: security-profiles-operator.x-k8s.io/v1\nkind: AppArmorProfile\nmetadata:\n  name: x\nspec:\n  abstract:\n    filesystem:\n      readOnlyPaths: [\"/a b\", /c]\n    network: {allowRaw: false}\n    capability: {allowedCapabilities: [chown]}\n";
        assert_eq!(fuzz_render(yaml), Ok(()));
        for bytes in [&b"/etc/{a,b}"[..], b"/x\n/y r,", b"\xff", b"", b"@{PROC}/[0-9]*"] {
            assert_eq!(fuzz_render(bytes), Ok(()), "{bytes:?}");
        }
    }

    #[test]
    fn injected_text_shows_up_as_extra_rules_or_errors() {
        // What an unchecked path with a newline would have produced: two rules.
        let text = "profile x {\n  /tmp/a r,\n  /etc/shadow rw,\n}\n";
        assert_eq!(read_profile(text).expect("read").rules.len(), 2);
        // A comma inside an unquoted path splits the rule the way apparmor_parser does.
        assert!(read_profile("profile x {\n  /a, /b r,\n}\n").is_err());
        assert!(read_profile("profile x {\n  /a r,\n}\n}\n").is_err());
        assert!(read_profile("profile x {\n  \"/a r,\n}\n").is_err());
    }
}
