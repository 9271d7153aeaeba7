//! QEMU's own mount namespace: a fresh root, a small read-only tmpfs,
//! that holds only what QEMU opens, each file bound at the path it has
//! on the host (so QEMU's command line is unchanged): `/usr` and the
//! dynamic loader's cache read-only, `/dev/null`, `/dev/urandom` and
//! (with KVM) `/dev/kvm`, the kernel, the initramfs, the seed and the
//! root disk's backing chain read-only, the disk's top layer and the
//! guest-RAM file writable, and the workspace's layer directory (where a
//! snapshot's new layer is made; only the top is QEMU's to write). No
//! `/proc`, no `/sys`, no home, no other workspace; a transfer image
//! comes as a descriptor over the monitor.
//!
//! The plan is made in the parent ([`JailRoot::plan`]), every path a
//! ready C string, so the child between fork and exec
//! ([`JailRoot::enter`]) only makes system calls: in its new mount
//! namespace it clones each source (`open_tree`) before the fresh root
//! hides anything, then moves the clones into place (`move_mount`).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicI32, Ordering};

/// How QEMU may use a path inside its jail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Access {
    /// Read only; no devices, no executables.
    Read,
    /// Read and write (its disk's top layer, its RAM file).
    Write,
    /// A directory whose files are read and written as their owners allow
    /// (the root disk's layers: new ones appear while QEMU runs).
    Layers,
    /// A device node, read and write.
    Device,
    /// A read-only tree of programs and libraries (`/usr`).
    Programs,
}

/// Where the fresh root is mounted before QEMU pivots into it. Only this
/// process's own mount namespace sees the mount, and every source is
/// cloned before, so nothing it hides is missed.
const STAGING: &str = "/tmp";

/// Directories of a merged `/usr` host that are symbolic links into it.
const TOP_LEVEL_LINKS: [&str; 6] = ["/bin", "/sbin", "/lib", "/lib64", "/lib32", "/libx32"];

struct Bind {
    source: CString,
    target: CString,
    flags: libc::c_ulong,
    /// The same as mount attributes, for the whole cloned tree.
    attributes: u64,
    /// The source's clone, between `open_tree` and `move_mount`.
    clone: AtomicI32,
}

/// A prepared jail root, entered by the child before it execs QEMU.
pub(crate) struct JailRoot {
    staging: CString,
    dirs: Vec<CString>,
    files: Vec<CString>,
    links: Vec<(CString, CString)>,
    binds: Vec<Bind>,
}

