//! The transcript: logical lines that scrolled off the screen, followed by the
//! logical lines on the screen now, and the bookkeeping that turns it into
//! "what is new or changed since the last read".
//!
//! Every logical line has an absolute index that never changes while the line
//! exists: scrolled-off lines keep the index they had on the screen, so a line
//! reported while on the screen can be compared with itself after it scrolled
//! off. Lines on the screen may still change (a prompt that the user types
//! into, a progress bar rewritten with `\r`); scrolled-off lines cannot.
//!
//! Rows reach [`History`] from [`crate::harvest`] as they leave the screen.

use std::collections::VecDeque;

/// Most scrolled-off lines kept.
pub const HISTORY_MAX_LINES: usize = 10_000;
/// Most bytes of scrolled-off text kept.
pub const HISTORY_MAX_BYTES: usize = 2 * 1024 * 1024;
/// A logical line longer than this is cut into pieces of at most this size
/// when it scrolls off, so one endless line cannot grow without bound.
pub const LINE_MAX_BYTES: usize = 64 * 1024;

/// Bounded ring of logical lines that scrolled off the top of the screen.
#[derive(Debug)]
pub(crate) struct History {
    lines: VecDeque<String>,
    bytes: usize,
    /// Absolute index of `lines[0]`; grows as lines fall off the bound.
    first_index: u64,
    /// Rows of a logical line that scrolled off while its last row was
    /// wrapped: the line goes on in the top row of the screen.
    partial: Option<String>,
    max_lines: usize,
    max_bytes: usize,
}

impl History {
    pub(crate) fn new(max_lines: usize, max_bytes: usize) -> Self {
        Self {
            lines: VecDeque::new(),
            bytes: 0,
            first_index: 0,
            partial: None,
            max_lines,
            max_bytes,
        }
    }

    /// Absolute index of the oldest line still kept.
    pub(crate) fn first_index(&self) -> u64 {
        self.first_index
    }

    /// Absolute index one past the newest scrolled-off line, which is the
    /// index of the first logical line on the screen.
    pub(crate) fn end_index(&self) -> u64 {
        self.first_index + self.lines.len() as u64
    }

    pub(crate) fn get(&self, index: u64) -> Option<&str> {
        let offset = index.checked_sub(self.first_index)?;
        self.lines
            .get(usize::try_from(offset).ok()?)
            .map(String::as_str)
    }

    /// Text of a logical line whose start scrolled off and whose end is still
    /// on the screen.
    pub(crate) fn partial(&self) -> Option<&str> {
        self.partial.as_deref()
    }

    /// Takes one screen row that scrolled off the top; `wrapped` says the
    /// logical line goes on in the next row.
    #[cfg(test)]
    pub(crate) fn push_row(&mut self, text: &str, wrapped: bool) {
        self.pending_mut().push_str(text);
        self.end_row(wrapped);
    }

    /// The logical line that scrolled-off rows are appended to.
    pub(crate) fn pending_mut(&mut self) -> &mut String {
        // Most lines fit a typical row without growing.
        self.partial
            .get_or_insert_with(|| String::with_capacity(128))
    }

    /// Ends a row appended to [`Self::pending_mut`]; `wrapped` says the
    /// logical line goes on in the next row.
    pub(crate) fn end_row(&mut self, wrapped: bool) {
        let mut line = self.partial.take().unwrap_or_default();
        while line.len() > LINE_MAX_BYTES {
            let mut cut = LINE_MAX_BYTES;
            while !line.is_char_boundary(cut) {
                cut -= 1;
            }
            let rest = line.split_off(cut);
            self.push_line(std::mem::replace(&mut line, rest));
        }
        if wrapped {
            self.partial = Some(line);
        } else {
            self.push_line(line);
        }
    }

    fn push_line(&mut self, mut line: String) {
        trim_spaces(&mut line, 0);
        self.bytes += line.len();
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            let Some(oldest) = self.lines.pop_front() else {
                break;
            };
            self.bytes -= oldest.len();
            self.first_index += 1;
        }
    }
}

