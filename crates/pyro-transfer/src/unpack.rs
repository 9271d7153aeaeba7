//! Unpacking an untrusted tar stream (a guest export) onto the host.
//!
//! The stream is read once, front to back, in the `tar` crate's *raw* mode:
//! this module handles GNU long names and PAX records itself so that their
//! size is capped too. Each member is checked and placed by [`Unpacker`]:
//!
//! - names: absolute or `..` is an error; `./` and `//` are normalised away;
//! - parents: walked one component at a time with `O_NOFOLLOW`; missing
//!   parents are created as directories; a parent that is a symlink, a file,
//!   or a symlink we skipped is an error;
//! - regular files: created `O_EXCL`, streamed, mode masked to `0o755`
//!   (permission bits under the umask 0022);
//! - directories, the output's own (`./`) too: mode masked to `0o755` plus
//!   `u+rwx`, so the host user can
//!   always read and remove what was exported; a directory listed twice is
//!   merged, anything else listed twice is an error;
//! - symlinks: created only if [`names::symlink_stays_inside`]; otherwise
//!   skipped with a warning in the report (guest trees often hold links such
//!   as `.venv/bin/python -> /usr/bin/python3`, which must not fail an export);
//! - hard links: only to an earlier regular file of the archive, else error;
//! - devices and fifos: skipped and counted; sparse and unknown types: error;
//! - limits: checked against headers before reading and against the bytes
//!   actually read; an early end of stream is an error.
//!
//! Everything lands in a staging directory beside the output and is renamed
//! into place only when the whole stream was good (see [`place`]).

use std::fs::{self, Permissions};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use crate::dirfd::Dir;

mod error;
mod members;
mod options;
mod place;
mod unpacker;

pub use error::UnpackError;
pub use options::{Expect, Limits, OutputKind, UnpackOptions, UnpackReport, MAX_WARNINGS};
use place::{DestState, Staging};
use unpacker::{Unpacker, COPY_BUFFER};

/// Unpacks the tar stream `reader` to `dest`, which must not exist or be an
/// empty directory unless `opts.overwrite` is set. On any error nothing is
/// left at `dest` (or the previous output is untouched).
pub fn unpack(
    reader: impl Read,
    dest: &Path,
    opts: &UnpackOptions,
) -> Result<UnpackReport, UnpackError> {
    let state = place::inspect(dest)?;
    let refuse = match (state, opts.expect) {
        (DestState::Absent, _) => false,
        (DestState::EmptyDir, Expect::File) | (DestState::Occupied, _) => !opts.overwrite,
        (DestState::EmptyDir, _) => false,
    };
    if refuse {
        return Err(UnpackError::DestExists {
            dest: dest.to_path_buf(),
        });
    }
    let staging = Staging::create(dest)?;
    let root = Dir::open(staging.path()).map_err(|source| UnpackError::Io {
        path: staging.path().to_path_buf(),
        source,
    })?;
    let mut unpacker = Unpacker::new(
        root,
        staging.path().to_path_buf(),
        opts.limits,
        opts.skip_git_metadata,
    );

    let mut archive = tar::Archive::new(BufReader::with_capacity(
        COPY_BUFFER,
        EofWatch {
            inner: reader,
            hit_eof: false,
        },
    ));
    let entries = archive.entries().map_err(UnpackError::Read)?.raw(true);
    for entry in entries {
        unpacker.member(entry.map_err(UnpackError::Read)?)?;
    }
    if archive.into_inner().into_inner().hit_eof || unpacker.pending.headers > 0 {
        return Err(UnpackError::StreamEnded);
    }
    if !unpacker.saw_root_entry {
        // The staging directory is owner-only; an output directory the
        // archive says nothing about gets the usual mode instead.
        let io = |source| UnpackError::Io {
            path: staging.path().to_path_buf(),
            source,
        };
        fs::set_permissions(staging.path(), Permissions::from_mode(0o755)).map_err(io)?;
    }
    unpacker.set_dir_times()?;

    let single = unpacker.single_root_file();
    let file_name = match opts.expect {
        Expect::Dir => None,
        Expect::File => match single {
            Some((name, _)) => Some(name),
            None => {
                return Err(UnpackError::NotSingleFile {
                    members: unpacker.members,
                })
            }
        },
        Expect::Any => single
            .filter(|&(_, only)| only && state != DestState::EmptyDir)
            .map(|(name, _)| name),
    };
    let mut report = unpacker.finish();
    report.output = match file_name {
        Some(_) => OutputKind::File,
        None => OutputKind::Dir,
    };
    staging.commit(dest, file_name.as_deref(), opts.overwrite)?;
    Ok(report)
}

/// Notes whether the stream ran dry while the archive still wanted bytes:
/// a well-formed archive ends with a zero block before that happens.
struct EofWatch<R> {
    inner: R,
    hit_eof: bool,
}

impl<R: Read> Read for EofWatch<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buf)?;
        if read == 0 && !buf.is_empty() {
            self.hit_eof = true;
        }
        Ok(read)
    }
}
