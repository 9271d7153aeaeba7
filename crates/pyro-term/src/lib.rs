//! Terminal emulation that turns a PTY's output into plain text as a person
//! would see it on the screen, for a chat model to read.
//!
//! Output is interpreted by a terminal emulator (the `vt100` crate), not
//! stripped of escapes: a progress bar rewritten with `\r` reads as its last
//! state, colours vanish, cursor movements edit the line they move in, and a
//! full-screen program (top, vi, less) reads as the screen it draws.
//!
//! # The model
//!
//! In *line mode* (the primary screen) the terminal keeps a **transcript** of
//! logical lines: the lines that scrolled off the top of the screen (a bounded
//! ring of [`HISTORY_MAX_LINES`] lines or [`HISTORY_MAX_BYTES`] bytes, oldest
//! dropped first) followed by the lines on the screen now. A logical line is a
//! run of screen rows joined where the terminal wrapped them; trailing spaces
//! are trimmed (except, on the cursor's row, up to the cursor, so a prompt
//! `"$ "` keeps its space) and trailing blank lines are left out.
//!
//! [`Terminal::read_text`] returns the transcript from the first line that is
//! new or differs from what the previous read returned, to the end. Lines
//! still on the screen can change after they were read (a prompt the user
//! types into, a progress bar), so a read can repeat a line in its new form;
//! lines that scrolled off never change.
//!
//! While a program uses the *alternate screen* (`ESC [ ? 1049 h`, as every
//! full-screen program does) reads return the whole screen, row by row,
//! whenever it changed, with [`TextRead::full_screen`] set. When the program
//! leaves it, reads go back to line mode where they left off.
//!
//! Rows reach the transcript through vt100's `on_scroll` callback as they
//! leave the screen; vt100 itself keeps no scrollback, so memory stays bounded
//! and no row is lost however fast output arrives.
//!
//! [`Terminal::read_raw`] gives the bytes as fed, from a ring of
//! [`RAW_MAX_BYTES`]; [`keys`] maps key names to the bytes to send.
//!
//! This crate does no I/O: the caller feeds it bytes and reads text back.
//!
//! # Limits
//!
//! - `ESC [ 2 J` clears the screen without moving it into the history (as
//!   xterm does), so text that was fed and cleared between two reads is
//!   never read; a shrunk screen (fewer lines than last read) reports
//!   nothing.
//! - Rows scrolled out of a scroll region that does not start at the top row
//!   are lost, as on a real terminal; regions starting at the top (a status
//!   line at the bottom, as apt draws) keep everything.
//! - A width change cuts or pads rows; it does not re-wrap them.
//! - A wide character that does not fit in the last column moves to the next
//!   row without marking the row as wrapped (vt100 follows tmux here), so that
//!   logical line reads as two.
//! - The alternate screen is recognised for modes 47 and 1049, not 1047.
//! - A logical line longer than [`LINE_MAX_BYTES`] is cut into pieces when
//!   it scrolls off.
//! - A read while a full-screen program is mid-redraw shows the half-drawn
//!   screen; callers read after output settles.

mod harvest;
pub mod keys;
mod raw;
mod transcript;

use std::num::NonZeroU16;

use harvest::Harvest;
use raw::RawRing;
pub use raw::RAW_MAX_BYTES;
use transcript::{History, ReadMark};
pub use transcript::{HISTORY_MAX_BYTES, HISTORY_MAX_LINES, LINE_MAX_BYTES};

/// A terminal screen with a transcript of what scrolled off it.
pub struct Terminal {
    parser: vt100::Parser<Harvest>,
    mark: ReadMark,
    /// The screen text returned by the previous read in the alternate
    /// screen; `None` after a line-mode read.
    last_full_screen: Option<String>,
    raw: RawRing,
}

/// New text from [`Terminal::read_text`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextRead {
    /// Lines joined with `\n`, no trailing newline; empty when nothing is new.
    pub text: String,
    /// The text is the whole screen of a full-screen program (the alternate
    /// screen), not lines of a transcript.
    pub full_screen: bool,
    /// Lines that scrolled off and fell out of the bounded history before
    /// they could be read, since the previous read.
    pub dropped_lines: u64,
}

/// Raw output from [`Terminal::read_raw`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawRead {
    /// Bytes as fed, oldest first.
    pub bytes: Vec<u8>,
    /// Bytes that fell out of the bounded ring before they could be read,
    /// since the previous raw read; they came before `bytes`.
    pub dropped_bytes: u64,
}

impl Terminal {
    /// A blank terminal of `rows` × `cols` cells (each at least 1).
    pub fn new(rows: u16, cols: u16) -> Self {
        let history = History::new(HISTORY_MAX_LINES, HISTORY_MAX_BYTES);
        Self {
            parser: vt100::Parser::new_with_callbacks(
                at_least_one(rows),
                at_least_one(cols),
                0,
                Harvest::new(history),
            ),
            mark: ReadMark::default(),
            last_full_screen: None,
            raw: RawRing::new(RAW_MAX_BYTES),
        }
    }