/// Removes trailing spaces, but never below `keep` bytes.
fn trim_spaces(line: &mut String, keep: usize) {
    let trimmed = line.trim_end_matches(' ').len().max(keep.min(line.len()));
    line.truncate(trimmed);
}

/// The screen's logical lines: wrapped rows joined, trailing spaces trimmed,
/// trailing blank lines dropped. `partial` (the scrolled-off start of the top
/// line) is put in front of the first line.
///
/// On the cursor's row, the text up to the cursor is kept even when it ends
/// in spaces, so a prompt such as `"$ "` reads as it is.
pub(crate) fn screen_lines(screen: &vt100::Screen, partial: Option<&str>) -> Vec<String> {
    let (rows, cols) = screen.size();
    let last_row = rows.get() - 1;
    let (cursor_row, cursor_col) = screen.cursor_position();
    let mut lines = Vec::new();
    let mut line = String::from(partial.unwrap_or(""));
    let mut keep = 0;
    for (row, text) in (0..).zip(screen.rows(0, cols.get())) {
        if row == cursor_row {
            let upto = text_before_cursor(screen, row, cursor_col.min(cols.get()));
            keep = line.len() + upto.len();
            // `upto` is a prefix of `text` unless the cursor is past the end
            // of the row's text.
            line.push_str(if upto.len() > text.len() {
                &upto
            } else {
                &text
            });
        } else {
            line.push_str(&text);
        }
        if row == last_row || !screen.row_wrapped(row) {
            trim_spaces(&mut line, keep);
            lines.push(std::mem::take(&mut line));
            keep = 0;
        }
    }
    while lines.last().is_some_and(String::is_empty) {
        lines.pop();
    }
    lines
}

/// The row's text from column 0 up to `col`, blank cells as spaces.
fn text_before_cursor(screen: &vt100::Screen, row: u16, col: u16) -> String {
    let mut text = String::new();
    for c in 0..col {
        let Some(cell) = screen.cell(row, c) else {
            break;
        };
        if cell.is_wide_continuation() {
            continue;
        }
        if cell.has_contents() {
            text.push_str(cell.contents());
        } else {
            text.push(' ');
        }
    }
    text
}

/// The visible rows, one per line, trailing spaces and blank lines trimmed.
pub(crate) fn screen_text(screen: &vt100::Screen) -> String {
    let (_, cols) = screen.size();
    let mut text = String::new();
    for row in screen.rows(0, cols.get()) {
        text.push_str(row.trim_end_matches(' '));
        text.push('\n');
    }
    let end = text.trim_end_matches('\n').len();
    text.truncate(end);
    text
}

/// Where the previous line-mode read left off.
#[derive(Debug, Default)]
pub(crate) struct ReadMark {
    /// Absolute index of the first screen line at the previous read.
    screen_start: u64,
    /// The screen's logical lines at the previous read: reported then, or
    /// already reported before and unchanged.
    screen_lines: Vec<String>,
}

/// The result of [`ReadMark::advance`].
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct NewLines {
    pub(crate) lines: Vec<String>,
    /// Lines that fell off the history bound before they were read.
    pub(crate) dropped: u64,
}

