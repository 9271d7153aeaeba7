//! Producing one file's git-style unified diff.
//!
//! The output is what `git diff` prints for the file (minus the `index`
//! line, which would need blob hashes), so [`crate::parse`] +
//! [`crate::apply`] and `git apply` both turn the old content into the new
//! one. Lines are compared as raw bytes with their terminators, so a CRLF
//! change or a dropped final newline shows up as a changed line.
//!
//! The line diff is `similar`'s Myers with a deadline: a few changes in a
//! 10k-line file cost milliseconds, and a pathological pair degrades to a
//! larger (still correct) diff instead of a long stall.

use std::time::{Duration, Instant};

use similar::algorithms::{myers, Capture, Replace};
use similar::{group_diff_ops, DiffOp, DiffTag};

use crate::patch::split_lines;
use crate::path::quote;
use crate::MODE_FILE;

/// Context lines around each change, as `diff -u` and git use by default.
pub const DEFAULT_CONTEXT: usize = 3;

/// How long one file's line diff may search for a minimal result.
const DIFF_DEADLINE: Duration = Duration::from_secs(1);

/// How far into a file git looks for a NUL byte.
const BINARY_PROBE: usize = 8000;

/// True when content is shown as `Binary files ... differ` rather than as
/// lines: a NUL byte in the first 8000 bytes (git's test) or content that is
/// not UTF-8 (it could not travel as text in a patch).
pub fn is_binary(content: &[u8]) -> bool {
    content[..content.len().min(BINARY_PROBE)].contains(&0) || std::str::from_utf8(content).is_err()
}

/// One file's change as a git-style diff; empty when nothing changed.
///
/// `None` content means the file does not exist on that side (a creation or
/// deletion). Different paths on both sides make a rename. A mode that is
/// `None` on either side of a modification is taken as unchanged; a created
/// or deleted file without a mode is shown as `100644`.
pub fn diff_files(
    old_path: &str,
    old: Option<&[u8]>,
    new_path: &str,
    new: Option<&[u8]>,
    old_mode: Option<u32>,
    new_mode: Option<u32>,
    context: usize,
) -> String {
    let mut out = String::new();
    let (a, b) = (format!("a/{old_path}"), format!("b/{new_path}"));
    match (old, new) {
        (None, None) => {}
        (None, Some(new)) => {
            out += &format!(
                "diff --git {} {}\n",
                quote(&format!("a/{new_path}")),
                quote(&b)
            );
            out += &format!("new file mode {:06o}\n", new_mode.unwrap_or(MODE_FILE));
            content_diff(&mut out, "/dev/null", &b, b"", new, context);
        }
        (Some(old), None) => {
            out += &format!(
                "diff --git {} {}\n",
                quote(&a),
                quote(&format!("b/{old_path}"))
            );
            out += &format!("deleted file mode {:06o}\n", old_mode.unwrap_or(MODE_FILE));
            content_diff(&mut out, &a, "/dev/null", old, b"", context);
        }
        (Some(old), Some(new)) => {
            let renamed = old_path != new_path;
            let mode_change = match (old_mode, new_mode) {
                (Some(o), Some(n)) => (o != n).then_some((o, n)),
                _ => None,
            };
            if !renamed && mode_change.is_none() && old == new {
                return out;
            }
            out += &format!("diff --git {} {}\n", quote(&a), quote(&b));
            if let Some((o, n)) = mode_change {
                out += &format!("old mode {o:06o}\nnew mode {n:06o}\n");
            }
            if renamed {
                out += &format!(
                    "similarity index {}%\nrename from {}\nrename to {}\n",
                    similarity(old, new),
                    quote(old_path),
                    quote(new_path)
                );
            }
            if old != new {
                content_diff(&mut out, &a, &b, old, new, context);
            }
        }
    }
    out
}

