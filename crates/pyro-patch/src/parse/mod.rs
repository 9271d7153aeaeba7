//! Parsing unified diffs into a [`Patch`].
//!
//! Two header styles are recognised, anywhere in the text:
//!
//! - git: a `diff --git a/x b/x` line, extended header lines (`new file mode`,
//!   `deleted file mode`, `old mode`/`new mode`, `rename from`/`rename to`,
//!   `copy from`/`copy to`, `similarity index`, `index`), optional
//!   `---`/`+++` lines and hunks. Binary changes (`Binary files ... differ`,
//!   `GIT binary patch`) are recorded with [`FilePatch::binary`] and their
//!   payload skipped.
//! - plain `diff -u`/`diff -ruN`: a `--- x` line directly followed by `+++ y`,
//!   names ending at a tab (timestamps follow it), `/dev/null` or an epoch
//!   timestamp with an empty range marking a creation or deletion.
//!
//! Every other line outside a file (an email, a commit message, `diff -ruN`
//! command lines, `Only in` notes, a `-- ` signature) is skipped. Inside a
//! hunk the header's counts are authoritative: a hunk that ends early or runs
//! long is an error with the line number, never silently truncated.
//!
//! Names get `patch -p1` treatment: git names lose their `a/`/`b/` prefix
//! when both sides have one (so `--no-prefix` output works too); plain diff
//! names lose their first component when every name has more than one.

use crate::patch::{split_lines, FileKind, FilePatch, Hunk, HunkLine, LineKind, Patch};
use crate::path::{best_name, has_prefix, split_git_header, strip_component, unquote};

/// Why a patch text could not be parsed. Every variant names the 1-based
/// line of the patch text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("patch contains no file changes; expected a unified diff with '--- a/FILE' and '+++ b/FILE' lines")]
    Empty,
    #[error("line {line}: expected {expected}, found '{found}'")]
    Expected {
        line: usize,
        expected: &'static str,
        found: String,
    },
    #[error("line {line}: hunk {header} ends early ({old} old and {new} new lines missing); fix the counts in its header")]
    HunkTooShort {
        line: usize,
        header: String,
        old: usize,
        new: usize,
    },
    #[error("line {line}: hunk {header} has more lines than its header says; fix the counts in its header")]
    HunkTooLong { line: usize, header: String },
    #[error("line {line}: cannot read a file name in '{found}'; quote names the way git does")]
    BadName { line: usize, found: String },
    #[error("line {line}: file name is not valid UTF-8")]
    NonUtf8Name { line: usize },
    #[error("line {line}: '{found}' is not an octal file mode")]
    BadMode { line: usize, found: String },
}

/// Parses a unified diff (plain or git-style, several files at once).
pub fn parse(text: &[u8]) -> Result<Patch, ParseError> {
    let mut parser = Parser {
        lines: split_lines(text),
        pos: 0,
    };
    let mut files = Vec::new();
    while let Some(line) = parser.peek() {
        if line.starts_with(b"diff --git ") {
            files.push(parser.git_file()?);
        } else if parser.at_unified_header() {
            files.push(parser.unified_file()?);
        } else {
            parser.pos += 1;
        }
    }
    if files.is_empty() {
        return Err(ParseError::Empty);
    }
    Ok(Patch { files })
}

struct Parser<'a> {
    lines: Vec<&'a [u8]>,
    pos: usize,
}

