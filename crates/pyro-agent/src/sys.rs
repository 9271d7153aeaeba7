//! Thin, checked wrappers over the libc calls the agent makes, plus the
//! `log!` helper and an error-context extension for `io::Result`.
//!
//! Everything unsafe that is not fork/exec (see `spawn.rs`) lives here, so the
//! rest of the agent reads as ordinary Rust.

use std::ffi::CString;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

/// Writes one diagnostic line to stderr (the VM console) with the agent's
/// prefix. Never panics, unlike `eprintln!`.
macro_rules! log {
    ($($arg:tt)*) => {
        $crate::sys::log_line(format_args!($($arg)*))
    };
}
pub(crate) use log;

pub fn log_line(args: std::fmt::Arguments<'_>) {
    let line = format!("pyro-agent: {args}\n");
    let _ = io::stderr().write_all(line.as_bytes());
}

/// Adds a description of what was being done to an I/O error.
pub trait Context<T> {
    fn context(self, what: impl FnOnce() -> String) -> io::Result<T>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: impl FnOnce() -> String) -> io::Result<T> {
        self.map_err(|err| io::Error::new(err.kind(), format!("{}: {err}", what())))
    }
}

/// Converts a Rust string to a C string, rejecting interior NULs.
pub fn cstring(text: &str) -> io::Result<CString> {
    CString::new(text).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{text:?} contains a NUL byte"),
        )
    })
}

/// Turns a libc-style `-1` return into the current `errno`.
pub fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// `umount2(2)` without flags.
pub fn umount(target: &str) -> io::Result<()> {
    let target_c = cstring(target)?;
    // SAFETY: a NUL-terminated string that outlives the call.
    check(unsafe { libc::umount2(target_c.as_ptr(), 0) }).map(drop)
}

/// `mount(2)`.
pub fn mount(
    source: &str,
    target: &str,
    fstype: Option<&str>,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source_c = cstring(source)?;
    let target_c = cstring(target)?;
    let fstype_c = fstype.map(cstring).transpose()?;
    let data_c = data.map(cstring).transpose()?;
    // SAFETY: all pointers are NUL-terminated strings that outlive the call,
    // or null where mount(2) allows it.
    let ret = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            fstype_c.as_ref().map_or(std::ptr::null(), |s| s.as_ptr()),
            flags,
            data_c
                .as_ref()
                .map_or(std::ptr::null(), |s| s.as_ptr().cast()),
        )
    };
    check(ret)
        .map(drop)
        .context(|| format!("mount {source} on {target}"))
}

/// `chroot(2)`.
pub fn chroot(path: &str) -> io::Result<()> {
    let path_c = cstring(path)?;
    // SAFETY: `path_c` is a valid C string for the duration of the call.
    check(unsafe { libc::chroot(path_c.as_ptr()) }).map(drop)
}

/// A pipe whose both ends are close-on-exec: `(read, write)`.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: `fds` is a valid array of two ints for pipe2 to fill.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by us.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A close-on-exec eventfd, used to wake a thread blocked in `poll`.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: eventfd takes no pointers.
    let fd = check(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) })?;
    // SAFETY: eventfd succeeded, so `fd` is open and owned by us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Adds one to an eventfd's counter, waking its pollers.
pub fn eventfd_signal(fd: &OwnedFd) {
    let one = 1u64.to_ne_bytes();
    // SAFETY: writes 8 bytes from a live buffer to an fd we own.
    unsafe { libc::write(fd.as_raw_fd(), one.as_ptr().cast(), one.len()) };
}

/// `poll(2)` over `fds`, retrying on EINTR. `None` waits forever.
pub fn poll(fds: &mut [libc::pollfd], timeout: Option<Duration>) -> io::Result<usize> {
    let timeout_ms = timeout.map_or(-1, |t| {
        // Round up so that a short remaining time does not become a busy 0.
        let ms = t.as_micros().div_ceil(1000);
        ms.min(i32::MAX as u128) as libc::c_int
    });
    loop {
        // SAFETY: `fds` is a valid slice of pollfd structs for its length.
        let ret = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        match check(ret) {
            Ok(n) => return Ok(n as usize),
            Err(err) if err.kind() == io::ErrorKind::Interrupted => continue,
            Err(err) => return Err(err),
        }
    }
}

