//! Placing members on disk, one `*at` call at a time from the staging root,
//! never through a symlink.

use std::ffi::OsStr;
use std::fs::{File, Permissions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use tar::Entry;

use super::unpacker::{time, Unpacker};
use super::UnpackError;
use crate::dirfd::{Dir, Kind};
use crate::names::{self, human_bytes, shown, shown_path};

impl Unpacker {
    /// Opens the directory that holds `name`, creating missing parents if
    /// `create` (and counting them). Every step refuses symlinks.
    pub(super) fn walk_parent(&self, name: &Path, create: bool) -> Result<(Dir, u64), UnpackError> {
        let parent = name.parent().unwrap_or(Path::new(""));
        let mut dir = self.root.try_clone().map_err(self.io_at(Path::new("")))?;
        let mut prefix = PathBuf::new();
        let mut created = 0;
        for component in parent.iter() {
            prefix.push(component);
            let through = || UnpackError::ThroughSymlink {
                name: shown_path(name),
                parent: shown_path(&prefix),
            };
            if self.skipped_links.contains(&prefix) {
                return Err(through());
            }
            dir = match dir.open_dir(component) {
                Ok(child) => child,
                Err(err) if err.kind() == io::ErrorKind::NotFound && create => {
                    dir.mkdir(component, 0o755).map_err(self.io_at(&prefix))?;
                    created += 1;
                    dir.open_dir(component).map_err(self.io_at(&prefix))?
                }
                Err(err) if err.kind() == io::ErrorKind::NotFound => {
                    return Err(self.io_at(&prefix)(err))
                }
                Err(err)
                    if matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) =>
                {
                    return Err(through())
                }
                Err(err) => return Err(self.io_at(&prefix)(err)),
            };
        }
        Ok((dir, created))
    }

    /// The parent of `name`, reused while members share it.
    pub(super) fn parent(&mut self, name: &Path) -> Result<&Dir, UnpackError> {
        let parent = name.parent().unwrap_or(Path::new(""));
        let cached = matches!(&self.parent_cache, Some((path, _)) if path == parent);
        if !cached {
            let (dir, created) = self.walk_parent(name, true)?;
            self.report.dirs += created;
            self.parent_cache = Some((parent.to_path_buf(), dir));
        }
        Ok(&self.parent_cache.as_ref().expect("cached above").1)
    }

    pub(super) fn file<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        name: &Path,
        size: u64,
        mode: u32,
        mtime: u64,
    ) -> Result<(), UnpackError> {
        if size > self.limits.max_file_bytes {
            return Err(UnpackError::FileTooLarge {
                name: shown_path(name),
                limit: human_bytes(self.limits.max_file_bytes),
            });
        }
        if self.consumed.saturating_add(size) > self.limits.max_total_bytes {
            return Err(UnpackError::TooLarge {
                limit: human_bytes(self.limits.max_total_bytes),
            });
        }
        let io = self.io_at(name);
        let created = self.parent(name)?.create_file(Unpacker::leaf(name));
        let mut file = match created {
            Ok(file) => file,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnpackError::Duplicate {
                    name: shown_path(name),
                })
            }
            Err(err) => return Err(io(err)),
        };
        let written = self.copy(entry, &mut file, name)?;
        if written < size {
            return Err(UnpackError::Truncated {
                name: shown_path(name),
                expected: size,
                got: written,
            });
        }
        let io = self.io_at(name);
        file.set_permissions(Permissions::from_mode(mode))
            .and_then(|()| file.set_modified(time(mtime)))
            .map_err(io)?;
        if name
            .parent()
            .is_none_or(|parent| parent.as_os_str().is_empty())
        {
            self.root_files.push(name.to_path_buf());
        }
        self.report.files += 1;
        self.report.bytes += written;
        Ok(())
    }

    /// Streams a member's data into `file`, charging every byte read.
    pub(super) fn copy<R: Read>(
        &mut self,
        entry: &mut Entry<'_, R>,
        file: &mut File,
        name: &Path,
    ) -> Result<u64, UnpackError> {
        let mut buffer = std::mem::take(&mut self.buffer);
        let mut written = 0u64;
        let result = loop {
            let read = match entry.read(&mut buffer) {
                Ok(0) => break Ok(written),
                Ok(read) => read,
                Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
                Err(err) => break Err(UnpackError::Read(err)),
            };
            written += read as u64;
            if written > self.limits.max_file_bytes {
                break Err(UnpackError::FileTooLarge {
                    name: shown_path(name),
                    limit: human_bytes(self.limits.max_file_bytes),
                });
            }
            if let Err(err) = self.charge(read as u64) {
                break Err(err);
            }
            if let Err(err) = file.write_all(&buffer[..read]) {
                break Err(self.io_at(name)(err));
            }
        };
        self.buffer = buffer;
        result
    }

    pub(super) fn dir(&mut self, name: &Path, mode: u32, mtime: u64) -> Result<(), UnpackError> {
        let io = self.io_at(name);
        let leaf = Unpacker::leaf(name);
        let parent = self.parent(name)?;
        let created = match parent.mkdir(leaf, 0o700) {
            Ok(()) => true,
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => false,
            Err(err) => return Err(io(err)),
        };
        let dir = match parent.open_dir(leaf) {
            Ok(dir) => dir,
            Err(err) if matches!(err.raw_os_error(), Some(libc::ELOOP) | Some(libc::ENOTDIR)) => {
                return Err(UnpackError::Duplicate {
                    name: shown_path(name),
                })
            }
            Err(err) => return Err(io(err)),
        };
        let io = self.io_at(name);
        dir.as_file()
            .set_permissions(Permissions::from_mode(mode | 0o700))
            .map_err(io)?;
        self.dir_times.push((Some(name.to_path_buf()), mtime));
        self.report.dirs += u64::from(created);
        Ok(())
    }

    pub(super) fn symlink(
        &mut self,
        name: &Path,
        target: Option<Vec<u8>>,
    ) -> Result<(), UnpackError> {
        let target = target.ok_or_else(|| UnpackError::Corrupt {
            reason: format!("symlink '{}' has no target", shown_path(name)),
        })?;
        let io = self.io_at(name);
        let leaf = Unpacker::leaf(name);
        if !names::symlink_stays_inside(name, &target) {
            let parent = self.parent(name)?;
            if parent.kind(leaf).map_err(io)?.is_some() {
                return Err(UnpackError::Duplicate {
                    name: shown_path(name),
                });
            }
            self.skipped_links.insert(name.to_path_buf());
            self.report.skipped_symlinks += 1;
            self.warn(format!(
                "skipped symlink '{}' -> '{}': it points outside the export",
                shown_path(name),
                shown(&target)
            ));
            return Ok(());
        }
        let target = OsStr::from_bytes(&target);
        match self.parent(name)?.symlink(target, leaf) {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnpackError::Duplicate {
                    name: shown_path(name),
                })
            }
            Err(err) => return Err(io(err)),
        }
        self.report.symlinks += 1;
        Ok(())
    }

    pub(super) fn hard_link(
        &mut self,
        name: &Path,
        target: Option<Vec<u8>>,
    ) -> Result<(), UnpackError> {
        let raw_target = target.unwrap_or_default();
        let bad = || UnpackError::BadHardLink {
            name: shown_path(name),
            target: shown(&raw_target),
        };
        let target = match names::normalise(&raw_target) {
            Ok(Some(target)) if !self.skipped_links.contains(&target) => target,
            _ => return Err(bad()),
        };
        let source_dir = match self.walk_parent(&target, false) {
            Ok((dir, _)) => dir,
            Err(UnpackError::Io { source, .. }) if source.kind() == io::ErrorKind::NotFound => {
                return Err(bad())
            }
            Err(err) => return Err(err),
        };
        let source_leaf = Unpacker::leaf(&target);
        if source_dir.kind(source_leaf).map_err(self.io_at(&target))? != Some(Kind::File) {
            return Err(bad());
        }
        let io = self.io_at(name);
        match self
            .parent(name)?
            .hard_link(Unpacker::leaf(name), &source_dir, source_leaf)
        {
            Ok(()) => {}
            Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
                return Err(UnpackError::Duplicate {
                    name: shown_path(name),
                })
            }
            Err(err) => return Err(io(err)),
        }
        self.report.hard_links += 1;
        Ok(())
    }

    /// Applies directory mtimes, deepest last-listed first.
    pub(super) fn set_dir_times(&mut self) -> Result<(), UnpackError> {
        self.parent_cache = None;
        for (name, mtime) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let dir = match &name {
                None => self.root.try_clone().map_err(self.io_at(Path::new("")))?,
                Some(name) => {
                    let (parent, _) = self.walk_parent(name, false)?;
                    parent
                        .open_dir(Unpacker::leaf(name))
                        .map_err(self.io_at(name))?
                }
            };
            let io = self.io_at(name.as_deref().unwrap_or(Path::new("")));
            dir.as_file().set_modified(time(mtime)).map_err(io)?;
        }
        Ok(())
    }
}