/// The names found in a git file section, before prefix stripping.
#[derive(Default)]
struct GitNames {
    header: Option<(String, String)>,
    minus: Option<String>,
    plus: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

const DEV_NULL: &str = "/dev/null";

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<&'a [u8]> {
        self.lines.get(self.pos).copied()
    }

    /// 1-based number of the line `peek` returns.
    fn line_no(&self) -> usize {
        self.pos + 1
    }

    fn at_unified_header(&self) -> bool {
        let next = self.lines.get(self.pos + 1);
        self.peek().is_some_and(|l| l.starts_with(b"--- "))
            && next.is_some_and(|l| l.starts_with(b"+++ "))
    }

    fn expected(&self, expected: &'static str) -> ParseError {
        ParseError::Expected {
            line: self.line_no(),
            expected,
            found: self.peek().map_or_else(|| "end of patch".into(), shown),
        }
    }

    fn git_file(&mut self) -> Result<FilePatch, ParseError> {
        let start = self.line_no();
        let header = trim_eol(self.peek().unwrap_or_default());
        let mut names = GitNames {
            header: split_git_header(&header[b"diff --git ".len()..]),
            ..GitNames::default()
        };
        self.pos += 1;
        let mut file = FilePatch {
            old_path: None,
            new_path: None,
            kind: FileKind::Modify,
            old_mode: None,
            new_mode: None,
            hunks: Vec::new(),
            binary: false,
            line: start,
        };
        while let Some(raw) = self.peek() {
            let line = trim_eol(raw);
            let no = self.line_no();
            if let Some(mode) = line.strip_prefix(b"old mode ") {
                file.old_mode = Some(parse_mode(mode, no)?);
            } else if let Some(mode) = line.strip_prefix(b"new mode ") {
                file.new_mode = Some(parse_mode(mode, no)?);
            } else if let Some(mode) = line.strip_prefix(b"deleted file mode ") {
                file.kind = FileKind::Delete;
                file.old_mode = Some(parse_mode(mode, no)?);
            } else if let Some(mode) = line.strip_prefix(b"new file mode ") {
                file.kind = FileKind::Create;
                file.new_mode = Some(parse_mode(mode, no)?);
            } else if let Some(name) = line.strip_prefix(b"rename from ") {
                file.kind = FileKind::Rename;
                names.from = Some(whole_name(name, no)?);
            } else if let Some(name) = line.strip_prefix(b"rename to ") {
                names.to = Some(whole_name(name, no)?);
            } else if let Some(name) = line.strip_prefix(b"copy from ") {
                file.kind = FileKind::Copy;
                names.from = Some(whole_name(name, no)?);
            } else if let Some(name) = line.strip_prefix(b"copy to ") {
                names.to = Some(whole_name(name, no)?);
            } else if line.starts_with(b"similarity index ")
                || line.starts_with(b"dissimilarity index ")
                || line.starts_with(b"index ")
            {
                // Informational; the hunks carry what we need.
            } else if line.starts_with(b"Binary files ") || line == b"GIT binary patch" {
                // The payload (if any) is skipped as garbage by `parse`.
                file.binary = true;
                self.pos += 1;
                break;
            } else if line.starts_with(b"--- ") {
                names.minus = Some(side_name(&line[4..], no)?.0);
                self.pos += 1;
                match self.peek().map(trim_eol) {
                    Some(plus) if plus.starts_with(b"+++ ") => {
                        names.plus = Some(side_name(&plus[4..], self.line_no())?.0);
                    }
                    _ => return Err(self.expected("'+++ b/FILE' after the '--- a/FILE' line")),
                }
                self.pos += 1;
                file.hunks = self.hunks()?;
                break;
            } else {
                break;
            }
            self.pos += 1;
        }
        resolve_git_names(&mut file, names, start)?;
        Ok(file)
    }

    fn unified_file(&mut self) -> Result<FilePatch, ParseError> {
        let start = self.line_no();
        let (minus, minus_time) = side_name(&trim_eol(self.lines[self.pos])[4..], start)?;
        let (plus, plus_time) = side_name(&trim_eol(self.lines[self.pos + 1])[4..], start + 1)?;
        self.pos += 2;
        let hunks = self.hunks()?;
        let only_hunk = |f: fn(&Hunk) -> bool| hunks.len() == 1 && f(&hunks[0]);
        let kind = if minus == DEV_NULL
            || (is_epoch(&minus_time) && only_hunk(|h| h.old_start == 0 && h.old_count == 0))
        {
            FileKind::Create
        } else if plus == DEV_NULL
            || (is_epoch(&plus_time) && only_hunk(|h| h.new_start == 0 && h.new_count == 0))
        {
            FileKind::Delete
        } else {
            FileKind::Modify
        };
        let named: Vec<&str> = [&minus, &plus]
            .into_iter()
            .filter(|n| *n != DEV_NULL)
            .map(String::as_str)
            .collect();
        let strip = named.iter().all(|n| n.contains('/'));
        let clean = |n: &str| {
            if strip {
                strip_component(n).to_owned()
            } else {
                n.to_owned()
            }
        };
        let (old_path, new_path) = match kind {
            FileKind::Create => (None, Some(clean(&plus))),
            FileKind::Delete => (Some(clean(&minus)), None),
            _ => {
                // Plain diffs name one file twice (`x.orig` and `x`); patch
                // the likelier original, as GNU patch does.
                let target = best_name(clean(&minus), clean(&plus));
                (Some(target.clone()), Some(target))
            }
        };
        Ok(FilePatch {
            old_path,
            new_path,
            kind,
            old_mode: None,
            new_mode: None,
            hunks,
            binary: false,
            line: start,
        })
    }

    /// Reads the hunks following a `---`/`+++` pair: at least one.
    fn hunks(&mut self) -> Result<Vec<Hunk>, ParseError> {
        let mut hunks = Vec::new();
        while self.peek().is_some_and(|l| l.starts_with(b"@@ ")) {
            let hunk = self.hunk()?;
            if let Some(next) = self.peek() {
                let signature = next == b"-- \n" || next == b"--\n";
                let content = matches!(next.first(), Some(b' ' | b'+' | b'-'));
                if content && !signature && !self.at_unified_header() {
                    return Err(ParseError::HunkTooLong {
                        line: self.line_no(),
                        header: hunk.header(),
                    });
                }
            }
            hunks.push(hunk);
        }
        if hunks.is_empty() {
            return Err(self.expected("a hunk header '@@ -a,b +c,d @@'"));
        }
        Ok(hunks)
    }

    fn hunk(&mut self) -> Result<Hunk, ParseError> {
        let line = self.line_no();
        let header = trim_eol(self.lines[self.pos]);
        let mut hunk = parse_hunk_header(header)
            .ok_or_else(|| self.expected("a hunk header '@@ -a,b +c,d @@' with numeric ranges"))?;
        hunk.line = line;
        self.pos += 1;
        let (mut old, mut new) = (hunk.old_count, hunk.new_count);
        while old > 0 || new > 0 {
            let Some(raw) = self.peek() else {
                return Err(too_short(&hunk, self.line_no(), old, new));
            };
            let (kind, text) = match raw[0] {
                b' ' => (LineKind::Context, &raw[1..]),
                // An empty line is a context line whose space a mailer ate.
                b'\n' | b'\r' if trim_eol(raw).is_empty() => (LineKind::Context, raw),
                b'-' => (LineKind::Remove, &raw[1..]),
                b'+' => (LineKind::Add, &raw[1..]),
                b'\\' => {
                    self.no_newline_marker(&mut hunk);
                    continue;
                }
                _ => return Err(too_short(&hunk, self.line_no(), old, new)),
            };
            let (old_uses, new_uses) = match kind {
                LineKind::Context => (1, 1),
                LineKind::Remove => (1, 0),
                LineKind::Add => (0, 1),
            };
            if old < old_uses || new < new_uses {
                return Err(ParseError::HunkTooLong {
                    line: self.line_no(),
                    header: hunk.header(),
                });
            }
            old -= old_uses;
            new -= new_uses;
            hunk.lines.push(HunkLine {
                kind,
                text: text.to_vec(),
            });
            self.pos += 1;
        }
        if self.peek().is_some_and(|l| l.starts_with(b"\\")) {
            self.no_newline_marker(&mut hunk);
        }
        Ok(hunk)
    }

    /// `\ No newline at end of file`: the previous line has no terminator.
    fn no_newline_marker(&mut self, hunk: &mut Hunk) {
        if let Some(last) = hunk.lines.last_mut() {
            if last.text.last() == Some(&b'\n') {
                last.text.pop();
            }
        }
        self.pos += 1;
    }
}

