//! Why an unpack failed. Member names in messages come from an untrusted
//! archive and are already made printable (`names::shown`).

use std::io;
use std::path::PathBuf;

/// Why an unpack failed. After any of these, nothing is left at the output
/// path (an existing output being overwritten is left as it was).
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error(
        "'{}' already exists and is not an empty directory; choose a new output path or overwrite it",
        dest.display()
    )]
    DestExists { dest: PathBuf },

    #[error("the parent directory of '{}' does not exist; create it first", dest.display())]
    DestParentMissing { dest: PathBuf },

    #[error("'{}' cannot be an output path; name a file or directory to create", dest.display())]
    InvalidDest { dest: PathBuf },

    #[error("could not write '{}'", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not read the archive stream; the export is corrupt or was cut off")]
    Read(#[source] io::Error),

    #[error("the archive stream ended early; the export was cut off, try again")]
    StreamEnded,

    #[error("the archive is corrupt: it holds {reason}")]
    Corrupt { reason: String },

    #[error(
        "the archive ends inside '{name}' ({got} of {expected} bytes); the export was cut off, try again"
    )]
    Truncated {
        name: String,
        expected: u64,
        got: u64,
    },

    #[error(
        "archive member '{name}' {how}, which would land outside the output; refusing the export"
    )]
    Escapes { name: String, how: &'static str },

    #[error(
        "archive member '{name}' lies under '{parent}', which is a symlink or a file in the export; refusing the export"
    )]
    ThroughSymlink { name: String, parent: String },

    #[error(
        "hard link '{name}' points at '{target}', which is not an earlier regular file of the export; refusing the export"
    )]
    BadHardLink { name: String, target: String },

    #[error("the archive lists '{name}' more than once; refusing the export")]
    Duplicate { name: String },

    #[error("archive member '{name}' is a {kind}, which cannot be unpacked; export without it")]
    Unsupported { name: String, kind: &'static str },

    #[error("export exceeds {limit}; export a smaller path")]
    TooLarge { limit: String },

    #[error("file '{name}' in the export exceeds {limit}; export a smaller path")]
    FileTooLarge { name: String, limit: String },

    #[error("export has more than {limit} entries; export a smaller path")]
    TooManyEntries { limit: u64 },

    #[error(
        "archive member '{name}' has a path longer than {limit} bytes; export a shallower path"
    )]
    PathTooLong { name: String, limit: usize },

    #[error(
        "expected a single file but the export holds {members} entries; export a file, or ask for a directory output"
    )]
    NotSingleFile { members: u64 },
}