impl JailRoot {
    /// Plans a root holding `paths` (besides the system's programs,
    /// libraries and devices; `/dev/kvm` with `kvm`), each bound at its
    /// own lexically normal path. Fails when a path cannot be opened.
    pub(crate) fn plan(paths: &[(PathBuf, Access)], kvm: bool) -> std::io::Result<JailRoot> {
        let mut wanted: Vec<(PathBuf, Access)> = vec![
            ("/usr".into(), Access::Programs),
            ("/dev/null".into(), Access::Device),
            ("/dev/urandom".into(), Access::Device),
        ];
        if kvm {
            wanted.push(("/dev/kvm".into(), Access::Device));
        }
        if Path::new("/etc/ld.so.cache").exists() {
            wanted.push(("/etc/ld.so.cache".into(), Access::Read));
        }
        let mut links = Vec::new();
        for top in TOP_LEVEL_LINKS {
            match std::fs::symlink_metadata(top) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    let target = std::fs::read_link(top)?;
                    links.push((cstring(&target)?, staged(Path::new(top))?));
                }
                Ok(meta) if meta.is_dir() => wanted.push((top.into(), Access::Programs)),
                _ => {}
            }
        }
        for (path, access) in paths {
            wanted.push((normal(path), *access));
        }
        // One bind per path, the widest access winning; none inside a
        // tree already bound (QEMU's own binary under /usr).
        wanted.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)));
        wanted.dedup_by(|later, earlier| later.0 == earlier.0);
        let trees: Vec<PathBuf> = wanted
            .iter()
            .filter(|(_, access)| *access == Access::Programs)
            .map(|(path, _)| path.clone())
            .collect();
        wanted.retain(|(path, access)| {
            *access == Access::Programs || !trees.iter().any(|tree| path.starts_with(tree))
        });

        let mut root = JailRoot {
            staging: cstring(Path::new(STAGING))?,
            dirs: Vec::new(),
            files: Vec::new(),
            links,
            binds: Vec::new(),
        };
        let mut made: Vec<PathBuf> = Vec::new();
        for (path, access) in wanted {
            // Bound from where it really is; a directory only of programs.
            let real = std::fs::canonicalize(&path).map_err(pyro_util::fsutil::naming(&path))?;
            let is_dir = std::fs::metadata(&real)?.is_dir();
            if is_dir && !matches!(access, Access::Programs | Access::Layers) {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("{} is a directory, not a file for the VM", path.display()),
                ));
            }
            for parent in path
                .ancestors()
                .skip(1)
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
            {
                if parent != Path::new("/") && !made.iter().any(|m| m == parent) {
                    made.push(parent.to_path_buf());
                    root.dirs.push(staged(parent)?);
                }
            }
            let target = staged(&path)?;
            match is_dir {
                true => root.dirs.push(target.clone()),
                false => root.files.push(target.clone()),
            }
            made.push(path.clone());
            root.binds.push(Bind {
                source: cstring(&real)?,
                target,
                flags: mount_flags(access),
                attributes: mount_attributes(access),
                clone: AtomicI32::new(-1),
            });
        }
        Ok(root)
    }

    /// Runs in the forked child, as root, before it drops privileges:
    /// private mount, network, IPC and UTS namespaces, the planned root,
    /// pivoted into and made read-only. Only async-signal-safe system
    /// calls.
    pub(crate) fn enter(&self) -> std::io::Result<()> {
        let none = std::ptr::null::<libc::c_char>();
        let check = |result: libc::c_int| match result {
            0.. => Ok(()),
            _ => Err(std::io::Error::last_os_error()),
        };
        // SAFETY: system calls on NUL-terminated strings made before the
        // fork, which live as long as `self`.
        unsafe {
            // A network of its own, empty: QEMU's guest network is a descriptor.
            check(libc::unshare(
                libc::CLONE_NEWNS | libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS,
            ))?;
            // Nothing done here may reach the host's mounts.
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for bind in &self.binds {
                let clone = libc::syscall(
                    libc::SYS_open_tree,
                    libc::AT_FDCWD,
                    bind.source.as_ptr(),
                    OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | AT_RECURSIVE,
                ) as libc::c_int;
                check(clone)?;
                bind.clone.store(clone, Ordering::Relaxed);
            }
            check(libc::mount(
                c"pyro-jail".as_ptr(),
                self.staging.as_ptr(),
                c"tmpfs".as_ptr(),
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                c"mode=0755,size=1m,nr_inodes=4096".as_ptr().cast(),
            ))?;
            for dir in &self.dirs {
                if libc::mkdir(dir.as_ptr(), 0o755) < 0
                    && std::io::Error::last_os_error().raw_os_error() != Some(libc::EEXIST)
                {
                    return Err(std::io::Error::last_os_error());
                }
            }
            for file in &self.files {
                let fd = libc::open(
                    file.as_ptr(),
                    libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                );
                check(fd)?;
                libc::close(fd);
            }
            for (target, link) in &self.links {
                check(libc::symlink(target.as_ptr(), link.as_ptr()))?;
            }
            for bind in &self.binds {
                let clone = bind.clone.load(Ordering::Relaxed);
                // Every mount of the clone (what lies under /usr too); a
                // kernel before 5.12 has only the remount below.
                let attr = MountAttr {
                    attr_set: bind.attributes,
                    attr_clr: 0,
                    propagation: 0,
                    userns_fd: 0,
                };
                let set = libc::syscall(
                    libc::SYS_mount_setattr,
                    clone,
                    c"".as_ptr(),
                    libc::AT_EMPTY_PATH as libc::c_uint | AT_RECURSIVE,
                    &attr,
                    std::mem::size_of::<MountAttr>(),
                );
                if set < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::ENOSYS) {
                    return Err(std::io::Error::last_os_error());
                }
                check(libc::syscall(
                    libc::SYS_move_mount,
                    clone,
                    c"".as_ptr(),
                    libc::AT_FDCWD,
                    bind.target.as_ptr(),
                    MOVE_MOUNT_F_EMPTY_PATH,
                ) as libc::c_int)?;
                libc::close(clone);
                check(libc::mount(
                    none,
                    bind.target.as_ptr(),
                    none,
                    libc::MS_BIND | libc::MS_REMOUNT | bind.flags,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chdir(self.staging.as_ptr()))?;
            check(
                libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int,
            )?;
            // The old root, stacked under the new one, goes.
            check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
            check(libc::chdir(c"/".as_ptr()))?;
            // This mount only (MS_BIND): never its filesystem's others.
            check(libc::mount(
                none,
                c"/".as_ptr(),
                none,
                libc::MS_REMOUNT
                    | libc::MS_BIND
                    | libc::MS_RDONLY
                    | libc::MS_NOSUID
                    | libc::MS_NODEV
                    | libc::MS_NOEXEC,
                std::ptr::null(),
            ))?;
        }
        Ok(())
    }
}