fn too_short(hunk: &Hunk, line: usize, old: usize, new: usize) -> ParseError {
    ParseError::HunkTooShort {
        line,
        header: hunk.header(),
        old,
        new,
    }
}

/// Fills in paths and kind from everything a git file section said.
fn resolve_git_names(file: &mut FilePatch, names: GitNames, line: usize) -> Result<(), ParseError> {
    let prefixed = match &names.header {
        Some((a, b)) => has_prefix(a) && has_prefix(b),
        None => [&names.minus, &names.plus]
            .into_iter()
            .flatten()
            .all(|n| n == DEV_NULL || has_prefix(n)),
    };
    let clean = |n: &String| -> Option<String> {
        if n == DEV_NULL {
            None
        } else if prefixed && has_prefix(n) {
            // A `---`/`+++` name may lack the prefix its `diff --git` line
            // had (a malformed patch): only a name that has one loses it.
            Some(n[2..].to_owned())
        } else {
            Some(n.clone())
        }
    };
    let (header_old, header_new) = match &names.header {
        Some((a, b)) => (clean(a), clean(b)),
        None => (None, None),
    };
    let old = names
        .from
        .or(names.minus.as_ref().and_then(clean))
        .or(header_old);
    let new = names
        .to
        .or(names.plus.as_ref().and_then(clean))
        .or(header_new);
    if names.minus.as_deref() == Some(DEV_NULL) {
        file.kind = FileKind::Create;
    } else if names.plus.as_deref() == Some(DEV_NULL) {
        file.kind = FileKind::Delete;
    }
    let missing = || ParseError::BadName {
        line,
        found: "diff --git".into(),
    };
    match file.kind {
        FileKind::Create => file.new_path = Some(new.ok_or_else(missing)?),
        FileKind::Delete => file.old_path = Some(old.ok_or_else(missing)?),
        _ => {
            file.old_path = Some(old.ok_or_else(missing)?);
            file.new_path = Some(new.ok_or_else(missing)?);
        }
    }
    Ok(())
}

