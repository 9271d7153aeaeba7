//! The read-only file requests: `Stat`, `ReadFile` and `ListDir`, each run on
//! its own thread with its path confined beneath a root (`confine.rs`).
//!
//! `ReadFile` decides everything before the first byte goes out (is it a
//! regular file, is it under the limit), so a refusal is one `Error` rather
//! than a truncated stream. Content and listings go through the bounded side
//! of the outbox, so a host that stops reading stalls this thread, not the
//! agent's memory.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd};

use pyro_protocol::{DirEntry, ErrorKind, FileInfo, FileKind, FrameKind, Message};

use crate::confine::{FileError, Root};
use crate::fsys::{self, file_kind, lossy};
use crate::outbox::Outbox;

/// Largest `File` frame `ReadFile` sends.
const READ_CHUNK: usize = 64 * 1024;
/// A `DirEntries` message is sent once its entries' JSON reaches this size,
/// well under the frame cap whatever one entry holds (two paths ≤ 4 KiB,
/// each at most six bytes of JSON per byte).
const ENTRIES_BATCH_BYTES: usize = 128 * 1024;

/// `Stat`: describes `path` without following a final symlink.
pub fn stat(root: Option<&str>, path: &str, outbox: &Outbox, id: u32) -> Result<(), FileError> {
    let root = Root::open(root)?;
    let relative = root.relative(path);
    let fd = root
        .open_beneath(&relative, libc::O_PATH | libc::O_NOFOLLOW)
        .map_err(|err| root.error(path, err))?;
    let st = fsys::fstat(fd.as_fd()).map_err(|err| root.error(path, err))?;
    let symlink_target = match file_kind(&st) {
        FileKind::Symlink => Some(lossy(
            &fsys::readlinkat(fd.as_fd(), b"").map_err(|err| root.error(path, err))?,
        )),
        _ => None,
    };
    outbox.push_control(
        id,
        &Message::FileInfo(FileInfo {
            kind: file_kind(&st),
            size: st.st_size as u64,
            mode: st.st_mode & 0o7777,
            symlink_target,
        }),
    );
    Ok(())
}

/// `ReadFile`: sends `FileInfo` and the content; returns the bytes sent.
pub fn read(
    root: Option<&str>,
    path: &str,
    max_bytes: u64,
    outbox: &Outbox,
    id: u32,
) -> Result<u64, FileError> {
    let root = Root::open(root)?;
    let relative = root.relative(path);
    // O_NONBLOCK: opening a FIFO must not hang the request.
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY;
    let fd = root
        .open_beneath(&relative, flags)
        .map_err(|err| root.error(path, err))?;
    let st = fsys::fstat(fd.as_fd()).map_err(|err| root.error(path, err))?;
    match file_kind(&st) {
        FileKind::File => {}
        FileKind::Dir => {
            return Err(FileError::new(
                ErrorKind::InvalidRequest,
                format!("{path} is a directory"),
            ))
        }
        _ => {
            return Err(FileError::new(
                ErrorKind::InvalidRequest,
                format!("{path} is not a regular file"),
            ))
        }
    }
    let size = st.st_size as u64;
    if size > max_bytes {
        return Err(over_limit(path, size, max_bytes));
    }
    outbox.push_control(
        id,
        &Message::FileInfo(FileInfo {
            kind: FileKind::File,
            size,
            mode: st.st_mode & 0o7777,
            symlink_target: None,
        }),
    );
    let mut file = File::from(fd);
    let mut buf = vec![0u8; READ_CHUNK];
    let mut sent = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => return Ok(sent),
            Ok(n) => n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(root.error(path, err)),
        };
        sent += n as u64;
        if sent > max_bytes {
            // It grew while being read; the host drops what it got.
            return Err(over_limit(path, sent, max_bytes));
        }
        outbox.push_data(id, FrameKind::File, &buf[..n], None);
    }
}

fn over_limit(path: &str, size: u64, max_bytes: u64) -> FileError {
    FileError::new(
        ErrorKind::InvalidRequest,
        format!(
            "{path}: file is {size} bytes, over the {max_bytes} byte limit; \
             read it with exec (e.g. head -c) or export it"
        ),
    )
}

