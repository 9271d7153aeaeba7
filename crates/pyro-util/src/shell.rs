//! Quoting words for a POSIX shell, for command lines people read or paste.

/// `word` as one POSIX shell word: unchanged when it is made only of
/// characters no shell treats specially (the set Python's `shlex.quote`
/// uses), otherwise in single quotes.
pub fn shell_quote(word: &str) -> String {
    let plain = !word.is_empty()
        && word
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c));
    if plain {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotes_only_what_needs_it() {
        assert_eq!(shell_quote("make"), "make");
        assert_eq!(shell_quote("/usr/bin/pyro"), "/usr/bin/pyro");
        assert_eq!(shell_quote("--flag=a,b:c@d%e+f"), "--flag=a,b:c@d%e+f");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("fix author list"), "'fix author list'");
        assert_eq!(shell_quote("echo 'hi'"), r#"'echo '\''hi'\'''"#);
        assert_eq!(shell_quote("$HOME"), "'$HOME'");
    }
}
