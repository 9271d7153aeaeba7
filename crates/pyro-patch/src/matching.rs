//! Matching hunks against a file's lines and splicing in their result.
//!
//! Matching is exact (bytes, terminators included) and follows GNU patch
//! without fuzz: try the stated line shifted by the previous hunk's offset,
//! then the nearest line either side, never before the end of the previous
//! hunk. A hunk whose context is clipped at the top (bottom) must match at the
//! start (end) of the file, since a diff only clips context there.

use crate::patch::{split_lines, Hunk, HunkLine, LineKind};
use crate::report::{Failure, FailureReason, FileResult, HunkOffset};

/// Applies `hunks` to `content`: the new content and the offsets, or `None`
/// and every failing hunk.
pub(crate) fn patch_lines(
    content: &[u8],
    hunks: &[Hunk],
    path: &str,
) -> (Option<Vec<u8>>, FileResult) {
    let lines = split_lines(content);
    let mut out = Vec::with_capacity(content.len());
    let mut failures = Vec::new();
    let mut offsets = Vec::new();
    let mut cursor = 0;
    let mut offset: isize = 0;
    for (index, hunk) in hunks.iter().enumerate() {
        let old = hunk.old_lines();
        let new = hunk.new_lines();
        let stated = if hunk.old_count == 0 {
            hunk.old_start
        } else {
            hunk.old_start.saturating_sub(1)
        };
        let want = stated.saturating_add_signed(offset);
        let anchor = Anchor::of(hunk);
        match find(&lines, &old, want, cursor, anchor) {
            Some(at) => {
                for line in &lines[cursor..at] {
                    out.extend_from_slice(line);
                }
                for line in &new {
                    out.extend_from_slice(line);
                }
                cursor = at + old.len();
                offset = at as isize - stated as isize;
                if offset != 0 {
                    offsets.push(HunkOffset {
                        path: path.to_owned(),
                        hunk: index + 1,
                        offset,
                    });
                }
            }
            None => {
                let applied = !new.is_empty() && find(&lines, &new, want, 0, anchor).is_some();
                let reason = if applied {
                    FailureReason::AlreadyApplied
                } else {
                    mismatch(&lines, &old, want.clamp(cursor, lines.len()))
                };
                failures.push(Failure {
                    path: path.to_owned(),
                    hunk: Some(index + 1),
                    header: Some(hunk.header()),
                    reason,
                });
            }
        }
    }
    if !failures.is_empty() {
        return (None, Err(failures));
    }
    for line in &lines[cursor..] {
        out.extend_from_slice(line);
    }
    (Some(out), Ok(offsets))
}

/// Where a hunk may match, from its context, as GNU patch decides without
/// fuzz: a diff only clips context at the ends of a file, so a hunk with
/// less leading than trailing context (starting at line 1) belongs at the
/// start, and one with less trailing than leading context at the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    start: bool,
    end: bool,
}

impl Anchor {
    fn of(hunk: &Hunk) -> Self {
        let is_context = |l: &&HunkLine| l.kind == LineKind::Context;
        let leading = hunk.lines.iter().take_while(is_context).count();
        let trailing = hunk.lines.iter().rev().take_while(is_context).count();
        let context = leading.max(trailing);
        Self {
            start: leading < context && hunk.old_start <= 1,
            end: trailing < context,
        }
    }
}

/// The position nearest `want` (at or after `min`, and where `anchor`
/// allows) at which `needle` matches `lines` exactly; later positions win
/// ties.
fn find(
    lines: &[&[u8]],
    needle: &[&[u8]],
    want: usize,
    min: usize,
    anchor: Anchor,
) -> Option<usize> {
    let last = lines.len().checked_sub(needle.len())?;
    let matches = |at: usize| at >= min && at <= last && lines[at..at + needle.len()] == *needle;
    match (anchor.start, anchor.end) {
        (true, true) => return (last == 0 && matches(0)).then_some(0),
        (true, false) => return matches(0).then_some(0),
        (false, true) => return matches(last).then_some(last),
        (false, false) => {}
    }
    if min > last {
        return None;
    }
    let want = want.clamp(min, last);
    for distance in 0..=last - min {
        let after = want + distance;
        if after <= last && matches(after) {
            return Some(after);
        }
        if let Some(before) = want.checked_sub(distance) {
            if before >= min && distance > 0 && matches(before) {
                return Some(before);
            }
        }
        if after > last && want.saturating_sub(distance) <= min {
            break;
        }
    }
    None
}

/// Describes the first line where `expected` differs from the file at `at`.
fn mismatch(lines: &[&[u8]], expected: &[&[u8]], at: usize) -> FailureReason {
    for (i, want) in expected.iter().enumerate() {
        let line = at + i + 1;
        let Some(found) = lines.get(at + i) else {
            return FailureReason::Mismatch {
                line,
                expected: shown(want),
                found: None,
            };
        };
        if found != want {
            if body(found) == body(want) {
                return FailureReason::LineEnding {
                    line,
                    expected: ending(want),
                    found: ending(found),
                };
            }
            return FailureReason::Mismatch {
                line,
                expected: shown(want),
                found: Some(shown(found)),
            };
        }
    }
    if let Some(found) = lines.get(at + expected.len()) {
        return FailureReason::NotAtEnd {
            line: at + expected.len() + 1,
            found: shown(found),
        };
    }
    // Only reachable when the hunk fits nowhere after an earlier hunk.
    FailureReason::Mismatch {
        line: at + 1,
        expected: expected.first().map_or_else(String::new, |l| shown(l)),
        found: lines.get(at).map(|l| shown(l)),
    }
}

fn body(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn ending(line: &[u8]) -> &'static str {
    if line.ends_with(b"\r\n") {
        "CRLF"
    } else if line.ends_with(b"\n") {
        "LF"
    } else {
        "no newline"
    }
}

/// A file line as shown in a message: lossy UTF-8, at most 80 characters.
fn shown(line: &[u8]) -> String {
    let text = String::from_utf8_lossy(body(line));
    match text.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &text[..i]),
        None => text.into_owned(),
    }
}
