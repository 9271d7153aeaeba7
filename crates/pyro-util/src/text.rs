//! Text that someone else chose, made safe to print on a terminal.
//!
//! A guest names its files, writes its console and words its errors; a model
//! words its commands. Printed raw, such text can carry escape sequences
//! (OSC, CSI) that retitle the window, rewrite what is on the screen or
//! smuggle a hyperlink, a carriage return that hides a line's start, and
//! bidirectional overrides that show a name reversed. These functions escape
//! every such character the way Rust's `escape_debug` writes it (`\u{1b}`,
//! `\r`), so what a person reads is what the bytes say.
//!
//! Command output the user asked for (`exec`, `shell read`, `service logs`,
//! `file read`) is printed byte-exact and never passes through here, nor
//! does JSON output, which escapes on its own.

use std::borrow::Cow;

/// `text` on one line: every control character is escaped, newlines and
/// tabs included. For names, paths, commands and one-line messages.
pub fn visible(text: &str) -> Cow<'_, str> {
    escaped(text, |_, _| false)
}

/// `text` as lines: newlines and tabs stay, and a carriage return stays only
/// before a newline (`\r\n`); every other control character is escaped. For
/// multi-line text: a console, a log, an error with its causes.
pub fn visible_lines(text: &str) -> Cow<'_, str> {
    escaped(text, |c, next| match c {
        '\n' | '\t' => true,
        '\r' => next == Some('\n'),
        _ => false,
    })
}

/// Whether `c` must not reach a terminal as it is: C0 and C1 controls, DEL,
/// and the bidirectional formatting characters that reorder what follows.
fn unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

fn escaped(text: &str, kept: impl Fn(char, Option<char>) -> bool) -> Cow<'_, str> {
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 16);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if !unsafe_char(c) || kept(c, chars.peek().copied()) {
            out.push(c);
        } else if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.extend(c.escape_unicode());
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_text_is_borrowed_unchanged() {
        assert!(matches!(visible("src/main.rs"), Cow::Borrowed(_)));
        assert_eq!(visible("café ünïcode 日本"), "café ünïcode 日本");
    }

    #[test]
    fn escapes_terminal_sequences_in_one_line() {
        assert_eq!(
            visible("a\u{1b}]0;owned\u{7}b\nc\td\re"),
            "a\\u{1b}]0;owned\\u{7}b\\nc\\td\\re"
        );
        assert_eq!(visible("\u{9b}31m\u{7f}"), "\\u{9b}31m\\u{7f}");
        assert_eq!(visible("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(visible("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
    }

    #[test]
    fn lines_keep_newlines_and_tabs_only() {
        assert_eq!(
            visible_lines("ok\r\nline\t2\n\u{1b}[2J\rhidden"),
            "ok\r\nline\t2\n\\u{1b}[2J\\rhidden"
        );
        assert_eq!(visible_lines("end\r"), "end\\r");
    }

    #[test]
    fn escaping_twice_changes_nothing() {
        let once = visible("x\u{1b}[31m").into_owned();
        assert_eq!(visible(&once), once);
    }
}
