//! Paths in patches: git's C-style quoting, splitting `diff --git` names,
//! `-p1` prefix stripping, and the minimal safety check [`crate::apply`]
//! performs.

/// Why a patch path is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("path is empty; name a file relative to the workspace")]
    Empty,
    #[error("path '{0}' is absolute; use a path relative to the workspace")]
    Absolute(String),
    #[error("path '{0}' contains '..'; use a path inside the workspace")]
    ParentDir(String),
    #[error("path '{0}' contains a NUL byte; remove it")]
    Nul(String),
}

/// Refuses paths a patch must never name: empty, absolute, or with a `..`
/// component. Everything else is left to the caller, which confines paths to
/// its root.
pub fn check_path(path: &str) -> Result<(), PathError> {
    if path.is_empty() {
        return Err(PathError::Empty);
    }
    if path.starts_with('/') {
        return Err(PathError::Absolute(path.to_owned()));
    }
    if path.contains('\0') {
        return Err(PathError::Nul(path.to_owned()));
    }
    if path.split('/').any(|component| component == "..") {
        return Err(PathError::ParentDir(path.to_owned()));
    }
    Ok(())
}

/// Decodes a git C-style quoted name starting at `s[0] == '"'`. Returns the
/// raw bytes and the remainder after the closing quote, or `None` when the
/// quoting is malformed.
pub(crate) fn unquote(s: &[u8]) -> Option<(Vec<u8>, &[u8])> {
    let mut out = Vec::new();
    let mut i = 1;
    while i < s.len() {
        match s[i] {
            b'"' => return Some((out, &s[i + 1..])),
            b'\\' => {
                let esc = *s.get(i + 1)?;
                i += 2;
                out.push(match esc {
                    b'a' => 0x07,
                    b'b' => 0x08,
                    b't' => b'\t',
                    b'n' => b'\n',
                    b'v' => 0x0b,
                    b'f' => 0x0c,
                    b'r' => b'\r',
                    b'"' => b'"',
                    b'\\' => b'\\',
                    b'0'..=b'3' => {
                        let digits = s.get(i - 1..i + 2)?;
                        if !digits.iter().all(|d| (b'0'..=b'7').contains(d)) {
                            return None;
                        }
                        i += 2;
                        digits.iter().fold(0u8, |acc, d| acc * 8 + (d - b'0'))
                    }
                    _ => return None,
                });
            }
            byte => {
                out.push(byte);
                i += 1;
            }
        }
    }
    None
}

/// Quotes a name the way git does when it needs to (quote, backslash,
/// control or non-ASCII bytes); other names are returned unchanged.
pub(crate) fn quote(name: &str) -> String {
    let needs = name
        .bytes()
        .any(|b| b == b'"' || b == b'\\' || !(0x20..0x7f).contains(&b));
    if !needs {
        return name.to_owned();
    }
    let mut out = String::from("\"");
    for b in name.bytes() {
        match b {
            0x07 => out.push_str("\\a"),
            0x08 => out.push_str("\\b"),
            b'\t' => out.push_str("\\t"),
            b'\n' => out.push_str("\\n"),
            0x0b => out.push_str("\\v"),
            0x0c => out.push_str("\\f"),
            b'\r' => out.push_str("\\r"),
            b'"' => out.push_str("\\\""),
            b'\\' => out.push_str("\\\\"),
            b if !(0x20..0x7f).contains(&b) => out.push_str(&format!("\\{b:03o}")),
            b => out.push(char::from(b)),
        }
    }
    out.push('"');
    out
}

/// Strips the first path component (`patch -p1`), or returns the path
/// unchanged when it has only one. An absolute path is kept as it is, so
/// that [`check_path`] refuses it instead of it quietly becoming relative.
pub(crate) fn strip_component(path: &str) -> &str {
    if path.starts_with('/') {
        return path;
    }
    match path.split_once('/') {
        Some((_, rest)) if !rest.is_empty() => rest,
        _ => path,
    }
}

