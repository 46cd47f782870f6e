//! The identifier grammar: which user strings may be written into CIL, and as what.
//!
//! Every identifier that comes from a profile is checked here before it reaches the CIL
//! writer; the writer then checks again that each symbol is one token (see [`crate::cil`]), so
//! a string that slipped past these rules still cannot change the structure of the output.

/// CIL's limit on a name's length (`CIL_MAX_NAME_LENGTH`); names must be shorter.
pub const CIL_MAX_NAME_LENGTH: usize = 2048;

/// The longest type, class or permission name a profile may use (the model's limit).
pub const MAX_IDENTIFIER_LENGTH: usize = 128;

/// Words CIL gives a meaning of their own where a type, class or permission is expected:
/// `all` stands for every permission (or type), and `and`, `or`, `not`, `xor` at the head of a
/// list turn it into an expression (`(file (not read))` means every permission but `read`).
/// Writing one of these where a name is meant would allow more than the profile says.
pub const RESERVED_WORDS: &[&str] = &["all", "and", "or", "not", "xor", "range"];

/// What a name stands for, for the messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NameRole {
    /// A type (or type attribute) label.
    Type,
    /// An object class.
    Class,
    /// A permission.
    Permission,
    /// A System template.
    Template,
}

impl NameRole {
    fn noun(self) -> &'static str {
        match self {
            NameRole::Type => "type",
            NameRole::Class => "object class",
            NameRole::Permission => "permission",
            NameRole::Template => "template name",
        }
    }
}

/// Checks a type, class, permission or template name from a profile: an ASCII letter, then
/// ASCII letters, digits and `_`, at most [`MAX_IDENTIFIER_LENGTH`] bytes, and not a
/// [`RESERVED_WORDS`] entry. The type `self` is allowed: in an allow rule it means the source
/// type, which is what the profile means by it.
pub fn check_identifier(value: &str, role: NameRole) -> Result<(), String> {
    let noun = role.noun();
    let b = value.as_bytes();
    let Some(first) = b.first() else {
        return Err(format!("empty {noun}"));
    };
    if b.len() > MAX_IDENTIFIER_LENGTH {
        return Err(format!(
            "{noun} is {} bytes long, at most {MAX_IDENTIFIER_LENGTH} are allowed",
            b.len()
        ));
    }
    if !first.is_ascii_alphabetic() {
        return Err(format!("{noun} {value:?} must start with an ASCII letter"));
    }
    if let Some(c) = value.chars().find(|c| !(c.is_ascii_alphanumeric() || *c == '_')) {
        return Err(format!(
            "{noun} {value:?} contains {c:?}; only ASCII letters, digits and '_' are allowed"
        ));
    }
    if RESERVED_WORDS.contains(&value) {
        return Err(format!(
            "{value:?} is a CIL keyword, not a {noun}; written here it would mean more than one name"
        ));
    }
    Ok(())
}

/// Checks a name that CIL and semodule declare: a block (the profile's) or a policy module.
/// Both require an ASCII letter first and then ASCII letters, digits, `_` and `-` (no `.`: CIL
/// reads it as a namespace separator).
pub fn check_declared_name(value: &str) -> Result<(), String> {
    let b = value.as_bytes();
    let Some(first) = b.first() else {
        return Err("the name is empty".to_owned());
    };
    if b.len() >= CIL_MAX_NAME_LENGTH {
        return Err(format!("{} bytes is longer than CIL allows", b.len()));
    }
    if !first.is_ascii_alphabetic() {
        return Err(format!(
            "{value:?} must start with a letter to name a CIL block and a policy module"
        ));
    }
    if let Some(c) = value
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
    {
        return Err(format!(
            "{value:?} contains {c:?}, which a CIL block or policy module name cannot hold"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifiers() {
        for ok in ["container_file_t", "self", "tcp_socket", "name_bind", "a1"] {
            assert_eq!(check_identifier(ok, NameRole::Type), Ok(()), "{ok}");
        }
        for (bad, needle) in [
            ("", "empty"),
            ("1abc", "start with"),
            ("a.b", "'.'"),
            ("a)b", "')'"),
            ("a b", "' '"),
            ("a\"", "'\"'"),
            ("a;", "';'"),
            ("all", "keyword"),
            ("not", "keyword"),
            ("é", "start with"),
        ] {
            let err = check_identifier(bad, NameRole::Permission).expect_err(bad);
            assert!(err.contains(needle), "{bad:?}: {err}");
        }
        let long = "a".repeat(MAX_IDENTIFIER_LENGTH + 1);
        assert!(check_identifier(&long, NameRole::Class).is_err());
    }

    #[test]
    fn declared_names() {
        assert_eq!(check_declared_name("nginx-secure"), Ok(()));
        assert!(check_declared_name("9nginx").is_err());
        assert!(check_declared_name("a.b").is_err());
        assert!(check_declared_name("").is_err());
    }
}
