//! Where an unpack lands: checking the output path, the staging directory
//! beside it, and the final rename that makes the output appear all at once.
//!
//! Staging next to the output keeps it on the same filesystem, so the last
//! step is a `rename(2)`: the output path holds either nothing new or the
//! whole result, never a partial tree. The staging directory is removed when
//! dropped unless it was renamed into place.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};
use std::{fs, io};

use std::os::unix::fs::DirBuilderExt;

use super::error::UnpackError;

/// What is at the output path before we write it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum DestState {
    Absent,
    EmptyDir,
    Occupied,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> UnpackError + '_ {
    move |source| UnpackError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks the output path can be written: it has a name, its parent is a
/// directory, and says what is there now. Never follows `dest` itself.
pub(crate) fn inspect(dest: &Path) -> Result<DestState, UnpackError> {
    if dest.file_name().is_none() {
        return Err(UnpackError::InvalidDest {
            dest: dest.to_path_buf(),
        });
    }
    let parent = parent_of(dest);
    if !parent.is_dir() {
        return Err(UnpackError::DestParentMissing {
            dest: dest.to_path_buf(),
        });
    }
    match fs::symlink_metadata(dest) {
        Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(DestState::Absent),
        Err(err) => Err(io_error(dest)(err)),
        Ok(meta) if meta.is_dir() => {
            let mut listing = fs::read_dir(dest).map_err(io_error(dest))?;
            Ok(if listing.next().is_none() {
                DestState::EmptyDir
            } else {
                DestState::Occupied
            })
        }
        Ok(_) => Ok(DestState::Occupied),
    }
}

fn parent_of(dest: &Path) -> &Path {
    match dest.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A fresh name beside `dest` that nothing uses: `.<name>.pyro-<tag>-<unique>`.
fn sibling_name(dest: &Path, tag: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let name = dest.file_name().unwrap_or_default().to_string_lossy();
    let short: String = name.chars().take(64).collect();
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let unique = COUNTER.fetch_add(1, Ordering::Relaxed);
    parent_of(dest).join(format!(
        ".{short}.pyro-{tag}-{}-{nanos:x}-{unique}",
        std::process::id()
    ))
}

/// The staging directory an unpack writes into.
#[derive(Debug)]
pub(crate) struct Staging {
    path: PathBuf,
    armed: bool,
}

impl Staging {
    /// Creates an empty, owner-only staging directory beside `dest`.
    pub(crate) fn create(dest: &Path) -> Result<Staging, UnpackError> {
        loop {
            let path = sibling_name(dest, "unpack");
            match fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => return Ok(Staging { path, armed: true }),
                Err(err) if err.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(err) => return Err(io_error(&path)(err)),
            }
        }
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Moves the result into place: the whole staging directory, or the
    /// single file `file_name` inside it. With `overwrite`, an existing output
    /// is moved aside first and removed only once the new one is in place.
    pub(crate) fn commit(
        mut self,
        dest: &Path,
        file_name: Option<&Path>,
        overwrite: bool,
    ) -> Result<(), UnpackError> {
        let source = match file_name {
            Some(name) => self.path.join(name),
            None => self.path.clone(),
        };
        let state = inspect(dest)?;
        let replaces_empty_dir = state == DestState::EmptyDir && file_name.is_none();
        if state == DestState::Absent || replaces_empty_dir {
            fs::rename(&source, dest).map_err(io_error(dest))?;
        } else if overwrite {
            replace(&source, dest)?;
        } else {
            return Err(UnpackError::DestExists {
                dest: dest.to_path_buf(),
            });
        }
        if file_name.is_none() {
            self.armed = false;
        }
        Ok(())
    }
}

/// Swaps `source` in for an existing `dest`, putting `dest` back if that fails.
fn replace(source: &Path, dest: &Path) -> Result<(), UnpackError> {
    let aside = sibling_name(dest, "old");
    fs::rename(dest, &aside).map_err(io_error(dest))?;
    if let Err(err) = fs::rename(source, dest) {
        let _ = fs::rename(&aside, dest);
        return Err(io_error(dest)(err));
    }
    let removed = match fs::symlink_metadata(&aside) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(&aside),
        _ => fs::remove_file(&aside),
    };
    removed.map_err(io_error(&aside))
}

impl Drop for Staging {
    fn drop(&mut self) {
        if self.armed {
            // Best effort: a failure here leaves a hidden sibling, never a
            // partial output. `remove_dir_all` does not follow symlinks.
            let _ = fs::remove_dir_all(&self.path);
        }
    }
}
