//! Names of keys a model can ask to press, and the bytes a terminal sends for
//! them.
//!
//! Names are case-insensitive. `ctrl-x`, `ctrl+x`, `c-x` and `^x` are the same
//! key; `esc` is `escape`, `return` is `enter`, `page-up`/`pgup` are `pageup`.
//! Cursor keys are sent in normal mode (`ESC [ A`); programs that switch to
//! application mode accept these too, and [`encode_application`] gives the
//! `ESC O A` forms for those that insist.

/// Canonical key names, for help and schema text.
#[rustfmt::skip]
pub const NAMES: &[&str] = &[
    "enter", "tab", "backtab", "escape", "backspace", "space",
    "up", "down", "right", "left", "home", "end", "pageup", "pagedown", "insert", "delete",
    "f1", "f2", "f3", "f4", "f5", "f6", "f7", "f8", "f9", "f10", "f11", "f12",
    "ctrl-a", "ctrl-b", "ctrl-c", "ctrl-d", "ctrl-e", "ctrl-f", "ctrl-g", "ctrl-h", "ctrl-i",
    "ctrl-j", "ctrl-k", "ctrl-l", "ctrl-m", "ctrl-n", "ctrl-o", "ctrl-p", "ctrl-q", "ctrl-r",
    "ctrl-s", "ctrl-t", "ctrl-u", "ctrl-v", "ctrl-w", "ctrl-x", "ctrl-y", "ctrl-z",
    "ctrl-@", "ctrl-[", "ctrl-\\", "ctrl-]", "ctrl-^", "ctrl-_",
];

/// Control characters 0x00 ..= 0x1f; byte `i` is `i`.
static CONTROL: [u8; 32] = {
    let mut bytes = [0; 32];
    let mut i = 0;
    while i < bytes.len() {
        bytes[i] = i as u8;
        i += 1;
    }
    bytes
};

/// The bytes a terminal sends for the key `name`, or `None` for a name not
/// in [`NAMES`] (or one of its aliases).
pub fn encode(name: &str) -> Option<&'static [u8]> {
    let name = name.trim().to_ascii_lowercase();
    if let Some(key) = ctrl_key(&name) {
        return ctrl(key);
    }
    let bytes: &[u8] = match name.as_str() {
        "enter" | "return" | "cr" => b"\r",
        "tab" => b"\t",
        "backtab" | "shift-tab" | "shift+tab" => b"\x1b[Z",
        "escape" | "esc" => b"\x1b",
        "backspace" | "bs" => b"\x7f",
        "space" => b" ",
        "up" => b"\x1b[A",
        "down" => b"\x1b[B",
        "right" => b"\x1b[C",
        "left" => b"\x1b[D",
        "home" => b"\x1b[H",
        "end" => b"\x1b[F",
        "pageup" | "page-up" | "page_up" | "pgup" => b"\x1b[5~",
        "pagedown" | "page-down" | "page_down" | "pgdn" => b"\x1b[6~",
        "insert" | "ins" => b"\x1b[2~",
        "delete" | "del" => b"\x1b[3~",
        "f1" => b"\x1bOP",
        "f2" => b"\x1bOQ",
        "f3" => b"\x1bOR",
        "f4" => b"\x1bOS",
        "f5" => b"\x1b[15~",
        "f6" => b"\x1b[17~",
        "f7" => b"\x1b[18~",
        "f8" => b"\x1b[19~",
        "f9" => b"\x1b[20~",
        "f10" => b"\x1b[21~",
        "f11" => b"\x1b[23~",
        "f12" => b"\x1b[24~",
        _ => return None,
    };
    Some(bytes)
}

/// Like [`encode`], but cursor keys, home and end in the application-cursor
/// form (`ESC O A`) that programs such as vi or less switch the terminal to
/// (see [`crate::Terminal::application_cursor`]).
pub fn encode_application(name: &str) -> Option<&'static [u8]> {
    let bytes = encode(name)?;
    Some(match bytes {
        b"\x1b[A" => b"\x1bOA",
        b"\x1b[B" => b"\x1bOB",
        b"\x1b[C" => b"\x1bOC",
        b"\x1b[D" => b"\x1bOD",
        b"\x1b[H" => b"\x1bOH",
        b"\x1b[F" => b"\x1bOF",
        other => other,
    })
}

