//! The parsed form of a patch: files, hunks and lines.
//!
//! Line text is kept as raw bytes *including* its line terminator, so a CRLF
//! file stays CRLF and a last line without a newline (marked in the diff by
//! `\ No newline at end of file`) simply has no trailing `\n`. Applying a hunk
//! is then byte-exact concatenation.

use std::fmt;

/// A parsed patch: the file patches in the order they appear.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Patch {
    pub files: Vec<FilePatch>,
}

/// What a file patch does to its file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// Change an existing file in place (content and/or mode).
    Modify,
    /// Create a file that must not exist yet.
    Create,
    /// Delete a file; its hunks must remove all of its content.
    Delete,
    /// Move `old_path` to `new_path`, applying the hunks on the way.
    Rename,
    /// Copy `old_path` to `new_path`, applying the hunks to the copy.
    Copy,
}

/// The change to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FilePatch {
    /// The source path with any `a/` prefix stripped; `None` for a creation.
    pub old_path: Option<String>,
    /// The target path with any `b/` prefix stripped; `None` for a deletion.
    pub new_path: Option<String>,
    pub kind: FileKind,
    /// `old mode` / `deleted file mode`, when the patch states it.
    pub old_mode: Option<u32>,
    /// `new mode` / `new file mode`, when the patch states it.
    pub new_mode: Option<u32>,
    pub hunks: Vec<Hunk>,
    /// The patch carries a binary change (`Binary files ... differ` or
    /// `GIT binary patch`), which [`crate::apply`] refuses.
    pub binary: bool,
    /// 1-based line in the patch text where this file's header starts.
    pub line: usize,
}

impl FilePatch {
    /// The path this file patch is about, for messages: the new path unless
    /// the file is deleted.
    pub fn display_path(&self) -> &str {
        self.new_path
            .as_deref()
            .or(self.old_path.as_deref())
            .unwrap_or("")
    }
}

/// One `@@ -a,b +c,d @@` hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hunk {
    /// 1-based first old line; for an empty old range, the line *after which*
    /// the new lines go (0 = start of file), as in the diff header.
    pub old_start: usize,
    pub old_count: usize,
    pub new_start: usize,
    pub new_count: usize,
    /// Text after the closing `@@` (often the enclosing function), trimmed.
    pub section: String,
    pub lines: Vec<HunkLine>,
    /// 1-based line of the `@@` header in the patch text.
    pub line: usize,
}

/// Whether a hunk line is kept, removed or added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineKind {
    Context,
    Remove,
    Add,
}

/// One line of a hunk, without its ` `/`-`/`+` marker but with its line
/// terminator (absent on a last line that has no newline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkLine {
    pub kind: LineKind,
    pub text: Vec<u8>,
}

impl Hunk {
    /// The header as it would be printed: `@@ -1,3 +1,4 @@`.
    pub fn header(&self) -> String {
        format!(
            "@@ -{} +{} @@",
            range(self.old_start, self.old_count),
            range(self.new_start, self.new_count)
        )
    }

    /// The lines the hunk expects to find (context and removals).
    pub fn old_lines(&self) -> Vec<&[u8]> {
        self.side(LineKind::Remove)
    }

    /// The lines the hunk leaves behind (context and additions).
    pub fn new_lines(&self) -> Vec<&[u8]> {
        self.side(LineKind::Add)
    }

    fn side(&self, changed: LineKind) -> Vec<&[u8]> {
        self.lines
            .iter()
            .filter(|l| l.kind == LineKind::Context || l.kind == changed)
            .map(|l| l.text.as_slice())
            .collect()
    }
}

impl fmt::Display for Hunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.header())
    }
}

/// Formats one side of a hunk header the way diff and git do: the count is
/// omitted when it is 1.
fn range(start: usize, count: usize) -> String {
    if count == 1 {
        start.to_string()
    } else {
        format!("{start},{count}")
    }
}

/// Splits `content` into lines, each keeping its `\n` terminator; the last
/// line has none if the content does not end with a newline.
pub(crate) fn split_lines(content: &[u8]) -> Vec<&[u8]> {
    let mut lines = Vec::new();
    let mut rest = content;
    while !rest.is_empty() {
        let end = rest
            .iter()
            .position(|&b| b == b'\n')
            .map_or(rest.len(), |i| i + 1);
        let (line, tail) = rest.split_at(end);
        lines.push(line);
        rest = tail;
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_lines_keeps_terminators() {
        assert_eq!(split_lines(b""), Vec::<&[u8]>::new());
        assert_eq!(split_lines(b"a\r\nb"), vec![&b"a\r\n"[..], b"b"]);
        assert_eq!(split_lines(b"\n\n"), vec![&b"\n"[..], b"\n"]);
    }

    #[test]
    fn header_omits_count_of_one() {
        let hunk = Hunk {
            old_start: 1,
            old_count: 1,
            new_start: 0,
            new_count: 0,
            section: String::new(),
            lines: vec![],
            line: 1,
        };
        assert_eq!(hunk.header(), "@@ -1 +0,0 @@");
    }
}