    /// Feeds program output. Chunks may be cut anywhere, in the middle of an
    /// escape sequence or a UTF-8 character included.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.raw.push(bytes);
        // vt100 counts the rows it would have kept in scrollback, and when
        // the screen grows it fills the top with blank rows in their place.
        // Forgetting that count while the primary screen is active keeps a
        // later resize honest. A program may scroll and switch to the
        // alternate screen in one chunk, so cut the chunk before each DEC
        // private mode sequence (cutting never changes how vt100 parses).
        let mut start = 0;
        for at in mode_sequence_starts(bytes) {
            self.parser.process(&bytes[start..at]);
            self.forget_scrolled_rows();
            start = at;
        }
        self.parser.process(&bytes[start..]);
        self.forget_scrolled_rows();
    }

    fn forget_scrolled_rows(&mut self) {
        if !self.parser.screen().alternate_screen() {
            self.parser.screen_mut().clear_scrollback();
        }
    }

    /// Plain text that is new or changed since the previous `read_text`.
    ///
    /// In line mode: the transcript's lines from the first new or changed
    /// one to the end. In the alternate screen: the whole screen if it
    /// changed since the previous read, else nothing.
    pub fn read_text(&mut self) -> TextRead {
        let screen = self.parser.screen();
        if screen.alternate_screen() {
            let text = transcript::screen_text(screen);
            if self.last_full_screen.as_deref() == Some(text.as_str()) {
                return TextRead {
                    text: String::new(),
                    full_screen: true,
                    dropped_lines: 0,
                };
            }
            self.last_full_screen = Some(text.clone());
            return TextRead {
                text,
                full_screen: true,
                dropped_lines: 0,
            };
        }
        self.last_full_screen = None;
        let history = &self.parser.callbacks().history;
        let lines = transcript::screen_lines(screen, history.partial());
        let new = self.mark.advance(history, lines);
        TextRead {
            text: new.lines.join("\n"),
            full_screen: false,
            dropped_lines: new.dropped,
        }
    }

    /// The whole visible screen as plain text, one row per line, trailing
    /// spaces and trailing blank lines trimmed.
    pub fn screen_text(&self) -> String {
        transcript::screen_text(self.parser.screen())
    }

    /// Raw bytes fed since the previous `read_raw`, from a ring of
    /// [`RAW_MAX_BYTES`].
    pub fn read_raw(&mut self) -> RawRead {
        let (bytes, dropped_bytes) = self.raw.take();
        RawRead {
            bytes,
            dropped_bytes,
        }
    }

    /// Changes the screen size (each at least 1), as when the PTY's window
    /// size changes. Shrinking the height pushes rows above the cursor into
    /// the transcript and drops rows below it; changing the width cuts or
    /// pads rows without re-wrapping them.
    pub fn resize(&mut self, rows: u16, cols: u16) {
        self.forget_scrolled_rows();
        self.parser.set_size(at_least_one(rows), at_least_one(cols));
    }

    /// The screen size as (rows, cols).
    pub fn size(&self) -> (u16, u16) {
        let (rows, cols) = self.parser.screen().size();
        (rows.get(), cols.get())
    }

    /// Whether a full-screen program has the alternate screen active.
    pub fn full_screen(&self) -> bool {
        self.parser.screen().alternate_screen()
    }

    /// The window title last set by the program (`OSC 0` or `OSC 2`).
    pub fn title(&self) -> Option<String> {
        self.parser.callbacks().title.clone()
    }

    /// Whether the program asked for application cursor keys (`ESC [ ? 1 h`);
    /// if so, [`keys::encode_application`] gives the bytes it expects.
    pub fn application_cursor(&self) -> bool {
        self.parser.screen().application_cursor()
    }

    /// The bytes for the key `name` in the terminal's current cursor-key
    /// mode; see [`keys::encode`].
    pub fn encode_key(&self, name: &str) -> Option<&'static [u8]> {
        if self.application_cursor() {
            keys::encode_application(name)
        } else {
            keys::encode(name)
        }
    }
}

impl std::fmt::Debug for Terminal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Terminal")
            .field("size", &self.size())
            .field("full_screen", &self.full_screen())
            .finish_non_exhaustive()
    }
}

fn at_least_one(n: u16) -> NonZeroU16 {
    NonZeroU16::new(n).unwrap_or(NonZeroU16::MIN)
}

/// Offsets of each `ESC [ ?` in `bytes`.
fn mode_sequence_starts(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
    bytes
        .iter()
        .enumerate()
        .filter(|&(at, &b)| b == 0x1b && bytes[at + 1..].starts_with(b"[?"))
        .map(|(at, _)| at)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drawing_state_survives_harvesting() {
        let mut term = Terminal::new(4, 20);
        term.feed(b"\x1b[31m");
        for i in 0..1000 {
            term.feed(format!("{i}\r\n").as_bytes());
        }
        term.feed(b"$ ab");
        let screen = term.parser.screen();
        assert_eq!(screen.cursor_position(), (3, 4));
        assert_eq!(screen.scrollback_len(), 0);
        term.feed(b"c");
        let cell = term.parser.screen().cell(3, 4).unwrap();
        assert_eq!(cell.contents(), "c");
        assert_eq!(cell.fgcolor(), vt100::Color::Idx(1));
        assert_eq!(term.read_text().text.lines().last(), Some("$ abc"));
    }

    #[test]
    fn terminal_can_move_between_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Terminal>();
    }

    #[test]
    fn mode_sequences_are_found() {
        let starts: Vec<_> = mode_sequence_starts(b"a\x1b[?1049hb\x1b[31m\x1b[?25l\x1b").collect();
        assert_eq!(starts, [1, 15]);
    }
}
