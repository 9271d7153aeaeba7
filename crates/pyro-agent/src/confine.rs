//! Paths confined to a root directory, enforced by the kernel.
//!
//! Every file request resolves its path beneath a root (`/workspace` unless
//! the request names another). The root is opened once per request and the
//! path is resolved from that descriptor by `openat2(2)` with
//! `RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS`: the kernel fails with EXDEV any
//! walk that would leave the root (a `..` too many, an absolute path, a
//! symlink at any component pointing outside) and checks it during the walk
//! itself, so a guest process swapping symlinks cannot race the agent out.
//!
//! Nothing lexical here is relied on for safety. The one lexical step strips
//! the root's own prefix from an absolute path that names it, so that
//! `/workspace/src` and `src` mean the same; whatever remains still goes
//! through the kernel's check.
//!
//! Missing parents for `WriteFile` are made one component at a time: each
//! prefix is opened beneath the root, and a missing component is created with
//! `mkdirat` in the (confined) directory before it, by its plain name.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use pyro_protocol::ErrorKind;

use crate::fsys::{self, RESOLVE_CONFINED};

/// Where file requests resolve paths when they name no root.
pub const DEFAULT_ROOT: &str = "/workspace";

/// Why a file request failed, as sent to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    pub kind: ErrorKind,
    pub message: String,
}

impl FileError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// An open root directory.
pub struct Root {
    fd: OwnedFd,
    name: String,
}

impl Root {
    /// Opens `root` (absolute), or [`DEFAULT_ROOT`].
    pub fn open(root: Option<&str>) -> Result<Self, FileError> {
        let name = root.unwrap_or(DEFAULT_ROOT).to_owned();
        if !name.starts_with('/') {
            return Err(FileError::new(
                ErrorKind::InvalidRequest,
                format!("root {name:?} is not an absolute path"),
            ));
        }
        let fd = std::fs::File::open(&name).map_err(|err| {
            let kind = match err.kind() {
                io::ErrorKind::NotFound => ErrorKind::NotFound,
                _ => ErrorKind::Internal,
            };
            FileError::new(kind, format!("cannot open {name}: {err}"))
        })?;
        let root = Self {
            fd: fd.into(),
            name,
        };
        let st = fsys::fstat(root.fd()).map_err(|err| root.error(".", err))?;
        if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
            return Err(FileError::new(
                ErrorKind::InvalidRequest,
                format!("{} is not a directory", root.name),
            ));
        }
        Ok(root)
    }

    pub fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The request path as the kernel should see it, relative to the root.
    pub fn relative(&self, path: &str) -> String {
        relative_to(&self.name, path)
    }

    /// Opens `relative` (from [`Root::relative`]) beneath the root.
    pub fn open_beneath(&self, relative: &str, flags: libc::c_int) -> io::Result<OwnedFd> {
        fsys::openat2(self.fd(), relative, flags, 0, RESOLVE_CONFINED)
    }

    /// Opens directory `relative` beneath the root, creating it and any
    /// missing parents (mode 0o755).
    pub fn make_dirs(&self, relative: &str) -> io::Result<OwnedFd> {
        if relative.starts_with('/') {
            // Splitting would lose the leading `/`: let the kernel judge it.
            return self.open_beneath(relative, libc::O_RDONLY | libc::O_DIRECTORY);
        }
        let mut dir = self.open_beneath(".", libc::O_RDONLY | libc::O_DIRECTORY)?;
        let mut prefix = String::new();
        for component in relative.split('/').filter(|c| !c.is_empty() && *c != ".") {
            if !prefix.is_empty() {
                prefix.push('/');
            }
            prefix.push_str(component);
            let flags = libc::O_RDONLY | libc::O_DIRECTORY;
            dir = match self.open_beneath(&prefix, flags) {
                Ok(next) => next,
                Err(err) if err.raw_os_error() == Some(libc::ENOENT) => {
                    // A plain name in a directory already opened beneath the
                    // root: mkdirat cannot leave it, nor follow a link.
                    match fsys::mkdirat(dir.as_fd(), component.as_bytes(), 0o755) {
                        Ok(()) => {}
                        Err(err) if err.raw_os_error() == Some(libc::EEXIST) => {}
                        Err(err) => return Err(err),
                    }
                    self.open_beneath(&prefix, flags)?
                }
                Err(err) => return Err(err),
            };
        }
        Ok(dir)
    }

    /// The host-facing error for an I/O failure on request path `path`.
    pub fn error(&self, path: &str, err: io::Error) -> FileError {
        let root = &self.name;
        let (kind, message) = match err.raw_os_error() {
            Some(libc::EXDEV) => (
                ErrorKind::InvalidRequest,
                format!("path escapes {root}: {path}"),
            ),
            Some(libc::ELOOP) => (
                ErrorKind::InvalidRequest,
                format!("{path}: too many levels of symlinks, or a magic link"),
            ),
            Some(libc::ENOENT) => (
                ErrorKind::NotFound,
                format!("{path}: no such file or directory"),
            ),
            Some(libc::ENOTDIR) => (
                ErrorKind::InvalidRequest,
                format!("{path}: a component of the path is not a directory"),
            ),
            Some(libc::EISDIR) => (ErrorKind::InvalidRequest, format!("{path} is a directory")),
            Some(libc::EACCES | libc::EPERM | libc::EROFS) => {
                (ErrorKind::PermissionDenied, format!("{path}: {err}"))
            }
            Some(libc::ENOSPC | libc::EDQUOT) => (
                ErrorKind::Internal,
                format!("disk full: no space left in {root} for {path}"),
            ),
            Some(libc::ENOSYS) => (
                ErrorKind::Unsupported,
                "this guest kernel lacks openat2(2), which file requests need".to_owned(),
            ),
            _ => (ErrorKind::Internal, format!("{path}: {err}")),
        };
        FileError::new(kind, message)
    }
}