/// The key after a `ctrl-` prefix (in any of its spellings), if any.
fn ctrl_key(name: &str) -> Option<&str> {
    ["ctrl-", "ctrl+", "control-", "control+", "c-", "^"]
        .iter()
        .find_map(|prefix| name.strip_prefix(prefix))
        .filter(|key| !key.is_empty())
}

fn ctrl(key: &str) -> Option<&'static [u8]> {
    let code = match key {
        "space" => 0,
        "?" => return Some(b"\x7f"),
        _ => {
            let mut chars = key.chars();
            let (Some(c), None) = (chars.next(), chars.next()) else {
                return None;
            };
            match c {
                'a'..='z' => c as u8 - b'a' + 1,
                '@' | '2' => 0,
                '[' | '3' => 0x1b,
                '\\' | '4' => 0x1c,
                ']' | '5' => 0x1d,
                '^' | '6' => 0x1e,
                '_' | '7' | '/' => 0x1f,
                _ => return None,
            }
        }
    };
    Some(std::slice::from_ref(&CONTROL[usize::from(code)]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_name_encodes() {
        for name in NAMES {
            assert!(encode(name).is_some(), "{name}");
            assert!(encode(&name.to_uppercase()).is_some(), "{name}");
        }
    }

    #[test]
    fn common_keys() {
        assert_eq!(encode("Enter"), Some(&b"\r"[..]));
        assert_eq!(encode("TAB"), Some(&b"\t"[..]));
        assert_eq!(encode("esc"), Some(&b"\x1b"[..]));
        assert_eq!(encode("escape"), Some(&b"\x1b"[..]));
        assert_eq!(encode("backspace"), Some(&b"\x7f"[..]));
        assert_eq!(encode("up"), Some(&b"\x1b[A"[..]));
        assert_eq!(encode("down"), Some(&b"\x1b[B"[..]));
        assert_eq!(encode("right"), Some(&b"\x1b[C"[..]));
        assert_eq!(encode("left"), Some(&b"\x1b[D"[..]));
        assert_eq!(encode("home"), Some(&b"\x1b[H"[..]));
        assert_eq!(encode("end"), Some(&b"\x1b[F"[..]));
        assert_eq!(encode("PageUp"), Some(&b"\x1b[5~"[..]));
        assert_eq!(encode("page-down"), Some(&b"\x1b[6~"[..]));
        assert_eq!(encode("delete"), Some(&b"\x1b[3~"[..]));
        assert_eq!(encode("f1"), Some(&b"\x1bOP"[..]));
        assert_eq!(encode("f12"), Some(&b"\x1b[24~"[..]));
    }

    #[test]
    fn control_keys() {
        assert_eq!(encode("ctrl-a"), Some(&b"\x01"[..]));
        assert_eq!(encode("CTRL-C"), Some(&b"\x03"[..]));
        assert_eq!(encode("ctrl+d"), Some(&b"\x04"[..]));
        assert_eq!(encode("c-z"), Some(&b"\x1a"[..]));
        assert_eq!(encode("^L"), Some(&b"\x0c"[..]));
        assert_eq!(encode("ctrl-\\"), Some(&b"\x1c"[..]));
        assert_eq!(encode("ctrl-]"), Some(&b"\x1d"[..]));
        assert_eq!(encode("ctrl-["), Some(&b"\x1b"[..]));
        assert_eq!(encode("ctrl-@"), Some(&b"\x00"[..]));
        assert_eq!(encode("ctrl-space"), Some(&b"\x00"[..]));
        assert_eq!(encode("ctrl-_"), Some(&b"\x1f"[..]));
        for (i, c) in ('a'..='z').enumerate() {
            let bytes = encode(&format!("ctrl-{c}")).unwrap();
            assert_eq!(bytes, [i as u8 + 1]);
        }
    }

    #[test]
    fn unknown_names() {
        assert_eq!(encode("ctrl-"), None);
        assert_eq!(encode("ctrl-ab"), None);
        assert_eq!(encode("ctrl-é"), None);
        assert_eq!(encode("hyper"), None);
        assert_eq!(encode(""), None);
    }

    #[test]
    fn application_mode_changes_only_cursor_keys() {
        assert_eq!(encode_application("up"), Some(&b"\x1bOA"[..]));
        assert_eq!(encode_application("end"), Some(&b"\x1bOF"[..]));
        assert_eq!(encode_application("enter"), Some(&b"\r"[..]));
        assert_eq!(encode_application("nope"), None);
    }
}