impl ReadMark {
    /// Everything from the first line that is new or differs from what the
    /// previous read saw, to the end; then moves the mark to now.
    pub(crate) fn advance(&mut self, history: &History, screen: Vec<String>) -> NewLines {
        let history_end = history.end_index();
        let line_at = |index: u64| -> Option<&str> {
            if index < history_end {
                history.get(index)
            } else {
                let offset = usize::try_from(index - history_end).ok()?;
                screen.get(offset).map(String::as_str)
            }
        };
        let previous_end = self.screen_start + self.screen_lines.len() as u64;
        let current_end = history_end + screen.len() as u64;
        let dropped = history.first_index().saturating_sub(previous_end);

        let mut first = self.screen_start.max(history.first_index());
        while first < previous_end.min(current_end) {
            let previous = usize::try_from(first - self.screen_start)
                .ok()
                .and_then(|i| self.screen_lines.get(i));
            // The cursor's line keeps trailing spaces that vanish once the
            // cursor leaves it; that alone is no change worth repeating.
            let unchanged = match (line_at(first), previous) {
                (Some(now), Some(before)) => {
                    now.trim_end_matches(' ') == before.trim_end_matches(' ')
                }
                _ => false,
            };
            if !unchanged {
                break;
            }
            first += 1;
        }
        let lines = (first..current_end)
            .filter_map(|index| line_at(index).map(str::to_owned))
            .collect();

        self.screen_start = history_end;
        self.screen_lines = screen;
        NewLines { lines, dropped }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(history: &History) -> Vec<&str> {
        (history.first_index()..history.end_index())
            .map(|i| history.get(i).unwrap())
            .collect()
    }

    #[test]
    fn wrapped_rows_join_into_one_line() {
        let mut history = History::new(10, 1000);
        history.push_row("abc", true);
        assert_eq!(history.partial(), Some("abc"));
        assert_eq!(history.end_index(), 0);
        history.push_row("def  ", false);
        assert_eq!(history.partial(), None);
        assert_eq!(lines(&history), ["abcdef"]);
    }

    #[test]
    fn line_bound_drops_oldest() {
        let mut history = History::new(3, 1000);
        for i in 0..5 {
            history.push_row(&i.to_string(), false);
        }
        assert_eq!(history.first_index(), 2);
        assert_eq!(history.end_index(), 5);
        assert_eq!(lines(&history), ["2", "3", "4"]);
        assert_eq!(history.get(1), None);
    }

    #[test]
    fn byte_bound_drops_oldest() {
        let mut history = History::new(100, 10);
        history.push_row("aaaa", false);
        history.push_row("bbbb", false);
        history.push_row("cccc", false);
        assert_eq!(lines(&history), ["bbbb", "cccc"]);
    }

    #[test]
    fn endless_line_is_cut_at_char_boundaries() {
        let mut history = History::new(100, 10 * LINE_MAX_BYTES);
        let row = "é".repeat(1000);
        for _ in 0..70 {
            history.push_row(&row, true);
        }
        assert!(history.partial().unwrap().len() <= LINE_MAX_BYTES);
        assert!(history.end_index() >= 2);
        for line in lines(&history) {
            assert!(line.len() <= LINE_MAX_BYTES);
            assert!(line.chars().all(|c| c == 'é'));
        }
    }

    #[test]
    fn trim_keeps_the_minimum() {
        let mut line = String::from("$   ");
        trim_spaces(&mut line, 2);
        assert_eq!(line, "$ ");
        trim_spaces(&mut line, 0);
        assert_eq!(line, "$");
    }

    #[test]
    fn mark_reports_changed_and_new_lines() {
        let history = History::new(10, 1000);
        let mut mark = ReadMark::default();
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let read = mark.advance(&history, owned(&["a", "b"]));
        assert_eq!(read.lines, ["a", "b"]);
        assert_eq!(
            mark.advance(&history, owned(&["a", "b"])).lines,
            Vec::<String>::new()
        );
        assert_eq!(
            mark.advance(&history, owned(&["a", "b2", "c"])).lines,
            ["b2", "c"]
        );
        // Shrinking reports nothing, and the mark follows the screen.
        assert_eq!(
            mark.advance(&history, owned(&["a"])).lines,
            Vec::<String>::new()
        );
        assert_eq!(mark.advance(&history, owned(&["a", "b2"])).lines, ["b2"]);
    }

    #[test]
    fn mark_counts_lines_dropped_unread() {
        let mut history = History::new(2, 1000);
        let mut mark = ReadMark::default();
        for i in 0..5 {
            history.push_row(&i.to_string(), false);
        }
        let read = mark.advance(&history, vec!["5".into()]);
        assert_eq!(read.dropped, 3);
        assert_eq!(read.lines, ["3", "4", "5"]);
    }
}
