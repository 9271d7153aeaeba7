//! The knobs and the report of an unpack.

/// Caps on what one unpack may write. The defaults suit a workspace export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// All bytes read for members (file contents, skipped data, long names).
    pub max_total_bytes: u64,
    /// Members of the archive, not counting long-name and PAX headers.
    pub max_entries: u64,
    /// The largest single file.
    pub max_file_bytes: u64,
    /// The longest member name after normalisation, in bytes.
    pub max_path_len: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_total_bytes: 2 << 30,
            max_entries: 100_000,
            max_file_bytes: 2 << 30,
            max_path_len: 4096,
        }
    }
}

/// What shape of output the caller wants.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Expect {
    /// The archive must hold exactly one regular file at its root (a `./`
    /// entry aside); it is written to the output path as a file.
    File,
    /// The archive's contents become the output directory.
    Dir,
    /// A file if the archive holds exactly one member, a regular file at its
    /// root, and the output path is not an existing empty directory; else a
    /// directory.
    #[default]
    Any,
}

/// How to unpack.
#[derive(Debug, Clone, Default)]
pub struct UnpackOptions {
    pub limits: Limits,
    pub expect: Expect,
    /// Replace an existing output (file, directory or symlink) instead of
    /// refusing. The old output is removed only after the new one is in place.
    pub overwrite: bool,
    /// Leave out every member with a `.git` path component (and report
    /// it): git metadata must not land where a host's git would run it.
    pub skip_git_metadata: bool,
}

/// What the output turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputKind {
    File,
    Dir,
}

/// What an unpack wrote and what it left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackReport {
    pub output: OutputKind,
    pub files: u64,
    /// Directories created, listed or implied by a member's parents.
    pub dirs: u64,
    pub symlinks: u64,
    pub hard_links: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Device nodes and fifos left out.
    pub skipped_special: u64,
    /// Symlinks left out because they point outside the output.
    pub skipped_symlinks: u64,
    /// Members left out under `skip_git_metadata`.
    pub skipped_git: u64,
    /// One line per member left out (at most [`MAX_WARNINGS`], then a tally).
    pub warnings: Vec<String>,
}

/// How many warnings a report lists before summing up the rest.
pub const MAX_WARNINGS: usize = 100;
