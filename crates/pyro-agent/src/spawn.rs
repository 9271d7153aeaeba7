//! Starting a command: validating an `ExecRequest`, resolving the program,
//! and making the child by hand (the child side is in `child.rs`).
//!
//! `std::process::Command` is not used because its spawn path calls
//! `waitpid` on the child itself when `exec` fails, racing the agent's one
//! reaper (see `reaper.rs`). Everything the child needs (argv, envp, paths,
//! descriptors) is prepared before `fork`, so the child only makes
//! async-signal-safe calls: it starts a new session (so the command's process
//! group can be signalled as a whole), wires up its standard descriptors,
//! changes directory and execs. With a pseudo-terminal (`pty`) the new
//! session takes the terminal's slave as its controlling terminal
//! (`TIOCSCTTY`) and as descriptors 0, 1 and 2; the agent keeps only the
//! master. A failure there travels back as an errno
//! over a close-on-exec pipe, so the parent can tell "not started" apart from
//! "started and exited".

use std::ffi::CString;
use std::fs::{self, File};
use std::io::{self, Read};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use pyro_protocol::{ErrorKind, ExecRequest, PtySize};

use crate::child::{spawn_child, Child, ChildFds, STAGE_CHDIR, STAGE_TTY};
use crate::reaper::Reaper;
use crate::sys::{self, cstring};

/// The environment every command starts from; the request's `env` is
/// applied over it.
pub const BASE_ENV: &[(&str, &str)] = &[
    (
        "PATH",
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    ),
    ("HOME", "/root"),
    ("USER", "root"),
    ("LOGNAME", "root"),
    ("LANG", "C.UTF-8"),
];

/// `TERM` of a command on a pseudo-terminal, unless its request sets one.
pub const PTY_TERM: &str = "xterm-256color";

/// Where commands run when the request names no directory.
pub const DEFAULT_CWD: &str = "/workspace";

/// Why a command did not start, as sent to the host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpawnError {
    pub kind: ErrorKind,
    pub message: String,
}

impl SpawnError {
    fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    fn internal(what: &str, err: io::Error) -> Self {
        Self::new(ErrorKind::Internal, format!("{what}: {err}"))
    }
}

/// A validated request, ready to fork.
pub struct Prepared {
    argv0: String,
    program: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    cwd: CString,
    with_stdin: bool,
    pty: Option<PtySize>,
}

/// A started command. Its pid is also its process group id.
///
/// On a pseudo-terminal, `stdin` and `stdout` are both the master (in
/// non-blocking mode), `stderr` is `None` and `pty` is the master again, for
/// resizing and signalling.
pub struct Spawned {
    pub pid: libc::pid_t,
    pub started: Instant,
    pub stdin: Option<File>,
    pub stdout: File,
    pub stderr: Option<File>,
    pub pty: Option<Arc<OwnedFd>>,
    /// Readable once the reaper has the command's exit status.
    pub exited: Arc<OwnedFd>,
}

/// Checks a request and resolves everything `exec` will need.
pub fn prepare(request: &ExecRequest) -> Result<Prepared, SpawnError> {
    let Some(argv0) = request.argv.first() else {
        return Err(SpawnError::new(
            ErrorKind::InvalidRequest,
            "empty argv: nothing to run",
        ));
    };
    let mut env = merge_env(&request.env)?;
    if request.pty.is_some() && !env.iter().any(|(key, _)| key == "TERM") {
        env.push(("TERM".to_owned(), PTY_TERM.to_owned()));
    }
    let path_var = env
        .iter()
        .find(|(key, _)| key == "PATH")
        .map_or("", |(_, value)| value.as_str());
    let home = match Path::new(DEFAULT_CWD).is_dir() {
        true => DEFAULT_CWD,
        false => "/",
    };
    // Relative to /workspace, like every other path a call names; always
    // absolute, so what is checked here is what the child's chdir and
    // execve find.
    let cwd = match &request.cwd {
        Some(cwd) => Path::new(home).join(cwd).to_string_lossy().into_owned(),
        None => home.to_owned(),
    };
    match fs::metadata(&cwd) {
        Ok(meta) if meta.is_dir() => {}
        Ok(_) => {
            return Err(SpawnError::new(
                ErrorKind::InvalidRequest,
                format!("working directory {cwd} is not a directory"),
            ))
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(SpawnError::new(
                ErrorKind::InvalidRequest,
                format!("working directory {cwd} does not exist"),
            ))
        }
        Err(err) => {
            return Err(SpawnError::new(
                ErrorKind::PermissionDenied,
                format!("working directory {cwd}: {err}"),
            ))
        }
    }
    // A relative program (`./run.sh`, `.venv/bin/python`) is relative to
    // the command's directory, not the agent's.
    let program = resolve_program(argv0, path_var, Path::new(&cwd))?;
    let invalid = |what: &str| {
        SpawnError::new(
            ErrorKind::InvalidRequest,
            format!("{what} contains a NUL byte"),
        )
    };
    Ok(Prepared {
        argv0: argv0.clone(),
        program: CString::new(program.into_os_string().into_encoded_bytes())
            .map_err(|_| invalid("program path"))?,
        argv: request
            .argv
            .iter()
            .map(|arg| cstring(arg).map_err(|_| invalid("an argument")))
            .collect::<Result<_, _>>()?,
        envp: env
            .iter()
            .map(|(key, value)| {
                cstring(&format!("{key}={value}")).map_err(|_| invalid("an environment variable"))
            })
            .collect::<Result<_, _>>()?,
        cwd: cstring(&cwd).map_err(|_| invalid("the working directory"))?,
        with_stdin: request.stdin,
        pty: request.pty,
    })
}

