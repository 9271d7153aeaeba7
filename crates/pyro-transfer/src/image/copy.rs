//! Copying one file's content into the image while hashing it as a Git
//! blob.
//!
//! A file is read through one fixed buffer. Holes of a sparse file (found
//! with `SEEK_DATA`/`SEEK_HOLE`) stay holes: no blocks, no extent. The size
//! is the one the walk saw: a file that grew is cut there, one that shrank
//! or vanished reads as zeros past its end, and either is reported as
//! changed, so the image, the inode and the blob always agree.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use sha1::{Digest, Sha1};

use super::ext4::{self, Blocks, Extent};
use super::walk::{open_beneath, read_error};
use super::ImageError;
use crate::dirfd::Dir;

const BUFFER: usize = 1 << 20;

/// One file, copied.
pub(super) struct Copied {
    pub(super) extents: Vec<Extent>,
    pub(super) blob: [u8; 20],
    pub(super) changed: bool,
}

/// Copies files through one buffer, each opened from its directory, which
/// is opened from the root without following a symlink (the last one
/// opened is kept: a directory's files come one after another).
pub(super) struct Copier {
    buffer: Vec<u8>,
    root: Dir,
    current: Option<(u32, Option<Dir>)>,
}

/// Where a file is: its directory (index and path beneath the root), its
/// name, and its host path for messages.
pub(super) struct Source<'a> {
    pub(super) dir: u32,
    pub(super) dir_path: &'a Path,
    pub(super) name: &'a OsStr,
    pub(super) shown: PathBuf,
}

impl Copier {
    pub(super) fn new(root: Dir) -> Self {
        Copier {
            buffer: vec![0; BUFFER],
            root,
            current: None,
        }
    }

    /// Opens a file from its directory; `None` when it, or a directory on
    /// the way, is gone or no longer what the walk saw.
    fn open(&mut self, source: &Source) -> Result<Option<File>, ImageError> {
        if self.current.as_ref().map(|(dir, _)| *dir) != Some(source.dir) {
            let dir = match open_beneath(&self.root, source.dir_path) {
                Ok(dir) => Some(dir),
                Err(error) if changed(&error) => None,
                Err(error) => return Err(read_error(&source.shown, error)),
            };
            self.current = Some((source.dir, dir));
        }
        let Some((_, Some(dir))) = &self.current else {
            return Ok(None);
        };
        match dir.open_file(source.name) {
            Ok(file) if file.metadata().map(|m| m.is_file()).unwrap_or(false) => Ok(Some(file)),
            Ok(_) => Ok(None),
            Err(error) if changed(&error) => Ok(None),
            Err(error) => Err(read_error(&source.shown, error)),
        }
    }

    /// Copies `size` bytes of the file at `source` into `blocks`.
    pub(super) fn copy(
        &mut self,
        source: &Source,
        size: u64,
        sparse: bool,
        blocks: &mut Blocks,
    ) -> Result<Copied, ImageError> {
        let mut hasher = Sha1::new();
        hasher.update(format!("blob {size}\0"));
        let mut copied = Copied {
            extents: Vec::new(),
            blob: [0; 20],
            changed: false,
        };
        let file = self.open(source)?;
        let Some(file) = file else {
            copied.changed = true;
            hash_zeros(&mut hasher, size);
            copied.blob = hasher.finalize().into();
            return Ok(copied);
        };
        let block = ext4::BLOCK;
        let mut offset = 0u64;
        while offset < size {
            let (start, end) = match sparse {
                true => match data_region(&file, offset) {
                    Some((start, end)) => ((start / block * block).max(offset), end),
                    None => (size, size),
                },
                false => (offset, size),
            };
            let start = start.min(size);
            let end = end.min(size).max(start);
            hash_zeros(&mut hasher, start - offset);
            if start == end {
                offset = end.max(start);
                if start == size {
                    break;
                }
                continue;
            }
            // Whole blocks, so the next region starts on a block boundary.
            let end_aligned = end.next_multiple_of(block).min(size);
            let first_block = blocks.next();
            let mut at = start;
            while at < end_aligned {
                let want = ((end_aligned - at) as usize).min(BUFFER);
                let got = read_full(&file, &mut self.buffer[..want], at)
                    .map_err(|e| read_error(&source.shown, e))?;
                if got < want {
                    copied.changed = true;
                    self.buffer[got..want].fill(0);
                }
                hasher.update(&self.buffer[..want]);
                blocks.append(&self.buffer[..want])?;
                at += want as u64;
            }
            let len = (end_aligned - start).div_ceil(block);
            ext4::push_extent(&mut copied.extents, start / block, len, first_block);
            if copied.extents.len() > ext4::MAX_EXTENTS {
                return Err(ImageError::TooFragmented {
                    path: source.shown.clone(),
                });
            }
            offset = end_aligned;
        }
        // A file that grew past the size the walk saw is cut there.
        let mut probe = [0u8; 1];
        if matches!(file.read_at(&mut probe, size), Ok(1)) {
            copied.changed = true;
        }
        copied.blob = hasher.finalize().into();
        Ok(copied)
    }
}

/// Whether opening failed because the entry changed since the walk.
fn changed(error: &io::Error) -> bool {
    matches!(
        error.raw_os_error(),
        Some(libc::ENOENT | libc::ELOOP | libc::ENOTDIR)
    )
}

/// The next data region at or after `offset`: `(start, end)`, or `None`
/// when only a hole is left.
fn data_region(file: &File, offset: u64) -> Option<(u64, u64)> {
    let fd = file.as_raw_fd();
    // SAFETY: lseek on a descriptor this function borrows.
    let start = unsafe { libc::lseek(fd, offset as libc::off_t, libc::SEEK_DATA) };
    if start < 0 {
        return None;
    }
    // SAFETY: as above.
    let end = unsafe { libc::lseek(fd, start, libc::SEEK_HOLE) };
    Some((start as u64, if end < 0 { u64::MAX } else { end as u64 }))
}

/// Reads until `buf` is full or the file ends.
fn read_full(file: &File, buf: &mut [u8], mut at: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], at) {
            Ok(0) => break,
            Ok(n) => {
                got += n;
                at += n as u64;
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(got)
}

fn hash_zeros(hasher: &mut Sha1, mut len: u64) {
    static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];
    while len > 0 {
        let n = len.min(ZEROS.len() as u64) as usize;
        hasher.update(&ZEROS[..n]);
        len -= n as u64;
    }
}
