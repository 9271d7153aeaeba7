//! `flock(2)` locks on files: released by the kernel when the holder dies,
//! owner-only files, bounded waits whose errors name the holder.

use std::os::fd::AsRawFd as _;
use std::path::Path;
use std::time::Duration;

use crate::owner::Owner;

/// An exclusive or shared `flock` on a file, released on drop.
#[derive(Debug)]
pub struct FileLock {
    _file: fs_err::File,
}

impl FileLock {
    /// Blocks until the lock is held. For locks whose holders are bounded
    /// elsewhere (a scratch directory's, the supervisor's); a wait on a
    /// lock another process may hold for long takes [`FileLock::acquire_within`].
    pub fn acquire(path: &Path, exclusive: bool) -> std::io::Result<Self> {
        let file = open_lock_file(path)?;
        flock(&file, lock_op(exclusive))?;
        Ok(Self { _file: file })
    }

    /// Waits at most `patience` for the lock. Past it the error (kind
    /// `TimedOut`) names the lock and the processes that hold it, so a
    /// stuck or hostile holder is never a silent hang.
    pub fn acquire_within(
        path: &Path,
        exclusive: bool,
        patience: Duration,
    ) -> std::io::Result<Self> {
        let file = open_lock_file(path)?;
        let deadline = std::time::Instant::now() + patience;
        let mut pause = Duration::from_millis(1);
        loop {
            match flock(&file, lock_op(exclusive) | libc::LOCK_NB) {
                Ok(()) => return Ok(Self { _file: file }),
                Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => {}
                Err(err) => return Err(err),
            }
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            if left.is_zero() {
                return Err(lock_timeout(path, patience));
            }
            std::thread::sleep(pause.min(left));
            pause = (pause * 2).min(Duration::from_millis(50));
        }
    }

    /// Whether someone holds the lock at `path` (shared or exclusive);
    /// `None` when there is no such file. Never creates it.
    pub fn is_held(path: &Path) -> std::io::Result<Option<bool>> {
        let file = match fs_err::File::open(path) {
            Ok(file) => file,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(err),
        };
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(false)),
            Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(Some(true)),
            Err(err) => Err(err),
        }
    }

    /// Returns `None` when someone else holds a conflicting lock.
    pub fn try_acquire(path: &Path, exclusive: bool) -> std::io::Result<Option<Self>> {
        let file = open_lock_file(path)?;
        match flock(&file, lock_op(exclusive) | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(err) if err.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(err) => Err(err),
        }
    }
}

fn lock_op(exclusive: bool) -> libc::c_int {
    if exclusive {
        libc::LOCK_EX
    } else {
        libc::LOCK_SH
    }
}

/// The error for a lock still held after `waited`: which lock, and who
/// holds it.
pub fn lock_timeout(path: &Path, waited: Duration) -> std::io::Error {
    let holders = lock_holders(path);
    let who = match holders.as_slice() {
        [] => "another process".to_string(),
        [one] => one.clone(),
        many => many.join(", "),
    };
    std::io::Error::new(
        std::io::ErrorKind::TimedOut,
        format!(
            "waited {}s for the lock {}, which {who} still holds; try again when it is done, \
             or end it if it hangs",
            waited.as_secs(),
            path.display()
        ),
    )
}

/// The processes holding a `flock` on `path`, from `/proc/locks`, each as
/// `pid N (command line)`: empty when none shows (another PID namespace).
pub fn lock_holders(path: &Path) -> Vec<String> {
    lock_holder_pids(path)
        .into_iter()
        .map(describe_process)
        .collect()
}

/// The living processes holding a `flock` on `path` (see [`lock_holders`]).
pub fn lock_holder_pids(path: &Path) -> Vec<u32> {
    use std::os::unix::fs::MetadataExt as _;
    let (Ok(meta), Ok(locks)) = (
        std::fs::metadata(path),
        std::fs::read_to_string("/proc/locks"),
    ) else {
        return Vec::new();
    };
    let (major, minor) = (libc::major(meta.dev()), libc::minor(meta.dev()));
    let mut pids: Vec<u32> = locks
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            // `1: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`; a waiter's
            // line has `->` after the number.
            let [_, "FLOCK", _, _, pid, file, ..] = fields.as_slice() else {
                return None;
            };
            let mut parts = file.split(':');
            let (maj, min, ino) = (parts.next()?, parts.next()?, parts.next()?);
            let same = u32::from_str_radix(maj, 16).ok()? == major
                && u32::from_str_radix(min, 16).ok()? == minor
                && ino.parse::<u64>().ok()? == meta.ino();
            same.then(|| pid.parse().ok()).flatten()
        })
        .collect();
    pids.sort_unstable();
    pids.dedup();
    // The process that took a lock may have died while a child it handed
    // the descriptor to holds it on: only the living are named.
    pids.retain(|pid| Path::new(&format!("/proc/{pid}")).exists());
    pids
}

/// `pid N (its first words)`: the program and up to three arguments,
/// leaving out any `NAME=value` (a secret may ride in one), shortened and
/// escaped. The line may reach a model through MCP.
fn describe_process(pid: u32) -> String {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let words: Vec<String> = cmdline
        .split(|&b| b == 0)
        .filter(|w| !w.is_empty() && !w.contains(&b'='))
        .take(4)
        .map(|w| String::from_utf8_lossy(w).into_owned())
        .collect();
    let mut line = words.join(" ");
    if line.chars().count() > 80 {
        line = line.chars().take(77).collect::<String>() + "...";
    }
    match line.is_empty() {
        true => format!("pid {pid}"),
        false => format!("pid {pid} ({})", crate::text::visible(&line)),
    }
}

impl FileLock {
    pub(crate) fn inherit_across_exec(&self) -> std::io::Result<()> {
        let fd = self._file.as_raw_fd();
        // SAFETY: `fd` is owned by `self._file` and open for the duration of
        // both calls; F_GETFD/F_SETFD only change descriptor flags.
        let rc = unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags < 0 {
                flags
            } else {
                libc::fcntl(fd, libc::F_SETFD, flags & !libc::FD_CLOEXEC)
            }
        };
        if rc < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// Opens (creating) a lock file, owner-only: a user who could open it
/// could hold it forever. One made earlier with looser permissions is
/// tightened; one root makes in a user's store is handed to that user.
fn open_lock_file(path: &Path) -> std::io::Result<fs_err::File> {
    use fs_err::os::unix::fs::OpenOptionsExt as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let writable = fs_err::OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .mode(0o600)
        .open(path);
    let file = match writable {
        // flock works on a read-only descriptor too (a lock file someone
        // else owns).
        Err(err) if err.kind() == std::io::ErrorKind::PermissionDenied => {
            return fs_err::File::open(path)
        }
        other => other?,
    };
    let meta = file.metadata()?;
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if meta.uid() == euid && meta.mode() & 0o077 != 0 {
        file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    }
    if euid == 0 && meta.uid() == 0 {
        let parent = path.parent().unwrap_or(Path::new("/"));
        Owner::for_store_at(parent).adopt(path)?;
    }
    Ok(file)
}

fn flock(file: &fs_err::File, op: libc::c_int) -> std::io::Result<()> {
    loop {
        // SAFETY: the descriptor belongs to `file`, which outlives the call;
        // flock does not touch memory.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(());
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}