/// A name filling the rest of a line (`rename from x`), possibly quoted.
fn whole_name(raw: &[u8], line: usize) -> Result<String, ParseError> {
    let bytes = if raw.first() == Some(&b'"') {
        match unquote(raw) {
            Some((bytes, [])) => bytes,
            _ => return Err(bad_name(raw, line)),
        }
    } else {
        raw.to_vec()
    };
    into_name(bytes, raw, line)
}

/// The name and timestamp of a `---`/`+++` line (without its marker).
fn side_name(raw: &[u8], line: usize) -> Result<(String, String), ParseError> {
    let (bytes, rest) = if raw.first() == Some(&b'"') {
        unquote(raw).ok_or_else(|| bad_name(raw, line))?
    } else {
        let end = raw.iter().position(|&b| b == b'\t').unwrap_or(raw.len());
        (raw[..end].to_vec(), &raw[end..])
    };
    let time = String::from_utf8_lossy(rest).trim().to_owned();
    Ok((into_name(bytes, raw, line)?, time))
}

fn into_name(bytes: Vec<u8>, raw: &[u8], line: usize) -> Result<String, ParseError> {
    if bytes.is_empty() {
        return Err(bad_name(raw, line));
    }
    String::from_utf8(bytes).map_err(|_| ParseError::NonUtf8Name { line })
}

fn bad_name(raw: &[u8], line: usize) -> ParseError {
    ParseError::BadName {
        line,
        found: shown(raw),
    }
}

fn parse_mode(raw: &[u8], line: usize) -> Result<u32, ParseError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| u32::from_str_radix(s.trim(), 8).ok())
        .ok_or_else(|| ParseError::BadMode {
            line,
            found: shown(raw),
        })
}

/// Parses `@@ -a[,b] +c[,d] @@ section`.
fn parse_hunk_header(line: &[u8]) -> Option<Hunk> {
    let text = std::str::from_utf8(line).ok()?;
    let rest = text.strip_prefix("@@ -")?;
    let (ranges, section) = rest.split_once(" @@")?;
    let (old, new) = ranges.split_once(" +")?;
    let range = |r: &str| -> Option<(usize, usize)> {
        match r.split_once(',') {
            Some((start, count)) => Some((start.parse().ok()?, count.parse().ok()?)),
            None => Some((r.parse().ok()?, 1)),
        }
    };
    let (old_start, old_count) = range(old)?;
    let (new_start, new_count) = range(new)?;
    Some(Hunk {
        old_start,
        old_count,
        new_start,
        new_count,
        section: section.trim().to_owned(),
        lines: Vec::new(),
        line: 0,
    })
}

/// Timestamps `diff -N` gives a missing file.
fn is_epoch(time: &str) -> bool {
    time.starts_with("1970-01-01 00:00:00")
        || time.starts_with("1969-12-31 ")
        || time.ends_with(" 1970")
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

/// A patch line as shown in an error: lossy UTF-8, at most 80 characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(trim_eol(line));
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.into_owned(),
    }
}

#[cfg(test)]
mod tests;