/// Strips `root` from an absolute `path` under it; an empty result is `.`.
/// Anything else is returned as is, for the kernel to judge.
fn relative_to(root: &str, path: &str) -> String {
    let root = root.trim_end_matches('/');
    let rest = if path == root {
        ""
    } else if let Some(rest) = path.strip_prefix(root).filter(|r| r.starts_with('/')) {
        rest.trim_start_matches('/')
    } else {
        path
    };
    if rest.is_empty() {
        ".".to_owned()
    } else {
        rest.to_owned()
    }
}

/// Splits a relative path into its parent and final name, refusing names
/// that cannot be a file (`.`, `..`, a trailing `/`).
pub fn split_parent(relative: &str) -> Option<(&str, &str)> {
    let (parent, name) = match relative.rsplit_once('/') {
        Some((parent, name)) => (if parent.is_empty() { "/" } else { parent }, name),
        None => (".", relative),
    };
    if name.is_empty() || name == "." || name == ".." {
        return None;
    }
    Some((parent, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths_under_the_root_become_relative() {
        assert_eq!(relative_to("/workspace", "/workspace/src/a.rs"), "src/a.rs");
        assert_eq!(relative_to("/workspace/", "/workspace"), ".");
        assert_eq!(relative_to("/workspace", "/workspace/"), ".");
        assert_eq!(relative_to("/workspace", ""), ".");
        assert_eq!(relative_to("/workspace", "a/b"), "a/b");
        // Not under the root: left for the kernel to refuse.
        assert_eq!(relative_to("/workspace", "/workspacex/a"), "/workspacex/a");
        assert_eq!(relative_to("/workspace", "/etc/passwd"), "/etc/passwd");
        assert_eq!(relative_to("/workspace", "/workspace/../etc"), "../etc");
        assert_eq!(relative_to("/", "/etc/passwd"), "etc/passwd");
    }

    #[test]
    fn file_names_are_split_from_their_parent() {
        assert_eq!(split_parent("a.txt"), Some((".", "a.txt")));
        assert_eq!(split_parent("a/b/c"), Some(("a/b", "c")));
        assert_eq!(split_parent("/etc/passwd"), Some(("/etc", "passwd")));
        assert_eq!(split_parent("/x"), Some(("/", "x")));
        assert_eq!(split_parent("a/"), None);
        assert_eq!(split_parent("a/.."), None);
        assert_eq!(split_parent("."), None);
    }

    #[test]
    fn the_kernel_refuses_escapes() {
        let dir = std::env::temp_dir().join(format!("pyro-confine-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        std::fs::write(dir.join("sub/f"), b"x").unwrap();
        std::os::unix::fs::symlink("/", dir.join("out")).unwrap();
        std::os::unix::fs::symlink("sub/f", dir.join("in")).unwrap();
        let root = Root::open(dir.to_str()).unwrap();
        let rdonly = libc::O_RDONLY;
        assert!(root.open_beneath("in", rdonly).is_ok());
        assert!(root.open_beneath("sub/../sub/f", rdonly).is_ok());
        for escape in ["../x", "/etc/passwd", "out/etc/passwd", "sub/../../x"] {
            let err = root.open_beneath(escape, rdonly).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{escape}");
            assert!(root
                .error(escape, err)
                .message
                .starts_with("path escapes /"));
        }
        assert!(root.make_dirs("new/deeper").is_ok());
        assert!(dir.join("new/deeper").is_dir());
        for escape in ["out/tmp/x", "/tmp/x", "../x", "new/../../x"] {
            let err = root.make_dirs(escape).unwrap_err();
            assert_eq!(err.raw_os_error(), Some(libc::EXDEV), "{escape}");
        }
        assert!(!dir.join("tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
