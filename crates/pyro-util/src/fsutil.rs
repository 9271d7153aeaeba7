//! File-system helpers pyro's on-disk state builds on (the environment
//! store, workspace records): advisory locks, atomic writes, scratch
//! directories that know whether their owner is alive, and a guard against
//! deleting through mount points.
//!
//! Locks are `flock(2)`: released by the kernel when the holder dies, so a
//! killed `pyro env pull` never leaves a lock behind. A scratch directory
//! holds `.lock`, locked for as long as its owner works in it; a cleaner that
//! can take that lock knows the owner is gone.

use std::io::Write as _;

pub use crate::lock::{lock_holder_pids, lock_holders, lock_timeout, FileLock};
pub use crate::owner::{is_root, Owner};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

/// Name of the lock file inside a scratch directory.
const SCRATCH_LOCK: &str = ".lock";
/// A scratch directory without its lock file is left alone this long (its
/// owner may be between `mkdir` and locking).
const UNLOCKED_GRACE: Duration = Duration::from_secs(60);

/// Makes `dir` (and missing parents) and keeps it private to its owner
/// (0700): pyro's state holds shells into VMs, secrets and lock files. A
/// directory someone else owns is theirs to set, and left as it is.
pub fn private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    fs_err::create_dir_all(dir)?;
    let meta = fs_err::metadata(dir)?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let ours = meta.uid() == unsafe { libc::geteuid() } || is_root();
    if ours && meta.permissions().mode() & 0o077 != 0 {
        fs_err::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// Free bytes pyro leaves on a host disk beyond what an operation needs: a
/// disk filled to the last block fails far more than the call that filled
/// it.
pub const HOST_RESERVE: u64 = 256 << 20;

/// The free bytes on the filesystem holding `dir` when they are fewer than
/// `needed` plus [`HOST_RESERVE`]; `None` when there is room (or the
/// filesystem cannot say).
pub fn short_of_room(dir: &Path, needed: u64) -> Option<u64> {
    free_bytes(dir).filter(|&free| free < needed.saturating_add(HOST_RESERVE))
}

/// Bytes an unprivileged writer may still use on the filesystem holding
/// `path` (`statvfs`).
pub fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: c_path is a valid NUL-terminated string and stat points to
    // writable memory of the right size; statvfs fills it on success.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised the struct.
    let stat = unsafe { stat.assume_init() };
    Some(stat.f_bavail * stat.f_frsize)
}

/// Makes an I/O error about `path` name it:
/// `.map_err(fsutil::naming(path))` reads `/a/b: No such file or directory`.
pub fn naming(path: &Path) -> impl FnOnce(std::io::Error) -> std::io::Error + '_ {
    move |error| std::io::Error::new(error.kind(), format!("{}: {error}", path.display()))
}

/// Opens `path` for reading without following a link in its last
/// component, or blocking on a FIFO; close-on-exec, errors naming it.
pub fn open_unfollowed(path: &Path) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)
        .map_err(naming(path))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unlikely to collide across processes and threads.
pub fn unique_suffix() -> String {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}-{nanos:08x}-{n}", std::process::id())
}