/// `ListDir`: sends the listing as `DirEntries` slices.
pub fn list(
    root: Option<&str>,
    path: &str,
    recursive: bool,
    max_entries: u64,
    outbox: &Outbox,
    id: u32,
) -> Result<(), FileError> {
    let root = Root::open(root)?;
    let relative = root.relative(path);
    let dir = root
        .open_beneath(&relative, libc::O_RDONLY | libc::O_DIRECTORY)
        .map_err(|err| match err.raw_os_error() {
            Some(libc::ENOTDIR) => FileError::new(
                ErrorKind::InvalidRequest,
                format!("{path} is not a directory"),
            ),
            _ => root.error(path, err),
        })?;
    let prefix = display_prefix(&relative);
    let mut listing = Listing {
        outbox,
        id,
        recursive,
        remaining: max_entries,
        batch: Vec::new(),
        batch_bytes: 0,
        truncated: false,
    };
    listing
        .walk(dir.as_fd(), &prefix)
        .map_err(|err| root.error(path, err))?;
    outbox.push_bounded_message(
        id,
        &Message::DirEntries {
            entries: std::mem::take(&mut listing.batch),
            truncated: listing.truncated,
        },
    );
    Ok(())
}

/// How entry paths start: the listed directory relative to the root.
fn display_prefix(relative: &str) -> String {
    let trimmed = relative.trim_end_matches('/');
    let trimmed = trimmed.strip_prefix("./").unwrap_or(trimmed);
    if trimmed == "." || trimmed.is_empty() {
        String::new()
    } else {
        format!("{trimmed}/")
    }
}

struct Listing<'a> {
    outbox: &'a Outbox,
    id: u32,
    recursive: bool,
    remaining: u64,
    batch: Vec<DirEntry>,
    batch_bytes: usize,
    truncated: bool,
}

impl Listing<'_> {
    /// Depth first: each directory's entries in byte order of their names,
    /// a directory's contents right after it. Never descends through a
    /// symlink (subdirectories are opened with `O_NOFOLLOW`).
    fn walk(&mut self, dir: BorrowedFd<'_>, prefix: &str) -> io::Result<()> {
        for name in fsys::read_names(dir)? {
            if self.truncated {
                return Ok(());
            }
            if self.remaining == 0 {
                self.truncated = true;
                return Ok(());
            }
            let st = match fsys::lstatat(dir, &name) {
                Ok(st) => st,
                // Removed since the directory was read.
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(err) => return Err(err),
            };
            let kind = file_kind(&st);
            let symlink_target = match kind {
                FileKind::Symlink => fsys::readlinkat(dir, &name).ok().map(|t| lossy(&t)),
                _ => None,
            };
            let path = format!("{prefix}{}", lossy(&name));
            self.push(DirEntry {
                path: path.clone(),
                kind,
                size: st.st_size as u64,
                mode: st.st_mode & 0o7777,
                symlink_target,
            });
            // Deeper paths could outgrow a frame; such trees are listed to
            // this depth only.
            if self.recursive && kind == FileKind::Dir && path.len() < libc::PATH_MAX as usize {
                // An unreadable or vanished subdirectory is listed, not walked.
                if let Ok(sub) = fsys::openat(dir, &name, libc::O_RDONLY | libc::O_DIRECTORY, 0) {
                    self.walk(sub.as_fd(), &format!("{path}/"))?;
                }
            }
        }
        Ok(())
    }

    fn push(&mut self, entry: DirEntry) {
        self.remaining -= 1;
        self.batch_bytes += serde_json::to_vec(&entry).map_or(8192, |json| json.len() + 1);
        self.batch.push(entry);
        if self.batch_bytes >= ENTRIES_BATCH_BYTES {
            self.batch_bytes = 0;
            self.outbox.push_bounded_message(
                self.id,
                &Message::DirEntries {
                    entries: std::mem::take(&mut self.batch),
                    truncated: false,
                },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_relative_to_the_root() {
        assert_eq!(display_prefix("."), "");
        assert_eq!(display_prefix("src"), "src/");
        assert_eq!(display_prefix("src/"), "src/");
        assert_eq!(display_prefix("./src"), "src/");
    }
}
