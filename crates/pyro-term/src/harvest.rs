//! Taking rows off vt100 as they scroll away.
//!
//! The parser is built with a scrollback capacity of 0, so vt100 keeps no
//! scrollback and calls `on_scroll` for each row as it leaves the top of the
//! screen. The row is only offered in vt100's "basic formatted" form (text
//! with SGR sequences), so it is written through a writer that drops those.

use std::fmt;

use vt100::capture::{BasicFormattedCaptureState, RowContents};

use crate::transcript::History;

/// What vt100 calls back into: harvests scrolled-off rows and the title.
#[derive(Debug)]
pub(crate) struct Harvest {
    pub(crate) history: History,
    pub(crate) title: Option<String>,
}

impl Harvest {
    pub(crate) fn new(history: History) -> Self {
        Self {
            history,
            title: None,
        }
    }
}

impl vt100::Callbacks for Harvest {
    fn on_scroll(&mut self, contents: RowContents<'_>, alternate_screen: bool) {
        // Rows scrolled by full-screen programs are not part of the
        // transcript; those programs are read as whole screens.
        if alternate_screen {
            return;
        }
        let mut state = BasicFormattedCaptureState::new();
        let mut plain = PlainWriter {
            out: self.history.pending_mut(),
            in_escape: false,
        };
        // PlainWriter never fails.
        let _ = contents.write_formatted_basic(&mut plain, &mut state);
        // vt100 does not expose a row's wrap flag here, only through the
        // capture state: it starts the next row with '\n' unless the row
        // wrapped. Writing the same row again shows which.
        let mut probe = FirstChar::default();
        let _ = contents.write_formatted_basic(&mut probe, &mut state);
        self.history.end_row(probe.0 != Some('\n'));
    }

    fn set_window_title(&mut self, _: &mut vt100::Screen, title: &[u8]) {
        self.title = Some(String::from_utf8_lossy(title).into_owned());
    }
}

/// Appends vt100's "basic formatted" row text without its SGR sequences
/// (`ESC ... m`, the only escapes that form holds), which may arrive split
/// over several writes.
struct PlainWriter<'a> {
    out: &'a mut String,
    in_escape: bool,
}

impl fmt::Write for PlainWriter<'_> {
    fn write_str(&mut self, mut s: &str) -> fmt::Result {
        // vt100 writes most cells one character at a time.
        if let [byte] = s.as_bytes() {
            match (self.in_escape, byte) {
                (false, 0x1b) => self.in_escape = true,
                (false, _) => self.out.push(char::from(*byte)),
                (true, b'm') => self.in_escape = false,
                (true, _) => {}
            }
            return Ok(());
        }
        loop {
            if self.in_escape {
                let Some(end) = s.find('m') else {
                    return Ok(());
                };
                s = &s[end + 1..];
                self.in_escape = false;
            }
            let Some(start) = s.find('\x1b') else {
                self.out.push_str(s);
                return Ok(());
            };
            self.out.push_str(&s[..start]);
            s = &s[start + 1..];
            self.in_escape = true;
        }
    }
}

/// A writer that records the first character written and then stops the
/// write, so probing a row costs almost nothing.
#[derive(Default)]
struct FirstChar(Option<char>);

impl fmt::Write for FirstChar {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        match s.chars().next() {
            None => Ok(()),
            Some(c) => {
                self.0 = Some(c);
                Err(fmt::Error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_writer_strips_split_escapes() {
        use std::fmt::Write as _;
        let mut out = String::new();
        let mut plain = PlainWriter {
            out: &mut out,
            in_escape: false,
        };
        for piece in ["a\x1b[", "31", ";1mb", "c\x1b", "[0m", "\x1b[mé"] {
            plain.write_str(piece).unwrap();
        }
        assert_eq!(out, "abcé");
    }
}