/// Writes `data` to `path` through a temporary file in the same directory
/// and a rename, so readers see the old or the new content, never a part.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32, owner: Owner) -> std::io::Result<()> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp-{}", unique_suffix()));
    let result = (|| {
        let mut file = fs_err::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        owner.adopt(&tmp)?;
        fs_err::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// A directory under `tmp/` owned by this process while it lives.
/// Dropping it removes the directory.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
    lock: Option<FileLock>,
}

impl ScratchDir {
    pub fn create(parent: &Path, prefix: &str) -> std::io::Result<Self> {
        let path = parent.join(format!("{prefix}-{}", unique_suffix()));
        fs_err::create_dir(&path)?;
        let lock = FileLock::try_acquire(&path.join(SCRATCH_LOCK), true)?;
        if let Some(lock) = &lock {
            // Children (mmdebstrap, mkfs) inherit the locked descriptor, so
            // if this process is killed while they still work in the
            // directory, it still reads as alive until they exit too.
            lock.inherit_across_exec()?;
        }
        Ok(Self { path, lock })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        // Remove while still holding the lock, so no cleaner races us.
        let _ = remove_tree(&self.path);
        self.lock.take();
    }
}

/// What cleaning `tmp/` did.
#[derive(Debug, Default)]
pub struct SweepReport {
    pub removed: Vec<PathBuf>,
    pub bytes_freed: u64,
    /// Directories left alone, with why.
    pub skipped: Vec<(PathBuf, String)>,
}

/// Removes scratch directories whose owner is gone.
pub fn sweep_stale_scratch(parent: &Path) -> std::io::Result<SweepReport> {
    let mut report = SweepReport::default();
    let Ok(entries) = fs_err::read_dir(parent) else {
        return Ok(report);
    };
    for entry in entries {
        let path = entry?.path();
        if !path.is_dir() {
            continue;
        }
        let lock_path = path.join(SCRATCH_LOCK);
        let _lock = if lock_path.exists() {
            match FileLock::try_acquire(&lock_path, true)? {
                Some(lock) => lock,
                None => continue, // owner alive
            }
        } else {
            let age = fs_err::metadata(&path)?
                .modified()
                .ok()
                .and_then(|m| m.elapsed().ok())
                .unwrap_or_default();
            if age < UNLOCKED_GRACE {
                continue;
            }
            // No lock file and old: nobody can be using it.
            match FileLock::try_acquire(&lock_path, true)? {
                Some(lock) => lock,
                None => continue,
            }
        };
        let size = tree_size(&path);
        match remove_tree(&path) {
            Ok(()) => {
                report.bytes_freed += size;
                report.removed.push(path);
            }
            Err(err) => report.skipped.push((path, err.to_string())),
        }
    }
    Ok(report)
}

/// Removes a directory tree, but first detaches anything mounted under it
/// (a killed mmdebstrap or debootstrap can leave /proc, /sys or /dev bind
/// mounts in its chroot; deleting through those would damage the host).
pub fn remove_tree(path: &Path) -> std::io::Result<()> {
    let mounts = mounts_under(path);
    for mount in mounts.iter().rev() {
        detach(mount);
    }
    if !mounts_under(path).is_empty() {
        return Err(std::io::Error::other(format!(
            "{} still has file systems mounted under it; unmount them (umount -R) and run: pyro env prune",
            path.display()
        )));
    }
    match fs_err::remove_dir_all(path) {
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Mount points at or below `path`, shallowest first.
fn mounts_under(path: &Path) -> Vec<PathBuf> {
    let Ok(canonical) = fs_err::canonicalize(path) else {
        return Vec::new();
    };
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut mounts: Vec<PathBuf> = info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|field| PathBuf::from(unescape_mountinfo(field)))
        .filter(|mount| mount.starts_with(&canonical))
        .collect();
    mounts.sort_by_key(|m| m.components().count());
    mounts
}

fn unescape_mountinfo(field: &str) -> String {
    field
        .replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

fn detach(mount: &Path) {
    use std::os::unix::ffi::OsStrExt as _;
    let Ok(c_path) = std::ffi::CString::new(mount.as_os_str().as_bytes()) else {
        return;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that lives across
    // the call; umount2 only reads it. Failure is checked by the caller.
    unsafe {
        libc::umount2(c_path.as_ptr(), libc::MNT_DETACH);
    }
}

/// Bytes used by the regular files under `path` (best effort).
pub fn tree_size(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt as _;
    let Ok(meta) = std::fs::symlink_metadata(path) else {
        return 0;
    };
    if !meta.is_dir() {
        return meta.blocks() * 512;
    }
    std::fs::read_dir(path)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|entry| tree_size(&entry.path()))
        .sum()
}

/// `target` as a path relative to the directory `from` (both absolute
/// and without `.` or `..`): `../disk.qcow2` from `/w/layers` to
/// `/w/disk.qcow2`.
pub fn relative_path(from: &Path, target: &Path) -> PathBuf {
    let from: Vec<_> = from.components().collect();
    let to: Vec<_> = target.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut relative = PathBuf::new();
    for _ in common..from.len() {
        relative.push("..");
    }
    for part in &to[common..] {
        relative.push(part);
    }
    relative
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn a_lock_wait_ends_and_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("names.lock");
        let held = FileLock::acquire(&path, false).unwrap();
        let start = std::time::Instant::now();
        let err = FileLock::acquire_within(&path, true, Duration::from_millis(200)).unwrap_err();
        assert!(start.elapsed() >= Duration::from_millis(200));
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        let text = err.to_string();
        assert!(
            text.contains(&format!("pid {} (", std::process::id())) && text.contains("names.lock"),
            "{text}"
        );
        drop(held);
        FileLock::acquire_within(&path, true, Duration::from_millis(200)).unwrap();
    }

    #[test]
    fn lock_files_and_state_dirs_are_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let fresh = dir.path().join("fresh.lock");
        FileLock::try_acquire(&fresh, true).unwrap().unwrap();
        assert_eq!(mode(&fresh), 0o600);
        let old = dir.path().join("old.lock");
        std::fs::write(&old, b"").unwrap();
        std::fs::set_permissions(&old, std::fs::Permissions::from_mode(0o644)).unwrap();
        FileLock::acquire(&old, true).unwrap();
        assert_eq!(mode(&old), 0o600);

        let home = dir.path().join("home");
        std::fs::create_dir(&home).unwrap();
        std::fs::set_permissions(&home, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&home.join("workspaces")).unwrap();
        private_dir(&home).unwrap();
        assert_eq!(mode(&home), 0o700);
        assert_eq!(mode(&home.join("workspaces")), 0o700);
    }

    #[test]
    fn relative_paths_climb_only_as_far_as_needed() {
        let rel = |from: &str, to: &str| relative_path(Path::new(from), Path::new(to));
        assert_eq!(
            rel("/w/layers", "/w/disk.qcow2"),
            Path::new("../disk.qcow2")
        );
        assert_eq!(rel("/w/layers", "/w/layers/a.qcow2"), Path::new("a.qcow2"));
        assert_eq!(rel("/w", "/w/layers/a.qcow2"), Path::new("layers/a.qcow2"));
        assert_eq!(rel("/a/b", "/c/d"), Path::new("../../c/d"));
    }

    #[test]
    fn locks_conflict_and_release_on_drop() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("l");
        let held = FileLock::acquire(&path, true).unwrap();
        assert!(FileLock::try_acquire(&path, true).unwrap().is_none());
        assert!(FileLock::try_acquire(&path, false).unwrap().is_none());
        drop(held);
        let shared = FileLock::try_acquire(&path, false).unwrap().unwrap();
        assert!(FileLock::try_acquire(&path, false).unwrap().is_some());
        drop(shared);
    }

    #[test]
    fn sweep_keeps_live_scratch_and_removes_dead_ones() {
        let dir = tempfile::tempdir().unwrap();
        let live = ScratchDir::create(dir.path(), "pull").unwrap();
        std::fs::write(live.path().join("data"), "x").unwrap();
        // A dead owner: lock file present but unlocked.
        let dead = dir.path().join("pull-dead");
        std::fs::create_dir(&dead).unwrap();
        std::fs::write(dead.join(SCRATCH_LOCK), "").unwrap();
        std::fs::write(dead.join("big"), vec![1u8; 8192]).unwrap();
        // Too young to judge without a lock file.
        let young = dir.path().join("pull-young");
        std::fs::create_dir(&young).unwrap();

        let report = sweep_stale_scratch(dir.path()).unwrap();
        assert_eq!(report.removed, vec![dead.clone()]);
        assert!(report.bytes_freed >= 8192);
        assert!(live.path().join("data").exists());
        assert!(young.exists());
        let live_path = live.path().to_owned();
        drop(live);
        assert!(!live_path.exists());
    }

    #[test]
    fn atomic_write_replaces_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.json");
        write_atomic(&path, b"one", 0o644, Owner::default()).unwrap();
        write_atomic(&path, b"two", 0o644, Owner::default()).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"two");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
