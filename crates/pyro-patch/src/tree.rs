//! The read-only view of a file tree that [`crate::apply`] patches against,
//! and an in-memory implementation for tests and for callers that already
//! hold the files.

use std::collections::BTreeMap;
use std::io;

use crate::report::{ApplyReport, Change};
use crate::MODE_FILE;

/// Read access to the files a patch names, by path relative to the root the
/// caller confines them to. `apply` never writes through it.
pub trait Tree {
    /// The file's content, or `None` when there is no such file.
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>>;
    /// The file's git-style mode (`0o100644`, `0o100755`, `0o120000`), or
    /// `None` when there is no such file.
    fn mode(&self, path: &str) -> io::Result<Option<u32>>;
}

/// A tree held in memory: path → (content, mode).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemoryTree {
    pub files: BTreeMap<String, (Vec<u8>, u32)>,
}

impl MemoryTree {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds or replaces a file.
    pub fn insert(&mut self, path: &str, content: impl Into<Vec<u8>>, mode: u32) {
        self.files.insert(path.to_owned(), (content.into(), mode));
    }

    /// Performs the changes of a report; a write without a mode keeps the
    /// file's mode, or makes a new file `0o100644`.
    pub fn commit(&mut self, report: &ApplyReport) {
        for change in &report.changes {
            match change {
                Change::Delete { path } => {
                    self.files.remove(path);
                }
                Change::Write {
                    path,
                    content,
                    mode,
                } => {
                    let kept = self.files.get(path).map_or(MODE_FILE, |(_, m)| *m);
                    self.files
                        .insert(path.clone(), (content.clone(), mode.unwrap_or(kept)));
                }
            }
        }
    }
}

impl Tree for MemoryTree {
    fn read(&self, path: &str) -> io::Result<Option<Vec<u8>>> {
        Ok(self.files.get(path).map(|(content, _)| content.clone()))
    }

    fn mode(&self, path: &str) -> io::Result<Option<u32>> {
        Ok(self.files.get(path).map(|(_, mode)| *mode))
    }
}
