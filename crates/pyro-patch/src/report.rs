//! What applying a patch reports: the changes to make, or every failure.
//! Shared by the applier, the hunk matcher and the trees that carry the
//! changes out.

use std::fmt;
use std::io;

use crate::path::PathError;

/// What a successful apply would do, for the caller to stage and commit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Deletes first, then writes; each path at most once.
    pub changes: Vec<Change>,
    /// Hunks that applied away from their stated line.
    pub offsets: Vec<HunkOffset>,
}

/// One file operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Write the whole content. `mode` is `None` when the patch leaves the
    /// mode alone (keep the existing one; a new file gets the default).
    Write {
        path: String,
        content: Vec<u8>,
        mode: Option<u32>,
    },
    Delete {
        path: String,
    },
}

/// A hunk that matched `offset` lines away from its stated position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HunkOffset {
    pub path: String,
    /// 1-based hunk number within its file.
    pub hunk: usize,
    pub offset: isize,
}

/// Why a patch did not apply. Nothing is changed in either case.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("patch does not apply; nothing was changed:{}", Listed(.0))]
    Rejected(Vec<Failure>),
    #[error("cannot read '{path}'")]
    Read {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// One failing file or hunk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// The path the file patch is about.
    pub path: String,
    /// 1-based hunk number, or `None` when the whole file failed.
    pub hunk: Option<usize>,
    /// The hunk's header (`@@ -1,3 +1,4 @@`) when `hunk` is set.
    pub header: Option<String>,
    pub reason: FailureReason,
}

/// Why one file or hunk did not apply.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FailureReason {
    #[error("binary patches are not supported; write the file instead")]
    Binary,
    #[error(transparent)]
    UnsafePath(#[from] PathError),
    #[error("file does not exist; check the path or create it with a new-file patch")]
    Missing,
    #[error("file already exists; patch it as a change instead of a creation")]
    Exists,
    #[error("target '{0}' already exists; delete it first or patch it as a change")]
    TargetExists(String),
    #[error("looks already applied")]
    AlreadyApplied,
    #[error("file does not exist; looks already deleted")]
    AlreadyDeleted,
    #[error("file has content the deletion does not remove; it changed since the patch was made")]
    NotEmptied,
    #[error("does not match at line {line}: expected '{expected}', found {}", found.as_ref().map_or("end of file".into(), |f| format!("'{f}'")))]
    Mismatch {
        line: usize,
        expected: String,
        found: Option<String>,
    },
    #[error(
        "hunk has no trailing context, so it must end the file, but line {line} follows: '{found}'"
    )]
    NotAtEnd { line: usize, found: String },
    #[error("line {line} differs only in its line ending: expected {expected}, found {found}")]
    LineEnding {
        line: usize,
        expected: &'static str,
        found: &'static str,
    },
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.hunk, &self.header) {
            (Some(n), Some(h)) => write!(f, "{}: hunk {n} {h}: {}", self.path, self.reason),
            (Some(n), None) => write!(f, "{}: hunk {n}: {}", self.path, self.reason),
            _ => write!(f, "{}: {}", self.path, self.reason),
        }
    }
}

/// Formats failures one per indented line.
struct Listed<'a>(&'a Vec<Failure>);

impl fmt::Display for Listed<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for failure in self.0 {
            write!(f, "\n  {failure}")?;
        }
        Ok(())
    }
}

/// One file patch's outcome: where each hunk landed, or why some did not.
pub(crate) type FileResult = Result<Vec<HunkOffset>, Vec<Failure>>;