/// Appends `---`/`+++` and the hunks, or the binary note. Nothing for two
/// empty sides (an empty file created or deleted has no hunks).
fn content_diff(out: &mut String, a: &str, b: &str, old: &[u8], new: &[u8], context: usize) {
    if old.is_empty() && new.is_empty() {
        return;
    }
    if is_binary(old) || is_binary(new) {
        *out += &format!("Binary files {} and {} differ\n", quote(a), quote(b));
        return;
    }
    *out += &format!("--- {}\n+++ {}\n", side(a), side(b));
    let old_lines = split_lines(old);
    let new_lines = split_lines(new);
    let mut body = Vec::new();
    for group in hunk_groups(&old_lines, &new_lines, context) {
        let (Some(first), Some(last)) = (group.first(), group.last()) else {
            continue;
        };
        let old_range = first.old_range().start..last.old_range().end;
        let new_range = first.new_range().start..last.new_range().end;
        body.extend_from_slice(
            format!(
                "@@ -{} +{} @@\n",
                header_range(old_range.start, old_range.len()),
                header_range(new_range.start, new_range.len())
            )
            .as_bytes(),
        );
        for op in group {
            let (tag, olds, news) = op.as_tag_tuple();
            if matches!(tag, DiffTag::Equal) {
                olds.for_each(|i| push_line(&mut body, b' ', old_lines[i]));
                continue;
            }
            olds.for_each(|i| push_line(&mut body, b'-', old_lines[i]));
            news.for_each(|i| push_line(&mut body, b'+', new_lines[i]));
        }
    }
    // Both sides are UTF-8 (checked by `is_binary`) and every line is whole.
    *out += &String::from_utf8_lossy(&body);
}

fn hunk_groups(old: &[&[u8]], new: &[&[u8]], context: usize) -> Vec<Vec<DiffOp>> {
    group_diff_ops(line_ops(old, new), context)
}

/// The Myers edit script, with adjacent deletes and inserts merged so that
/// removals print before additions.
///
/// This avoids `similar::capture_diff_*`: its `Compact` pass can emit ops
/// whose indices disagree with each other, which breaks hunk headers.
fn line_ops(old: &[&[u8]], new: &[&[u8]]) -> Vec<DiffOp> {
    let deadline = Instant::now() + DIFF_DEADLINE;
    let mut hook = Replace::new(Capture::new());
    // The hook cannot fail: `Capture` only records.
    let _ = myers::diff_deadline(
        &mut hook,
        old,
        0..old.len(),
        new,
        0..new.len(),
        Some(deadline),
    );
    hook.into_inner().into_ops()
}

/// Git's form of a `---`/`+++` name: quoted if needed, and followed by a tab
/// when it holds a space so that GNU patch finds where it ends.
fn side(name: &str) -> String {
    let quoted = quote(name);
    if quoted == name && name.contains(' ') {
        format!("{name}\t")
    } else {
        quoted
    }
}

/// One side of a hunk header from a 0-based start and a length.
fn header_range(start: usize, len: usize) -> String {
    match len {
        0 => format!("{start},0"),
        1 => format!("{}", start + 1),
        _ => format!("{},{len}", start + 1),
    }
}

fn push_line(body: &mut Vec<u8>, marker: u8, line: &[u8]) {
    body.push(marker);
    body.extend_from_slice(line);
    if !line.ends_with(b"\n") {
        body.extend_from_slice(b"\n\\ No newline at end of file\n");
    }
}

/// A rough `similarity index`: the share of the larger side found unchanged.
fn similarity(old: &[u8], new: &[u8]) -> usize {
    let larger = old.len().max(new.len());
    if larger == 0 || old == new {
        return 100;
    }
    let old_lines = split_lines(old);
    let new_lines = split_lines(new);
    let kept: usize = line_ops(&old_lines, &new_lines)
        .iter()
        .filter(|op| matches!(op.tag(), DiffTag::Equal))
        .flat_map(|op| op.old_range())
        .map(|i| old_lines[i].len())
        .sum();
    (kept * 100 / larger).min(99)
}

#[cfg(test)]
mod tests;