fn mount_flags(access: Access) -> libc::c_ulong {
    let data = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    match access {
        Access::Read => data | libc::MS_RDONLY,
        Access::Write | Access::Layers => data,
        Access::Device => libc::MS_NOSUID | libc::MS_NOEXEC,
        Access::Programs => libc::MS_NOSUID | libc::MS_NODEV | libc::MS_RDONLY,
    }
}

/// The mount attributes matching [`mount_flags`].
fn mount_attributes(access: Access) -> u64 {
    let data = MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC;
    match access {
        Access::Read => data | MOUNT_ATTR_RDONLY,
        Access::Write | Access::Layers => data,
        Access::Device => MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC,
        Access::Programs => MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_RDONLY,
    }
}

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
const MOUNT_ATTR_NOEXEC: u64 = 0x8;
const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `path` under the staging mount.
fn staged(path: &Path) -> std::io::Result<CString> {
    let mut bytes = STAGING.as_bytes().to_vec();
    bytes.extend_from_slice(path.as_os_str().as_bytes());
    CString::new(bytes).map_err(|_| nul_in(path))
}

fn cstring(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes()).map_err(|_| nul_in(path))
}

fn nul_in(path: &Path) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidInput,
        format!("{}: a NUL byte in the path", path.display()),
    )
}

/// `path` made absolute and rid of `.` and `..` lexically, the way the
/// jail (real directories all the way down) resolves it.
pub(crate) fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    let absolute;
    let path = match path.is_absolute() {
        true => path,
        false => {
            absolute = std::env::current_dir().unwrap_or_default().join(path);
            &absolute
        }
    };
    for component in path.components() {
        match component {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(name) => out.push(name),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_normalised_lexically() {
        assert_eq!(normal(Path::new("/a/b/../c/./d")), Path::new("/a/c/d"));
        assert_eq!(normal(Path::new("/../x")), Path::new("/x"));
    }

    #[test]
    fn a_plan_binds_each_path_once_and_nothing_inside_usr() {
        let dir = tempfile::tempdir().unwrap();
        let disk = dir.path().join("disk.qcow2");
        std::fs::write(&disk, b"x").unwrap();
        let plan = JailRoot::plan(
            &[
                (disk.clone(), Access::Read),
                (disk.clone(), Access::Write),
                ("/usr/bin".into(), Access::Read),
            ],
            false,
        )
        .unwrap();
        let targets: Vec<_> = plan.binds.iter().map(|b| b.target.clone()).collect();
        let disk_target = staged(&disk).unwrap();
        assert_eq!(targets.iter().filter(|t| **t == disk_target).count(), 1);
        let bind = plan.binds.iter().find(|b| b.target == disk_target).unwrap();
        assert_eq!(bind.flags & libc::MS_RDONLY, 0, "the writable access wins");
        assert!(!targets.contains(&staged(Path::new("/usr/bin")).unwrap()));
        assert!(plan.files.contains(&disk_target));
        // Every parent of the disk is made, outermost first.
        let parent = staged(dir.path()).unwrap();
        assert!(plan.dirs.contains(&parent));
    }

    #[test]
    fn a_directory_is_bound_only_as_programs() {
        let dir = tempfile::tempdir().unwrap();
        let error = JailRoot::plan(&[(dir.path().to_path_buf(), Access::Read)], false)
            .err()
            .unwrap();
        assert!(error.to_string().contains("is a directory"), "{error}");
    }

    #[test]
    fn a_missing_path_fails_the_plan_naming_it() {
        let error = JailRoot::plan(&[("/nonexistent/pyro".into(), Access::Read)], false)
            .err()
            .unwrap();
        assert!(error.to_string().contains("/nonexistent/pyro"), "{error}");
    }
}
