//! Starting a workspace's supervisor process (`pyro __supervise`) and
//! ending it: the facade's side of the process boundary, besides the
//! control socket ([`super::client`]).

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::workspace::store::{WorkspaceRecord, WorkspaceState, WorkspaceStore};
use crate::workspace::{WorkspaceError, LOG};

/// Starts the supervisor of `record` and waits (on a blocking thread) for
/// it to report its VM ready, or why it could not start.
pub(crate) async fn spawn(
    cache_dir: &Path,
    store: &WorkspaceStore,
    record: &WorkspaceRecord,
) -> Result<(), WorkspaceError> {
    let dir = store.dir(&record.id);
    let program = supervisor_program()?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(LOG))
        .map_err(|source| WorkspaceError::Io {
            path: dir.join(LOG),
            source,
        })?;
    let (ready_read, ready_write) = pipe().map_err(|source| WorkspaceError::Io {
        path: dir.clone(),
        source,
    })?;
    let write_fd = ready_write.as_raw_fd();
    let mut command = Command::new(program);
    command
        .args(supervisor_args(store.home(), &record.id, write_fd))
        .env("PYRO_CACHE_DIR", cache_dir)
        .env("PYRO_HOME", store.home())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|source| WorkspaceError::Io {
            path: dir.join(LOG),
            source,
        })?)
        .stderr(log);
    // SAFETY: runs between fork and exec; setsid and fcntl are
    // async-signal-safe and touch only this child.
    unsafe {
        command.pre_exec(move || {
            // A session of its own: the supervisor outlives the calling
            // process and its terminal.
            libc::setsid();
            // Its one inherited descriptor beyond stdio: the readiness pipe.
            pyro_util::fds::close_on_exec_from(3);
            if libc::fcntl(write_fd, libc::F_SETFD, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command.spawn().map_err(|source| WorkspaceError::Io {
        path: PathBuf::from("pyro __supervise"),
        source,
    })?;
    drop(ready_write);
    // Reap it whenever it ends, so a long-lived caller keeps no zombie.
    std::thread::spawn(move || child.wait());

    // The supervisor boots the VM before it answers: seconds. Wait on a
    // blocking thread so the caller's runtime keeps serving (progress).
    let message = tokio::task::spawn_blocking(move || {
        let mut message = String::new();
        let _ = std::fs::File::from(ready_read).read_to_string(&mut message);
        message
    })
    .await
    .unwrap_or_default();
    if message == "ok" {
        Ok(())
    } else {
        let message = if message.is_empty() {
            "the supervisor exited without a word".to_string()
        } else {
            message
        };
        Err(WorkspaceError::StartFailed {
            name: record.display_name().to_string(),
            message,
        })
    }
}

/// How long a supervisor that recorded its suspend may take to end.
pub(crate) const SUPERVISOR_EXIT: Duration = Duration::from_secs(30);

/// Waits up to `limit` for the supervisor of a workspace that is ending
/// by itself (it recorded a suspend) to be gone; whether it is.
pub(crate) async fn until_gone(
    store: &WorkspaceStore,
    id: &str,
    limit: Duration,
) -> Result<bool, WorkspaceError> {
    let deadline = tokio::time::Instant::now() + limit;
    while store.supervisor_alive(id)? {
        if tokio::time::Instant::now() > deadline {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(true)
}

/// Kills a workspace's supervisor (and so its VM) and waits until it is
/// gone; records the workspace as stopped first, so that nobody observing
/// the dead supervisor meanwhile records a crash.
pub(crate) async fn kill(
    store: &WorkspaceStore,
    record: &WorkspaceRecord,
) -> Result<(), WorkspaceError> {
    store.update(&record.id, |record| {
        record.state = WorkspaceState::Stopped;
        Ok(())
    })?;
    while store.supervisor_alive(&record.id)? {
        signal_supervisor(store, &record.id, libc::SIGKILL);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    store.update(&record.id, |record| {
        record.supervisor_pid = None;
        Ok(())
    })?;
    Ok(())
}

/// Asks a workspace's supervisor to power its VM off cleanly (SIGTERM),
/// killing it when `timeout` passes; returns once it is gone.
pub(crate) async fn stop(
    store: &WorkspaceStore,
    record: &WorkspaceRecord,
    timeout: Duration,
) -> Result<(), WorkspaceError> {
    if !store.supervisor_alive(&record.id)? {
        return Ok(());
    }
    signal_supervisor(store, &record.id, libc::SIGTERM);
    let deadline = tokio::time::Instant::now() + timeout;
    while store.supervisor_alive(&record.id)? {
        if tokio::time::Instant::now() > deadline {
            signal_supervisor(store, &record.id, libc::SIGKILL);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// `__supervise -- HOME ID FD`: after `--`, a home that starts with `-` is
/// still the home.
fn supervisor_args(home: &std::path::Path, id: &str, ready_fd: i32) -> Vec<std::ffi::OsString> {
    vec![
        "__supervise".into(),
        "--".into(),
        home.into(),
        id.into(),
        ready_fd.to_string().into(),
    ]
}

/// The binary that runs supervisors: this one (`pyro`), or
/// `PYRO_SUPERVISOR_BIN` when the facade is embedded elsewhere.
fn supervisor_program() -> Result<PathBuf, WorkspaceError> {
    if let Some(path) = std::env::var_os("PYRO_SUPERVISOR_BIN") {
        return Ok(PathBuf::from(path));
    }
    std::env::current_exe().map_err(|source| WorkspaceError::Io {
        path: PathBuf::from("/proc/self/exe"),
        source,
    })
}

/// Signals workspace `id`'s supervisor: whoever holds its supervisor lock
/// (one still booting has recorded no pid yet, and a recorded pid may be a
/// stale one), checked to be its `__supervise`.
pub(crate) fn signal_supervisor(store: &WorkspaceStore, id: &str, signal: i32) {
    let lock = store.dir(id).join(crate::workspace::store::SUPERVISOR_LOCK);
    let mut pids = pyro_util::fsutil::lock_holder_pids(&lock);
    pids.extend(store.read(id).ok().and_then(|record| record.supervisor_pid));
    pids.sort_unstable();
    pids.dedup();
    for pid in pids {
        signal_pid(Some(pid), id, signal);
    }
}

fn signal_pid(pid: Option<u32>, id: &str, signal: i32) {
    let Some(pid) = pid else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmdline = String::from_utf8_lossy(&cmdline);
    if cmdline.contains("__supervise") && cmdline.contains(id) {
        // SAFETY: kill(2) on a pid we just checked is our supervisor.
        unsafe { libc::kill(pid as libc::pid_t, signal) };
    }
}

/// A close-on-exec pipe: (read end, write end).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are fresh descriptors we own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_supervisor_home_follows_the_end_of_options() {
        let args = super::supervisor_args(std::path::Path::new("-home"), "ab12", 3);
        let args: Vec<_> = args.iter().map(|a| a.to_str().unwrap()).collect();
        assert_eq!(args, ["__supervise", "--", "-home", "ab12", "3"]);
    }
}
