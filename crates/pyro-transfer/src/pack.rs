//! Packing a host tree into a tar stream for the guest to unpack (`tar -x`).
//!
//! The walk is depth-first with each directory's names sorted by bytes, so
//! the same tree always gives the same stream. Files are streamed through a
//! fixed buffer, never read whole. Headers are GNU (long names and link
//! targets as `././@LongLink` members) with owner 0:0 and no user or group
//! names: the guest decides ownership, not the host's uid. Modes keep the
//! permission bits (`0o777`), never setuid, setgid or sticky.

use std::fs::Metadata;
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

use crate::exclude::Excludes;

/// How to pack.
#[derive(Debug, Clone, Default)]
pub struct PackOptions {
    /// Paths to leave out, relative to the source root; see the crate docs
    /// for the pattern syntax (`target`, `**/__pycache__`, `*.log`).
    pub exclude: Vec<String>,
    /// If the source path itself is a symlink, pack what it points to.
    /// Otherwise `pack_dir` refuses it and `pack_file` packs the link itself.
    /// Symlinks below the root are always packed as symlinks.
    pub follow_root_symlink: bool,
}

/// What a pack wrote and what it left out.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PackReport {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of file contents written.
    pub bytes: u64,
    /// Sockets, fifos and device nodes left out.
    pub skipped: u64,
    /// Paths left out by an exclude pattern (a directory counts once).
    pub excluded: u64,
    /// Files whose size changed while they were read; their entry holds the
    /// size seen first, cut short or padded with zeros.
    pub changed: u64,
}

