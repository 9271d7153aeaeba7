//! Unified diffs for pyro workspaces: parse them, apply them atomically, and
//! produce them.
//!
//! This crate backs `pyro workspace patch apply` and `pyro workspace diff`. It
//! is pure logic and is linked into the static guest agent as well as the host,
//! so it must stay small: std, `similar` (the Myers diff) and `thiserror`
//! only; no async runtime, no VM knowledge, and no file-system access of its
//! own. The caller reaches files through the [`Tree`] trait and performs every
//! write itself.
//!
//! - [`parse`] reads `diff -u`/`diff -ruN` and `git diff`/`git format-patch`
//!   output into a [`Patch`].
//! - [`apply`] computes the full result of a patch against a [`Tree`] without
//!   writing anything: either every hunk of every file applies and the caller
//!   gets an [`ApplyReport`] listing the writes and deletes to stage, or
//!   nothing applies and [`ApplyError`] names every failing hunk and why.
//! - [`diff_files`] renders one file's change as a git-style diff that
//!   [`parse`] and [`apply`] (and `git apply`) accept.
//! - [`DiffStat`] summarises a patch for humans.
//!
//! Path safety is the caller's job (it confines paths to `/workspace`), but
//! [`apply`] refuses empty, absolute and `..`-containing patch paths so a
//! careless caller cannot be walked out of its root.

mod apply;
mod diff;
mod matching;
mod parse;
mod patch;
mod path;
mod report;
mod stat;
mod tree;

pub use apply::{apply, ApplyError, ApplyReport, Change, Failure, FailureReason, HunkOffset};
pub use diff::{diff_files, is_binary, DEFAULT_CONTEXT};
pub use parse::{parse, ParseError};
pub use patch::{FileKind, FilePatch, Hunk, HunkLine, LineKind, Patch};
pub use path::{check_path, PathError};
pub use stat::DiffStat;
pub use tree::{MemoryTree, Tree};

/// The mode git gives a regular, non-executable file.
pub const MODE_FILE: u32 = 0o100644;
/// The mode git gives an executable file.
pub const MODE_EXECUTABLE: u32 = 0o100755;
