//! `WriteFile`: replacing one file atomically with the content the host
//! streams after the request.
//!
//! The content goes to a fresh temporary file (`O_EXCL`, mode 0600) in the
//! target's own directory, which was opened beneath the root (`confine.rs`);
//! once the host's empty `File` frame ends it, the file gets its mode, is
//! synced, and is renamed over the target in that directory. So a reader
//! sees the old content or the new, never a mix; and on any failure (disk
//! full, the host overrunning its window or cancelling with `Signal`) the
//! temporary file is removed and
//! the old content stays. A symlink at the target is replaced, not followed.
//!
//! The reader thread queues the host's frames in an [`Inflow`], which this
//! thread drains and acknowledges, so a slow disk never stalls the channel.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use pyro_protocol::ErrorKind;

use crate::confine::{split_parent, FileError, Root};
use crate::fsys::{self, file_kind};
use crate::inflow::{Inflow, Next};

/// Mode of a new file when the request names none.
const DEFAULT_MODE: u32 = 0o644;

/// What to write where.
pub struct WriteRequest {
    pub root: Option<String>,
    pub path: String,
    pub mode: Option<u32>,
    pub create_parents: bool,
}

/// Writes the file from `inflow`; returns the number of bytes written.
pub fn write(request: &WriteRequest, inflow: &Inflow) -> Result<u64, FileError> {
    let path = request.path.as_str();
    let root = Root::open(request.root.as_deref())?;
    let relative = root.relative(path);
    let Some((parent, name)) = split_parent(&relative) else {
        return Err(FileError::new(
            ErrorKind::InvalidRequest,
            format!("{path} names a directory, not a file"),
        ));
    };
    let dir = if request.create_parents {
        root.make_dirs(parent)
    } else {
        root.open_beneath(parent, libc::O_RDONLY | libc::O_DIRECTORY)
    }
    .map_err(|err| root.error(path, err))?;
    let existing = match fsys::lstatat(dir.as_fd(), name.as_bytes()) {
        Ok(st) => Some(st),
        Err(err) if err.raw_os_error() == Some(libc::ENOENT) => None,
        Err(err) => return Err(root.error(path, err)),
    };
    let mut mode = request.mode.unwrap_or(DEFAULT_MODE);
    if let Some(st) = &existing {
        match file_kind(st) {
            pyro_protocol::FileKind::Dir => {
                return Err(FileError::new(
                    ErrorKind::InvalidRequest,
                    format!("{path} is a directory"),
                ))
            }
            pyro_protocol::FileKind::File if request.mode.is_none() => mode = st.st_mode & 0o7777,
            _ => {}
        }
    }

    let temp_name = temp_name(name);
    let temp = fsys::openat(
        dir.as_fd(),
        temp_name.as_bytes(),
        libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL,
        0o600,
    )
    .map_err(|err| root.error(path, err))?;
    let mut temp = TempFile {
        dir,
        name: temp_name,
        file: Some(File::from(temp)),
    };
    let written = fill(&mut temp, inflow).map_err(|failure| match failure {
        Failure::Io(err) => root.error(path, err),
        Failure::Host(kind, message) => FileError::new(kind, message),
    })?;
    temp.commit(name, mode)
        .map_err(|err| root.error(path, err))?;
    Ok(written)
}

enum Failure {
    Io(io::Error),
    Host(ErrorKind, String),
}

/// Copies the host's chunks into the temporary file until the end.
fn fill(temp: &mut TempFile, inflow: &Inflow) -> Result<u64, Failure> {
    let file = temp.file.as_mut().expect("open until commit");
    let mut written = 0u64;
    loop {
        match inflow.next() {
            Next::Data(chunk) => {
                file.write_all(&chunk).map_err(Failure::Io)?;
                written += chunk.len() as u64;
                inflow.delivered(chunk.len());
            }
            Next::End => return Ok(written),
            Next::Failed(kind, message) => return Err(Failure::Host(kind, message)),
        }
    }
}

/// `.<name>.pyro-<pid>-<n>.tmp`, cut to fit the 255-byte name limit.
fn temp_name(name: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let suffix = format!(
        ".pyro-{}-{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut stem = name;
    while 1 + stem.len() + suffix.len() > 255 {
        let mut cut = stem.len() - 1;
        while !stem.is_char_boundary(cut) {
            cut -= 1;
        }
        stem = &stem[..cut];
    }
    format!(".{stem}{suffix}")
}

/// The temporary file, removed unless committed.
struct TempFile {
    dir: OwnedFd,
    name: String,
    file: Option<File>,
}

impl TempFile {
    /// Sets the mode, syncs, and renames over `target`.
    fn commit(&mut self, target: &str, mode: u32) -> io::Result<()> {
        let file = self.file.as_ref().expect("open until commit");
        fsys::fchmod(file.as_fd(), mode)?;
        file.sync_all()?;
        fsys::renameat(self.dir.as_fd(), self.name.as_bytes(), target.as_bytes())?;
        self.file = None;
        Ok(())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fsys::unlinkat(self.dir.as_fd(), self.name.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_names_are_hidden_unique_and_short_enough() {
        let a = temp_name("a.txt");
        let b = temp_name("a.txt");
        assert!(a.starts_with(".a.txt.pyro-") && a.ends_with(".tmp"), "{a}");
        assert_ne!(a, b);
        let long = temp_name(&"é".repeat(127));
        assert!(long.len() <= 255, "{}", long.len());
    }
}