/// True for `a/...`, `b/...` and git's other one-letter prefixes.
pub(crate) fn has_prefix(name: &str) -> bool {
    let bytes = name.as_bytes();
    bytes.len() > 2 && bytes[1] == b'/' && b"abciwo".contains(&bytes[0])
}

/// Splits the names of a `diff --git` line. Unquoted names with spaces are
/// only unambiguous when both sides name the same file, as git requires.
pub(crate) fn split_git_header(rest: &[u8]) -> Option<(String, String)> {
    if rest.first() == Some(&b'"') {
        let (a, tail) = unquote(rest)?;
        let tail = tail.strip_prefix(b" ")?;
        let b = if tail.first() == Some(&b'"') {
            let (b, end) = unquote(tail)?;
            end.is_empty().then_some(b)?
        } else {
            tail.to_vec()
        };
        return Some((String::from_utf8(a).ok()?, String::from_utf8(b).ok()?));
    }
    let text = std::str::from_utf8(rest).ok()?;
    if text.ends_with('"') {
        for (i, _) in text.match_indices(" \"") {
            if let Some((b, end)) = unquote(&rest[i + 1..]) {
                if end.is_empty() {
                    return Some((text[..i].to_owned(), String::from_utf8(b).ok()?));
                }
            }
        }
    }
    let unprefixed = |n: &'_ str| {
        if has_prefix(n) {
            n[2..].to_owned()
        } else {
            n.to_owned()
        }
    };
    text.match_indices(' ')
        .map(|(i, _)| (&text[..i], &text[i + 1..]))
        .find(|(a, b)| unprefixed(a) == unprefixed(b))
        .map(|(a, b)| (a.to_owned(), b.to_owned()))
}

/// GNU patch's choice between two names for one file: fewest components,
/// then shortest base name, then shortest name.
pub(crate) fn best_name(a: String, b: String) -> String {
    let key = |n: &str| {
        let base = n.rsplit('/').next().unwrap_or(n).len();
        (n.split('/').count(), base, n.len())
    };
    if key(&b) < key(&a) {
        b
    } else {
        a
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quote_round_trips_through_unquote() {
        for name in ["plain", "sp ace\t", "quo\"te\\", "caf\u{e9}", "nl\n\x01"] {
            let quoted = quote(name);
            if quoted == name {
                continue;
            }
            let (bytes, rest) = unquote(quoted.as_bytes()).expect("valid quoting");
            assert_eq!(bytes, name.as_bytes());
            assert!(rest.is_empty());
        }
        assert_eq!(quote("sp ace"), "sp ace");
        assert_eq!(quote("t\tab"), "\"t\\tab\"");
        assert_eq!(quote("\u{e9}"), "\"\\303\\251\"");
    }

    #[test]
    fn unquote_rejects_bad_escapes() {
        assert_eq!(unquote(b"\"abc"), None);
        assert_eq!(unquote(b"\"a\\qb\""), None);
        assert_eq!(unquote(b"\"a\\39\""), None);
    }

    #[test]
    fn check_path_messages() {
        assert_eq!(
            check_path("").unwrap_err().to_string(),
            "path is empty; name a file relative to the workspace"
        );
        assert_eq!(
            check_path("/etc/passwd").unwrap_err().to_string(),
            "path '/etc/passwd' is absolute; use a path relative to the workspace"
        );
        assert_eq!(
            check_path("src/../../x").unwrap_err().to_string(),
            "path 'src/../../x' contains '..'; use a path inside the workspace"
        );
        assert!(check_path("src/..x/y").is_ok());
    }

    #[test]
    fn strip_component_keeps_single_names() {
        assert_eq!(strip_component("a/src/x.rs"), "src/x.rs");
        assert_eq!(strip_component("x.rs"), "x.rs");
        assert_eq!(strip_component("/etc/passwd"), "/etc/passwd");
    }
}
