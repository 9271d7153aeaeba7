//! Directory handles and the `*at` system calls unpacking is built on.
//!
//! Every entry an archive names is reached one component at a time from an
//! open directory handle, opening each step with `O_NOFOLLOW | O_DIRECTORY`
//! and creating leaves with `O_CREAT | O_EXCL | O_NOFOLLOW`. A symlink —
//! whether the archive made it or anything else swapped it in — is therefore
//! never followed on the way to a file being written.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::io;
use std::mem::MaybeUninit;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// What a name in a directory is, without following it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Dir,
    File,
    Symlink,
    Other,
}

/// An open directory.
#[derive(Debug)]
pub(crate) struct Dir {
    file: File,
}

fn c_name(name: &OsStr) -> io::Result<CString> {
    CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "name contains a nul byte"))
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

impl Dir {
    /// Opens a directory by path, refusing a symlink as the last component.
    pub(crate) fn open(path: &Path) -> io::Result<Dir> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)?;
        Ok(Dir { file })
    }

    /// The directory as a file handle, for `fchmod`/`futimens`.
    pub(crate) fn as_file(&self) -> &File {
        &self.file
    }

    pub(crate) fn try_clone(&self) -> io::Result<Dir> {
        Ok(Dir {
            file: self.file.try_clone()?,
        })
    }

    fn openat(&self, name: &OsStr, flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
        let name = c_name(name)?;
        // SAFETY: `name` is a NUL-terminated string alive for the call, and
        // the descriptor is owned by `self.file`, which outlives the call.
        let fd = check(unsafe {
            libc::openat(
                self.file.as_raw_fd(),
                name.as_ptr(),
                flags | libc::O_CLOEXEC,
                libc::c_uint::from(mode),
            )
        })?;
        // SAFETY: `openat` just returned this descriptor; nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(fd) })
    }

    /// Opens a child directory; fails with `ELOOP` on a symlink and `ENOTDIR`
    /// on anything else that is not a directory.
    pub(crate) fn open_dir(&self, name: &OsStr) -> io::Result<Dir> {
        let fd = self.openat(
            name,
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW,
            0,
        )?;
        Ok(Dir {
            file: File::from(fd),
        })
    }

    /// Creates a new file; fails with `EEXIST` if the name exists in any form.
    pub(crate) fn create_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW;
        Ok(File::from(self.openat(name, flags, 0o600)?))
    }

    pub(crate) fn mkdir(&self, name: &OsStr, mode: libc::mode_t) -> io::Result<()> {
        let name = c_name(name)?;
        // SAFETY: as in `openat`: a live C string and a descriptor we own.
        check(unsafe { libc::mkdirat(self.file.as_raw_fd(), name.as_ptr(), mode) })?;
        Ok(())
    }

    /// Creates `name` as a symlink to `target`; the target is stored, never
    /// resolved.
    pub(crate) fn symlink(&self, target: &OsStr, name: &OsStr) -> io::Result<()> {
        let (target, name) = (c_name(target)?, c_name(name)?);
        // SAFETY: as in `openat`: live C strings and a descriptor we own.
        check(unsafe { libc::symlinkat(target.as_ptr(), self.file.as_raw_fd(), name.as_ptr()) })?;
        Ok(())
    }

    /// Hard-links `from_dir/from_name` as `name` here. `linkat` without
    /// `AT_SYMLINK_FOLLOW` never follows a symlink.
    pub(crate) fn hard_link(
        &self,
        name: &OsStr,
        from_dir: &Dir,
        from_name: &OsStr,
    ) -> io::Result<()> {
        let (from_name, name) = (c_name(from_name)?, c_name(name)?);
        // SAFETY: as in `openat`: live C strings and descriptors owned by
        // `self` and `from_dir`, both alive for the call.
        check(unsafe {
            libc::linkat(
                from_dir.file.as_raw_fd(),
                from_name.as_ptr(),
                self.file.as_raw_fd(),
                name.as_ptr(),
                0,
            )
        })?;
        Ok(())
    }

    /// What `name` is, without following it; `None` if it does not exist.
    pub(crate) fn kind(&self, name: &OsStr) -> io::Result<Option<Kind>> {
        let stat = match self.lstat(name) {
            Ok(stat) => stat,
            Err(err) if err.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        Ok(Some(match stat.st_mode & libc::S_IFMT {
            libc::S_IFDIR => Kind::Dir,
            libc::S_IFREG => Kind::File,
            libc::S_IFLNK => Kind::Symlink,
            _ => Kind::Other,
        }))
    }

    /// `name`'s status, without following it.
    pub(crate) fn lstat(&self, name: &OsStr) -> io::Result<libc::stat> {
        let name = c_name(name)?;
        let mut stat = MaybeUninit::<libc::stat>::uninit();
        // SAFETY: live C string, owned descriptor, and `stat` points to
        // writable memory the size of `struct stat`.
        check(unsafe {
            libc::fstatat(
                self.file.as_raw_fd(),
                name.as_ptr(),
                stat.as_mut_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        })?;
        // SAFETY: `fstatat` succeeded, so it filled in `stat`.
        Ok(unsafe { stat.assume_init() })
    }

    /// Opens a regular file to read; fails with `ELOOP` on a symlink. A
    /// FIFO opens without blocking (and reads as nothing).
    pub(crate) fn open_file(&self, name: &OsStr) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NOFOLLOW | libc::O_NONBLOCK;
        Ok(File::from(self.openat(name, flags, 0)?))
    }

    /// The target of symlink `name`, as stored.
    pub(crate) fn read_link(&self, name: &OsStr) -> io::Result<Vec<u8>> {
        let name = c_name(name)?;
        let mut buf = vec![0u8; libc::PATH_MAX as usize + 1];
        // SAFETY: live C string, owned descriptor, and `buf` is writable for
        // the length given.
        let len = unsafe {
            libc::readlinkat(
                self.file.as_raw_fd(),
                name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        if len < 0 {
            return Err(io::Error::last_os_error());
        }
        buf.truncate(len as usize);
        Ok(buf)
    }

    /// The names in this directory, without `.` and `..`, in no order.
    pub(crate) fn names(&self) -> io::Result<Vec<std::ffi::OsString>> {
        use std::os::unix::ffi::OsStringExt;
        // `fdopendir` takes the descriptor it is given: hand it a duplicate.
        let fd = self.file.try_clone()?;
        let fd = std::os::fd::IntoRawFd::into_raw_fd(fd);
        // SAFETY: `fd` is an open directory descriptor we own; on success
        // the stream owns it and `closedir` closes it.
        let stream = unsafe { libc::fdopendir(fd) };
        if stream.is_null() {
            let err = io::Error::last_os_error();
            // SAFETY: fdopendir failed, so `fd` is still ours to close.
            unsafe { libc::close(fd) };
            return Err(err);
        }
        // A duplicate shares the read position: start from the top.
        // SAFETY: `stream` is a live directory stream.
        unsafe { libc::rewinddir(stream) };
        let mut names = Vec::new();
        let result = loop {
            // SAFETY: errno is thread-local; reset so end-of-stream and an
            // error can be told apart.
            unsafe { *libc::__errno_location() = 0 };
            // SAFETY: `stream` is a live directory stream.
            let entry = unsafe { libc::readdir(stream) };
            if entry.is_null() {
                let err = io::Error::last_os_error();
                break match err.raw_os_error() {
                    Some(0) | None => Ok(()),
                    Some(_) => Err(err),
                };
            }
            // SAFETY: readdir returned a valid entry whose `d_name` is a
            // NUL-terminated string, alive until the next readdir.
            let name = unsafe { std::ffi::CStr::from_ptr((*entry).d_name.as_ptr()) };
            let bytes = name.to_bytes();
            if bytes != b"." && bytes != b".." {
                names.push(std::ffi::OsString::from_vec(bytes.to_vec()));
            }
        };
        // SAFETY: `stream` is live and closed once.
        unsafe { libc::closedir(stream) };
        result.map(|()| names)
    }
}