/// A new pseudo-terminal: `(master, slave, slave path)`, both ends
/// close-on-exec, neither becoming the agent's controlling terminal.
pub fn open_pty() -> io::Result<(OwnedFd, OwnedFd, String)> {
    // SAFETY: posix_openpt takes no pointers.
    let fd = check(unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) })
        .context(|| "open /dev/ptmx".to_owned())?;
    // SAFETY: posix_openpt succeeded, so `fd` is open and owned by us.
    let master = unsafe { OwnedFd::from_raw_fd(fd) };
    // SAFETY: grantpt and unlockpt take a descriptor only.
    check(unsafe { libc::grantpt(master.as_raw_fd()) }).context(|| "grantpt".to_owned())?;
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(master.as_raw_fd()) }).context(|| "unlockpt".to_owned())?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: `name` is a live buffer of the length passed.
    let ret = unsafe { libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len()) };
    if ret != 0 {
        return Err(io::Error::from_raw_os_error(ret)).context(|| "ptsname".to_owned());
    }
    // SAFETY: ptsname_r succeeded, so `name` holds a NUL-terminated string.
    let path = unsafe { std::ffi::CStr::from_ptr(name.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    let path_c = cstring(&path)?;
    // SAFETY: `path_c` is a valid C string for the duration of the call.
    let slave_fd = check(unsafe {
        libc::open(
            path_c.as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    })
    .context(|| format!("open {path}"))?;
    // SAFETY: open succeeded, so `slave_fd` is open and owned by us.
    let slave = unsafe { OwnedFd::from_raw_fd(slave_fd) };
    Ok((master, slave, path))
}

/// Sets a terminal's window size (`TIOCSWINSZ`); on a pty master the
/// kernel then sends `SIGWINCH` to the terminal's foreground process group.
pub fn set_winsize(fd: &impl AsRawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from a pointer that is live for
    // the call.
    check(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &size) }).map(drop)
}

/// The foreground process group of a terminal (on a pty master: of its
/// slave).
pub fn foreground_group(fd: &impl AsRawFd) -> io::Result<libc::pid_t> {
    // SAFETY: tcgetpgrp takes a descriptor only.
    check(unsafe { libc::tcgetpgrp(fd.as_raw_fd()) })
}

/// Puts a descriptor (its open file description, so every dup of it too)
/// in non-blocking mode.
pub fn set_nonblocking(fd: &impl AsRawFd) -> io::Result<()> {
    // SAFETY: F_GETFL and F_SETFL take no pointers.
    let flags = check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_GETFL) })?;
    // SAFETY: as above.
    check(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK) }).map(drop)
}

/// Sends `signal` to a process group. Errors (the group is gone) are ignored.
pub fn kill_group(pgid: i32, signal: i32) -> io::Result<()> {
    // SAFETY: kill takes no pointers.
    check(unsafe { libc::kill(-pgid, signal) }).map(drop)
}

/// Milliseconds since the kernel started, counting suspend.
pub fn boottime_ms() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for clock_gettime to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    ts.tv_sec as u64 * 1000 + ts.tv_nsec as u64 / 1_000_000
}

/// Sets the wall clock to `unix_ms` milliseconds since the epoch.
pub fn set_realtime_ms(unix_ms: u64) -> io::Result<()> {
    let ts = libc::timespec {
        tv_sec: (unix_ms / 1000) as libc::time_t,
        tv_nsec: ((unix_ms % 1000) * 1_000_000) as libc::c_long,
    };
    // SAFETY: `ts` is a valid timespec that outlives the call.
    check(unsafe { libc::clock_settime(libc::CLOCK_REALTIME, &ts) }).map(drop)
}

/// Whether this process is the system's init.
pub fn is_pid1() -> bool {
    std::process::id() == 1
}

/// Makes sure descriptors 0, 1 and 2 are open, on `/dev/console` if it can be
/// opened, else on `/dev/null`, so that files the agent opens later never take
/// those numbers (the kernel leaves them closed when the initramfs has no
/// `/dev/console`).
pub fn ensure_std_fds() {
    for fd in 0..3 {
        // SAFETY: F_GETFD takes no pointers; it only probes the descriptor.
        if unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0 {
            continue;
        }
        let opened = File::options()
            .read(true)
            .write(true)
            .open("/dev/console")
            .or_else(|_| File::options().read(true).write(true).open("/dev/null"));
        let Ok(file) = opened else { return };
        let raw = OwnedFd::from(file);
        if raw.as_raw_fd() != fd {
            // SAFETY: dup2 onto a descriptor number that is known to be closed.
            unsafe { libc::dup2(raw.as_raw_fd(), fd) };
        } else {
            // The open landed on the closed slot itself: keep it open, and
            // inheritable like a standard descriptor should be.
            // SAFETY: F_SETFD on a descriptor we own takes no pointers.
            unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
            std::mem::forget(raw);
        }
    }
}