/// Why a pack failed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    #[error("could not read '{}'", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("'{}' is not a directory; name a directory, or pack a single file", path.display())]
    NotADirectory { path: PathBuf },

    #[error("'{}' is not a regular file or symlink; name a regular file", path.display())]
    NotAFile { path: PathBuf },

    #[error("'{}' is a symlink; name the directory it points to, or follow the root symlink", path.display())]
    RootSymlink { path: PathBuf },

    #[error("could not pack '{}'", path.display())]
    Entry {
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    #[error("could not finish the archive stream")]
    Finish(#[source] io::Error),

    #[error("exclude pattern '{pattern}' {reason}")]
    BadExclude {
        pattern: String,
        reason: &'static str,
    },
}

const WRITE_BUFFER: usize = 256 * 1024;

/// Streams the contents of directory `src` (not `src` itself) as a tar
/// archive to `writer`: member names are relative, without a leading `./`.
pub fn pack_dir(
    src: &Path,
    writer: impl Write,
    opts: &PackOptions,
) -> Result<PackReport, PackError> {
    let excludes = Excludes::parse(&opts.exclude).map_err(|bad| PackError::BadExclude {
        pattern: bad.pattern,
        reason: bad.reason,
    })?;
    let mut meta = lstat(src)?;
    if meta.file_type().is_symlink() {
        if !opts.follow_root_symlink {
            return Err(PackError::RootSymlink {
                path: src.to_path_buf(),
            });
        }
        meta = fs_err::metadata(src).map_err(|source| source_error(src, source))?;
    }
    if !meta.is_dir() {
        return Err(PackError::NotADirectory {
            path: src.to_path_buf(),
        });
    }
    let mut packer = Packer::new(writer);
    // An explicit stack rather than recursion: depth is the tree's, not ours.
    let mut stack = vec![sorted_children(src)?.into_iter()];
    let mut relative = PathBuf::new();
    while let Some(children) = stack.last_mut() {
        let Some(name) = children.next() else {
            stack.pop();
            relative.pop();
            continue;
        };
        relative.push(&name);
        if excludes.excludes(&relative) {
            packer.report.excluded += 1;
            relative.pop();
            continue;
        }
        let path = src.join(&relative);
        let meta = lstat(&path)?;
        if meta.is_dir() {
            packer.dir(&path, &relative, &meta)?;
            stack.push(sorted_children(&path)?.into_iter());
            continue; // `relative` is popped when this directory is done
        }
        packer.node(&path, &relative, &meta)?;
        relative.pop();
    }
    packer.finish()
}

/// Streams the single file `src` as a tar archive holding one member named
/// after its file name. A symlink is packed as a symlink unless
/// `follow_root_symlink` is set.
pub fn pack_file(
    src: &Path,
    writer: impl Write,
    opts: &PackOptions,
) -> Result<PackReport, PackError> {
    let not_a_file = || PackError::NotAFile {
        path: src.to_path_buf(),
    };
    let name = src.file_name().ok_or_else(not_a_file)?;
    let mut meta = lstat(src)?;
    if meta.file_type().is_symlink() && opts.follow_root_symlink {
        meta = fs_err::metadata(src).map_err(|source| source_error(src, source))?;
    }
    if !meta.is_file() && !meta.file_type().is_symlink() {
        return Err(not_a_file());
    }
    let mut packer = Packer::new(writer);
    packer.node(src, Path::new(name), &meta)?;
    packer.finish()
}

fn source_error(path: &Path, source: io::Error) -> PackError {
    PackError::Source {
        path: path.to_path_buf(),
        source,
    }
}

fn lstat(path: &Path) -> Result<Metadata, PackError> {
    fs_err::symlink_metadata(path).map_err(|source| source_error(path, source))
}

fn sorted_children(dir: &Path) -> Result<Vec<std::ffi::OsString>, PackError> {
    let error = |source| source_error(dir, source);
    let mut names = Vec::new();
    for entry in fs_err::read_dir(dir).map_err(error)? {
        names.push(
            entry
                .map_err(|source| source_error(dir, source))?
                .file_name(),
        );
    }
    names.sort();
    Ok(names)
}

struct Packer<W: Write> {
    builder: tar::Builder<BufWriter<W>>,
    report: PackReport,
}

impl<W: Write> Packer<W> {
    fn new(writer: W) -> Self {
        Packer {
            builder: tar::Builder::new(BufWriter::with_capacity(WRITE_BUFFER, writer)),
            report: PackReport::default(),
        }
    }

    fn dir(&mut self, path: &Path, relative: &Path, meta: &Metadata) -> Result<(), PackError> {
        let mut header = header(meta, EntryType::Directory);
        self.builder
            .append_data(&mut header, relative, io::empty())
            .map_err(|source| entry_error(path, source))?;
        self.report.dirs += 1;
        Ok(())
    }

    /// A regular file or symlink; anything else is counted as skipped.
    fn node(&mut self, path: &Path, relative: &Path, meta: &Metadata) -> Result<(), PackError> {
        let kind = meta.file_type();
        if kind.is_symlink() {
            let target = fs_err::read_link(path).map_err(|source| source_error(path, source))?;
            let mut header = header(meta, EntryType::Symlink);
            header.set_mode(0o777);
            self.builder
                .append_link(&mut header, relative, &target)
                .map_err(|source| entry_error(path, source))?;
            self.report.symlinks += 1;
        } else if kind.is_file() {
            let file = fs_err::File::open(path).map_err(|source| source_error(path, source))?;
            // Describe the file as opened, not as listed a moment ago.
            let meta = file
                .metadata()
                .map_err(|source| source_error(path, source))?;
            let mut header = header(&meta, EntryType::Regular);
            header.set_size(meta.len());
            let mut data = ExactLen {
                file,
                remaining: meta.len(),
                changed: false,
            };
            self.builder
                .append_data(&mut header, relative, &mut data)
                .map_err(|source| entry_error(path, source))?;
            self.report.changed += u64::from(data.changed);
            self.report.files += 1;
            self.report.bytes += meta.len();
        } else {
            self.report.skipped += 1;
        }
        Ok(())
    }

    fn finish(self) -> Result<PackReport, PackError> {
        let writer = self.builder.into_inner().map_err(PackError::Finish)?;
        let mut writer = writer
            .into_inner()
            .map_err(|err| PackError::Finish(err.into_error()))?;
        writer.flush().map_err(PackError::Finish)?;
        Ok(self.report)
    }
}

fn entry_error(path: &Path, source: io::Error) -> PackError {
    PackError::Entry {
        path: path.to_path_buf(),
        source,
    }
}

fn header(meta: &Metadata, kind: EntryType) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(kind);
    header.set_mode(meta.permissions().mode() & 0o777);
    header.set_mtime(u64::try_from(meta.mtime()).unwrap_or(0));
    header.set_uid(0);
    header.set_gid(0);
    header.set_size(0);
    header
}

/// Yields exactly `remaining` bytes of a file even if it changes while being
/// read: a longer file is cut, a shorter one padded with zeros. Either way
/// the stream stays well-formed and `changed` is set.
struct ExactLen {
    file: fs_err::File,
    remaining: u64,
    changed: bool,
}

impl Read for ExactLen {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = usize::try_from(self.remaining)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        if want == 0 {
            return Ok(0);
        }
        let mut read = self.file.read(&mut buf[..want])?;
        if read == 0 {
            self.changed = true;
            buf[..want].fill(0);
            read = want;
        }
        self.remaining -= read as u64;
        if self.remaining == 0 && !self.changed {
            let mut probe = [0u8; 1];
            if self.file.read(&mut probe)? != 0 {
                self.changed = true;
            }
        }
        Ok(read)
    }
}
