//! Applying a [`Patch`] to a [`Tree`], all or nothing.
//!
//! [`apply`] never writes. It replays the file patches in order over an
//! overlay of the tree (so a later file patch sees an earlier one's result),
//! then turns the overlay into a list of [`Change`]s: deletes first, then
//! writes, so a file replaced by a directory of the same name works when the
//! caller performs them in order. If anything fails, it keeps going to find
//! every failing hunk, and returns them all with no changes.
//!
//! Hunks are matched like GNU patch without fuzz (see `matching.rs`): exact
//! bytes, so CRLF stays CRLF and a missing final newline must be missing in
//! the file too. A hunk that does not match but whose result is present is
//! reported as looking already applied.

use std::collections::BTreeMap;
use std::io;

use crate::matching::patch_lines;
use crate::patch::{FileKind, FilePatch, Patch};
use crate::path::check_path;
use crate::report::FileResult;
pub use crate::report::{ApplyError, ApplyReport, Change, Failure, FailureReason, HunkOffset};
use crate::tree::Tree;

/// Computes the result of `patch` on `tree` without writing anything.
pub fn apply(patch: &Patch, tree: &dyn Tree) -> Result<ApplyReport, ApplyError> {
    let mut overlay = Overlay {
        tree,
        entries: BTreeMap::new(),
        order: Vec::new(),
    };
    let mut failures = Vec::new();
    let mut offsets = Vec::new();
    for file in &patch.files {
        match apply_file(&mut overlay, file)? {
            Ok(mut applied) => offsets.append(&mut applied),
            Err(mut failed) => failures.append(&mut failed),
        }
    }
    if !failures.is_empty() {
        return Err(ApplyError::Rejected(failures));
    }
    overlay.into_report(offsets)
}

/// A file's state in the overlay: present with content and the mode to set,
/// or deleted.
enum Entry {
    File { content: Vec<u8>, mode: Option<u32> },
    Gone,
}

struct Overlay<'a> {
    tree: &'a dyn Tree,
    entries: BTreeMap<String, Entry>,
    order: Vec<String>,
}

impl Overlay<'_> {
    fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ApplyError> {
        match self.entries.get(path) {
            Some(Entry::File { content, .. }) => Ok(Some(content.clone())),
            Some(Entry::Gone) => Ok(None),
            None => self
                .tree
                .read(path)
                .map_err(|source| read_error(path, source)),
        }
    }

    fn mode(&self, path: &str) -> Result<Option<u32>, ApplyError> {
        match self.entries.get(path) {
            Some(Entry::File { mode: Some(m), .. }) => Ok(Some(*m)),
            Some(Entry::Gone) => Ok(None),
            _ => self
                .tree
                .mode(path)
                .map_err(|source| read_error(path, source)),
        }
    }

    fn set(&mut self, path: &str, entry: Entry) {
        if self.entries.insert(path.to_owned(), entry).is_none() {
            self.order.push(path.to_owned());
        }
    }

    fn into_report(self, offsets: Vec<HunkOffset>) -> Result<ApplyReport, ApplyError> {
        let mut deletes = Vec::new();
        let mut writes = Vec::new();
        let mut entries = self.entries;
        for path in self.order {
            match entries.remove(&path) {
                Some(Entry::File { content, mode }) => writes.push(Change::Write {
                    path,
                    content,
                    mode,
                }),
                Some(Entry::Gone) => {
                    // A file created and deleted again never reaches the tree.
                    let existed = self.tree.mode(&path).map_err(|e| read_error(&path, e))?;
                    if existed.is_some() {
                        deletes.push(Change::Delete { path });
                    }
                }
                None => {}
            }
        }
        deletes.append(&mut writes);
        Ok(ApplyReport {
            changes: deletes,
            offsets,
        })
    }
}

fn read_error(path: &str, source: io::Error) -> ApplyError {
    ApplyError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Applies one file patch to the overlay, or returns why it cannot be.
fn apply_file(overlay: &mut Overlay<'_>, file: &FilePatch) -> Result<FileResult, ApplyError> {
    let shown = file.display_path().to_owned();
    let whole = |reason: FailureReason| -> Result<FileResult, ApplyError> {
        Ok(Err(vec![Failure {
            path: shown.clone(),
            hunk: None,
            header: None,
            reason,
        }]))
    };
    for path in [&file.old_path, &file.new_path].into_iter().flatten() {
        if let Err(e) = check_path(path) {
            return whole(e.into());
        }
    }
    if file.binary {
        return whole(FailureReason::Binary);
    }
    let old = file.old_path.as_deref().unwrap_or_default();
    let new = file.new_path.as_deref().unwrap_or_default();
    match file.kind {
        FileKind::Create => {
            if let Some(existing) = overlay.read(new)? {
                let same = patch_lines(&[], &file.hunks, &shown).0 == Some(existing);
                return whole(if same {
                    FailureReason::AlreadyApplied
                } else {
                    FailureReason::Exists
                });
            }
            let (content, outcome) = patch_lines(&[], &file.hunks, &shown);
            if let Some(content) = content {
                let mode = file.new_mode;
                overlay.set(new, Entry::File { content, mode });
            }
            Ok(outcome)
        }
        FileKind::Delete => {
            let Some(existing) = overlay.read(old)? else {
                return whole(FailureReason::AlreadyDeleted);
            };
            let (content, outcome) = patch_lines(&existing, &file.hunks, &shown);
            match content {
                Some(rest) if !rest.is_empty() => whole(FailureReason::NotEmptied),
                Some(_) => {
                    overlay.set(old, Entry::Gone);
                    Ok(outcome)
                }
                None => Ok(outcome),
            }
        }
        FileKind::Modify | FileKind::Rename | FileKind::Copy => {
            let moves = old != new;
            let Some(existing) = overlay.read(old)? else {
                if moves && overlay.read(new)?.is_some() && file.kind == FileKind::Rename {
                    return whole(FailureReason::AlreadyApplied);
                }
                return whole(FailureReason::Missing);
            };
            if moves && overlay.read(new)?.is_some() {
                return whole(FailureReason::TargetExists(new.to_owned()));
            }
            let (content, outcome) = patch_lines(&existing, &file.hunks, &shown);
            let Some(content) = content else {
                return Ok(outcome);
            };
            let mode = match file.new_mode {
                Some(mode) => Some(mode),
                None if moves => overlay.mode(old)?,
                None => None,
            };
            if moves && file.kind == FileKind::Rename {
                overlay.set(old, Entry::Gone);
            }
            overlay.set(new, Entry::File { content, mode });
            Ok(outcome)
        }
    }
}

#[cfg(test)]
mod tests;