/// The base environment with the request's variables applied over it.
/// Added to [`BASE_ENV`] once the network is up (CA bundle paths, proxies).
static NETWORK_ENV: std::sync::Mutex<Vec<(String, String)>> = std::sync::Mutex::new(Vec::new());

/// Sets what every command started from now on gets from the network.
pub fn set_network_env(env: Vec<(String, String)>) {
    *NETWORK_ENV.lock().unwrap_or_else(|p| p.into_inner()) = env;
}

fn merge_env(extra: &[(String, String)]) -> Result<Vec<(String, String)>, SpawnError> {
    let mut env: Vec<(String, String)> = BASE_ENV
        .iter()
        .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
        .collect();
    let network = NETWORK_ENV
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (key, value) in network.iter().chain(extra) {
        if key.is_empty() || key.contains('=') {
            return Err(SpawnError::new(
                ErrorKind::InvalidRequest,
                format!("invalid environment variable name {key:?}"),
            ));
        }
        match env.iter_mut().find(|(existing, _)| existing == key) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    Ok(env)
}

/// Finds the file `argv0` names, the way a shell in `cwd` would: as a path
/// (relative to `cwd`) when it contains a slash, else by searching
/// `path_var` (whose relative entries are relative to `cwd` too).
pub fn resolve_program(argv0: &str, path_var: &str, cwd: &Path) -> Result<PathBuf, SpawnError> {
    if argv0.is_empty() {
        return Err(SpawnError::new(ErrorKind::NotFound, ": command not found"));
    }
    if argv0.contains('/') {
        let path = cwd.join(argv0);
        return match fs::metadata(&path) {
            Ok(meta) if meta.is_dir() => Err(SpawnError::new(
                ErrorKind::PermissionDenied,
                format!("{argv0}: Is a directory"),
            )),
            Ok(meta) if meta.permissions().mode() & 0o111 == 0 => Err(SpawnError::new(
                ErrorKind::PermissionDenied,
                format!("{argv0}: Permission denied"),
            )),
            Ok(_) => Ok(path),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(SpawnError::new(
                ErrorKind::NotFound,
                format!("{argv0}: No such file or directory"),
            )),
            Err(err) => Err(SpawnError::new(
                ErrorKind::PermissionDenied,
                format!("{argv0}: {err}"),
            )),
        };
    }
    let mut not_executable = None;
    for dir in path_var.split(':') {
        let candidate = cwd.join(dir).join(argv0);
        let Ok(meta) = fs::metadata(&candidate) else {
            continue;
        };
        if !meta.is_file() {
            continue;
        }
        if meta.permissions().mode() & 0o111 != 0 {
            return Ok(candidate);
        }
        not_executable.get_or_insert(candidate);
    }
    match not_executable {
        Some(path) => Err(SpawnError::new(
            ErrorKind::PermissionDenied,
            format!("{}: Permission denied", path.display()),
        )),
        None => Err(SpawnError::new(
            ErrorKind::NotFound,
            format!("{argv0}: command not found"),
        )),
    }
}

/// Forks and execs a prepared command, registering it with the reaper.
pub fn spawn(prepared: &Prepared, reaper: &Reaper) -> Result<Spawned, SpawnError> {
    match prepared.pty {
        Some(size) => spawn_on_pty(prepared, size, reaper),
        None => spawn_on_pipes(prepared, reaper),
    }
}

fn spawn_on_pipes(prepared: &Prepared, reaper: &Reaper) -> Result<Spawned, SpawnError> {
    let internal = SpawnError::internal;
    let (stdin_child, stdin_parent) = if prepared.with_stdin {
        let (read, write) = sys::pipe().map_err(|e| internal("create stdin pipe", e))?;
        (read, Some(write))
    } else {
        let null = File::open("/dev/null").map_err(|e| internal("open /dev/null", e))?;
        (OwnedFd::from(null), None)
    };
    let (stdout_parent, stdout_child) =
        sys::pipe().map_err(|e| internal("create stdout pipe", e))?;
    let (stderr_parent, stderr_child) =
        sys::pipe().map_err(|e| internal("create stderr pipe", e))?;
    let child_fds = ChildFds {
        stdin: stdin_child.as_raw_fd(),
        stdout: stdout_child.as_raw_fd(),
        stderr: stderr_child.as_raw_fd(),
        controlling_tty: false,
        status: -1,
    };
    let (pid, started, exited) = fork_exec(prepared, child_fds, reaper, || {
        // Close the child's ends so EOF works.
        drop((stdin_child, stdout_child, stderr_child));
    })?;
    Ok(Spawned {
        pid,
        started,
        stdin: stdin_parent.map(File::from),
        stdout: File::from(stdout_parent),
        stderr: Some(File::from(stderr_parent)),
        pty: None,
        exited,
    })
}

fn spawn_on_pty(
    prepared: &Prepared,
    size: PtySize,
    reaper: &Reaper,
) -> Result<Spawned, SpawnError> {
    let internal = SpawnError::internal;
    let (master, slave, path) = sys::open_pty().map_err(|e| internal("create a terminal", e))?;
    sys::set_winsize(&master, size.rows, size.cols)
        .map_err(|e| internal(&format!("set the size of {path}"), e))?;
    // The master's readers poll, and the stdin feeder must be able to give
    // up on a command that never reads.
    sys::set_nonblocking(&master).map_err(|e| internal("make the terminal non-blocking", e))?;
    let dup = |what: &str| {
        master
            .try_clone()
            .map(File::from)
            .map_err(|e| internal(&format!("duplicate the terminal for {what}"), e))
    };
    let (output, input) = (dup("output")?, dup("input")?);
    let child_fds = ChildFds {
        stdin: slave.as_raw_fd(),
        stdout: slave.as_raw_fd(),
        stderr: slave.as_raw_fd(),
        controlling_tty: true,
        status: -1,
    };
    let (pid, started, exited) = fork_exec(prepared, child_fds, reaper, || {
        // Only the command may hold the slave: reading the master gives EIO
        // (end of output) once the last holder is gone.
        drop(slave);
    })?;
    Ok(Spawned {
        pid,
        started,
        stdin: Some(input),
        stdout: output,
        stderr: None,
        pty: Some(Arc::new(master)),
        exited,
    })
}

/// Forks and execs with `child_fds` as the child's standard descriptors;
/// `after_fork` runs in the parent right after the fork (to close the
/// child's ends). Returns the pid, when it started and its exit eventfd.
fn fork_exec(
    prepared: &Prepared,
    mut child_fds: ChildFds,
    reaper: &Reaper,
    after_fork: impl FnOnce(),
) -> Result<(libc::pid_t, Instant, Arc<OwnedFd>), SpawnError> {
    let internal = SpawnError::internal;
    let (status_read, status_write) = sys::pipe().map_err(|e| internal("create status pipe", e))?;
    let exited = Arc::new(sys::eventfd().map_err(|e| internal("create eventfd", e))?);

    let argv: Vec<*const libc::c_char> = prepared
        .argv
        .iter()
        .map(|arg| arg.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let envp: Vec<*const libc::c_char> = prepared
        .envp
        .iter()
        .map(|var| var.as_ptr())
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    child_fds.status = status_write.as_raw_fd();

    let child = Child {
        fds: &child_fds,
        cwd: &prepared.cwd,
        program: &prepared.program,
        argv: &argv,
        envp: &envp,
    };
    let pid = reaper
        .spawn_watched(Arc::clone(&exited), || spawn_child(&child))
        .map_err(|e| internal("fork", e));
    let started = Instant::now();
    after_fork();
    // Close the child's end of the status pipe so that a successful exec
    // reads as EOF.
    drop(status_write);
    let pid = pid?;

    let mut report = [0u8; 5];
    let mut status_file = File::from(status_read);
    let got = read_full(&mut status_file, &mut report);
    if got == report.len() {
        reaper.forget(pid);
        let errno = i32::from_ne_bytes(report[1..5].try_into().expect("4 bytes"));
        return Err(child_failure(report[0], errno, prepared));
    }
    Ok((pid, started, exited))
}

fn read_full(file: &mut File, buf: &mut [u8]) -> usize {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    filled
}

fn child_failure(stage: u8, errno: i32, prepared: &Prepared) -> SpawnError {
    let err = io::Error::from_raw_os_error(errno);
    let argv0 = &prepared.argv0;
    if stage == STAGE_TTY {
        return SpawnError::new(
            ErrorKind::Internal,
            format!("cannot make the terminal the controlling terminal of {argv0}: {err}"),
        );
    }
    if stage == STAGE_CHDIR {
        let cwd = prepared.cwd.to_string_lossy();
        let kind = match errno {
            libc::EACCES | libc::EPERM => ErrorKind::PermissionDenied,
            _ => ErrorKind::InvalidRequest,
        };
        return SpawnError::new(kind, format!("working directory {cwd}: {err}"));
    }
    match errno {
        libc::ENOENT => SpawnError::new(
            ErrorKind::NotFound,
            format!("{argv0}: {err} (its interpreter or loader is missing)"),
        ),
        libc::EACCES | libc::EPERM | libc::ENOEXEC | libc::EISDIR => SpawnError::new(
            ErrorKind::PermissionDenied,
            format!("{argv0}: cannot execute: {err}"),
        ),
        _ => SpawnError::new(ErrorKind::Internal, format!("{argv0}: exec failed: {err}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_env_overrides_and_extends_the_base() {
        let env = merge_env(&[("PATH".into(), "/x".into()), ("FOO".into(), "1".into())]).unwrap();
        assert_eq!(env.iter().find(|(k, _)| k == "PATH").unwrap().1, "/x");
        assert_eq!(env.last().unwrap(), &("FOO".to_owned(), "1".to_owned()));
        assert!(merge_env(&[("A=B".into(), "1".into())]).is_err());
    }

    #[test]
    fn resolves_programs_like_a_shell() {
        let sh = resolve_program("sh", "/nonexistent:/bin:/usr/bin", Path::new("/")).unwrap();
        assert!(sh.ends_with("sh"));
        let missing =
            resolve_program("pyro-no-such-cmd", "/bin:/usr/bin", Path::new("/")).unwrap_err();
        assert_eq!(missing.kind, ErrorKind::NotFound);
        assert_eq!(missing.message, "pyro-no-such-cmd: command not found");
        let missing_path = resolve_program("/no/such/prog", "", Path::new("/")).unwrap_err();
        assert_eq!(missing_path.kind, ErrorKind::NotFound);
        assert_eq!(
            resolve_program("/", "", Path::new("/")).unwrap_err().kind,
            ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn relative_programs_are_relative_to_the_command_directory() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("bin")).unwrap();
        let tool = dir.path().join("bin/tool");
        std::fs::write(&tool, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert_eq!(resolve_program("bin/tool", "", dir.path()).unwrap(), tool);
        assert_eq!(
            resolve_program("./bin/tool", "", dir.path()).unwrap(),
            dir.path().join("./bin/tool")
        );
        assert_eq!(resolve_program("tool", "bin", dir.path()).unwrap(), tool);
        std::fs::set_permissions(
            dir.path().join("bin"),
            std::fs::Permissions::from_mode(0o755),
        )
        .unwrap();
        let in_dir = dir.path().join("bin");
        assert_eq!(resolve_program("tool", "", &in_dir).unwrap(), tool);
        let missing = resolve_program("bin/tool", "", Path::new("/")).unwrap_err();
        assert_eq!(missing.message, "bin/tool: No such file or directory");
    }

    #[test]
    fn a_relative_cwd_is_made_absolute() {
        let request = ExecRequest {
            argv: vec!["true".into()],
            cwd: Some("tmp".into()),
            ..ExecRequest::default()
        };
        // No /workspace on the test host: relative to /.
        if !Path::new(DEFAULT_CWD).is_dir() {
            let prepared = prepare(&request).ok().unwrap();
            assert_eq!(prepared.cwd.to_str(), Ok("/tmp"));
        }
    }

    #[test]
    fn empty_argv_and_bad_cwd_are_invalid() {
        let empty = prepare(&ExecRequest::default()).err().unwrap();
        assert_eq!(empty.kind, ErrorKind::InvalidRequest);
        let request = ExecRequest {
            argv: vec!["true".into()],
            cwd: Some("/no/such/dir".into()),
            ..ExecRequest::default()
        };
        let bad_cwd = prepare(&request).err().unwrap();
        assert_eq!(bad_cwd.kind, ErrorKind::InvalidRequest);
        assert!(
            bad_cwd.message.contains("/no/such/dir"),
            "{}",
            bad_cwd.message
        );
    }
}
